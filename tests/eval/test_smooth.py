"""Thresholds tuned on the fitted smooth model (``eval.smooth``): it beats the grid held out
where the grid is coarse and training rows are few, and it is deterministic."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from realtime_cascade.eval.deferral import (
    calibrate,
    confidences,
    quantile,
    threshold_levels,
)
from realtime_cascade.eval.logs import Group, group_rows
from realtime_cascade.eval.outcomes import Matrix, run_cascade
from realtime_cascade.eval.smooth import SmoothModel, fit_probabilities, rank_scores
from realtime_cascade.eval.synthetic import synthetic_rows
from realtime_cascade.eval.tradeoff import CascadeResult, FoldInput, cascade_tradeoff

FIVE = (0, 1, 2, 3, 4)


def _group(n: int, n_train: int, seed: int) -> Group:
    """The synthetic ``truth / mixed`` group (5 models) with its first ``n_train`` queries as
    train and the rest held out."""
    rows = [
        msgspec.structs.replace(
            r, split="train" if int(r.query_idx.split("-")[1]) < n_train else "test"
        )
        for r in synthetic_rows(n, seed=seed)
        if (r.benchmark, r.chain) == ("truth", "mixed")
    ]
    (group,) = group_rows(rows)
    return group


def _tradeoff(group: Group, stages: tuple[int, ...]) -> CascadeResult:
    """``cascade_tradeoff`` on one cascade, with the grid ``run_fold`` would give it."""
    mx = Matrix.of(group)
    tr = np.asarray(group.indices("train"), dtype=np.int64)
    te = np.asarray(group.indices("test"), dtype=np.int64)
    conf = confidences(mx, calibrate(group, group.indices("train")), "calibrated")
    ranked = [sorted(float(x) for x in conf[m, tr]) for m in range(len(group.models))]
    grid = []
    for levels in threshold_levels(len(stages) - 1):
        th = tuple(quantile(ranked[m], lv) for m, lv in zip(stages[:-1], levels, strict=True))
        grid.append((th, run_cascade(stages, th, conf, mx, tr).totals()))
    singles = tuple(run_cascade((m,), (), conf, mx, tr).totals() for m in range(mx.cost.shape[0]))
    fold = FoldInput(tr, te, conf, singles)
    return cascade_tradeoff(stages, "x", [fold], [grid], mx, None, lambda s, t: "")


@pytest.mark.parametrize("seed", [0, 1])
def test_smooth_tuning_beats_the_grid_held_out(seed: int) -> None:
    # A 5-model cascade gets a product grid of 4 levels per stage; 200 training queries are
    # too few for exact tuning to be trusted, 2800 held-out queries make the area stable (its
    # bootstrap sd is about 0.004). Measured: the grid's area is about 0.27 and the smooth
    # model's about 0.22 (19-21% less on seeds 0-4); the margin asserted is half of that.
    t = _tradeoff(_group(3000, 200, seed), FIVE).report
    assert t.tuned.auc < t.grid.auc - 0.025
    assert t.auc_gain > 0.1


def test_smooth_tuning_is_deterministic() -> None:
    group = _group(400, 200, 3)
    a, b = _tradeoff(group, FIVE), _tradeoff(group, FIVE)
    ta = [[c.thresholds for c in row] for row in a.tuned]
    assert ta == [[c.thresholds for c in row] for row in b.tuned]
    assert a.report.tuned.auc == b.report.tuned.auc
    # Not a constant: different cost weights choose different thresholds.
    assert len({row[0].thresholds for row in a.tuned}) > 3


def test_rank_scores_and_fitted_probabilities() -> None:
    u = rank_scores(np.array([3.0, -np.inf, 1.0, 1.0, 7.0]))
    assert u[1] < u[2] == u[3] < u[0] < u[4]  # -inf lowest, ties share a score
    # Ranks -inf 1, the tied 1.0s 2.5 each, 3.0 4, 7.0 5; scored logit(rank / 6) / (π/√3).
    assert u[2] == pytest.approx(np.log(2.5 / 3.5) / (np.pi / np.sqrt(3)))
    # A one-label column stays finite; with an informative feature the fit ranks by it and
    # its mean matches the base rate (an intercept is fitted).
    assert np.all(fit_probabilities(np.zeros((4, 1)), np.ones(4)) > 0.5)
    x = np.linspace(-2, 2, 40)[:, None]
    y = (x[:, 0] + np.sin(7 * x[:, 0]) > 0).astype(np.float64)
    p = fit_probabilities(x, y)
    assert np.all(np.diff(p) > 0)
    assert p.mean() == pytest.approx(y.mean(), abs=1e-6)


def test_smooth_model_descent_never_raises_its_objective() -> None:
    group = _group(400, 200, 4)
    mx = Matrix.of(group)
    tr = np.asarray(group.indices("train"), dtype=np.int64)
    conf = confidences(mx, calibrate(group, group.indices("train")), "calibrated")
    idx = np.ix_(np.asarray(FIVE), tr)
    model = SmoothModel.fit(conf[idx], mx.correct[idx], np.cumsum(mx.cost[idx], axis=0))
    for lam in (10.0, 1000.0, 30000.0):
        start = [len(c.ks) // 2 for c in model.cuts]
        end = model.descend(lam, start)
        assert model.value(end, lam) <= model.value(start, lam)
