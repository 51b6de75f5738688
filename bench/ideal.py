"""The zero-overhead run: what a listener would get from the same schedules at no runtime cost.

"Runtime overhead" is client-observed latency minus the simulator's scheduled latency. For a
cascade the scheduled latency is not one number from one stream: it depends on which tiers the
core starts, when, and with which prefix, and on when the speech gate lets text out. So each
response the bench observed is *replayed* here in virtual time: the same pure core
(:class:`~realtime_cascade.core.Turn`, same parameters and overrides, same verifiers) is fed
the same token schedules (:func:`~realtime_cascade.providers.sim.schedule`, for exactly the
request the sim upstream reconstructs from the HTTP body) at their scheduled instants, with
ticks at the core's deadlines, and nothing else costs any time. What it releases, and when, is
the physical limit of the cascade itself; the difference to what the client saw is the cost of
everything else (HTTP, SSE decoding, the event loop, the wire, the socket, load).

A replay whose text, decisions or status differ from the observed response is a *divergence*
(a deadline — a hedge window, a filler, a hold — landed on the other side of a token because
the real run was late); divergent responses are counted and left out of the overhead figures.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from realtime_cascade.core import (
    CancelTier,
    CascadeParams,
    Decision,
    FinishTurn,
    Handoff,
    Release,
    ReleaseToolCall,
    StartTier,
    TierSpec,
    Turn,
    Verifier,
)
from realtime_cascade.providers.base import Chunk, Message, TierRequest
from realtime_cascade.providers.openai import continuation_instruction
from realtime_cascade.providers.sim import Script, SimProfile, SimStep, schedule
from realtime_cascade.providers.sim_upstream import ChatRequest, tier_request
from realtime_cascade.runtime import TurnRequest, chunk_actions, estimate_tokens
from realtime_cascade.runtime import tier_request as runtime_tier_request


@dataclass(frozen=True)
class TierSim:
    """One tier as the sim upstream serves it: its model name there, profile and script."""

    name: str
    profile: SimProfile
    script: Script
    prefix_mode: str = "instruction"


def upstream_request(request: TierRequest, tier: TierSim) -> TierRequest:
    """The :class:`TierRequest` the sim upstream rebuilds from the HTTP body that
    :class:`~realtime_cascade.providers.openai.OpenAIProvider` sends for ``request``.

    The round trip matters: the seed is not sent (the upstream draws with seed 0), and the
    prefix travels as a continuation instruction (or an assistant prefix) and is recovered.
    """
    messages: list[dict[str, Any]] = [msgspec.to_builtins(m) for m in request.messages]
    body: dict[str, Any] = {"model": tier.name, "stream": True, "max_tokens": request.max_tokens}
    if request.prefix:
        if tier.prefix_mode == "assistant_prefix":
            messages.append({"role": "assistant", "content": request.prefix})
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        else:
            messages.append({"role": "system", "content": continuation_instruction(request.prefix)})
    body["messages"] = messages
    if request.tools:
        body["tools"] = list(request.tools)
    if request.tool_choice is not None:
        body["tool_choice"] = request.tool_choice
    return tier_request(msgspec.convert(body, ChatRequest))


def tier_request_for(
    messages: Sequence[Message],
    tools: Sequence[dict[str, object]],
    tool_choice: str | dict[str, object] | None,
    max_tokens: int | None,
    spec: TierSpec,
    prefix: str = "",
) -> TierRequest:
    """What the runtime asks a tier for (:func:`realtime_cascade.runtime.tier_request`)."""
    turn = TurnRequest(tuple(messages), tuple(tools), tool_choice, max_tokens)
    return runtime_tier_request(turn, spec, prefix)


def tier_schedule(
    tier: TierSim,
    messages: Sequence[Message],
    tools: Sequence[dict[str, object]],
    tool_choice: str | dict[str, object] | None,
    max_tokens: int | None,
    spec: TierSpec,
    prefix: str = "",
) -> list[SimStep]:
    request = tier_request_for(messages, tools, tool_choice, max_tokens, spec, prefix)
    return schedule(tier.profile, tier.name, tier.script, upstream_request(request, tier))


@dataclass
class IdealAttempt:
    tier: int
    start: float  # seconds from the turn's start
    ttft: float  # scheduled time to first token, from ``start``
    speculative: bool
    duration: float = 0.0  # scheduled time to the final chunk, from ``start``


@dataclass
class Ideal:
    """One response in virtual time; times in seconds from the turn's start."""

    releases: list[tuple[float, str]] = field(default_factory=list)
    decisions: list[tuple[float, str, int, int | None]] = field(default_factory=list)
    handoffs: list[tuple[float, int, int, int]] = field(default_factory=list)  # t, from, to, chars
    attempts: list[IdealAttempt] = field(default_factory=list)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    end: float = 0.0
    status: str = "incomplete"
    cost_usd: float = 0.0

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.releases)

    def release_time(self, offset: int) -> float | None:
        """When the text up to character ``offset`` (exclusive end) had been released."""
        total = 0
        for t, piece in self.releases:
            total += len(piece)
            if total >= offset:
                return t
        return None

    def decision_kinds(self) -> list[str]:
        return [kind for _, kind, _, _ in self.decisions if kind != "filler"]


