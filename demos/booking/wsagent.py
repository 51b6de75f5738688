"""The booking conversation over a real WebSocket: the server runs the cascade *and* the tools.

The profile binds the booking agent (``agent = "…booking.agent:agent"`` in ``config.toml``), so
the client only talks: ``session.update`` with the ``cascade`` extension (the policy's tiers and
the session budget), then ``conversation.item.create`` + one ``response.create`` per user turn.
The server's tool loop runs every step of the turn inside that response; this client reads the
events back into the same :class:`~realtime_cascade.agents.testing.TurnResult` the in-process
conversation returns (``cascade.trace`` per step, ``cascade.tool_result`` per tool run,
``cascade.agent_decision`` when the agent stops a turn).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection

from realtime_cascade.agents.testing import TurnResult
from realtime_cascade.runtime import AgentDecision, ToolRun
from realtime_cascade.trace import TurnTrace

from .agent import Policy
from .tools import TOOLS


class ProtocolError(Exception):
    """The server sent an ``error`` event, or closed, in the middle of a turn."""


def realtime_tools() -> list[dict[str, object]]:
    """:data:`TOOLS` in the Realtime shape (flat ``name``/``parameters``, no ``function``), for
    a client that runs the tools itself."""
    out = []
    for tool in TOOLS:
        fn = tool["function"]
        assert isinstance(fn, dict)
        out.append({"type": "function", **fn})
    return out


class WsConversation:
    """One conversation over one connection. Not shared between tasks."""

    def __init__(
        self, ws: ClientConnection, *, policy: Policy | None = None, session_cap_usd: float = 1.0
    ) -> None:
        self.ws = ws
        self.policy = policy or Policy()
        self.session_cap_usd = session_cap_usd
        self.session_id = ""

    async def _send(self, event: dict[str, Any]) -> None:
        await self.ws.send(msgspec.json.encode(event).decode())

    async def _recv(self) -> dict[str, Any]:
        event = msgspec.json.decode(await self.ws.recv())
        if not isinstance(event, dict):
            raise ProtocolError(f"not an event: {event!r}")
        if event.get("type") == "error":
            raise ProtocolError(str(event.get("error")))
        return event

    async def open(self) -> None:
        cascade: dict[str, object] = {
            "first_tier": self.policy.first_tier,
            "budgets": {"session_cap_usd": self.session_cap_usd},
        }
        if self.policy.max_tier is not None:
            cascade["max_tier"] = self.policy.max_tier
        await self._send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "output_modalities": ["text"], "cascade": cascade},
            }
        )
        while True:
            event = await self._recv()
            if event["type"] == "session.created":
                self.session_id = str(event["session"]["id"])
            if event["type"] == "session.updated":
                self.session_id = str(event["session"]["id"])
                return

    async def turn(self, text: str) -> TurnResult:
        content = [{"type": "input_text", "text": text}]
        item = {"type": "message", "role": "user", "content": content}
        await self._send({"type": "conversation.item.create", "item": item})
        t0 = time.perf_counter()
        await self._send({"type": "response.create"})
        heard: list[str] = []
        fillers: list[str] = []
        steps: list[TurnTrace] = []
        tools: list[ToolRun] = []
        ran: dict[str, dict[str, Any]] = {}  # call_id -> its cascade.tool_result
        arguments: dict[str, str] = {}  # call_id -> arguments
        decisions: list[AgentDecision] = []
        first_text: float | None = None
        new_item = True

        def ms() -> float:
            return round((time.perf_counter() - t0) * 1000.0, 3)

        while True:
            event = await self._recv()
            match event["type"]:
                case "response.output_text.delta":
                    piece = str(event["delta"])
                    if new_item and heard and not heard[-1][-1:].isspace() and piece[:1] != " ":
                        piece = " " + piece  # each item's text starts afresh
                    new_item = False
                    if first_text is None:
                        first_text = ms()
                    heard.append(piece)
                case "response.output_item.added":
                    new_item = True
                case "cascade.filler":
                    fillers.append(str(event["text"]))
                case "cascade.trace":
                    steps.append(msgspec.convert(event["trace"], TurnTrace))
                case "response.function_call_arguments.done":
                    arguments[str(event["call_id"])] = str(event["arguments"])
                case "cascade.tool_result":
                    ran[str(event["call_id"])] = event
                case "conversation.item.added" if event["item"]["type"] == "function_call_output":
                    call_id = str(event["item"]["call_id"])
                    r = ran[call_id]
                    tools.append(
                        ToolRun(
                            call_id,
                            str(r["name"]),
                            arguments.get(call_id, ""),
                            str(event["item"]["output"]),
                            r["status"],
                            float(r["duration_ms"]),
                            str(r["tier_name"]),
                            int(r["step"]),
                        )
                    )
                case "cascade.agent_decision":
                    decisions.append(
                        AgentDecision(event["kind"], str(event["reason"]), float(event["t_ms"]))
                    )
                case "response.done":
                    return TurnResult(
                        user=text,
                        text="".join(heard),
                        fillers=tuple(fillers),
                        steps=tuple(steps),
                        tools=tuple(tools),
                        decisions=tuple(decisions),
                        cost_usd=sum(s.cost_usd for s in steps),
                        first_text_ms=first_text,
                        end_ms=ms(),
                    )
                case _:
                    pass  # clients must tolerate events they do not use
