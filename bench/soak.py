"""Soak: mixed sessions with upstream faults switched on, for minutes; is anything lost, hung
or leaked, and does memory stay flat?

    python -m bench.soak --minutes M [--sessions N] [--fault-rate P] [--seed S] [--json PATH]
    (``python -m bench --soak M`` runs the same)

In one process: a sim-upstream (the sim tiers over HTTP) and a server whose ``chaos`` profile
reaches both tiers through the real ``openai`` provider; every upstream request fails with
probability ``--fault-rate``, the kind drawn uniformly from sim-upstream's fault kinds (429,
429 with Retry-After, 500, 503, 401, TTFT spikes, stalls, dropped connections, early EOF,
malformed chunks, error events, keep-alive-only streams, a wrong content type). Circuit breakers
are on, as in production.

N client workers loop: open a session, run 1–6 turns, close. Each turn is one of: a normal turn
(easy or hard request), a barge-in (a new user message mid-response), a ``response.cancel``, a
bad frame before the turn, or — now and then — the client vanishing mid-turn (TCP abort).

A warm-up phase (10% of the run, at least a few seconds) runs the same load and drains; its end is
the baseline for memory (RSS), asyncio tasks and file descriptors. During the main phase a sample
is taken every few seconds: RSS, tasks, sockets, sessions, upstream streams in flight, turns so
far, and the p99 of first-text and end-of-turn latency over the interval. After it drains:

- **lost**: a ``response.create`` that never got its ``response.done`` by the turn's deadline
  (+ slack) — must be 0;
- **leaks**: tasks above the baseline, upstream streams still open, sessions still registered
  (all 0), sockets above the baseline (the shared HTTP pool may keep a few keep-alive ones);
- **memory growth**: RSS after the main phase minus the baseline (both read after a GC and a
  glibc ``malloc_trim``, so freed heap the allocator still holds is not counted), and the
  least-squares slope over the main phase's raw samples (MB/min).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime_cascade import config as config_mod
from realtime_cascade.providers.health import BreakerParams
from realtime_cascade.providers.sim import SimProfile
from realtime_cascade.providers.sim_upstream import SimUpstream
from realtime_cascade.server.app import RealtimeServer

from .chaos import EASY, HARD, ChaosProvider, chaos_profile, fault_params

END_OF_TURN_MS = 6000.0
SLACK_S = 3.0
SOAK_PROFILES = {
    "light": SimProfile(ttft_ms=60, itl_ms=6, skill=0.5),
    "strong": SimProfile(ttft_ms=150, itl_ms=8, skill=1.0),
}

# response.done reasons, folded into a few labels for the table
_REASONS = (
    ("rate_limited", "upstream 429"),
    ("HTTP 500", "upstream 500"),
    ("HTTP 503", "upstream 503"),
    ("authentication failed", "upstream 401"),
    ("no first token", "first-token timeout"),
    ("stalled", "stall"),
    ("connection lost", "connection lost"),
    ("error event in the stream", "error event"),
    ("expected an event stream", "wrong content type"),
    ("undecodable", "malformed chunk"),
    ("every allowed tier is unavailable", "all circuits open"),
    ("end-of-turn deadline", "end-of-turn deadline"),
    ("cost cap", "cost cap"),
    ("client_cancelled", "client cancel"),
    ("turn_detected", "barge-in"),
)


def reason_label(status: str, reason: str) -> str:
    for needle, label in _REASONS:
        if needle in reason:
            return label
    return reason[:60] or status


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):  # not Linux: peak RSS is the best there is
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def p99(values: Sequence[float]) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    return round(xs[min(len(xs) - 1, int(0.99 * len(xs)))], 1)


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    tasks: int
    fds: int
    sessions: int
    upstream_streams: int
    turns: int
    first_text_p99_ms: float | None
    end_p99_ms: float | None


@dataclass
class _Tally:
    turns: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    internal_errors: int = 0
    aborted: int = 0
    sessions: int = 0
    first_text_ms: list[float] = field(default_factory=list)
    end_ms: list[float] = field(default_factory=list)


@dataclass
class SoakReport:
    minutes: float
    workers: int
    fault_rate: float
    sessions: int
    turns: int
    statuses: dict[str, int]
    failed_reasons: dict[str, int]
    lost: int
    internal_errors: int
    aborted_connections: int
    faults_drawn: dict[str, int]
    breaker_opens: dict[str, int]
    samples: list[Sample]
    baseline: dict[str, float]
    final: dict[str, float]
    memory_growth_mb: float
    memory_slope_mb_per_min: float | None
    leaked_tasks: int
    leaked_fds: int
    upstream_streams_left: int
    sessions_left: int
    error_logs: list[str]

    @property
    def clean(self) -> bool:
        return (
            self.lost == 0
            and self.internal_errors == 0
            and self.leaked_tasks <= 0
            and self.upstream_streams_left == 0
            and self.sessions_left == 0
            and not self.error_logs
        )


class _ErrorLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}"[:300])


def _item(text: str) -> str:
    return json.dumps(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            },
        }
    )


async def _session(url: str, rng: random.Random, tally: _Tally, live: list[float]) -> None:
    """One client session: a few turns of mixed kinds."""
    tally.sessions += 1
    try:
        async with connect(url, max_size=None) as ws:
            await ws.recv()  # session.created
            for _ in range(rng.randint(1, 6)):
                kind = rng.choices(
                    ["normal", "barge_in", "cancel", "bad_frame", "abort"],
                    [70, 10, 6, 10, 4],
                )[0]
                if kind == "bad_frame":
                    await ws.send(rng.choice(["{", '{"type": "nope"}', "[]", '{"type": 5}']))
                await ws.send(_item(rng.choice([EASY, HARD])))
                t0 = time.monotonic()
                await ws.send(json.dumps({"type": "response.create"}))
                cut_at = None
                if kind in ("barge_in", "cancel", "abort"):
                    cut_at = t0 + rng.uniform(0.05, 0.6)
                first: float | None = None
                done: dict[str, Any] | None = None
                tally.turns += 1
                with anyio.move_on_after(END_OF_TURN_MS / 1000.0 + SLACK_S):
                    while done is None:
                        timeout = None if cut_at is None else max(0.0, cut_at - time.monotonic())
                        try:
                            if timeout is None:
                                raw = await ws.recv()
                            else:
                                with anyio.fail_after(timeout):
                                    raw = await ws.recv()
                        except TimeoutError:
                            if kind == "abort":
                                tally.aborted += 1
                                ws.transport.abort()
                                return
                            if kind == "barge_in":
                                await ws.send(_item("Actually, make it three people."))
                            else:
                                await ws.send(json.dumps({"type": "response.cancel"}))
                            cut_at = None
                            continue
                        event = json.loads(raw)
                        match event["type"]:
                            case "response.output_text.delta" if first is None:
                                first = time.monotonic()
                            case "response.done":
                                done = event["response"]
                            case "error" if event["error"]["code"] == "internal_error":
                                tally.internal_errors += 1
                            case _:
                                pass
                if done is None:
                    tally.lost += 1
                    return
                end = time.monotonic()
                status = done["status"]
                tally.statuses[status] += 1
                details = done.get("status_details") or {}
                reason = details.get("reason") or (details.get("error") or {}).get("message", "")
                if status in ("failed", "incomplete"):
                    tally.reasons[reason_label(status, reason)] += 1
                if status == "completed":
                    if first is not None:
                        tally.first_text_ms.append((first - t0) * 1000.0)
                    tally.end_ms.append((end - t0) * 1000.0)
                live.append(end)
    except (ConnectionClosed, OSError):
        pass  # an aborted connection, or the server closing one (counted by the server side)


async def _load(url: str, workers: int, seconds: float, seed: int, tally: _Tally) -> None:
    deadline = time.monotonic() + seconds
    live: list[float] = []

    async def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        while time.monotonic() < deadline:
            await _session(url, rng, tally, live)

    async with anyio.create_task_group() as tg:
        for k in range(workers):
            tg.start_soon(worker, k)


async def _drain(server: RealtimeServer, upstream: SimUpstream, within: float = 10.0) -> None:
    with anyio.move_on_after(within):
        while server.session_count or upstream.open_streams:  # noqa: ASYNC110
            await anyio.sleep(0.05)
    await anyio.sleep(0.2)
    gc.collect()
    _trim_heap()


def _trim_heap() -> None:
    """Hand freed heap back to the OS before RSS is read at the baseline and the end.

    glibc keeps freed arenas mapped; whether a 30 MB free chunk is still counted in RSS when the
    reading is taken is chance (CI saw RSS swing 713 ↔ 744 MB between samples with no growth
    underneath). Trimming at both ends makes growth measure memory still held, i.e. a leak."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the raw reading stands
        pass


