"""Offline evaluation of confidence-based deferral on a per-query log (pure functions).

The rules, in the order they apply:

1. A group's models are called cheapest first (``logs.Group.models``). A *cascade* is an ordered
   subset of them, two or more long: every subset while there are at most ``MAX_ALL_SUBSETS``
   models, otherwise every pair and every prefix.
2. A cascade asks its models in turn and stops at the first whose confidence is at least its
   threshold; the last one always answers. Every model asked is paid for: costs and latencies
   add up (the offline, post-hoc cascade; mid-stream handoff is the runtime's business).
3. Confidence is the raw log-probability or, by default, P(correct) from a logistic fit per
   model (``calibration.fit_logistic``). Fits and thresholds (quantiles of the confidences)
   come from training rows only.
4. Which cascade and thresholds run at an operating point (a cost cap, an accuracy target) is
   chosen on training rows; held-out rows are only scored. With a ``split`` column that is one
   train/test fold. Without it, k-fold cross-validation: each query is held out exactly once,
   and held-out totals are pooled over the folds.
5. Baselines are the single models on the same held-out rows. The *reference* model is the
   single model most accurate on held-out rows (the strongest baseline in hindsight, which is
   the conservative comparison for the cascade).
6. The headline is reported twice (``Headline``). *Train-chosen*: against the model most
   accurate on train, at its train accuracy, policies chosen on train — what a deployment that
   only has the training rows would get. *Hindsight*: against the model most accurate held out,
   at its held-out accuracy, policies chosen on the held-out rows — a ceiling, not a result.
   A model whose train and held-out accuracies differ by more than their standard error is
   named in ``warnings`` (train/test shift makes train-chosen targets miss).
7. Intervals are a seeded, paired bootstrap over held-out queries (``bootstrap``) with the
   chosen policies held fixed. Calibration quality (ECE, Brier) is on held-out rows, of the
   P(correct) fitted on train and of ``exp(raw_confidence)`` as it stands.
8. Per cascade and per group, the cost–error trade-off of grid against tuned thresholds and its
   normalised area (``tradeoff``).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

from .bootstrap import Resamples, interval
from .calibration import LogisticFit, Quality, fit_logistic, quality
from .errors import LogContentError
from .logs import Group
from .outcomes import Floats, Matrix, PerQuery, Totals, run_cascade
from .tradeoff import (
    CascadeResult,
    FoldInput,
    Tradeoff,
    cascade_tradeoff,
    group_tradeoff,
)

ConfidenceKind = Literal["calibrated", "raw"]
Side = Literal["train", "test"]

MAX_ALL_SUBSETS = 6  # 57 cascades of 6 models; beyond that only pairs and prefixes
MAX_LEVELS = 63  # threshold quantiles tried per stage of a pair
MAX_GRID = 256  # threshold vectors tried per longer cascade (a product grid, else tied levels)
TIED_LEVELS = 15
CURVE_POINTS = 25
_EPS = 1e-9


class Policy(msgspec.Struct, frozen=True):
    models: tuple[str, ...]
    thresholds: tuple[float, ...] = ()  # defer from models[i] when its confidence < thresholds[i]

    def describe(self, kind: ConfidenceKind) -> str:
        if not self.thresholds:
            return self.models[0]
        what = "P" if kind == "calibrated" else "lp"
        cuts = ", ".join(f"{what}<{t:.3g}" for t in self.thresholds)
        return f"{' > '.join(self.models)} [defer {cuts}]"

    @property
    def cascade(self) -> str:
        return " > ".join(self.models)


class Candidate(msgspec.Struct, frozen=True):
    policy: Policy
    train: Totals
    test: Totals
    stages: tuple[int, ...] = ()  # indices of policy.models (empty: no per-query data)

    def on(self, side: Side) -> Totals:
        return self.train if side == "train" else self.test


class Fold(msgspec.Struct, frozen=True):
    candidates: tuple[Candidate, ...]  # the singles first, in cost order, then the cascades
    singles: tuple[Candidate, ...]
    data: FoldInput | None = None  # the rows and confidences, where there is a per-query log


# --- the policy space ---------------------------------------------------------------------


def cascades(m: int) -> list[tuple[int, ...]]:
    """Ordered subsets (indices into the cost-ordered models) that are tried as cascades."""
    if m <= MAX_ALL_SUBSETS:
        return [c for k in range(2, m + 1) for c in itertools.combinations(range(m), k)]
    pairs = list(itertools.combinations(range(m), 2))
    return pairs + [tuple(range(k)) for k in range(3, m + 1)]


def threshold_levels(stages: int) -> list[tuple[float, ...]]:
    """Quantile levels, one per deferring stage, for the thresholds tried on a cascade.

    A product grid while it stays within ``MAX_GRID`` vectors with three or more levels per
    stage; otherwise every stage uses the same level (a one-parameter family), so that long
    cascades stay affordable rather than being dropped.
    """
    g = min(MAX_LEVELS, int(MAX_GRID ** (1.0 / stages) + _EPS))
    if g >= 3:
        levels = [i / (g + 1) for i in range(1, g + 1)]
        return list(itertools.product(levels, repeat=stages))
    return [(i / (TIED_LEVELS + 1),) * stages for i in range(1, TIED_LEVELS + 1)]


def quantile(sorted_values: Sequence[float], level: float) -> float:
    """The value below which about ``level`` of the values lie (deferring on ``<`` it)."""
    return sorted_values[min(len(sorted_values) - 1, int(level * len(sorted_values)))]


def score(
    stages: Sequence[int],
    thresholds: Sequence[float],
    conf: Sequence[Sequence[float]],
    group: Group,
    queries: Sequence[int],
) -> Totals:
    """What a cascade costs and gets right on ``queries`` (rule 2)."""
    return run_cascade(
        stages,
        thresholds,
        np.asarray(conf, dtype=np.float64),
        Matrix.of(group),
        np.asarray(queries, dtype=np.int64),
    ).totals()


def calibrate(group: Group, train: Sequence[int]) -> list[LogisticFit]:
    return [
        fit_logistic([group.confidence[m][q] for q in train], [group.correct[m][q] for q in train])
        for m in range(len(group.models))
    ]


def confidences(mx: Matrix, fits: Sequence[LogisticFit], kind: ConfidenceKind) -> Floats:
    """What the thresholds apply to: P(correct) from each model's fit, or the raw logprob."""
    if kind == "raw":
        return mx.confidence
    return np.vstack([fit.probabilities(row) for fit, row in zip(fits, mx.confidence, strict=True)])


