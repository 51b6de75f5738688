"""A raw Realtime client and an HTTP GET for the observability tests."""

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


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self, within: float = 15.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            value: dict[str, Any] = json.loads(await self.ws.recv())
        return value

    async def until(self, kind: str, within: float = 15.0) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        while True:
            event = await self.recv(within)
            seen.append(event)
            if event["type"] == kind:
                return seen

    async def say(self, text: str) -> None:
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        await self.send({"type": "conversation.item.create", "item": item})
        await self.until("conversation.item.done")

    async def respond(self, **response: Any) -> list[dict[str, Any]]:
        event: dict[str, Any] = {"type": "response.create"}
        if response:
            event["response"] = response
        await self.send(event)
        return await self.until("response.done")

    async def turn(self, text: str, **response: Any) -> list[dict[str, Any]]:
        await self.say(text)
        return await self.respond(**response)


def trace_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    traces = [e["trace"] for e in events if e["type"] == "cascade.trace"]
    assert len(traces) == 1, [e["type"] for e in events]
    trace: dict[str, Any] = traces[0]
    return trace


@asynccontextmanager
async def client(
    server: RealtimeServer, model: str = "default", key: str | None = None
) -> AsyncIterator[Client]:
    url = f"ws://127.0.0.1:{server.port}/v1/realtime?model={model}"
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with connect(url, max_size=None, additional_headers=headers) as ws:
        c = Client(ws)
        created = await c.recv()
        assert created["type"] == "session.created", created
        yield c


async def http_get(
    server: RealtimeServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A minimal HTTP/1.1 GET (the server speaks HTTP only for these few paths)."""
    stream = await anyio.connect_tcp("127.0.0.1", server.port)
    async with stream:
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        try:
            while True:
                data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    status = int(status_line.split()[1])
    parsed = {}
    for line in header_lines:
        k, _, v = line.partition(":")
        parsed[k.strip().lower()] = v.strip()
    return status, parsed, body
