"""Conformance: golden transcripts in ``protocols/golden/*.jsonl`` replayed against the server.

Each line is ``{"client": EVENT}`` (sent) or ``{"server": EVENT}`` (expected). After each client
event the server's events up to the block's last one are read and compared after
normalisation: ids, timings, scores and traces vary from run to run; how the released text is
split into deltas depends on timing, so consecutive deltas are joined; cascade decisions are
compared apart (kind and tier, in order), since they may land between any two deltas.

Every event on the wire must also decode strictly as the structs the schema is made from.
``UPDATE_GOLDEN=1 pytest tests/server/test_golden.py`` re-records the transcripts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from realtime_cascade import wire
from realtime_cascade.server.app import RealtimeServer

from .helpers import BOOK, Raw, user_item

pytestmark = pytest.mark.anyio

GOLDEN = Path(__file__).resolve().parents[2] / "protocols" / "golden"
_ID = re.compile(r"^(item|resp|call|sess|event)_[0-9a-zA-Z_]+$")
_VARIABLE = {"t_ms", "usage", "trace", "scores", "reason"}

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}

Step = tuple[dict[str, Any] | None, str]

# How the transcripts were recorded: (client event or None, read until this server event type).
SCENARIOS: dict[str, list[Step]] = {
    "text_turn": [
        (None, "session.created"),
        (user_item(BOOK) | {"event_id": "evt_client_1"}, "conversation.item.done"),
        (
            {"type": "response.create", "response": {"metadata": {"topic": "booking"}}},
            "response.done",
        ),
    ],
    "tool_call": [
        (None, "session.created"),
        (
            {
                "type": "session.update",
                "session": {"type": "realtime", "tools": [TOOL], "instructions": "Be brief."},
            },
            "session.updated",
        ),
        (user_item("please call get_weather for Paris"), "conversation.item.done"),
        ({"type": "response.create"}, "response.done"),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": "CALL",
                    "output": "sunny, 21 C",
                },
            },
            "conversation.item.done",
        ),
        ({"type": "response.create"}, "response.done"),
    ],
    "errors": [
        (None, "session.created"),
        ({"type": "response.cancel", "event_id": "e1"}, "error"),
        ({"type": "no.such.event", "event_id": "e2"}, "error"),
        ({"type": "conversation.item.retrieve", "event_id": "e3", "item_id": 7}, "error"),
        (
            {
                "type": "conversation.item.create",
                "event_id": "e4",
                "item": {"type": "function_call_output", "call_id": "call_x", "output": "1"},
            },
            "error",
        ),
        ({"type": "input_audio_buffer.commit", "event_id": "e5"}, "error"),
        ({"type": "conversation.item.delete", "event_id": "e6", "item_id": "item_x"}, "error"),
    ],
}

_SERVER = msgspec.json.Decoder(wire.ServerEvent)
_CLIENT = msgspec.json.Decoder(wire.ClientEvent)


def normalise(value: Any) -> Any:
    match value:
        case dict():
            return {k: "<var>" if k in _VARIABLE else normalise(v) for k, v in value.items()}
        case list():
            return [normalise(v) for v in value]
        case str() if _ID.match(value):
            return "<id>"
        case _:
            return value


def shape(events: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """(events with deltas joined and decisions removed, decisions as (kind, tier))."""
    decisions = [
        (e["decision"]["kind"], e["decision"]["tier_name"])
        for e in events
        if e["type"] == "cascade.decision"
    ]
    out: list[dict[str, Any]] = []
    for e in events:
        if e["type"] == "cascade.decision":
            continue
        if e["type"] == "response.output_text.delta" and out and out[-1]["type"] == e["type"]:
            out[-1] = out[-1] | {"delta": out[-1]["delta"] + e["delta"]}
            continue
        out.append(e)
    return [normalise(e) for e in out], decisions


async def read_block(client: Raw, last: str, count: int) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while count:
        data = await client.ws.recv()
        _SERVER.decode(data)  # conformance: strictly the schema's structs
        event: dict[str, Any] = json.loads(data)
        seen.append(event)
        count -= event["type"] == last
    return seen


def fill_call_id(event: dict[str, Any], call_id: str | None) -> dict[str, Any]:
    item = event.get("item")
    if call_id and isinstance(item, dict) and item.get("call_id") == "CALL":
        return event | {"item": item | {"call_id": call_id}}
    return event


def last_call_id(events: list[dict[str, Any]], current: str | None) -> str | None:
    for e in events:
        if e["type"] == "response.function_call_arguments.done":
            current = e["call_id"]
    return current


async def record(server: RealtimeServer, name: str) -> None:
    lines: list[dict[str, Any]] = []
    call_id: str | None = None
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=default"
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        client = Raw(ws)
        for event, until in SCENARIOS[name]:
            if event is not None:
                event = fill_call_id(event, call_id)
                lines.append({"client": event})
                await client.send(event)
            block = await read_block(client, until, 1)
            call_id = last_call_id(block, call_id)
            lines.extend({"server": e} for e in block)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    (GOLDEN / f"{name}.jsonl").write_text(text)


async def replay(server: RealtimeServer, path: Path) -> None:
    lines = [
        json.loads(line)
        for line in (await anyio.Path(path).read_text()).splitlines()
        if line.strip()
    ]
    # split into blocks: (client event or None, expected server events)
    blocks: list[tuple[dict[str, Any] | None, list[dict[str, Any]]]] = []
    for line in lines:
        if "client" in line or not blocks:
            blocks.append((line.get("client"), []))
        if "server" in line:
            blocks[-1][1].append(line["server"])
    recorded_call: str | None = None  # ids differ per run: map the recorded call id
    actual_call: str | None = None
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model=default"
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None) as ws:
        client = Raw(ws)
        for event, expected in blocks:
            last = expected[-1]["type"]
            if event is not None:
                if last != "error":
                    _CLIENT.decode(json.dumps(event))  # the golden's own events conform
                item = event.get("item")
                if (
                    isinstance(item, dict)
                    and recorded_call
                    and item.get("call_id") == recorded_call
                ):
                    event = event | {"item": item | {"call_id": actual_call}}
                await client.send(event)
            got = await read_block(client, last, sum(e["type"] == last for e in expected))
            recorded_call = last_call_id(expected, recorded_call)
            actual_call = last_call_id(got, actual_call)
            assert shape(got) == shape(expected), f"{path.name}: after {event}"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_golden(server: RealtimeServer, name: str) -> None:
    path = GOLDEN / f"{name}.jsonl"
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        await record(server, name)
    await replay(server, path)


def test_every_golden_has_a_scenario() -> None:
    assert {p.stem for p in GOLDEN.glob("*.jsonl")} <= set(SCENARIOS)
