"""The booking agent loop over a real WebSocket: the server runs the cascade, we run the tools.

The client speaks the OpenAI Realtime GA events: ``session.update`` (instructions, tools, and the
``cascade`` extension that picks the policy's tiers and the session budget),
``conversation.item.create`` + ``response.create`` per user turn, and for every
``response.function_call_arguments.done`` it executes the call against its own store and adds a
``function_call_output`` item; once the response is done it asks for the next step. The caps
behave as in :mod:`demos.booking.agent`: a traced decision and a sentence (added to the
conversation as an assistant message, so the history says what the user heard).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import msgspec
from websockets.asyncio.client import ClientConnection

from realtime_cascade.trace import TurnTrace

from .agent import (
    BUDGET_SENTENCE,
    FAILED_SENTENCE,
    TOOL_CAP_SENTENCE,
    AgentDecision,
    AgentDecisionKind,
    AgentLimits,
    Policy,
    ToolRun,
    TurnResult,
    system_prompt,
)
from .domain import Store
from .tools import TOOLS, execute

_MUTATING = ("create_booking", "change_booking", "cancel_booking")


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


class WsAgent:
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
        self.ws = ws
        self.store = store
        self.limits = limits or AgentLimits()
        self.policy = policy or Policy()
        self.session_cap_usd = (
            self.limits.session_budget_usd
            if self.limits.session_budget_usd is not None
            else session_cap_usd
        )
        self.on_text = on_text
        self.spent_usd = 0.0

    async def _send(self, event: dict[str, Any]) -> None:
        await self.ws.send(msgspec.json.encode(event).decode())

    async def _recv(self) -> dict[str, Any]:
        event = msgspec.json.decode(await self.ws.recv())
        if not isinstance(event, dict):
            raise ProtocolError(f"not an event: {event!r}")
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

    async def _say(self, sentence: str) -> None:
        item = {"type": "message", "role": "assistant",
                "content": [{"type": "output_text", "text": sentence}]}
        await self._send({"type": "conversation.item.create", "item": item})

    async def turn(self, text: str) -> TurnResult:
        t0 = anyio.current_time()
        heard: list[str] = []
        fillers: list[str] = []
        first_text: list[float] = []
        steps: list[TurnTrace] = []
        tools: list[ToolRun] = []
        decisions: list[AgentDecision] = []
        spent_before = self.spent_usd

        def ms() -> float:
            return round((anyio.current_time() - t0) * 1000.0, 3)

        def hear(piece: str) -> None:
            if not first_text:
                first_text.append(ms())
            heard.append(piece)
            if self.on_text is not None:
                self.on_text(piece)

        async def say(sentence: str) -> None:
            joined = "".join(heard)
            hear(sentence if not joined or joined.endswith(" ") else " " + sentence)
            await self._say(sentence)

        user = {"type": "message", "role": "user",
                "content": [{"type": "input_text", "text": text}]}
        await self._send({"type": "conversation.item.create", "item": user})
        calls_made = 0
        capped = False
        while True:
            if self.spent_usd >= self.session_cap_usd:
                reason = (
                    f"session budget ${self.session_cap_usd:.4f} spent "
                    f"(${self.spent_usd:.4f}): not starting another step"
                )
                decisions.append(AgentDecision("session_budget", reason, ms()))
                await say(BUDGET_SENTENCE)
                break
            await self._send({"type": "response.create"})
            step_calls = 0
            trace: TurnTrace | None = None
            while True:
                event = await self._recv()
                match event["type"]:
                    case "response.output_text.delta":
                        hear(str(event["delta"]))
                    case "cascade.filler":
                        fillers.append(str(event["text"]))
                    case "cascade.trace":
                        trace = msgspec.convert(event["trace"], TurnTrace)
                    case "response.function_call_arguments.done":
                        name, args = str(event["name"]), str(event["arguments"])
                        call_id = str(event["call_id"])
                        if calls_made + step_calls >= self.limits.max_tool_calls:
                            capped = True
                            result = msgspec.json.encode(
                                {"tool": name, "ok": False, "error": "tool_cap",
                                 "message": "not run: the tool-call cap was reached"}
                            ).decode()
                        else:
                            result = execute(self.store, name, args)
                            tools.append(ToolRun(call_id, name, args, result, "server"))
                        step_calls += 1
                        item = {"type": "function_call_output", "call_id": call_id,
                                "output": result}
                        await self._send({"type": "conversation.item.create", "item": item})
                    case "response.done":
                        break
                    case "error":
                        raise ProtocolError(str(event.get("error")))
                    case _:
                        pass  # clients must tolerate events they do not use
            if trace is not None:
                steps.append(trace)
                self.spent_usd += trace.cost_usd
            if capped:
                cap = self.limits.max_tool_calls
                reason = (
                    f"max_tool_calls {cap} reached: {calls_made} made, {step_calls} more "
                    "requested; not executed"
                )
                decisions.append(AgentDecision("tool_cap", reason, ms()))
                changed = any(t.name in _MUTATING for t in tools)
                done = "What I've already done stands. " if changed else ""
                await say(TOOL_CAP_SENTENCE.format(cap=cap, done=done))
                break
            calls_made += step_calls
            if step_calls:
                continue
            if trace is None or not trace.text:
                budget = trace is not None and any(d.cause == "budget" for d in trace.decisions)
                kind: AgentDecisionKind = "session_budget" if budget else "turn_failed"
                why = trace.reason if trace is not None else "no trace"
                decisions.append(AgentDecision(kind, f"step ended without text: {why}", ms()))
                await say(BUDGET_SENTENCE if budget else FAILED_SENTENCE)
            break
        return TurnResult(
            user=text,
            text="".join(heard),
            fillers=tuple(fillers),
            steps=tuple(steps),
            tools=tuple(tools),
            decisions=tuple(decisions),
            cost_usd=self.spent_usd - spent_before,
            first_text_ms=first_text[0] if first_text else None,
            end_ms=ms(),
        )
