"""Targets and the table from a hand-made result: met / missed-by arithmetic, never asserted."""

from __future__ import annotations

from typing import Any

from bench.metrics import DISTRIBUTIONS, SCALARS, posthoc_passes
from bench.report import markdown, targets
from bench.stats import summarize


def _cell(policy: str, n: int, **values: Any) -> dict[str, Any]:
    metrics: dict[str, Any] = {name: summarize([]) for name in DISTRIBUTIONS}
    metrics.update(dict.fromkeys(SCALARS))
    for key, value in values.items():
        metrics[key] = summarize(value) if isinstance(value, list) else value
    return {"policy": policy, "sessions": n, "metrics": metrics, "error_samples": []}


def _result(cells: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "realtime-cascade-bench/1",
        "created": "2026-01-01T00:00:00+00:00",
        "command": "python -m bench --quick",
        "machine": {"cpus": 2, "python": "3.11", "platform": "linux"},
        "setup": {
            "mix": "booking",
            "sessions": [1, 200],
            "tiers": [
                {"name": "light", "ttft_ms": 150, "itl_ms": 15, "skill": 0.5},
                {"name": "strong", "ttft_ms": 400, "itl_ms": 25, "skill": 1.0},
            ],
        },
        "cells": cells,
    }


def test_targets_are_judged_at_the_largest_concurrency() -> None:
    cells = [
        _cell("cascade", 1, overhead_ms=[100.0]),  # ignored: not the largest N
        _cell(
            "strong-only",
            200,
            overhead_ms=[1.0, 2.0],
            cost_total_usd=1.0,
            task_success=1.0,
            end_of_turn_ms=[1000.0, 2000.0],
        ),
        _cell(
            "cascade",
            200,
            overhead_ms=[4.0, 20.0],
            handoff_gap_ms=[3.0],
            cost_total_usd=0.30,
            task_success=0.97,
            end_of_turn_ms=[900.0, 2500.0],
            barge_in_ms=[1.0],
            throughput_vs_bare=0.65,
        ),
        _cell("cascade+hedge", 200, handoff_wait_ms=[150.0, 250.0]),
    ]
    got = {(t["name"], t["policy"]): t for t in targets(_result(cells))}
    overhead = got[("overhead p99", "cascade")]
    assert overhead["sessions"] == 200 and overhead["met"] is False
    assert overhead["value"] == summarize([4.0, 20.0])["p99"]
    assert overhead["missed_by"] == round(overhead["value"] - 10.0, 4)
    assert got[("overhead p99", "strong-only")]["met"] is True
    assert got[("handoff gap p99", "cascade")]["met"] is True
    hedged = got[("hedged handoff wait p99", "cascade+hedge")]
    assert hedged["limit"] == 200.0 and hedged["met"] is False  # half of the strong TTFT
    assert got[("cost vs strong-only", "cascade")]["value"] == 30.0
    assert got[("cost vs strong-only", "cascade")]["met"] is True
    success = got[("success vs strong-only", "cascade")]
    assert success["met"] is False and success["missed_by"] == 1.0  # 97% of 100%, limit 98%
    assert got[("end-of-turn p99 vs strong-only", "cascade")]["met"] is False
    throughput = got[("throughput vs bare", "cascade")]
    assert throughput["met"] is False and throughput["missed_by"] == 0.05
    # no data: reported as unknown, not as met
    assert got[("barge-in p99", "strong-only")]["met"] is None


def test_markdown_has_a_row_per_cell_and_a_row_per_target() -> None:
    cells = [_cell("bare", 1, first_text_ms=[10.0]), _cell("cascade", 1, task_success=0.5)]
    result = _result(cells)
    result["setup"]["sessions"] = [1]
    result["targets"] = targets(result)
    text = markdown(result)
    assert "| bare | 1 |" in text and "| cascade | 1 |" in text and "50%" in text
    assert text.count("| runtime overhead p99") == 1


def test_posthoc_check_is_the_cores_check_at_a_tiers_finish() -> None:
    from bench.client import ResponseRecord

    def response(status: str, p: float | None, tokens: int) -> ResponseRecord:
        r = ResponseRecord("posthoc-light", (), (), None, 0.0, 0.0)
        r.status = status
        r.decisions = [(0.0, "route", 0, None, None, None), (1.0, "accept", 0, None, p, tokens)]
        return r

    passes = posthoc_passes(preempt_below=0.45, min_tokens=4)
    assert passes(response("completed", 0.9, 20))
    assert not passes(response("completed", 0.2, 20))  # unsure at the end: redo
    assert passes(response("completed", 0.2, 2))  # too few tokens for a verdict
    assert not passes(response("incomplete", 0.9, 20))  # a verifier or completeness problem