def _slope(points: Sequence[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


async def run_soak(
    minutes: float,
    *,
    sessions: int = 16,
    fault_rate: float = 0.15,
    seed: int = 0,
    sample_every_s: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> SoakReport:
    """Run the soak for ``minutes`` (warm-up included) with ``sessions`` concurrent workers."""
    total_s = minutes * 60.0
    warm_s = max(3.0, 0.1 * total_s)
    main_s = max(1.0, total_s - warm_s)
    every = sample_every_s or max(1.0, main_s / 30.0)
    rng = random.Random(seed)
    upstream = SimUpstream(SOAK_PROFILES)
    logs = _ErrorLogs()
    watched = [logging.getLogger(n) for n in ("realtime_cascade", "websockets", "asyncio")]
    for logger in watched:
        logger.addHandler(logs)
    tally = _Tally()
    samples: list[Sample] = []
    tiers: list[ChaosProvider] = []
    try:
        async with anyio.create_task_group() as tg:
            port = await tg.start(upstream.serve, "127.0.0.1", 0)
            base = f"http://127.0.0.1:{port}/v1"
            limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64)
            async with httpx2.AsyncClient(limits=limits, timeout=30.0) as client:
                profile, tiers = chaos_profile(
                    "chaos",
                    base,
                    fault_rate,
                    rng,
                    client=client,
                    params=fault_params(end_of_turn_ms=END_OF_TURN_MS),
                    health=BreakerParams(failure_threshold=5, cooldown_s=2.0, max_cooldown_s=10),
                )
                server = RealtimeServer(
                    config_mod.load(), host="127.0.0.1", port=0, profiles={"chaos": profile}
                )
                async with server:
                    url = server.url("chaos")
                    if progress:
                        progress(f"soak: warm-up {warm_s:.0f} s, {sessions} workers")
                    await _load(url, sessions, warm_s, seed + 1, _Tally())
                    await _drain(server, upstream)
                    # tasks exclude sim-upstream's connection tasks: an idle keep-alive
                    # connection the client pool holds is reuse, not a leak
                    baseline = {
                        "rss_mb": round(rss_mb(), 1),
                        "tasks": len(asyncio.all_tasks()) - upstream.open_connections,
                        "fds": fd_count(),
                    }
                    t0 = time.monotonic()
                    if progress:
                        progress(f"soak: main phase {main_s:.0f} s (baseline {baseline})")

                    async def sampler() -> None:
                        seen_first = seen_end = 0
                        while True:
                            await anyio.sleep(every)
                            firsts = tally.first_text_ms[seen_first:]
                            ends = tally.end_ms[seen_end:]
                            seen_first, seen_end = len(tally.first_text_ms), len(tally.end_ms)
                            sample = Sample(
                                t_s=round(time.monotonic() - t0, 1),
                                rss_mb=round(rss_mb(), 1),
                                tasks=len(asyncio.all_tasks()),
                                fds=fd_count(),
                                sessions=server.session_count,
                                upstream_streams=upstream.open_streams,
                                turns=tally.turns,
                                first_text_p99_ms=p99(firsts),
                                end_p99_ms=p99(ends),
                            )
                            samples.append(sample)
                            if progress:
                                progress(
                                    f"soak: t={sample.t_s:.0f}s rss={sample.rss_mb} MB "
                                    f"tasks={sample.tasks} turns={sample.turns} "
                                    f"p99 first text {sample.first_text_p99_ms} ms"
                                )

                    async with anyio.create_task_group() as main:
                        main.start_soon(sampler)
                        await _load(url, sessions, main_s, seed + 2, tally)
                        main.cancel_scope.cancel()
                    await _drain(server, upstream)
                    final = {
                        "rss_mb": round(rss_mb(), 1),
                        "tasks": len(asyncio.all_tasks()) - upstream.open_connections,
                        "fds": fd_count(),
                    }
                    sessions_left = server.session_count
                    streams_left = upstream.open_streams
                    opens = {snap.tier: snap.opened_count for snap in profile.health.snapshot()}
            tg.cancel_scope.cancel()
    finally:
        for logger in watched:
            logger.removeHandler(logs)
    drawn: Counter[str] = Counter()
    for tier in tiers:
        drawn.update(tier.drawn)
    half = [(s.t_s / 60.0, s.rss_mb) for s in samples[len(samples) // 2 :]]
    slope = _slope(half)
    return SoakReport(
        minutes=minutes,
        workers=sessions,
        fault_rate=fault_rate,
        sessions=tally.sessions,
        turns=tally.turns,
        statuses=dict(tally.statuses),
        failed_reasons=dict(tally.reasons.most_common()),
        lost=tally.lost,
        internal_errors=tally.internal_errors,
        aborted_connections=tally.aborted,
        faults_drawn=dict(drawn.most_common()),
        breaker_opens=opens,
        samples=samples,
        baseline=baseline,
        final=final,
        memory_growth_mb=round(final["rss_mb"] - baseline["rss_mb"], 1),
        memory_slope_mb_per_min=None if slope is None else round(slope, 2),
        leaked_tasks=int(final["tasks"] - baseline["tasks"]),
        leaked_fds=int(final["fds"] - baseline["fds"]),
        upstream_streams_left=streams_left,
        sessions_left=sessions_left,
        error_logs=logs.records,
    )


def render(r: SoakReport) -> str:
    done = sum(r.statuses.values())
    lines = [
        f"Soak: {r.minutes:g} min, {r.workers} concurrent workers, {r.sessions} sessions, "
        f"{r.turns} turns, fault rate {r.fault_rate:.0%} per upstream request.",
        "",
        "| turns | " + " | ".join(sorted(r.statuses)) + " | lost (no response.done) |",
        "|---:|" + "---:|" * (len(r.statuses) + 1),
        f"| {done} | "
        + " | ".join(str(r.statuses[k]) for k in sorted(r.statuses))
        + f" | {r.lost} |",
        "",
        "Failed / incomplete turns by reason: "
        + (", ".join(f"{k} {v}" for k, v in r.failed_reasons.items()) or "none"),
        "Upstream requests by fault drawn: "
        + ", ".join(f"{k} {v}" for k, v in r.faults_drawn.items()),
        "Circuit breaker openings: " + ", ".join(f"{k} {v}" for k, v in r.breaker_opens.items()),
        f"Client connections aborted mid-turn: {r.aborted_connections}",
        "",
        "| t (s) | RSS (MB) | tasks | fds | sessions | upstream streams | turns "
        "| p99 first text (ms) | p99 end of turn (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r.samples:
        lines.append(
            f"| {s.t_s} | {s.rss_mb} | {s.tasks} | {s.fds} | {s.sessions} | {s.upstream_streams} "
            f"| {s.turns} | {s.first_text_p99_ms} | {s.end_p99_ms} |"
        )
    lines += [
        "",
        f"Memory: baseline {r.baseline['rss_mb']} MB after warm-up, {r.final['rss_mb']} MB after "
        f"the run: growth {r.memory_growth_mb:+} MB; slope over the second half "
        f"{r.memory_slope_mb_per_min} MB/min.",
        f"Leaks after draining: tasks {r.leaked_tasks:+}, upstream streams "
        f"{r.upstream_streams_left}, sessions {r.sessions_left}, sockets {r.leaked_fds:+} "
        f"(the shared HTTP pool may keep keep-alive connections); internal errors "
        f"{r.internal_errors}; error logs {len(r.error_logs)}.",
    ]
    lines.extend(f"ERROR LOG: {e}" for e in r.error_logs[:10])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="run length (5)")
    parser.add_argument("--sessions", type=int, default=16, help="concurrent workers (16)")
    parser.add_argument(
        "--fault-rate", type=float, default=0.15, help="share of upstream requests that fail (0.15)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.sessions < 1 or not 0.0 <= args.fault_rate <= 1.0:
        parser.error("need --minutes > 0, --sessions >= 1, 0 <= --fault-rate <= 1")

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    async def go() -> SoakReport:
        return await run_soak(
            args.minutes,
            sessions=args.sessions,
            fault_rate=args.fault_rate,
            seed=args.seed,
            progress=say,
        )

    report = anyio.run(go, backend="asyncio")
    print(render(report))
    if args.json:
        out = asdict(report)
        out["clean"] = report.clean
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
