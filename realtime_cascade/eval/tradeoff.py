"""Cost–error trade-off curves per cascade: grid thresholds against tuned thresholds, and the
normalised area under the held-out curve (the metric of Zellinger & Thomson 2025).

The operating points are the minimisers of ``error + λ · cost`` on training rows for a sweep of
``λ`` (``LAMBDAS``, scaled by the fold's cost range so that one sweep fits every price list).
At each ``λ`` two threshold vectors are found on train and both are scored on held-out rows:

- *grid*: the best of the quantile grid the deferral tables use (``deferral.threshold_levels``);
- *tuned*: coordinate descent on the thresholds, started from the grid's choice. Along one
  threshold the training objective is a step function that only changes at that model's
  training confidences, so each step finds the exact optimum along its coordinate (a sorted
  cumulative sum, no smoothing) and moves the threshold to the midpoint of the gap it picked.
  A step is taken only if it strictly lowers the objective, so the tuned vector is never worse
  than the grid's on train; whether it is better held out is what the comparison measures.

``normalised_auc``: the held-out points, sorted by mean cost and joined by straight lines, are
integrated over ``[lo, hi]`` and divided by ``hi - lo`` — the mean error rate over the cost
range, lower is better. For one cascade the range runs from its first model alone (every
threshold ``-inf``) to asking every model (every threshold ``+inf``); both ends are points of
both curves. For a group, from the cheapest to the dearest single model. Outside its points a
curve is extended flat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from .bootstrap import Resamples, interval
from .outcomes import Floats, Ints, Matrix, PerQuery, Totals, run_cascade, stop_stage
from .smooth import SmoothModel

# λ × (cost of asking every model − cost of the first alone), log-spaced: from "one point of
# error is worth a thousandth of the range" (defer almost always) to "worth ten ranges"
# (almost never).
LAMBDAS: tuple[float, ...] = tuple(float(x) for x in np.logspace(-3, 1, 21))
MAX_SWEEPS = 20

Describe = Callable[[tuple[int, ...], tuple[float, ...]], str]


# --- the training objective and its coordinate descent ------------------------------------


def objective(t: Totals, lam: float) -> float:
    return (t.n - t.correct) / t.n + lam * t.mean_cost if t.n else 0.0


@dataclass(frozen=True)
class Stagewise:
    """A cascade's training rows: per stage, confidence, error and the cost paid to get there."""

    conf: Floats  # (stages, queries)
    error: Floats
    cum_cost: Floats
    order: tuple[Ints, ...]  # per stage, query indices by confidence, highest first

    @classmethod
    def of(cls, stages: Sequence[int], conf: Floats, mx: Matrix, rows: Ints) -> Stagewise:
        idx = np.ix_(np.asarray(stages, dtype=np.int64), rows)
        c = conf[idx]
        return cls(
            c,
            1.0 - mx.correct[idx],
            np.cumsum(mx.cost[idx], axis=0),
            tuple(np.argsort(-c[s], kind="stable") for s in range(c.shape[0])),
        )

    def value(self, thresholds: Sequence[float], lam: float) -> float:
        """Mean of ``error + λ · cost`` over the rows (the objective on train)."""
        stop = stop_stage(thresholds, self.conf)
        cols = np.arange(self.conf.shape[1])
        return float((self.error[stop, cols] + lam * self.cum_cost[stop, cols]).mean())


def _cut(vals: Floats, k: int) -> float:
    """A threshold that accepts exactly the first ``k`` of ``vals`` (sorted, highest first)."""
    if k == 0:
        return float("inf")
    if k == vals.size:
        return float("-inf")
    hi, lo = float(vals[k - 1]), float(vals[k])
    return hi if lo == float("-inf") else (hi + lo) / 2.0


