"""Figures over audit records: what ``realtime-cascade traces summarize`` prints.

Pure: records in, one JSON-ready dict out (:func:`summarize`). Definitions:

- a **turn** is one response (one cascade run, one audit line). A **user turn** is every
  response that answered the same user message in a session (an agent's tool steps share one);
  a user turn escalated when any of its responses did.
- a turn **stayed** on its first allowed tier when it never escalated; its **decisive
  escalation** is the first preempt or fallback, or a route above the first allowed tier, and
  its cause is what "escalations by reason" counts.
- **hedges**: ``hedge`` decisions (started), promoted speculative attempts (used), the rest
  (wasted).
- **wasted** cost and tokens are those of attempts that did not produce the answer: the main
  line's superseded attempts (preempted, failed, stalled — the opening a preempted tier spoke
  included) and every hedge never promoted.
- percentiles interpolate linearly between ranks (p50 is the median).
- **SLA**, against the budgets each turn ran under (recorded in its line): first text within
  ``first_text_ms`` (turns that released text), the turn completed within ``end_of_turn_ms``,
  and both (turns with no text count on the second alone).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .audit import AuditRecord
from .observer import escalation_of, superseded

STANDARD_CAUSES = ("confidence", "complexity", "completeness", "correctness", "latency", "router")

GROUPINGS: dict[str, Callable[[AuditRecord], str]] = {
    "profile": lambda r: r.profile,
    "key": lambda r: r.key or "(no key)",
    "policy": lambda r: r.policy or "(none)",
    "tiers": lambda r: r.tier_range,
}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _dist(values: Sequence[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "n": len(values),
        "p50": r(percentile(values, 0.50)),
        "p95": r(percentile(values, 0.95)),
        "p99": r(percentile(values, 0.99)),
    }


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DETAIL = re.compile(r"\s*\([^()]*\)")


def _tier_row() -> dict[str, int]:
    """Where turns ended on a tier: how many, and whether they stayed or escalated to it."""
    return {"turns": 0, "stayed": 0, "escalated_to": 0}


def _cost_row() -> dict[str, float]:
    """A tier's spend, and the part of it on streams whose text was thrown away."""
    return {
        "cost_usd": 0.0,
        "wasted_usd": 0.0,
        "attempts": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "wasted_output_tokens": 0,
    }


def reason_template(reason: str) -> str:
    """A reason with its numbers and parenthesised details taken out, for grouping."""
    return _NUMBER.sub("#", _DETAIL.sub("", reason)).strip()


