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
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from .calibration import LogisticFit, fit_logistic
from .errors import LogContentError
from .logs import Group

ConfidenceKind = Literal["calibrated", "raw"]

MAX_ALL_SUBSETS = 6  # 57 cascades of 6 models; beyond that only pairs and prefixes
MAX_LEVELS = 63  # threshold quantiles tried per stage of a pair
MAX_GRID = 256  # threshold vectors tried per longer cascade (a product grid, else tied levels)
TIED_LEVELS = 15
CURVE_POINTS = 25
_EPS = 1e-9


class Totals(msgspec.Struct, frozen=True):
    """Sums over a set of queries (pooled by adding)."""

    n: int = 0
    cost: float = 0.0
    correct: float = 0.0
    latency: float = 0.0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.n + other.n,
            self.cost + other.cost,
            self.correct + other.correct,
            self.latency + other.latency,
        )

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def mean_cost(self) -> float:
        return self.cost / self.n if self.n else 0.0

    @property
    def mean_latency(self) -> float:
        return self.latency / self.n if self.n else 0.0


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


class Fold(msgspec.Struct, frozen=True):
    candidates: tuple[Candidate, ...]  # the singles first, in cost order, then the cascades
    singles: tuple[Candidate, ...]


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
    last = len(stages) - 1
    cost = correct = latency = 0.0
    for q in queries:
        for s, m in enumerate(stages):
            cost += group.cost[m][q]
            latency += group.latency[m][q]
            if s == last or conf[m][q] >= thresholds[s]:
                correct += group.correct[m][q]
                break
    return Totals(len(queries), cost, correct, latency)


def calibrate(group: Group, train: Sequence[int]) -> list[LogisticFit]:
    return [
        fit_logistic([group.confidence[m][q] for q in train], [group.correct[m][q] for q in train])
        for m in range(len(group.models))
    ]


def run_fold(group: Group, train: Sequence[int], test: Sequence[int], kind: ConfidenceKind) -> Fold:
    """Every candidate policy of the group, fitted on ``train``, scored on both sides."""
    n_models = len(group.models)
    if kind == "calibrated":
        fits = calibrate(group, train)
        conf: Sequence[Sequence[float]] = [
            [fits[m](x) for x in group.confidence[m]] for m in range(n_models)
        ]
    else:
        conf = group.confidence
    ranked = [sorted(conf[m][q] for q in train) for m in range(n_models)]
    singles = [
        Candidate(
            Policy((group.models[m],)),
            score((m,), (), conf, group, train),
            score((m,), (), conf, group, test),
        )
        for m in range(n_models)
    ]
    found: list[Candidate] = []
    for stages in cascades(n_models):
        names = tuple(group.models[m] for m in stages)
        seen: set[tuple[float, ...]] = set()
        for levels in threshold_levels(len(stages) - 1):
            th = tuple(quantile(ranked[m], lv) for m, lv in zip(stages[:-1], levels, strict=True))
            if th in seen:
                continue
            seen.add(th)
            found.append(
                Candidate(
                    Policy(names, th),
                    score(stages, th, conf, group, train),
                    score(stages, th, conf, group, test),
                )
            )
    return Fold(tuple(singles + found), tuple(singles))


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


def cheapest_reaching(cands: Sequence[Candidate], accuracy: float) -> Candidate | None:
    """The cheapest (on train) candidate whose train accuracy reaches ``accuracy``."""
    ok = [c for c in cands if c.train.accuracy >= accuracy - _EPS]
    return min(ok, key=lambda c: (c.train.mean_cost, -c.train.accuracy)) if ok else None


def most_accurate_within(cands: Sequence[Candidate], cost: float) -> Candidate | None:
    """The most accurate (on train) candidate whose train mean cost is within ``cost``."""
    ok = [c for c in cands if c.train.mean_cost <= cost * (1 + _EPS) + 1e-15]
    return max(ok, key=lambda c: (c.train.accuracy, -c.train.mean_cost)) if ok else None


# --- reports ------------------------------------------------------------------------------


class ModelReport(msgspec.Struct, frozen=True):
    name: str
    accuracy: float  # on held-out rows
    mean_cost_usd: float
    mean_latency_ms: float
    calibration: LogisticFit  # P(correct | raw_confidence), fit on train rows (all, under CV)


