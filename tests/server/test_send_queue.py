"""The send queue's direct path: events written at once while the socket takes them, queued
(in order) while it pushes back, never reordered between the two."""

from __future__ import annotations

from typing import Any, cast

import anyio
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from realtime_cascade.server.app import SendQueue

pytestmark = pytest.mark.anyio


class _Protocol:
    def __init__(self, out: list[bytes]) -> None:
        self.state = State.OPEN
        self.out = out

    def send_text(self, data: bytes) -> None:
        self.out.append(data)


class _Transport:
    aborted = False
    buffered = 0  # bytes the transport holds

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return self.buffered


class FakeConnection:
    """What :class:`SendQueue` uses of a websockets connection; ``send`` blocks while
    ``paused`` (as websockets' drain does)."""

    def __init__(self) -> None:
        self.out: list[bytes] = []  # every frame, in the order it reached the socket
        self.direct = 0  # frames written by put() itself
        self.paused = False
        self.send_in_progress: Any = None
        self.protocol = _Protocol(self.out)
        self.transport = _Transport()
        self.resumed = anyio.Event()
        self.write_limit_high = 100

    def send_data(self) -> None:
        self.direct += 1

    async def send(self, data: bytes, text: bool = False) -> None:
        self.out.append(data)
        while self.paused:
            await self.resumed.wait()

    async def close(self, code: int, reason: str) -> None:
        self.protocol.state = State.CLOSED

    # close_within's
    close_timeout = 1.0

    @property
    def loop(self) -> Any:
        import asyncio

        return asyncio.get_running_loop()


async def _settle() -> None:
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


async def test_direct_while_idle_queued_while_pushed_back_in_order() -> None:
    ws = FakeConnection()
    q = SendQueue(100)
    q.put(b"0")  # before the writer runs: queued
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.pump, cast(ServerConnection, ws))
        await _settle()
        assert ws.out == [b"0"] and q.queued_bytes == 0
        q.put(b"1")  # idle writer, open socket: written at once, no task switch
        assert ws.out == [b"0", b"1"] and ws.direct == 1
        ws.paused = True  # the socket pushes back
        q.put(b"2")
        q.put(b"3")
        assert ws.out == [b"0", b"1"] and q.queued_bytes == 2
        await _settle()  # the writer sends "2" and waits for the socket
        ws.paused = False
        q.put(b"4")  # "3" still waits: this one must queue behind it, not jump ahead
        assert ws.direct == 1
        ws.resumed.set()
        await _settle()
        assert q.queued_bytes == 0
        q.put(b"5")  # caught up: direct again
        assert ws.direct == 2
        assert ws.out == [b"0", b"1", b"2", b"3", b"4", b"5"]
        q.close(1000, "")
        q.put(b"6")  # closed: neither written nor queued
        await _settle()
        assert ws.out[-1] == b"5"
        tg.cancel_scope.cancel()


async def test_no_direct_write_on_a_closing_socket() -> None:
    ws = FakeConnection()
    q = SendQueue(100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.pump, cast(ServerConnection, ws))
        await _settle()
        ws.protocol.state = State.CLOSING
        q.put(b"x")  # goes to the writer, whose send reports the closed connection
        assert ws.direct == 0
        tg.cancel_scope.cancel()


async def test_no_direct_write_past_the_high_water_mark() -> None:
    """uvloop may buffer writes for the rest of the loop's iteration before it pauses the
    protocol: direct writes stop once the transport would hold more than the high-water
    mark, so a burst in one iteration is bounded by the queue, as without them."""
    ws = FakeConnection()
    q = SendQueue(100)
    async with anyio.create_task_group() as tg:
        tg.start_soon(q.pump, cast(ServerConnection, ws))
        await _settle()
        ws.transport.buffered = 60
        q.put(b"x" * 40)  # 60 + 40 <= 100: direct
        assert ws.direct == 1
        ws.transport.buffered = 100
        q.put(b"y")  # would pass the mark: queued for the writer
        assert ws.direct == 1 and q.queued_bytes == 1
        q.put(b"x" * 200)  # larger than the mark even when empty: never direct
        assert ws.direct == 1
        tg.cancel_scope.cancel()


def test_overflow_counts_only_what_waits() -> None:
    q = SendQueue(2)  # no writer: everything waits
    q.put(b"a")
    q.put(b"b")
    assert not q.overflowed.is_set()
    q.put(b"c")
    assert q.overflowed.is_set() and q.queued_bytes == 2
