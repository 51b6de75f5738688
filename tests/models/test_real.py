"""A real model end to end: SmolLM2-135M on a supervised llama-server, real tokens with real
logprobs, through the WebSocket server and the official ``openai`` SDK client.

Needs the cache that ``make models-smol`` fills (``make test`` runs it first: the model is a
98 MB download, llama-server a one-off build of about 6 minutes on 2 cores). Without it these
tests fail and say what to run; they never skip.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from openai import AsyncOpenAI

from realtime_cascade import config as config_mod
from realtime_cascade.models.build import require_server
from realtime_cascade.models.cache import Cache
from realtime_cascade.models.errors import NotInstalled
from realtime_cascade.models.fetch import is_verified
from realtime_cascade.models.manifest import model
from realtime_cascade.models.provider import LocalProvider, LocalProviderConfig, start_local
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.server import RealtimeServer

pytestmark = pytest.mark.anyio

SMOL = model("smollm2-135m")

CONFIG = """
[profiles.local]
[[profiles.local.tiers]]
name = "light"
price_in = 0.01
price_out = 0.03
expected_ttft_ms = 300
ttft_timeout_ms = 10000
stall_timeout_ms = 5000
max_output_tokens = 40
provider = { kind = "local", model = "smollm2-135m" }

[[profiles.local.tiers]]
name = "strong"
price_in = 0.03
price_out = 0.09
expected_ttft_ms = 300
ttft_timeout_ms = 10000
stall_timeout_ms = 5000
max_output_tokens = 40
provider = { kind = "local", model = "smollm2-135m" }

[profiles.local.budgets]
first_text_ms = 5000
end_of_turn_ms = 60000
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _installed() -> None:
    cache = Cache()
    try:
        require_server(cache)
    except NotInstalled as exc:
        pytest.fail(f"{exc.message}\n(`make models-smol` fetches SmolLM2 and builds it)")
    if not is_verified(cache, SMOL):
        pytest.fail(
            f"SmolLM2 is not in {cache.models}: run `make models-smol` "
            "(or `realtime-cascade models fetch smollm2-135m`)"
        )


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_local_tier_streams_real_tokens_with_real_logprobs() -> None:
    provider = LocalProvider("light", LocalProviderConfig(model="smollm2-135m"))
    try:
        await provider.start()
        request = TierRequest(
            (Message("user", "Name three colours of the rainbow."),), max_tokens=24
        )
        async with contextlib.aclosing(provider.stream(request)) as stream:
            chunks = [c async for c in stream]
    finally:
        await provider.aclose()
    tokens = [c for c in chunks if c.text]
    assert len(tokens) >= 5
    assert "".join(c.text for c in tokens).strip()
    assert all(c.logprob is not None and c.logprob <= 0.0 for c in tokens)
    assert all(len(c.top_logprobs) == 5 for c in tokens)
    # greedy: each token is its step's most likely one
    assert all(math.isclose(c.logprob or 0.0, c.top_logprobs[0], abs_tol=1e-4) for c in tokens)
    assert any((c.logprob or 0.0) < -0.05 for c in tokens), "every token certain: not a model"
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].usage is not None
    assert provider.server is not None and provider.server.starts == 1


@contextlib.asynccontextmanager
async def local_server() -> AsyncIterator[RealtimeServer]:
    cfg = config_mod.loads(CONFIG, "test")
    async with RealtimeServer(cfg, host="127.0.0.1", port=0) as server:
        await start_local(server.profiles["local"].providers)
        yield server


async def test_a_real_turn_through_the_websocket_server_and_the_sdk() -> None:
    pids: list[int] = []
    async with local_server() as server:
        for p in server.profiles["local"].providers:
            assert isinstance(p, LocalProvider) and p.server is not None and p.server.pid
            pids.append(p.server.pid)
        client = AsyncOpenAI(
            api_key="sk-test", base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
        )
        events: list[Any] = []
        async with client.realtime.connect(model="local", max_retries=0) as conn:
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "What is the capital of France?"}],
                }
            )
            await conn.response.create()
            with anyio.fail_after(90):
                async for event in conn:
                    events.append(event)
                    if event.type == "response.done":
                        break
    kinds = [e.type for e in events]
    assert "response.output_text.delta" in kinds
    done = events[-1].response
    assert done.status in ("completed", "incomplete")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip()
    trace = next(e for e in events if e.type == "cascade.trace").trace
    assert trace["text"] == text
    first = trace["attempts"][0]
    assert first["tier_name"] == "light" and first["output_tokens"] > 0
    assert first["first_token_ms"] is not None
    # the monitor judged real probabilities: neither certain nor missing
    judged = [d for d in trace["decisions"] if d["scores"].get("tokens")]
    assert judged, f"no decision scored tokens: {trace['decisions']}"
    scores = judged[-1]["scores"]
    assert 0.0 < scores["min_p"] < 0.999
    assert 0.0 < scores["quantile_p"] <= 1.0
    assert scores["entropy"] > 0.0
    assert judged[-1]["kind"] in ("accept", "preempt", "hedge", "refuse")
    # the servers ended with the cascade server
    assert all(gone(pid) for pid in pids)
