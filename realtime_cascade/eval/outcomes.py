"""What a cascade does to each query: the group's log as arrays, and the per-query outcome of
running a cascade with given thresholds (numpy, so that thousands of candidate policies and
thousands of bootstrap resamples stay cheap).

A cascade asks its models in turn and stops at the first whose confidence is at least its
threshold; the last one always answers. Every model asked is paid for: costs and latencies add
up (the offline, post-hoc cascade; mid-stream handoff is the runtime's business).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
from numpy.typing import NDArray

from .logs import Group

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


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


@dataclass(frozen=True)
class Matrix:
    """A group's log as (model, query) arrays, models in cost order."""

    correct: Floats  # 0.0 or 1.0
    confidence: Floats  # raw log-probabilities (-inf allowed)
    cost: Floats
    latency: Floats

    @classmethod
    def of(cls, group: Group) -> Matrix:
        return cls(
            np.asarray(group.correct, dtype=np.float64),
            np.asarray(group.confidence, dtype=np.float64),
            np.asarray(group.cost, dtype=np.float64),
            np.asarray(group.latency, dtype=np.float64),
        )


@dataclass(frozen=True)
class PerQuery:
    """One policy's outcome on each of a list of queries."""

    cost: Floats
    correct: Floats
    latency: Floats

    def totals(self) -> Totals:
        return Totals(
            int(self.cost.size),
            float(self.cost.sum()),
            float(self.correct.sum()),
            float(self.latency.sum()),
        )

    @staticmethod
    def concat(parts: Sequence[PerQuery]) -> PerQuery:
        return PerQuery(
            np.concatenate([p.cost for p in parts]),
            np.concatenate([p.correct for p in parts]),
            np.concatenate([p.latency for p in parts]),
        )


def stop_stage(thresholds: Sequence[float], conf: Floats) -> Ints:
    """Per query (columns of ``conf``, one row per stage), the stage that answers."""
    stages = conf.shape[0]
    stop = np.full(conf.shape[1], stages - 1, dtype=np.int64)
    open_ = np.ones(conf.shape[1], dtype=bool)
    for s in range(stages - 1):
        accept = open_ & (conf[s] >= thresholds[s])
        stop[accept] = s
        open_ &= ~accept
    return stop


def run_cascade(
    stages: Sequence[int],
    thresholds: Sequence[float],
    conf: Floats,
    mx: Matrix,
    queries: Ints,
) -> PerQuery:
    """Per-query cost, correctness and latency of a cascade (``stages`` index the models)."""
    rows = np.asarray(stages, dtype=np.int64)
    stop = stop_stage(thresholds, conf[np.ix_(rows, queries)])
    cols = np.arange(queries.size)
    cum_cost = np.cumsum(mx.cost[np.ix_(rows, queries)], axis=0)
    cum_latency = np.cumsum(mx.latency[np.ix_(rows, queries)], axis=0)
    correct = mx.correct[np.ix_(rows, queries)]
    return PerQuery(cum_cost[stop, cols], correct[stop, cols], cum_latency[stop, cols])