def coordinate_descent(sw: Stagewise, lam: float, start: Sequence[float]) -> tuple[float, ...]:
    """Thresholds that lower the training objective from ``start``, one stage at a time."""
    th = list(start)
    stages, n = sw.conf.shape
    cols = np.arange(n)
    for _ in range(MAX_SWEEPS):
        moved = False
        for s in range(stages - 1):
            open_ = np.ones(n, dtype=bool)
            for r in range(s):
                open_ &= ~(sw.conf[r] >= th[r])
            after = s + 1 + stop_stage(th[s + 1 :], sw.conf[s + 1 :])
            go_on = sw.error[after, cols] + lam * sw.cum_cost[after, cols]
            stop_here = sw.error[s] + lam * sw.cum_cost[s]
            order = sw.order[s][open_[sw.order[s]]]
            if order.size == 0:  # no training query reaches this stage: nothing to tune
                continue
            vals = sw.conf[s][order]
            # gain[k]: the objective (less a constant) when the k most confident stop here.
            gain = np.concatenate(([0.0], np.cumsum((stop_here - go_on)[order])))
            ends = np.flatnonzero(np.append(vals[1:] != vals[:-1], True)) + 1
            ks = np.concatenate(([0], ends))
            best = int(ks[int(np.argmin(gain[ks]))])
            now = int((vals >= th[s]).sum())
            if gain[best] < gain[now] - 1e-12:
                th[s] = _cut(vals, best)
                moved = True
        if not moved:
            break
    return tuple(th)


# --- the area under the cost–error curve --------------------------------------------------


def normalised_auc(costs: Floats, errors: Floats, lo: float, hi: float) -> float:
    """Mean error over the cost range ``[lo, hi]`` of the curve through the points."""
    order = np.lexsort((errors, costs))
    c, e = costs[order], errors[order]
    keep = np.append(True, c[1:] != c[:-1])  # at one cost, the lowest error (sorted first)
    c, e = c[keep], e[keep]
    if hi <= lo:
        return float(np.interp(lo, c, e))
    inside = c[(c > lo) & (c < hi)]
    x = np.concatenate(([lo], inside, [hi]))
    y = np.interp(x, c, e)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (hi - lo))


def _resampled_auc(res: Resamples, cost: Floats, error: Floats, lo: Floats, hi: Floats) -> Floats:
    """``normalised_auc`` for every resample: ``cost``/``error`` are (points, held-out)."""
    c, e = res.means(cost), res.means(error)
    lo_s, hi_s = res.means(lo), res.means(hi)
    return np.array(
        [normalised_auc(c[b], e[b], float(lo_s[b]), float(hi_s[b])) for b in range(len(c))]
    )


# --- reports ------------------------------------------------------------------------------


class TradeoffPoint(msgspec.Struct, frozen=True):
    lam: float  # λ × the cost range (the same in every fold)
    accuracy: float  # held out, pooled over folds
    mean_cost_usd: float
    train_accuracy: float  # mean over folds
    train_mean_cost_usd: float
    policies: list[str]  # per fold
    thresholds: list[list[float]]  # per fold, per deferring stage (JSON null: ±inf)


class MethodCurve(msgspec.Struct, frozen=True):
    auc: float  # held-out normalised area under the cost–error curve (lower is better)
    auc_ci: tuple[float, float] | None
    train_auc: float
    points: list[TradeoffPoint]


TUNED_METHOD = "smooth-model"  # what ``Tradeoff.tuned`` is (``smooth``); ``exact`` is the other


class Tradeoff(msgspec.Struct, frozen=True):
    """Grid against tuned thresholds for one cascade (or a whole group)."""

    cascade: str
    cost_range_usd: tuple[float, float]  # held out: where the area is taken
    grid: MethodCurve
    tuned: MethodCurve  # thresholds tuned on the fitted smooth model (``smooth``)
    auc_gain: float  # 1 - tuned / grid area: > 0 when tuning helped held out
    auc_gain_ci: tuple[float, float] | None
    # Exact coordinate descent on the empirical training objective (the earlier "tuned"): kept
    # as a reference, since it is what overfits.
    exact: MethodCurve | None = None
    exact_auc_gain: float | None = None  # 1 - exact / grid area
    exact_auc_gain_ci: tuple[float, float] | None = None
    tuned_method: str = TUNED_METHOD


# --- running it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FoldInput:
    train: Ints
    test: Ints
    conf: Floats  # (models, queries), the confidence the thresholds apply to
    singles: tuple[Totals, ...]  # per model, on train


@dataclass(frozen=True)
class Choice:
    """One fold's policy at one λ: which models, which thresholds, how it did on train."""

    stages: tuple[int, ...]
    thresholds: tuple[float, ...]
    train: Totals
    fitted: tuple[float, float] | None = None  # the smooth model's (error, mean cost) on train

    def score(self, lam: float) -> float:
        """What the method that chose it minimises: the model's objective where it has one."""
        if self.fitted is None:
            return objective(self.train, lam)
        return self.fitted[0] + lam * self.fitted[1]


GridPoint = tuple[tuple[float, ...], Totals]  # thresholds, train totals


