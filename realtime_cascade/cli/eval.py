"""``realtime-cascade eval``: offline evaluation of deferral and routing on recorded data.

Wired into the main parser by ``realtime_cascade.cli`` with ``add_eval_parser(sub)``; the
subcommand's ``func`` is ``run_eval``. Errors in the input are printed and give exit status 2;
so does a log none of whose groups could be evaluated. This module only parses arguments and
prints: the evaluation itself is ``pipeline.evaluate``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from ..eval.bootstrap import DEFAULT_RESAMPLES
from ..eval.errors import EvalError
from ..eval.pipeline import EvalOptions, EvalOutput, evaluate
from ..eval.render import render_frugal, render_group, render_routellm, render_skipped


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
        "--routellm-log",
        type=Path,
        metavar="OUT.csv",
        help="with --routellm: write MMLU and GSM8K as a per-query log (the weak model's "
        "confidence from the words router), then evaluate it",
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
    p.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_RESAMPLES,
        metavar="N",
        help=f"seeded bootstrap resamples of held-out queries for the intervals "
        f"(default {DEFAULT_RESAMPLES}; 0: no intervals)",
    )
    p.add_argument(
        "--no-tune",
        dest="tune",
        action="store_false",
        help="skip the per-cascade cost-error curves (grid against tuned thresholds, AUC)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        metavar="DIR",
        help="write each group's cost-accuracy curves to DIR as a PNG (needs matplotlib)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_eval)
    return p


def options_from(args: argparse.Namespace) -> EvalOptions:
    return EvalOptions(
        log=args.log,
        sim_log=args.sim_log,
        n=args.n,
        routellm=args.routellm,
        routellm_log=args.routellm_log,
        frugalgpt_summary=args.frugalgpt_summary,
        folds=args.folds,
        seed=args.seed,
        confidence=args.confidence,
        train_fraction=args.train_fraction,
        passes=args.passes,
        bootstrap=args.bootstrap,
        tune=args.tune,
    )


def run_eval(args: argparse.Namespace) -> int:
    options = options_from(args)
    if not options.has_input:
        sys.stderr.write(
            "realtime-cascade eval: give --log, --sim-log, --routellm or --frugalgpt-summary\n"
        )
        return 2
    try:
        out = evaluate(options, progress=sys.stderr)
        plots = _plot(out, args.plot) if args.plot else []
    except EvalError as exc:
        sys.stderr.write(f"realtime-cascade eval: {exc}\n")
        return 2
    for log in out.logs:
        for s in log.skipped:
            sys.stderr.write(f"realtime-cascade eval: {log.path}: skipped {s.reason}\n")
    for path in plots:
        sys.stderr.write(f"wrote {path}\n")
    status = 0
    if out.evaluated_nothing:
        sys.stderr.write("realtime-cascade eval: no group of the log(s) could be evaluated\n")
        status = 2
    if args.json:
        sys.stdout.write(msgspec.json.encode(out).decode() + "\n")
        return status
    sys.stdout.write(_text(out, args) + "\n")
    return status


def _text(out: EvalOutput, args: argparse.Namespace) -> str:
    parts = [render_group(g, log.path) for log in out.logs for g in log.groups]
    parts += [render_skipped(log.skipped, log.path) for log in out.logs if log.skipped]
    if out.routellm is not None:
        parts.append(render_routellm(out.routellm, str(args.routellm)))
    if out.frugalgpt:
        parts.append(render_frugal(out.frugalgpt, str(args.frugalgpt_summary)))
    return "\n\n".join(parts)


def _plot(out: EvalOutput, directory: Path) -> list[Path]:
    from ..eval.plot import plot_group  # matplotlib is optional (the bench extra)

    return [plot_group(g, directory) for log in out.logs for g in log.groups]


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m realtime_cascade.cli.eval``."""
    parser = argparse.ArgumentParser(prog="realtime-cascade")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
