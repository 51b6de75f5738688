"""Fixtures for the reliability tests: servers on free loopback ports, sim upstreams over real
HTTP, raw WebSocket clients, and counters of what a run leaves behind (tasks, sockets)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.providers.sim import SimProfile
from realtime_cascade.providers.sim_upstream import SimUpstream
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.app import RealtimeServer

# the raw WebSocket client is the server tests' one
from ..server.helpers import Raw, raw, text_of, user_item

__all__ = ["Raw", "raw", "text_of", "user_item"]

BOOK = "Book a table for two at 7pm tonight."
HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
    "and apply my voucher unless the fare goes up."
)

ServerFactory = Callable[..., AbstractAsyncContextManager[RealtimeServer]]
UpstreamFactory = Callable[..., AbstractAsyncContextManager["RunningUpstream"]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def server_config(**server_fields: Any) -> config_mod.Config:
    cfg = config_mod.load()
    return msgspec.structs.replace(cfg, server=msgspec.structs.replace(cfg.server, **server_fields))


@pytest.fixture
def make_server() -> ServerFactory:
    """``async with make_server(profiles=..., api_keys=(...)) as srv`` — ServerConfig fields as
    keyword overrides; ``profiles`` replaces the config's."""

    @asynccontextmanager
    async def factory(
        profiles: Mapping[str, CascadeProfile] | None = None, **server_fields: Any
    ) -> AsyncIterator[RealtimeServer]:
        srv = RealtimeServer(
            server_config(**server_fields), host="127.0.0.1", port=0, profiles=profiles
        )
        async with srv:
            yield srv

    return factory


class RunningUpstream:
    def __init__(self, upstream: SimUpstream, port: int) -> None:
        self.upstream = upstream
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    @property
    def open_streams(self) -> int:
        return self.upstream.open_streams

    async def settle(self, within: float = 3.0) -> int:
        """Waits until no SSE response is in flight (or ``within`` passes); returns the count."""
        with anyio.move_on_after(within):
            while self.upstream.open_streams:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        return self.upstream.open_streams


FAST = {
    "light": SimProfile(ttft_ms=20, itl_ms=3, skill=0.5),
    "strong": SimProfile(ttft_ms=40, itl_ms=4, skill=1.0),
}
SLOW = {
    "light": SimProfile(ttft_ms=20, itl_ms=60, skill=0.5),
    "strong": SimProfile(ttft_ms=40, itl_ms=60, skill=1.0),
}


@pytest.fixture
def make_upstream() -> UpstreamFactory:
    @asynccontextmanager
    async def factory(
        profiles: Mapping[str, SimProfile] | None = None, fault: str | None = None
    ) -> AsyncIterator[RunningUpstream]:
        upstream = SimUpstream(profiles or FAST, fault)
        async with anyio.create_task_group() as tg:
            port = await tg.start(upstream.serve, "127.0.0.1", 0)
            yield RunningUpstream(upstream, port)
            tg.cancel_scope.cancel()

    return factory


def task_count() -> int:
    return len(asyncio.all_tasks())


def fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: nothing to count
        return 0


async def settle(predicate: Callable[[], bool], within: float = 5.0) -> bool:
    """Polls ``predicate`` until true or ``within`` passes (tests only)."""
    with anyio.move_on_after(within):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.02)
        return True
    return predicate()
