"""The official ``openai`` SDK's GA realtime client against the server, unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from openai import AsyncOpenAI

from realtime_cascade.server.app import RealtimeServer

from .helpers import BOOK, HARD

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def sdk(server: RealtimeServer) -> AsyncIterator[Any]:
    client = AsyncOpenAI(
        api_key="sk-test", base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
    )
    async with client.realtime.connect(model="default", max_retries=0) as conn:
        yield conn


async def say(conn: Any, text: str) -> None:
    await conn.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


async def collect(conn: Any, until: str = "response.done", within: float = 10.0) -> list[Any]:
    events: list[Any] = []
    with anyio.fail_after(within):
        async for event in conn:  # dispatch on .type: unknown types arrive in unrelated classes
            events.append(event)
            if event.type == until:
                return events
    raise AssertionError(f"connection ended before {until}")


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def deltas(events: list[Any]) -> str:
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


async def test_text_turn(server: RealtimeServer) -> None:
    async with sdk(server) as conn:
        await say(conn, BOOK)
        await conn.response.create()
        events = await collect(conn)
    kinds = types(events)
    assert kinds[0] == "session.created"
    assert kinds.index("response.created") < kinds.index("response.output_text.delta")
    assert kinds.index("response.output_text.delta") < kinds.index("response.output_text.done")
    done = events[-1]
    assert done.response.status == "completed"
    assert done.response.usage.output_tokens > 0 and done.response.usage.input_tokens > 0
    text = deltas(events)
    assert "book a table for two" in text
    text_done = next(e for e in events if e.type == "response.output_text.done")
    assert text_done.text == text
    assert done.response.output[0].content[0].text == text
    trace = next(e for e in events if e.type == "cascade.trace").trace
    assert trace["text"] == text and trace["final_tier_name"] == "light"
    assert "cascade.handoff" not in kinds


async def test_escalating_turn(server: RealtimeServer) -> None:
    async with sdk(server) as conn:
        await say(conn, HARD)
        await conn.response.create()
        events = await collect(conn)
    decisions = [e.decision for e in events if e.type == "cascade.decision"]
    assert any(d["kind"] == "preempt" for d in decisions)
    handoff = next(e for e in events if e.type == "cascade.handoff")
    assert (handoff.from_tier_name, handoff.to_tier_name) == ("light", "strong")
    text = deltas(events)
    assert handoff.released_chars <= len(text)
    assert events[-1].response.status == "completed"
    trace = next(e for e in events if e.type == "cascade.trace").trace
    assert trace["escalated"] and trace["text"] == text


async def test_cancel_mid_stream_truncates_to_released(server: RealtimeServer) -> None:
    async with sdk(server) as conn:
        await say(conn, HARD)
        await conn.response.create()
        events = await collect(conn, until="response.output_text.delta")
        await conn.response.cancel()
        events += await collect(conn)
        done = events[-1].response
        assert done.status == "cancelled"
        assert done.status_details.type == "cancelled"
        assert done.status_details.reason == "client_cancelled"
        released = deltas(events)
        trace = next(e for e in events if e.type == "cascade.trace").trace
        assert trace["status"] == "cancelled" and trace["text"] == released
        item = done.output[0]
        assert item.status == "incomplete" and item.content[0].text == released
        # history holds exactly what was released
        await conn.conversation.item.retrieve(item_id=item.id)
        got = await collect(conn, until="conversation.item.retrieved")
        assert got[-1].item.content[0].text == released
        assert len(released) < len("Alright, let me see. I can move your Thursday flight")
        # and the session goes on
        await say(conn, BOOK)
        await conn.response.create()
        again = await collect(conn)
        assert again[-1].response.status == "completed"


async def test_tool_call_round_trip(server: RealtimeServer) -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
    async with sdk(server) as conn:
        await conn.session.update(session={"type": "realtime", "tools": [tool]})
        updated = await collect(conn, until="session.updated")
        assert updated[-1].session.tools[0].name == "get_weather"
        await say(conn, "please call get_weather for Paris")
        await conn.response.create()
        events = await collect(conn)
        kinds = types(events)
        assert "response.function_call_arguments.delta" in kinds
        args_done = next(e for e in events if e.type == "response.function_call_arguments.done")
        assert args_done.name == "get_weather" and "Paris" in args_done.arguments
        assert events[-1].response.status == "completed"
        call = events[-1].response.output[-1]
        assert call.type == "function_call" and call.call_id == args_done.call_id
        await conn.conversation.item.create(
            item={"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}
        )
        await conn.response.create()
        events = await collect(conn)
    assert deltas(events) == "Here is what I found: sunny, 21 C."
    assert events[-1].response.status == "completed"
