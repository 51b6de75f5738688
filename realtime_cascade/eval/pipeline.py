"""What ``realtime-cascade eval`` computes, apart from its argument parsing (``cli``).

``evaluate(options)`` reads and evaluates every input named in ``EvalOptions`` and returns one
``EvalOutput``. A log's groups are evaluated one by one: a group that cannot be evaluated (not
a full matrix, only train rows, too few queries to fold) is listed in ``skipped`` with the
reason and the other groups go on. ``EvalOutput.evaluated_nothing`` is true when logs were
given and none of their groups could be evaluated; the CLI then exits non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import msgspec

from .bootstrap import DEFAULT_RESAMPLES
from .deferral import ConfidenceKind, GroupReport, evaluate_group
from .errors import EvalError
from .frugal import FrugalReport, summarize
from .logs import Skipped, partition_groups, read_log, write_log
from .routellm import RouteLLMReport, evaluate_routellm, log_rows
from .simlog import sim_rows


class EvalOptions(msgspec.Struct, frozen=True):
    log: Path | None = None
    sim_log: Path | None = None
    n: int = 500
    routellm: Path | None = None
    routellm_log: Path | None = None
    frugalgpt_summary: Path | None = None
    folds: int = 5
    seed: int = 0
    confidence: ConfidenceKind = "calibrated"
    train_fraction: float = 0.5
    passes: int = 3
    bootstrap: int = DEFAULT_RESAMPLES
    tune: bool = True

    @property
    def has_input(self) -> bool:
        return any((self.log, self.sim_log, self.routellm, self.frugalgpt_summary))


class LogReport(msgspec.Struct, frozen=True):
    path: str
    groups: list[GroupReport]
    skipped: list[Skipped] = []


class EvalOutput(msgspec.Struct, frozen=True, omit_defaults=True):
    logs: list[LogReport] = []
    routellm: RouteLLMReport | None = None
    frugalgpt: list[FrugalReport] = []

    @property
    def evaluated_nothing(self) -> bool:
        return bool(self.logs) and not any(log.groups for log in self.logs)


def evaluate_log(path: Path, options: EvalOptions) -> LogReport:
    groups, skipped = partition_groups(read_log(path))
    done: list[GroupReport] = []
    for g in groups:
        try:
            done.append(
                evaluate_group(
                    g,
                    folds=options.folds,
                    seed=options.seed,
                    kind=options.confidence,
                    resamples=options.bootstrap,
                    tradeoffs=options.tune,
                )
            )
        except EvalError as exc:
            skipped.append(Skipped(g.key.benchmark, g.key.chain, str(exc)))
    skipped.sort(key=lambda s: (s.benchmark, s.chain))
    return LogReport(str(path), done, skipped)


def evaluate(options: EvalOptions, progress: TextIO | None = None) -> EvalOutput:
    if options.passes < 1:
        raise EvalError(f"--passes must be at least 1, got {options.passes}")
    if options.bootstrap < 0:
        raise EvalError(f"--bootstrap must be 0 or more, got {options.bootstrap}")
    paths: list[Path] = []
    if options.log:
        paths.append(options.log)
    if options.sim_log:
        if options.n < 2 * options.folds:
            raise EvalError(f"--n {options.n} is too few requests for {options.folds} folds")
        write_log(options.sim_log, sim_rows(options.n, seed=options.seed))
        if progress is not None:
            progress.write(f"wrote {options.n} requests x 2 tiers to {options.sim_log}\n")
        paths.append(options.sim_log)
    if options.routellm_log:
        if not options.routellm:
            raise EvalError("--routellm-log needs --routellm DIR (the data it is made from)")
        write_log(
            options.routellm_log,
            log_rows(
                options.routellm,
                seed=options.seed,
                train_fraction=options.train_fraction,
                passes=options.passes,
            ),
        )
        if progress is not None:
            progress.write(f"wrote the RouteLLM log to {options.routellm_log}\n")
        paths.append(options.routellm_log)
    logs = [evaluate_log(path, options) for path in paths]
    routellm = (
        evaluate_routellm(
            options.routellm,
            seed=options.seed,
            train_fraction=options.train_fraction,
            passes=options.passes,
        )
        if options.routellm
        else None
    )
    frugal = summarize(options.frugalgpt_summary) if options.frugalgpt_summary else []
    return EvalOutput(logs=logs, routellm=routellm, frugalgpt=frugal)
