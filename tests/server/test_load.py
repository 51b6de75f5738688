"""Many sessions at once: each completes its turn; none waits on another."""

from __future__ import annotations

import time

import anyio
import pytest

from realtime_cascade.server.app import RealtimeServer

from .conftest import ServerFactory
from .helpers import BOOK, raw, text_of

pytestmark = pytest.mark.anyio

SESSIONS = 200


async def test_200_concurrent_sessions(make_server: ServerFactory) -> None:
    # every client here is 127.0.0.1: one identity, over the default per-key cap (100)
    async with make_server(max_sessions_per_key=0) as server:
        await _load(server)


async def _load(server: RealtimeServer) -> None:
    done: list[str] = []
    peak = 0

    async def one() -> None:
        nonlocal peak
        async with raw(server) as c:
            peak = max(peak, server.session_count)
            events = await c.turn(BOOK)
            assert events[-1]["response"]["status"] == "completed"
            done.append(text_of(events))

    t0 = time.monotonic()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(SESSIONS):
                tg.start_soon(one)
    elapsed = time.monotonic() - t0
    assert len(done) == SESSIONS
    assert all("book a table for two" in text for text in done)
    assert peak > SESSIONS // 2  # they really overlapped
    print(f"{SESSIONS} sessions in {elapsed:.2f} s")