class ReplayError(RuntimeError):
    """The virtual-time run did not terminate (a core or replay bug)."""


def replay_turn(
    params: CascadeParams,
    tiers: Sequence[TierSim],
    messages: Sequence[Message],
    *,
    tools: Sequence[dict[str, object]] = (),
    tool_choice: str | dict[str, object] | None = None,
    max_tokens: int | None = None,
    first_tier: int = 0,
    max_tier: int | None = None,
    session_spent_usd: float = 0.0,
    verifiers: Sequence[Verifier] = (),
) -> Ideal:
    """Run one cascade turn in virtual time, as ``runtime.TurnRunner`` would with no delays."""
    user_text = next((m.content or "" for m in reversed(messages) if m.role == "user"), "")
    turn = Turn(
        params,
        user_text,
        input_tokens=estimate_tokens(messages),
        turn_id="ideal",
        session_spent_usd=session_spent_usd,
        verifiers=verifiers,
        first_tier=first_tier,
        max_tier=max_tier,
    )
    out = Ideal()
    heap: list[tuple[float, int, int, Chunk]] = []
    live: set[int] = set()
    seq = 0

    def perform(actions: list[Any], now: float) -> None:
        nonlocal seq
        for action in actions:
            match action:
                case StartTier(attempt=attempt, tier=tier, prefix=prefix, speculative=spec):
                    steps = tier_schedule(
                        tiers[tier],
                        messages,
                        tools,
                        tool_choice,
                        max_tokens,
                        params.tiers[tier],
                        prefix,
                    )
                    total = sum(step.delay for step in steps)
                    out.attempts.append(IdealAttempt(tier, now, steps[0].delay, spec, total))
                    live.add(attempt)
                    t = now
                    for step in steps:
                        t += step.delay
                        heapq.heappush(heap, (t, seq, attempt, step.chunk))
                        seq += 1
                case CancelTier(attempt=attempt):
                    live.discard(attempt)
                case Release(text=text):
                    out.releases.append((now, text))
                case ReleaseToolCall(name=name, arguments=arguments):
                    out.tool_calls.append((name, arguments))
                case Decision(record=record):
                    out.decisions.append((now, record.kind, record.tier, record.to_tier))
                case Handoff(from_tier=a, to_tier=b, released_chars=n):
                    out.handoffs.append((now, a, b, n))
                case FinishTurn(status=status):
                    out.status = status
                    out.end = now
                case _:
                    pass

    now = 0.0
    perform(turn.start(now), now)
    last_tick: float | None = None
    for _ in range(1_000_000):
        if turn.done:
            break
        while heap and heap[0][2] not in live:
            heapq.heappop(heap)
        deadline = turn.next_deadline()
        if deadline is not None and last_tick is not None and deadline <= last_tick:
            deadline = None  # a deadline that a tick did not move: nothing to do at it
        due = heap[0][0] if heap else None
        if deadline is not None and (due is None or deadline <= due):
            now = max(now, deadline)
            last_tick = now
            perform(turn.tick(now), now)
            continue
        if due is None:
            raise ReplayError("no stream and no deadline left, yet the turn is not done")
        t, _, attempt, chunk = heapq.heappop(heap)
        now = t
        last_tick = None
        perform(chunk_actions(turn, attempt, chunk, now), now)
        if chunk.finish_reason is not None:
            live.discard(attempt)
    else:
        raise ReplayError("the virtual-time run did not finish in 1,000,000 steps")
    out.cost_usd = turn.trace().cost_usd
    return out


def replay_bare(
    tier: TierSim,
    spec: TierSpec,
    messages: Sequence[Message],
    *,
    tools: Sequence[dict[str, object]] = (),
    tool_choice: str | dict[str, object] | None = None,
    max_tokens: int | None = None,
) -> Ideal:
    """The bare baseline's schedule: every text token is a delta at its scheduled instant."""
    steps = tier_schedule(tier, messages, tools, tool_choice, max_tokens, spec)
    total = sum(step.delay for step in steps)
    out = Ideal(attempts=[IdealAttempt(0, 0.0, steps[0].delay, False, total)], status="completed")
    t = 0.0
    calls: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for step in steps:
        t += step.delay
        chunk = step.chunk
        if chunk.text:
            out.releases.append((t, chunk.text))
        if chunk.tool_call is not None:
            calls.setdefault(chunk.tool_call.index, []).append(chunk.tool_call.arguments)
            if chunk.tool_call.name:
                names[chunk.tool_call.index] = chunk.tool_call.name
    out.tool_calls = [(names.get(i, ""), "".join(parts)) for i, parts in sorted(calls.items())]
    out.end = t
    return out
