"""Upstream faults, end to end: each fault kind of sim-upstream on the light tier, the strong
tier or both, for an easy and a hard turn, over the real ``openai`` path and the WebSocket
server. Every turn ends by its deadline with ``response.done``, a final status, a reason that
names the fault, and no upstream stream left open (``bench.fault_matrix`` prints the table)."""

from __future__ import annotations

import time

import anyio
import msgspec
import pytest

from bench.chaos import EASY, FAULT_KINDS, FaultKind, fault_params, fault_profile
from bench.fault_matrix import render, run_matrix
from realtime_cascade.core import BudgetParams
from realtime_cascade.providers.base import Message
from realtime_cascade.runtime import TurnRequest, TurnRunner

from .conftest import UpstreamFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", FAULT_KINDS, ids=[k.name for k in FAULT_KINDS])
async def test_every_fault_kind_ends_every_turn_cleanly(kind: FaultKind) -> None:
    report = await run_matrix([kind], concurrency=6)
    assert report.all_clean, render(report)
    assert len(report.cells) == 9
    by = {(c.placement, c.request): c for c in report.cells}
    if kind.may_complete:  # a lying usage: clamped (completes) or stopped by the cost cap
        for c in report.cells:
            assert c.status == "completed" or "cost cap" in c.reason, (c.spec, c.reason)
        return
    # a fault on the light tier alone is recovered by a fallback to strong
    assert {by["light", r].status for r in ("easy", "hard", "tool")} == {"completed"}
    assert any(d.startswith("fallback:") for d in by["light", "easy"].decisions)
    # with the strong tier down too, the turn fails, saying why
    assert by["both", "easy"].status == "failed" and by["both", "easy"].reason


def request(text: str) -> TurnRequest:
    return TurnRequest((Message("user", text),))


async def test_a_fallback_the_budget_cannot_pay_for_fails_with_a_refusal(
    make_upstream: UpstreamFactory,
) -> None:
    # the light tier fails; the strong tier would break the turn's cost cap
    tiny = msgspec.structs.replace(
        fault_params(), budgets=BudgetParams(turn_cap_usd=0.00002, end_of_turn_ms=4000)
    )
    async with make_upstream() as up:
        profile = fault_profile("budget", up.base_url, "status:500", None, params=tiny)
        with anyio.fail_after(5):
            trace = await TurnRunner(profile, request(EASY), lambda a: None).run()
        await profile.aclose()
        assert await up.settle() == 0
    assert trace.status == "failed"
    assert "would break the cost cap" in trace.reason
    refuse = [d for d in trace.decisions if d.kind == "refuse"]
    assert refuse and refuse[0].cause == "budget" and refuse[0].to_tier == 1


async def test_a_fault_that_outlasts_the_turn_ends_it_incomplete_at_its_deadline(
    make_upstream: UpstreamFactory,
) -> None:
    # pings only, and a turn deadline shorter than the first-token timeout: the deadline wins
    short = msgspec.structs.replace(
        fault_params(), budgets=BudgetParams(end_of_turn_ms=300, fillers=())
    )
    async with make_upstream() as up:
        profile = fault_profile("deadline", up.base_url, "keepalive:20", None, params=short)
        t0 = time.monotonic()
        with anyio.fail_after(5):
            trace = await TurnRunner(profile, request(EASY), lambda a: None).run()
        elapsed = time.monotonic() - t0
        await profile.aclose()
        assert await up.settle() == 0
    assert trace.status == "incomplete"
    assert trace.reason == "end-of-turn deadline of 300 ms reached"
    assert 0.3 <= elapsed < 1.2  # ended at its deadline (the reason says which one), not later
    assert trace.decisions[-1].kind == "stop" and trace.decisions[-1].cause == "latency"
