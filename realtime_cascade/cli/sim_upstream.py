"""``realtime-cascade sim-upstream``: serve the sim tiers as an OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from .. import loop
from ..providers.sim import SimProfile
from ..providers.sim_upstream import SimUpstream, default_profiles, parse_fault
from .errors import port_in_use


def parse_profile(spec: str) -> tuple[str, SimProfile]:
    """``"name=light,ttft_ms=150,itl_ms=15,skill=0.5"`` → ``("light", SimProfile(...))``.

    Without ``name=`` the first item is the name (``"light,skill=0.4"``); fields not given
    take :class:`SimProfile`'s defaults.
    """
    fields: dict[str, str] = {}
    name: str | None = None
    for k, part in enumerate(p.strip() for p in spec.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            if k == 0 and key:
                name = key
                continue
            raise ValueError(f"profile {spec!r}: expected key=value, got {part!r}")
        if key == "name":
            name = value
        else:
            fields[key] = value
    if not name:
        raise ValueError(f"profile {spec!r}: no name")
    try:
        profile = msgspec.convert(fields, SimProfile, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"profile {spec!r}: {exc}") from None
    return name, profile


def add_sim_upstream_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``sim-upstream`` to a CLI's subparsers (``argparse._SubParsersAction``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim-upstream",
        help="serve the sim tiers as an OpenAI-compatible endpoint",
        description="Serve the simulated tiers as an OpenAI-compatible HTTP endpoint "
        "(/v1/chat/completions with SSE, logprobs and usage; /v1/models).",
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_sim_upstream)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="port to bind (8100; 0: any)")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SPEC",
        help="a model: name=light,ttft_ms=150,itl_ms=15,skill=0.5 (repeatable; "
        "default: light and strong)",
    )
    parser.add_argument(
        "--fault",
        default=None,
        metavar="KIND",
        help="inject into every request: status:N, ttft_ms:N, stall_after:K, drop_after:K, "
        "eof_after:K, malformed_after:K, error_after:K, keepalive[:MS], content_type "
        "(comma-separated)",
    )
    parser.add_argument(
        "--clock",
        choices=["absolute", "relative"],
        default="absolute",
        help="absolute (default): each token due at the stream's start plus its scheduled "
        "offset; relative: one sleep per gap after each send (lateness accumulates)",
    )


def run_sim_upstream(args: argparse.Namespace) -> int:
    try:
        profiles = dict(parse_profile(p) for p in args.profile) or default_profiles()
        fault = parse_fault(args.fault) if args.fault else None
        upstream = SimUpstream(profiles, fault, clock=args.clock)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"sim-upstream: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(upstream.serve, args.host, args.port)
            models = ", ".join(upstream.profiles)
            print(
                f"sim-upstream on http://{args.host}:{port}/v1 (models: {models})",
                file=sys.stderr,
                flush=True,
            )

    try:
        loop.run(run)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # the task group wraps a failed bind in an ExceptionGroup
        if port_in_use(exc):
            print(f"sim-upstream: port {args.port} is in use: pass --port", file=sys.stderr)
            return 2
        if isinstance(exc, OSError):
            print(f"sim-upstream: {exc}", file=sys.stderr)
            return 1
        raise
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="realtime-cascade sim-upstream")
    _add_arguments(parser)
    return run_sim_upstream(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
