"""Thresholds tuned on a fitted, smooth model of the cascade instead of on the raw training rows.

The empirical training objective (``tradeoff.Stagewise.value``) is a step function of each
threshold whose steps are single training labels: optimising it exactly (``tradeoff.
coordinate_descent``) chases noise on a few hundred rows. Following Zellinger & Thomson (2025),
who optimise a fitted probabilistic model of the cascade, this module replaces the two noisy
parts of that objective by fitted, smooth ones:

- **labels → fitted probabilities.** Stage ``s`` is right with ``π_s = P(correct_s | u_0..u_s)``,
  a ridge logistic regression on the scores of its own and every earlier stage's confidence
  (the earlier ones matter: reaching stage ``s`` means the earlier models were unsure, which
  says something about the query). Fitted on all training rows, once per cascade and fold.
- **hard deferral → a kernel.** A query goes on past stage ``s`` with weight
  ``1 − σ((u_s − τ_s) / h)`` rather than 0 or 1. ``u`` is a rank score of the confidence
  (``logit(rank / (n + 1))`` scaled to unit variance, ties averaged), so one bandwidth fits
  raw log-probabilities and calibrated probabilities alike, and ``h = 1.06 n^(-1/5)`` is
  Silverman's rule for a unit-variance density: a kernel-smoothed estimate of the joint
  distribution of the confidences.

The model's expected ``error + λ · cost`` (costs are the rows' own, only the weights are smooth)
is minimised over thresholds at the training confidences' midpoints (at most ``MAX_CUTS`` per
stage): every grid vector is scored under the model and the best is the start of an exact
coordinate descent over the cut points, moving only on a strict improvement. numpy only, and
deterministic: no random starts, ties keep the earlier candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .outcomes import Floats, Ints

MAX_CUTS = 256  # candidate thresholds per stage; beyond this the kernel is wider than a step
RIDGE = 1.0  # on the unit-variance scores: shrinks π towards the base rate on small data
BANDWIDTH = 1.06  # × n^(-1/5), Silverman's rule for a unit-variance density
MAX_SWEEPS = 20
_LOGISTIC_SD = float(np.pi / np.sqrt(3.0))


def rank_scores(x: Floats) -> Floats:
    """``logit(rank / (n + 1))`` with average ranks for ties, scaled to unit variance."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    below = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = (below + (counts + 1) / 2.0)[inverse]
    p = rank / (x.size + 1.0)
    return np.asarray(np.log(p / (1.0 - p)) / _LOGISTIC_SD, dtype=np.float64)


def fit_probabilities(features: Floats, y: Floats, ridge: float = RIDGE) -> Floats:
    """Fitted ``P(y = 1)`` per row of a ridge logistic regression (intercept not penalised);
    ``features`` is (rows, k)."""
    n, k = features.shape
    x = np.hstack([np.ones((n, 1)), features])
    pen = np.full(k + 1, ridge)
    pen[0] = 0.0
    # The intercept is started at the base rate so that an all-one-label column stays finite.
    rate = (float(y.sum()) + 0.5) / (n + 1.0)
    beta = np.zeros(k + 1)
    beta[0] = np.log(rate / (1.0 - rate))
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        grad = x.T @ (p - y) + pen * beta
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + np.diag(pen) + 1e-9 * np.eye(k + 1)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return np.asarray(1.0 / (1.0 + np.exp(-(x @ beta))), dtype=np.float64)


@dataclass(frozen=True)
class StageCuts:
    """One deferring stage: candidate cuts ``k`` accept the ``k`` highest distinct values."""

    values: Floats  # distinct training confidences, highest first
    ks: Ints  # candidate k's, 0 (defer every query) .. values.size (accept every query)
    accept: Floats  # (candidates, rows): smooth acceptance weight of each training row

    def threshold(self, j: int) -> float:
        k = int(self.ks[j])
        if k == 0:
            return float("inf")
        if k == self.values.size:
            return float("-inf")
        hi, lo = float(self.values[k - 1]), float(self.values[k])
        return hi if lo == float("-inf") else (hi + lo) / 2.0

    def nearest(self, threshold: float) -> int:
        """The candidate closest to a hard threshold (same queries accepted, if it is one)."""
        k = int((self.values >= threshold).sum())
        return int(np.argmin(np.abs(self.ks - k)))


