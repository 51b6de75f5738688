"""Distributions: percentiles from the full sample (no histograms, no sampling).

Percentiles interpolate linearly between the closest ranks (numpy's default ``linear``
method, Hyndman & Fan type 7): for sorted values ``x[0..n-1]`` the q-quantile sits at rank
``h = (n - 1) * q``, between ``x[floor(h)]`` and ``x[ceil(h)]``. With fewer than about
``1 / (1 - q)`` values a high percentile is close to the maximum; ``n`` is always reported
beside it so a reader can tell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

PERCENTILES = (50, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of values already sorted ascending."""
    n = len(sorted_values)
    if n == 0:
        raise ValueError("percentile of an empty sample")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is outside [0, 100]")
    h = (n - 1) * q / 100.0
    lo = math.floor(h)
    hi = math.ceil(h)
    if lo == hi:
        return float(sorted_values[lo])
    frac = h - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


def summarize(values: Iterable[float], digits: int = 3) -> dict[str, float | int | None]:
    """``{"n", "mean", "min", "p50", "p95", "p99", "max"}``; the statistics are None when empty."""
    xs = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    out: dict[str, float | int | None] = {"n": len(xs)}
    if not xs:
        out.update({"mean": None, "min": None, "max": None})
        out.update({f"p{p}": None for p in PERCENTILES})
        return out
    out["mean"] = round(math.fsum(xs) / len(xs), digits)
    out["min"] = round(xs[0], digits)
    for p in PERCENTILES:
        out[f"p{p}"] = round(percentile(xs, p), digits)
    out["max"] = round(xs[-1], digits)
    return out


def ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is 0."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def cdf_points(values: Iterable[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF as step points: sorted values and their cumulative fractions."""
    xs = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    n = len(xs)
    return xs, [(i + 1) / n for i in range(n)]