def summarize(records: Iterable[AuditRecord], *, examples: int = 3, top: int = 5) -> dict[str, Any]:
    records = list(records)
    traced = [r for r in records if r.trace is not None]
    n = len(traced)
    out: dict[str, Any] = {
        "records": len(records),
        "turns": n,
        "internal_errors": len(records) - n,
        "from": min(r.time for r in records).isoformat() if records else None,
        "to": max(r.time for r in records).isoformat() if records else None,
    }

    status = Counter(r.trace.status for r in traced if r.trace is not None)
    out["status"] = {k: status[k] for k in sorted(status)}

    # tiers: where turns ended, and whether they got there by escalating
    tiers: dict[str, dict[str, int]] = {}
    order: list[str] = []
    for r in records:
        for name in r.tier_names:
            if name not in order:
                order.append(name)
    for name in order:
        tiers[name] = _tier_row()
    stayed_first: Counter[str] = Counter()  # by the name of the turn's first allowed tier
    first_names: Counter[str] = Counter()
    escalated = 0
    by_cause: Counter[str] = Counter()
    reasons: dict[tuple[str, str], list[str]] = defaultdict(list)
    hedges_started = hedges_used = 0
    hedge_wasted_usd = 0.0
    cost: dict[str, dict[str, float]] = {name: _cost_row() for name in order}
    first_text: list[float] = []
    end: list[float] = []
    handoff: list[float] = []
    sla_first = sla_first_n = sla_end = sla_both = 0
    policy_limited = 0
    for r in traced:
        t = r.trace
        assert t is not None
        first_names[r.tier_names[r.first_tier]] += 1
        row = tiers.get(t.final_tier_name)
        if row is None:
            row = tiers[t.final_tier_name] = _tier_row()
        row["turns"] += 1
        if t.escalated:
            escalated += 1
            row["escalated_to"] += 1
            esc = escalation_of(t, r.first_tier)
            cause = esc[0] if esc else "unknown"
            by_cause[cause] += 1
            if esc is not None:
                reasons[(cause, reason_template(esc[2]))].append(r.response_id)
        else:
            row["stayed"] += 1
            if t.final_tier == r.first_tier:
                stayed_first[r.tier_names[r.first_tier]] += 1
        policy_limited += r.governed
        hedges_started += sum(1 for d in t.decisions if d.kind == "hedge")
        for a, waste in zip(t.attempts, superseded(t), strict=True):
            c = cost.get(a.tier_name)
            if c is None:
                c = cost[a.tier_name] = _cost_row()
            c["cost_usd"] += a.cost_usd
            c["attempts"] += 1
            c["input_tokens"] += a.input_tokens
            c["output_tokens"] += a.output_tokens
            if waste:
                c["wasted_usd"] += a.cost_usd
                c["wasted_output_tokens"] += a.output_tokens
            if a.promoted:
                hedges_used += 1
            elif a.speculative:
                hedge_wasted_usd += a.cost_usd
        if t.ttft_ms is not None:
            first_text.append(t.ttft_ms)
        end.append(t.end_ms)
        if t.handoff_ms is not None:
            handoff.append(t.handoff_ms)
        b = r.budgets
        first_ok = t.ttft_ms is None or t.ttft_ms <= b.first_text_ms
        end_ok = t.status == "completed" and t.end_ms <= b.end_of_turn_ms
        if t.ttft_ms is not None:
            sla_first_n += 1
            sla_first += t.ttft_ms <= b.first_text_ms
        sla_end += end_ok
        sla_both += first_ok and end_ok

    for row in tiers.values():
        row["share"] = _share(row["turns"], n)  # type: ignore[assignment]
    out["tiers"] = tiers
    stayed = sum(stayed_first.values())
    out["stayed_on_first_tier"] = {
        "tier": next(iter(first_names)) if len(first_names) == 1 else None,  # None: several
        "turns": stayed,
        "share": _share(stayed, n),
        "by_tier": {name: stayed_first[name] for name in first_names},
    }
    causes = list(STANDARD_CAUSES) + sorted(c for c in by_cause if c not in STANDARD_CAUSES)
    out["escalations"] = {
        "turns": escalated,
        "share": _share(escalated, n),
        "by_cause": {c: {"turns": by_cause[c], "share": _share(by_cause[c], n)} for c in causes},
    }
    out["policy_limited_turns"] = policy_limited
    out["hedges"] = {
        "started": hedges_started,
        "used": hedges_used,
        "wasted": max(0, hedges_started - hedges_used),
        "wasted_usd": round(hedge_wasted_usd, 8),
    }
    total_cost = sum(c["cost_usd"] for c in cost.values())
    out["cost"] = {
        "total_usd": round(total_cost, 8),
        "wasted_usd": round(sum(c["wasted_usd"] for c in cost.values()), 8),
        "per_turn_usd": round(total_cost / n, 8) if n else 0.0,
        "by_tier": {
            name: {k: (round(v, 8) if k.endswith("usd") else int(v)) for k, v in c.items()}
            for name, c in cost.items()
        },
    }
    out["latency_ms"] = {
        "first_text": _dist(first_text),
        "end_of_turn": _dist(end),
        "handoff_gap": _dist(handoff),
    }
    out["sla"] = {
        "first_text": _share(sla_first, sla_first_n),
        "end_of_turn": _share(sla_end, n),
        "met": _share(sla_both, n),
    }
    ranked = sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    out["top_reasons"] = [
        {"cause": cause, "reason": text, "turns": len(ids), "examples": ids[:examples]}
        for (cause, text), ids in ranked[:top]
    ]
    out["user_turns"] = _user_turns(traced)
    out["headline"] = headline(out)
    return out


def _user_turns(records: Sequence[AuditRecord]) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[AuditRecord]] = defaultdict(list)
    for r in records:
        groups[(r.session_id, r.user_item_id or r.response_id)].append(r)
    n = len(groups)
    escalated = sum(
        any(r.trace is not None and r.trace.escalated for r in rs) for rs in groups.values()
    )
    cost = sum(r.trace.cost_usd for r in records if r.trace is not None)
    return {
        "turns": n,
        "escalated": escalated,
        "escalation_rate": _share(escalated, n),
        "cost_usd": round(cost, 6),
        "responses_per_turn": round(len(records) / n, 2) if n else 0.0,
    }


def headline(s: dict[str, Any]) -> str:
    """The one sentence: "65% of turns stayed on light; the rest escalated, …; SLA met on …"."""
    n = s["turns"]
    if not n:
        return "No turns."
    stayed = s["stayed_on_first_tier"]
    esc = s["escalations"]
    where = stayed["tier"] or "their first tier"
    parts = [f"{stayed['share']:.0%} of {n} turns stayed on {where}"]
    causes = sorted(
        ((c, v["turns"]) for c, v in esc["by_cause"].items() if v["turns"]), key=lambda cv: -cv[1]
    )
    if esc["turns"]:
        named = ", ".join(f"{c} {k / n:.0%}" for c, k in causes[:3])
        rest = "the rest" if esc["turns"] + stayed["turns"] == n else f"{esc['share']:.0%}"
        parts.append(f"{rest} escalated ({named})")
    sla = s["sla"]
    parts.append(f"SLA met on {sla['met']:.0%}")
    return "; ".join(parts) + "."


def summarize_groups(records: Iterable[AuditRecord], by: str) -> dict[str, dict[str, Any]]:
    key = GROUPINGS[by]
    groups: dict[str, list[AuditRecord]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return {name: summarize(rs) for name, rs in sorted(groups.items())}
