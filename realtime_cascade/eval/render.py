"""Plain-text tables for the eval reports (the ``--json`` output carries the same numbers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .deferral import Comparison, GroupReport, Operating
from .frugal import FrugalReport
from .routellm import RouteLLMReport


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _usd(x: float) -> str:
    return f"${x:.3g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _op(op: Operating | None) -> list[str]:
    if op is None:
        return ["-", "-", "-"]
    saving = "-" if op.cost_saving is None else _pct(op.cost_saving)
    return [
        f"{_pct(op.accuracy)} ({op.accuracy_vs_target_pts:+.1f})",
        _usd(op.mean_cost_usd),
        saving,
    ]


def _policy_summary(policies: Sequence[str]) -> str:
    """The policies chosen in the folds: the one chosen most often, and how often."""
    top, count = Counter(policies).most_common(1)[0]
    return top if count == len(policies) else f"{top} ({count}/{len(policies)} folds)"


# The three operating points of a comparison, three columns each (``_op``).
_OP_COLUMNS = (
    "@acc: acc (Δpts)",
    "$/q",
    "saving",
    "@acc-1pt: acc (Δpts)",
    "$/q",
    "saving",
    "@cost: acc (gain pts)",
    "$/q",
    "saving",
)


def _comparisons(comparisons: Sequence[Comparison], reference: str) -> list[str]:
    header = ["vs model", "its acc", "its $/q", *_OP_COLUMNS]
    rows = [
        [
            c.model + (" *" if c.model == reference else ""),
            _pct(c.accuracy),
            _usd(c.mean_cost_usd),
            *_op(c.at_accuracy),
            *_op(c.at_accuracy_minus_1pt),
            *_op(c.at_cost),
        ]
        for c in comparisons
    ]
    return _table(header, rows)


def render_group(r: GroupReport, source: str) -> str:
    label = " ".join(f"{k}={v}" for k, v in (("benchmark", r.benchmark), ("chain", r.chain)) if v)
    out = [
        f"== {source}{' — ' + label if label else ''}",
        f"   {r.evaluation}; {r.n_queries} queries, {r.n_held_out} held out; "
        f"confidence: {r.confidence}",
        "",
        "  single models (held-out rows; cheapest first):",
    ]
    out += _table(
        ["model", "accuracy", "$/query", "latency ms", "calibration P(correct)=σ(a+b·lp)"],
        [
            [
                m.name + (" *" if m.name == r.reference_model else ""),
                _pct(m.accuracy),
                _usd(m.mean_cost_usd),
                f"{m.mean_latency_ms:.0f}",
                f"a={m.calibration.bias:.3g} b={m.calibration.slope:.3g}",
            ]
            for m in r.models
        ],
    )
    out += ["", "  held-out cost-accuracy curve (the most accurate policy on train per cost cap):"]
    out += _table(
        ["policy", "accuracy", "$/query", "latency ms", "train acc"],
        [
            [
                _policy_summary(p.policies),
                _pct(p.accuracy),
                _usd(p.mean_cost_usd),
                f"{p.mean_latency_ms:.0f}",
                _pct(p.train_accuracy),
            ]
            for p in r.curve
        ],
    )
    out += [
        "",
        "  deferral against each single model (* = most accurate; Δ vs the target accuracy;",
        "  saving = 1 - cost / the model's cost; policies chosen on train, scored held out):",
    ]
    out += _comparisons(r.comparisons, r.reference_model)
    out += ["", f"  each cascade alone against {r.reference_model}:"]
    out += _table(
        ["cascade", *_OP_COLUMNS],
        [
            [
                c.cascade,
                *_op(c.vs_reference.at_accuracy),
                *_op(c.vs_reference.at_accuracy_minus_1pt),
                *_op(c.vs_reference.at_cost),
            ]
            for c in r.cascades
        ],
    )
    return "\n".join(out)


def render_routellm(r: RouteLLMReport, source: str) -> str:
    out = [
        f"== RouteLLM ({source}): train on {_pct(r.train_fraction)} of each benchmark "
        f"(seed {r.seed}, {r.passes} passes), report on the rest",
        "   APGR: area under PGR vs share of strong calls; CPT(x): strong calls needed for "
        "PGR x (lower is better)",
    ]
    for b in r.benchmarks:
        out += [
            "",
            f"  {b.benchmark}: {b.n_items} queries ({b.n_excluded} contaminated dropped), "
            f"{b.n_train} train / {b.n_test} held out; {b.metric}: weak {b.weak_test:.3f}, "
            f"strong {b.strong_test:.3f}; strong better on {_pct(b.strong_better_train)} of train",
        ]

        def sd(x: float | None) -> str:
            return "" if x is None else f" ±{x:.3f}"

        out += _table(
            ["router", "APGR", "CPT(50%)", "CPT(80%)", "step"],
            [
                [
                    s.router,
                    f"{s.apgr:.3f}{sd(s.apgr_sd)}",
                    f"{_pct(s.cpt50)}{'' if s.cpt50_sd is None else f' ±{_pct(s.cpt50_sd)}'}",
                    f"{_pct(s.cpt80)}{'' if s.cpt80_sd is None else f' ±{_pct(s.cpt80_sd)}'}",
                    "-" if s.learning_rate is None else f"{s.learning_rate:g}",
                ]
                for s in b.routers
            ],
        )
    out += ["", "  (random: the exact expectation, ± the sd of 200 seeded random orderings)"]
    return "\n".join(out)


def render_frugal(reports: Sequence[FrugalReport], source: str) -> str:
    out = [
        f"== FrugalGPT summary tables ({source}): aggregate rows, not per-query logs;",
        "   the FrugalGPT budget is chosen on the train columns and scored on the test columns",
    ]
    for r in reports:
        ref = next(c for c in r.comparisons if c.model == r.reference_model)
        out += [
            "",
            f"  {r.dataset} ({r.prompt}; {r.n_train} train / {r.n_test} test), "
            f"vs the most accurate single model on test:",
        ]
        out += _comparisons([ref], r.reference_model)
    return "\n".join(out)
