"""Test an agent in-process: a conversation against sim or real tiers, no socket, no server.

::

    from realtime_cascade.agents.testing import AgentConversation

    async def test_weather() -> None:
        async with AgentConversation(agent, config="my.toml", profile="default") as conv:
            result = await conv.say("What's the weather in Paris?")
        result.assert_tool_called("get_weather", city="Paris")
        result.assert_said("sunny")
        assert result.tiers == ("light", "light")

Each ``say`` runs the same tool loop the server runs for a ``response.create``
(:class:`~.loop.ToolLoop`), so what passes here passes over the wire. With sim tiers a run is
deterministic: the sim draws from the profile's seeds and the conversation's ``seed``.
:func:`run_conversation` is the synchronous form, for a plain ``def test_…``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from .. import config as config_mod
from ..core import (
    Action,
    Decision,
    DecisionRecord,
    Filler,
    Release,
    TurnTrace,
)
from ..providers.base import Message
from ..runtime import AgentDecision, CascadeProfile, ToolRun, TurnRequest
from .agent import Agent, SessionAgent


class TurnResult(msgspec.Struct, frozen=True):
    """One user turn: what was heard, each cascade step's trace, the tools run, decisions."""

    user: str
    text: str  # everything the listener heard, in order (fillers excluded)
    fillers: tuple[str, ...]
    steps: tuple[TurnTrace, ...]  # one per cascade step, the last one last
    tools: tuple[ToolRun, ...]  # server-side calls, in order
    decisions: tuple[AgentDecision, ...]  # the agent's own (tool_cap, session_budget, …)
    cost_usd: float
    first_text_ms: float | None
    end_ms: float

    @property
    def escalated(self) -> bool:
        return any(s.escalated for s in self.steps)

    @property
    def tiers(self) -> tuple[str, ...]:
        """The tier each step ended on (``("light", "strong", "light")``)."""
        return tuple(s.final_tier_name for s in self.steps)

    @property
    def cascade_decisions(self) -> tuple[DecisionRecord, ...]:
        """Every decision the cascade took, step after step (route, hedge, preempt, …)."""
        return tuple(d for s in self.steps for d in s.decisions)

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.tools)

    # -- assertions (plain ``assert`` with a message that shows what happened)

    def assert_said(self, fragment: str) -> None:
        assert fragment.lower() in self.text.lower(), f"{fragment!r} not in {self.text!r}"

    def assert_tool_called(self, name: str, **arguments: object) -> ToolRun:
        """The first call of ``name`` whose arguments include ``arguments``; returns it."""
        for run in self.tools:
            if run.name != name:
                continue
            args = msgspec.json.decode(run.arguments or "{}")
            if all(isinstance(args, dict) and args.get(k) == v for k, v in arguments.items()):
                return run
        calls = [(r.name, r.arguments) for r in self.tools]
        raise AssertionError(f"no call {name}({arguments}) among {calls}")

    def assert_no_tools(self) -> None:
        assert not self.tools, f"tools ran: {[(r.name, r.arguments) for r in self.tools]}"

    def assert_decision(
        self, kind: str, cause: str | None = None
    ) -> DecisionRecord | AgentDecision:
        """A cascade decision (``preempt``, ``hedge``, …, optionally of ``cause``) or an agent
        decision (``tool_cap``, ``session_budget``, ``turn_failed``) of this turn."""
        for d in self.cascade_decisions:
            if d.kind == kind and (cause is None or d.cause == cause):
                return d
        for a in self.decisions:
            if a.kind == kind and cause is None:
                return a
        seen = [(d.kind, d.cause) for d in self.cascade_decisions]
        raise AssertionError(f"no {kind} ({cause}) decision among {seen} {self.decisions}")


