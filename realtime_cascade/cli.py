"""``realtime-cascade``: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import msgspec

from demos.booking.demo import add_demo_parser

from . import config as config_mod
from . import loop
from .core import Action, Filler, Release
from .eval.cli import add_eval_parser
from .models import cli as models_cli
from .models.errors import ModelsError
from .models.provider import start_local
from .policy_cli import add_policy_parser
from .providers.base import Message
from .providers.sim_upstream import add_sim_upstream_parser
from .runtime import TurnRequest, TurnRunner
from .schema import add_schema_parser
from .server import add_serve_parser
from .trace import render, summary
from .traces_cli import add_traces_parser


def _ask(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    profile = config_mod.build_profile(cfg, args.profile)
    messages = []
    if args.system:
        messages.append(Message("system", args.system))
    messages.append(Message("user", args.text))
    request = TurnRequest(tuple(messages), seed=args.seed)
    stream = not args.json

    def emit(action: Action) -> None:
        if not stream:
            return
        match action:
            case Release(text=text):
                sys.stdout.write(text)
                sys.stdout.flush()
            case Filler(text=text):
                sys.stdout.write(f"[{text}] ")
                sys.stdout.flush()
            case _:
                pass

    async def main() -> object:
        try:
            await start_local(profile.providers)  # local models load before the turn's clock
            return await TurnRunner(profile, request, emit).run()
        finally:
            await profile.aclose()

    trace = loop.run(main)
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary(trace)).decode() + "\n")  # type: ignore[arg-type]
    else:
        sys.stdout.write("\n\n" + render(trace) + "\n")  # type: ignore[arg-type]
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime-cascade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser("ask", help="run one turn in-process and print the released text")
    ask.add_argument("text")
    ask.add_argument("--config", default=None, help="TOML config (default: the embedded sim tiers)")
    ask.add_argument("--profile", default="default")
    ask.add_argument("--system", default=None, help="system instructions")
    ask.add_argument("--seed", type=int, default=0)
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.set_defaults(func=_ask)

    add_serve_parser(sub)
    add_sim_upstream_parser(sub)
    add_schema_parser(sub)
    add_eval_parser(sub)
    add_demo_parser(sub)
    add_traces_parser(sub)
    add_policy_parser(sub)
    models_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except config_mod.ConfigError as exc:
        sys.stderr.write(f"realtime-cascade: config error: {exc}\n")
        return 2
    except ModelsError as exc:  # a local model that is not fetched, built or healthy
        sys.stderr.write(f"realtime-cascade: {exc.message}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