@dataclass(frozen=True)
class SmoothModel:
    """A cascade's fitted model on training rows."""

    cuts: tuple[StageCuts, ...]  # one per deferring stage
    fitted_error: Floats  # (stages, rows): 1 − π_s
    cum_cost: Floats  # (stages, rows)

    @classmethod
    def fit(cls, conf: Floats, correct: Floats, cum_cost: Floats) -> SmoothModel:
        """``conf``, ``correct`` and ``cum_cost`` are (stages, training rows)."""
        stages, n = conf.shape
        u = np.vstack([rank_scores(c) for c in conf])
        err = np.vstack([1.0 - fit_probabilities(u[: s + 1].T, correct[s]) for s in range(stages)])
        h = BANDWIDTH * n ** (-0.2)
        cuts = []
        for s in range(stages - 1):
            vals, first = np.unique(-conf[s], return_index=True)  # highest first
            values, uvals = -vals, u[s][first]
            m = values.size
            ks = np.unique(np.round(np.linspace(0, m, min(m, MAX_CUTS) + 1)).astype(np.int64))
            acc = np.empty((ks.size, n))
            for j, k in enumerate(ks):
                if k == 0:
                    acc[j] = 0.0
                elif k == m:
                    acc[j] = 1.0
                else:
                    mid = (uvals[k - 1] + uvals[k]) / 2.0
                    with np.errstate(over="ignore"):
                        acc[j] = 1.0 / (1.0 + np.exp(-(u[s] - mid) / h))
            cuts.append(StageCuts(values, ks, acc))
        return cls(tuple(cuts), err, cum_cost)

    def weights(self, picks: Sequence[int]) -> Floats:
        """(stages, rows): the smooth probability that each stage answers each row."""
        stages, n = self.cum_cost.shape
        w = np.empty((stages, n))
        open_ = np.ones(n)
        for s, j in enumerate(picks):
            a = self.cuts[s].accept[j]
            w[s] = open_ * a
            open_ = open_ * (1.0 - a)
        w[-1] = open_
        return w

    def expected(self, picks: Sequence[int]) -> tuple[float, float]:
        """The model's mean error and mean cost under the cut indices ``picks``."""
        w = self.weights(picks)
        return float((w * self.fitted_error).sum(axis=0).mean()), float(
            (w * self.cum_cost).sum(axis=0).mean()
        )

    def value(self, picks: Sequence[int], lam: float) -> float:
        e, c = self.expected(picks)
        return e + lam * c

    def descend(self, lam: float, start: Sequence[int]) -> list[int]:
        """Exact coordinate descent over the cut points of the smooth objective."""
        picks = list(start)
        v = self.fitted_error + lam * self.cum_cost
        stages = v.shape[0]
        for _ in range(MAX_SWEEPS):
            moved = False
            for s in range(stages - 1):
                before = np.ones(v.shape[1])
                for r in range(s):
                    before *= 1.0 - self.cuts[r].accept[picks[r]]
                go_on = v[-1].copy()  # the value of going past stage s, from the last stage back
                for r in range(stages - 2, s, -1):
                    a = self.cuts[r].accept[picks[r]]
                    go_on = a * v[r] + (1.0 - a) * go_on
                scores = self.cuts[s].accept @ (before * (v[s] - go_on))
                best = int(np.argmin(scores))
                if scores[best] < scores[picks[s]] - 1e-12 * max(1.0, abs(float(scores[best]))):
                    picks[s] = best
                    moved = True
            if not moved:
                break
        return picks

    def tune(
        self, lam: float, grid: Sequence[tuple[float, ...]]
    ) -> tuple[tuple[float, ...], tuple[float, float]]:
        """Thresholds minimising the model's ``error + λ · cost``, started from the grid vector
        the model rates best; with the model's (error, cost) there."""
        starts = [[c.nearest(t) for c, t in zip(self.cuts, th, strict=True)] for th in grid]
        if not starts:
            starts = [[0] * len(self.cuts)]
        start = min(starts, key=lambda p: self.value(p, lam))
        picks = self.descend(lam, start)
        th = tuple(c.threshold(j) for c, j in zip(self.cuts, picks, strict=True))
        return th, self.expected(picks)
