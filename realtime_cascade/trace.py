"""Turn traces: the typed record (from the core) and how people and programs read it."""

from __future__ import annotations

from typing import Any

import msgspec

from .core.actions import DecisionRecord
from .core.trace import AttemptTrace, ToolCallRecord, TurnTrace

__all__ = ["AttemptTrace", "ToolCallRecord", "TurnTrace", "escalation_reason", "render", "summary"]


def escalation_reason(trace: TurnTrace) -> str:
    """Why the turn ended on its final tier: the decisive escalation, else the finish reason."""
    for d in trace.decisions:
        if d.kind in ("preempt", "fallback") or (d.kind == "route" and d.tier > 0):
            return d.reason
    return trace.reason


def summary(trace: TurnTrace) -> dict[str, Any]:
    """The JSON shape of ``realtime-cascade ask --json``."""
    return {
        "turn_id": trace.turn_id,
        "status": trace.status,
        "text": trace.text,
        "fillers": list(trace.fillers),
        "tool_calls": msgspec.to_builtins(trace.tool_calls),
        "final_tier": trace.final_tier_name,
        "escalated": trace.escalated,
        "reason": escalation_reason(trace),
        "decisions": [
            {
                "t_ms": d.t_ms,
                "kind": d.kind,
                "tier": d.tier_name,
                "cause": d.cause,
                "reason": d.reason,
            }
            for d in trace.decisions
        ],
        "tiers": msgspec.to_builtins(trace.attempts),
        "cost_usd": round(trace.cost_usd, 8),
        "ttft_ms": trace.ttft_ms,
        "handoff_ms": trace.handoff_ms,
        "handoffs": [
            {
                "from": h.from_tier,
                "to": h.to_tier,
                "t_ms": h.t_ms,
                "released_before": trace.text[: h.released_chars],
            }
            for h in trace.handoffs
        ],
        "end_ms": trace.end_ms,
    }


def _decision_line(d: DecisionRecord) -> str:
    arrow = f" → tier {d.to_tier}" if d.to_tier is not None else ""
    return f"  {d.t_ms:8.1f} ms  {d.kind:<12} {d.tier_name}{arrow}: {d.reason}"


def render(trace: TurnTrace) -> str:
    """A short trace a person can read."""
    lines = [
        f"turn {trace.turn_id}: {trace.status} on {trace.final_tier_name}"
        f"{' (escalated)' if trace.escalated else ''}; cost ${trace.cost_usd:.6f}; "
        f"first text {_ms(trace.ttft_ms)}; handoff {_ms(trace.handoff_ms)}; "
        f"end {trace.end_ms:.0f} ms",
        "decisions:",
        *(_decision_line(d) for d in trace.decisions),
        "attempts:",
    ]
    for a in trace.attempts:
        spec = " (hedge)" if a.speculative else ""
        lines.append(
            f"  #{a.attempt} {a.tier_name}{spec}: start {a.started_ms:.0f} ms, first token "
            f"{_ms(a.first_token_ms)}, {a.output_tokens} tokens, ${a.cost_usd:.6f}, {a.end_reason}"
        )
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"
