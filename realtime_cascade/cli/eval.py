"""``realtime-cascade eval``: offline evaluation of deferral and routing on recorded data.

Wired into the main parser by ``realtime_cascade.cli`` with ``add_eval_parser(sub)``; the
subcommand's ``func`` is ``run_eval``. Errors in the input are printed and give exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from ..eval.deferral import GroupReport, evaluate_group
from ..eval.errors import EvalError
from ..eval.frugal import FrugalReport, summarize
from ..eval.logs import group_rows, read_log, write_log
from ..eval.render import render_frugal, render_group, render_routellm
from ..eval.routellm import RouteLLMReport, evaluate_routellm
from ..eval.simlog import sim_rows


class LogReport(msgspec.Struct, frozen=True):
    path: str
    groups: list[GroupReport]


class EvalOutput(msgspec.Struct, frozen=True, omit_defaults=True):
    logs: list[LogReport] = []
    routellm: RouteLLMReport | None = None
    frugalgpt: list[FrugalReport] = []


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``eval`` subcommand to an ``add_subparsers()`` object; returns its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "eval",
        help="evaluate deferral on per-query logs, and routing on RouteLLM's data",
        description="Offline evaluation: deferral policies on per-query logs of model calls, "
        "routers on RouteLLM's data, FrugalGPT's budgets on its tables. Every choice is made "
        "on training rows and scored on held-out rows. Bad input exits with status 2.",
    )
    p.add_argument(
        "--log",
        type=Path,
        metavar="FILE.csv",
        help="per-query log: query_idx, model, correct, raw_confidence, cost_usd, "
        "latency_ms [, benchmark, chain, split]",
    )
    p.add_argument(
        "--sim-log",
        type=Path,
        metavar="OUT.csv",
        help="write a log replayed from the sim tiers to OUT.csv, then evaluate it",
    )
    p.add_argument("--n", type=int, default=500, help="requests in the sim log (default 500)")
    p.add_argument(
        "--routellm",
        type=Path,
        metavar="DIR",
        help="RouteLLM data directory: train the online router, report APGR and CPT",
    )
    p.add_argument(
        "--frugalgpt-summary",
        type=Path,
        metavar="DIR",
        help="FrugalGPT summary tables: FrugalGPT's budgets against single models",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=5,
        help="cross-validation folds for logs without a split column (default 5)",
    )
    p.add_argument("--seed", type=int, default=0, help="folds, splits and the sim (default 0)")
    p.add_argument(
        "--confidence",
        choices=("calibrated", "raw"),
        default="calibrated",
        help="defer on P(correct) from a logistic fit (default) or the raw logprob",
    )
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.5,
        help="RouteLLM: share of each benchmark that trains the router (default 0.5)",
    )
    p.add_argument(
        "--passes",
        type=int,
        default=3,
        help="RouteLLM: passes of online SGD over the training queries (default 3)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval)
    return p


def run_eval(args: argparse.Namespace) -> int:
    if not (args.log or args.sim_log or args.routellm or args.frugalgpt_summary):
        sys.stderr.write(
            "realtime-cascade eval: give --log, --sim-log, --routellm or --frugalgpt-summary\n"
        )
        return 2
    try:
        out = _evaluate(args)
    except EvalError as exc:
        sys.stderr.write(f"realtime-cascade eval: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
        return 0
    parts = [render_group(g, log.path) for log in out.logs for g in log.groups]
    if out.routellm is not None:
        parts.append(render_routellm(out.routellm, str(args.routellm)))
    if out.frugalgpt:
        parts.append(render_frugal(out.frugalgpt, str(args.frugalgpt_summary)))
    sys.stdout.write("\n\n".join(parts) + "\n")
    return 0


def _evaluate(args: argparse.Namespace) -> EvalOutput:
    if args.passes < 1:
        raise EvalError(f"--passes must be at least 1, got {args.passes}")
    paths: list[Path] = []
    if args.log:
        paths.append(args.log)
    if args.sim_log:
        if args.n < 2 * args.folds:
            raise EvalError(f"--n {args.n} is too few requests for {args.folds} folds")
        write_log(args.sim_log, sim_rows(args.n, seed=args.seed))
        sys.stderr.write(f"wrote {args.n} requests x 2 tiers to {args.sim_log}\n")
        paths.append(args.sim_log)
    logs = [
        LogReport(
            str(path),
            [
                evaluate_group(g, folds=args.folds, seed=args.seed, kind=args.confidence)
                for g in group_rows(read_log(path))
            ],
        )
        for path in paths
    ]
    routellm = (
        evaluate_routellm(
            args.routellm, seed=args.seed, train_fraction=args.train_fraction, passes=args.passes
        )
        if args.routellm
        else None
    )
    frugal = summarize(args.frugalgpt_summary) if args.frugalgpt_summary else []
    return EvalOutput(logs=logs, routellm=routellm, frugalgpt=frugal)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m realtime_cascade.eval.cli``) until the main CLI wires it."""
    parser = argparse.ArgumentParser(prog="realtime-cascade")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
