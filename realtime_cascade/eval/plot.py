"""``eval --plot DIR``: one PNG per group, held-out cost against accuracy.

Drawn: each single model (a labelled dot), the deferral curve of the tables (the most accurate
policy on train per cost cap), and the group's grid and tuned trade-off curves, plus every
cascade's tuned curve faintly. matplotlib is in the ``bench`` extra, imported only here.
"""

from __future__ import annotations

import re
from pathlib import Path

from .deferral import GroupReport
from .errors import EvalError


def _name(r: GroupReport) -> str:
    label = "-".join(x for x in (r.benchmark, r.chain) if x) or "all"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label) + ".png"


def plot_group(r: GroupReport, directory: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise EvalError("--plot needs matplotlib (pip install 'realtime-cascade[bench]')") from None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalError(f"{directory}: cannot create: {exc.strerror or exc}") from None
    fig, ax = plt.subplots(figsize=(7, 5))
    for t in r.cascade_tradeoffs:
        pts = sorted((p.mean_cost_usd, p.accuracy) for p in t.tuned.points)
        ax.plot(*zip(*pts, strict=True), color="0.8", lw=0.8, zorder=1)
    if r.tradeoff is not None:
        for curve, style, name in (
            (r.tradeoff.grid, "--", "grid thresholds"),
            (r.tradeoff.tuned, "-", "tuned thresholds (smooth model)"),
        ):
            pts = sorted((p.mean_cost_usd, p.accuracy) for p in curve.points)
            ax.plot(
                *zip(*pts, strict=True),
                style,
                marker=".",
                label=f"{name} (AUC {curve.auc:.4f})",
                zorder=3,
            )
    if r.curve:
        pts = sorted((p.mean_cost_usd, p.accuracy) for p in r.curve)
        ax.plot(
            *zip(*pts, strict=True),
            ":",
            marker="x",
            ms=3,
            color="C2",
            lw=1,
            label="most accurate within each cost cap",
            zorder=2,
        )
    for m in r.models:
        ax.scatter([m.mean_cost_usd], [m.accuracy], color="k", zorder=4)
        ax.annotate(
            m.name,
            (m.mean_cost_usd, m.accuracy),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    if all(m.mean_cost_usd > 0 for m in r.models):
        ax.set_xscale("log")
    label = " ".join(f"{k}={v}" for k, v in (("benchmark", r.benchmark), ("chain", r.chain)) if v)
    ax.set_title(f"{label or 'all rows'}: held out ({r.evaluation})", fontsize=9)
    ax.set_xlabel("mean cost per query (USD)")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path = directory / _name(r)
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as exc:
        raise EvalError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
