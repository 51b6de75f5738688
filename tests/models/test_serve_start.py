"""``serve`` starts a profile's local model servers, healthy, before its port opens."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.models.provider import LocalProvider, LocalProviderConfig
from realtime_cascade.models.supervisor import LlamaServer, probe_health
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.app import RealtimeServer
from tests.models.test_supervisor import gone, spec

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _profile(tmp_path: Path, *, loading_s: float) -> tuple[CascadeProfile, list[LocalProvider]]:
    """The local profile with its two tiers on stand-in llama-servers that take ``loading_s``
    to load (503 until then)."""
    cfg = config_mod.load()
    local = cfg.profiles["local"]
    providers: list[LocalProvider] = []
    for tier in local.tiers:
        assert isinstance(tier.provider, LocalProviderConfig)
        p = LocalProvider(tier.name, tier.provider)
        d = tmp_path / tier.name
        d.mkdir()
        p.server = LlamaServer(tier.name, spec(d, "--loading-s", str(loading_s)), d / "log")
        providers.append(p)
    return CascadeProfile("local", local.params(), providers), providers


async def test_serve_starts_the_local_servers_healthy_before_it_listens(tmp_path: Path) -> None:
    profile, providers = _profile(tmp_path, loading_s=1.0)
    cfg = config_mod.load()
    server = RealtimeServer(cfg, port=0, profiles={"local": profile}, start_local=True)
    pids: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(server)
        assert server.local_status == {"local": None}
        for p in providers:
            assert p.server is not None and p.server.starts == 1
            # loaded (200), not loading (503), by the time the port is open
            assert await probe_health("127.0.0.1", p.server.port) == 200
            assert p.server.pid is not None
            pids.append(p.server.pid)
        await profile.aclose()  # the given profiles are the caller's to close
    assert all(gone(pid) for pid in pids)


async def test_lazy_local_starts_nothing(tmp_path: Path) -> None:
    profile, providers = _profile(tmp_path, loading_s=0.1)
    cfg = config_mod.load()
    async with RealtimeServer(cfg, port=0, profiles={"local": profile}) as server:
        assert server.local_status == {}
        assert all(p.server is not None and p.server.starts == 0 for p in providers)
    await profile.aclose()


async def test_models_not_installed_are_reported_and_the_server_still_serves(
    tmp_path: Path,
) -> None:
    cfg = config_mod.load()
    local = cfg.profiles["local"]
    tiers = tuple(
        msgspec.structs.replace(
            t,
            provider=msgspec.structs.replace(t.provider, cache_dir=str(tmp_path)),
        )
        for t in local.tiers
    )
    cfg = msgspec.structs.replace(
        cfg, profiles={"local": msgspec.structs.replace(local, tiers=tiers)}
    )
    async with RealtimeServer(cfg, port=0, start_local=True) as server:
        why = server.local_status["local"]
        assert why is not None and "realtime-cascade models" in why
        assert server.port > 0
