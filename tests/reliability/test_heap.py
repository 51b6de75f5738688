"""Freed heap goes back to the system after sessions end (server/heap.py)."""

from __future__ import annotations

import sys

import anyio
import pytest

from realtime_cascade.server.heap import HeapTrimmer, glibc_trim

from ..server.conftest import ServerFactory
from ..server.helpers import BOOK, raw

pytestmark = pytest.mark.anyio


async def test_one_trim_per_burst_of_session_ends() -> None:
    calls: list[float] = []
    trimmer = HeapTrimmer(0.05, trim=lambda: calls.append(anyio.current_time()))
    for _ in range(50):
        trimmer.session_ended()
    assert calls == []  # not on the closing session's path
    await anyio.sleep(0.2)
    assert len(calls) == 1 and trimmer.trims == 1
    trimmer.session_ended()  # a later end schedules the next one
    await anyio.sleep(0.2)
    assert len(calls) == 2


async def test_zero_delay_turns_it_off() -> None:
    calls: list[int] = []
    trimmer = HeapTrimmer(0.0, trim=lambda: calls.append(1))
    trimmer.session_ended()
    await anyio.sleep(0.05)
    assert calls == [] and trimmer.trims == 0


async def test_close_cancels_a_pending_trim() -> None:
    calls: list[int] = []
    trimmer = HeapTrimmer(0.05, trim=lambda: calls.append(1))
    trimmer.session_ended()
    trimmer.close()
    await anyio.sleep(0.15)
    assert calls == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_trim_is_found_and_runs() -> None:
    trim = glibc_trim()
    assert trim is not None
    trim()  # returns 0 or 1 (whether memory was released); must not raise


async def test_server_trims_after_a_session_ends(make_server: ServerFactory) -> None:
    async with make_server(heap_trim_delay_s=0.05) as server:
        async with raw(server) as c:
            await c.turn(BOOK)
        with anyio.fail_after(5):
            while server.heap.trims == 0:  # noqa: ASYNC110 (a timer, no event to wait on)
                await anyio.sleep(0.02)
