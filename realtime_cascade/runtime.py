"""The anyio adapter around the pure core: one task group per turn, one cancel scope per tier.

The core decides; this module only performs. Each ``StartTier`` opens the tier's stream in its
own task and cancel scope; each chunk is fed to the core at once (same thread, no queue); each
``CancelTier`` is ``scope.cancel()``. One timer task sleeps until the core's next deadline and is
woken when that deadline moves earlier (a later one is read when the sleep ends) — nothing
polls. Actions meant for the listener (release, filler, decision, handoff, tool call, finish) go
to the ``emit`` callback, which must not block: the server puts them on each session's bounded
send queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import anyio
import anyio.lowlevel
import msgspec
from anyio.abc import TaskGroup

from .core import (
    Action,
    CancelTier,
    CascadeParams,
    OnlineRouter,
    StartTier,
    TierSpec,
    Turn,
    TurnTrace,
    Verifier,
    request_features,
)
from .providers.base import Chunk, Message, Provider, ProviderError, TierRequest, Usage
from .providers.health import BreakerParams, ProviderHealth

if TYPE_CHECKING:
    from .audio.config import Speech

Emit = Callable[[Action], None]


class CascadeProfile:
    """A named cascade: its parameters, one provider per tier, verifiers and a router.

    The router learns across every session that uses the profile; it is owned here, not global.
    So does ``health``: one circuit breaker per tier (:mod:`~realtime_cascade.health`), which
    every turn consults when it starts and informs as its streams end.
    """

    def __init__(
        self,
        name: str,
        params: CascadeParams,
        providers: Sequence[Provider],
        *,
        verifiers: Sequence[Verifier] = (),
        router: OnlineRouter | None = None,
        health: BreakerParams | ProviderHealth | None = None,
        speech: Speech | None = None,
        agent: AgentSpec | None = None,
    ) -> None:
        if len(providers) != len(params.tiers):
            raise ValueError(
                f"profile {name!r}: {len(params.tiers)} tiers but {len(providers)} providers"
            )
        self.name = name
        self.params = params
        self.providers = tuple(providers)
        self.verifiers = tuple(verifiers)
        self.router = router if router is not None else OnlineRouter()
        if not isinstance(health, ProviderHealth):
            health = ProviderHealth([t.name for t in params.tiers], health or BreakerParams())
        self.health = health
        # speech-to-text and text-to-speech (realtime_cascade.audio); None: the embedded ones
        self.speech = speech
        # the agent bound to this profile (realtime_cascade.agents.Agent): instructions, tools
        # run server-side, verifiers and hooks, bound afresh to every session
        self.agent = agent

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
        if self.speech is not None:
            await self.speech.aclose()


# --- agents: what the server needs of one, without importing realtime_cascade.agents -------------


ToolStatus = Literal["ok", "error", "timeout", "not_run"]
AgentDecisionKind = Literal["tool_cap", "session_budget", "turn_failed"]


class ToolRun(msgspec.Struct, frozen=True):
    """One server-side tool call and its result (``output`` is what the model is given)."""

    call_id: str
    name: str
    arguments: str
    output: str
    status: ToolStatus
    duration_ms: float
    tier_name: str  # the tier whose call it was
    step: int  # which cascade step of the response called it (0: the first)


class AgentDecision(msgspec.Struct, frozen=True):
    """A decision of the agent's tool loop (the cascade's own are ``DecisionRecord``)."""

    kind: AgentDecisionKind
    reason: str
    t_ms: float  # since the response started


class ResponseSink(Protocol):
    """Where an agent's tool loop puts one response's output (the server: its response
    builder and session; in-process: :mod:`realtime_cascade.agents.testing`)."""

    def feed(self, action: Action) -> None:
        """The cascade's actions, and the agent's own sentences as ``Release``."""

    def tool_output(self, run: ToolRun) -> None:
        """A server-side call ran (or was refused): its ``function_call_output``."""

    def agent_decision(self, decision: AgentDecision) -> None: ...

    def step_done(self, trace: TurnTrace) -> None:
        """A step that called tools ended; the loop goes on (the last step's trace is what
        :meth:`Responder.run` returns)."""


class Responder(Protocol):
    """What runs one response: a :class:`TurnRunner`, or an agent's tool loop around several."""

    async def run(self) -> TurnTrace: ...

    def cancel(self, reason: str = ...) -> None: ...


