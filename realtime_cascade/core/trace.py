"""The typed record of one turn: every attempt, every decision, what the listener got."""

from __future__ import annotations

import msgspec

from .actions import DecisionRecord, Handoff, TurnStatus


class AttemptTrace(msgspec.Struct, frozen=True):
    attempt: int
    tier: int
    tier_name: str
    speculative: bool
    started_ms: float
    first_token_ms: float | None
    ended_ms: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    end_reason: str  # "stop", "length", "tool_calls", "preempted", "hedge not needed", "error: …"
    promoted: bool = False  # a hedge that took over


class ToolCallRecord(msgspec.Struct, frozen=True):
    call_id: str
    name: str
    arguments: str


class TurnTrace(msgspec.Struct, frozen=True):
    turn_id: str
    request: str
    complexity: float
    router_p: float | None
    status: TurnStatus
    reason: str
    text: str  # exactly what was released, in order
    fillers: tuple[str, ...]
    tool_calls: tuple[ToolCallRecord, ...]
    final_tier: int
    final_tier_name: str
    escalated: bool
    cost_usd: float
    ttft_ms: float | None  # first released text (fillers excluded)
    handoff_ms: float | None  # preempt decision -> first text released by the new tier
    end_ms: float
    attempts: tuple[AttemptTrace, ...]
    decisions: tuple[DecisionRecord, ...]
    handoffs: tuple[Handoff, ...] = ()  # each with how much text was released before it
