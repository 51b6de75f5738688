"""A raw WebSocket client for protocol tests: JSON in, JSON out, nothing hidden."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect

from realtime_cascade.server.app import RealtimeServer

BOOK = "Book a table for two at 7pm tonight."
HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
    "and apply my voucher unless the fare goes up."
)


def user_item(text: str, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    item.update(fields)
    return {"type": "conversation.item.create", "item": item}


class Raw:
    """A raw WebSocket client: JSON in, JSON out, nothing hidden."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.session: dict[str, Any] = {}  # from session.created

    async def send(self, event: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(event if isinstance(event, str | bytes) else json.dumps(event))

    async def recv(self, within: float = 10.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            data = await self.ws.recv()
        value: dict[str, Any] = json.loads(data)
        return value

    async def until(self, kind: str, within: float = 10.0) -> list[dict[str, Any]]:
        """Every event up to and including the first of type ``kind``."""
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(within):
            while True:
                event = await self.recv()
                seen.append(event)
                if event["type"] == kind:
                    return seen

    async def turn(self, text: str, within: float = 10.0) -> list[dict[str, Any]]:
        await self.send(user_item(text))
        await self.send({"type": "response.create"})
        return await self.until("response.done", within)


@asynccontextmanager
async def raw(server: RealtimeServer, model: str = "default", **kwargs: Any) -> AsyncIterator[Raw]:
    async with connect(server.url(model), max_size=None, **kwargs) as ws:
        client = Raw(ws)
        created = await client.recv()
        assert created["type"] == "session.created", created
        client.session = created["session"]
        yield client


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
