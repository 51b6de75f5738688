"""An agent: instructions, server-side tools, verifiers and hooks, bound afresh to every session.

::

    agent = Agent(
        instructions="You answer questions about the weather.",
        tools=[get_weather],          # plain typed functions (see .tools)
        verifiers=[no_past_dates],    # Answer -> problem or None (optionally with the Context)
    )

A profile binds one agent (``agent = "pkg.mod:agent"`` in TOML, ``serve --agent``). Each session
gets :meth:`Agent.bind`: a fresh ``state()``, the instructions, the tools' chat definitions,
the verifiers closed over the session's :class:`~.tools.Context`, and the tool loop
(:mod:`.loop`) for each response.

Verifiers are the cascade's correctness signal: called when a tier finishes, with the
:class:`~realtime_cascade.core.Answer` (the request, the text, the tool calls), they return a
description of what is wrong (the turn escalates to the next tier, cause ``correctness``) or
None. Every agent also checks its own tools' arguments against their schemas, first.

Hooks run on the event loop and must not block; an exception in one is logged, never raised.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ..core import Answer, CascadeParams, DecisionRecord, TurnTrace, Verifier
from ..runtime import CascadeProfile, ResponseSink, TurnRequest
from .loop import Sentences, ToolLoop
from .tools import DEFAULT_TIMEOUT_S, Context, Tool, ToolError, ToolLike, as_tool

S = TypeVar("S")
log = logging.getLogger(__name__)

# A verifier: the answer, or the answer and the session's context.
AgentVerifier = Callable[[Answer], "str | None"] | Callable[[Answer, Context[Any]], "str | None"]


def _arity(fn: Callable[..., object]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    return sum(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        for p in params
    )


@dataclass(frozen=True)
class Agent(Generic[S]):
    """Instructions + tools + verifiers + hooks. Immutable; :meth:`bind` per session."""

    instructions: str | Callable[[Context[S]], str] = ""
    tools: Sequence[ToolLike] = ()
    verifiers: Sequence[AgentVerifier] = ()
    state: Callable[[], S] | None = None  # a fresh one per session, in ``Context.state``
    max_tool_calls: int = 6  # server-side calls per response; beyond: a traced stop
    tool_timeout_s: float = DEFAULT_TIMEOUT_S  # per call, unless the tool sets its own
    mutating: frozenset[str] = frozenset()  # tools that change state (for the cap's sentence)
    sentences: Sentences = field(default_factory=Sentences)
    on_session_start: Callable[[Context[S]], None] | None = None
    on_turn_start: Callable[[Context[S], str], None] | None = None  # the user's last words
    on_turn_end: Callable[[Context[S], TurnTrace], None] | None = None  # each response's last
    on_decision: Callable[[Context[S], DecisionRecord], None] | None = None

    def __post_init__(self) -> None:
        tools = tuple(as_tool(t) for t in self.tools)
        names = [t.name for t in tools]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ToolError(f"two tools are named {', '.join(dupes)}")
        if self.max_tool_calls < 0 or self.tool_timeout_s <= 0:
            raise ValueError("max_tool_calls must be >= 0 and tool_timeout_s > 0")
        for v in self.verifiers:
            if not callable(v) or _arity(v) not in (1, 2):
                raise TypeError(f"verifier {v!r}: expected f(answer) or f(answer, context)")
        object.__setattr__(self, "tools", tools)

    @property
    def tool_map(self) -> dict[str, Tool]:
        return {t.name: t for t in self.tools if isinstance(t, Tool)}  # all are, once built

    def with_(self, **changes: Any) -> Agent[S]:
        """A copy with some fields changed (``agent.with_(max_tool_calls=2)``)."""
        return replace(self, **changes)

    def bind(self, session_id: str) -> SessionAgent[S]:
        state = self.state() if self.state is not None else None
        context: Context[S] = Context(session_id, state)  # type: ignore[arg-type]
        bound = SessionAgent(self, context)
        if self.on_session_start is not None:
            bound.hook(self.on_session_start, context)
        return bound


class SessionAgent(Generic[S]):
    """An :class:`Agent` bound to one session (a
    :class:`~realtime_cascade.runtime.BoundAgent`)."""

    def __init__(self, agent: Agent[S], context: Context[S]) -> None:
        self.agent = agent
        self.context = context
        self.tool_map = agent.tool_map
        self._tools = tuple(t.definition() for t in self.tool_map.values())
        self.verifiers: tuple[Verifier, ...] = (
            self._check_arguments,
            *(self._bind(v) for v in agent.verifiers),
        )

    @property
    def instructions(self) -> str:
        ins = self.agent.instructions
        return ins if isinstance(ins, str) else ins(self.context)

    @property
    def tools(self) -> tuple[dict[str, object], ...]:
        return self._tools

    def _bind(self, v: AgentVerifier) -> Verifier:
        if _arity(v) == 2:
            context = self.context
            return lambda answer: v(answer, context)  # type: ignore[call-arg]
        return v  # type: ignore[return-value]

    def _check_arguments(self, answer: Answer) -> str | None:
        """Calls to the agent's own tools must fit their schemas (a correctness signal)."""
        for call in answer.tool_calls:
            t = self.tool_map.get(call.name)
            if t is not None:
                problem = t.check(call.arguments)
                if problem is not None:
                    return problem
        return None

    def hook(self, fn: Callable[..., None] | None, *args: object) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:  # a hook's bug must not cost the session
            log.exception("agent hook %s failed", getattr(fn, "__name__", fn))

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
        learn: bool = True,
        next_seed: Callable[[], int] | None = None,
    ) -> ToolLoop:
        return ToolLoop(
            self,
            profile,
            request,
            sink,
            client_tools=client_tools,
            turn_id=turn_id,
            session_spent_usd=session_spent_usd,
            params=params,
            first_tier=first_tier,
            max_tier=max_tier,
            learn=learn,
            next_seed=next_seed,
        )
