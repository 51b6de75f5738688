"""The run: processes up, cells one after another, processes down, figures out.

A *cell* is one policy at one concurrency N: N workers, each one concurrent session, play their
conversations (worker ``w`` plays conversations ``w, w + N, …`` of the mix, modulo its size),
starting over a short ramp so that connecting is not what is measured. Cells run one at a time,
so the server sees exactly N sessions of exactly one policy; all policies share one server
process, one pair of sim upstreams and one bare baseline process for the whole run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from realtime_cascade import config as config_mod
from realtime_cascade.providers.sim import SCRIPTS, SimProfile
from realtime_cascade.providers.sim_upstream import resolve_script

from . import procs
from .client import Policy, SessionLog, play_conversation, policies
from .ideal import TierSim
from .metrics import CellRaw, Replayer, cell_metrics, posthoc_passes
from .scenarios import Mix

ROOT = Path(__file__).resolve().parent.parent


class Probe(Protocol):
    """Where a cell reads the measured server's CPU time and memory."""

    def cpu_seconds(self) -> float: ...

    def rss_bytes(self) -> int: ...


class SelfProbe:
    """This process (for in-process runs: client and servers together)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.pid)

    def rss_bytes(self) -> int:
        return procs.rss_bytes(self.pid)


@dataclass
class Services:
    url: str  # the server's realtime URL for the mix's profile
    bare_url: str
    server: Probe
    bare: Probe
    alive: Callable[[], str | None] = lambda: None  # a message when a process died
    ours: Sequence[Probe] = ()  # every process the run started (to tell others' CPU use apart)
    upstreams: Sequence[Probe] = ()  # the sim upstreams among them
    bare_proxy_url: str = ""  # the bare server proxying the light tier's sim upstream
    bare_proxy: Probe | None = None


@dataclass
class Options:
    sessions: tuple[int, ...] = (1, 50, 200)
    quick: bool = False
    max_turns: int | None = None  # per conversation (None: all)
    solo_conversations: int = 4  # conversations the single session of N=1 plays in turn
    cancel_after_s: tuple[float, ...] = (0.08, 0.35)
    ramp_s: float = 1.0
    policies: tuple[str, ...] = ()  # empty: all
    warmup: bool = True
    clock: str = "absolute"  # how the sim upstreams and the bare server keep time
    progress_stream: Any = field(default_factory=lambda: sys.stderr)  # None: silent
    command: str = ""
    server_args: tuple[str, ...] = ()  # more `serve` arguments (bench.scale: --workers N)
    http_client: str = "aiohttp"  # the openai tiers' HTTP client: "aiohttp" or "sdk"
    extra: dict[str, Any] = field(default_factory=dict)


SCHEMA = "realtime-cascade-bench/1"


class Progress:
    """One line on stderr, redrawn at most ten times a second."""

    def __init__(self, total_cells: int, stream: Any = sys.stderr) -> None:
        self.total = total_cells
        self.cell = 0
        self.label = ""
        self.done = 0
        self.expected = 0
        self.t0 = time.monotonic()
        self._last = 0.0
        self.stream = stream

    def start_cell(self, label: str, expected: int) -> None:
        self.cell += 1
        self.label, self.done, self.expected = label, 0, expected
        self.draw(force=True)

    def tick(self) -> None:
        self.done += 1
        self.draw()

    def draw(self, force: bool = False, end: str = "") -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        frac = self.done / self.expected if self.expected else 0.0
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        line = (
            f"\r[{self.cell}/{self.total}] {self.label:<24} [{bar}] "
            f"{self.done}/{self.expected} turns  {now - self.t0:5.0f}s"
        )
        self.stream.write(line + end)
        self.stream.flush()

    def end_cell(self) -> None:
        self.draw(force=True, end="\n")


async def run_cell(
    url: str,
    mix: Mix,
    policy: Policy,
    n: int,
    opts: Options,
    server: Probe,
    *,
    ours: Sequence[Probe] = (),
    upstreams: Sequence[Probe] = (),
    last_tier: int,
    preempt_below: float,
    min_tokens: int,
    progress: Progress,
) -> CellRaw:
    convs = mix.conversations
    per_worker = opts.solo_conversations if n == 1 else 1
    plan = [[convs[(w + k * n) % len(convs)] for k in range(per_worker)] for w in range(n)]
    expected = sum(len(c.turns) for p in plan for c in p)
    progress.start_cell(f"{policy.name} N={n}", expected)
    cell = CellRaw(policy.name, n)
    check = posthoc_passes(preempt_below, min_tokens)
    rss_before = server.rss_bytes()
    peak = rss_before
    stop = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, server.rss_bytes())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)

    async def worker(w: int) -> None:
        await asyncio.sleep(opts.ramp_s * w / n if n > 1 else 0.0)
        for conv in plan[w]:
            try:
                log: SessionLog = await play_conversation(
                    url,
                    mix,
                    policy,
                    conv,
                    last_tier=last_tier,
                    posthoc_check=check,
                    cancel_after=opts.cancel_after_s,
                    on_turn=progress.tick,
                )
            except Exception as exc:  # a refused or closed connection, a timeout: count, go on
                cell.errors.append(f"{conv.id}: {type(exc).__name__}: {exc}")
                continue
            cell.turns.extend(log.turns)
            cell.cancels.extend(log.cancels)

    sampler = asyncio.create_task(sample())
    cpu0 = server.cpu_seconds()
    me = SelfProbe()
    mine = [*ours, me]
    busy0, ours0 = procs.machine_busy_seconds(), sum(p.cpu_seconds() for p in mine)
    up0, me0 = sum(p.cpu_seconds() for p in upstreams), me.cpu_seconds()
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(n)))
    cell.wall_s = time.perf_counter() - t0
    cell.cpu_s = server.cpu_seconds() - cpu0
    busy = procs.machine_busy_seconds() - busy0
    cell.others_cpu_s = max(0.0, busy - (sum(p.cpu_seconds() for p in mine) - ours0))
    cell.upstream_cpu_s = sum(p.cpu_seconds() for p in upstreams) - up0
    cell.client_cpu_s = me.cpu_seconds() - me0
    cell.machine_busy = busy / (cell.wall_s * (os.cpu_count() or 1)) if cell.wall_s else 0.0
    stop.set()
    await sampler
    cell.rss_before, cell.rss_peak = rss_before, max(peak, server.rss_bytes())
    progress.end_cell()
    return cell


def _tier_sims(mix: Mix) -> tuple[list[TierSim], config_mod.ProfileConfig]:
    cfg = config_mod.load(mix.config_path)
    prof = cfg.profiles[mix.profile]
    out = []
    for tier in prof.tiers:
        provider = tier.provider
        assert isinstance(provider, config_mod.SimProviderConfig)
        sim = SimProfile(**{f: getattr(provider, f) for f in SimProfile.__struct_fields__})
        script = resolve_script(prof.script or sim.script, SCRIPTS)
        out.append(TierSim(tier.name, sim, script))
    return out, prof


@contextlib.contextmanager
def subprocess_services(mix: Mix, opts: Options, tiers: Sequence[TierSim]) -> Iterator[Services]:
    """Two sim upstreams, the server (its tiers on them, ``openai`` provider), the bare
    baseline: each a subprocess of this interpreter; stopped on exit."""
    tmp = ROOT / "bench" / "results" / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    started: list[procs.Proc] = []
    try:
        upstreams: dict[str, str] = {}
        for name, fields in procs.sim_tiers(mix.config_path, mix.profile):
            up = procs.Proc(
                f"sim-upstream {name}",
                procs.upstream_argv(0, [(name, fields)], opts.clock),
                r"sim-upstream on (http://\S+/v1)",
                ROOT,
            )
            started.append(up)
            upstreams[name] = up.start().group(1)
        config_path = tmp / "server.toml"
        config_path.write_text(
            procs.server_config(
                mix.config_path,
                mix.profile,
                upstreams,
                max(opts.sessions) + 50,
                http_client=opts.http_client,
            )
        )
        server = procs.Proc(
            "server",
            [
                sys.executable,
                "-m",
                "realtime_cascade.cli.main",
                "serve",
                "--config",
                str(config_path),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--grace",
                "1",
                *opts.server_args,
            ],
            r"serving (ws://\S+)",
            ROOT,
        )
        started.append(server)
        url = server.start().group(1)
        bare_argv = [sys.executable, "-m", "bench.bare", "--profile", mix.profile]
        bare_argv += ["--tier", tiers[0].name, "--clock", opts.clock]
        if mix.config_path is not None:
            bare_argv += ["--config", str(mix.config_path)]
        bare = procs.Proc("bare", bare_argv, r"bare on (ws://\S+)", ROOT)
        started.append(bare)
        bare_url = bare.start().group(1) + "/"
        proxy_argv = [*bare_argv, "--upstream", upstreams[tiers[0].name]]
        proxy = procs.Proc("bare-proxy", proxy_argv, r"bare on (ws://\S+)", ROOT)
        started.append(proxy)
        proxy_url = proxy.start().group(1) + "/"

        def alive() -> str | None:
            for p in started:
                if not p.alive():
                    return f"{p.name} died:\n{p.tail()}"
            return None

        ups = tuple(p for p in started if p.name.startswith("sim-upstream"))
        yield Services(url, bare_url, server, bare, alive, tuple(started), ups, proxy_url, proxy)
    finally:
        for p in reversed(started):
            p.stop()


@contextlib.asynccontextmanager
async def inprocess_services(
    mix: Mix, tiers: Sequence[TierSim], clock: str = "absolute"
) -> AsyncIterator[Services]:
    """The same services in this process and event loop (for tests): one
    :class:`~realtime_cascade.providers.sim_upstream.SimUpstream` serving every tier, a
    :class:`~realtime_cascade.server.RealtimeServer`, the bare server. CPU and memory are this
    process's (client included)."""
    import anyio

    from realtime_cascade.providers.sim_upstream import SimUpstream
    from realtime_cascade.server.app import RealtimeServer

    from .bare import load_tier, serve_bare

    fields = dict(procs.sim_tiers(mix.config_path, mix.profile))
    upstream = SimUpstream(
        {name: SimProfile(**{k: v for k, v in f.items()}) for name, f in fields.items()},
        clock="relative" if clock == "relative" else "absolute",
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(upstream.serve, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}/v1"
        cfg = config_mod.loads(
            procs.server_config(mix.config_path, mix.profile, dict.fromkeys(fields, base), 64)
        )
        config_file = None if mix.config_path is None else str(mix.config_path)
        tier, spec = load_tier(config_file, mix.profile, tiers[0].name)
        bare = functools.partial(serve_bare, clock=clock)
        bare_port = await tg.start(bare, "127.0.0.1", 0, tier, spec)
        proxy = functools.partial(serve_bare, clock=clock, upstream=base)
        proxy_port = await tg.start(proxy, "127.0.0.1", 0, tier, spec)
        try:
            async with RealtimeServer(cfg, host="127.0.0.1", port=0) as server:
                probe = SelfProbe()
                url, bare_url = server.url(mix.profile), f"ws://127.0.0.1:{bare_port}/"
                proxy_url = f"ws://127.0.0.1:{proxy_port}/"
                yield Services(
                    url, bare_url, probe, probe, bare_proxy_url=proxy_url, bare_proxy=probe
                )
        finally:
            tg.cancel_scope.cancel()


async def run(mix: Mix, opts: Options, services: Services | None = None) -> dict[str, Any]:
    """Every cell, then the figures. Starts the subprocesses unless ``services`` are given."""
    tiers, prof = _tier_sims(mix)
    if services is None:
        with subprocess_services(mix, opts, tiers) as started:
            cells = await _cells(mix, opts, started, tiers, prof)
    else:
        cells = await _cells(mix, opts, services, tiers, prof)
    return _figures(mix, opts, cells, tiers, prof)


def _plist(opts: Options, last: int) -> list[Policy]:
    wanted = set(opts.policies)
    return [p for p in policies(last) if not wanted or p.name in wanted]


async def _cells(
    mix: Mix,
    opts: Options,
    services: Services,
    tiers: Sequence[TierSim],
    prof: config_mod.ProfileConfig,
) -> list[CellRaw]:
    last = len(tiers) - 1
    plist = _plist(opts, last)
    total = len(opts.sessions) * len(plist) + (1 if opts.warmup else 0)
    progress = Progress(total, opts.progress_stream)
    common: dict[str, Any] = {
        "last_tier": last,
        "preempt_below": prof.policy.preempt_below,
        "min_tokens": prof.monitor.min_tokens,
        "progress": progress,
        "ours": services.ours,
        "upstreams": services.upstreams,
    }
    if opts.warmup:  # imports, pools, first-call paths: not what a cell should measure
        warm = Options(**{**opts.__dict__, "solo_conversations": 1, "cancel_after_s": ()})
        await run_cell(
            services.url,
            mix,
            Policy("warmup", {"policy": {"hedging": True}}),
            2,
            warm,
            services.server,
            **common,
        )
    cells: list[CellRaw] = []
    for n in opts.sessions:
        for policy in plist:
            if policy.proxy:
                if services.bare_proxy is None:
                    continue  # services without a bare proxy
                url, probe = services.bare_proxy_url, services.bare_proxy
            elif policy.bare:
                url, probe = services.bare_url, services.bare
            else:
                url, probe = services.url, services.server
            cells.append(await run_cell(url, mix, policy, n, opts, probe, **common))
            dead = services.alive()
            if dead is not None:
                raise procs.ProcError(dead)
    return cells


def _figures(
    mix: Mix,
    opts: Options,
    cells: Sequence[CellRaw],
    tiers: Sequence[TierSim],
    prof: config_mod.ProfileConfig,
) -> dict[str, Any]:
    plist = _plist(opts, len(tiers) - 1)
    if opts.progress_stream is not None:
        opts.progress_stream.write("computing figures (replaying every response in virtual time)\n")
    verifiers = [config_mod.load_script(ref) for ref in prof.verifiers]
    replayer = Replayer(prof.params(), tiers, verifiers)  # type: ignore[arg-type]
    out_cells = []
    samples: dict[str, list[float]] = {}
    for cell in cells:
        metrics, cell_samples = cell_metrics(
            cell, replayer, prof.policy.preempt_below, prof.monitor.min_tokens
        )
        for name, values in cell_samples.items():
            samples[f"{cell.policy}|{cell.sessions}|{name}"] = [round(v, 3) for v in values]
        out_cells.append(
            {
                "policy": cell.policy,
                "sessions": cell.sessions,
                "metrics": metrics,
                "error_samples": cell.errors[:5],
            }
        )
    _fill_relative(out_cells)
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": opts.command,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "setup": {
            "mix": mix.name,
            "profile": mix.profile,
            "conversations": len(mix.conversations),
            "max_turns": opts.max_turns,
            "solo_conversations": opts.solo_conversations,
            "sessions": list(opts.sessions),
            "quick": opts.quick,
            "cancel_after_s": list(opts.cancel_after_s),
            "clock": opts.clock,
            "policies": [p.name for p in plist],
            "tiers": [
                {
                    "name": t.name,
                    "ttft_ms": t.profile.ttft_ms,
                    "itl_ms": t.profile.itl_ms,
                    "skill": t.profile.skill,
                    "price_in": spec.price_in,
                    "price_out": spec.price_out,
                }
                for t, spec in zip(tiers, prof.tiers, strict=True)
            ],
            "preempt_below": prof.policy.preempt_below,
            "hedge_below": prof.policy.hedge_below,
            "replays": replayer.replays,
        },
        "cells": out_cells,
        "samples": samples,
    }


def _fill_relative(cells: Sequence[dict[str, Any]]) -> None:
    def by_n(policy: str, metric: str) -> dict[int, Any]:
        return {c["sessions"]: c["metrics"].get(metric) for c in cells if c["policy"] == policy}

    bare = by_n("bare", "pace")
    cpu = {p: by_n(p, "server_cpu_us_per_token") for p in ("bare", "bare-proxy")}
    for c in cells:
        m = c["metrics"]
        pace, base = m.get("pace"), bare.get(c["sessions"])
        if pace is not None and base:
            m["throughput_vs_bare"] = round(pace / base, 4)
        # per-token CPU over the bare server's and the bare proxy's, same run, same N
        for p, key in (("bare", "cpu_vs_bare"), ("bare-proxy", "cpu_vs_bare_proxy")):
            own, ref = m.get("server_cpu_us_per_token"), cpu[p].get(c["sessions"])
            if own is not None and ref:
                m[key] = round(own / ref, 3)
