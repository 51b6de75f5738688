"""FrugalGPT's published aggregate tables, put through the same train-chooses, test-reports rule.

The FrugalGPT snapshot holds no per-query responses (those live in release archives that are not
here), so ``eval --log`` cannot run on it. What it does hold, per dataset, is one row per single
2024 model and one per FrugalGPT budget, each with train and test accuracy and cost per query.
That is enough for the comparisons ``deferral.compare`` makes: the FrugalGPT budget is chosen on
the train columns (the cheapest that reaches the single model's train accuracy, or the most
accurate within its train cost), and its test columns are reported.

Only ``summary_<DATASET>_<prompt>_full_2024.csv`` files are read: the ``*_2024updatedmodel``
files mix in 2023 rows whose costs are on another scale.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import msgspec

from .deferral import Candidate, Comparison, Fold, Policy, compare
from .errors import DataError
from .outcomes import Totals

_FILE = re.compile(r"summary_(?P<dataset>[A-Za-z0-9]+)_(?P<prompt>[A-Za-z0-9]+)_full_2024\.csv")
_COLUMNS = (
    "Test_acc",
    "Test_cost",
    "Test_size",
    "Train_acc",
    "Train_cost",
    "Train_size",
    "Budget",
    "Method",
)
FRUGAL = "FrugalGPT"


class SummaryPoint(msgspec.Struct, frozen=True):
    name: str
    accuracy: float  # test
    mean_cost_usd: float
    train_accuracy: float
    train_mean_cost_usd: float


class FrugalReport(msgspec.Struct, frozen=True):
    dataset: str
    prompt: str
    n_train: int
    n_test: int
    models: list[SummaryPoint]  # cost order
    frugalgpt: list[SummaryPoint]  # by budget
    reference_model: str  # the single model most accurate on test
    comparisons: list[Comparison]  # FrugalGPT against each single model


def _totals(n: int, acc: float, cost: float) -> Totals:
    return Totals(n=n, cost=cost * n, correct=acc * n)


def _candidates(path: Path) -> tuple[list[Candidate], list[Candidate]]:
    singles: list[Candidate] = []
    frugal: list[Candidate] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not set(_COLUMNS) <= set(reader.fieldnames or ()):
                raise DataError(f"{path}: expected columns {', '.join(_COLUMNS)}")
            for row in reader:
                try:
                    test = _totals(
                        int(row["Test_size"]), float(row["Test_acc"]), float(row["Test_cost"])
                    )
                    train = _totals(
                        int(row["Train_size"]), float(row["Train_acc"]), float(row["Train_cost"])
                    )
                    budget = float(row["Budget"])
                except ValueError as exc:
                    raise DataError(f"{path}:{reader.line_num}: {exc}") from None
                if row["Method"] == FRUGAL:
                    frugal.append(Candidate(Policy((f"{FRUGAL}@{budget:.3g}",)), train, test))
                else:
                    singles.append(Candidate(Policy((row["Method"],)), train, test))
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not singles or not frugal:
        raise DataError(f"{path}: needs single-model rows and {FRUGAL} rows")
    return singles, frugal


def _point(c: Candidate) -> SummaryPoint:
    return SummaryPoint(
        c.policy.models[0], c.test.accuracy, c.test.mean_cost, c.train.accuracy, c.train.mean_cost
    )


def summarize_file(path: Path) -> FrugalReport:
    m = _FILE.fullmatch(path.name)
    if m is None:
        raise DataError(f"{path}: not a summary_<DATASET>_<prompt>_full_2024.csv file")
    singles, frugal = _candidates(path)
    singles.sort(key=lambda c: (c.test.mean_cost, c.policy.models[0]))
    fold = Fold(tuple(singles + frugal), tuple(singles))
    ref = max(range(len(singles)), key=lambda i: (singles[i].test.accuracy, -i))

    def pool(f: Fold) -> Sequence[Candidate]:
        return frugal

    return FrugalReport(
        dataset=m["dataset"],
        prompt=m["prompt"],
        n_train=singles[0].train.n,
        n_test=singles[0].test.n,
        models=[_point(c) for c in singles],
        frugalgpt=[_point(c) for c in frugal],
        reference_model=singles[ref].policy.models[0],
        comparisons=[compare([fold], i, "raw", pool=pool) for i in range(len(singles))],
    )


def summarize(root: Path) -> list[FrugalReport]:
    """Every ``summary_*_full_2024.csv`` under ``root`` (or ``root/summary``)."""
    base = root / "summary" if (root / "summary").is_dir() else root
    paths = sorted(p for p in base.glob("summary_*_full_2024.csv") if _FILE.fullmatch(p.name))
    if not paths:
        raise DataError(f"{root}: no summary_<DATASET>_<prompt>_full_2024.csv files")
    return [summarize_file(p) for p in paths]
