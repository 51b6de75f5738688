"""Fixtures: a server on a free loopback port, in-process, on the asyncio backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.server.app import RealtimeServer

ServerFactory = Callable[..., AbstractAsyncContextManager[RealtimeServer]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_server() -> ServerFactory:
    """``async with make_server(api_keys=("k",)) as srv:`` — ServerConfig fields as overrides."""

    @asynccontextmanager
    async def factory(**server_fields: Any) -> AsyncIterator[RealtimeServer]:
        cfg = config_mod.load()
        cfg = msgspec.structs.replace(
            cfg, server=msgspec.structs.replace(cfg.server, **server_fields)
        )
        async with RealtimeServer(cfg, host="127.0.0.1", port=0) as srv:
            yield srv

    return factory


@pytest.fixture
async def server(make_server: ServerFactory) -> AsyncIterator[RealtimeServer]:
    async with make_server() as srv:
        yield srv
