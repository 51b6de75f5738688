"""Request features for offline router evaluation.

``request``: the five cheap features the runtime's router uses (``core.signals``).
``request+words``: those plus a hashed bag of words, L2-normalised, so the same online logistic
router can tell subjects and task types apart. Hashing uses CRC-32, not ``hash()``, because the
latter is salted per process and would make runs irreproducible.

The request features are unbounded (a long MMLU passage has dozens of clauses), which makes
plain SGD at the router's default step oscillate; ``Scaler`` standardises them with statistics
of the training queries only.
"""

from __future__ import annotations

import math
import re
import statistics
import zlib
from collections.abc import Sequence
from typing import Literal

import msgspec

from ..core.signals import request_features

FeatureSet = Literal["request", "request+words"]
FEATURE_SETS: tuple[FeatureSet, ...] = ("request", "request+words")
WORD_DIMS = 512
REQUEST_DIMS = 5  # the constant first, then words, clauses, numbers, questions

_WORD = re.compile(r"[a-z0-9]+")


def hashed_words(text: str, dims: int = WORD_DIMS) -> list[float]:
    v = [0.0] * dims
    for w in _WORD.findall(text.lower()):
        v[zlib.crc32(w.encode()) % dims] += 1.0
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v] if norm > 0 else v


def vectorize(text: str, features: FeatureSet) -> list[float]:
    base = list(request_features(text).vector())
    if features == "request":
        return base
    return base + hashed_words(text)


def dims(features: FeatureSet) -> int:
    return len(vectorize("", features))


class Scaler(msgspec.Struct, frozen=True):
    """z-scores for the request features (the constant and the hashed words pass through)."""

    mean: tuple[float, ...]
    sd: tuple[float, ...]

    @classmethod
    def fit(cls, vectors: Sequence[Sequence[float]]) -> Scaler:
        cols = [[v[k] for v in vectors] for k in range(1, REQUEST_DIMS)]
        return cls(
            tuple(statistics.fmean(c) for c in cols), tuple(statistics.pstdev(c) for c in cols)
        )

    def __call__(self, v: Sequence[float]) -> list[float]:
        scaled = [
            (v[k] - m) / s if s > 0 else 0.0
            for k, m, s in zip(range(1, REQUEST_DIMS), self.mean, self.sd, strict=True)
        ]
        return [v[0], *scaled, *v[REQUEST_DIMS:]]
