"""The sim replay log: rows follow the sim's own difficulty model, usage and schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_cascade.eval.deferral import evaluate_group
from realtime_cascade.eval.logs import group_rows, read_log, write_log
from realtime_cascade.eval.simlog import (
    DEFAULT_TIERS,
    chow_quantile,
    generate_requests,
    sim_rows,
)
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import SCRIPTS, difficulty, schedule


def test_chow_quantile_by_hand() -> None:
    # Five values, q = 0.2: index int(0.2 * 5) = 1 of the sorted list.
    assert chow_quantile([-0.1, -3.0, -0.5, -2.0, -1.0], 0.2) == -2.0
    assert chow_quantile([-0.7], 0.2) == -0.7


def test_rows_follow_the_sim() -> None:
    n, seed = 30, 2
    texts = generate_requests(n, seed)
    rows = sim_rows(n, seed)
    assert len(rows) == 2 * n
    for i, text in enumerate(texts):
        for tier, row in zip(DEFAULT_TIERS, rows[2 * i : 2 * i + 2], strict=True):
            assert (row.query_idx, row.model, row.benchmark) == (str(i), tier.name, "sim")
            assert row.correct == (difficulty(text) <= tier.profile.skill)
            request = TierRequest((Message("user", text),), seed=seed * 1_000_003 + i)
            steps = schedule(tier.profile, tier.name, SCRIPTS["generic"], request)
            usage = steps[-1].chunk.usage
            assert usage is not None
            expected_cost = (
                usage.input_tokens * tier.price_in + usage.output_tokens * tier.price_out
            ) / 1e6
            assert row.cost_usd == pytest.approx(expected_cost)
            assert row.latency_ms == pytest.approx(1000 * sum(s.delay for s in steps))
            assert row.raw_confidence <= 0.0


def test_light_tier_is_unsure_exactly_where_it_is_wrong() -> None:
    rows = [r for r in sim_rows(200, seed=0) if r.model == "light"]
    right = [r.raw_confidence for r in rows if r.correct]
    wrong = [r.raw_confidence for r in rows if not r.correct]
    assert right and wrong
    assert max(wrong) < min(right)  # the sim's "doubt"/"unsure" tokens sit at -0.3 and below
    assert all(r.correct for r in sim_rows(50, seed=0) if r.model == "strong")  # skill 1.0


def test_round_trip_and_evaluate(tmp_path: Path) -> None:
    rows = sim_rows(60, seed=1)
    path = tmp_path / "sim.csv"
    write_log(path, rows)
    assert read_log(path) == rows
    (group,) = group_rows(read_log(path))
    report = evaluate_group(group, folds=5, seed=0)
    assert report.reference_model == "strong"
    op = report.comparisons[1].at_accuracy
    # Confidence separates the light tier's answers, so deferral keeps strong's accuracy
    # while paying for strong only on the deferred share.
    assert op is not None and op.accuracy == 1.0
    assert op.cost_saving is not None and op.cost_saving > 0.2