class BoundAgent(Protocol):
    """An agent bound to one session: its state lives as long as the session."""

    @property
    def instructions(self) -> str: ...

    @property
    def tools(self) -> tuple[dict[str, object], ...]:
        """The server-side tools, in the chat-completions shape, offered on every turn."""

    def responder(
        self,
        profile: CascadeProfile,
        request: TurnRequest,
        sink: ResponseSink,
        *,
        client_tools: frozenset[str],
        turn_id: str,
        session_spent_usd: float,
        params: CascadeParams,
        first_tier: int,
        max_tier: int | None,
        next_seed: Callable[[], int] | None = None,
    ) -> Responder:
        """The loop that answers ``request``: calls named in ``client_tools`` are the
        client's to run (the response ends there); the agent runs its own. ``next_seed``
        numbers the model calls after the first (``request.seed``); None keeps that one."""


@runtime_checkable
class AgentSpec(Protocol):
    """What a profile binds (``realtime_cascade.Agent``): one :class:`BoundAgent` a session."""

    def bind(self, session_id: str) -> BoundAgent: ...


class TurnRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    """The conversation a turn answers (system instructions first, the user's turn last)."""

    messages: tuple[Message, ...]
    tools: tuple[dict[str, object], ...] = ()
    tool_choice: str | dict[str, object] | None = None
    max_tokens: int | None = None
    seed: int = 0

    @property
    def user_text(self) -> str:
        for m in reversed(self.messages):
            if m.role == "user":
                return m.content or ""
        return ""


def tier_request(request: TurnRequest, spec: TierSpec, prefix: str = "") -> TierRequest:
    """What a tier is asked for: the turn's conversation, continuing ``prefix`` (the text
    already released), its output capped by the tier's own limit."""
    return TierRequest(
        messages=request.messages,
        prefix=prefix,
        tools=request.tools,
        tool_choice=request.tool_choice,
        max_tokens=min(spec.max_output_tokens, request.max_tokens or spec.max_output_tokens),
        seed=request.seed,
    )


