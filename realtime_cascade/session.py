"""One client session: its conversation, its settings, and at most one response at a time.

Three layers, the first two pure (no I/O, no awaits) so they are tested without sockets:

- :class:`Conversation`: the ordered items and the chat messages a turn is asked with; tool-call
  bookkeeping (a ``function_call_output`` must answer a call the conversation holds, once).
- :class:`ResponseBuilder`: turns the core's actions for one response into server events, in
  the Realtime order (item added → part added → deltas → done …), keeping the assistant item's
  text equal to exactly what was released — so a cancel or barge-in leaves history holding
  what the listener was given and nothing more.
- :class:`Session`: the async driver. Handles decoded client events one at a time, runs a
  :class:`~realtime_cascade.runtime.TurnRunner` per response in the connection's task group,
  and hands encoded events to a non-blocking ``send`` (the server's bounded queue).

Rules (checked here, each a :class:`SessionError` that becomes an ``error`` event):

- one response at a time: ``response.create`` while one runs is refused;
- ``response.cancel`` needs a running response (and its id, when one is given);
- a user message while a response runs is a barge-in: the response is cancelled first
  (``response.done`` cancelled, reason ``turn_detected``), then the message is added;
- audio input (buffer, server VAD, transcription, barge-in on speech) is the
  :class:`~realtime_cascade.audio.session.AudioSession`'s; with ``output_modalities``
  ``["audio"]`` a response is spoken (:mod:`realtime_cascade.audio.response`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from . import wire
from .audio.config import embedded as embedded_speech
from .audio.session import AudioSession, AudioSettings
from .core import (
    Action,
    CascadeParams,
    Decision,
    Filler,
    FinishTurn,
    Handoff,
    Release,
    ReleaseToolCall,
    TurnTrace,
)
from .governance import OPEN, Access, Governed, Governor
from .observe import NULL_OBSERVER, Observer, SessionInfo, TurnInfo
from .providers.base import Message
from .runtime import CascadeProfile, TurnRequest, TurnRunner

log = logging.getLogger(__name__)

Send = Callable[[bytes], None]


class SessionError(wire.ProtocolError):
    """A well-formed client event that the session's current state refuses."""


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


IdFactory = Callable[[str], str]


# --- the conversation ---------------------------------------------------------------------------


