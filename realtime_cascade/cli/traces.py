"""``realtime-cascade traces summarize FILE... [--json] [--since T] [--by FIELD]``.

Reads audit logs (:mod:`~realtime_cascade.audit`; rotated files and ``-`` for stdin too) and
prints the figures of :mod:`~realtime_cascade.tracestats` as a table, or as one JSON object.
A malformed line is reported as ``file:line: what is wrong`` with exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ..observe.audit import AuditReadError, read_records
from ..observe.tracestats import GROUPINGS, summarize, summarize_groups

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-26T13:00`` (no zone: UTC), ``2026-11-26``, a duration back from now (``90s``,
    ``15m``, ``2h``, ``1d``, ``1w``) or Unix seconds."""
    now = now or datetime.now(UTC)
    text = text.strip()
    m = _DURATION.match(text)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use 2026-11-26T13:00, 15m, 2h, 1d or Unix seconds)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def add_traces_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    traces = subparsers.add_parser("traces", help="read audit logs of turn traces")
    sub = traces.add_subparsers(dest="traces_command", required=True)
    s = sub.add_parser(
        "summarize",
        help="tiers, escalations by reason, hedges, cost, latency percentiles, SLA",
        description="Summarize audit logs (one JSON line per turn, written by `serve` with "
        "[audit] path, --audit or REALTIME_CASCADE_AUDIT).",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="audit log(s); - for stdin")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument(
        "--since",
        type=parse_since,
        default=None,
        metavar="T",
        help="only turns that ended at or after T: 2026-11-26T13:00 (UTC unless a zone is "
        "given), 15m, 2h, 1d, or Unix seconds",
    )
    s.add_argument(
        "--by", choices=sorted(GROUPINGS), default=None, help="one summary per profile, key, …"
    )
    s.set_defaults(func=run_traces)


def run_traces(args: argparse.Namespace) -> int:
    try:
        records = list(read_records(args.files))
    except AuditReadError as exc:
        sys.stderr.write(f"realtime-cascade traces: {exc}\n")
        return 2
    since: datetime | None = args.since
    if since is not None:
        records = [r for r in records if r.time >= since]
    out: dict[str, Any] = summarize(records)
    out["files"] = list(args.files)
    out["since"] = None if since is None else since.isoformat()
    if args.by:
        out["by"] = args.by
        out["groups"] = summarize_groups(records, args.by)
    if args.json:
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
    else:
        sys.stdout.write(render(out) + "\n")
    return 0


# --- the table ------------------------------------------------------------------------------------


def _pct(v: float) -> str:
    return f"{v:.1%}"


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"


def _table(head: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return [line(head), *(line(r) for r in rows)]


def render(s: dict[str, Any], *, title: str | None = None) -> str:
    lines: list[str] = []
    files = s.get("files") or []
    span = ""
    if s.get("from"):
        span = f", {_when(s['from'])} → {_when(s['to'])}"
    since = f", since {_when(s['since'])}" if s.get("since") else ""
    head = title or f"{len(files)} file{'s' if len(files) != 1 else ''}"
    lines.append(f"{head}: {s['turns']} turns{span}{since}")
    if s.get("internal_errors"):
        lines.append(f"({s['internal_errors']} responses failed inside the server: no trace)")
    lines.append(s["headline"])
    if not s["turns"]:
        return "\n".join(lines)
    u = s["user_turns"]
    lines.append(
        f"user turns: {u['turns']}, {_pct(u['escalation_rate'])} escalated, "
        f"${u['cost_usd']:.6f}, {u['responses_per_turn']:.2f} responses each"
    )
    status = ", ".join(f"{k} {v}" for k, v in s["status"].items())
    lines += ["", f"status: {status}"]
    if s.get("policy_limited_turns"):
        lines.append(f"turns narrowed by a key's policy: {s['policy_limited_turns']}")

    lines.append("")
    rows = [
        [name, str(t["turns"]), _pct(t["share"]), str(t["stayed"]), str(t["escalated_to"])]
        for name, t in s["tiers"].items()
    ]
    lines += _table(["final tier", "turns", "share", "stayed", "escalated to"], rows)

    lines.append("")
    esc = s["escalations"]
    rows = [[cause, str(v["turns"]), _pct(v["share"])] for cause, v in esc["by_cause"].items()]
    rows.append(["all", str(esc["turns"]), _pct(esc["share"])])
    lines += _table(["escalations by cause", "turns", "share"], rows)

    h = s["hedges"]
    lines += [
        "",
        f"hedges: {h['started']} started, {h['used']} used, {h['wasted']} wasted "
        f"(${h['wasted_usd']:.6f})",
    ]

    lines.append("")
    c = s["cost"]
    rows = [
        [
            name,
            f"{t['cost_usd']:.6f}",
            f"{t['wasted_usd']:.6f}",
            str(t["attempts"]),
            str(t["input_tokens"]),
            str(t["output_tokens"]),
            str(t["wasted_output_tokens"]),
        ]
        for name, t in c["by_tier"].items()
    ]
    rows.append(["all", f"{c['total_usd']:.6f}", f"{c['wasted_usd']:.6f}", "", "", "", ""])
    lines += _table(
        ["cost by tier", "$", "wasted $", "attempts", "tokens in", "out", "wasted out"], rows
    )

    lines.append("")
    lat = s["latency_ms"]
    rows = [
        [label, str(d["n"]), _ms(d["p50"]), _ms(d["p95"]), _ms(d["p99"])]
        for label, d in (
            ("first text", lat["first_text"]),
            ("end of turn", lat["end_of_turn"]),
            ("handoff gap", lat["handoff_gap"]),
        )
    ]
    lines += _table(["latency (ms)", "n", "p50", "p95", "p99"], rows)

    sla = s["sla"]
    lines += [
        "",
        f"SLA (each turn's budgets): first text in time {_pct(sla['first_text'])}, "
        f"completed in time {_pct(sla['end_of_turn'])}, both {_pct(sla['met'])}",
    ]
    if s["top_reasons"]:
        lines += ["", "top escalation reasons:"]
        for r in s["top_reasons"]:
            lines.append(f"  {r['turns']:>4}  {r['cause']:<12} {r['reason']}")
            lines.append(f"        e.g. {', '.join(r['examples'])}")
    for name, g in (s.get("groups") or {}).items():
        lines += ["", "=" * 72, render(g, title=f"{s['by']} {name}")]
    return "\n".join(lines)


def _when(iso: str) -> str:
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
