"""``realtime-cascade``: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import config as config_mod
from ..demos.booking.demo import add_demo_parser
from .ask import add_ask_parser
from .eval import add_eval_parser
from .policy import add_policy_parser
from .schema import add_schema_parser
from .serve import add_serve_parser
from .sim_upstream import add_sim_upstream_parser
from .traces import add_traces_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realtime-cascade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    add_ask_parser(sub)
    add_serve_parser(sub)
    add_sim_upstream_parser(sub)
    add_schema_parser(sub)
    add_eval_parser(sub)
    add_demo_parser(sub)
    add_traces_parser(sub)
    add_policy_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except config_mod.ConfigError as exc:
        sys.stderr.write(f"realtime-cascade: config error: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
