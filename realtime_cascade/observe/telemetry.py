"""OpenTelemetry spans: one per session, per turn, per tier attempt (``pip install
'realtime-cascade[otel]'``).

Zero cost when off: nothing here imports ``opentelemetry`` until a :class:`Telemetry` is built,
and the server builds one only when ``[telemetry] exporter`` is not ``"none"`` (or a tracer
provider is handed to it). When on, the hot path still pays nothing: turn and attempt spans are
built when the turn has finished, from its trace, with the trace's own timestamps.

::

    cascade.session                      cascade.session.id, cascade.profile, cascade.key, …
    └─ cascade.turn                      status, final tier, escalation cause/kind/reason,
       │                                 first text, handoff gap, cost, wasted cost, tokens
       │  events: cascade.decision       discarded; one event per decision: kind, cause,
       │                                 reason, tier, to_tier, scores (p_correct, threshold, …)
       ├─ cascade.attempt light          tier, tokens (gen_ai.usage.*), cost, end reason,
       └─ cascade.attempt strong         speculative/promoted/superseded, the decision that
                                         ended it (kind, reason, threshold, p_correct)

Exporters: ``console`` and ``otlp`` (OTLP/HTTP, ``opentelemetry-exporter-otlp-proto-http``)
get a batch processor on a provider of our own, shut down with the server; ``global`` uses the
process's provider (``opentelemetry-instrument``, or the application's own setup).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core import DecisionRecord, TurnTrace
from .config import TelemetryConfig
from .observer import SessionInfo, TurnInfo, escalation_of, superseded

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

_OTLP_HTTP = "opentelemetry.exporter.otlp.proto.http.trace_exporter"

Attrs = dict[str, str | bool | int | float | Sequence[str]]


class TelemetryUnavailable(Exception):
    """OpenTelemetry (or the chosen exporter) is not installed."""


def build_provider(config: TelemetryConfig) -> tuple[TracerProvider, bool]:
    """A tracer provider for ``config`` and whether we own it (and must shut it down)."""
    try:
        from opentelemetry import trace as ot_trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise TelemetryUnavailable(
            f"telemetry needs OpenTelemetry: pip install 'realtime-cascade[otel]' ({exc})"
        ) from None
    if config.exporter == "global":
        return ot_trace.get_tracer_provider(), False
    provider = SdkProvider(resource=Resource.create({"service.name": config.service_name}))
    if config.exporter == "console":
        # today's sys.stdout, not the one bound when the SDK was imported
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stdout)))
    elif config.exporter == "otlp":
        try:
            module = importlib.import_module(_OTLP_HTTP)
        except ImportError:
            raise TelemetryUnavailable(
                "telemetry exporter 'otlp' needs opentelemetry-exporter-otlp-proto-http: "
                "pip install 'realtime-cascade[otel]'"
            ) from None
        kwargs = {"endpoint": config.endpoint} if config.endpoint else {}
        provider.add_span_processor(BatchSpanProcessor(module.OTLPSpanExporter(**kwargs)))
    return provider, True


def _scores(prefix: str, d: DecisionRecord, out: Attrs) -> None:
    for name in d.scores.__struct_fields__:
        value = getattr(d.scores, name)
        if value is not None:
            out[f"{prefix}.{name}"] = value


def _decision_attrs(d: DecisionRecord) -> Attrs:
    out: Attrs = {
        "cascade.decision.kind": d.kind,
        "cascade.decision.cause": d.cause,
        "cascade.decision.reason": d.reason,
        "cascade.decision.tier": d.tier_name,
    }
    if d.to_tier is not None:
        out["cascade.decision.to_tier"] = d.to_tier
    _scores("cascade.score", d, out)
    return out


def _clean(attrs: Mapping[str, Any]) -> Attrs:
    return {k: v for k, v in attrs.items() if v is not None}


class Telemetry:
    """An observer that turns sessions and finished turns into spans."""

    def __init__(
        self,
        config: TelemetryConfig | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.config = config or TelemetryConfig()
        if tracer_provider is None:
            tracer_provider, self._owned = build_provider(self.config)
        else:
            self._owned = False
        self.provider = tracer_provider
        # the package's name, without importing the package's public API (which sits above)
        package = __name__.partition(".")[0]
        self._tracer: Tracer = tracer_provider.get_tracer(package)
        self._sessions: dict[str, Span] = {}
        self._turns: dict[str, int] = {}

    def session_started(self, info: SessionInfo) -> None:
        span = self._tracer.start_span(
            "cascade.session",
            start_time=int(info.started_at * 1e9),
            attributes=_clean(
                {
                    "cascade.session.id": info.session_id,
                    "cascade.profile": info.profile,
                    "cascade.key": info.key,
                    "cascade.policy": info.policy,
                }
            ),
        )
        self._sessions[info.session_id] = span
        self._turns[info.session_id] = 0

    def session_ended(self, info: SessionInfo) -> None:
        span = self._sessions.pop(info.session_id, None)
        turns = self._turns.pop(info.session_id, 0)
        if span is not None:
            span.set_attribute("cascade.session.turns", turns)
            span.end()

    def turn_finished(self, turn: TurnInfo) -> None:
        from opentelemetry import trace as ot_trace
        from opentelemetry.trace import Status, StatusCode

        sid = turn.session.session_id
        self._turns[sid] = self._turns.get(sid, 0) + 1
        parent = self._sessions.get(sid)
        context = ot_trace.set_span_in_context(parent) if parent is not None else None
        end_ns = int(turn.ended_at * 1e9)
        trace = turn.trace
        names = turn.tier_names
        base: Attrs = {
            "cascade.turn.id": turn.response_id,
            "cascade.session.id": sid,
            "cascade.profile": turn.session.profile,
            "cascade.tiers.allowed": f"{names[turn.first_tier]}..{names[turn.max_tier]}",
        }
        if trace is None:
            span = self._tracer.start_span(
                "cascade.turn", context=context, start_time=end_ns, attributes=base
            )
            span.set_status(Status(StatusCode.ERROR, turn.error or "failed"))
            span.end(end_time=end_ns)
            return
        t0 = end_ns - int(trace.end_ms * 1e6)
        span = self._tracer.start_span(
            "cascade.turn", context=context, start_time=t0, attributes=self._turn_attrs(turn, trace)
        )
        span.set_attributes(base)
        for d in trace.decisions:
            span.add_event("cascade.decision", _decision_attrs(d), timestamp=t0 + int(d.t_ms * 1e6))
        if trace.status == "failed":
            span.set_status(Status(StatusCode.ERROR, trace.reason))
        inner = ot_trace.set_span_in_context(span)
        wasted = superseded(trace)
        for a, waste in zip(trace.attempts, wasted, strict=True):
            start = t0 + int(a.started_ms * 1e6)
            end = t0 + int((a.ended_ms if a.ended_ms is not None else trace.end_ms) * 1e6)
            attrs: Attrs = _clean(
                {
                    "cascade.attempt": a.attempt,
                    "cascade.tier": a.tier_name,
                    "cascade.tier.index": a.tier,
                    "cascade.speculative": a.speculative,
                    "cascade.promoted": a.promoted,
                    "cascade.superseded": waste,
                    "cascade.end_reason": a.end_reason,
                    "cascade.first_token_ms": a.first_token_ms,
                    "cascade.cost_usd": a.cost_usd,
                    "cascade.tokens.discarded": a.output_tokens if waste else 0,
                    "gen_ai.usage.input_tokens": a.input_tokens,
                    "gen_ai.usage.output_tokens": a.output_tokens,
                }
            )
            ended_by = _ended_by(trace, a.tier, a.ended_ms)
            if ended_by is not None:
                attrs.update(_decision_attrs(ended_by))
            child = self._tracer.start_span(
                f"cascade.attempt {a.tier_name}", context=inner, start_time=start, attributes=attrs
            )
            if a.end_reason.startswith("error"):
                child.set_status(Status(StatusCode.ERROR, a.end_reason))
            child.end(end_time=max(start, end))
        span.end(end_time=end_ns)

    @staticmethod
    def _turn_attrs(turn: TurnInfo, trace: TurnTrace) -> Attrs:
        wasted = superseded(trace)
        esc = escalation_of(trace, turn.first_tier) if trace.escalated else None
        discarded = sum(a.output_tokens for a, w in zip(trace.attempts, wasted, strict=True) if w)
        wasted_cost = sum(a.cost_usd for a, w in zip(trace.attempts, wasted, strict=True) if w)
        return _clean(
            {
                "cascade.turn.status": trace.status,
                "cascade.turn.reason": trace.reason,
                "cascade.final_tier": trace.final_tier_name,
                "cascade.escalated": trace.escalated,
                "cascade.escalation.cause": esc[0] if esc else None,
                "cascade.escalation.kind": esc[1] if esc else None,
                "cascade.escalation.reason": esc[2] if esc else None,
                "cascade.decisions": [d.kind for d in trace.decisions],
                "cascade.complexity": trace.complexity,
                "cascade.router_p": trace.router_p,
                "cascade.first_text_ms": trace.ttft_ms,
                "cascade.handoff_gap_ms": trace.handoff_ms,
                "cascade.end_ms": trace.end_ms,
                "cascade.cost_usd": trace.cost_usd,
                "cascade.wasted_cost_usd": wasted_cost,
                "cascade.tokens.discarded": discarded,
                "cascade.attempts": len(trace.attempts),
                "cascade.user_item.id": turn.user_item_id,
            }
        )

    async def aclose(self) -> None:
        for span in self._sessions.values():
            span.end()
        self._sessions.clear()
        if self._owned:
            import anyio

            shutdown = getattr(self.provider, "shutdown", None)
            if shutdown is not None:
                await anyio.to_thread.run_sync(shutdown)


def _ended_by(trace: TurnTrace, tier: int, ended_ms: float | None) -> DecisionRecord | None:
    """The preempt or fallback decision that ended an attempt, if one did."""
    if ended_ms is None:
        return None
    for d in trace.decisions:
        if d.kind in ("preempt", "fallback") and d.tier == tier and d.t_ms == ended_ms:
            return d
    return None