class Conversation:
    """Ordered items; the chat messages a turn sees; which tool calls await an output."""

    def __init__(self, ids: IdFactory = new_id) -> None:
        self._ids = ids
        self._order: list[str] = []
        self._items: dict[str, wire.Item] = {}
        self._answered: set[str] = set()  # call_ids that have an output

    def __len__(self) -> int:
        return len(self._order)

    @property
    def items(self) -> list[wire.Item]:
        return [self._items[i] for i in self._order]

    @property
    def last_id(self) -> str | None:
        return self._order[-1] if self._order else None

    def get(self, item_id: str, param: str = "item_id") -> wire.Item:
        try:
            return self._items[item_id]
        except KeyError:
            raise SessionError(
                "item_not_found", f"no item with id {item_id!r}", param=param
            ) from None

    def add(self, item: wire.Item, previous_item_id: str | None = None) -> str | None:
        """Insert ``item`` after ``previous_item_id`` ("root": first; None: last).

        Returns the id of the item it now follows."""
        if item.id in self._items:
            raise SessionError(
                "duplicate_item_id", f"item {item.id!r} already exists", param="item.id"
            )
        if isinstance(item, wire.FunctionCallOutputItem):
            self.check_output(item.call_id)
        if previous_item_id is None:
            after = self.last_id
            self._order.append(item.id)
        elif previous_item_id == "root":
            after = None
            self._order.insert(0, item.id)
        else:
            self.get(previous_item_id, "previous_item_id")
            after = previous_item_id
            self._order.insert(self._order.index(previous_item_id) + 1, item.id)
        self._items[item.id] = item
        if isinstance(item, wire.FunctionCallOutputItem):
            self._answered.add(item.call_id)
        return after

    def check_output(self, call_id: str) -> None:
        if call_id in self._answered:
            raise SessionError(
                "duplicate_call_output",
                f"call {call_id!r} already has an output",
                param="item.call_id",
            )
        for item in self._items.values():
            if isinstance(item, wire.FunctionCallItem) and item.call_id == call_id:
                return
        raise SessionError(
            "unknown_call_id",
            f"no function_call with call_id {call_id!r} in the conversation",
            param="item.call_id",
        )

    def delete(self, item_id: str) -> None:
        item = self.get(item_id)
        self._order.remove(item_id)
        del self._items[item_id]
        if isinstance(item, wire.FunctionCallOutputItem):
            self._answered.discard(item.call_id)

    def truncate(self, item_id: str, content_index: int, text_end: int | None) -> None:
        item = self.get(item_id)
        if not isinstance(item, wire.MessageItem) or item.role != "assistant":
            raise SessionError(
                "invalid_item", "only assistant messages can be truncated", param="item_id"
            )
        if not 0 <= content_index < len(item.content):
            raise SessionError(
                "invalid_content_index",
                f"item has no content {content_index}",
                param="content_index",
            )
        part = item.content[content_index]
        if isinstance(part, wire.OutputAudio):  # text_end comes from the audio's timeline
            if text_end is not None:
                part.transcript = part.transcript[: max(0, text_end)]
            return
        if text_end is None or not isinstance(part, wire.OutputText):
            return
        if not 0 <= text_end <= len(part.text):
            raise SessionError(
                "invalid_text_end", f"text_end must be in [0, {len(part.text)}]", param="text_end"
            )
        part.text = part.text[:text_end]

    def messages(self, instructions: str) -> tuple[Message, ...]:
        """The chat messages (OpenAI shape) for a turn: instructions, then the items in order.

        Consecutive function calls join the assistant message before them, as chat APIs want
        every ``tool_calls`` of one assistant step in one message.
        """
        out: list[Message] = [Message("system", instructions)] if instructions else []
        for item in self.items:
            match item:
                case wire.MessageItem(role=role, content=content):
                    text = "".join(wire.text_of(p) for p in content)
                    if role == "assistant" and not text:
                        continue  # cancelled before anything was released
                    out.append(Message(role, text))
                case wire.FunctionCallItem(call_id=call_id, name=name, arguments=arguments):
                    call: dict[str, object] = {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                    prev = out[-1] if out else None
                    if prev is not None and prev.role == "assistant":
                        calls = (*(prev.tool_calls or ()), call)
                        out[-1] = msgspec.structs.replace(prev, tool_calls=calls)
                    else:
                        out.append(Message("assistant", None, tool_calls=(call,)))
                case wire.FunctionCallOutputItem(call_id=call_id, output=output):
                    out.append(Message("tool", output, tool_call_id=call_id))
        return tuple(out)


def item_from_param(param: wire.ItemParam, ids: IdFactory) -> wire.Item:
    match param:
        case wire.MessageParam(role=role, content=content, id=item_id):
            for i, part in enumerate(content):
                if isinstance(part, wire.InputAudio):
                    raise SessionError(
                        "audio_not_supported",
                        "input_audio content is not supported in conversation.item.create; "
                        "stream the audio with input_audio_buffer.append, or send input_text",
                        param=f"item.content[{i}]",
                    )
            return wire.MessageItem(item_id or ids("item"), role, list(content))
        case wire.FunctionCallParam(name=name, arguments=arguments, call_id=call_id, id=item_id):
            return wire.FunctionCallItem(
                item_id or ids("item"), call_id or ids("call"), name, arguments
            )
        case wire.FunctionCallOutputParam(call_id=call_id, output=output, id=item_id):
            return wire.FunctionCallOutputItem(item_id or ids("item"), call_id, output)


# --- settings and cascade overrides ------------------------------------------------------------


_T = TypeVar("_T")


def pick(a: _T | None, b: _T | None) -> _T | None:
    return b if b is not None else a


def merge_overrides(
    base: wire.CascadeOverrides, top: wire.CascadeOverrides | None
) -> wire.CascadeOverrides:
    """``top`` over ``base``, field by field (nested objects merged too)."""
    if top is None:
        return base

    policy: wire.PolicyOverrides | None = base.policy
    if top.policy is not None:
        a = base.policy or wire.PolicyOverrides()
        policy = wire.PolicyOverrides(
            **{f: pick(getattr(a, f), getattr(top.policy, f)) for f in a.__struct_fields__}
        )
    budgets: wire.BudgetOverrides | None = base.budgets
    if top.budgets is not None:
        b = base.budgets or wire.BudgetOverrides()
        budgets = wire.BudgetOverrides(
            **{f: pick(getattr(b, f), getattr(top.budgets, f)) for f in b.__struct_fields__}
        )
    return wire.CascadeOverrides(
        first_tier=top.first_tier if top.first_tier is not None else base.first_tier,
        max_tier=top.max_tier if top.max_tier is not None else base.max_tier,
        policy=policy,
        budgets=budgets,
    )


@dataclass(frozen=True)
class Effective:
    """What a turn runs with once the overrides are applied to the profile."""

    params: CascadeParams
    first_tier: int
    max_tier: int | None


def _tier_index(params: CascadeParams, ref: int | str, param: str) -> int:
    names = [t.name for t in params.tiers]
    if isinstance(ref, str):
        if ref not in names:
            raise SessionError(
                "invalid_value", f"unknown tier {ref!r} (tiers: {', '.join(names)})", param=param
            )
        return names.index(ref)
    if not 0 <= ref < len(names):
        raise SessionError(
            "invalid_value", f"tier index must be in [0, {len(names) - 1}]", param=param
        )
    return ref


def apply_overrides(params: CascadeParams, o: wire.CascadeOverrides) -> Effective:
    """Validate ``o`` against the profile and build the turn's parameters."""
    where = "session.cascade"
    first = 0 if o.first_tier is None else _tier_index(params, o.first_tier, f"{where}.first_tier")
    top = None if o.max_tier is None else _tier_index(params, o.max_tier, f"{where}.max_tier")
    if top is not None and first > top:
        raise SessionError("invalid_value", "first_tier is above max_tier", param=where)
    policy = params.policy
    if o.policy is not None:
        changes = {k: v for k, v in msgspec.structs.asdict(o.policy).items() if v is not None}
        policy = msgspec.structs.replace(policy, **changes)
        if not 0.0 <= policy.preempt_below <= policy.hedge_below <= 1.0:
            raise SessionError(
                "invalid_value",
                "need 0 <= preempt_below <= hedge_below <= 1",
                param=f"{where}.policy",
            )
    budgets = params.budgets
    if o.budgets is not None:
        changes = {k: v for k, v in msgspec.structs.asdict(o.budgets).items() if v is not None}
        if "fillers" in changes:
            changes["fillers"] = tuple(changes["fillers"])
        for key, value in changes.items():
            if isinstance(value, float | int) and value < 0:
                raise SessionError(
                    "invalid_value", f"{key} must not be negative", param=f"{where}.budgets.{key}"
                )
        budgets = msgspec.structs.replace(budgets, **changes)
    return Effective(msgspec.structs.replace(params, policy=policy, budgets=budgets), first, top)


def chat_tools(tools: list[wire.FunctionTool]) -> tuple[dict[str, object], ...]:
    """Realtime's flat function tools in the chat-completions shape."""
    out: list[dict[str, object]] = []
    for t in tools:
        fn: dict[str, object] = {"name": t.name}
        if t.description is not None:
            fn["description"] = t.description
        fn["parameters"] = t.parameters if t.parameters is not None else {"type": "object"}
        out.append({"type": "function", "function": fn})
    return tuple(out)


def chat_tool_choice(choice: wire.ToolChoice) -> str | dict[str, object]:
    match choice:
        case wire.ToolChoiceFunction(name=name):
            return {"type": "function", "function": {"name": name}}
        case str():
            return choice


def _check_modalities(modalities: list[wire.Modality] | None, param: str) -> None:
    # ["audio"]: spoken, with its transcript ("text" beside it changes nothing)
    if modalities is not None and (not modalities or len(set(modalities)) != len(modalities)):
        raise SessionError(
            "unsupported_modality",
            "output_modalities must be ['text'] or ['audio']",
            param=param,
        )


class Settings:
    """The session's configuration as set by ``session.update`` (partial updates merge)."""

    def __init__(self, profile: CascadeProfile) -> None:
        self.profile = profile
        self.instructions = ""
        self.tools: list[wire.FunctionTool] = []
        self.tool_choice: wire.ToolChoice = "auto"
        self.max_output_tokens: wire.MaxTokens = "inf"
        self.overrides = wire.CascadeOverrides()
        self.effective = apply_overrides(profile.params, self.overrides)
        self.output_modalities: list[wire.Modality] = ["text"]
        self.audio = AudioSettings()
        self.speech = profile.speech or embedded_speech()  # its recogniser and synthesiser
        # a key's policy vets the client's tiers (governance.Governor.check)
        self.check: Callable[[wire.CascadeOverrides, Effective], None] | None = None

    def update(self, p: wire.SessionParams) -> None:
        """All or nothing: a refused update changes nothing."""
        _check_modalities(p.output_modalities, "session.output_modalities")
        if p.model is not None and p.model != self.profile.name:
            raise SessionError(
                "invalid_value",
                "the model (cascade profile) is chosen when connecting: ?model=NAME",
                param="session.model",
            )
        overrides = merge_overrides(self.overrides, p.cascade)
        effective = apply_overrides(self.profile.params, overrides)
        if self.check is not None:
            self.check(overrides, effective)
        audio = self.audio.merged(p.audio)
        self.overrides, self.effective, self.audio = overrides, effective, audio
        if p.output_modalities is not None:
            self.output_modalities = p.output_modalities
        if p.instructions is not None:
            self.instructions = p.instructions
        if p.tools is not None:
            self.tools = p.tools
        if p.tool_choice is not None:
            self.tool_choice = p.tool_choice
        if p.max_output_tokens is not None:
            self.max_output_tokens = p.max_output_tokens

    def object(self, session_id: str) -> wire.SessionObject:
        return wire.SessionObject(
            id=session_id,
            model=self.profile.name,
            instructions=self.instructions,
            tools=self.tools,
            tool_choice=self.tool_choice,
            output_modalities=self.output_modalities,
            max_output_tokens=self.max_output_tokens,
            cascade=wire.CascadeInfo(
                profile=self.profile.name,
                tiers=[t.name for t in self.profile.params.tiers],
                overrides=self.overrides,
            ),
            audio=self.audio.params(self.speech.stt.name),
        )


# --- one response -------------------------------------------------------------------------------


def usage_of(trace: TurnTrace | None) -> wire.Usage:
    """Tokens of every attempt, preempted and speculative ones included: they were paid for."""
    inp = sum(a.input_tokens for a in trace.attempts) if trace else 0
    out = sum(a.output_tokens for a in trace.attempts) if trace else 0
    return wire.Usage(
        total_tokens=inp + out,
        input_tokens=inp,
        output_tokens=out,
        input_token_details=wire.InputTokenDetails(text_tokens=inp),
        output_token_details=wire.OutputTokenDetails(text_tokens=out),
    )


@dataclass
class _OpenText:
    item: wire.MessageItem
    part: wire.OutputText
    output_index: int
    template: wire.TextDeltaTemplate


class ResponseBuilder:
    """The server events of one response, from the core's actions; no I/O of its own.

    ``send`` receives encoded events in order. Items are added to ``conversation`` as they
    start (unless the response is out-of-band), so ``conversation.item.retrieve`` mid-stream
    sees the text released so far.
    """

    def __init__(
        self,
        response: wire.ResponseObject,
        writer: wire.EventWriter,
        send: Send,
        conversation: Conversation | None,
        tier_names: list[str],
        ids: IdFactory = new_id,
    ) -> None:
        self.response = response
        self._writer = writer
        self._send = send
        self._conversation = conversation
        self._tiers = tier_names
        self._ids = ids
        self._open: _OpenText | None = None
        self.status: Literal["completed", "cancelled", "incomplete", "failed"] | None = None
        self.reason = ""
        self.released = ""

    @property
    def id(self) -> str:
        return self.response.id

    def _emit(self, event: wire.ServerEvent) -> None:
        self._send(self._writer.encode(event))

    def created(self) -> None:
        self._emit(wire.ResponseCreated(response=msgspec.structs.replace(self.response, output=[])))

    async def drained(self) -> None:
        """Returns once every output is out (audio mode: once it has been spoken)."""

    def stop_output(self, reason: str) -> None:
        """Barge-in: stop output still being produced after the turn (audio mode: speech)."""

    def feed(self, action: Action) -> None:
        rid = self.response.id
        match action:
            case Release(text=text):
                self._release(text)
            case ReleaseToolCall(call_id=call_id, name=name, arguments=arguments):
                self._tool_call(call_id, name, arguments)
            case Filler(text=text):
                self._emit(wire.CascadeFiller(response_id=rid, text=text))
            case Decision(record=record):
                self._emit(wire.CascadeDecision(response_id=rid, decision=record))
            case Handoff(from_tier=a, to_tier=b, released_chars=n, t_ms=t):
                self._emit(
                    wire.CascadeHandoff(
                        response_id=rid,
                        from_tier=a,
                        to_tier=b,
                        from_tier_name=self._tiers[a],
                        to_tier_name=self._tiers[b],
                        released_chars=n,
                        t_ms=t,
                    )
                )
            case FinishTurn(status=status, reason=reason):
                # Close items now, not when the runner returns: a truncate or a new item that
                # arrives right after a cancel must see the final text.
                self.status, self.reason = status, reason
                self._close_text("completed" if status == "completed" else "incomplete")
            case _:
                pass  # StartTier / CancelTier are the runtime's own

    def _add_item(self, item: wire.Item, snapshot: wire.Item) -> int:
        index = len(self.response.output)
        self.response.output.append(item)
        self._emit(
            wire.ResponseOutputItemAdded(
                response_id=self.response.id, output_index=index, item=snapshot
            )
        )
        if self._conversation is not None:
            after = self._conversation.add(item)
            self._emit(wire.ConversationItemAdded(item=snapshot, previous_item_id=after))
        return index

    def _done_item(self, item: wire.Item, index: int) -> None:
        self._emit(
            wire.ResponseOutputItemDone(response_id=self.response.id, output_index=index, item=item)
        )
        if self._conversation is not None:
            self._emit(wire.ConversationItemDone(item=item))

    def _open_message(
        self,
        part: wire.OutputText | wire.OutputAudio,
        announced: wire.OutputText | wire.OutputAudio,
    ) -> tuple[wire.MessageItem, int]:
        """Open an assistant message whose one content part is ``part`` (announced to the
        client as ``announced``, an empty copy); returns the item and its output index."""
        item_id = self._ids("item")
        item = wire.MessageItem(item_id, "assistant", [part], status="in_progress")
        snapshot = wire.MessageItem(item_id, "assistant", [], status="in_progress")
        index = self._add_item(item, snapshot)
        self._emit(
            wire.ResponseContentPartAdded(
                response_id=self.response.id,
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=announced,
            )
        )
        return item, index

    def _release(self, text: str) -> None:
        open_ = self._open
        if open_ is None:
            part = wire.OutputText("")
            item, index = self._open_message(part, wire.OutputText(""))
            item_id = item.id
            template = self._writer.text_delta_template(self.response.id, item_id, index, 0)
            open_ = self._open = _OpenText(item, part, index, template)
        open_.part.text += text
        self.released += text
        self._send(open_.template.encode(text))

    def _close_text(self, status: wire.ItemStatus) -> None:
        open_ = self._open
        if open_ is None:
            return
        self._open = None
        rid, item_id, index = self.response.id, open_.item.id, open_.output_index
        text = open_.part.text
        self._emit(
            wire.ResponseOutputTextDone(
                response_id=rid, item_id=item_id, output_index=index, content_index=0, text=text
            )
        )
        self._emit(
            wire.ResponseContentPartDone(
                response_id=rid,
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=wire.OutputText(text),
            )
        )
        open_.item.status = status
        self._done_item(open_.item, index)

    def _tool_call(self, call_id: str, name: str, arguments: str) -> None:
        self._close_text("completed")
        rid, item_id = self.response.id, self._ids("item")
        item = wire.FunctionCallItem(item_id, call_id, name, arguments, status="in_progress")
        snapshot = wire.FunctionCallItem(item_id, call_id, name, "", status="in_progress")
        index = self._add_item(item, snapshot)
        # The core releases a call only once it is whole and verified: one delta carries it.
        self._emit(
            wire.ResponseFunctionCallArgumentsDelta(
                response_id=rid,
                item_id=item_id,
                output_index=index,
                call_id=call_id,
                delta=arguments,
            )
        )
        self._emit(
            wire.ResponseFunctionCallArgumentsDone(
                response_id=rid,
                item_id=item_id,
                output_index=index,
                call_id=call_id,
                name=name,
                arguments=arguments,
            )
        )
        item.status = "completed"
        self._done_item(item, index)

    def finish(self, trace: TurnTrace | None, error: str | None = None) -> None:
        """``cascade.trace`` (when there is one), then ``response.done`` — always."""
        if error is not None or self.status is None:
            self.status = "failed"
            self.reason = error or "the turn ended without finishing"
        self._close_text("completed" if self.status == "completed" else "incomplete")
        if trace is not None:
            self._emit(wire.CascadeTrace(response_id=self.response.id, trace=trace))
        details: wire.StatusDetails | None = None
        match self.status:
            case "cancelled" | "incomplete":
                details = wire.StatusDetails(type=self.status, reason=self.reason)
            case "failed":
                details = wire.StatusDetails(
                    type="failed",
                    error=wire.ErrorDetail(
                        type="server_error", code="turn_failed", message=self.reason
                    ),
                )
            case "completed":
                pass
        self.response.status = self.status
        self.response.status_details = details
        self.response.usage = usage_of(trace)
        self._emit(wire.ResponseDone(response=self.response))


# --- the async driver -----------------------------------------------------------------------------


@dataclass
class _Active:
    builder: ResponseBuilder
    runner: TurnRunner
    done: anyio.Event = field(default_factory=anyio.Event)
    governed: Governed | None = None
    user_item_id: str | None = None


class Session:
    """One connection's session. ``handle`` one event at a time; ``aclose`` at the end."""

    def __init__(
        self,
        profile: CascadeProfile,
        send: Send,
        task_group: TaskGroup,
        *,
        session_id: str | None = None,
        ids: IdFactory = new_id,
        observer: Observer = NULL_OBSERVER,
        access: Access = OPEN,
    ) -> None:
        self.id = session_id or ids("sess")
        self.profile = profile
        self._send = send
        self._tg = task_group
        self._ids = ids
        self._writer = wire.EventWriter(self.id)
        self.conversation = Conversation(ids)
        self.settings = Settings(profile)
        self._active: _Active | None = None
        self._turns = 0
        self.spent_usd = 0.0
        self.observer = observer
        self.info = SessionInfo(self.id, profile.name, access.key, access.policy_name)
        self.governor = Governor(access, [t.name for t in profile.params.tiers])
        self.settings.check = self._check_policy
        self.escalations = 0  # responses that escalated: what max_escalations_per_session counts
        self.audio = AudioSession(
            self.settings.speech,
            emit=self.emit,
            conversation=self.conversation,
            responding=lambda: self._active is not None,
            cancel_response=self.cancel_response,
            create_response=lambda: self._create_response(wire.ResponseParams()),
            task_group=task_group,
            ids=ids,
        )

    def emit(self, event: wire.ServerEvent) -> None:
        self._send(self._writer.encode(event))

    def error(self, exc: wire.ProtocolError) -> None:
        self.emit(wire.error_event(exc))

    def start(self) -> None:
        self.emit(wire.SessionCreated(session=self.settings.object(self.id)))

    @property
    def responding(self) -> bool:
        return self._active is not None

    async def handle(self, event: wire.ClientEvent) -> None:
        """Act on one client event; a refusal raises :class:`SessionError`."""
        match event:
            case wire.SessionUpdate(session=params):
                self.settings.update(params)
                self.audio.configure(self.settings.audio)
                self.emit(wire.SessionUpdated(session=self.settings.object(self.id)))
            case wire.InputAudioBufferAppend(audio=audio):
                await self.audio.append(audio)
            case wire.InputAudioBufferCommit():
                self.audio.commit()
            case wire.InputAudioBufferClear():
                self.audio.clear()
            case wire.ConversationItemCreate(item=param, previous_item_id=previous):
                item = item_from_param(param, self._ids)
                if isinstance(item, wire.FunctionCallOutputItem):
                    self.conversation.check_output(item.call_id)  # refuse before any barge-in
                if (
                    self._active is not None
                    and isinstance(item, wire.MessageItem)
                    and (item.role == "user")
                ):
                    await self.cancel_response("turn_detected")
                after = self.conversation.add(item, previous)
                self.emit(wire.ConversationItemAdded(item=item, previous_item_id=after))
                self.emit(wire.ConversationItemDone(item=item, previous_item_id=after))
            case wire.ConversationItemRetrieve(item_id=item_id):
                self.emit(wire.ConversationItemRetrieved(item=self.conversation.get(item_id)))
            case wire.ConversationItemDelete(item_id=item_id):
                await self._stop_writing(item_id)
                self.conversation.delete(item_id)
                self.emit(wire.ConversationItemDeleted(item_id=item_id))
            case wire.ConversationItemTruncate(
                item_id=item_id, content_index=ci, audio_end_ms=ms, text_end=text_end
            ):
                await self._stop_writing(item_id)
                if text_end is None:  # spoken output: the words heard by audio_end_ms
                    text_end = self.audio.heard(item_id, ms)
                self.conversation.truncate(item_id, ci, text_end)
                self.emit(
                    wire.ConversationItemTruncated(
                        item_id=item_id, content_index=ci, audio_end_ms=ms
                    )
                )
            case wire.ResponseCreate(response=params):
                await self._create_response(params or wire.ResponseParams())
            case wire.ResponseCancel(response_id=rid):
                active = self._active
                if active is None:
                    raise SessionError(
                        "response_cancel_not_active", "there is no response in progress to cancel"
                    )
                if rid is not None and rid != active.builder.id:
                    raise SessionError(
                        "invalid_value",
                        f"response {rid!r} is not the one in progress",
                        param="response_id",
                    )
                await self.cancel_response("client_cancelled")

    async def _create_response(self, p: wire.ResponseParams) -> None:
        if self._active is not None:
            raise SessionError(
                "conversation_already_has_active_response",
                f"response {self._active.builder.id} is still in progress",
            )
        _check_modalities(p.output_modalities, "response.output_modalities")
        modalities = p.output_modalities or self.settings.output_modalities
        if p.input is not None:
            raise SessionError(
                "unsupported_parameter",
                "response.input is not supported yet",
                param="response.input",
            )
        if p.conversation not in (None, "auto", "none"):
            raise SessionError(
                "invalid_value",
                "conversation must be 'auto' or 'none'",
                param="response.conversation",
            )
        s = self.settings
        effective = s.effective
        if p.cascade is not None:
            merged = merge_overrides(s.overrides, p.cascade)
            effective = apply_overrides(s.profile.params, merged)
            where = "response.cascade"
            self.governor.check(merged, effective.first_tier, effective.max_tier, where)
        governed = self.governor.govern(
            effective.params, effective.first_tier, effective.max_tier, self.escalations
        )
        max_tokens = p.max_output_tokens if p.max_output_tokens is not None else s.max_output_tokens
        tools = p.tools if p.tools is not None else s.tools
        choice = p.tool_choice if p.tool_choice is not None else s.tool_choice
        instructions = p.instructions if p.instructions is not None else s.instructions
        request = TurnRequest(
            messages=self.conversation.messages(instructions),
            tools=chat_tools(tools),
            tool_choice=chat_tool_choice(choice) if tools else None,
            max_tokens=None if max_tokens == "inf" else max_tokens,
            seed=self._turns,
        )
        self._turns += 1
        in_conversation = p.conversation != "none"
        response = wire.ResponseObject(
            id=self._ids("resp"),
            status="in_progress",
            output=[],
            conversation_id=self.id if in_conversation else None,
            output_modalities=modalities,
            max_output_tokens=max_tokens,
            metadata=p.metadata,
        )
        builder = (self.audio.voice_builder if "audio" in modalities else ResponseBuilder)(
            response,
            self._writer,
            self._send,
            self.conversation if in_conversation else None,
            [t.name for t in s.profile.params.tiers],
            self._ids,
        )
        runner = TurnRunner(
            s.profile,
            request,
            builder.feed,
            turn_id=response.id,
            session_spent_usd=self.spent_usd,
            params=governed.params,
            first_tier=governed.first_tier,
            max_tier=governed.max_tier,
        )
        active = self._active = _Active(
            builder, runner, governed=governed, user_item_id=self._last_user_item()
        )
        builder.created()
        if governed.decision is not None:
            builder.feed(Decision(governed.decision))
        # start() returns once the task runs: from then on runner.cancel() reaches the streams
        await self._tg.start(self._respond, active)

    async def _respond(
        self, active: _Active, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        trace: TurnTrace | None = None
        error: str | None = None
        task_status.started()
        try:
            trace = await active.runner.run()
            await active.builder.drained()  # spoken output: until its audio is out
        except Exception as exc:  # a bug below must not take the session down
            log.exception("session %s: response %s failed", self.id, active.builder.id)
            error = f"internal error: {type(exc).__name__}"
        finally:
            # no await in here: it runs to the end even when the connection's group is cancelled
            if trace is not None:
                self.spent_usd += trace.cost_usd
                self.escalations += trace.escalated
                trace = self._with_policy(active, trace)
            active.builder.finish(trace, error)
            self._active = None
            active.done.set()
            self._observe(active, trace, error)

    async def cancel_response(self, reason: str) -> None:
        """Barge-in: stop every tier stream now and wait for ``response.done``."""
        active = self._active
        if active is None:
            return
        active.runner.cancel(reason)
        active.builder.stop_output(reason)
        await active.done.wait()

    async def _stop_writing(self, item_id: str) -> None:
        """Truncating or deleting the item a response is still writing cancels the response
        first (``client_cancelled``), so the item holds exactly what was released, then the
        edit applies to that: history never mixes an edit with text streamed after it."""
        item = self.conversation.get(item_id)
        if self._active is not None and item.status == "in_progress":
            await self.cancel_response("client_cancelled")

    async def finish_response(self, grace_s: float, reason: str) -> None:
        """Let the running response finish for up to ``grace_s``, then cancel it."""
        active = self._active
        if active is None:
            return
        with anyio.move_on_after(grace_s):
            await active.done.wait()
        await self.cancel_response(reason)

    # -- governance and observers (realtime_cascade.governance, realtime_cascade.observe)

    def _check_policy(self, overrides: wire.CascadeOverrides, effective: Effective) -> None:
        self.governor.check(overrides, effective.first_tier, effective.max_tier, "session.cascade")

    def _last_user_item(self) -> str | None:
        for item in reversed(self.conversation.items):
            if isinstance(item, wire.MessageItem) and item.role == "user":
                return item.id
        return None

    @staticmethod
    def _with_policy(active: _Active, trace: TurnTrace) -> TurnTrace:
        """The trace with the key policy's decision first, as it was sent."""
        decision = active.governed.decision if active.governed is not None else None
        if decision is None:
            return trace
        return msgspec.structs.replace(trace, decisions=(decision, *trace.decisions))

    def _observe(self, active: _Active, trace: TurnTrace | None, error: str | None) -> None:
        governed = active.governed
        if governed is None:
            return
        try:
            self.observer.turn_finished(
                TurnInfo(
                    session=self.info,
                    response_id=active.builder.id,
                    user_item_id=active.user_item_id,
                    tier_names=tuple(t.name for t in self.profile.params.tiers),
                    first_tier=governed.first_tier,
                    max_tier=governed.max_tier,
                    budgets=governed.params.budgets,
                    trace=trace,
                    error=error,
                    governed=governed.decision is not None,
                )
            )
        except Exception:  # observing must never cost the session
            log.exception("session %s: observers failed on %s", self.id, active.builder.id)
