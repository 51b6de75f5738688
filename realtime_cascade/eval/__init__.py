"""Offline evaluation: ``realtime-cascade eval``.

- ``logs``: per-query CSV logs (one row per query and model), read into checked groups.
- ``deferral``: confidence-based deferral over cascades of a group's models; choices on train,
  numbers on held-out rows (a ``split`` column, or k-fold cross-validation).
- ``simlog``: such logs replayed from the sim tiers, so all of it runs without real data.
- ``routellm``: the online router on RouteLLM's released per-query results (APGR, CPT).
- ``frugal``: FrugalGPT's aggregate tables through the same choose-on-train rule.
- ``cli``: the subcommand (``add_eval_parser``, ``run_eval``; import it from there);
  ``render``: its text tables.
"""

from .errors import DataError, EvalError, LogContentError, LogFormatError

__all__ = [
    "DataError",
    "EvalError",
    "LogContentError",
    "LogFormatError",
]
