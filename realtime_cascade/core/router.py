"""An online router: predicts from request features whether the first tier will be preempted.

Logistic regression trained by stochastic gradient descent, one turn at a time. Pure and
deterministic; the runtime owns one per cascade profile and feeds it each turn's outcome.
Turns that skipped the first tier carry no label (we never saw the light tier try), so they do
not update it: the router can only learn from turns it let through, which biases it towards
trying the light tier, the cheap mistake.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec


class RouterEstimate(msgspec.Struct, frozen=True):
    p_preempt: float
    observations: int


class OnlineRouter:
    __slots__ = ("_l2", "_lr", "_weights", "observations")

    def __init__(self, dims: int = 5, learning_rate: float = 0.3, l2: float = 1e-3) -> None:
        self._weights = [0.0] * dims
        self._lr = learning_rate
        self._l2 = l2
        self.observations = 0

    @property
    def weights(self) -> tuple[float, ...]:
        return tuple(self._weights)

    def predict(self, x: Sequence[float]) -> float:
        z = sum(w * xi for w, xi in zip(self._weights, x, strict=True))
        z = max(-30.0, min(30.0, z))
        return 1.0 / (1.0 + math.exp(-z))

    def estimate(self, x: Sequence[float]) -> RouterEstimate:
        return RouterEstimate(self.predict(x), self.observations)

    def observe(self, x: Sequence[float], preempted: bool) -> None:
        err = self.predict(x) - (1.0 if preempted else 0.0)
        w = self._weights
        for i, xi in enumerate(x):
            w[i] -= self._lr * (err * xi + self._l2 * w[i])
        self.observations += 1
