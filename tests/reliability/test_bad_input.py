"""Bad input at scale against a live server, bounded for CI (``python -m bench.bad_input`` is the
full run): every refused frame gets an ``error`` (or the documented close), nothing crashes,
bystander sessions complete every turn."""

from __future__ import annotations

import pytest

from bench.bad_input import render, run_bad_input

pytestmark = pytest.mark.anyio


async def test_bad_input_never_crashes_the_server_or_disturbs_other_sessions() -> None:
    report = await run_bad_input(25, bystanders=2, seed=3, flood_clients=2)
    text = render(report)
    assert report.crashes == 0, text
    assert report.sessions_left == 0, text
    assert report.bystander_turns > 0 and report.bystander_completed == report.bystander_turns
    by = {c.name: c for c in report.categories}
    for cat in report.categories:
        assert cat.refused_answered == cat.refused, text
        assert not cat.internal_errors and not cat.closes.get(1011), text
    assert by["invalid UTF-8 (text frames)"].closes == {1007: 20}, text  # RFC 6455: fail it
    assert by["huge strings"].closes.get(1009, 0) >= 1, text  # over 4 × max_frame_bytes
    assert report.flood_closed_1008 == 2, text
    # the hostile classes of issue 12, generated
    hs = by["hostile handshakes (dup headers, odd paths)"]
    assert hs.frames == 25 and hs.refused > 0, text
    assert all(0 < k < 500 for k in hs.http), text  # never a 5xx, never silence on HTTP
    assert hs.http.get(400, 0) >= 1, text  # a duplicated Authorization / Origin / Host
    flood = by["item floods (past the item cap)"]
    assert flood.refused >= 25 and flood.errors >= 25 and not flood.closes, text
    huge = by["huge items (item and conversation byte caps)"]
    assert huge.refused > 0 and huge.errors >= huge.refused - sum(huge.closes.values()), text
    for name in ("interleaved ping/pong", "session.update voices / instructions"):
        assert by[name].frames == 25, text
