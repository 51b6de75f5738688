"""``realtime-cascade serve``: the Realtime-compatible WebSocket API, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

import anyio
import msgspec

from .. import config as config_mod
from .. import loop
from ..server.app import SHUTDOWN_GRACE_S, RealtimeServer
from ..server.state import REDIS_URL_ENV
from ..server.workers import Supervisor, die_with_parent, reserve_port, signal_ready
from .errors import CommandError, port_in_use
from .options import CONFIG_HELP


def add_serve_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve the Realtime-compatible WebSocket API and the browser console",
        description="Serve the OpenAI Realtime-compatible WebSocket API (one cascade per "
        "profile; the client's model= picks it), /healthz, /metrics and the browser console, "
        "until Ctrl-C or SIGTERM.",
    )
    p.add_argument("--config", default=None, help=CONFIG_HELP)
    p.add_argument("--host", default=None, help="listen address (default: from config)")
    p.add_argument("--port", type=int, default=None, help="port (default: from config; 0: any)")
    p.add_argument(
        "--grace",
        type=float,
        default=SHUTDOWN_GRACE_S,
        help="seconds running responses get to finish on shutdown",
    )
    p.add_argument(
        "--audit",
        default=None,
        metavar="PATH",
        help="append every turn's trace to PATH as JSON lines (-: stdout); overrides [audit] "
        "path and REALTIME_CASCADE_AUDIT",
    )
    p.add_argument(
        "--agent",
        default=None,
        metavar="MODULE:ATTR",
        help="bind this agent (a realtime_cascade.Agent, e.g. mypkg.bot:agent) to every "
        "profile, or to --profile's; overrides the profiles' `agent`",
    )
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="with --agent: the profile(s) to bind it to (repeatable; default: all)",
    )
    p.add_argument(
        "--workers",
        default="auto",
        metavar="N",
        help="worker processes sharing the port (auto: one per core when [state] redis_url is "
        "set, else 1: without shared state, per-key limits would count per worker)",
    )
    p.add_argument(
        "--lazy-local",
        action="store_true",
        help="start local model servers (kind = \"local\" tiers) at their first turn, not "
        "before the port opens (the default: loading takes seconds, longer than a first-token "
        "timeout)",
    )
    p.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=run_serve)


def worker_count(value: str, shared_state: bool, cores: int | None = None) -> int:
    """``--workers``: a positive number, or ``auto``."""
    if value == "auto":
        if not shared_state:
            return 1
        if cores is None:  # the cores this process may run on (affinity, cpusets), not the host's
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return max(1, cores or os.cpu_count() or 1)
    try:
        n = int(value)
    except ValueError:
        raise config_mod.ConfigError(
            f"--workers: expected a number or 'auto', got {value!r}"
        ) from None
    if n < 1:
        raise config_mod.ConfigError("--workers must be at least 1")
    return n


def run_serve(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    if getattr(args, "audit", None):
        audit = msgspec.structs.replace(cfg.audit, path=args.audit)
        cfg = msgspec.structs.replace(cfg, audit=audit)
    agent = getattr(args, "agent", None)
    names_agent = agent or any(p.agent for p in cfg.profiles.values())
    if names_agent and os.getcwd() not in sys.path:
        # as uvicorn does for its app: an agent's module is found from where you run this
        sys.path.insert(0, os.getcwd())
    if agent:
        cfg = config_mod.with_agent(cfg, agent, tuple(args.profile))
    logging.basicConfig(
        level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if cfg.log_level != "debug":  # one INFO line per HTTP request is noise at this level
        logging.getLogger("websockets").setLevel(logging.WARNING)
    start_local = not getattr(args, "lazy_local", False)
    worker_fd: int | None = getattr(args, "worker_fd", None)
    if worker_fd is not None:  # one of a supervisor's workers
        die_with_parent()
        loop.run(_serve_main, cfg, args.host, args.port, args.grace, worker_fd, start_local)
        return 0
    shared = bool(os.environ.get(REDIS_URL_ENV) or cfg.state.redis_url)
    n = worker_count(str(getattr(args, "workers", "1")), shared)
    if n == 1:
        try:
            loop.run(
                _serve_main, cfg, args.host, args.port, args.grace, None, start_local
            )
        except Exception as exc:
            if port_in_use(exc):
                port = cfg.server.port if args.port is None else args.port
                raise CommandError(
                    f"port {port} is in use: pass --port (0: any free port)"
                ) from None
            raise
        return 0
    if not shared:
        logging.getLogger(__name__).warning(
            "%d workers without [state] redis_url: per-key limits, budgets, breakers and router "
            "statistics are each worker's own",
            n,
        )
    return _supervise(cfg, args, n)


def _supervise(cfg: config_mod.Config, args: argparse.Namespace, n: int) -> int:
    host = args.host if args.host is not None else cfg.server.host
    port = args.port if args.port is not None else cfg.server.port
    holder = reserve_port(host, port)  # port 0: pick one now, for every worker
    port = holder.getsockname()[1]

    def command(ready_fd: int) -> Sequence[str]:
        argv = [sys.executable, "-m", "realtime_cascade.cli.main", "serve", "--workers", "1"]
        argv += ["--worker-fd", str(ready_fd), "--host", host, "--port", str(port)]
        argv += ["--grace", str(args.grace)]
        if args.config:
            argv += ["--config", args.config]
        if getattr(args, "audit", None):
            argv += ["--audit", args.audit]
        if getattr(args, "lazy_local", False):
            argv += ["--lazy-local"]
        if getattr(args, "agent", None):
            argv += ["--agent", args.agent]
            for name in args.profile:
                argv += ["--profile", name]
        return argv

    shown = f"[{host}]" if ":" in host else host

    def announce() -> None:
        for name in sorted(cfg.profiles):
            print(f"realtime-cascade: serving ws://{shown}:{port}/v1/realtime?model={name}")
        print(
            f"realtime-cascade: health at http://{shown}:{port}/healthz "
            f"({n} workers; Ctrl-C to stop)",
            flush=True,
        )

    try:
        return Supervisor(command, n, grace_s=args.grace, on_ready=announce).run()
    finally:
        holder.close()


async def _serve_main(
    cfg: config_mod.Config,
    host: str | None,
    port: int | None,
    grace: float,
    worker_fd: int | None = None,
    start_local: bool = True,
) -> None:
    server = RealtimeServer(
        cfg, host=host, port=port, reuse_port=worker_fd is not None, start_local=start_local
    )
    await server.start()
    # The cyclic collector stops every session at once, so its pauses land on p99 latency.
    # What is alive now (modules, config, profiles) lives as long as the process: frozen, full
    # collections stop rescanning it. A larger young generation then makes collections rarer;
    # most of what a streamed token allocates is freed by reference counting anyway. Measured
    # in the server under the bench's 200 sessions: the longest pause 138 ms -> 47 ms, time in
    # the collector 1520 ms -> 528 ms.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        if worker_fd is not None:  # the supervisor announces the port once, for every worker
            signal_ready(worker_fd)
        for name in sorted(server.profiles) if worker_fd is None else ():
            print(f"realtime-cascade: serving {server.url(name)}", flush=True)
        host = f"[{server.host}]" if ":" in server.host else server.host
        if worker_fd is None:
            if server.static_dir is not None:
                print(
                    f"realtime-cascade: browser console at http://{host}:{server.port}/",
                    flush=True,
                )
            print(
                f"realtime-cascade: health at http://{host}:{server.port}/healthz "
                "(Ctrl-C to stop)",
                flush=True,
            )
        for name, why in sorted(server.local_status.items()) if worker_fd is None else ():
            state = "ready" if why is None else f"not started: {why}"
            print(f"realtime-cascade: local models of profile {name!r} {state}", flush=True)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                print(
                    f"realtime-cascade: {signal.Signals(signum).name}, shutting down",
                    file=sys.stderr,
                    flush=True,
                )
                break
    finally:
        with anyio.CancelScope(shield=True):
            await server.shutdown(grace)