def run_fold(
    group: Group,
    train: Sequence[int],
    test: Sequence[int],
    kind: ConfidenceKind,
    mx: Matrix | None = None,
) -> Fold:
    """Every candidate policy of the group, fitted on ``train``, scored on both sides."""
    mx = mx if mx is not None else Matrix.of(group)
    n_models = len(group.models)
    tr = np.asarray(train, dtype=np.int64)
    te = np.asarray(test, dtype=np.int64)
    conf = confidences(mx, calibrate(group, train) if kind == "calibrated" else [], kind)
    ranked = [sorted(float(x) for x in conf[m, tr]) for m in range(n_models)]

    def candidate(stages: tuple[int, ...], th: tuple[float, ...]) -> Candidate:
        names = tuple(group.models[m] for m in stages)
        return Candidate(
            Policy(names, th),
            run_cascade(stages, th, conf, mx, tr).totals(),
            run_cascade(stages, th, conf, mx, te).totals(),
            stages,
        )

    singles = [candidate((m,), ()) for m in range(n_models)]
    found: list[Candidate] = []
    for stages in cascades(n_models):
        seen: set[tuple[float, ...]] = set()
        for levels in threshold_levels(len(stages) - 1):
            th = tuple(quantile(ranked[m], lv) for m, lv in zip(stages[:-1], levels, strict=True))
            if th in seen:
                continue
            seen.add(th)
            found.append(candidate(stages, th))
    data = FoldInput(tr, te, conf, tuple(c.train for c in singles))
    return Fold(tuple(singles + found), tuple(singles), data)


