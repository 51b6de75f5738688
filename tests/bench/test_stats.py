"""Percentile math: linear interpolation between closest ranks, checked by hand."""

from __future__ import annotations

import math
import random

import pytest

from bench.stats import cdf_points, percentile, ratio, summarize


def test_percentile_by_hand() -> None:
    xs = [10.0, 20.0, 30.0, 40.0]
    # rank h = (n - 1) * q: 0.5 -> 1.5 (between 20 and 30), 0.99 -> 2.97
    assert percentile(xs, 50) == 25.0
    assert percentile(xs, 99) == pytest.approx(30.0 + 0.97 * 10.0)
    assert percentile(xs, 0) == 10.0
    assert percentile(xs, 100) == 40.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_matches_the_definition_on_random_samples() -> None:
    rng = random.Random(5)
    for n in (2, 3, 10, 101, 1000):
        xs = sorted(rng.uniform(0, 100) for _ in range(n))
        for q in (50, 95, 99):
            h = (n - 1) * q / 100
            lo, hi = math.floor(h), math.ceil(h)
            want = xs[lo] + (xs[hi] - xs[lo]) * (h - lo)
            assert percentile(xs, q) == pytest.approx(want)
            assert xs[0] <= percentile(xs, q) <= xs[-1]


def test_percentile_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_uses_the_whole_sample_and_skips_missing_values() -> None:
    s = summarize([3.0, 1.0, 2.0, float("nan"), 4.0])
    assert s == {"n": 4, "mean": 2.5, "min": 1.0, "p50": 2.5, "p95": 3.85, "p99": 3.97, "max": 4.0}
    empty = summarize([])
    assert empty["n"] == 0 and empty["p99"] is None and empty["mean"] is None


def test_ratio_and_cdf() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None
    xs, ys = cdf_points([3.0, 1.0, 2.0])
    assert xs == [1.0, 2.0, 3.0] and ys == pytest.approx([1 / 3, 2 / 3, 1.0])