def estimate_tokens(messages: Sequence[Message]) -> int:
    # ≈4 characters a token for English; providers' usage replaces this when a stream ends
    return max(1, sum(len(m.content or "") for m in messages) // 4 + 4 * len(messages))


_log = logging.getLogger(__name__)

# An upstream's reported input usage is believed up to this multiple of what the runtime
# estimated it sent (plus a floor): tokenizers differ (CJK text runs near a token a
# character, ≈4× the estimate) and tool schemas are not in the estimate, but no honest count
# is larger. Output usage is believed up to the tokens the tier was asked for.
INPUT_USAGE_FACTOR = 8
INPUT_USAGE_FLOOR = 1024


class UsageClamp(msgspec.Struct, frozen=True):
    """An upstream reported more usage than the request could have used; what was billed."""

    attempt: int
    tier: int
    reported: Usage
    billed: Usage


def usage_bound(request: TierRequest) -> Usage:
    """The most usage an honest upstream can report for ``request``."""
    sent = estimate_tokens(request.messages) + len(request.prefix) // 4
    sent += len(msgspec.json.encode(request.tools)) // 4 if request.tools else 0
    return Usage(INPUT_USAGE_FACTOR * sent + INPUT_USAGE_FLOOR, max(1, request.max_tokens))


def bounded_usage(reported: Usage, bound: Usage) -> Usage:
    return Usage(
        min(reported.input_tokens, bound.input_tokens),
        min(reported.output_tokens, bound.output_tokens),
    )


class TurnRunner:
    """Runs one turn. ``run()`` returns its trace; ``cancel()`` may be called from any task."""

    def __init__(
        self,
        profile: CascadeProfile,
        request: TurnRequest,
        emit: Emit,
        *,
        turn_id: str | None = None,
        session_spent_usd: float = 0.0,
        params: CascadeParams | None = None,
        first_tier: int = 0,
        max_tier: int | None = None,
        learn: bool = True,
        verifiers: Sequence[Verifier] | None = None,
    ) -> None:
        self.profile = profile
        self.request = request
        self._emit = emit
        self._params = params or profile.params
        self._learn = learn
        text = request.user_text
        turn_id = turn_id or f"turn_{uuid.uuid4().hex[:12]}"
        features = request_features(text)  # read once: the router's input and the turn's
        self._features = features.vector()
        self.turn = Turn(
            self._params,
            text,
            input_tokens=estimate_tokens(request.messages),
            turn_id=turn_id,
            router=profile.router.estimate(self._features),
            session_spent_usd=session_spent_usd,
            verifiers=profile.verifiers if verifiers is None else verifiers,
            first_tier=first_tier,
            max_tier=max_tier,
            unavailable=profile.health.unavailable(),
            features=features,
        )
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._timed_out: set[int] = set()  # attempts the core abandoned for lateness
        self._tg: TaskGroup | None = None
        self._wake = anyio.Event()
        self._sleep_until = math.inf  # the deadline the timer sleeps toward (inf: not asleep)
        self._finished = anyio.Event()
        self._now: Callable[[], float] = anyio.current_time
        # reported usage this turn did not believe (also logged at WARNING)
        self.usage_clamps: list[UsageClamp] = []

    @property
    def done(self) -> bool:
        return self.turn.done

    async def run(self) -> TurnTrace:
        self._now = loop_clock()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._perform(self.turn.start(self._now()))
            if not self.turn.done:
                tg.start_soon(self._timer)
            await self._finished.wait()
            # The timer returns by itself once woken (the turn is done): a task the group
            # cancels keeps its frames, this runner among them, in a reference cycle through
            # its CancelledError until a full collection. One checkpoint lets it run first.
            self._wake.set()
            await anyio.lowlevel.checkpoint()
            # Streams still registered are the ones left to stop (a finished or cut stream
            # has left ``_scopes``). Cancelling nothing is worth skipping: anyio formats the
            # current task's repr into every cancel's reason.
            if self._scopes:
                tg.cancel_scope.cancel()
        self._tg = None
        trace = self.turn.trace()
        label = self.turn.first_tier_preempted
        if self._learn and label is not None and trace.status == "completed":
            self.profile.router.observe(self._features, label)
        return trace

    def cancel(self, reason: str = "cancelled by the client") -> None:
        """Barge-in: stop every stream of the turn now. A no-op once the turn is done."""
        if self.turn.done or self._tg is None:
            return
        self._perform(self.turn.cancel(self._now(), reason))

    # -- performing the core's actions ------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case StartTier():
                    self._start(action)
                case CancelTier(attempt=attempt, timed_out=timed_out):
                    if timed_out:
                        self._timed_out.add(attempt)
                    scope = self._scopes.pop(attempt, None)
                    if scope is not None:
                        scope.cancel()
                case _:
                    self._emit(action)
        if self.turn.done:
            self._finished.set()
            return
        # Wake the timer only when the deadline moved earlier than the one it sleeps toward. A
        # later one (the stall deadline moves with every token) is read when that sleep ends,
        # so a streamed token costs no timer wake-up.
        deadline = self.turn.next_deadline()
        if deadline is not None and deadline < self._sleep_until:
            self._wake.set()

    def _start(self, action: StartTier) -> None:
        assert self._tg is not None
        scope = anyio.CancelScope()
        self._scopes[action.attempt] = scope
        self._tg.start_soon(self._stream, action, scope)

    async def _stream(self, action: StartTier, scope: anyio.CancelScope) -> None:
        turn = self.turn
        provider = self.profile.providers[action.tier]
        request = tier_request(self.request, self._params.tiers[action.tier], action.prefix)
        if action.max_tokens is not None and action.max_tokens < request.max_tokens:
            # the core's allowance: what the cost cap can pay for (core rule 6)
            request = msgspec.structs.replace(request, max_tokens=max(1, action.max_tokens))
        attempt = action.attempt
        bound = usage_bound(request)
        health, tier = self.profile.health, action.tier
        health.started(tier)
        # The provider's verdict for its breaker: None until the stream finishes or fails.
        verdict: bool | None = None
        delivered = False
        with scope:
            try:
                # aclosing: leaving early (finish, cancel) must close the upstream response now,
                # not when the generator is garbage-collected
                async with contextlib.aclosing(provider.stream(request)) as chunks:
                    async for chunk in chunks:
                        delivered = True
                        if chunk.usage is not None:
                            chunk = self._bound(attempt, tier, chunk, chunk.usage, bound)
                        if self._feed(attempt, chunk):
                            verdict = True
                            return
                        if scope.cancel_called:
                            return
                # a stream that ends without a finish reason was cut short upstream
                verdict = False
                health.failed(tier)
                self._perform(
                    turn.tier_failed(attempt, "stream ended without a finish reason", self._now())
                )
            except ProviderError as exc:
                verdict = False
                health.failed(tier, exc)
                error = f"{exc.kind}: {exc.message}"
                # a request that never reached the upstream was not billed (issue 11)
                billed_in = 0 if not exc.connected and not delivered else None
                self._perform(turn.tier_failed(attempt, error, self._now(), input_tokens=billed_in))
            finally:
                self._scopes.pop(attempt, None)
                if verdict is True:
                    health.succeeded(tier)
                elif verdict is None:
                    if attempt in self._timed_out:
                        health.failed(tier)  # no first token in time, or stalled
                    elif delivered:
                        health.succeeded(tier)  # cut by the cascade, but it was working
                    else:
                        health.abandoned(tier)

    def _bound(self, attempt: int, tier: int, chunk: Chunk, usage: Usage, bound: Usage) -> Chunk:
        """Bill no more than the request could have used: a lying upstream's usage would
        otherwise spend the turn's cost cap (and the session's budget) on nothing."""
        billed = bounded_usage(usage, bound)
        if billed == usage:
            return chunk
        self.usage_clamps.append(UsageClamp(attempt, tier, usage, billed))
        _log.warning(
            "turn %s tier %s reported usage %d in / %d out, over what it was asked for; "
            "billed %d in / %d out",
            self.turn.turn_id,
            self._params.tiers[tier].name,
            usage.input_tokens,
            usage.output_tokens,
            billed.input_tokens,
            billed.output_tokens,
        )
        return msgspec.structs.replace(chunk, usage=billed)

    def _feed(self, attempt: int, chunk: Chunk) -> bool:
        """Hand one chunk to the core; True when it was the stream's last."""
        self._perform(chunk_actions(self.turn, attempt, chunk, self._now()))
        return chunk.finish_reason is not None

    async def _timer(self) -> None:
        turn = self.turn
        while not turn.done:
            deadline = turn.next_deadline()
            if deadline is None:
                return
            now = self._now()
            if now < deadline:
                self._wake = anyio.Event()
                self._sleep_until = deadline
                with anyio.move_on_after(deadline - now):
                    await self._wake.wait()
                self._sleep_until = math.inf
                continue  # re-read: the deadline may have moved or passed
            self._perform(turn.tick(now))


def chunk_actions(turn: Turn, attempt: int, chunk: Chunk, now: float) -> list[Action]:
    """The core's actions for one streamed chunk: its token or tool-call piece, then its finish.

    The runtime and the bench's zero-overhead replay both feed chunks through this, so the
    replay decides exactly as the runtime does.
    """
    if chunk.tool_call is not None:
        call = chunk.tool_call
        actions = turn.tool_call(
            attempt, call.index, call.id, call.name, call.arguments, chunk.logprob, now
        )
    elif chunk.text:
        actions = turn.token(attempt, chunk.text, chunk.logprob, chunk.top_logprobs, now)
    else:
        actions = []
    if chunk.finish_reason is not None:
        usage = chunk.usage
        actions += turn.tier_finished(
            attempt,
            chunk.finish_reason,
            now,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
        )
    return actions


def loop_clock() -> Callable[[], float]:
    """``anyio.current_time`` without its backend lookup on every call (the runner reads the
    clock per token). On asyncio that clock is the running loop's ``time``."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # another anyio backend
        return anyio.current_time


async def run_turn(
    profile: CascadeProfile,
    request: TurnRequest,
    emit: Emit | None = None,
    **kwargs: object,
) -> TurnTrace:
    """Convenience: run one turn to its end and return its trace."""
    runner = TurnRunner(profile, request, emit or (lambda _action: None), **kwargs)  # type: ignore[arg-type]
    return await runner.run()
