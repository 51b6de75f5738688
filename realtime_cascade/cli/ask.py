"""``realtime-cascade ask``: one turn in-process, its released text streamed, then its trace."""

from __future__ import annotations

import argparse
import sys

import msgspec

from .. import config as config_mod
from .. import loop
from ..core import Action, Filler, Release
from ..providers.base import Message
from ..runtime import TurnRequest, TurnRunner
from ..trace import render, summary


def run_ask(args: argparse.Namespace) -> int:
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
            return await TurnRunner(profile, request, emit).run()
        finally:
            await profile.aclose()

    trace = loop.run(main)
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary(trace)).decode() + "\n")  # type: ignore[arg-type]
    else:
        sys.stdout.write("\n\n" + render(trace) + "\n")  # type: ignore[arg-type]
    return 0


def add_ask_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = sub.add_parser("ask", help="run one turn in-process and print the released text")
    ask.add_argument("text")
    ask.add_argument("--config", default=None, help="TOML config (default: the embedded sim tiers)")
    ask.add_argument("--profile", default="default")
    ask.add_argument("--system", default=None, help="system instructions")
    ask.add_argument("--seed", type=int, default=0)
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.set_defaults(func=run_ask)
