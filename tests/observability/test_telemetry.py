"""OpenTelemetry: spans per session, turn and tier attempt, read back from the SDK's
in-memory exporter; nothing imported when telemetry is off."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from realtime_cascade.observe.config import TelemetryConfig
from realtime_cascade.observe.telemetry import Telemetry, build_provider

from .conftest import ServerFactory
from .helpers import BOOK, HARD, client, trace_of

pytestmark = pytest.mark.anyio


def in_memory() -> tuple[Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry(tracer_provider=provider), exporter


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_spans_for_session_turns_and_attempts(make_server: ServerFactory) -> None:
    telemetry, exporter = in_memory()
    async with make_server(observers=[telemetry]) as server, client(server) as c:
        easy = trace_of(await c.turn(BOOK))
        hard = trace_of(await c.turn(HARD))
    spans = exporter.get_finished_spans()

    (session,) = named(spans, "cascade.session")
    s = attrs(session)
    assert s["cascade.profile"] == "default"
    assert s["cascade.session.turns"] == 2
    assert session.context is not None
    sid = session.context.span_id

    turns = named(spans, "cascade.turn")
    assert [attrs(t)["cascade.turn.id"] for t in turns] == [easy["turn_id"], hard["turn_id"]]
    for t in turns:
        assert t.parent is not None and t.parent.span_id == sid
        assert t.context is not None and t.context.trace_id == session.context.trace_id
    t_easy, t_hard = (attrs(t) for t in turns)
    assert t_easy["cascade.escalated"] is False
    assert t_easy["cascade.final_tier"] == "light"
    assert "cascade.escalation.cause" not in t_easy
    assert t_hard["cascade.escalated"] is True
    assert t_hard["cascade.final_tier"] == "strong"
    assert t_hard["cascade.escalation.cause"] == "confidence"
    assert t_hard["cascade.escalation.kind"] == "preempt"
    assert t_hard["cascade.escalation.reason"].startswith("confidence")
    assert t_hard["cascade.handoff_gap_ms"] == hard["handoff_ms"]
    assert t_hard["cascade.first_text_ms"] == hard["ttft_ms"]
    assert t_hard["cascade.cost_usd"] == pytest.approx(hard["cost_usd"])
    assert t_hard["cascade.tokens.discarded"] > 0
    assert 0 < t_hard["cascade.wasted_cost_usd"] < hard["cost_usd"]
    assert list(t_hard["cascade.decisions"]) == [d["kind"] for d in hard["decisions"]]
    # the turn span lasts as long as the turn did
    hard_span = turns[1]
    assert hard_span.start_time is not None and hard_span.end_time is not None
    assert (hard_span.end_time - hard_span.start_time) / 1e6 == pytest.approx(
        hard["end_ms"], abs=0.01
    )

    # one event per decision, with kind, cause, reason and scores
    events = hard_span.events
    assert [e.attributes["cascade.decision.kind"] for e in events if e.attributes] == [
        d["kind"] for d in hard["decisions"]
    ]
    preempt = next(
        e for e in events if e.attributes and e.attributes["cascade.decision.kind"] == "preempt"
    )
    assert preempt.attributes is not None
    assert preempt.attributes["cascade.decision.cause"] == "confidence"
    assert preempt.attributes["cascade.score.threshold"] == 0.45
    p_correct = preempt.attributes["cascade.score.p_correct"]
    assert isinstance(p_correct, float) and p_correct < 0.45

    # attempts: children of their turn, the preempted one carrying the decision that ended it
    assert hard_span.context is not None
    attempts = [a for a in named(spans, "cascade.attempt") if a.parent is not None]
    hard_attempts = [
        a for a in attempts if a.parent and a.parent.span_id == hard_span.context.span_id
    ]
    assert [attrs(a)["cascade.tier"] for a in hard_attempts] == [
        a["tier_name"] for a in hard["attempts"]
    ]
    light = attrs(hard_attempts[0])
    assert light["cascade.end_reason"] == "preempted"
    assert light["cascade.superseded"] is True
    assert light["cascade.decision.kind"] == "preempt"
    assert light["cascade.decision.reason"].startswith("confidence")
    assert light["cascade.score.threshold"] == 0.45
    assert light["cascade.tokens.discarded"] == hard["attempts"][0]["output_tokens"]
    assert light["gen_ai.usage.output_tokens"] == hard["attempts"][0]["output_tokens"]
    assert light["cascade.cost_usd"] == pytest.approx(hard["attempts"][0]["cost_usd"])
    strong = attrs(hard_attempts[-1])
    assert strong["cascade.superseded"] is False
    assert strong["cascade.tokens.discarded"] == 0


async def test_console_exporter_from_config(
    make_server: ServerFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    async with make_server(telemetry=TelemetryConfig(exporter="console")) as server:
        assert server.ops is not None and server.ops.telemetry is not None
        async with client(server) as c:
            await c.turn(BOOK)
    out = capfd.readouterr().out
    assert '"name": "cascade.turn"' in out
    assert '"name": "cascade.session"' in out
    assert '"service.name": "realtime-cascade"' in out


def test_otlp_exporter_builds() -> None:
    # the dev extra installs the OTLP exporter, so this runs (and fails, not skips, without it)
    provider, owned = build_provider(
        TelemetryConfig(exporter="otlp", endpoint="http://127.0.0.1:9/v1/traces")
    )
    assert owned
    provider.shutdown()  # type: ignore[attr-defined]


def test_zero_cost_when_off() -> None:
    """With telemetry off nothing imports OpenTelemetry: not the server, not a session."""
    code = """
import sys, anyio
from realtime_cascade import config as config_mod
from realtime_cascade.server.app import RealtimeServer
from websockets.asyncio.client import connect
import json

async def main():
    async with RealtimeServer(config_mod.load(), host="127.0.0.1", port=0) as srv:
        async with connect(srv.url()) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "response.create"}))
            while json.loads(await ws.recv())["type"] != "response.done":
                pass

anyio.run(main)
loaded = [m for m in sys.modules if m.startswith("opentelemetry")]
assert not loaded, loaded
assert "realtime_cascade.telemetry" not in sys.modules
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
