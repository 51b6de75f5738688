"""Scale-out: the same load on ``serve --workers 1`` and ``--workers 2``, both sharing a real
Redis, each run beside the bare proxy measured in that same run (ratios, not absolutes).

    python -m bench.scale                               # sessions 200,1000; workers 1,2
    python -m bench.scale --sessions 200 --max-turns 2 --json out.json

Per worker count: a fresh Redis (Debian's ``redis-server`` on a free loopback port, named by
``REALTIME_CASCADE_REDIS_URL``), the sim upstreams, ``serve --workers N`` and ``bench.bare``
(:func:`bench.run.subprocess_services`); the policies ``bare`` (the light tier's schedule
played in-process: the pace reference), ``bare-proxy`` (the same stream relayed from the sim
upstream by a bare websockets + aiohttp proxy: the CPU and overhead reference) and
``light-only`` (the same stream through the server). Server CPU is the supervisor's and every
worker's (``bench.procs.tree_pids``). Reported per (workers, sessions):

- throughput: ``delta_chars_per_s`` and ``throughput_vs_bare`` (pace relative to the bare run)
- overhead p50/p99 (ms the server adds over the upstream's own schedule), the bare proxy's p99
- per-token server CPU (µs) and its ratio to the bare proxy's
- dispatch: the upstream's first-token lag p50 (request built and sent) vs the bare proxy's
  first-text overhead p50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .run import Options, run
from .scenarios import load_mix


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("bench.scale needs redis-server (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _pick(cell: dict[str, Any], proxy: dict[str, Any]) -> dict[str, Any]:
    m, b = cell["metrics"], proxy["metrics"]
    cpu, bcpu = m.get("server_cpu_us_per_token"), b.get("server_cpu_us_per_token")
    return {
        "delta_chars_per_s": m.get("delta_chars_per_s"),
        "throughput_vs_bare": m.get("throughput_vs_bare"),
        "overhead_p50_ms": m.get("overhead_ms", {}).get("p50"),
        "overhead_p99_ms": m.get("overhead_ms", {}).get("p99"),
        "proxy_overhead_p50_ms": b.get("overhead_ms", {}).get("p50"),
        "proxy_overhead_p99_ms": b.get("overhead_ms", {}).get("p99"),
        "cpu_us_per_token": cpu,
        "proxy_cpu_us_per_token": bcpu,
        "cpu_per_token_vs_proxy": round(cpu / bcpu, 3) if cpu and bcpu else None,
        "dispatch_p50_ms": m.get("upstream_first_token_lag_ms", {}).get("p50"),
        "proxy_first_text_overhead_p50_ms": b.get("overhead_first_text_ms", {}).get("p50"),
        "errors": m.get("errors"),
        "server_cpu_cores": m.get("server_cpu_cores"),
        "machine_busy": m.get("machine_busy"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--sessions", default="200,1000")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--max-turns", type=int, default=2)
    p.add_argument("--mix", default="auto")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    sessions = tuple(int(x) for x in args.sessions.split(","))
    mix = load_mix(args.mix).truncated(args.max_turns)
    rows: list[dict[str, Any]] = []
    for workers in (int(x) for x in args.workers.split(",")):
        with redis_server() as url:
            os.environ["REALTIME_CASCADE_REDIS_URL"] = url
            opts = Options(
                sessions=sessions,
                quick=True,
                max_turns=args.max_turns,
                solo_conversations=1,
                ramp_s=1.0,
                policies=("bare", "bare-proxy", "light-only"),
                server_args=("--workers", str(workers)),
                command=f"python -m bench.scale {' '.join(argv or sys.argv[1:])}",
            )
            result = asyncio.run(run(mix, opts))
            os.environ.pop("REALTIME_CASCADE_REDIS_URL", None)
        proxy = {c["sessions"]: c for c in result["cells"] if c["policy"] == "bare-proxy"}
        for c in result["cells"]:
            if c["policy"] == "light-only":
                picked = _pick(c, proxy[c["sessions"]])
                rows.append({"workers": workers, "sessions": c["sessions"], **picked})
    by = {(r["workers"], r["sessions"]): r for r in rows}
    for r in rows:
        one = by.get((1, r["sessions"]))
        # each run's pace relative to its own bare proxy, so a slower machine moment cancels
        if one is not None and r["workers"] != 1 and one["throughput_vs_bare"]:
            r["throughput_vs_1_worker"] = round(
                r["throughput_vs_bare"] / one["throughput_vs_bare"], 3
            )
    cols = [
        "workers", "sessions", "throughput_vs_bare", "throughput_vs_1_worker", "overhead_p50_ms",
        "overhead_p99_ms", "proxy_overhead_p99_ms", "cpu_us_per_token", "proxy_cpu_us_per_token",
        "cpu_per_token_vs_proxy", "dispatch_p50_ms", "proxy_first_text_overhead_p50_ms", "errors",
    ]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
