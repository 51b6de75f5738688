"""Fixtures: a server with the operations side configured, on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.observe.config import AUDIT_ENV
from realtime_cascade.observe.observer import Observer
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.app import RealtimeServer

ServerFactory = Callable[..., AbstractAsyncContextManager[RealtimeServer]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_audit_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIT_ENV, raising=False)


def with_tables(cfg: config_mod.Config, **tables: Any) -> config_mod.Config:
    """``cfg`` with top-level tables replaced; ``server=dict(...)`` merges into [server]."""
    server = tables.pop("server", None)
    if server is not None:
        tables["server"] = msgspec.structs.replace(cfg.server, **server)
    return msgspec.structs.replace(cfg, **tables)


@pytest.fixture
def make_server() -> ServerFactory:
    """``async with make_server(cfg=None, observers=(), audit=AuditConfig(...)) as srv``."""

    @asynccontextmanager
    async def factory(
        cfg: config_mod.Config | None = None,
        *,
        observers: Sequence[Observer] = (),
        profiles: Mapping[str, CascadeProfile] | None = None,
        **tables: Any,
    ) -> AsyncIterator[RealtimeServer]:
        cfg = with_tables(cfg or config_mod.load(), **tables)
        async with RealtimeServer(
            cfg, host="127.0.0.1", port=0, observers=observers, profiles=profiles
        ) as srv:
            yield srv

    return factory
