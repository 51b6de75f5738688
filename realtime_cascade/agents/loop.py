"""The tool loop of one response: cascade step, the agent's tools run, next step, until words.

Each step is a cascade turn of its own (:class:`~realtime_cascade.runtime.TurnRunner`), so it
starts on the light tier again and the monitor can escalate at any step: a request may search on
the light tier, book on the strong one and summarise on the light one (mid-execution model
switching). Between steps the agent's calls run server-side, one after another, each with its
timeout; their ``function_call_output`` go to the sink (the client sees them as items of the
same response) and into the next step's messages.

A step ends the response when it answers in words, when it calls a tool the client declared
(the client runs it: the agent's calls of that step run first), when it is cancelled or fails,
or when the agent stops it — each stop a traced :class:`~realtime_cascade.runtime.AgentDecision`
and a sentence of the agent's own (never silence):

- ``tool_cap``: the step's calls would take the response past ``max_tool_calls``; none of them
  runs (each gets a ``not_run`` output, so the conversation stays well formed);
- ``session_budget`` / ``turn_failed``: a step ended without words or calls (the session's
  budget was spent, or the turn failed).

Once the listener has heard something, later steps run without fillers: a filler after the
first words would only repeat them ("Let me check that." … "One moment.").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import msgspec

from ..core import (
    Action,
    CascadeParams,
    Decision,
    DecisionRecord,
    FinishTurn,
    Release,
    ToolCallRecord,
    TurnTrace,
    Verifier,
)
from ..providers.base import Message
from ..runtime import (
    AgentDecision,
    AgentDecisionKind,
    CascadeProfile,
    ResponseSink,
    ToolRun,
    TurnRequest,
    TurnRunner,
)
from .tools import Context, Tool

NOT_RUN = "not run: the tool-call cap was reached"


@dataclass(frozen=True)
class Sentences:
    """What the agent says itself when its loop stops a turn (never silence)."""

    tool_cap: str = (
        "I've stopped there: doing all of that would take more than {cap} steps in one go. "
        "{done}Shall we take the rest one step at a time?"
    )
    tool_cap_done: str = "What I've already done stands. "  # when a tool that changes state ran
    budget: str = (
        "I'm sorry, this session has used up its budget, so I can't do more right now. "
        "Nothing else was changed."
    )
    failed: str = "Sorry, I didn't manage that. Could you say it again?"


# What the loop reads of its agent, as protocols: an Agent and its SessionAgent (agent.py)
# satisfy them, and agent.py, which builds loops, stays the only one of the two importing the
# other.


class LoopSettings(Protocol):
    """The settings of an agent's definition the loop reads."""

    @property
    def max_tool_calls(self) -> int: ...
    @property
    def tool_timeout_s(self) -> float: ...
    @property
    def mutating(self) -> frozenset[str]: ...
    @property
    def sentences(self) -> Sentences: ...
    @property
    def on_turn_start(self) -> Callable[[Context[Any], str], None] | None: ...
    @property
    def on_turn_end(self) -> Callable[[Context[Any], TurnTrace], None] | None: ...
    @property
    def on_decision(self) -> Callable[[Context[Any], DecisionRecord], None] | None: ...


class LoopAgent(Protocol):
    """An agent bound to one session, as the loop uses it."""

    @property
    def agent(self) -> LoopSettings: ...
    @property
    def context(self) -> Context[Any]: ...
    @property
    def tool_map(self) -> Mapping[str, Tool]: ...
    @property
    def verifiers(self) -> tuple[Verifier, ...]: ...
    def hook(self, fn: Callable[..., None] | None, *args: object) -> None: ...


