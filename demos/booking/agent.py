"""The booking agent loop: every step of a user turn is a cascade turn of its own.

A user turn runs step after step — a cascade turn, its tool calls executed against the store,
the assistant's ``tool_calls`` message and the ``tool`` results appended, the next cascade turn —
until a step answers in words. Because each step starts on the light tier again, the monitor can
escalate at any step: a request may search on the light tier, change the booking on the strong
one and summarise on the light one again (mid-execution model switching).

Two caps, each a traced :class:`AgentDecision` and a spoken sentence (never silence):

- ``max_tool_calls`` per user turn: a plan that needs more calls is stopped before the step
  whose calls would break the cap (none of them runs; what was already done stands, and the
  user is told so);
- the session's cost budget: every step runs with ``session_spent_usd`` so the core refuses
  work the budget cannot pay for; once it is spent the agent says so instead of starting.

:class:`AgentLoop` is that loop, once; :class:`Agent` runs its steps in-process and
:class:`~.wsagent.WsAgent` over a Realtime connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Literal

import anyio
import msgspec

from realtime_cascade.core import Action, CascadeParams, Filler, Release, ToolCallRecord
from realtime_cascade.providers.base import Message
from realtime_cascade.runtime import CascadeProfile, TurnRequest, TurnRunner
from realtime_cascade.trace import TurnTrace

from .domain import TODAY, Store, say_date
from .tools import TOOLS, execute
from .verify import make_verifier

AgentDecisionKind = Literal["tool_cap", "session_budget", "turn_failed"]

TOOL_CAP_SENTENCE = (
    "I've stopped there: doing all of that would take more than {cap} booking steps in one "
    "go. {done}Shall we take the rest one step at a time?"
)
BUDGET_SENTENCE = (
    "I'm sorry, this session has used up its budget, so I can't do more right now. "
    "Nothing else was changed."
)
FAILED_SENTENCE = "Sorry, I didn't manage that. Could you say it again?"
MUTATING = ("create_booking", "change_booking", "cancel_booking")


class AgentLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_tool_calls: int = 6  # per user turn
    session_budget_usd: float | None = None  # None: the profile's ``session_cap_usd``


class Policy(msgspec.Struct, frozen=True):
    """Which tiers a run may use: the cascade (0..last), light-only, strong-only."""

    name: str = "cascade"
    first_tier: int = 0
    max_tier: int | None = None


class AgentDecision(msgspec.Struct, frozen=True):
    kind: AgentDecisionKind
    reason: str
    t_ms: float


class ToolRun(msgspec.Struct, frozen=True):
    call_id: str
    name: str
    arguments: str
    result: str
    tier: str  # the tier whose call it was


class TurnResult(msgspec.Struct, frozen=True):
    """One user turn: what the user heard, each cascade step's trace, the agent's decisions."""

    user: str
    text: str  # everything the user heard, in order (fillers excluded)
    fillers: tuple[str, ...]
    steps: tuple[TurnTrace, ...]
    tools: tuple[ToolRun, ...]
    decisions: tuple[AgentDecision, ...]
    cost_usd: float
    first_text_ms: float | None
    end_ms: float

    @property
    def escalated(self) -> bool:
        return any(s.escalated for s in self.steps)


def system_prompt(store: Store) -> str:
    """The agent's instructions: the rules a strong model is expected to apply."""
    cat = store.catalog
    places = "; ".join(
        f"{r.name} (parties up to {r.max_party}, {r.times[0]}–{r.times[-1]})"
        for r in cat.restaurants.values()
    )
    return (
        f"You book restaurants and flights. Today is {say_date(TODAY.isoformat())}, "
        f"{TODAY.year}. Restaurants: {places}. Fares: basic cannot be changed and is not "
        "refunded; standard changes cost $50 and refunds keep $50; flex changes and refunds "
        "are free. Check availability before booking, and say the reference of every booking."
    )


def session_profile(base: CascadeProfile, store: Store) -> CascadeProfile:
    """``base`` with a verifier bound to this session's store (exact "slot is free" checks).

    Providers and the router are shared: they belong to the profile, not the session.
    """
    return CascadeProfile(
        base.name,
        base.params,
        base.providers,
        verifiers=(*base.verifiers, make_verifier(store)),
        router=base.router,
    )


