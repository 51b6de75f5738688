"""The booking agent loop over a real WebSocket: the server runs the cascade, we run the tools.

The client speaks the OpenAI Realtime GA events: ``session.update`` (instructions, tools, and the
``cascade`` extension that picks the policy's tiers and the session budget),
``conversation.item.create`` + ``response.create`` per user turn, and once a response that
called tools is done it executes each ``response.function_call_arguments.done`` against its own
store, adds a ``function_call_output`` item per call and asks for the next step. The loop and its
caps are :class:`~.agent.AgentLoop`'s: a traced decision and a sentence (added to the
conversation as an assistant message, so the history says what the user heard).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection

from realtime_cascade.core import ToolCallRecord
from realtime_cascade.trace import TurnTrace

from .agent import (
    AgentLimits,
    AgentLoop,
    Policy,
    ToolRun,
    TurnLog,
    system_prompt,
)
from .domain import Store
from .tools import TOOLS

NOT_RUN = {"ok": False, "error": "tool_cap", "message": "not run: the tool-call cap was reached"}


class ProtocolError(Exception):
    """The server sent an ``error`` event, or closed, in the middle of a turn."""


def realtime_tools() -> list[dict[str, object]]:
    """:data:`TOOLS` in the Realtime shape (flat ``name``/``parameters``, no ``function``)."""
    out = []
    for tool in TOOLS:
        fn = tool["function"]
        assert isinstance(fn, dict)
        out.append({"type": "function", **fn})
    return out


class WsAgent(AgentLoop):
    """One conversation over one connection. Not shared between tasks."""

    def __init__(
        self,
        ws: ClientConnection,
        store: Store,
        *,
        limits: AgentLimits | None = None,
        policy: Policy | None = None,
        session_cap_usd: float = 1.0,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            store, limits=limits, policy=policy, on_text=on_text, session_cap_usd=session_cap_usd
        )
        self.ws = ws

    async def _send(self, event: dict[str, Any]) -> None:
        await self.ws.send(msgspec.json.encode(event).decode())

    async def _recv(self) -> dict[str, Any]:
        event = msgspec.json.decode(await self.ws.recv())
        if not isinstance(event, dict):
            raise ProtocolError(f"not an event: {event!r}")
        return event

    async def _add_item(self, item: dict[str, Any]) -> None:
        await self._send({"type": "conversation.item.create", "item": item})

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
                "session": {
                    "type": "realtime",
                    "instructions": system_prompt(self.store),
                    "tools": realtime_tools(),
                    "output_modalities": ["text"],
                    "cascade": cascade,
                },
            }
        )
        while (await self._recv())["type"] != "session.updated":
            pass

    async def _add_user(self, text: str) -> None:
        await self._add_item(
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        )

    async def _step(
        self, log: TurnLog, *, fillers: bool
    ) -> tuple[TurnTrace | None, Sequence[ToolCallRecord]]:
        create: dict[str, Any] = {"type": "response.create"}
        if not fillers:
            create["response"] = {"cascade": {"budgets": {"fillers": []}}}
        await self._send(create)
        trace: TurnTrace | None = None
        calls: list[ToolCallRecord] = []
        while True:
            event = await self._recv()
            match event["type"]:
                case "response.output_text.delta":
                    log.hear(str(event["delta"]))
                case "cascade.filler":
                    log.fillers.append(str(event["text"]))
                case "cascade.trace":
                    trace = msgspec.convert(event["trace"], TurnTrace)
                case "response.function_call_arguments.done":
                    calls.append(
                        ToolCallRecord(
                            str(event["call_id"]), str(event["name"]), str(event["arguments"])
                        )
                    )
                case "response.done":
                    return trace, calls
                case "error":
                    raise ProtocolError(str(event.get("error")))
                case _:
                    pass  # clients must tolerate events they do not use

    async def _add_answer(self, trace: TurnTrace) -> None:
        return None  # the server's conversation holds the response already

    async def _add_runs(self, trace: TurnTrace | None, runs: Sequence[ToolRun]) -> None:
        for r in runs:
            await self._add_item(
                {"type": "function_call_output", "call_id": r.call_id, "output": r.result}
            )

    async def _add_unrun(self, trace: TurnTrace | None, calls: Sequence[ToolCallRecord]) -> None:
        # the server's conversation holds the calls: each needs an output before the next step
        for c in calls:
            output = msgspec.json.encode({"tool": c.name, **NOT_RUN}).decode()
            await self._add_item(
                {"type": "function_call_output", "call_id": c.call_id, "output": output}
            )

    async def _add_said(self, sentence: str) -> None:
        await self._add_item(
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": sentence}],
            }
        )