class ToolLoop:
    """One response of a bound agent; ``run()`` returns its last step's trace, ``cancel()``
    may be called from any task (a :class:`~realtime_cascade.runtime.Responder`)."""

    def __init__(
        self,
        bound: LoopAgent,
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
        learn: bool = True,
        next_seed: Callable[[], int] | None = None,
    ) -> None:
        self.bound = bound
        self.profile = profile
        self.request = request
        self.sink = sink
        self.client_tools = client_tools
        self.turn_id = turn_id
        self.spent_usd = session_spent_usd
        self.params = params
        self._quiet = msgspec.structs.replace(
            params, budgets=msgspec.structs.replace(params.budgets, fillers=())
        )
        self.first_tier = first_tier
        self.max_tier = max_tier
        self.learn = learn
        # A server session numbers every model call, as it did when the client sent one
        # response.create per step; in-process runs keep the conversation's one seed.
        self._next_seed = next_seed
        self.messages: list[Message] = list(request.messages)  # grows step by step
        self.runs: list[ToolRun] = []
        self.decisions: list[AgentDecision] = []
        self._runner: TurnRunner | None = None
        self._tools_scope: anyio.CancelScope | None = None
        self._cancelled: str | None = None
        self._heard = False
        self._t0 = time.perf_counter()

    def _ms(self) -> float:
        return round((time.perf_counter() - self._t0) * 1000.0, 3)

    def cancel(self, reason: str = "cancelled by the client") -> None:
        if self._cancelled is not None:
            return
        self._cancelled = reason
        if self._runner is not None:
            self._runner.cancel(reason)
        if self._tools_scope is not None:
            self._tools_scope.cancel()

    def _emit(self, action: Action) -> None:
        match action:
            case Release(text=text) if text:
                self._heard = True
            case Decision(record=record) if self.bound.agent.on_decision is not None:
                self.bound.hook(self.bound.agent.on_decision, self.bound.context, record)
            case _:
                pass
        self.sink.feed(action)

    def _say(self, sentence: str, tier: int) -> None:
        """A sentence of the agent's own: heard, and in the history."""
        self._emit(Release(sentence, tier))
        self.messages.append(Message("assistant", sentence))

    def _decide(self, kind: AgentDecisionKind, reason: str) -> None:
        decision = AgentDecision(kind, reason, self._ms())
        self.decisions.append(decision)
        self.sink.agent_decision(decision)

    async def run(self) -> TurnTrace:
        bound = self.bound
        bound.hook(bound.agent.on_turn_start, bound.context, self.request.user_text)
        trace = await self._loop()
        bound.hook(bound.agent.on_turn_end, bound.context, trace)
        return trace

    async def _loop(self) -> TurnTrace:
        cap = self.bound.agent.max_tool_calls
        sentences = self.bound.agent.sentences
        made = 0
        step = 0
        while True:
            seed = self.request.seed
            if step and self._next_seed is not None:
                seed = self._next_seed()
            runner = self._runner = TurnRunner(
                self.profile,
                msgspec.structs.replace(self.request, messages=tuple(self.messages), seed=seed),
                self._emit,
                turn_id=self.turn_id if step == 0 else f"{self.turn_id}.{step}",
                session_spent_usd=self.spent_usd,
                params=self._quiet if self._heard else self.params,
                first_tier=self.first_tier,
                max_tier=self.max_tier,
                learn=self.learn,
                verifiers=(*self.profile.verifiers, *self.bound.verifiers),
            )
            trace = await runner.run()
            self.spent_usd += trace.cost_usd
            calls = trace.tool_calls
            if trace.status == "cancelled" or self._cancelled is not None:
                return trace
            # Otherwise what the core released stands, even from a turn that ended short (a
            # verifier's refusal with no stronger tier allowed still releases the call): the
            # tool's own answer (e.g. "that slot is full") is what the model then reports.
            if not calls:
                if not trace.text:
                    budget = any(d.cause == "budget" for d in trace.decisions)
                    self._decide(
                        "session_budget" if budget else "turn_failed",
                        f"step ended without text ({trace.status}: {trace.reason})",
                    )
                    self._say(sentences.budget if budget else sentences.failed, trace.final_tier)
                else:
                    self.messages.append(Message("assistant", trace.text))
                return trace
            mine = [c for c in calls if self._owns(c.name)]
            if not mine:
                return trace  # the client's calls: it runs them and asks for the next step
            self._add_calls(trace)
            if made + len(mine) > cap:
                self._decide(
                    "tool_cap",
                    f"max_tool_calls {cap} reached: {made} made, {len(mine)} more requested "
                    f"({', '.join(c.name for c in mine)}); not executed",
                )
                for c in mine:
                    self._output(c, NOT_RUN, "not_run", 0.0, trace, step)
                changed = any(r.name in self.bound.agent.mutating for r in self.runs)
                done = sentences.tool_cap_done if changed else ""
                self._say(sentences.tool_cap.format(cap=cap, done=done), trace.final_tier)
                return trace
            if not await self._run_tools(mine, trace, step):
                return trace  # cancelled while a tool ran
            made += len(mine)
            if len(mine) < len(calls):
                return trace  # the client runs the rest
            self.sink.step_done(trace)
            step += 1

    def _owns(self, name: str) -> bool:
        # A tool the client declared is the client's to run, even if the agent has one too.
        return name in self.bound.tool_map and name not in self.client_tools

    def _add_calls(self, trace: TurnTrace) -> None:
        calls: tuple[dict[str, object], ...] = tuple(
            {
                "id": c.call_id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in trace.tool_calls
        )
        self.messages.append(Message("assistant", trace.text or None, tool_calls=calls))

    def _output(
        self,
        call: ToolCallRecord,
        output: str,
        status: Any,
        duration_ms: float,
        trace: TurnTrace,
        step: int,
    ) -> None:
        run = ToolRun(
            call.call_id,
            call.name,
            call.arguments,
            output,
            status,
            duration_ms,
            trace.final_tier_name,
            step,
        )
        self.runs.append(run)
        self.messages.append(Message("tool", output, tool_call_id=call.call_id))
        self.sink.tool_output(run)

    async def _run_tools(self, calls: list[ToolCallRecord], trace: TurnTrace, step: int) -> bool:
        """Run the step's calls in order; False when the response was cancelled meanwhile."""
        agent = self.bound.agent
        with anyio.CancelScope() as scope:
            self._tools_scope = scope
            if self._cancelled is not None:
                scope.cancel()
            for c in calls:
                result = await self.bound.tool_map[c.name](
                    c.arguments, self.bound.context, agent.tool_timeout_s
                )
                self._output(c, result.output, result.status, result.duration_ms, trace, step)
        self._tools_scope = None
        if self._cancelled is not None:
            self.sink.feed(FinishTurn("cancelled", self._cancelled))
            return False
        return True
