"""``realtime-cascade ask``: one turn in-process, its released text streamed, then its trace."""

from __future__ import annotations

import argparse
import sys

import msgspec

from .. import config as config_mod
from .. import loop
from ..core import Action, Filler, Release
from ..models.provider import start_local
from ..providers.base import Message
from ..runtime import TurnRequest, TurnRunner
from ..trace import TurnTrace, render, summary
from .options import CONFIG_HELP


def run_ask(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    name = args.profile
    if name is None:  # a config with one profile needs no --profile (`--config booking`)
        only = next(iter(cfg.profiles)) if len(cfg.profiles) == 1 else "default"
        name = "default" if "default" in cfg.profiles else only
    profile = config_mod.build_profile(cfg, name)
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
    assert isinstance(trace, TurnTrace)
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary(trace)).decode() + "\n")
    else:
        sys.stdout.write("\n\n" + render(trace) + "\n")
    if trace.status != "completed":
        # A script must see that the turn did not give an answer (an unreachable endpoint, a
        # budget stop, a deadline), not only a person reading the trace.
        why = trace.decisions[-1].reason if trace.decisions else trace.reason
        sys.stderr.write(f"realtime-cascade: the turn ended {trace.status}: {why}\n")
        return 1
    return 0


def add_ask_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = sub.add_parser(
        "ask",
        help="run one turn in-process: stream the released text, then print its trace",
        description="Run one turn in-process: stream the text as the listener would get it, "
        "then print the turn's trace. Exits 1 when the turn does not complete.",
    )
    ask.add_argument("text", help="the user's request")
    ask.add_argument("--config", default=None, help=CONFIG_HELP)
    ask.add_argument(
        "--profile",
        default=None,
        help="the config's profile to run (default: 'default', or the config's only profile)",
    )
    ask.add_argument("--system", default=None, help="system instructions")
    ask.add_argument(
        "--seed", type=int, default=0, help="seed of the sim tiers (default: %(default)s)"
    )
    ask.add_argument(
        "--json", action="store_true", help="print only the summary, as one JSON object"
    )
    ask.set_defaults(func=run_ask)
