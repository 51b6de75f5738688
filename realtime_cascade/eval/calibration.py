"""One-feature logistic calibration: P(correct | raw log-probability), fitted by Newton's method,
and the two usual measures of how good a probability is on held-out rows (ECE, Brier).

The fit is what ``core.params.Calibration`` holds for the runtime (``bias`` and the weight on the
quantile log-probability), so a fit on a real log can be pasted into a config. A small ridge
keeps it finite when the training rows are separable or all of one label.

A log-probability of ``-inf`` (a token the model gave probability zero) cannot enter a mean or a
standard deviation, so the fit clamps every value at ``floor``: one nat below the lowest finite
training value. ``-inf`` thus gets the lowest probability the fit gives anything, and the same
clamp applies to held-out rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import numpy as np
from numpy.typing import NDArray

_RIDGE = 1e-2  # on the standardised coefficients; enough to stop divergence, too small to bias
_MAX_ITER = 50
FLOOR_MARGIN = 1.0  # nats below the lowest finite training log-probability
ECE_BINS = 10

Floats = NDArray[np.float64]


class LogisticFit(msgspec.Struct, frozen=True):
    bias: float
    slope: float  # per unit of raw log-probability
    floor: float | None = None  # values below it (-inf included) are read as it

    def __call__(self, x: float) -> float:
        if self.floor is not None:
            x = max(x, self.floor)
        if self.slope == 0.0:  # also keeps 0 * -inf from making nan
            return sigmoid(self.bias)
        return sigmoid(self.bias + self.slope * x)

    def probabilities(self, xs: Floats) -> Floats:
        """``self(x)`` for every value of an array."""
        x = xs if self.floor is None else np.maximum(xs, self.floor)
        if self.slope == 0.0:
            return np.full(x.shape, sigmoid(self.bias))
        with np.errstate(over="ignore"):
            z = self.bias + self.slope * x
            return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def fit_logistic(xs: Sequence[float], ys: Sequence[bool]) -> LogisticFit:
    """Maximum (ridge-penalised) likelihood fit of ``P(y) = sigmoid(bias + slope * x)``."""
    n = len(xs)
    if n == 0 or n != len(ys):
        raise ValueError("fit_logistic needs equally many xs and ys, at least one")
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    finite = x[np.isfinite(x)]
    floor = float(finite.min()) - FLOOR_MARGIN if finite.size else None
    if floor is not None:
        x = np.maximum(x, floor)
    sd = float(x.std()) if finite.size else 0.0
    if sd == 0.0:
        # No spread: the confidence says nothing, so P(correct) is the base rate.
        rate = (float(y.sum()) + 0.5) / (n + 1.0)
        return LogisticFit(math.log(rate / (1.0 - rate)), 0.0, floor)
    mu = float(x.mean())
    z = (x - mu) / sd
    a = b = 0.0
    for _ in range(_MAX_ITER):
        # Gradient and Hessian of the penalised negative log-likelihood in (a, b).
        p = 1.0 / (1.0 + np.exp(-(a + b * z)))
        r = p - y
        w = p * (1.0 - p)
        ga = _RIDGE * a + float(r.sum())
        gb = _RIDGE * b + float((r * z).sum())
        haa = _RIDGE + float(w.sum())
        hab = float((w * z).sum())
        hbb = _RIDGE + float((w * z * z).sum())
        det = haa * hbb - hab * hab
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a -= da
        b -= db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    return LogisticFit(bias=a - b * mu / sd, slope=b / sd, floor=floor)


class Quality(msgspec.Struct, frozen=True):
    """How well a probability of being correct matches the outcomes (lower is better)."""

    ece: float  # expected calibration error, ``ECE_BINS`` equal-width bins
    brier: float  # mean squared error of the probability


def quality(p: Floats, correct: NDArray[np.bool_], bins: int = ECE_BINS) -> Quality:
    """ECE: the share-weighted gap between mean probability and accuracy per bin of [0, 1]."""
    if p.size == 0:
        raise ValueError("quality needs at least one row")
    y = correct.astype(np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        k = int(inside.sum())
        if k:
            ece += k / p.size * abs(float(p[inside].mean()) - float(y[inside].mean()))
    return Quality(ece=ece, brier=float(((p - y) ** 2).mean()))
