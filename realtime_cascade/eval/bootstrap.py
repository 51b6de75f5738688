"""Seeded, paired bootstrap over held-out queries.

One resample is a multinomial count per held-out query (the number of times it is drawn), so a
statistic that is a ratio of sums is ``counts @ values``: every policy, baseline and curve of a
group is resampled with the *same* counts, which makes differences (savings, accuracy deltas,
AUC gains) paired. The policies themselves were chosen on training rows and stay fixed; the
interval is for the held-out sample, not for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Resamples:
    counts: Floats  # (resamples, held-out queries); every row sums to the query count

    @classmethod
    def draw(cls, n: int, resamples: int, seed: int) -> Resamples:
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
        return cls(counts.astype(np.float64))

    @property
    def n(self) -> int:
        return int(self.counts.shape[1])

    def means(self, values: Floats) -> Floats:
        """Resampled means of one vector (``(queries,)``) or of rows (``(k, queries)``):
        ``(resamples,)`` or ``(resamples, k)``."""
        return np.asarray(self.counts @ values.T / self.n, dtype=np.float64)


def interval(samples: Floats, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap samples (nan samples, e.g. 0/0, are left out)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return (float(lo), float(hi))
