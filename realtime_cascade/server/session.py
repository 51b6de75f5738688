"""One client session: its conversation, its settings, and at most one response at a time.

Three layers, the first two pure (no I/O, no awaits) so they are tested without sockets:

- :class:`~.conversation.Conversation` (``conversation.py``): the ordered items and the chat
  messages a turn is asked with; tool-call bookkeeping.
- :class:`~.response.ResponseBuilder` (``response.py``): turns the core's actions for one
  response into server events; :mod:`.settings` holds the session's settings and overrides.
- :class:`Session` (here): the async driver. Handles decoded client events one at a time, runs a
  :class:`~realtime_cascade.runtime.TurnRunner` per response in the connection's task group,
  and hands encoded events to a non-blocking ``send`` (the server's bounded queue).

Rules (checked here, each a :class:`SessionError` that becomes an ``error`` event):

- one response at a time: ``response.create`` while one runs is refused;
- ``response.cancel`` needs a running response (and its id, when one is given);
- a user message while a response runs is a barge-in: the response is cancelled first
  (``response.done`` cancelled, reason ``turn_detected``), then the message is added;
- audio input (buffer, server VAD, transcription, barge-in on speech) is the
  :class:`~realtime_cascade.audio.session.AudioSession`'s; with ``output_modalities``
  ``["audio"]`` a response is spoken (:mod:`.voice_response`).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from functools import partial

import anyio
import msgspec
from anyio.abc import TaskGroup, TaskStatus

from .. import wire
from ..audio.session import AudioSession
from ..core import (
    Action,
    Decision,
    TurnTrace,
)
from ..observe.governance import OPEN, Access, Governed, Governor
from ..observe.observer import NULL_OBSERVER, Observer, SessionInfo, TurnInfo
from ..runtime import (
    AgentDecision,
    BoundAgent,
    CascadeProfile,
    Responder,
    ToolRun,
    TurnRequest,
    TurnRunner,
)
from .conversation import (
    DEFAULT_LIMITS,
    Conversation,
    ConversationLimits,
    IdFactory,
    item_from_param,
    new_id,
)
from .errors import SessionError
from .response import ResponseBuilder, Send
from .settings import (
    Effective,
    Settings,
    apply_overrides,
    chat_tool_choice,
    chat_tools,
    check_modalities,
    merge_overrides,
)
from .voice_response import voice_builder

# --- the async driver -----------------------------------------------------------------------------

log = logging.getLogger(__name__)


@dataclass
class _Active:
    builder: ResponseBuilder
    runner: Responder  # a TurnRunner, or the agent's tool loop around several
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
        limits: ConversationLimits = DEFAULT_LIMITS,
    ) -> None:
        self.id = session_id or ids("sess")
        self.profile = profile
        self._send = send
        self._tg = task_group
        self._ids = ids
        self._writer = wire.EventWriter(self.id)
        self.conversation = Conversation(ids, limits)
        self.settings = Settings(profile)
        self._active: _Active | None = None
        self._turns = 0
        self.spent_usd = 0.0
        self.observer = observer
        self.info = SessionInfo(self.id, profile.name, access.key, access.policy_name)
        self.governor = Governor(access, [t.name for t in profile.params.tiers])
        # The callbacks given to parts the session owns reach it through a weak proxy: strong
        # ones would make a reference cycle, and a cycle outlives its connection until a full
        # collection (which ``serve`` makes rare), holding the conversation and the queue.
        me = weakref.proxy(self)
        self.settings.check = lambda overrides, effective: me._check_policy(overrides, effective)
        self.escalations = 0  # responses that escalated: what max_escalations_per_session counts
        self.agent = _bind_agent(profile, self.id)
        self.audio = AudioSession(
            self.settings.speech,
            emit=lambda event: me.emit(event),
            conversation=self.conversation,
            responding=lambda: me._active is not None,
            cancel_response=lambda reason: me.cancel_response(reason),
            create_response=lambda: me._create_response(wire.ResponseParams()),
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
                self.conversation.admit(item)
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
        check_modalities(p.output_modalities, "response.output_modalities")
        if p.conversation != "none":
            self.conversation.check_room()  # what the response adds is bounded by its tiers
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
        client_tools = chat_tools(tools)
        all_tools = _with_agent_tools(self.agent, client_tools)
        if self.agent is not None and not instructions:
            instructions = self.agent.instructions
        request = TurnRequest(
            messages=self.conversation.messages(instructions),
            tools=all_tools,
            tool_choice=chat_tool_choice(choice) if all_tools else None,
            max_tokens=None if max_tokens == "inf" else max_tokens,
            seed=self._next_seed(),
        )
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
        builder = (
            partial(voice_builder, self.audio) if "audio" in modalities else ResponseBuilder
        )(
            response,
            self._writer,
            self._send,
            self.conversation if in_conversation else None,
            [t.name for t in s.profile.params.tiers],
            self._ids,
        )
        runner: Responder
        sink: _AgentSink | None = None
        if self.agent is None:
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
        else:
            sink = _AgentSink(self)
            runner = self.agent.responder(
                s.profile,
                request,
                sink,
                client_tools=frozenset(t.name for t in tools),
                turn_id=response.id,
                session_spent_usd=self.spent_usd,
                params=governed.params,
                first_tier=governed.first_tier,
                max_tier=governed.max_tier,
                next_seed=self._next_seed,
            )
        active = self._active = _Active(
            builder, runner, governed=governed, user_item_id=self._last_user_item()
        )
        if sink is not None:
            sink.active = active
        builder.created()
        if governed.decision is not None:
            builder.feed(Decision(governed.decision))
        # start() returns once the task runs: from then on runner.cancel() reaches the streams
        await self._tg.start(self._respond, active)

    def _next_seed(self) -> int:
        """Every model call of the session draws the next seed: a response, or a tool step."""
        seed = self._turns
        self._turns += 1
        return seed

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

    # -- governance and observers (realtime_cascade.observe)

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


# -- a profile's agent: server-side tools (realtime_cascade.agents, passed in via the profile) ---


def _bind_agent(profile: CascadeProfile, session_id: str) -> BoundAgent | None:
    return profile.agent.bind(session_id) if profile.agent is not None else None


def _with_agent_tools(
    agent: BoundAgent | None, client_tools: tuple[dict[str, object], ...]
) -> tuple[dict[str, object], ...]:
    """The agent's tools, then the client's; a tool the client declares under the same name
    replaces the agent's (the client runs it)."""
    if agent is None:
        return client_tools

    def name(t: dict[str, object]) -> object:
        fn = t.get("function")
        return fn.get("name") if isinstance(fn, dict) else None

    taken = {name(t) for t in client_tools}
    return (*(t for t in agent.tools if name(t) not in taken), *client_tools)


class _AgentSink:
    """The agent's tool loop, into one response: actions and tool outputs to the builder,
    each finished step into the session's spending and observers."""

    # set right after the loop is built: the response's _Active holds the loop this feeds
    active: _Active

    def __init__(self, session: Session) -> None:
        self._session = session

    def feed(self, action: Action) -> None:
        self.active.builder.feed(action)

    def tool_output(self, run: ToolRun) -> None:
        builder = self.active.builder
        self._session.emit(
            wire.CascadeToolResult(
                response_id=builder.id,
                call_id=run.call_id,
                name=run.name,
                status=run.status,
                duration_ms=run.duration_ms,
                tier_name=run.tier_name,
                step=run.step,
            )
        )
        builder.tool_output(run.call_id, run.output)

    def agent_decision(self, decision: AgentDecision) -> None:
        self._session.emit(
            wire.CascadeAgentDecision(
                response_id=self.active.builder.id,
                kind=decision.kind,
                reason=decision.reason,
                t_ms=decision.t_ms,
            )
        )

    def step_done(self, trace: TurnTrace) -> None:
        session, active = self._session, self.active
        session.spent_usd += trace.cost_usd
        session.escalations += trace.escalated
        active.builder.step_done(trace)
        session._observe(active, trace, None)
