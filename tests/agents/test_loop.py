"""The server's tool loop: server-side tools beside client-side ones, failures as results,
cancellation during a tool run, and the example agent tested the way the docs show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import msgspec
import pytest

from realtime_cascade import Agent, config, run_conversation
from realtime_cascade.server.app import RealtimeServer
from tests.server.helpers import raw, user_item

pytestmark = pytest.mark.anyio



@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def lookup(query: str) -> str:
    """Look something up."""
    return f"found {len(query)} characters"


def explode(query: str) -> str:
    """Always fails."""
    raise RuntimeError("database is down")


@asynccontextmanager
async def serving(agent: Agent[Any]) -> AsyncIterator[RealtimeServer]:
    cfg = config.load()
    profile = config.build_profile(cfg, "default")
    profile.agent = agent
    try:
        async with RealtimeServer(
            cfg, host="127.0.0.1", port=0, profiles={"default": profile}
        ) as server:
            yield server
    finally:
        await profile.aclose()


def outputs(events: list[dict[str, Any]]) -> list[str]:
    done = events[-1]["response"]
    return [i["output"] for i in done["output"] if i["type"] == "function_call_output"]


async def test_a_tool_the_client_declares_is_the_clients_to_run() -> None:
    async with serving(Agent(tools=[lookup])) as server, raw(server) as client:
        tool = {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
        await client.send({"type": "session.update", "session": {"tools": [tool]}})
        await client.until("session.updated")
        events = await client.turn("please lookup the weather")
    assert [e for e in events if e["type"] == "cascade.tool_result"] == []
    assert outputs(events) == []
    call = events[-1]["response"]["output"][-1]
    assert call["type"] == "function_call" and call["name"] == "lookup"


async def test_a_failing_tool_is_a_result_and_the_response_goes_on() -> None:
    async with serving(Agent(tools=[explode])) as server, raw(server) as client:
        events = await client.turn("explode please")
    (ran,) = [e for e in events if e["type"] == "cascade.tool_result"]
    assert ran["status"] == "error"
    (output,) = outputs(events)
    assert msgspec.json.decode(output)["error"] == "tool_failed"
    assert "database is down" in output
    assert events[-1]["response"]["status"] == "completed"
    assert "Here is what I found" in "".join(
        e["delta"] for e in events if e["type"] == "response.output_text.delta"
    )


async def test_cancel_during_a_tool_run_ends_the_response_cancelled() -> None:
    started, release = anyio.Event(), anyio.Event()

    async def wait_here(query: str) -> str:
        """Waits until released."""
        started.set()
        await release.wait()
        return "never heard"

    async with serving(Agent(tools=[wait_here])) as server, raw(server) as client:
        await client.send(user_item("wait_here for me"))
        await client.send({"type": "response.create"})
        with anyio.fail_after(10):
            await started.wait()
        await client.send({"type": "response.cancel"})
        events = await client.until("response.done")
        assert events[-1]["response"]["status"] == "cancelled"
        assert outputs(events) == []
        again = await client.turn("and now lookup nothing")  # the session goes on
    assert again[-1]["response"]["status"] == "completed"


def test_the_example_agent_as_the_docs_test_it() -> None:
    from examples.weather_agent import agent

    (turn,) = run_conversation(agent, ["call get_weather for Paris"])
    turn.assert_tool_called("get_weather")
    turn.assert_said("Sunny and 21")
    assert turn.tiers == ("light", "light")
    assert not turn.escalated
    (again,) = run_conversation(agent, ["call get_weather for Paris"])  # seeded: the same
    assert (again.text, again.tools[0].arguments) == (turn.text, turn.tools[0].arguments)


class _Seeds:
    """A provider wrapper that records the seed of every model call."""

    def __init__(self, inner: Any, seen: list[int]) -> None:
        self.inner = inner
        self.seen = seen

    def stream(self, request: Any) -> Any:
        self.seen.append(request.seed)
        return self.inner.stream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_every_model_call_of_a_session_draws_its_own_seed() -> None:
    # As when the client sent one response.create per step: a tool step is a model call of
    # its own, so two turns of one tool step each ask for four distinct, increasing seeds.
    seen: list[int] = []
    async with serving(Agent(tools=[lookup])) as server:
        profile = server.profiles["default"]
        profile.providers = tuple(_Seeds(p, seen) for p in profile.providers)
        async with raw(server) as client:
            await client.turn("please lookup the weather")
            await client.turn("please lookup the time")
    assert seen == [0, 1, 2, 3]