class TurnLog:
    """What one user turn has produced so far: what was heard (and when), fillers, each step's
    trace, the tools run and the agent's decisions."""

    def __init__(self, on_text: Callable[[str], None] | None) -> None:
        self.t0 = anyio.current_time()
        self.on_text = on_text
        self.heard: list[str] = []
        self.fillers: list[str] = []
        self.first_text: float | None = None
        self.steps: list[TurnTrace] = []
        self.tools: list[ToolRun] = []
        self.decisions: list[AgentDecision] = []
        self._step_start = True

    def ms(self) -> float:
        return round((anyio.current_time() - self.t0) * 1000.0, 3)

    def new_step(self) -> None:
        self._step_start = True

    def hear(self, piece: str) -> None:
        if not piece:
            return
        if self._step_start:
            # each step's text starts afresh (the gate strips its leading space): keep the
            # words of consecutive steps apart
            self._step_start = False
            if self.heard and not self.heard[-1][-1:].isspace() and not piece[:1].isspace():
                piece = " " + piece
        if self.first_text is None:
            self.first_text = self.ms()
        self.heard.append(piece)
        if self.on_text is not None:
            self.on_text(piece)

    def decide(self, kind: AgentDecisionKind, reason: str) -> None:
        self.decisions.append(AgentDecision(kind, reason, self.ms()))

    def result(self, user: str, cost_usd: float) -> TurnResult:
        return TurnResult(
            user=user,
            text="".join(self.heard),
            fillers=tuple(self.fillers),
            steps=tuple(self.steps),
            tools=tuple(self.tools),
            decisions=tuple(self.decisions),
            cost_usd=cost_usd,
            first_text_ms=self.first_text,
            end_ms=self.ms(),
        )


class AgentLoop(ABC):
    """The loop of a user turn, whoever runs the cascade. Subclasses say how a step runs and
    how the conversation records what happened; the caps and decisions live here only."""

    def __init__(
        self,
        store: Store,
        *,
        limits: AgentLimits | None,
        policy: Policy | None,
        on_text: Callable[[str], None] | None,
        session_cap_usd: float,
    ) -> None:
        self.store = store
        self.limits = limits or AgentLimits()
        self.policy = policy or Policy()
        self.on_text = on_text
        self.spent_usd = 0.0
        budget = self.limits.session_budget_usd
        self.session_cap_usd = budget if budget is not None else session_cap_usd

    @abstractmethod
    async def _add_user(self, text: str) -> None:
        """The user's words, into the conversation."""

    @abstractmethod
    async def _step(
        self, log: TurnLog, *, fillers: bool
    ) -> tuple[TurnTrace | None, Sequence[ToolCallRecord]]:
        """Run one cascade turn, passing what is heard (and fillers) to ``log``; without
        fillers unless ``fillers``."""

    @abstractmethod
    async def _add_answer(self, trace: TurnTrace) -> None:
        """A step answered in words: its text, into the conversation (if not there already)."""

    @abstractmethod
    async def _add_runs(self, trace: TurnTrace | None, runs: Sequence[ToolRun]) -> None:
        """A step's calls and their results, into the conversation."""

    @abstractmethod
    async def _add_unrun(self, trace: TurnTrace | None, calls: Sequence[ToolCallRecord]) -> None:
        """A step whose calls the cap stopped: what it said, and the calls (not run) where the
        conversation already holds them."""

    @abstractmethod
    async def _add_said(self, sentence: str) -> None:
        """A sentence of the agent's own, into the conversation."""

    async def _say(self, log: TurnLog, sentence: str) -> None:
        log.new_step()
        log.hear(sentence)
        await self._add_said(sentence)

    async def turn(self, text: str) -> TurnResult:
        log = TurnLog(self.on_text)
        spent_before = self.spent_usd
        await self._add_user(text)
        calls_made = 0
        while True:
            if self.spent_usd >= self.session_cap_usd:
                log.decide(
                    "session_budget",
                    f"session budget ${self.session_cap_usd:.4f} spent "
                    f"(${self.spent_usd:.4f}): not starting another step",
                )
                await self._say(log, BUDGET_SENTENCE)
                break
            log.new_step()
            # A filler covers the wait for the turn's first words. The core only knows its own
            # step: once the listener has heard something (the first step's acknowledgement),
            # a filler in a later step would only repeat it ("Let me check that." … "One
            # moment."), so the later steps run without.
            trace, calls = await self._step(log, fillers=not log.heard)
            if trace is not None:
                log.steps.append(trace)
                self.spent_usd += trace.cost_usd
            if not calls:
                if trace is not None and trace.text:
                    await self._add_answer(trace)
                    break
                budget = trace is not None and any(d.cause == "budget" for d in trace.decisions)
                why = "no trace" if trace is None else f"{trace.status}: {trace.reason}"
                log.decide(
                    "session_budget" if budget else "turn_failed",
                    f"step ended without text ({why})",
                )
                await self._say(log, BUDGET_SENTENCE if budget else FAILED_SENTENCE)
                break
            cap = self.limits.max_tool_calls
            if calls_made + len(calls) > cap:
                log.decide(
                    "tool_cap",
                    f"max_tool_calls {cap} reached: {calls_made} made, {len(calls)} more "
                    f"requested ({', '.join(c.name for c in calls)}); not executed",
                )
                await self._add_unrun(trace, calls)
                changed = any(t.name in MUTATING for t in log.tools)
                done = "What I've already done stands. " if changed else ""
                await self._say(log, TOOL_CAP_SENTENCE.format(cap=cap, done=done))
                break
            tier = trace.final_tier_name if trace is not None else "server"
            runs = [
                ToolRun(
                    c.call_id, c.name, c.arguments, execute(self.store, c.name, c.arguments), tier
                )
                for c in calls
            ]
            log.tools.extend(runs)
            await self._add_runs(trace, runs)
            calls_made += len(calls)
        return log.result(text, self.spent_usd - spent_before)