def _scale(fold: FoldInput, stages: Sequence[int], mx: Matrix) -> float:
    every = float(
        mx.cost[np.ix_(np.asarray(stages, dtype=np.int64), fold.train)].sum(axis=0).mean()
    )
    span = every - fold.singles[stages[0]].mean_cost
    return span if span > 0 else 1.0


def _alone(
    folds: Sequence[FoldInput], stages: tuple[int, ...], thresholds: tuple[float, ...], mx: Matrix
) -> PerQuery:
    """One fixed policy on every fold's held-out rows, pooled."""
    return PerQuery.concat([run_cascade(stages, thresholds, f.conf, mx, f.test) for f in folds])


def _curve(
    rows: Sequence[Sequence[Choice]],  # [λ][fold]
    folds: Sequence[FoldInput],
    mx: Matrix,
    res: Resamples | None,
    anchors: Sequence[PerQuery],  # extra points of the curve (e.g. the first model alone)
    span: tuple[PerQuery, PerQuery],  # the range's ends, by their held-out mean cost
    train_range: tuple[float, float],
    describe: Describe,
) -> tuple[MethodCurve, Floats | None]:
    held = [
        PerQuery.concat(
            [
                run_cascade(c.stages, c.thresholds, f.conf, mx, f.test)
                for c, f in zip(row, folds, strict=True)
            ]
        )
        for row in rows
    ]
    every = [*held, *anchors]
    cost = np.vstack([h.cost for h in every])
    error = 1.0 - np.vstack([h.correct for h in every])
    lo, hi = float(span[0].cost.mean()), float(span[1].cost.mean())
    auc = normalised_auc(cost.mean(axis=1), error.mean(axis=1), lo, hi)
    train_tot = [sum((c.train for c in row), Totals()) for row in rows]
    train_auc = normalised_auc(
        np.array([t.mean_cost for t in train_tot]),
        np.array([1.0 - t.accuracy for t in train_tot]),
        *train_range,
    )
    samples: Floats | None = None
    ci: tuple[float, float] | None = None
    if res is not None:
        samples = _resampled_auc(res, cost, error, span[0].cost, span[1].cost)
        ci = interval(samples)
    points = [
        TradeoffPoint(
            lam=lam,
            accuracy=float(h.correct.mean()),
            mean_cost_usd=float(h.cost.mean()),
            train_accuracy=float(np.mean([c.train.accuracy for c in row])),
            train_mean_cost_usd=float(np.mean([c.train.mean_cost for c in row])),
            policies=[describe(c.stages, c.thresholds) for c in row],
            thresholds=[list(c.thresholds) for c in row],
        )
        for lam, h, row in zip(LAMBDAS, held, rows, strict=True)
    ]
    return MethodCurve(auc, ci, train_auc, points), samples


def _gain(
    grid: MethodCurve, tuned: MethodCurve, gs: Floats | None, ts: Floats | None
) -> tuple[float, tuple[float, float] | None]:
    gain = 1.0 - tuned.auc / grid.auc if grid.auc > 0 else 0.0
    if gs is None or ts is None:
        return gain, None
    with np.errstate(divide="ignore", invalid="ignore"):
        return gain, interval(np.where(gs > 0, 1.0 - ts / gs, 0.0))


def _train_range(
    folds: Sequence[FoldInput], stages: Sequence[int], mx: Matrix
) -> tuple[float, float]:
    lo = float(np.mean([f.singles[stages[0]].mean_cost for f in folds]))
    hi = float(
        np.mean(
            [
                mx.cost[np.ix_(np.asarray(stages, dtype=np.int64), f.train)].sum(axis=0).mean()
                for f in folds
            ]
        )
    )
    return lo, hi


class CascadeResult(msgspec.Struct, frozen=True):
    report: Tradeoff
    grid: list[list[Choice]]  # [λ][fold]
    tuned: list[list[Choice]]  # the smooth model's
    exact: list[list[Choice]]  # coordinate descent on the empirical objective


