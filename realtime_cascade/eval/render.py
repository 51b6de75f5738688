"""Plain-text tables for the eval reports (the ``--json`` output carries the same numbers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from .deferral import Comparison, GroupReport, Operating
from .frugal import FrugalReport
from .logs import Skipped
from .routellm import RouteLLMReport
from .tradeoff import Tradeoff


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


def _ci(ci: tuple[float, float] | None, fmt: str = "{:+.1f}") -> str:
    return "" if ci is None else f" [{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _headline_op(label: str, op: Operating | None) -> list[str]:
    if op is None:
        return [f"    {label}: no policy reaches it"]
    saving = "-" if op.cost_saving is None else _pct(op.cost_saving)
    return [
        f"    {label}: {_pct(op.accuracy)}, {op.accuracy_delta_pts:+.1f} pts vs the model"
        f"{_ci(op.accuracy_delta_ci_pts)}; {_usd(op.mean_cost_usd)}/q, saving {saving}"
        f"{_ci(op.cost_saving_ci, '{:.1%}')}; {_policy_summary(op.policies)}"
    ]


def _headline(c: Comparison, title: str) -> list[str]:
    out = [f"  {title}: {c.model} ({_pct(c.accuracy)} held out at {_usd(c.mean_cost_usd)}/q)"]
    out += _headline_op("at its accuracy", c.at_accuracy)
    out += _headline_op("at 1 point below", c.at_accuracy_minus_1pt)
    out += _headline_op("at its cost", c.at_cost)
    return out


def _tradeoffs(r: GroupReport) -> list[str]:
    rows = [t for t in ([r.tradeoff] if r.tradeoff else []) + r.cascade_tradeoffs]
    if not rows:
        return []

    def auc(x: float, ci: tuple[float, float] | None) -> str:
        return f"{x:.4f}{_ci(ci, '{:.4f}')}"

    def line(t: Tradeoff) -> list[str]:
        return [
            t.cascade,
            auc(t.grid.auc, t.grid.auc_ci),
            auc(t.tuned.auc, t.tuned.auc_ci),
            f"{t.auc_gain:+.1%}{_ci(t.auc_gain_ci, '{:+.1%}')}",
            ""
            if t.exact_auc_gain is None
            else f"{t.exact_auc_gain:+.1%}{_ci(t.exact_auc_gain_ci, '{:+.1%}')}",
            f"{t.grid.train_auc:.4f} / {t.tuned.train_auc:.4f}",
        ]

    out = [
        "",
        "  cost-error curves, grid against tuned thresholds (normalised area under the held-out",
        "  error-vs-cost curve = mean error over the cost range, lower is better; gain = 1 -",
        "  tuned/grid; tuned on a fitted smooth model, exact = coordinate descent on the raw",
        "  training rows; all chosen on train for each of 21 cost weights):",
    ]
    out += _table(
        ["cascade", "AUC grid", "AUC tuned", "gain", "exact gain", "train AUC grid / tuned"],
        [line(t) for t in rows],
    )
    return out


def render_skipped(skipped: Sequence[Skipped], source: str) -> str:
    out = [f"== {source}: {len(skipped)} group(s) skipped"]
    out += [f"   {s.reason}" for s in skipped]
    return "\n".join(out)


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
        [
            "model",
            "accuracy",
            "train acc",
            "$/query",
            "latency ms",
            "calibration P(correct)=σ(a+b·lp)",
            "ECE",
            "Brier",
            "raw ECE/Brier",
        ],
        [
            [
                m.name + (" *" if m.name == r.reference_model else ""),
                _pct(m.accuracy),
                _pct(m.train_accuracy),
                _usd(m.mean_cost_usd),
                f"{m.mean_latency_ms:.0f}",
                f"a={m.calibration.bias:.3g} b={m.calibration.slope:.3g}",
                f"{m.calibrated_quality.ece:.3f}",
                f"{m.calibrated_quality.brier:.3f}",
                f"{m.raw_quality.ece:.3f} / {m.raw_quality.brier:.3f}",
            ]
            for m in r.models
        ],
    )
    out += ["  (ECE, Brier: held out, of the P(correct) fitted on train; raw: of exp(logprob))"]
    out += [f"  warning: {w}" for w in r.warnings]
    ci = f", 95% bootstrap intervals over {r.bootstrap_resamples} resamples of held-out queries"
    out += [
        "",
        "  headline" + (ci if r.bootstrap_resamples else "") + ":",
    ]
    out += _headline(
        r.headline.train_chosen,
        "train-chosen (target: the model most accurate on train, at its train accuracy)",
    )
    out += _headline(
        r.headline.hindsight,
        "hindsight (the model most accurate held out; policies picked on held-out rows: a ceiling)",
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
    out += _tradeoffs(r)
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
