"""`traces summarize`: figures from audit records, as a table and as JSON."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from realtime_cascade.cli.traces import add_traces_parser, parse_since
from realtime_cascade.core import AttemptTrace, DecisionRecord, Scores, TurnTrace
from realtime_cascade.observe.audit import AuditBudgets, AuditRecord
from realtime_cascade.observe.tracestats import percentile, reason_template, summarize

T0 = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
TIERS = ("light", "strong")
PRICE = {"light": 1e-6, "strong": 1e-5}  # per output token, to keep sums readable


def attempt(
    i: int,
    tier: int,
    *,
    start: float = 0.0,
    end: float = 500.0,
    out: int = 10,
    reason: str = "stop",
    speculative: bool = False,
    promoted: bool = False,
) -> AttemptTrace:
    name = TIERS[tier]
    return AttemptTrace(
        attempt=i,
        tier=tier,
        tier_name=name,
        speculative=speculative,
        started_ms=start,
        first_token_ms=start + 100,
        ended_ms=end,
        input_tokens=0,
        output_tokens=out,
        cost_usd=out * PRICE[name],
        end_reason=reason,
        promoted=promoted,
    )


def decision(t: float, kind: str, tier: int, cause: str, reason: str) -> DecisionRecord:
    return DecisionRecord(
        t_ms=t,
        kind=kind,  # type: ignore[arg-type]
        tier=tier,
        tier_name=TIERS[tier],
        cause=cause,  # type: ignore[arg-type]
        reason=reason,
        scores=Scores(p_correct=0.3, threshold=0.45) if kind == "preempt" else Scores(),
        to_tier=1 if kind in ("preempt", "fallback", "hedge") else None,
    )


def turn(
    rid: str,
    attempts: tuple[AttemptTrace, ...],
    decisions: tuple[DecisionRecord, ...],
    *,
    ttft: float | None = 200.0,
    end: float = 500.0,
    handoff: float | None = None,
    status: str = "completed",
) -> TurnTrace:
    final = [a for a in attempts if not a.speculative or a.promoted][-1]
    escalated = any(d.kind in ("preempt", "fallback") for d in decisions)
    return TurnTrace(
        turn_id=rid,
        request="r",
        complexity=0.1,
        router_p=None,
        status=status,  # type: ignore[arg-type]
        reason="",
        text="t",
        fillers=(),
        tool_calls=(),
        final_tier=final.tier,
        final_tier_name=final.tier_name,
        escalated=escalated,
        cost_usd=sum(a.cost_usd for a in attempts),
        ttft_ms=ttft,
        handoff_ms=handoff,
        end_ms=end,
        attempts=attempts,
        decisions=decisions,
    )


def record(
    trace: TurnTrace, *, minutes: float = 0, session: str = "s1", user: str | None = None
) -> AuditRecord:
    return AuditRecord(
        v=1,
        time=T0 + timedelta(minutes=minutes),
        session_id=session,
        response_id=trace.turn_id,
        user_item_id=user or f"u_{trace.turn_id}",
        profile="default",
        key=None,
        policy=None,
        tier_names=TIERS,
        first_tier=0,
        max_tier=1,
        budgets=AuditBudgets(900.0, 20000.0, 0.05, 1.0),
        trace=trace,
    )


ROUTE = decision(0, "route", 0, "policy", "request complexity 0.10 < 0.97: start on light")


def accept(t: float, tier: int) -> DecisionRecord:
    return decision(t, "accept", tier, "policy", f"{TIERS[tier]} finished (stop)")


def suite() -> list[AuditRecord]:
    """10 turns: 5 stay on light (one with a hedge it did not need, over the first-text budget);
    3 preempted on confidence (one by promoting its hedge), 1 caught by the verifier
    (correctness), 1 light failure falling back to strong (error), which runs out of time."""
    out: list[AuditRecord] = []
    for i in range(4):
        out.append(record(turn(f"easy{i}", (attempt(0, 0),), (ROUTE, accept(500, 0))), user="u1"))
    hedged = turn(
        "hedged",
        (
            attempt(0, 0, out=8),
            attempt(1, 1, start=100, end=300, out=4, speculative=True, reason="hedge not needed"),
        ),
        (
            ROUTE,
            decision(100, "hedge", 0, "confidence", "confidence 0.60 < 0.65: hedge"),
            decision(300, "hedge_cancel", 0, "confidence", "recovered"),
            accept(500, 0),
        ),
        ttft=1200.0,
    )
    out.append(record(hedged, minutes=1, user="u1"))
    for i, p in enumerate((0.31, 0.12)):
        reason = f"confidence {p:.2f} < 0.45 (q20 p=0.05, min p=0.02, entropy 0.4{i} over 8 tokens)"
        t = turn(
            f"pre{i}",
            (attempt(0, 0, end=200, out=6, reason="preempted"), attempt(1, 1, start=200, end=900)),
            (ROUTE, decision(200, "preempt", 0, "confidence", reason), accept(900, 1)),
            handoff=400.0 + 100 * i,
            end=900.0,
        )
        out.append(record(t, minutes=2 + i, session="s2", user=f"v{i}"))
    promoted = turn(
        "promo",
        (
            attempt(0, 0, end=300, out=5, reason="preempted"),
            attempt(1, 1, start=100, end=700, out=12, speculative=True, promoted=True),
        ),
        (
            ROUTE,
            decision(100, "hedge", 0, "confidence", "confidence 0.60 < 0.65: hedge"),
            decision(300, "preempt", 0, "confidence", "confidence 0.20 < 0.45 (q20 p=0.1)"),
            accept(700, 1),
        ),
        handoff=20.0,
        end=700.0,
    )
    out.append(record(promoted, minutes=4, session="s2", user="v2"))
    verified = turn(
        "verif",
        (attempt(0, 0, end=400, out=7, reason="stop"), attempt(1, 1, start=400, end=1400)),
        (
            ROUTE,
            decision(400, "preempt", 0, "correctness", "April 31 does not exist"),
            accept(1400, 1),
        ),
        handoff=450.0,
        end=1400.0,
    )
    out.append(record(verified, minutes=5, session="s2", user="v2"))
    failed = turn(
        "fail",
        (
            attempt(0, 0, end=50, out=0, reason="error: rate_limited: 429"),
            attempt(1, 1, start=50, end=30000, out=3, reason="turn incomplete"),
        ),
        (
            ROUTE,
            decision(50, "fallback", 0, "error", "light failed: rate_limited: 429"),
            decision(20000, "stop", 1, "latency", "end-of-turn deadline of 20000 ms reached"),
        ),
        end=20000.0,
        ttft=None,
        status="incomplete",
    )
    out.append(record(failed, minutes=6, session="s3"))
    return out


def test_summary_figures() -> None:
    s = summarize(suite())
    assert s["turns"] == 10 and s["records"] == 10
    assert s["status"] == {"completed": 9, "incomplete": 1}
    assert s["tiers"]["light"] == {"turns": 5, "stayed": 5, "escalated_to": 0, "share": 0.5}
    assert s["tiers"]["strong"] == {"turns": 5, "stayed": 0, "escalated_to": 5, "share": 0.5}
    assert s["stayed_on_first_tier"] == {
        "tier": "light",
        "turns": 5,
        "share": 0.5,
        "by_tier": {"light": 5},
    }
    esc = s["escalations"]
    assert esc["turns"] == 5 and esc["share"] == 0.5
    assert {c: v["turns"] for c, v in esc["by_cause"].items() if v["turns"]} == {
        "confidence": 3,
        "correctness": 1,
        "error": 1,
    }
    assert list(esc["by_cause"])[:6] == [
        "confidence",
        "complexity",
        "completeness",
        "correctness",
        "latency",
        "router",
    ]
    assert s["hedges"] == {"started": 2, "used": 1, "wasted": 1, "wasted_usd": 4e-5}
    # wasted: the unused hedge, the preempted and failed light attempts, the verified-wrong one
    light_wasted = (6 + 6 + 5 + 7 + 0) * 1e-6
    assert s["cost"]["by_tier"]["light"]["wasted_usd"] == pytest.approx(light_wasted)
    assert s["cost"]["by_tier"]["strong"]["wasted_usd"] == pytest.approx(4e-5)
    assert s["cost"]["by_tier"]["light"]["wasted_output_tokens"] == 24
    total = sum(r.trace.cost_usd for r in suite() if r.trace is not None)
    assert s["cost"]["total_usd"] == pytest.approx(total)
    lat = s["latency_ms"]
    assert lat["first_text"]["n"] == 9
    assert lat["first_text"]["p50"] == 200.0
    ends = [r.trace.end_ms for r in suite() if r.trace is not None]
    assert lat["end_of_turn"]["p99"] == pytest.approx(percentile(ends, 0.99), abs=0.1)
    assert lat["handoff_gap"] == {"n": 4, "p50": 425.0, "p95": 492.5, "p99": 498.5}
    assert s["sla"] == {
        "first_text": pytest.approx(8 / 9, abs=1e-4),
        "end_of_turn": 0.9,
        "met": 0.8,
    }
    top = s["top_reasons"]
    assert top[0] == {
        "cause": "confidence",
        "reason": "confidence # < #",
        "turns": 3,
        "examples": ["pre0", "pre1", "promo"],
    }
    assert {r["cause"] for r in top} == {"confidence", "correctness", "error"}
    assert s["user_turns"] == {
        "turns": 5,
        "escalated": 4,
        "escalation_rate": 0.8,
        "cost_usd": round(total, 6),
        "responses_per_turn": 2.0,
    }
    assert s["headline"] == (
        "50% of 10 turns stayed on light; the rest escalated (confidence 30%, correctness 10%, "
        "error 10%); SLA met on 80%."
    )


def test_mixed_tier_ranges() -> None:
    strong_only = msgspec.structs.replace(
        record(turn("so", (attempt(0, 1),), (accept(500, 1),))), first_tier=1
    )
    s = summarize([*suite(), strong_only])
    assert s["stayed_on_first_tier"]["tier"] is None
    assert s["stayed_on_first_tier"]["by_tier"] == {"light": 5, "strong": 1}
    assert s["headline"].startswith("55% of 11 turns stayed on their first tier; ")
    assert s["tiers"]["strong"]["stayed"] == 1


def test_percentiles_and_templates() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.5
    assert percentile([1.0], 0.99) == 1.0
    assert reason_template("confidence 0.31 < 0.45 (q20 p=0.05)") == "confidence # < #"
    assert reason_template("April 31 does not exist") == "April # does not exist"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_traces_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def write(path: Path, records: list[AuditRecord]) -> None:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in records))


def test_cli_table_json_since_and_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = suite()
    a, b = tmp_path / "audit.jsonl.1", tmp_path / "audit.jsonl"
    write(a, records[:5])
    write(b, records[5:])
    assert run(["traces", "summarize", str(a), str(b)]) == 0
    table = capsys.readouterr().out
    assert "2 files: 10 turns, 2026-11-26 13:00:00 UTC → 2026-11-26 13:06:00 UTC" in table
    assert "50% of 10 turns stayed on light" in table
    assert "user turns: 5, 80.0% escalated" in table
    for needle in (
        "final tier",
        "escalations by cause",
        "hedges: 2 started, 1 used, 1 wasted",
        "cost by tier",
        "latency (ms)",
        "handoff gap",
        "SLA (each turn's budgets): first text in time 88.9%",
        "top escalation reasons:",
        "e.g. pre0, pre1, promo",
    ):
        assert needle in table, needle

    assert run(["traces", "summarize", str(a), str(b), "--json"]) == 0
    full: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert full["turns"] == 10 and full["files"] == [str(a), str(b)]

    assert run(["traces", "summarize", str(b), "--json", "--since", "2026-11-26T13:05"]) == 0
    recent = json.loads(capsys.readouterr().out)
    assert recent["turns"] == 2 and recent["since"] == "2026-11-26T13:05:00+00:00"

    assert run(["traces", "summarize", str(a), str(b), "--json", "--by", "tiers"]) == 0
    grouped = json.loads(capsys.readouterr().out)
    assert list(grouped["groups"]) == ["light..strong"]
    assert grouped["groups"]["light..strong"]["turns"] == 10

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"v": 1}\n')
    assert run(["traces", "summarize", str(bad)]) == 2
    assert f"{bad}:1: " in capsys.readouterr().err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert run(["traces", "summarize", str(empty)]) == 0
    assert "No turns." in capsys.readouterr().out


def test_parse_since() -> None:
    now = datetime(2026, 11, 26, 13, 0, tzinfo=UTC)
    assert parse_since("15m", now) == now - timedelta(minutes=15)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since("2026-11-26T12:00", now) == datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert parse_since("2026-11-26T12:00+01:00", now) == datetime(2026, 11, 26, 11, tzinfo=UTC)
    assert parse_since("2026-11-26T12:00:00Z", now) == datetime(2026, 11, 26, 12, tzinfo=UTC)
    assert parse_since("1795698000", now) == datetime.fromtimestamp(1795698000, UTC)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("yesterday", now)
