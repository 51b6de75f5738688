"""Serve, try, measure and evaluate a mid-stream model cascade for voice agents."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import config as config_mod
from ..demos.booking.demo import add_demo_parser
from ..models.errors import ModelsError
from .ask import add_ask_parser
from .errors import CommandError
from .eval import add_eval_parser
from .models import add_parser as add_models_parser
from .policy import add_policy_parser
from .schema import add_schema_parser
from .serve import add_serve_parser
from .sim_upstream import add_sim_upstream_parser
from .traces import add_traces_parser

EPILOG = """\
first steps:
  realtime-cascade ask "Book a table for two at 7pm tonight."   one turn, its trace
  realtime-cascade serve              the API, and the browser console at http://127.0.0.1:8765/
  realtime-cascade demo               the booking agent under three policies
Each command's options: realtime-cascade COMMAND --help"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-cascade",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_ask_parser(sub)
    add_serve_parser(sub)
    add_demo_parser(sub)
    add_sim_upstream_parser(sub)
    add_schema_parser(sub)
    add_eval_parser(sub)
    add_traces_parser(sub)
    add_policy_parser(sub)
    add_models_parser(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """A subcommand without its own description gets its one-line help as one, so that
    ``COMMAND --help`` says what the command is for (recursively: ``traces summarize``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description and helps.get(name):
                    text = str(helps[name])
                    child.description = text[0].upper() + text[1:] + "."
                _describe(child)


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
    except CommandError as exc:
        sys.stderr.write(f"realtime-cascade: {exc}\n")
        return exc.status
    except KeyboardInterrupt:
        # Ctrl-C: the command's own cleanup ran as the interrupt unwound it; no traceback.
        sys.stderr.write("realtime-cascade: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
