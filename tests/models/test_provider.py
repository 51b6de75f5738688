"""The ``kind = "local"`` tier in config, and what it does when nothing is installed."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.models.errors import NotInstalled
from realtime_cascade.models.provider import (
    LocalProvider,
    LocalProviderConfig,
    start_local,
    warm_local,
)
from realtime_cascade.providers.base import ConnectionLost, Message, TierRequest
from realtime_cascade.providers.sim import SimProfile, SimProvider
from realtime_cascade.providers.sim_upstream import SimUpstream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_the_embedded_default_has_the_local_profile_and_starts_nothing() -> None:
    cfg = config_mod.load()
    assert set(cfg.profiles) >= {"default", "local"}
    local = cfg.profiles["local"]
    assert [t.name for t in local.tiers] == ["light", "strong"]
    models = [getattr(t.provider, "model", None) for t in local.tiers]
    assert models == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert all(getattr(t.provider, "temperature", None) == 0.0 for t in local.tiers)
    cal = local.monitor.calibration  # fitted by bench.real: surer tokens, likelier right
    assert cal.w_quantile > 0 and cal.w_min == cal.w_entropy == cal.w_complexity == 0.0
    profile = config_mod.build_profile(cfg, "local")
    assert all(isinstance(p, LocalProvider) and p.server is None for p in profile.providers)


def test_an_unknown_local_model_is_a_config_error() -> None:
    text = (
        '[profiles.x]\n[[profiles.x.tiers]]\nname = "a"\n'
        'provider = { kind = "local", model = "gpt-9" }\n'
    )
    cfg = config_mod.loads(text, "t.toml")
    with pytest.raises(config_mod.ConfigError, match="tier 'a': unknown local model 'gpt-9'"):
        config_mod.build_profile(cfg, "x")


async def test_nothing_installed_fails_the_stream_with_how_to_fix_it(tmp_path: Path) -> None:
    provider = LocalProvider(
        "light", LocalProviderConfig(model="smollm2-135m", cache_dir=str(tmp_path))
    )
    request = TierRequest((Message("user", "hi"),))
    with pytest.raises(ConnectionLost, match="realtime-cascade models build"):
        async with contextlib.aclosing(provider.stream(request)) as stream:
            async for _ in stream:
                pass
    with pytest.raises(NotInstalled, match="models build"):
        await start_local([provider])
    await provider.aclose()


async def test_base_url_connects_and_supervises_nothing() -> None:
    provider = LocalProvider(
        "light", LocalProviderConfig(model="smollm2-135m", base_url="http://127.0.0.1:9/v1")
    )
    assert await provider.start() == "http://127.0.0.1:9/v1"
    assert provider.server is None
    with pytest.raises(ConnectionLost):
        async with contextlib.aclosing(provider.stream(TierRequest((Message("user", "x"),)))) as s:
            async for _ in s:
                pass
    await provider.aclose()


async def test_warm_up_sends_the_agents_prompt_once_to_each_local_tier() -> None:
    # The sim stands in for llama-server: what matters is the request each local tier gets
    # (the system prompt with the tools block, one token), and that other tiers get none.
    upstream = SimUpstream({"smollm2-135m": SimProfile(ttft_ms=1, itl_ms=1, skill=1.0)})
    tool = {
        "type": "function",
        "function": {"name": "find_booking", "parameters": {"type": "object"}},
    }
    async with anyio.create_task_group() as tg:
        port = await tg.start(upstream.serve, "127.0.0.1", 0)
        up = f"http://127.0.0.1:{port}/v1"
        local = LocalProvider("light", LocalProviderConfig(model="smollm2-135m", base_url=up))
        dead = LocalProvider(  # nothing listens: logged, not raised, not counted
            "strong", LocalProviderConfig(model="smollm2-135m", base_url="http://127.0.0.1:9/v1")
        )
        other = SimProvider("sim", SimProfile(ttft_ms=1, itl_ms=1, skill=1.0))
        warmed = await warm_local([local, other, dead], "You book tables.", [tool])
        tg.cancel_scope.cancel()
    assert warmed == 1
    (sent,) = [r.body for r in upstream.received if r.path == "/v1/chat/completions"]
    assert sent["max_tokens"] == 1 or sent.get("max_completion_tokens") == 1
    (system,) = sent["messages"]
    assert system["role"] == "system"
    assert system["content"].startswith("You book tables.")
    assert '"name": "find_booking"' in system["content"]  # the tools block, as turns send it
    await local.aclose()
    await dead.aclose()
