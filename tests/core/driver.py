"""A deterministic, loop-free driver for the core: scripted streams, ticks at deadlines.

Each tier has a script: a list of (delay_s, text, logprob) steps and an ending (a finish reason
or an error). The driver merges stream events and deadline ticks in time order, exactly as the
runtime would, but with virtual time — so tests are exact and need no event loop.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from realtime_cascade.core import (
    Action,
    CancelTier,
    FinishTurn,
    Release,
    StartTier,
    Turn,
)


@dataclass
class Step:
    delay: float
    text: str = ""
    logprob: float | None = -0.05
    top: tuple[float, ...] = ()
    tool: tuple[int, str | None, str | None, str] | None = None  # index, id, name, arguments


@dataclass
class TierScript:
    steps: list[Step]
    end: str = "stop"  # a finish reason, or "error:<msg>", or "hang" (never ends)
    # Some scripts depend on the prefix the tier was asked to continue after.
    by_prefix: dict[str, list[Step]] = field(default_factory=dict)
    make: Callable[[str], list[Step]] | None = None  # steps computed from the prefix


@dataclass
class Run:
    actions: list[tuple[float, Action]] = field(default_factory=list)
    started: list[StartTier] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    finish: FinishTurn | None = None
    finish_time: float | None = None

    @property
    def released(self) -> str:
        return "".join(a.text for _, a in self.actions if isinstance(a, Release))

    def of(self, kind: type) -> list[Action]:
        return [a for _, a in self.actions if isinstance(a, kind)]


def drive(
    turn: Turn,
    scripts: list[TierScript],
    *,
    t0: float = 100.0,
    cancel_at: float | None = None,
    horizon: float = 120.0,
) -> Run:
    run = Run()
    queue: list[tuple[float, int, str, int, int]] = []  # (time, seq, kind, attempt, step index)
    seq = 0
    steps_of: dict[int, list[Step]] = {}
    ends_of: dict[int, str] = {}

    def perform(now: float, actions: list[Action]) -> None:
        nonlocal seq
        for action in actions:
            run.actions.append((now, action))
            match action:
                case StartTier(attempt=a, tier=tier, prefix=prefix):
                    run.started.append(action)
                    script = scripts[tier]
                    if script.make is not None:
                        steps = script.make(prefix)
                    else:
                        steps = script.by_prefix.get(prefix, script.steps)
                    steps_of[a] = steps
                    ends_of[a] = script.end
                    t = now
                    for i, step in enumerate(steps):
                        t += step.delay
                        seq += 1
                        heapq.heappush(queue, (t, seq, "step", a, i))
                    if script.end != "hang":
                        seq += 1
                        heapq.heappush(queue, (t + 0.001, seq, "end", a, -1))
                case CancelTier(attempt=a):
                    run.cancelled.append(a)
                case FinishTurn():
                    run.finish = action
                    run.finish_time = now
                case _:
                    pass

    perform(t0, turn.start(t0))
    cancel_pending = cancel_at
    while not turn.done:
        deadline = turn.next_deadline()
        assert deadline is not None, "a running turn always has a deadline"
        next_event = queue[0][0] if queue else float("inf")
        if cancel_pending is not None and cancel_pending <= min(deadline, next_event):
            perform(cancel_pending, turn.cancel(cancel_pending))
            cancel_pending = None
            continue
        if deadline <= next_event:
            assert deadline < t0 + horizon, "the turn must end within the horizon"
            acted = turn.tick(deadline)
            perform(deadline, acted)
            # a deadline that fires must change something, or the runtime's timer would spin
            assert acted or turn.done or (turn.next_deadline() or 0) > deadline, (
                f"deadline {deadline} fired with no effect and did not move"
            )
            continue
        t, _, kind, a, i = heapq.heappop(queue)
        if a in run.cancelled:
            # a late event of a cancelled stream: the core must ignore it
            late = (
                turn.token(a, "late", -0.1, (), t)
                if kind == "step"
                else turn.tier_finished(a, "stop", t)
            )
            assert late == []
            continue
        if kind == "step":
            step = steps_of[a][i]
            if step.tool is not None:
                index, call_id, name, args = step.tool
                perform(t, turn.tool_call(a, index, call_id, name, args, step.logprob, t))
            else:
                perform(t, turn.token(a, step.text, step.logprob, step.top, t))
        else:
            end = ends_of[a]
            if end.startswith("error:"):
                perform(t, turn.tier_failed(a, end[6:], t))
            else:
                perform(t, turn.tier_finished(a, end, t))
    return run


def words(
    text: str, *, logprob: float = -0.05, delay: float = 0.015, first: float = 0.15
) -> list[Step]:
    """Split text into word tokens (leading spaces kept), all with the same logprob."""
    import re

    tokens = re.findall(r"\s*[\w'’]+|\s*[^\w\s]|\s+", text)
    return [Step(first if i == 0 else delay, tok, logprob) for i, tok in enumerate(tokens)]
