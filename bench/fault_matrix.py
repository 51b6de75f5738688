"""Every upstream fault kind, on every tier placement, for an easy and a hard turn, end to end.

    python -m bench.fault_matrix [--kind NAME ...] [--concurrency N] [--json]

One sim-upstream (the sim tiers over HTTP) and one server in this process; each cell is a
WebSocket session whose profile reaches its tiers through the real ``openai`` provider, with a
fault (``sim_fault``) on the light tier, the strong tier or both, and one turn: an easy request
(the light tier's), a hard one (escalated mid-stream) or a tool call. A cell *ends cleanly* when:

- ``response.done`` arrives within the turn's ``end_of_turn_ms`` (+ 1 s of slack) — no hang;
- its status is final, and anything but ``completed`` carries a reason;
- a fault on the light tier alone is recovered (a fallback to strong: ``completed``);
- when the faulted tier was called, the trace names the fault (``rate_limited``, ``HTTP 503``,
  ``no first token``, ``stalled``, ``connection_lost``, ``malformed_stream``, …);
- the text deltas the client received equal the trace's released text and the assistant item;
- a tool call, when one is released, arrives whole: one arguments delta, equal to the ``done``'s,
  and valid JSON;
- and, after the run, sim-upstream has no stream left open and the server no session.

Each cell has its own profile, so circuit breakers (on, as in production) never couple cells.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
from websockets.asyncio.client import connect

from realtime_cascade import config as config_mod
from realtime_cascade import loop
from realtime_cascade.providers.sim_upstream import SimUpstream
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.app import RealtimeServer

from .chaos import EASY, FAST_PROFILES, FAULT_KINDS, HARD, FaultKind, fault_profile, kinds_by_name

PLACEMENTS = ("light", "strong", "both")
TOOL = "please call get_weather for Paris"
REQUESTS = {"easy": EASY, "hard": HARD, "tool": TOOL}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}
END_OF_TURN_MS = 4000.0
MAX_REASON_CHARS = 2000  # an upstream message is clipped to 1,000 characters, plus context
MAX_USAGE_TOKENS = 2 * 10**7  # per attempt each count is clamped to 10^7 (a total: two)
SLACK_MS = 1000.0


@dataclass
class CellResult:
    kind: str
    placement: str
    request: str
    spec: str = ""  # the fault spec this cell ran (hostile kinds vary it per cell)
    status: str = "no response.done"
    reason: str = ""
    elapsed_ms: float = 0.0
    exercised: bool = False  # the faulted tier was called
    clean: bool = False
    problems: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)


@dataclass
class MatrixReport:
    cells: list[CellResult]
    leaked_upstream_streams: int
    leftover_sessions: int
    wall_s: float

    def by_kind(self) -> list[dict[str, Any]]:
        rows = []
        for kind in dict.fromkeys(c.kind for c in self.cells):
            cells = [c for c in self.cells if c.kind == kind]
            rows.append(
                {
                    "kind": kind,
                    "turns": len(cells),
                    "fault_hit": sum(c.exercised for c in cells),
                    "clean": sum(c.clean for c in cells),
                    "completed": sum(c.status == "completed" for c in cells),
                    "failed": sum(c.status == "failed" for c in cells),
                    "incomplete": sum(c.status == "incomplete" for c in cells),
                    "max_ms": round(max(c.elapsed_ms for c in cells), 1),
                }
            )
        return rows

    @property
    def all_clean(self) -> bool:
        return (
            all(c.clean for c in self.cells)
            and self.leaked_upstream_streams == 0
            and self.leftover_sessions == 0
        )


def _check(
    cell: CellResult, kind: FaultKind, events: list[dict[str, Any]], faulted: set[int]
) -> None:
    done = events[-1]["response"] if events and events[-1]["type"] == "response.done" else None
    if done is None:
        cell.problems.append("no response.done")
        return
    cell.status = done["status"]
    details = done.get("status_details") or {}
    cell.reason = details.get("reason") or (details.get("error") or {}).get("message") or ""
    traces = [e["trace"] for e in events if e["type"] == "cascade.trace"]
    if not traces:
        cell.problems.append("no cascade.trace")
        return
    trace = traces[0]
    cell.decisions = [f"{d['kind']}:{d['cause']}" for d in trace["decisions"]]
    reasons = [d["reason"] for d in trace["decisions"]] + [trace["reason"]]
    reasons += [a["end_reason"] for a in trace["attempts"]]
    cell.exercised = any(a["tier"] in faulted for a in trace["attempts"])
    if cell.status not in ("completed", "failed", "incomplete"):
        cell.problems.append(f"status {cell.status}")
    if cell.status != "completed" and not cell.reason:
        cell.problems.append("no reason")
    if cell.placement == "light" and cell.status != "completed" and not kind.may_complete:
        cell.problems.append("a light-tier fault was not recovered by the strong tier")
    if any(len(r) > MAX_REASON_CHARS for r in [*reasons, cell.reason]):
        cell.problems.append("an upstream's error message reached the client unclipped")
    usage = done.get("usage") or {}
    bound = MAX_USAGE_TOKENS * max(1, len(trace["attempts"]))
    if any(not 0 <= v <= bound for v in usage.values() if isinstance(v, int)):
        cell.problems.append(f"usage not clamped: {usage}")
    if kind.may_complete and cell.status == "completed":
        pass
    elif cell.exercised and not any(e in r for r in reasons for e in kind.evidence):
        cell.problems.append(f"the trace does not name the fault ({kind.evidence})")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    if deltas != trace["text"]:
        cell.problems.append("the deltas differ from the trace's released text")
    items = [o for o in done["output"] if o["type"] == "message"]
    item_text = "".join(p["text"] for o in items for p in o["content"])
    if item_text != deltas:
        cell.problems.append("the assistant item differs from the deltas")
    for e in events:
        if e["type"] == "response.function_call_arguments.done":
            whole = [
                d["delta"]
                for d in events
                if d["type"] == "response.function_call_arguments.delta"
                and d["call_id"] == e["call_id"]
            ]
            if whole != [e["arguments"]]:
                cell.problems.append("a tool call arrived in pieces")
            try:
                json.loads(e["arguments"])
            except ValueError:
                cell.problems.append("a released tool call is not JSON")
    called = any(o["type"] == "function_call" for o in done["output"])
    if cell.request == "tool" and cell.status == "completed" and not called:
        cell.problems.append("a completed tool turn released no tool call")
    if cell.elapsed_ms > END_OF_TURN_MS + SLACK_MS:
        cell.problems.append(f"took {cell.elapsed_ms:.0f} ms")


async def _run_cell(
    server: RealtimeServer, profile: str, cell: CellResult, kind: FaultKind, faulted: set[int]
) -> None:
    events: list[dict[str, Any]] = []
    limit = (END_OF_TURN_MS + SLACK_MS) / 1000.0 + 5.0  # a hang still ends the run
    try:
        async with connect(server.url(profile), max_size=None) as ws:
            json.loads(await ws.recv())  # session.created
            if cell.request == "tool":
                update = {"type": "session.update", "session": {"tools": [WEATHER]}}
                await ws.send(json.dumps(update))
                json.loads(await ws.recv())  # session.updated
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": REQUESTS[cell.request]}],
            }
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "response.create"}))
            with anyio.move_on_after(limit):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "error":
                        cell.problems.append(f"error event: {event['error']['code']}")
                    events.append(event)
                    if event["type"] == "response.done":
                        break
            cell.elapsed_ms = (time.monotonic() - t0) * 1000.0
    except Exception as exc:  # a connection problem is a finding, not a crash of the run
        cell.problems.append(f"client: {type(exc).__name__}: {exc}")
    _check(cell, kind, events, faulted)
    cell.clean = not cell.problems


async def run_matrix(
    kinds: Sequence[FaultKind] = FAULT_KINDS, *, concurrency: int = 6, seed: int = 12
) -> MatrixReport:
    """Every kind × placement × request; hostile kinds draw a new variant per cell (``seed``)."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    upstream = SimUpstream(FAST_PROFILES)
    cells: list[tuple[str, CellResult, FaultKind, set[int]]] = []
    profiles: dict[str, CascadeProfile] = {}
    async with anyio.create_task_group() as tg:
        port = await tg.start(upstream.serve, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}/v1"
        for i, kind in enumerate(kinds):
            for placement in PLACEMENTS:
                faulted = {0} if placement == "light" else {1} if placement == "strong" else {0, 1}
                for request in REQUESTS:
                    name = f"fault{i}-{placement}-{request}"
                    spec = kind.variant(rng)
                    profiles[name] = fault_profile(
                        name,
                        base,
                        spec if 0 in faulted else None,
                        spec if 1 in faulted else None,
                    )
                    cell = CellResult(kind.name, placement, request, spec=spec)
                    cells.append((name, cell, kind, faulted))
        server = RealtimeServer(config_mod.load(), host="127.0.0.1", port=0, profiles=profiles)
        try:
            async with server:
                limiter = anyio.CapacityLimiter(concurrency)

                async def one(name: str, cell: CellResult, kind: FaultKind, f: set[int]) -> None:
                    async with limiter:
                        await _run_cell(server, name, cell, kind, f)

                async with anyio.create_task_group() as run:
                    for args in cells:
                        run.start_soon(one, *args)
                # every session's cleanup has run once its handler returned
                with anyio.move_on_after(5.0):
                    while server.session_count or upstream.open_streams:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                leftover = server.session_count
                leaked = upstream.open_streams
        finally:
            for profile in profiles.values():
                await profile.aclose()
            tg.cancel_scope.cancel()
    return MatrixReport(
        [c for _, c, _, _ in cells], leaked, leftover, round(time.monotonic() - t0, 2)
    )


