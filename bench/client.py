"""The bench's client: sessions that play conversations over the wire and time every event.

One worker is one concurrent session: it opens a connection per conversation (a fresh server
session and a fresh world), plays each user turn as an agent would (``response.create``; tool
calls executed locally against the conversation's own world, their outputs sent back, the next
``response.create``; until a response answers in words), checks the turn against its ground
truth, and at the end runs its barge-in turns (``response.cancel`` a fixed time after
``response.create``). Every event that matters is stamped with ``time.perf_counter()`` on
arrival; nothing is computed while the cell runs beyond what the protocol needs.

Policies are chosen per session with the ``cascade`` extension object, so one server serves
them all. *Post-hoc* is a client-side policy: the light tier answers out of band
(``conversation: "none"``, ``max_tier`` light), the client checks the answer as the core
would at a tier's finish (status not completed: a completeness or verifier problem; or the
end-of-answer confidence under ``preempt_below``), and either adopts it (adds its items to the
conversation; the listener hears it only now: an answer that may be redone cannot be spoken
while it streams) or redoes the step on the strong tier (``first_tier`` strong, in band).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from realtime_cascade import wire
from realtime_cascade.providers.base import Message
from realtime_cascade.server.conversation import Conversation as Mirror
from realtime_cascade.server.settings import chat_tools, merge_overrides

from .scenarios import Conversation, Mix

MAX_TOOL_CALLS = 6  # per user turn, as realtime_cascade.demos.booking.agent.AgentLimits


@dataclass(frozen=True)
class Policy:
    name: str
    session: dict[str, Any] | None = None  # the session's ``cascade`` overrides
    posthoc: bool = False
    bare: bool = False
    proxy: bool = False  # the bare server as a proxy of the light tier's sim upstream


def policies(last_tier: int) -> list[Policy]:
    """The policies measured, in the order they are run."""
    return [
        Policy("bare", bare=True),
        Policy("bare-proxy", bare=True, proxy=True),
        Policy("light-only", {"max_tier": 0}),
        Policy("strong-only", {"first_tier": last_tier}),
        Policy("post-hoc", posthoc=True),
        Policy("cascade", {"policy": {"hedging": False}}),
        Policy("cascade+hedge", {"policy": {"hedging": True}}),
    ]


class _Event(msgspec.Struct):
    type: str
    delta: str = ""
    response: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    trace: dict[str, Any] | None = None
    from_tier: int | None = None
    to_tier: int | None = None
    released_chars: int | None = None
    error: dict[str, Any] | None = None


_DECODE = msgspec.json.Decoder(_Event)
_LATE_CANCEL = "response_cancel_not_active"
_ENCODE = msgspec.json.Encoder()


@dataclass
class ResponseRecord:
    """One ``response.create`` → ``response.done``, with what the replay needs to redo it."""

    role: str  # "main", "posthoc-light", "posthoc-strong"
    messages: tuple[Message, ...]
    tools: tuple[dict[str, object], ...]
    overrides: dict[str, Any] | None  # session and response ``cascade`` objects, merged
    spent_before: float
    t_send: float
    t_created: float | None = None
    deltas: list[tuple[float, str]] = field(default_factory=list)
    # t, kind, tier, to_tier, p_correct, tokens
    decisions: list[tuple[float, str, int, int | None, float | None, int | None]] = field(
        default_factory=list
    )
    handoffs: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, from, to, chars
    fillers: int = 0
    errors: list[str] = field(default_factory=list)
    t_done: float = 0.0
    status: str = ""
    reason: str | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    output_tokens: int = 0
    cost_usd: float | None = None
    escalated: bool | None = None
    trace_handoff_ms: float | None = None
    # from the trace, per attempt: started, first token, ended (ms from the turn's start), reason
    attempts: list[tuple[float, float | None, float | None, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.deltas)

    def calls(self) -> list[dict[str, Any]]:
        return [i for i in self.output if i.get("type") == "function_call"]

    def output_text(self) -> str:
        out: list[str] = []
        for item in self.output:
            if item.get("type") == "message":
                out.extend(p.get("text", "") for p in item.get("content", ()))
        return "".join(out)


@dataclass
class TurnRecord:
    conversation: str
    index: int
    hard: bool
    t_start: float
    t_first_text: float | None = None
    t_end: float = 0.0
    heard: str = ""
    problems: list[str] = field(default_factory=list)
    responses: list[ResponseRecord] = field(default_factory=list)
    redone: bool = False  # post-hoc: some step was redone on the strong tier

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd or 0.0 for r in self.responses)

    @property
    def escalated(self) -> bool:
        return self.redone or any(r.escalated for r in self.responses)


@dataclass
class CancelRecord:
    after_s: float
    t_send: float
    t_cancel: float | None = None
    t_done: float = 0.0
    status: str = ""
    had_text: bool = False


@dataclass
class SessionLog:
    turns: list[TurnRecord] = field(default_factory=list)
    cancels: list[CancelRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ProtocolFailure(RuntimeError):
    pass


class Session:
    """One connection playing one conversation."""

    def __init__(
        self,
        ws: ClientConnection,
        mix: Mix,
        policy: Policy,
        *,
        last_tier: int,
        posthoc_check: Callable[[ResponseRecord], bool],
        on_turn: Callable[[], None] = lambda: None,
    ) -> None:
        self.ws = ws
        self.mix = mix
        self.policy = policy
        self.last_tier = last_tier
        self.posthoc_check = posthoc_check
        self.on_turn = on_turn
        self.mirror = Mirror(ids=self._id)
        self.spent = 0.0
        self.instructions = ""
        self.server_tools: tuple[dict[str, object], ...] = ()
        self._n = 0
        self.log = SessionLog()

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_bench{self._n}"

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(_ENCODE.encode(event).decode())

    async def recv(self, within: float) -> tuple[float, _Event]:
        raw = await asyncio.wait_for(self.ws.recv(), within)
        return time.perf_counter(), _DECODE.decode(raw)

    async def expect(self, kind: str) -> _Event:
        while True:
            _, event = await self.recv(60.0)
            if event.type == kind:
                return event
            if event.type == "error" and (event.error or {}).get("code") != _LATE_CANCEL:
                raise ProtocolFailure(f"error while waiting for {kind}: {event.error}")

    # -- setup

    async def open(self, state: Any) -> None:
        await self.expect("session.created")
        self.instructions = self.mix.instructions(state)
        tools = self.mix.realtime_tools()
        self.server_tools = chat_tools(msgspec.convert(tools, list[wire.FunctionTool]))
        session: dict[str, Any] = {"instructions": self.instructions, "tools": tools}
        if self.policy.session is not None:
            session["cascade"] = self.policy.session
        await self.send({"type": "session.update", "session": session})
        await self.expect("session.updated")

    # -- items

    async def add_item(self, param: dict[str, Any]) -> None:
        await self.send({"type": "conversation.item.create", "item": param})
        item = msgspec.convert(param, wire.ItemParam)
        match item:
            case wire.MessageParam(role=role, content=content):
                self.mirror.add(wire.MessageItem(self._id("item"), role, list(content)))
            case wire.FunctionCallParam(name=name, arguments=arguments, call_id=call_id):
                assert call_id is not None
                self.mirror.add(wire.FunctionCallItem(self._id("item"), call_id, name, arguments))
            case wire.FunctionCallOutputParam(call_id=call_id, output=output):
                self.mirror.add(wire.FunctionCallOutputItem(self._id("item"), call_id, output))

    def _adopt_outputs(self, record: ResponseRecord) -> None:
        """An in-band response's output items are in the server's conversation now."""
        for raw in record.output:
            item = msgspec.convert(raw, wire.Item)
            if isinstance(item, wire.MessageItem) and not any(
                isinstance(p, wire.OutputText) and p.text for p in item.content
            ):
                continue
            self.mirror.add(item)

    # -- responses

    async def respond(
        self,
        role: str,
        response: dict[str, Any] | None = None,
        *,
        cancel_after: float | None = None,
    ) -> tuple[ResponseRecord, float | None]:
        overrides = self._overrides(response)
        record = ResponseRecord(
            role=role,
            messages=self.mirror.messages(self.instructions),
            tools=self.server_tools,
            overrides=overrides,
            spent_before=self.spent,
            t_send=0.0,
        )
        event: dict[str, Any] = {"type": "response.create"}
        if response:
            event["response"] = response
        record.t_send = time.perf_counter()
        await self.send(event)
        t_cancel: float | None = None
        deadline = record.t_send + cancel_after if cancel_after is not None else None
        while True:
            timeout = None
            if deadline is not None and t_cancel is None:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    t_cancel = time.perf_counter()
                    await self.send({"type": "response.cancel"})
                    timeout = None
            try:
                t, ev = await self.recv(timeout if timeout is not None else 120.0)
            except TimeoutError:
                if deadline is not None and t_cancel is None:
                    continue
                raise ProtocolFailure("no response.done within 120 s") from None
            match ev.type:
                case "response.output_text.delta":
                    record.deltas.append((t, ev.delta))
                case "cascade.decision":
                    d = ev.decision or {}
                    scores = d.get("scores") or {}
                    record.decisions.append(
                        (
                            t,
                            d.get("kind", ""),
                            d.get("tier", 0),
                            d.get("to_tier"),
                            scores.get("p_correct"),
                            scores.get("tokens"),
                        )
                    )
                case "cascade.handoff":
                    record.handoffs.append(
                        (t, ev.from_tier or 0, ev.to_tier or 0, ev.released_chars or 0)
                    )
                case "cascade.filler":
                    record.fillers += 1
                case "cascade.trace":
                    trace = ev.trace or {}
                    record.cost_usd = trace.get("cost_usd")
                    record.escalated = trace.get("escalated")
                    record.trace_handoff_ms = trace.get("handoff_ms")
                    record.attempts = [
                        (
                            a.get("started_ms", 0.0),
                            a.get("first_token_ms"),
                            a.get("ended_ms"),
                            a.get("end_reason", ""),
                        )
                        for a in trace.get("attempts", ())
                    ]
                case "response.created":
                    record.t_created = t
                case "error":
                    code = (ev.error or {}).get("code", "?")
                    record.errors.append(str(code))
                case "response.done":
                    r = ev.response or {}
                    record.t_done = t
                    record.status = r.get("status", "")
                    details = r.get("status_details") or {}
                    record.reason = details.get("reason")
                    record.output = list(r.get("output") or ())
                    usage = r.get("usage") or {}
                    record.output_tokens = int(usage.get("output_tokens") or 0)
                    break
                case _:
                    pass
        if record.cost_usd is not None:
            self.spent += record.cost_usd
        return record, t_cancel

    def _overrides(self, response: dict[str, Any] | None) -> dict[str, Any] | None:
        base = self.policy.session
        top = (response or {}).get("cascade")
        if base is None and top is None:
            return None
        merged = wire.CascadeOverrides()
        for layer in (base, top):
            if layer is not None:
                merged = merge_overrides(merged, msgspec.convert(layer, wire.CascadeOverrides))
        built: dict[str, Any] = msgspec.to_builtins(merged)
        return built

    # -- a user turn

    async def user_turn(self, state: Any, conv: Conversation, index: int) -> TurnRecord:
        turn = conv.turns[index]
        rec = TurnRecord(conv.id, index, turn.hard, t_start=time.perf_counter())
        await self.add_item(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": turn.text}],
            }
        )
        heard: list[str] = []
        calls_made = 0
        while True:
            if self.policy.posthoc:
                step, text, t_text = await self._posthoc_step(rec)
            else:
                step, _ = await self.respond("main")
                rec.responses.append(step)
                self._adopt_outputs(step)
                text = step.text
                t_text = step.deltas[0][0] if step.deltas else None
            if text:
                heard.append(text)
                if rec.t_first_text is None:
                    rec.t_first_text = t_text
            calls = step.calls()
            if not calls or calls_made + len(calls) > MAX_TOOL_CALLS:
                break
            for call in calls:
                result = self.mix.execute(state, call.get("name", ""), call.get("arguments", ""))
                await self.add_item(
                    {"type": "function_call_output", "call_id": call["call_id"], "output": result}
                )
            calls_made += len(calls)
        rec.t_end = time.perf_counter()
        rec.heard = "".join(heard)
        rec.problems = self.mix.check(state, rec.heard, turn.expect)
        return rec

    async def _posthoc_step(self, rec: TurnRecord) -> tuple[ResponseRecord, str, float | None]:
        light, _ = await self.respond(
            "posthoc-light", {"conversation": "none", "cascade": {"max_tier": 0}}
        )
        rec.responses.append(light)
        if self.posthoc_check(light):
            # adopted: the listener hears the whole answer now, at once
            text = light.output_text()
            if text:
                await self.add_item(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                )
            for call in light.calls():
                await self.add_item(
                    {
                        "type": "function_call",
                        "call_id": call["call_id"],
                        "name": call["name"],
                        "arguments": call["arguments"],
                    }
                )
            return light, text, light.t_done
        rec.redone = True
        strong, _ = await self.respond(
            "posthoc-strong", {"cascade": {"first_tier": self.last_tier}}
        )
        rec.responses.append(strong)
        self._adopt_outputs(strong)
        return strong, strong.text, strong.deltas[0][0] if strong.deltas else None

    # -- barge-in

    async def cancel_turn(self, after_s: float) -> CancelRecord:
        await self.add_item(
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": self.mix.cancel_text}],
            }
        )
        response = None
        if self.policy.posthoc:
            response = {"cascade": {"max_tier": 0}}
        record, t_cancel = await self.respond("cancel", response, cancel_after=after_s)
        self._adopt_outputs(record)
        # A cancel that crossed the response's end may be answered with an error
        # (response_cancel_not_active) or not at all: later reads record and skip it.
        return CancelRecord(
            after_s=after_s,
            t_send=record.t_send,
            t_cancel=t_cancel,
            t_done=record.t_done,
            status=record.status,
            had_text=bool(record.deltas),
        )


async def play_conversation(
    url: str,
    mix: Mix,
    policy: Policy,
    conv: Conversation,
    *,
    last_tier: int,
    posthoc_check: Callable[[ResponseRecord], bool],
    cancel_after: tuple[float, ...] = (),
    on_turn: Callable[[], None] = lambda: None,
) -> SessionLog:
    async with connect(
        url, compression=None, max_size=1 << 24, open_timeout=60, ping_interval=None
    ) as ws:
        session = Session(
            ws, mix, policy, last_tier=last_tier, posthoc_check=posthoc_check, on_turn=on_turn
        )
        state = mix.new_state()
        await session.open(state)
        for index in range(len(conv.turns)):
            session.log.turns.append(await session.user_turn(state, conv, index))
            on_turn()
        for after in cancel_after:
            session.log.cancels.append(await session.cancel_turn(after))
        return session.log