class _Recorder:
    """The in-process :class:`~realtime_cascade.runtime.ResponseSink`: what one turn produced."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.heard: list[str] = []
        self.fillers: list[str] = []
        self.first_text: float | None = None
        self.steps: list[TurnTrace] = []
        self.tools: list[ToolRun] = []
        self.decisions: list[AgentDecision] = []
        self._step_start = True

    def ms(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000.0, 3)

    def feed(self, action: Action) -> None:
        match action:
            case Release(text=piece) if piece:
                if self._step_start:
                    # each step's text starts afresh (the gate strips its leading space): keep
                    # the words of consecutive steps apart, as a client joining items would
                    self._step_start = False
                    last = self.heard[-1][-1:] if self.heard else ""
                    if last and not last.isspace() and not piece[:1].isspace():
                        piece = " " + piece
                if self.first_text is None:
                    self.first_text = self.ms()
                self.heard.append(piece)
            case Filler(text=piece):
                self.fillers.append(piece)
            case Decision():
                pass  # in the step's trace
            case _:
                pass

    def tool_output(self, run: ToolRun) -> None:
        self.tools.append(run)

    def new_step(self) -> None:
        self._step_start = True

    def agent_decision(self, decision: AgentDecision) -> None:
        self.decisions.append(decision)
        self.new_step()  # the agent's sentence is a step of its own

    def step_done(self, trace: TurnTrace) -> None:
        self.steps.append(trace)
        self.new_step()


class AgentConversation:
    """One session of ``agent``, in-process. Not shared between tasks.

    The tiers: ``profile`` (a built :class:`~realtime_cascade.runtime.CascadeProfile`,
    shared and not closed here), or the profile ``profile_name`` of ``config`` (a path, a
    :class:`~realtime_cascade.config.Config`, or None for the embedded sim tiers), built here
    and closed with the conversation. ``first_tier`` / ``max_tier`` pin the cascade (e.g.
    strong-only); ``session_cap_usd`` replaces the profile's session budget.
    """

    def __init__(
        self,
        agent: Agent[Any],
        profile: CascadeProfile | None = None,
        *,
        config: str | Path | config_mod.Config | None = None,
        profile_name: str = "default",
        seed: int = 0,
        first_tier: int = 0,
        max_tier: int | None = None,
        session_cap_usd: float | None = None,
        learn: bool = False,
        session_id: str = "test",
    ) -> None:
        self.agent = agent
        self._own_profile = profile is None
        if profile is None:
            cfg = config if isinstance(config, config_mod.Config) else config_mod.load(config)
            profile = config_mod.build_profile(cfg, profile_name)
        self.profile = profile
        self.bound: SessionAgent[Any] = agent.bind(session_id)
        self.seed = seed
        self.first_tier = first_tier
        self.max_tier = max_tier
        # The router learns across sessions in completion order; off by default so a test's
        # outcome does not depend on how concurrent conversations interleave.
        self.learn = learn
        params = profile.params
        if session_cap_usd is not None:
            budgets = msgspec.structs.replace(params.budgets, session_cap_usd=session_cap_usd)
            params = msgspec.structs.replace(params, budgets=budgets)
        self.params = params
        self.history: list[Message] = []  # the conversation, without the instructions
        self.spent_usd = 0.0
        self.turns = 0

    @property
    def state(self) -> Any:
        """The agent's state for this session (``Context.state``)."""
        return self.bound.context.state

    async def __aenter__(self) -> AgentConversation:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_profile:
            await self.profile.aclose()

    async def say(self, text: str) -> TurnResult:
        """The user says ``text``; the agent answers (tools and all). Returns the turn."""
        instructions = self.bound.instructions
        system = [Message("system", instructions)] if instructions else []
        self.history.append(Message("user", text))
        tools = self.bound.tools
        request = TurnRequest(
            messages=(*system, *self.history),
            tools=tools,
            tool_choice="auto" if tools else None,
            seed=self.seed,
        )
        recorder = _Recorder()
        loop = self.bound.responder(
            self.profile,
            request,
            recorder,
            client_tools=frozenset(),
            turn_id=f"turn_{self.turns}",
            session_spent_usd=self.spent_usd,
            params=self.params,
            first_tier=self.first_tier,
            max_tier=self.max_tier,
            learn=self.learn,
        )
        self.turns += 1
        spent = self.spent_usd
        last = await loop.run()
        recorder.steps.append(last)
        self.spent_usd = loop.spent_usd
        self.history = list(loop.messages[len(system) :])
        return TurnResult(
            user=text,
            text="".join(recorder.heard),
            fillers=tuple(recorder.fillers),
            steps=tuple(recorder.steps),
            tools=tuple(recorder.tools),
            decisions=tuple(recorder.decisions),
            cost_usd=self.spent_usd - spent,
            first_text_ms=recorder.first_text,
            end_ms=recorder.ms(),
        )


def run_conversation(agent: Agent[Any], turns: Sequence[str], **kwargs: Any) -> list[TurnResult]:
    """Play ``turns`` in one in-process conversation (``AgentConversation(agent, **kwargs)``)
    and return each turn's result. Synchronous: for a plain ``def test_…``."""

    async def main() -> list[TurnResult]:
        async with AgentConversation(agent, **kwargs) as conv:
            return [await conv.say(t) for t in turns]

    return anyio.run(main)