def split_folds(group: Group, folds: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(train, test) index lists: the log's own split, else ``folds``-fold cross-validation."""
    if group.has_split:
        return [(group.indices("train"), group.indices("test"))]
    n = len(group.queries)
    if folds < 2:
        raise LogContentError(f"{group.key.label()}: cross-validation needs --folds >= 2")
    if n < 2 * folds:
        raise LogContentError(
            f"{group.key.label()}: {n} queries are too few for {folds}-fold cross-validation"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    chunks = [sorted(order[i::folds]) for i in range(folds)]
    return [
        (sorted(q for j, c in enumerate(chunks) if j != i for q in c), chunks[i])
        for i in range(folds)
    ]


# --- choosing on train --------------------------------------------------------------------


def cheapest_reaching(
    cands: Sequence[Candidate], accuracy: float, side: Side = "train"
) -> Candidate | None:
    """The cheapest (on ``side``) candidate whose accuracy there reaches ``accuracy``."""
    ok = [c for c in cands if c.on(side).accuracy >= accuracy - _EPS]
    return min(ok, key=lambda c: (c.on(side).mean_cost, -c.on(side).accuracy)) if ok else None


def most_accurate_within(
    cands: Sequence[Candidate], cost: float, side: Side = "train"
) -> Candidate | None:
    """The most accurate (on ``side``) candidate whose mean cost there is within ``cost``."""
    ok = [c for c in cands if c.on(side).mean_cost <= cost * (1 + _EPS) + 1e-15]
    return max(ok, key=lambda c: (c.on(side).accuracy, -c.on(side).mean_cost)) if ok else None


# --- reports ------------------------------------------------------------------------------


class ModelReport(msgspec.Struct, frozen=True):
    name: str
    accuracy: float  # on held-out rows
    mean_cost_usd: float
    mean_latency_ms: float
    calibration: LogisticFit  # P(correct | raw_confidence), fit on train rows (all, under CV)
    train_accuracy: float  # mean over folds
    shift_z: float | None  # (train - held-out accuracy) / its standard error; None: no spread
    calibrated_quality: Quality  # held out, of P(correct) fitted on the fold's train rows
    raw_quality: Quality  # held out, of exp(raw_confidence) taken as P(correct)


class Operating(msgspec.Struct, frozen=True):
    """Held-out result of the policies chosen (one per fold) for one target."""

    target_accuracy: float
    accuracy: float
    accuracy_vs_target_pts: float  # >= 0: the target was met on held-out rows
    mean_cost_usd: float
    cost_saving: float | None  # 1 - cost / the single model's cost (None when that is free)
    mean_latency_ms: float
    policies: list[str]
    accuracy_delta_pts: float = 0.0  # against the single model on the same held-out rows
    accuracy_delta_ci_pts: tuple[float, float] | None = None  # bootstrap, 95%
    cost_saving_ci: tuple[float, float] | None = None


class Comparison(msgspec.Struct, frozen=True):
    """A single model, and what deferral does at its accuracy (and 1 point under) and cost."""

    model: str
    accuracy: float
    mean_cost_usd: float
    at_accuracy: Operating | None
    at_accuracy_minus_1pt: Operating | None
    at_cost: Operating | None
    chosen_on: Side = "train"  # where targets and policies come from ("test": hindsight)


class Headline(msgspec.Struct, frozen=True):
    """Rule 6: the same comparison without and with hindsight."""

    train_chosen: Comparison  # against the model most accurate on train
    hindsight: Comparison  # against the model most accurate held out, chosen held out


class CurvePoint(msgspec.Struct, frozen=True):
    accuracy: float
    mean_cost_usd: float
    mean_latency_ms: float
    train_accuracy: float  # mean over folds
    train_mean_cost_usd: float
    policies: list[str]


class CascadeReport(msgspec.Struct, frozen=True):
    cascade: str
    vs_reference: Comparison


class GroupReport(msgspec.Struct, frozen=True):
    benchmark: str
    chain: str
    evaluation: str  # "train/test split" or "5-fold cross-validation"
    confidence: ConfidenceKind
    n_queries: int
    n_held_out: int
    models: list[ModelReport]  # cost order
    reference_model: str  # most accurate held out
    train_reference_model: str  # most accurate on train
    headline: Headline
    warnings: list[str]
    curve: list[CurvePoint]
    comparisons: list[Comparison]  # one per single model, targets from its train numbers
    cascades: list[CascadeReport]  # the reference comparison restricted to each cascade
    tradeoff: Tradeoff | None  # grid against tuned thresholds over all cascades (rule 8)
    cascade_tradeoffs: list[Tradeoff]
    bootstrap_resamples: int


Chooser = Callable[[Sequence[Candidate], float, Side], Candidate | None]


@dataclass(frozen=True)
class Uncertainty:
    """What the intervals need: the per-query log and one set of resamples of held-out rows."""

    mx: Matrix
    res: Resamples

    def held_out(self, folds: Sequence[Fold], picks: Sequence[Candidate]) -> PerQuery:
        parts = []
        for fold, pick in zip(folds, picks, strict=True):
            assert fold.data is not None and pick.stages  # built by run_fold
            d = fold.data
            parts.append(run_cascade(pick.stages, pick.policy.thresholds, d.conf, self.mx, d.test))
        return PerQuery.concat(parts)


def _operate(
    folds: Sequence[Fold],
    pool: Callable[[Fold], Sequence[Candidate]],
    choose: Chooser,
    goal: Callable[[Fold], float],
    target_accuracy: float,
    m: int,
    kind: ConfidenceKind,
    side: Side,
    unc: Uncertainty | None,
) -> Operating | None:
    total = Totals()
    policies: list[str] = []
    picks: list[Candidate] = []
    for fold in folds:
        pick = choose(pool(fold), goal(fold), side)
        if pick is None:
            return None
        total = total + pick.test
        picks.append(pick)
        policies.append(pick.policy.describe(kind))
    ref = _single_held_out(folds, m)
    delta_ci = saving_ci = None
    if unc is not None:
        mine = unc.held_out(folds, picks)
        base = unc.held_out(folds, [f.singles[m] for f in folds])
        delta_ci = interval(100.0 * unc.res.means(mine.correct - base.correct))
        with np.errstate(divide="ignore", invalid="ignore"):
            saving_ci = interval(1.0 - unc.res.means(mine.cost) / unc.res.means(base.cost))
    return Operating(
        target_accuracy=target_accuracy,
        accuracy=total.accuracy,
        accuracy_vs_target_pts=100.0 * (total.accuracy - target_accuracy),
        mean_cost_usd=total.mean_cost,
        cost_saving=1.0 - total.mean_cost / ref.mean_cost if ref.mean_cost > 0 else None,
        mean_latency_ms=total.mean_latency,
        policies=policies,
        accuracy_delta_pts=100.0 * (total.accuracy - ref.accuracy),
        accuracy_delta_ci_pts=delta_ci,
        cost_saving_ci=saving_ci if ref.mean_cost > 0 else None,
    )


def _single_held_out(folds: Sequence[Fold], m: int) -> Totals:
    total = Totals()
    for fold in folds:
        total = total + fold.singles[m].test
    return total


def compare(
    folds: Sequence[Fold],
    m: int,
    kind: ConfidenceKind,
    pool: Callable[[Fold], Sequence[Candidate]] = lambda f: f.candidates,
    side: Side = "train",
    unc: Uncertainty | None = None,
) -> Comparison:
    """Deferral against single model ``m``: targets are that model's numbers on ``side`` and
    policies are chosen there ("test" is hindsight); results are always held out."""
    ref = _single_held_out(folds, m)

    def acc(f: Fold) -> float:
        return f.singles[m].on(side).accuracy

    def cost(f: Fold) -> float:
        return f.singles[m].on(side).mean_cost

    def minus(f: Fold) -> float:
        return acc(f) - 0.01

    args = (m, kind, side, unc)
    return Comparison(
        model=folds[0].singles[m].policy.models[0],
        accuracy=ref.accuracy,
        mean_cost_usd=ref.mean_cost,
        at_accuracy=_operate(folds, pool, cheapest_reaching, acc, ref.accuracy, *args),
        at_accuracy_minus_1pt=_operate(
            folds, pool, cheapest_reaching, minus, ref.accuracy - 0.01, *args
        ),
        at_cost=_operate(folds, pool, most_accurate_within, cost, ref.accuracy, *args),
        chosen_on=side,
    )


def budgets(fold: Fold, points: int) -> list[float]:
    """Cost caps for the curve: log-spaced from the cheapest model to the dearest policy."""
    lo = min(c.train.mean_cost for c in fold.singles)
    hi = max(c.train.mean_cost for c in fold.candidates)
    if points < 2 or hi <= lo:
        return [hi]
    if lo <= 0:
        return [lo + (hi - lo) * j / (points - 1) for j in range(points)]
    return [lo * (hi / lo) ** (j / (points - 1)) for j in range(points)]


def curve(folds: Sequence[Fold], kind: ConfidenceKind, points: int) -> list[CurvePoint]:
    """Held-out cost–accuracy curve: at each cost cap (per fold, from train costs), the most
    accurate policy on train; consecutive caps that choose the same policies are merged."""
    caps = [budgets(f, points) for f in folds]
    out: list[CurvePoint] = []
    last: list[Policy] | None = None
    for j in range(len(caps[0])):
        picks = [most_accurate_within(f.candidates, c[j]) for f, c in zip(folds, caps, strict=True)]
        chosen = [p for p in picks if p is not None]
        if len(chosen) != len(picks):
            continue
        policies = [p.policy for p in chosen]
        if policies == last:
            continue
        last = policies
        test = Totals()
        for p in chosen:
            test = test + p.test
        out.append(
            CurvePoint(
                accuracy=test.accuracy,
                mean_cost_usd=test.mean_cost,
                mean_latency_ms=test.mean_latency,
                train_accuracy=sum(p.train.accuracy for p in chosen) / len(chosen),
                train_mean_cost_usd=sum(p.train.mean_cost for p in chosen) / len(chosen),
                policies=[p.policy.describe(kind) for p in chosen],
            )
        )
    return out


def _only(names: tuple[str, ...]) -> Callable[[Fold], Sequence[Candidate]]:
    def pool(fold: Fold) -> Sequence[Candidate]:
        return [c for c in fold.candidates if c.policy.models == names]

    return pool


SHIFT_Z = 1.0  # warn when train and held-out accuracy differ by more than one standard error


def _shift_z(train_acc: float, n_train: float, test_acc: float, n_test: int) -> float | None:
    var = train_acc * (1 - train_acc) / n_train + test_acc * (1 - test_acc) / n_test
    if var <= 0:
        return None if train_acc == test_acc else math.copysign(math.inf, train_acc - test_acc)
    return (train_acc - test_acc) / math.sqrt(var)


def _qualities(
    group: Group, mx: Matrix, plan: Sequence[tuple[list[int], list[int]]]
) -> list[tuple[Quality, Quality]]:
    """Per model, held-out (calibrated, raw) quality; each fold's fit scores its own test rows."""
    test = np.concatenate([np.asarray(t, dtype=np.int64) for _, t in plan])
    calibrated = np.concatenate(
        [
            np.vstack(
                [
                    fit.probabilities(mx.confidence[m, np.asarray(te, dtype=np.int64)])
                    for m, fit in enumerate(calibrate(group, tr))
                ]
            )
            for tr, te in plan
        ],
        axis=1,
    )
    y = mx.correct[:, test] > 0.5
    raw = np.exp(mx.confidence[:, test])
    return [(quality(calibrated[m], y[m]), quality(raw[m], y[m])) for m in range(len(group.models))]


def evaluate_group(
    group: Group,
    *,
    folds: int = 5,
    seed: int = 0,
    kind: ConfidenceKind = "calibrated",
    curve_points: int = CURVE_POINTS,
    resamples: int = 0,
    tradeoffs: bool = True,
) -> GroupReport:
    """Every number of rule 1-8 for one group; ``resamples`` 0 leaves out the intervals."""
    plan = split_folds(group, folds, seed)
    mx = Matrix.of(group)
    done = [run_fold(group, train, test, kind, mx) for train, test in plan]
    fit_rows = plan[0][0] if group.has_split else list(range(len(group.queries)))
    fits = calibrate(group, fit_rows)
    n_models = len(group.models)
    held = [_single_held_out(done, m) for m in range(n_models)]
    train_acc = [
        float(np.mean([f.singles[m].train.accuracy for f in done])) for m in range(n_models)
    ]
    n_train = float(np.mean([len(tr) for tr, _ in plan]))
    shifts = [_shift_z(train_acc[m], n_train, held[m].accuracy, held[m].n) for m in range(n_models)]
    quals = _qualities(group, mx, plan)
    models = [
        ModelReport(name, t.accuracy, t.mean_cost, t.mean_latency, fit, tacc, z, q[0], q[1])
        for name, t, fit, tacc, z, q in zip(
            group.models, held, fits, train_acc, shifts, quals, strict=True
        )
    ]
    warnings = [
        f"{r.name}: train accuracy {100 * r.train_accuracy:.1f}% vs held-out "
        f"{100 * r.accuracy:.1f}% ({'' if r.shift_z is None else f'{r.shift_z:+.1f} '}standard "
        "errors): train-chosen targets for it may miss held out"
        for r in models
        if r.shift_z is not None and abs(r.shift_z) > SHIFT_Z
    ]
    unc = (
        Uncertainty(mx, Resamples.draw(sum(len(t) for _, t in plan), resamples, seed))
        if resamples > 0
        else None
    )
    # Most accurate on held-out rows (train rows); among equals, the cheapest (first in order).
    ref = max(range(n_models), key=lambda m: (models[m].accuracy, -m))
    train_ref = max(range(n_models), key=lambda m: (train_acc[m], -m))
    per_cascade = [
        CascadeReport(
            " > ".join(group.models[m] for m in stages),
            compare(done, ref, kind, pool=_only(tuple(group.models[m] for m in stages))),
        )
        for stages in cascades(n_models)
    ]
    trade, per_trade = _tradeoffs(done, mx, kind, group, unc) if tradeoffs else (None, [])
    return GroupReport(
        benchmark=group.key.benchmark,
        chain=group.key.chain,
        evaluation=(
            "train/test split" if group.has_split else f"{len(plan)}-fold cross-validation"
        ),
        confidence=kind,
        n_queries=len(group.queries),
        n_held_out=sum(len(test) for _, test in plan),
        models=models,
        reference_model=models[ref].name,
        train_reference_model=models[train_ref].name,
        headline=Headline(
            train_chosen=compare(done, train_ref, kind, unc=unc),
            hindsight=compare(done, ref, kind, side="test", unc=unc),
        ),
        warnings=warnings,
        curve=curve(done, kind, curve_points),
        comparisons=[compare(done, m, kind) for m in range(n_models)],
        cascades=per_cascade,
        tradeoff=trade,
        cascade_tradeoffs=per_trade,
        bootstrap_resamples=resamples,
    )


def _tradeoffs(
    done: Sequence[Fold], mx: Matrix, kind: ConfidenceKind, group: Group, unc: Uncertainty | None
) -> tuple[Tradeoff, list[Tradeoff]]:
    data = [f.data for f in done if f.data is not None]
    res = unc.res if unc is not None else None

    def describe(stages: tuple[int, ...], th: tuple[float, ...]) -> str:
        return Policy(tuple(group.models[m] for m in stages), th).describe(kind)

    results: list[CascadeResult] = []
    for stages in cascades(len(group.models)):
        grids = [
            [(c.policy.thresholds, c.train) for c in f.candidates if c.stages == stages]
            for f in done
        ]
        name = " > ".join(group.models[m] for m in stages)
        results.append(cascade_tradeoff(stages, name, data, grids, mx, res, describe))
    return group_tradeoff(results, data, mx, res, describe), [r.report for r in results]