class Operating(msgspec.Struct, frozen=True):
    """Held-out result of the policies chosen on train (one per fold) for one target."""

    target_accuracy: float
    accuracy: float
    accuracy_vs_target_pts: float  # >= 0: the target was met on held-out rows
    mean_cost_usd: float
    cost_saving: float | None  # 1 - cost / the single model's cost (None when that is free)
    mean_latency_ms: float
    policies: list[str]


class Comparison(msgspec.Struct, frozen=True):
    """A single model, and what deferral does at its accuracy (and 1 point under) and cost."""

    model: str
    accuracy: float
    mean_cost_usd: float
    at_accuracy: Operating | None
    at_accuracy_minus_1pt: Operating | None
    at_cost: Operating | None


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
    reference_model: str
    curve: list[CurvePoint]
    comparisons: list[Comparison]  # one per single model; the reference's is the headline
    cascades: list[CascadeReport]  # the reference comparison restricted to each cascade


Chooser = Callable[[Sequence[Candidate], float], Candidate | None]


def _operate(
    folds: Sequence[Fold],
    pool: Callable[[Fold], Sequence[Candidate]],
    choose: Chooser,
    goal: Callable[[Fold], float],
    target_accuracy: float,
    baseline_cost: float,
    kind: ConfidenceKind,
) -> Operating | None:
    total = Totals()
    policies: list[str] = []
    for fold in folds:
        pick = choose(pool(fold), goal(fold))
        if pick is None:
            return None
        total = total + pick.test
        policies.append(pick.policy.describe(kind))
    return Operating(
        target_accuracy=target_accuracy,
        accuracy=total.accuracy,
        accuracy_vs_target_pts=100.0 * (total.accuracy - target_accuracy),
        mean_cost_usd=total.mean_cost,
        cost_saving=1.0 - total.mean_cost / baseline_cost if baseline_cost > 0 else None,
        mean_latency_ms=total.mean_latency,
        policies=policies,
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
) -> Comparison:
    """Deferral against single model ``m``: targets come from that model's train numbers."""
    ref = _single_held_out(folds, m)

    def acc(f: Fold) -> float:
        return f.singles[m].train.accuracy

    def cost(f: Fold) -> float:
        return f.singles[m].train.mean_cost

    def minus(f: Fold) -> float:
        return acc(f) - 0.01

    args = (ref.mean_cost, kind)
    return Comparison(
        model=folds[0].singles[m].policy.models[0],
        accuracy=ref.accuracy,
        mean_cost_usd=ref.mean_cost,
        at_accuracy=_operate(folds, pool, cheapest_reaching, acc, ref.accuracy, *args),
        at_accuracy_minus_1pt=_operate(
            folds, pool, cheapest_reaching, minus, ref.accuracy - 0.01, *args
        ),
        at_cost=_operate(folds, pool, most_accurate_within, cost, ref.accuracy, *args),
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


def evaluate_group(
    group: Group,
    *,
    folds: int = 5,
    seed: int = 0,
    kind: ConfidenceKind = "calibrated",
    curve_points: int = CURVE_POINTS,
) -> GroupReport:
    plan = split_folds(group, folds, seed)
    done = [run_fold(group, train, test, kind) for train, test in plan]
    fit_rows = plan[0][0] if group.has_split else list(range(len(group.queries)))
    fits = calibrate(group, fit_rows)
    held = [_single_held_out(done, m) for m in range(len(group.models))]
    models = [
        ModelReport(name, t.accuracy, t.mean_cost, t.mean_latency, fit)
        for name, t, fit in zip(group.models, held, fits, strict=True)
    ]
    # Most accurate on held-out rows; among equals, the cheapest (first in cost order).
    ref = max(range(len(models)), key=lambda m: (models[m].accuracy, -m))
    per_cascade = [
        CascadeReport(
            " > ".join(group.models[m] for m in stages),
            compare(done, ref, kind, pool=_only(tuple(group.models[m] for m in stages))),
        )
        for stages in cascades(len(group.models))
    ]
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
        curve=curve(done, kind, curve_points),
        comparisons=[compare(done, m, kind) for m in range(len(models))],
        cascades=per_cascade,
    )
