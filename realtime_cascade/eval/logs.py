"""Per-query logs: one CSV row per (query, model), read into one columnar table per group.

Columns (header names, any order; extra columns are ignored):

    query_idx       the query's id (any string; unique within a group)
    model           the model that answered it
    correct         0 or 1 (``true`` / ``false`` also read)
    raw_confidence  a log-probability (<= 0): how sure the model was of its answer; ``-inf``
                    (a token of probability zero) is read and sorts below every other value
    cost_usd        what the call cost (>= 0)
    latency_ms      how long it took (>= 0)
    benchmark       optional: groups are evaluated separately
    chain           optional: likewise (e.g. one model family per chain)
    split           optional: ``train`` or ``test`` for every row, or empty for every row

A group must be a full matrix: every query answered by every model of the group, each once, and
a query's rows agree on ``split``. A bad value is a typed error naming the file and line; a group
that is not such a matrix is a typed error naming the group and query, never a silently dropped
row. ``partition_groups`` keeps the groups that check out and lists the others with the reason,
so that one bad group does not stop the rest.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from .errors import LogContentError, LogFormatError

REQUIRED = ("query_idx", "model", "correct", "raw_confidence", "cost_usd", "latency_ms")
OPTIONAL = ("benchmark", "chain", "split")
COLUMNS = REQUIRED + OPTIONAL

Split = Literal["", "train", "test"]


class LogRow(msgspec.Struct, frozen=True):
    query_idx: str
    model: str
    correct: bool
    raw_confidence: float
    cost_usd: float
    latency_ms: float
    benchmark: str = ""
    chain: str = ""
    split: Split = ""


class GroupKey(msgspec.Struct, frozen=True, order=True):
    benchmark: str = ""
    chain: str = ""

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in (("benchmark", self.benchmark), ("chain", self.chain)) if v]
        return " ".join(parts) or "(all rows)"


class Group(msgspec.Struct, frozen=True):
    """One group's log as columns: ``correct[m][q]`` is model ``models[m]`` on ``queries[q]``.

    ``models`` are ordered by mean cost (then by name), which is the order a cascade calls them.
    """

    key: GroupKey
    models: tuple[str, ...]
    queries: tuple[str, ...]
    splits: tuple[Split, ...]
    correct: tuple[tuple[bool, ...], ...]
    confidence: tuple[tuple[float, ...], ...]
    cost: tuple[tuple[float, ...], ...]
    latency: tuple[tuple[float, ...], ...]

    @property
    def has_split(self) -> bool:
        return bool(self.splits) and self.splits[0] != ""

    def indices(self, split: Split) -> list[int]:
        return [q for q, s in enumerate(self.splits) if s == split]


# --- reading ------------------------------------------------------------------------------


def _number(path: str, line: int, column: str, text: str, *, upper: float | None) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LogFormatError(path, line, f"{column} is not a number: {text!r}") from None
    # A log-probability of -inf is real (a token the model gave probability zero); nan and
    # +inf are not, and neither is an infinite cost or latency.
    if not (math.isfinite(value) or (column == "raw_confidence" and value == -math.inf)):
        raise LogFormatError(path, line, f"{column} must be finite, got {text!r}")
    if column == "raw_confidence":
        if upper is not None and value > upper:
            raise LogFormatError(
                path, line, f"raw_confidence must be a log-probability (<= 0), got {text!r}"
            )
    elif value < 0:
        raise LogFormatError(path, line, f"{column} must be >= 0, got {text!r}")
    return value


def _flag(path: str, line: int, text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true"):
        return True
    if t in ("0", "false"):
        return False
    raise LogFormatError(path, line, f"correct must be 0 or 1, got {text!r}")


def parse_rows(lines: Iterable[str], path: str = "<log>") -> list[LogRow]:
    """Parse CSV text (header first) into rows, checking every value."""
    reader = csv.DictReader(lines)
    header = reader.fieldnames
    if header is None:
        raise LogFormatError(path, 1, "empty file: expected a header row")
    names = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise LogFormatError(path, 1, f"missing column(s): {', '.join(missing)}")
    if len(set(names)) != len(names):
        raise LogFormatError(path, 1, "duplicate column names in the header")
    reader.fieldnames = names
    rows: list[LogRow] = []
    for raw in reader:
        line = reader.line_num
        if None in raw:  # DictReader puts surplus cells under the key None
            raise LogFormatError(path, line, "more cells than header columns")
        cells = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        for c in REQUIRED:
            if not cells.get(c):
                raise LogFormatError(path, line, f"empty {c}")
        split = cells.get("split", "")
        if split not in ("", "train", "test"):
            raise LogFormatError(path, line, f"split must be train, test or empty, got {split!r}")
        rows.append(
            LogRow(
                query_idx=cells["query_idx"],
                model=cells["model"],
                correct=_flag(path, line, cells["correct"]),
                raw_confidence=_number(
                    path, line, "raw_confidence", cells["raw_confidence"], upper=0.0
                ),
                cost_usd=_number(path, line, "cost_usd", cells["cost_usd"], upper=None),
                latency_ms=_number(path, line, "latency_ms", cells["latency_ms"], upper=None),
                benchmark=cells.get("benchmark", ""),
                chain=cells.get("chain", ""),
                split=split,  # type: ignore[arg-type]  # checked against the Literal above
            )
        )
    if not rows:
        raise LogFormatError(path, 2, "no data rows after the header")
    return rows


def read_log(path: Path) -> list[LogRow]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return parse_rows(f, str(path))
    except OSError as exc:
        raise LogFormatError(str(path), 0, f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LogFormatError(str(path), 0, "not UTF-8 text") from None
    except csv.Error as exc:
        raise LogFormatError(str(path), 0, f"malformed CSV: {exc}") from None


def write_log(path: Path, rows: Sequence[LogRow]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(
                (
                    r.query_idx,
                    r.model,
                    int(r.correct),
                    repr(r.raw_confidence),
                    repr(r.cost_usd),
                    repr(r.latency_ms),
                    r.benchmark,
                    r.chain,
                    r.split,
                )
            )


# --- grouping -----------------------------------------------------------------------------


class Skipped(msgspec.Struct, frozen=True):
    """A group that could not be evaluated, and why."""

    benchmark: str
    chain: str
    reason: str


def _by_key(rows: Sequence[LogRow]) -> dict[GroupKey, list[LogRow]]:
    by_key: dict[GroupKey, list[LogRow]] = {}
    for r in rows:
        by_key.setdefault(GroupKey(r.benchmark, r.chain), []).append(r)
    return by_key


def group_rows(rows: Sequence[LogRow]) -> list[Group]:
    """Split rows into groups (by benchmark and chain) and check that each is a full matrix;
    the first group that is not raises ``LogContentError``."""
    by_key = _by_key(rows)
    return [_group(key, by_key[key]) for key in sorted(by_key)]


def partition_groups(rows: Sequence[LogRow]) -> tuple[list[Group], list[Skipped]]:
    """Like ``group_rows``, but a group that does not check out is listed, not raised."""
    by_key = _by_key(rows)
    good: list[Group] = []
    bad: list[Skipped] = []
    for key in sorted(by_key):
        try:
            good.append(_group(key, by_key[key]))
        except LogContentError as exc:
            bad.append(Skipped(key.benchmark, key.chain, str(exc)))
    return good, bad


def _group(key: GroupKey, rows: list[LogRow]) -> Group:
    where = key.label()
    cells: dict[tuple[str, str], LogRow] = {}
    query_split: dict[str, Split] = {}
    for r in rows:
        if (r.query_idx, r.model) in cells:
            raise LogContentError(
                f"{where}: query {r.query_idx!r} has two rows for model {r.model!r}"
            )
        cells[(r.query_idx, r.model)] = r
        seen = query_split.setdefault(r.query_idx, r.split)
        if seen != r.split:
            raise LogContentError(
                f"{where}: query {r.query_idx!r} has rows in split {seen or '(none)'!r} "
                f"and {r.split or '(none)'!r}"
            )
    names = sorted({r.model for r in rows})
    if len(names) < 2:
        raise LogContentError(f"{where}: one model ({names[0]!r}); a cascade needs two or more")
    queries = list(query_split)
    for q in queries:
        absent = [m for m in names if (q, m) not in cells]
        if absent:
            raise LogContentError(
                f"{where}: query {q!r} has no row for model(s) {', '.join(map(repr, absent))}"
            )
    splits = {query_split[q] for q in queries}
    if "" in splits and len(splits) > 1:
        raise LogContentError(f"{where}: some queries have a split and some do not")
    if "" not in splits and splits != {"train", "test"}:
        only = next(iter(splits))
        raise LogContentError(f"{where}: every query is in split {only!r}; need train and test")

    def mean_cost(m: str) -> float:
        return sum(cells[(q, m)].cost_usd for q in queries) / len(queries)

    # The order a cascade calls models in: cheapest first (a price list, not a fitted choice).
    models = sorted(names, key=lambda m: (mean_cost(m), m))

    def column(m: str, field: str) -> tuple[float, ...]:
        return tuple(float(getattr(cells[(q, m)], field)) for q in queries)

    return Group(
        key=key,
        models=tuple(models),
        queries=tuple(queries),
        splits=tuple(query_split[q] for q in queries),
        correct=tuple(tuple(cells[(q, m)].correct for q in queries) for m in models),
        confidence=tuple(column(m, "raw_confidence") for m in models),
        cost=tuple(column(m, "cost_usd") for m in models),
        latency=tuple(column(m, "latency_ms") for m in models),
    )
