"""The soak's CI version: ~20 s of mixed sessions with upstream faults on. Nothing lost, nothing
leaked, memory bounded (``python -m bench.soak --minutes M`` is the long run)."""

from __future__ import annotations

import pytest

from bench.soak import render, run_soak

pytestmark = pytest.mark.anyio


async def test_a_short_soak_loses_and_leaks_nothing() -> None:
    report = await run_soak(1 / 3, sessions=8, fault_rate=0.2, seed=7, sample_every_s=2.0)
    text = render(report)
    assert report.turns > 100, text
    assert report.lost == 0, text  # every response.create got its response.done in time
    assert report.internal_errors == 0 and not report.error_logs, text
    assert report.leaked_tasks <= 0 and report.upstream_streams_left == 0, text
    assert report.sessions_left == 0, text
    faults = sum(n for kind, n in report.faults_drawn.items() if kind != "none")
    assert faults > 20, text  # faults were really on
    # failures happen (faults are on) and each has a reason from the table, not a blank.
    # While both breakers are open a turn is refused at once, so a worker fires many of them
    # in the time one streamed turn takes: how many depends on when the breakers opened. The
    # share that completes is therefore taken over the turns that reached a provider.
    refused = report.failed_reasons.get("all circuits open", 0)
    # refusals happen only behind an open breaker
    assert refused == 0 or sum(report.breaker_opens.values()) > 0, text
    assert report.statuses.get("completed", 0) > (report.turns - refused) // 2, text
    assert all(reason.strip() for reason in report.failed_reasons), text
    # bounded: a 20 s run may warm caches, it must not grow like a leak (≈ 50 kB a turn)
    assert report.memory_growth_mb < 25, text