def cascade_tradeoff(
    stages: tuple[int, ...],
    name: str,
    folds: Sequence[FoldInput],
    grids: Sequence[Sequence[GridPoint]],  # per fold, the grid's candidates for this cascade
    mx: Matrix,
    res: Resamples | None,
    describe: Describe,
) -> CascadeResult:
    grid_rows: list[list[Choice]] = [[] for _ in LAMBDAS]
    tuned_rows: list[list[Choice]] = [[] for _ in LAMBDAS]
    exact_rows: list[list[Choice]] = [[] for _ in LAMBDAS]
    for fold, grid in zip(folds, grids, strict=True):
        sw = Stagewise.of(stages, fold.conf, mx, fold.train)
        model = SmoothModel.fit(
            sw.conf, mx.correct[np.ix_(np.asarray(stages, dtype=np.int64), fold.train)], sw.cum_cost
        )
        vectors = [g[0] for g in grid]
        scale = _scale(fold, stages, mx)
        for k, lam_scaled in enumerate(LAMBDAS):
            lam = lam_scaled / scale
            th, tot = min(grid, key=lambda g: (objective(g[1], lam), g[1].mean_cost))
            grid_rows[k].append(Choice(stages, th, tot))
            exact = coordinate_descent(sw, lam, th)
            exact_tot = run_cascade(stages, exact, fold.conf, mx, fold.train).totals()
            exact_rows[k].append(Choice(stages, exact, exact_tot))
            tuned, fitted = model.tune(lam, vectors)
            tuned_tot = run_cascade(stages, tuned, fold.conf, mx, fold.train).totals()
            tuned_rows[k].append(Choice(stages, tuned, tuned_tot, fitted))
    first = _alone(folds, stages[:1], (), mx)
    every = _alone(folds, stages, (float("inf"),) * (len(stages) - 1), mx)
    tr = _train_range(folds, stages, mx)
    g, gs = _curve(grid_rows, folds, mx, res, (first, every), (first, every), tr, describe)
    t, ts = _curve(tuned_rows, folds, mx, res, (first, every), (first, every), tr, describe)
    x, xs = _curve(exact_rows, folds, mx, res, (first, every), (first, every), tr, describe)
    gain, gain_ci = _gain(g, t, gs, ts)
    x_gain, x_gain_ci = _gain(g, x, gs, xs)
    rng = (float(first.cost.mean()), float(every.cost.mean()))
    report = Tradeoff(name, rng, g, t, gain, gain_ci, x, x_gain, x_gain_ci)
    return CascadeResult(report, grid_rows, tuned_rows, exact_rows)


def group_tradeoff(
    results: Sequence[CascadeResult],
    folds: Sequence[FoldInput],
    mx: Matrix,
    res: Resamples | None,
    describe: Describe,
) -> Tradeoff:
    """Per λ and fold, the best on train of every cascade's choice and every single model."""
    n_models = mx.cost.shape[0]

    def best(pick: Callable[[CascadeResult], list[list[Choice]]]) -> list[list[Choice]]:
        # Each method compares cascades by what it minimised: the smooth model's objective for
        # its own choices (comparing them on the raw rows would bring the overfitting back),
        # the training rows' for the single models (the model's mean matches them).
        rows: list[list[Choice]] = []
        for k, lam_scaled in enumerate(LAMBDAS):
            row: list[Choice] = []
            for i, fold in enumerate(folds):
                lam = lam_scaled / _scale(fold, range(n_models), mx)
                pool = [Choice((m,), (), fold.singles[m]) for m in range(n_models)]
                pool += [pick(r)[k][i] for r in results]
                row.append(min(pool, key=lambda c: (c.score(lam), c.train.mean_cost)))
            rows.append(row)
        return rows

    by_cost = [float(np.mean([f.singles[m].mean_cost for f in folds])) for m in range(n_models)]
    cheap, dear = int(np.argmin(by_cost)), int(np.argmax(by_cost))
    lo_pq = _alone(folds, (cheap,), (), mx)
    hi_pq = _alone(folds, (dear,), (), mx)
    span = (lo_pq, hi_pq)
    tr = (by_cost[cheap], by_cost[dear])
    # The dearest model ends the range but is a point of the curve only if some λ picks it.
    g, gs = _curve(best(lambda r: r.grid), folds, mx, res, (lo_pq,), span, tr, describe)
    t, ts = _curve(best(lambda r: r.tuned), folds, mx, res, (lo_pq,), span, tr, describe)
    x, xs = _curve(best(lambda r: r.exact), folds, mx, res, (lo_pq,), span, tr, describe)
    gain, gain_ci = _gain(g, t, gs, ts)
    x_gain, x_gain_ci = _gain(g, x, gs, xs)
    rng = (float(lo_pq.cost.mean()), float(hi_pq.cost.mean()))
    name = "(all cascades and single models)"
    return Tradeoff(name, rng, g, t, gain, gain_ci, x, x_gain, x_gain_ci)
