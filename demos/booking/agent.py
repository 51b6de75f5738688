"""The booking agent loop: every step of a user turn is a cascade turn of its own.

A user turn runs step after step — a cascade turn, its tool calls executed against the store,
the assistant's ``tool_calls`` message and the ``tool`` results appended, the next cascade turn —
until a step answers in words. Because each step starts on the light tier again, the monitor can
escalate at any step: a request may search on the light tier, change the booking on the strong
one and summarise on the light one again (mid-execution model switching).

Two caps, each a traced :class:`AgentDecision` and a spoken sentence (never silence):

- ``max_tool_calls`` per user turn: a plan that needs more calls is stopped before the call
  that would break the cap (what was already done stands, and the user is told so);
- the session's cost budget: every step runs with ``session_spent_usd`` so the core refuses
  work the budget cannot pay for; once it is spent the agent says so instead of starting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import anyio
import msgspec

from realtime_cascade.core import Action, CascadeParams, Filler, Release
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


def _tier_of(trace: TurnTrace) -> str:
    return trace.final_tier_name


class Agent:
    """One conversation. Not shared between tasks: it owns its messages and spending."""

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
        self.profile = profile
        self.store = store
        self.limits = limits or AgentLimits()
        self.policy = policy or Policy()
        self.seed = seed
        # The router learns across sessions in completion order; off by default so a suite's
        # figures do not depend on how concurrent conversations happen to interleave.
        self.learn = learn
        self.on_text = on_text
        self.messages: list[Message] = [Message("system", system_prompt(store))]
        self.spent_usd = 0.0
        params = profile.params
        if self.limits.session_budget_usd is not None:
            budgets = msgspec.structs.replace(
                params.budgets, session_cap_usd=self.limits.session_budget_usd
            )
            params = msgspec.structs.replace(params, budgets=budgets)
        self.params: CascadeParams = params

    @property
    def session_cap_usd(self) -> float:
        return self.params.budgets.session_cap_usd

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

        def emit(action: Action) -> None:
            match action:
                case Release(text=piece):
                    hear(piece)
                case Filler(text=piece):
                    fillers.append(piece)
                case _:
                    pass

        def say(sentence: str) -> None:
            joined = "".join(heard)
            hear(sentence if not joined or joined.endswith(" ") else " " + sentence)
            self.messages.append(Message("assistant", sentence))

        self.messages.append(Message("user", text))
        calls_made = 0
        while True:
            if self.spent_usd >= self.session_cap_usd:
                reason = (
                    f"session budget ${self.session_cap_usd:.4f} spent "
                    f"(${self.spent_usd:.4f}): not starting another step"
                )
                decisions.append(AgentDecision("session_budget", reason, ms()))
                say(BUDGET_SENTENCE)
                break
            request = TurnRequest(tuple(self.messages), tools=TOOLS, seed=self.seed)
            runner = TurnRunner(
                self.profile,
                request,
                emit,
                session_spent_usd=self.spent_usd,
                params=self.params,
                first_tier=self.policy.first_tier,
                max_tier=self.policy.max_tier,
                learn=self.learn,
            )
            trace = await runner.run()
            steps.append(trace)
            self.spent_usd += trace.cost_usd
            calls = trace.tool_calls
            if not calls:
                if trace.text:
                    self.messages.append(Message("assistant", trace.text))
                elif any(d.cause == "budget" for d in trace.decisions):
                    reason = f"step ended by a budget: {trace.reason}"
                    decisions.append(AgentDecision("session_budget", reason, ms()))
                    say(BUDGET_SENTENCE)
                else:
                    reason = f"step {trace.status} without text: {trace.reason}"
                    decisions.append(AgentDecision("turn_failed", reason, ms()))
                    say(FAILED_SENTENCE)
                break
            cap = self.limits.max_tool_calls
            if calls_made + len(calls) > cap:
                reason = (
                    f"max_tool_calls {cap} reached: {calls_made} made, {len(calls)} more "
                    f"requested ({', '.join(c.name for c in calls)}); not executed"
                )
                decisions.append(AgentDecision("tool_cap", reason, ms()))
                changed = any(
                    t.name in ("create_booking", "change_booking", "cancel_booking") for t in tools
                )
                done = "What I've already done stands. " if changed else ""
                say(TOOL_CAP_SENTENCE.format(cap=cap, done=done))
                break
            self.messages.append(
                Message(
                    "assistant",
                    trace.text or None,
                    tool_calls=tuple(
                        {
                            "id": c.call_id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in calls
                    ),
                )
            )
            for c in calls:
                result = execute(self.store, c.name, c.arguments)
                tools.append(ToolRun(c.call_id, c.name, c.arguments, result, _tier_of(trace)))
                self.messages.append(Message("tool", result, tool_call_id=c.call_id))
            calls_made += len(calls)
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
