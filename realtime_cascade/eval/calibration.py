"""One-feature logistic calibration: P(correct | raw log-probability), fitted by Newton's method.

The fit is what ``core.params.Calibration`` holds for the runtime (``bias`` and the weight on the
quantile log-probability), so a fit on a real log can be pasted into a config. A small ridge
keeps it finite when the training rows are separable or all of one label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

_RIDGE = 1e-2  # on the standardised coefficients; enough to stop divergence, too small to bias
_MAX_ITER = 50


class LogisticFit(msgspec.Struct, frozen=True):
    bias: float
    slope: float  # per unit of raw log-probability

    def __call__(self, x: float) -> float:
        return sigmoid(self.bias + self.slope * x)


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
    mu = sum(xs) / n
    sd = math.sqrt(sum((x - mu) ** 2 for x in xs) / n)
    if sd == 0.0:
        # No spread: the confidence says nothing, so P(correct) is the base rate.
        p = (sum(ys) + 0.5) / (n + 1.0)
        return LogisticFit(math.log(p / (1.0 - p)), 0.0)
    zs = [(x - mu) / sd for x in xs]
    a = b = 0.0
    for _ in range(_MAX_ITER):
        # Gradient and Hessian of the penalised negative log-likelihood in (a, b).
        ga, gb = _RIDGE * a, _RIDGE * b
        haa = hbb = _RIDGE
        hab = 0.0
        for z, y in zip(zs, ys, strict=True):
            p = sigmoid(a + b * z)
            r = p - (1.0 if y else 0.0)
            w = p * (1.0 - p)
            ga += r
            gb += r * z
            haa += w
            hab += w * z
            hbb += w * z * z
        det = haa * hbb - hab * hab
        da = (hbb * ga - hab * gb) / det
        db = (haa * gb - hab * ga) / det
        a -= da
        b -= db
        if abs(da) < 1e-10 and abs(db) < 1e-10:
            break
    return LogisticFit(bias=a - b * mu / sd, slope=b / sd)