class Agent(AgentLoop):
    """One conversation, in-process. Not shared between tasks: it owns its messages and
    spending."""

    def __init__(
        self,
        profile: CascadeProfile,
        store: Store,
        *,
        limits: AgentLimits | None = None,
        policy: Policy | None = None,
        seed: int = 0,
        learn: bool = False,
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        params = profile.params
        super().__init__(
            store,
            limits=limits,
            policy=policy,
            on_text=on_text,
            session_cap_usd=params.budgets.session_cap_usd,
        )
        self.profile = profile
        self.seed = seed
        # The router learns across sessions in completion order; off by default so a suite's
        # figures do not depend on how concurrent conversations happen to interleave.
        self.learn = learn
        self.messages: list[Message] = [Message("system", system_prompt(store))]
        budgets = msgspec.structs.replace(params.budgets, session_cap_usd=self.session_cap_usd)
        self.params: CascadeParams = msgspec.structs.replace(params, budgets=budgets)
        self._quiet_params = msgspec.structs.replace(
            params, budgets=msgspec.structs.replace(params.budgets, fillers=())
        )

    async def _add_user(self, text: str) -> None:
        self.messages.append(Message("user", text))

    async def _step(
        self, log: TurnLog, *, fillers: bool
    ) -> tuple[TurnTrace, Sequence[ToolCallRecord]]:
        def emit(action: Action) -> None:
            match action:
                case Release(text=piece):
                    log.hear(piece)
                case Filler(text=piece):
                    log.fillers.append(piece)
                case _:
                    pass

        runner = TurnRunner(
            self.profile,
            TurnRequest(tuple(self.messages), tools=TOOLS, seed=self.seed),
            emit,
            session_spent_usd=self.spent_usd,
            params=self.params if fillers else self._quiet_params,
            first_tier=self.policy.first_tier,
            max_tier=self.policy.max_tier,
            learn=self.learn,
        )
        trace = await runner.run()
        return trace, trace.tool_calls

    async def _add_answer(self, trace: TurnTrace) -> None:
        self.messages.append(Message("assistant", trace.text))

    async def _add_runs(self, trace: TurnTrace | None, runs: Sequence[ToolRun]) -> None:
        calls: tuple[dict[str, object], ...] = tuple(
            {
                "id": r.call_id,
                "type": "function",
                "function": {"name": r.name, "arguments": r.arguments},
            }
            for r in runs
        )
        text = trace.text if trace is not None else ""
        self.messages.append(Message("assistant", text or None, tool_calls=calls))
        self.messages.extend(Message("tool", r.result, tool_call_id=r.call_id) for r in runs)

    async def _add_unrun(self, trace: TurnTrace | None, calls: Sequence[ToolCallRecord]) -> None:
        if trace is not None and trace.text:  # heard; the calls never enter the conversation
            self.messages.append(Message("assistant", trace.text))

    async def _add_said(self, sentence: str) -> None:
        self.messages.append(Message("assistant", sentence))
