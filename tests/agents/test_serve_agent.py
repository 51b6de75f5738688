"""Acceptance: an agent defined in a module of its own, bound to a profile in TOML and served;
the official ``openai`` SDK's realtime client gets a turn whose tool ran server-side."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from openai import AsyncOpenAI

from realtime_cascade import config as config_mod
from realtime_cascade.server.app import RealtimeServer

pytestmark = pytest.mark.anyio

AGENT_MODULE = '''
from realtime_cascade import Agent, Answer

CALLS: list[str] = []
VERIFIED: list[tuple[str, ...]] = []


def get_weather(query: str) -> dict[str, object]:
    """The weather in a city.

    Args:
        query: the user's words
    """
    CALLS.append(query)
    return {"forecast": "sunny, 21 C"}


def only_known_tools(answer: Answer) -> str | None:
    VERIFIED.append(tuple(c.name for c in answer.tool_calls))
    return None


agent = Agent(instructions="Be brief.", tools=[get_weather], verifiers=[only_known_tools])
'''


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def agent_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    (tmp_path / "weather_agent_mod.py").write_text(textwrap.dedent(AGENT_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    module = importlib.import_module("weather_agent_mod")
    yield module
    sys.modules.pop("weather_agent_mod", None)


def served_config(ref: str) -> config_mod.Config:
    default = config_mod.load()
    toml = f'''
[profiles.weather]
agent = "{ref}"
'''
    cfg = config_mod.loads(toml + _tiers_toml(), "agent.toml")
    return config_mod.Config(profiles=cfg.profiles, audio=default.audio)


def _tiers_toml() -> str:
    return '''
[[profiles.weather.tiers]]
name = "light"
provider = { kind = "sim", ttft_ms = 20, itl_ms = 2, skill = 0.5, seed = 1 }

[[profiles.weather.tiers]]
name = "strong"
provider = { kind = "sim", ttft_ms = 40, itl_ms = 3, skill = 1.0, seed = 1 }
'''


async def collect(conn: Any, within: float = 10.0) -> list[Any]:
    events: list[Any] = []
    with anyio.fail_after(within):
        async for event in conn:
            events.append(event)
            if event.type == "response.done":
                return events
    raise AssertionError("connection ended before response.done")


async def test_the_sdk_gets_a_turn_whose_tool_ran_server_side(agent_module: Any) -> None:
    cfg = served_config("weather_agent_mod:agent")
    async with RealtimeServer(cfg, host="127.0.0.1", port=0) as server:
        client = AsyncOpenAI(
            api_key="sk-test", base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
        )
        async with client.realtime.connect(model="weather", max_retries=0) as conn:
            text = "please call get_weather for Paris"
            content = [{"type": "input_text", "text": text}]
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": content}
            )
            await conn.response.create()
            events = await collect(conn)
    kinds = [e.type for e in events]
    assert kinds.count("response.created") == 1 and kinds.count("response.done") == 1
    # the tool ran here, on the server, once, with the model's arguments
    assert agent_module.CALLS == ["Paris"]  # the words after the tool's name
    # ... and the verifier saw the call before it ran, then the answer after it
    assert agent_module.VERIFIED[0] == ("get_weather",) and agent_module.VERIFIED[-1] == ()
    done = events[-1].response
    assert done.status == "completed"
    call, output, answer = done.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert output.type == "function_call_output" and output.call_id == call.call_id
    assert output.output == '{"forecast":"sunny, 21 C"}'
    assert answer.type == "message" and answer.role == "assistant"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == 'Here is what I found: {"forecast":"sunny, 21 C"}.'
    assert answer.content[0].text == text
    # traced: the tool's run, and one cascade.trace per cascade step
    (ran,) = [e for e in events if e.type == "cascade.tool_result"]
    assert (ran.name, ran.status, ran.step, ran.tier_name) == ("get_weather", "ok", 0, "light")
    traces = [e.trace for e in events if e.type == "cascade.trace"]
    assert [len(t["tool_calls"]) for t in traces] == [1, 0]
    assert kinds.index("cascade.tool_result") < kinds.index("response.output_text.delta")
    usage = done.usage
    steps_out = sum(a["output_tokens"] for t in traces for a in t["attempts"])
    assert usage.output_tokens == steps_out
    # the agent's instructions and tool are the session's defaults
    added = [e.item.type for e in events if e.type == "conversation.item.added"]
    assert added == ["message", "function_call", "function_call_output", "message"]