def render(report: MatrixReport) -> str:
    lines = [
        "| fault kind | turns | fault hit | ended cleanly | completed | failed | incomplete "
        "| slowest response.done (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = {"turns": 0, "fault_hit": 0, "clean": 0, "completed": 0, "failed": 0, "incomplete": 0}
    for row in report.by_kind():
        lines.append(
            f"| `{row['kind']}` | {row['turns']} | {row['fault_hit']} | {row['clean']} "
            f"| {row['completed']} | {row['failed']} | {row['incomplete']} | {row['max_ms']} |"
        )
        for k in total:
            total[k] += row[k]
    slowest = max((c.elapsed_ms for c in report.cells), default=0.0)
    lines.append(
        f"| **all** | {total['turns']} | {total['fault_hit']} | {total['clean']} "
        f"| {total['completed']} | {total['failed']} | {total['incomplete']} | {slowest:.1f} |"
    )
    lines.append("")
    lines.append(
        f"Upstream streams left open: {report.leaked_upstream_streams}; sessions left: "
        f"{report.leftover_sessions}; turn deadline {END_OF_TURN_MS:.0f} ms; "
        f"wall time {report.wall_s} s."
    )
    bad = [c for c in report.cells if not c.clean]
    for c in bad:
        lines.append(
            f"NOT CLEAN: {c.kind} ({c.spec}) on {c.placement} ({c.request}): "
            f"{'; '.join(c.problems)}"
        )
        lines.append(
            f"  status {c.status}, reason {c.reason or '-'}, decisions {', '.join(c.decisions)}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_matrix", description=__doc__)
    parser.add_argument("--kind", action="append", help="only these fault kinds (repeatable)")
    parser.add_argument("--concurrency", type=int, default=6, help="cells at once (6)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seed", type=int, default=12, help="hostile kinds' variants (12)")
    args = parser.parse_args(argv)
    try:
        kinds = kinds_by_name(args.kind)
    except ValueError as exc:
        parser.error(str(exc))

    async def go() -> MatrixReport:
        return await run_matrix(kinds, concurrency=args.concurrency, seed=args.seed)

    report = loop.run(go)
    if args.json:
        out = {
            "by_kind": report.by_kind(),
            "cells": [asdict(c) for c in report.cells],
            "leaked_upstream_streams": report.leaked_upstream_streams,
            "leftover_sessions": report.leftover_sessions,
            "wall_s": report.wall_s,
            "all_clean": report.all_clean,
        }
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return 0 if report.all_clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
