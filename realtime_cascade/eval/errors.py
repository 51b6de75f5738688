"""Errors raised by the offline evaluation (``realtime-cascade eval``).

EvalError
├── LogFormatError      a CSV log that cannot be read: a missing column, a value of the wrong
│                       type or range; names the file and line
├── LogContentError     a log that reads but cannot be evaluated: a query missing a model's
│                       row, a duplicate row, a query in both splits, too few queries to fold
└── DataError           an external data directory (RouteLLM, FrugalGPT summary) that is
                        missing files or has rows of an unexpected shape
"""

from __future__ import annotations


class EvalError(Exception):
    """Base class of the evaluation's errors; the CLI prints it and exits with status 2."""


class LogFormatError(EvalError):
    """A row or header of a CSV log that does not parse."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class LogContentError(EvalError):
    """A log whose rows parse but do not form an evaluable set of queries."""


class DataError(EvalError):
    """An external data directory that is not laid out as expected."""
