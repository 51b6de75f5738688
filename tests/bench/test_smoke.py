"""A tiny in-process bench run (2 sessions, fast tiers): the JSON has its documented shape and
its figures come from real events over the wire."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path

import pytest

from bench.metrics import DISTRIBUTIONS, SCALARS
from bench.report import markdown, targets
from bench.run import SCHEMA, Options, inprocess_services, run
from bench.scenarios import ROOT, booking_mix

pytestmark = pytest.mark.anyio

POLICIES = (
    "bare",
    "bare-proxy",
    "light-only",
    "strong-only",
    "post-hoc",
    "cascade",
    "cascade+hedge",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fast_booking_config(tmp_path: Path) -> Path:
    """The booking config with ten times faster tiers."""
    text = (ROOT / "demos" / "booking" / "config.toml").read_text()
    text = re.sub(
        r"ttft_ms = (\d+), itl_ms = (\d+)",
        lambda m: f"ttft_ms = {int(m[1]) // 10}, itl_ms = {max(1, int(m[2]) // 10)}",
        text,
    )
    path = tmp_path / "booking-fast.toml"
    path.write_text(text)
    return path


async def test_two_session_run_has_the_documented_shape(tmp_path: Path) -> None:
    mix = booking_mix().truncated(2)
    # one conversation of easy turns, one with a hard turn (which escalates)
    easy = next(c for c in mix.conversations if not any(t.hard for t in c.turns))
    hard = next(c for c in mix.conversations if any(t.hard for t in c.turns))
    mix = dataclasses.replace(
        mix, config_path=fast_booking_config(tmp_path), conversations=(easy, hard)
    )
    opts = Options(
        sessions=(2,),
        max_turns=2,
        cancel_after_s=(0.005,),
        warmup=False,
        progress_stream=io.StringIO(),
        command="test",
    )
    async with inprocess_services(mix, _tiers(mix)) as services:
        result = await run(mix, opts, services)
    result["targets"] = targets(result)
    samples = result.pop("samples")
    decoded = json.loads(json.dumps(result))  # plain JSON all the way down

    assert decoded["schema"] == SCHEMA
    assert set(decoded) >= {"schema", "created", "command", "machine", "setup", "cells", "targets"}
    assert [c["policy"] for c in decoded["cells"]] == list(POLICIES)
    for cell in decoded["cells"]:
        m = cell["metrics"]
        assert set(m) == set(DISTRIBUTIONS) | set(SCALARS), cell["policy"]
        for name in DISTRIBUTIONS:
            assert set(m[name]) == {"n", "mean", "min", "p50", "p95", "p99", "max"}
        assert cell["sessions"] == 2 and m["errors"] == 0, cell["error_samples"]
        # real events: every turn was answered, timed and checked
        assert m["turns"] == sum(len(c.turns) for c in mix.conversations)
        assert m["responses"] >= m["turns"]
        assert m["first_text_ms"]["n"] == m["turns"]
        assert 0 < m["first_text_ms"]["p50"] <= m["end_of_turn_ms"]["p50"]
        assert m["end_of_turn_ms"]["n"] == m["turns"]
        # the replay agreed with what was seen, so overhead is measured on every response
        assert m["replay_match_rate"] >= 0.75
        assert m["overhead_ms"]["n"] > 0 and m["overhead_end_ms"]["n"] > 0
        assert m["task_success"] is not None and m["streamed_tokens"] > 0
        assert m["barge_in_attempts"] == 2
        assert m["server_cpu_s"] >= 0 and m["pace"] is not None
        assert m["throughput_vs_bare"] is not None
        assert samples[f"{cell['policy']}|2|end_of_turn_ms"]
        if cell["policy"] in ("bare", "bare-proxy"):
            assert m["cost_total_usd"] == 0
        else:
            assert m["cost_total_usd"] > 0
            assert m["upstream_first_token_lag_ms"]["n"] > 0
    by = {c["policy"]: c["metrics"] for c in decoded["cells"]}
    # the bare proxy streamed the light tier's text through its sim upstream, as scheduled
    assert by["bare-proxy"]["replay_match_rate"] == 1.0
    assert by["bare-proxy"]["cpu_vs_bare_proxy"] == 1.0
    # a cancel 5 ms in is always before the first token (TTFT >= 15 ms): every one lands
    assert by["light-only"]["barge_in_ms"]["n"] == 2
    assert by["strong-only"]["escalation_rate"] == 0 and by["light-only"]["escalation_rate"] == 0
    assert by["cascade"]["escalation_rate"] > 0  # the hard turn escalates
    assert by["cascade"]["cost_total_usd"] < by["strong-only"]["cost_total_usd"]
    names = {t["name"] for t in decoded["targets"]}
    assert {"overhead p99", "barge-in p99", "throughput vs bare", "cost vs strong-only"} <= names
    table = markdown(decoded)
    assert table.count("\n| ") >= len(POLICIES) + 1 and "cascade+hedge" in table


def _tiers(mix):  # type: ignore[no-untyped-def]
    from bench.run import _tier_sims

    return _tier_sims(mix)[0]
