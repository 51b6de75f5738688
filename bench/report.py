"""Targets, the markdown table and the plots, from a run's result object.

The targets are reported, never asserted: each says its value, whether it was met, and by how
much it was missed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Cell = dict[str, Any]

RUNTIME_POLICIES = ("light-only", "strong-only", "post-hoc", "cascade", "cascade+hedge")


def _cell(cells: Sequence[Cell], policy: str, n: int) -> Cell | None:
    for c in cells:
        if c["policy"] == policy and c["sessions"] == n:
            return c
    return None


def _get(cell: Cell | None, metric: str, stat: str | None = None) -> float | None:
    if cell is None:
        return None
    value = cell["metrics"].get(metric)
    if stat is not None:
        value = value.get(stat) if isinstance(value, dict) else None
    return value if isinstance(value, int | float) else None


def _target(
    name: str,
    rule: str,
    n: int,
    policy: str,
    value: float | None,
    limit: float | None,
    unit: str,
    better: str,  # "below" or "above"
    note: str = "",
) -> dict[str, Any]:
    met: bool | None = None
    miss: float | None = None
    if value is not None and limit is not None:
        met = value <= limit if better == "below" else value >= limit
        if not met:
            miss = round(value - limit if better == "below" else limit - value, 4)
    return {
        "name": name,
        "rule": rule,
        "sessions": n,
        "policy": policy,
        "value": None if value is None else round(value, 4),
        "limit": None if limit is None else round(limit, 4),
        "unit": unit,
        "met": met,
        "missed_by": miss,
        "note": note,
    }


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    cells: list[Cell] = result["cells"]
    sessions: list[int] = result["setup"]["sessions"]
    tiers = result["setup"]["tiers"]
    strong_ttft = float(tiers[-1]["ttft_ms"])
    top = max(sessions)
    out: list[dict[str, Any]] = []

    def per_policy(
        name: str,
        rule: str,
        metric: str,
        stat: str | None,
        limit: float,
        unit: str,
        better: str,
        note: str = "",
    ) -> None:
        """One target, checked for every runtime policy at the top concurrency."""
        for policy in RUNTIME_POLICIES:
            c = _cell(cells, policy, top)
            if c is not None:
                value = _get(c, metric, stat)
                out.append(_target(name, rule, top, policy, value, limit, unit, better, note))

    per_policy(
        "overhead p99",
        "runtime overhead p99 <= 10 ms at 200 sessions",
        "overhead_ms",
        "p99",
        10.0,
        "ms",
        "below",
    )
    per_policy("barge-in p99", "barge-in p99 <= 10 ms", "barge_in_ms", "p99", 10.0, "ms", "below")
    c = _cell(cells, "cascade", top)
    if c is not None:
        out.append(
            _target(
                "handoff gap p99",
                "handoff gap p99 <= 5 ms",
                top,
                "cascade",
                _get(c, "handoff_gap_ms", "p99"),
                5.0,
                "ms",
                "below",
                "gap = first new-tier text - decision - scheduled TTFT",
            )
        )
    c = _cell(cells, "cascade+hedge", top)
    if c is not None:
        out.append(
            _target(
                "hedged handoff wait p99",
                "with hedging: handoff wait p99 below half the strong tier's TTFT",
                top,
                "cascade+hedge",
                _get(c, "handoff_wait_ms", "p99"),
                strong_ttft / 2,
                "ms",
                "below",
                "wait = first new-tier text - decision",
            )
        )
    per_policy(
        "throughput vs bare",
        "delta throughput >= 0.7 x the bare baseline",
        "throughput_vs_bare",
        None,
        0.7,
        "x",
        "above",
        "pace (replayed / observed duration) over the bare server's pace",
    )
    strong = _cell(cells, "strong-only", top)
    for policy in ("cascade", "cascade+hedge"):
        c = _cell(cells, policy, top)
        if c is None or strong is None:
            continue
        s_cost, c_cost = _get(strong, "cost_total_usd"), _get(c, "cost_total_usd")
        s_ok, c_ok = _get(strong, "task_success"), _get(c, "task_success")
        cost_share = c_cost / s_cost if c_cost is not None and s_cost else None
        out.append(
            _target(
                "cost vs strong-only",
                "cascade cost <= 35% of strong-only",
                top,
                policy,
                None if cost_share is None else cost_share * 100,
                35.0,
                "%",
                "below",
            )
        )
        succ_share = c_ok / s_ok if c_ok is not None and s_ok else None
        out.append(
            _target(
                "success vs strong-only",
                "... at >= 98% of strong-only's task success",
                top,
                policy,
                None if succ_share is None else succ_share * 100,
                98.0,
                "%",
                "above",
            )
        )
        out.append(
            _target(
                "end-of-turn p99 vs strong-only",
                "cascade p99 end-of-turn below strong-only's",
                top,
                policy,
                _get(c, "end_of_turn_ms", "p99"),
                _get(strong, "end_of_turn_ms", "p99"),
                "ms",
                "below",
            )
        )
    return out


# --- why: notes the run can back with its own figures ---------------------------------------


def notes(result: dict[str, Any]) -> list[str]:
    cells: list[Cell] = result["cells"]
    setup = result["setup"]
    top = max(setup["sessions"])
    cpus = result["machine"]["cpus"]
    out = [
        f"Client, server, bare baseline and both sim upstreams share this machine's {cpus} "
        "cores; every client-observed figure includes their competition for CPU."
    ]
    busy = [c for c in cells if (_get(c, "others_cpu_cores") or 0.0) >= 0.1]
    if busy:
        worst = max(busy, key=lambda c: _get(c, "others_cpu_cores") or 0.0)
        out.append(
            f"Other processes (not started by this run) used CPU during {len(busy)} of "
            f"{len(cells)} cells, up to {_get(worst, 'others_cpu_cores'):.2f} cores "
            f"({worst['policy']} N={worst['sessions']}): those cells' figures are pessimistic."
        )
    if setup.get("clock") == "relative":
        out.append(
            "--upstream-clock relative: the stock sim-upstream sleeps each gap after sending the "
            "previous token, so its own lateness accumulates along a stream and is counted as "
            "overhead (see upstream lag)."
        )
    else:
        out.append(
            "The sim upstreams (`realtime-cascade sim-upstream`) and the bare server send each "
            "token at the stream's start plus its scheduled offset, so upstream lateness does "
            "not accumulate."
        )
    rows = []
    for c in cells:
        if c["sessions"] != top or c["policy"] not in RUNTIME_POLICIES:
            continue
        m = c["metrics"]
        wall, tokens = m.get("wall_s"), m.get("streamed_tokens")
        if not wall or not tokens or m.get("server_cpu_cores") is None:
            continue
        up, me, others = (
            m.get(k) or 0.0 for k in ("upstream_cpu_cores", "client_cpu_cores", "others_cpu_cores")
        )
        rows.append(
            f"{c['policy']} {m['server_cpu_cores']:.2f} ({m['server_cpu_us_per_token']:.0f} µs × "
            f"{tokens / wall:.0f} tokens/s; upstreams {up:.2f}, client {me:.2f}, "
            f"others {others:.2f})"
        )
    if rows:
        bare = _cell(cells, "bare", top)
        out.append(
            f"CPU at N={top}, in cores of {cpus} — server: "
            + "; ".join(rows)
            + ". The server is one event loop: past roughly three quarters of a core, with the "
            "upstreams and the client taking the rest of the machine, events queue behind each "
            "other and overhead, barge-in, handoff and throughput degrade together. The bare "
            f"server streams the same load at {_get(bare, 'server_cpu_us_per_token') or 0:.0f} "
            "µs/token."
        )
    for policy in ("cascade", "light-only"):
        found = _cell(cells, policy, top)
        if found is None:
            continue
        ov = _get(found, "overhead_ms", "p50")
        lag = _get(found, "upstream_end_lag_ms", "p50")
        net = _get(found, "overhead_net_end_ms", "p50")
        if ov is not None and lag is not None and net is not None:
            out.append(
                f"{policy} at N={top}: overhead p50 {ov:.1f} ms, of which upstream lag "
                f"(before the runtime saw the token: sim upstream, HTTP, SSE decoding) p50 "
                f"{lag:.1f} ms; net end-of-response overhead p50 {net:.1f} ms."
            )
        break
    found = _cell(cells, "cascade", top)
    if found is not None and _get(found, "handoff_gap_ms", "n"):
        vs = _get(found, "handoff_gap_vs_replay_ms", "p50")
        out.append(
            "The handoff gap counts from the decision to the new tier's first *released* text: "
            "besides the scheduled TTFT it includes the gate's wait for the first complete word "
            "(and any repeat of the released prefix the new tier swallows), which the replay "
            "has too"
            + (
                f"; measured against the replay the runtime's own share is p50 {vs:.1f} ms"
                if vs is not None
                else ""
            )
            + f". {_get(found, 'handoff_gap_ms', 'n')} handoffs were followed by text at N={top}."
        )
    h = _cell(cells, "cascade+hedge", top)
    if h is not None:
        rate = _get(h, "hedge_rate")
        out.append(
            f"Hedges started in {0 if rate is None else rate:.0%} of cascade+hedge responses at "
            f"N={top}: in this mix most escalations are decided when the light answer ends "
            "(confidence at the end, or a verifier on a tool call), where no hedge can run "
            "ahead, so hedged and unhedged handoff waits are alike."
        )
    strong = _cell(cells, "strong-only", top)
    for policy in ("cascade", "cascade+hedge"):
        found = _cell(cells, policy, top)
        if found is None or strong is None:
            continue
        mine = _get(found, "end_of_turn_ms", "p99")
        theirs = _get(strong, "end_of_turn_ms", "p99")
        esc = _get(found, "end_of_turn_escalated_ms", "p99")
        if mine is not None and theirs is not None and mine > theirs and esc is not None:
            out.append(
                f"{policy} p99 end of turn {mine:.0f} ms vs strong-only {theirs:.0f} ms: the tail "
                f"is escalated turns (their p99 {esc:.0f} ms), which pay for the light answer "
                "before the strong tier starts when the escalation comes at its end."
            )
    return out


# --- markdown -------------------------------------------------------------------------------


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


Column = tuple[str, Callable[[Cell], str]]


def _p(metric: str, stat: str, digits: int = 1) -> Callable[[Cell], str]:
    return lambda c: _fmt(_get(c, metric, stat), digits)


COLUMNS: list[Column] = [
    ("policy", lambda c: c["policy"]),
    ("N", lambda c: str(c["sessions"])),
    ("turns", lambda c: str(c["metrics"]["turns"])),
    (
        "first text p50/p99 ms",
        lambda c: f"{_p('first_text_ms', 'p50', 0)(c)} / {_p('first_text_ms', 'p99', 0)(c)}",
    ),
    (
        "end of turn p50/p99 ms",
        lambda c: f"{_p('end_of_turn_ms', 'p50', 0)(c)} / {_p('end_of_turn_ms', 'p99', 0)(c)}",
    ),
    (
        "overhead p50/p99 ms",
        lambda c: f"{_p('overhead_ms', 'p50')(c)} / {_p('overhead_ms', 'p99')(c)}",
    ),
    (
        "upstream lag p50/p99 ms",
        lambda c: f"{_p('upstream_end_lag_ms', 'p50')(c)} / {_p('upstream_end_lag_ms', 'p99')(c)}",
    ),
    (
        "net end overhead p50/p99 ms",
        lambda c: f"{_p('overhead_net_end_ms', 'p50')(c)} / {_p('overhead_net_end_ms', 'p99')(c)}",
    ),
    (
        "handoff gap p50/p99 ms",
        lambda c: f"{_p('handoff_gap_ms', 'p50')(c)} / {_p('handoff_gap_ms', 'p99')(c)}",
    ),
    (
        "barge-in p50/p99 ms",
        lambda c: f"{_p('barge_in_ms', 'p50')(c)} / {_p('barge_in_ms', 'p99')(c)}",
    ),
    ("CPU µs/token", lambda c: _fmt(_get(c, "server_cpu_us_per_token"), 0)),
    ("CPU × bare-proxy", lambda c: _fmt(_get(c, "cpu_vs_bare_proxy"), 2)),
    ("KiB/session", lambda c: _fmt(_get(c, "server_rss_per_session_kib"), 0)),
    ("vs bare", lambda c: _fmt(_get(c, "throughput_vs_bare"), 2)),
    ("$/turn", lambda c: _fmt(_get(c, "cost_per_turn_usd", "mean"), 5)),
    ("success", lambda c: _pct(_get(c, "task_success"))),
    ("escalated", lambda c: _pct(_get(c, "escalation_rate"))),
    ("replay match", lambda c: _pct(_get(c, "replay_match_rate"))),
]


def markdown(result: dict[str, Any]) -> str:
    setup = result["setup"]
    tiers = ", ".join(
        f"{t['name']} (TTFT {t['ttft_ms']:g} ms, ITL {t['itl_ms']:g} ms, skill {t['skill']:g})"
        for t in setup["tiers"]
    )
    lines = [
        f"# Bench: {setup['mix']} mix, sessions {', '.join(map(str, setup['sessions']))}",
        "",
        f"`{result['command']}` — {result['created']}, {result['machine']['cpus']} CPUs, "
        f"Python {result['machine']['python']}. Tiers: {tiers}.",
        "",
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for c in result["cells"]:
        lines.append("| " + " | ".join(fn(c) for _, fn in COLUMNS) + " |")
    lines += ["", "## Targets (reported, not asserted)", ""]
    lines += [
        "| target | policy | N | value | limit | met | missed by |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in result.get("targets", ()):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(
            f"| {t['rule']} | {t['policy']} | {t['sessions']} | {_fmt(t['value'], 2)} {t['unit']} "
            f"| {_fmt(t['limit'], 2)} {t['unit']} | {met} | "
            f"{_fmt(t['missed_by'], 2) + ' ' + t['unit'] if t['missed_by'] is not None else ''} |"
        )
    notes = result.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --- plots ----------------------------------------------------------------------------------


def plots(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Latency CDFs per policy and cost vs task success per policy, as PNGs (needs matplotlib;
    returns [] without it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    from .stats import cdf_points

    cells: list[Cell] = result["cells"]
    sessions: list[int] = result["setup"]["sessions"]
    written: list[Path] = []
    samples = result.get("samples", {})

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    order = ("bare", *RUNTIME_POLICIES)
    colors = {p: palette[k % len(palette)] for k, p in enumerate(order)}
    metrics = [
        ("first_text_ms", "first text (ms)"),
        ("end_of_turn_ms", "end of turn (ms)"),
        ("overhead_ms", "runtime overhead (ms)"),
    ]
    fig, axes = plt.subplots(
        len(sessions), len(metrics), figsize=(5 * len(metrics), 3.2 * len(sessions)), squeeze=False
    )
    for i, n in enumerate(sessions):
        for j, (metric, label) in enumerate(metrics):
            ax = axes[i][j]
            for c in cells:
                if c["sessions"] != n:
                    continue
                values = samples.get(f"{c['policy']}|{n}|{metric}") or []
                if not values:
                    continue
                xs, ys = cdf_points(values)
                ax.step(xs, ys, where="post", label=c["policy"], color=colors.get(c["policy"]))
            ax.set_title(f"{label}, N={n}", fontsize=10)
            ax.set_ylabel("fraction")
            ax.grid(alpha=0.3)
            if metric == "overhead_ms":
                ax.set_xscale("symlog", linthresh=1.0)
            if i == 0 and j == 0 and ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "latency_cdf.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)

    fig, axes = plt.subplots(1, len(sessions), figsize=(4.5 * len(sessions), 3.8), squeeze=False)
    markers = "osD^vP*X"
    for i, n in enumerate(sessions):
        ax = axes[0][i]
        for k, policy in enumerate(RUNTIME_POLICIES):
            found = _cell(cells, policy, n)
            cost = _get(found, "cost_per_turn_usd", "mean")
            ok = _get(found, "task_success")
            if cost is None or ok is None:
                continue
            ax.scatter(
                [cost * 1000],
                [ok * 100],
                s=60,
                marker=markers[k % len(markers)],
                color=colors.get(policy),
                label=policy,
                alpha=0.8,
            )
        ax.set_xlabel("mean cost per user turn (milli-USD)")
        ax.set_ylabel("task success (%)")
        ax.set_title(f"cost vs task success, N={n}", fontsize=10)
        ax.grid(alpha=0.3)
        if i == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "cost_success.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written
