"""Prometheus metrics, served at ``GET /metrics`` from a registry owned by one server.

No global registry: two servers in one process (tests, a bench) never share a counter. Every
figure comes from a finished turn's trace (plus session starts and ends), so the hot path pays
nothing; a scrape renders the registry once.

=================================================  ========================================
metric                                             labels
=================================================  ========================================
``realtime_cascade_sessions_total``                profile
``realtime_cascade_active_sessions``               profile
``realtime_cascade_turns_total``                   profile, status, final_tier
``realtime_cascade_escalated_turns_total``         profile, cause (the decisive escalation)
``realtime_cascade_escalations_total``             profile, kind (preempt, fallback, route),
                                                   cause — every escalation, several per turn
``realtime_cascade_hedges_total``                  profile, outcome (started, used, wasted)
``realtime_cascade_first_text_seconds``            profile (histogram: first released text)
``realtime_cascade_handoff_gap_seconds``           profile (histogram: preempt → new tier's text)
``realtime_cascade_turn_seconds``                  profile (histogram: turn start → end)
``realtime_cascade_upstream_errors_total``         profile, tier, kind
``realtime_cascade_cost_usd_total``                profile, tier
``realtime_cascade_wasted_cost_usd_total``         profile, tier (superseded attempts, hedges)
``realtime_cascade_tokens_total``                  profile, tier, direction (input, output)
``realtime_cascade_budget_refusals_total``         profile, kind (refuse, stop)
``realtime_cascade_policy_refusals_total``         profile, policy (a key's policy narrowed a turn)
``realtime_cascade_audit_records_total``           (records written)
``realtime_cascade_audit_dropped_total``           (records dropped: queue full, write errors)
=================================================  ========================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .observer import SessionInfo, TurnInfo, escalation_of, superseded, upstream_error_kind

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_NS = "realtime_cascade"
_FIRST_TEXT_BUCKETS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_HANDOFF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
_TURN_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0)


class Metrics:
    """An observer that keeps the server's metrics in its own :class:`CollectorRegistry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.sessions = Counter(
            "sessions", "Sessions opened", ["profile"], namespace=_NS, registry=r
        )
        self.active = Gauge(
            "active_sessions", "Sessions open now", ["profile"], namespace=_NS, registry=r
        )
        self.turns = Counter(
            "turns",
            "Turns (responses) finished",
            ["profile", "status", "final_tier"],
            namespace=_NS,
            registry=r,
        )
        self.escalated = Counter(
            "escalated_turns",
            "Turns that escalated, by the cause of their decisive escalation",
            ["profile", "cause"],
            namespace=_NS,
            registry=r,
        )
        self.escalations = Counter(
            "escalations",
            "Escalations (preempt, fallback, route above the first tier) by cause",
            ["profile", "kind", "cause"],
            namespace=_NS,
            registry=r,
        )
        self.hedges = Counter(
            "hedges",
            "Speculative tiers started, used (promoted) and wasted",
            ["profile", "outcome"],
            namespace=_NS,
            registry=r,
        )
        self.first_text = Histogram(
            "first_text_seconds",
            "Time from a turn's start to its first released text (fillers excluded)",
            ["profile"],
            namespace=_NS,
            registry=r,
            buckets=_FIRST_TEXT_BUCKETS,
        )
        self.handoff = Histogram(
            "handoff_gap_seconds",
            "Silence from a preempt or fallback to the new tier's first released text",
            ["profile"],
            namespace=_NS,
            registry=r,
            buckets=_HANDOFF_BUCKETS,
        )
        self.turn_seconds = Histogram(
            "turn_seconds",
            "Time from a turn's start to its end",
            ["profile"],
            namespace=_NS,
            registry=r,
            buckets=_TURN_BUCKETS,
        )
        self.upstream_errors = Counter(
            "upstream_errors",
            "Tier attempts that ended in an upstream error",
            ["profile", "tier", "kind"],
            namespace=_NS,
            registry=r,
        )
        self.cost = Counter(
            "cost_usd", "Cost of every tier attempt", ["profile", "tier"], namespace=_NS, registry=r
        )
        self.wasted_cost = Counter(
            "wasted_cost_usd",
            "Cost of attempts that did not produce the answer (superseded, unused hedges)",
            ["profile", "tier"],
            namespace=_NS,
            registry=r,
        )
        self.tokens = Counter(
            "tokens",
            "Tokens of every tier attempt",
            ["profile", "tier", "direction"],
            namespace=_NS,
            registry=r,
        )
        self.budget_refusals = Counter(
            "budget_refusals",
            "Work refused (refuse) or cut (stop) because a cost cap would break",
            ["profile", "kind"],
            namespace=_NS,
            registry=r,
        )
        self.policy_refusals = Counter(
            "policy_refusals",
            "Turns whose tiers a key's policy narrowed",
            ["profile", "policy"],
            namespace=_NS,
            registry=r,
        )
        self.audit_records = Counter(
            "audit_records", "Audit records written", namespace=_NS, registry=r
        )
        self.audit_dropped = Counter(
            "audit_dropped", "Audit records dropped", namespace=_NS, registry=r
        )

    # -- observer hooks

    def session_started(self, info: SessionInfo) -> None:
        self.sessions.labels(info.profile).inc()
        self.active.labels(info.profile).inc()

    def session_ended(self, info: SessionInfo) -> None:
        self.active.labels(info.profile).dec()

    def turn_finished(self, turn: TurnInfo) -> None:
        profile = turn.session.profile
        trace = turn.trace
        if trace is None:
            final = turn.tier_names[turn.first_tier]
            self.turns.labels(profile, "failed", final).inc()
            return
        self.turns.labels(profile, trace.status, trace.final_tier_name).inc()
        if trace.escalated:
            esc = escalation_of(trace, turn.first_tier)
            self.escalated.labels(profile, esc[0] if esc else "unknown").inc()
        hedges = 0
        for d in trace.decisions:
            if d.kind in ("preempt", "fallback") or (
                d.kind == "route" and d.tier > turn.first_tier
            ):
                self.escalations.labels(profile, d.kind, d.cause).inc()
            elif d.kind == "hedge":
                hedges += 1
            elif d.kind in ("refuse", "stop") and d.cause == "budget":
                self.budget_refusals.labels(profile, d.kind).inc()
        if turn.governed:
            self.policy_refusals.labels(profile, turn.session.policy or "default").inc()
        if hedges:
            used = sum(1 for a in trace.attempts if a.promoted)
            self.hedges.labels(profile, "started").inc(hedges)
            self.hedges.labels(profile, "used").inc(used)
            self.hedges.labels(profile, "wasted").inc(max(0, hedges - used))
        if trace.ttft_ms is not None:
            self.first_text.labels(profile).observe(trace.ttft_ms / 1000.0)
        if trace.handoff_ms is not None:
            self.handoff.labels(profile).observe(trace.handoff_ms / 1000.0)
        self.turn_seconds.labels(profile).observe(trace.end_ms / 1000.0)
        wasted = superseded(trace)
        for a, waste in zip(trace.attempts, wasted, strict=True):
            tier = a.tier_name
            self.cost.labels(profile, tier).inc(a.cost_usd)
            if waste:
                self.wasted_cost.labels(profile, tier).inc(a.cost_usd)
            self.tokens.labels(profile, tier, "input").inc(a.input_tokens)
            self.tokens.labels(profile, tier, "output").inc(a.output_tokens)
            kind = upstream_error_kind(a.end_reason)
            if kind is not None:
                self.upstream_errors.labels(profile, tier, kind).inc()

    async def aclose(self) -> None:
        pass

    # -- exposition

    def render(self) -> bytes:
        return generate_latest(self.registry)
