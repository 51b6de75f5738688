"""``python -m bench.real``: the five policies on real local models, side by side in one run.

    nice python -m bench.real                 # every task (about 126 turns × 4 runs)
    nice python -m bench.real --limit 20      # a quick look
    python -m bench.real --phase report       # recompute the report from recorded runs

Phases (``--phase all`` runs them in order; each writes under ``--out``):

1. ``record``: every task on **light-only** and **strong-only** (the ``local`` profile's tiers,
   one at a time through the runtime), each stream's tokens and logprobs recorded
   (``streams.jsonl``) and graded.
2. ``calibrate``: the monitor's calibration fitted on the recorded light streams: P(correct)
   from the lowest windowed quantile log-probability the monitor saw (the signal a mid-stream
   preemption acts on), by ``realtime_cascade.eval``'s logistic fit. Two folds (odd and even
   tasks), each fitted on the other, so no turn is judged by a fit that saw it; and a fit on
   every task, the one to ship in the local profile. Also written: ``log.csv`` for
   ``realtime-cascade eval --log``.
3. ``cascade``: every task through the whole cascade (light first, the monitor preempts and the
   strong tier continues), without and with hedging, with its fold's calibration.
4. ``report``: success, cost, first text and end of turn, escalation, and preemption precision
   and recall against the light tier's own correctness; **post-hoc** (light runs to its end,
   is judged once, and the turn is redone on strong if judged wrong) is computed from the
   recorded light and strong runs. ``report.json`` and ``report.md``.

One conversation at a time (2 cores; each llama-server has one thread and one slot).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from bench.real.tasks import TOOLS, Task, grade_trace, load
from bench.stats import percentile
from realtime_cascade import config as config_mod
from realtime_cascade.core import CascadeParams
from realtime_cascade.core.params import Calibration, MonitorParams
from realtime_cascade.core.signals import ConfidenceMonitor
from realtime_cascade.core.trace import TurnTrace
from realtime_cascade.eval.calibration import fit_logistic, sigmoid
from realtime_cascade.models.provider import start_local
from realtime_cascade.providers.base import Chunk, Provider, TierRequest
from realtime_cascade.runtime import CascadeProfile, TurnRequest, run_turn

OUT = Path("bench/results/real")
# A hosted mini/full pair (as in default.toml), for the cost at a 1:16 price ratio.
ALT_PRICES = ((0.15, 0.60), (2.50, 10.00))


class Recorder:
    """A provider that keeps every chunk it streams (the bench reads the logprobs back)."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name
        self.streams: list[list[Chunk]] = []

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        chunks: list[Chunk] = []
        self.streams.append(chunks)
        async with contextlib.aclosing(self.inner.stream(request)) as s:
            async for c in s:
                chunks.append(c)
                yield c

    async def aclose(self) -> None:
        pass  # the bench closes the real providers once, at the end


class Run(msgspec.Struct):
    task: str
    policy: str
    correct: bool
    trace: TurnTrace
    tokens: list[tuple[str, float | None, tuple[float, ...], bool]] = []  # text, lp, tops, call


def _tokens(chunks: Sequence[Chunk]) -> list[tuple[str, float | None, tuple[float, ...], bool]]:
    return [
        (c.text, c.logprob, c.top_logprobs, c.tool_call is not None)
        for c in chunks
        if c.text or c.tool_call is not None
    ]


def min_quantile_lp(
    tokens: Sequence[tuple[str, float | None, tuple[float, ...], bool]],
    monitor: MonitorParams,
) -> float:
    """The lowest windowed quantile log-probability the core's monitor sees over a stream
    (from ``min_tokens`` on): what a mid-stream preemption acts on."""
    m = ConfidenceMonitor(monitor, 0.0)
    lowest = 0.0
    seen = False
    for _text, lp, tops, call in tokens:
        m.observe(lp, () if call else tops)
        if m.ready:
            q = m.confidence().quantile_p
            lowest = min(lowest, math.log(max(q, 1e-30))) if seen else math.log(max(q, 1e-30))
            seen = True
    if not seen:
        q = m.confidence().quantile_p
        return math.log(max(q, 1e-30))
    return lowest


def _request(task: Task) -> TurnRequest:
    return TurnRequest(
        task.messages(),
        tools=TOOLS if task.tools else (),
        tool_choice="auto" if task.tools else None,
    )


def _params(base: CascadeParams, **changes: Any) -> CascadeParams:
    policy = msgspec.structs.replace(base.policy, router_min_observations=10**9)
    return msgspec.structs.replace(base, policy=policy, **changes)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _run(
    profile: CascadeProfile, recorders: Sequence[Recorder], task: Task, policy: str
) -> Run:
    for r in recorders:
        r.streams.clear()
    trace = await run_turn(profile, _request(task))
    tokens = _tokens(recorders[0].streams[0]) if recorders[0].streams else []
    return Run(task.id, policy, grade_trace(task, trace), trace, tokens)


def _write_runs(path: Path, runs: Sequence[Run]) -> None:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in runs))


def _read_runs(path: Path) -> list[Run]:
    if not path.exists():
        return []
    dec = msgspec.json.Decoder(Run)
    return [dec.decode(line) for line in path.read_bytes().splitlines() if line.strip()]


def _merge(path: Path, runs: Sequence[Run], order: Sequence[str]) -> None:
    """Write ``runs`` into ``path``, replacing earlier runs of the same task and policy."""
    merged = {(r.task, r.policy): r for r in _read_runs(path)}
    merged.update({(r.task, r.policy): r for r in runs})
    rank = {task: i for i, task in enumerate(order)}
    _write_runs(path, sorted(merged.values(), key=lambda r: (rank.get(r.task, 1 << 30), r.policy)))


async def _phase_runs(
    tasks: list[Task],
    out: Path,
    phases: set[str],
    calibrations: dict[int, Calibration],
    only: tuple[str, ...] = (),
) -> None:
    order = [t.id for t in tasks]
    cfg = config_mod.load()
    base_cfg = cfg.profiles["local"]
    light, strong = config_mod.build_providers(base_cfg)
    rec_light, rec_strong = Recorder(light), Recorder(strong)
    base = base_cfg.params()
    try:
        t0 = time.monotonic()
        await start_local([light, strong])
        _progress(f"local servers ready in {time.monotonic() - t0:.1f} s")
        # Each system prompt once through each server, untimed: a deployed agent's prompt
        # prefix sits in llama-server's cache after its first call, and the first prefill of
        # a long prompt on a busy core takes longer than a tier's first-token timeout.
        t0 = time.monotonic()
        for provider in (light, strong):
            for kind in ("fact", "tool"):
                task = next((t for t in tasks if t.kind == kind), None)
                if task is not None:
                    request = _request(task)
                    warm = TierRequest(request.messages, tools=request.tools, max_tokens=1)
                    async with contextlib.aclosing(provider.stream(warm)) as s:
                        async for _ in s:
                            pass
        _progress(f"prompt caches warmed in {time.monotonic() - t0:.1f} s")
        if "record" in phases:
            singles = {
                "light-only": (
                    CascadeProfile("light-only", _params(base, tiers=base.tiers[:1]), [rec_light]),
                    rec_light,
                ),
                "strong-only": (
                    CascadeProfile(
                        "strong-only", _params(base, tiers=base.tiers[1:]), [rec_strong]
                    ),
                    rec_strong,
                ),
            }
            runs: list[Run] = []
            for i, task in enumerate(tasks):
                if only and not task.id.startswith(only):
                    continue
                for policy, (profile, rec) in singles.items():
                    run = await _run(profile, [rec], task, policy)
                    runs.append(run)
                    _progress(
                        f"[{i + 1}/{len(tasks)}] {policy:11} {task.id}: "
                        f"{'ok ' if run.correct else 'BAD'} {run.trace.end_ms:6.0f} ms "
                        f"{(run.trace.text or str(run.trace.tool_calls))[:60]!r}"
                    )
            _merge(out / "streams.jsonl", runs, order)
        if "cascade" in phases:
            runs = []
            # Every fourth task first, then the ones between: the kinds of task sit in blocks
            # (facts, restaurant, booking, small talk), so a run cut short still covers each
            # kind in proportion.
            for i in sorted(range(len(tasks)), key=lambda k: (k % 4, k)):
                task = tasks[i]
                if only and not task.id.startswith(only):
                    continue
                cal = calibrations[i % 2]
                monitor = msgspec.structs.replace(base.monitor, calibration=cal)
                for policy, hedging in (("mid-stream", False), ("cascade+hedge", True)):
                    policy_params = msgspec.structs.replace(base.policy, hedging=hedging)
                    params = _params(base, monitor=monitor)
                    params = msgspec.structs.replace(
                        params,
                        policy=msgspec.structs.replace(
                            policy_params, router_min_observations=10**9
                        ),
                    )
                    profile = CascadeProfile(policy, params, [rec_light, rec_strong])
                    run = await _run(profile, [rec_light, rec_strong], task, policy)
                    runs.append(run)
                    kinds = ",".join(d.kind for d in run.trace.decisions if d.kind != "route")
                    _progress(
                        f"[{i + 1}/{len(tasks)}] {policy:13} {task.id}: "
                        f"{'ok ' if run.correct else 'BAD'} {run.trace.end_ms:6.0f} ms "
                        f"final={run.trace.final_tier_name} [{kinds}]"
                    )
                # after every task: an interrupted run keeps what it measured
                _merge(out / "cascade.jsonl", runs[-2:], order)
    finally:
        await light.aclose()
        await strong.aclose()


# --- calibration ---------------------------------------------------------------------------


class Fit(msgspec.Struct):
    folds: dict[int, Calibration]
    shipped: Calibration
    n: int
    light_accuracy: float


def calibrate(tasks: list[Task], records: list[Run], out: Path, monitor: MonitorParams) -> Fit:
    light = {r.task: r for r in records if r.policy == "light-only"}
    strong = {r.task: r for r in records if r.policy == "strong-only"}
    xs: list[float] = []
    ys: list[bool] = []
    fold_of: list[int] = []
    rows = ["query_idx,model,correct,raw_confidence,cost_usd,latency_ms"]
    for i, task in enumerate(tasks):
        lr, sr = light[task.id], strong[task.id]
        x = min_quantile_lp(lr.tokens, monitor)
        xs.append(x)
        ys.append(lr.correct)
        fold_of.append(i % 2)
        for name, r in (("qwen2.5-coder-0.5b", lr), ("qwen2.5-coder-1.5b", sr)):
            conf = min_quantile_lp(r.tokens, monitor)
            rows.append(
                f"{task.id},{name},{int(r.correct)},{conf:.6f},"
                f"{r.trace.cost_usd:.10f},{r.trace.end_ms:.1f}"
            )
    (out / "log.csv").write_text("\n".join(rows) + "\n")

    def fit(idx: list[int]) -> Calibration:
        f = fit_logistic([xs[i] for i in idx], [ys[i] for i in idx])
        return Calibration(
            bias=f.bias, w_quantile=f.slope, w_min=0.0, w_entropy=0.0, w_complexity=0.0
        )

    folds = {k: fit([i for i in range(len(xs)) if fold_of[i] != k]) for k in (0, 1)}
    return Fit(folds, fit(list(range(len(xs)))), len(xs), sum(ys) / max(1, len(ys)))


# --- the report ----------------------------------------------------------------------------


class Turn(msgspec.Struct):
    correct: bool
    cost_usd: float
    alt_cost_usd: float
    first_text_ms: float | None
    end_ms: float
    escalated: bool


def _alt_cost(trace: TurnTrace, tiers: Sequence[int]) -> float:
    total = 0.0
    for a in trace.attempts:
        pin, pout = ALT_PRICES[tiers[a.tier]]
        total += (a.input_tokens * pin + a.output_tokens * pout) / 1e6
    return total


def _turn(run: Run, tiers: Sequence[int]) -> Turn:
    t = run.trace
    return Turn(run.correct, t.cost_usd, _alt_cost(t, tiers), t.ttft_ms, t.end_ms, t.escalated)


def _summary(turns: Sequence[Turn], light_wrong: Sequence[bool]) -> dict[str, Any]:
    n = len(turns)
    first = sorted(t.first_text_ms for t in turns if t.first_text_ms is not None)
    end = sorted(t.end_ms for t in turns)
    esc = [t.escalated for t in turns]
    tp = sum(1 for e, w in zip(esc, light_wrong, strict=True) if e and w)
    return {
        "turns": n,
        "success": sum(t.correct for t in turns) / n,
        "cost_usd_per_turn": sum(t.cost_usd for t in turns) / n,
        "alt_cost_usd_per_turn": sum(t.alt_cost_usd for t in turns) / n,
        "first_text_ms": {
            "n": len(first),
            "p50": percentile(first, 50) if first else None,
            "p99": percentile(first, 99) if first else None,
        },
        "end_ms": {"p50": percentile(end, 50), "p99": percentile(end, 99)},
        "escalation_rate": sum(esc) / n,
        "preempt_precision": tp / sum(esc) if sum(esc) else None,
        "preempt_recall": tp / sum(light_wrong) if sum(light_wrong) else None,
    }


def report(
    tasks: list[Task],
    records: list[Run],
    cascades: list[Run],
    fit: Fit,
    preempt_below: float,
    monitor: MonitorParams,
) -> dict[str, Any]:
    by = {(r.policy, r.task): r for r in [*records, *cascades]}
    light_wrong = [not by["light-only", t.id].correct for t in tasks]
    policies: dict[str, list[Turn]] = {
        "light-only": [_turn(by["light-only", t.id], (0,)) for t in tasks],
        "strong-only": [_turn(by["strong-only", t.id], (1,)) for t in tasks],
        "post-hoc": _post_hoc(tasks, by, fit, preempt_below, monitor),
    }
    for policy in ("mid-stream", "cascade+hedge"):
        if all((policy, t.id) in by for t in tasks):
            policies[policy] = [_turn(by[policy, t.id], (0, 1)) for t in tasks]
    summaries = {k: _summary(v, light_wrong) for k, v in policies.items()}
    # The threshold is a policy choice: post-hoc at other thresholds, from the same runs.
    sweep = {
        f"{th:.2f}": _summary(_post_hoc(tasks, by, fit, th, monitor), light_wrong)
        for th in GRID
    }
    operating = choose_operating_point(tasks, by, fit, monitor, light_wrong)
    policies["post-hoc (chosen, held out)"] = operating.pop("held_out_turns")
    summaries["post-hoc (chosen, held out)"] = _summary(
        policies["post-hoc (chosen, held out)"], light_wrong
    )
    # Live cascades that cover only some tasks (an interrupted run): every policy on those.
    covered = [
        i
        for i, t in enumerate(tasks)
        if all((p, t.id) in by for p in ("mid-stream", "cascade+hedge"))
    ]
    partial: dict[str, Any] = {}
    if 0 < len(covered) < len(tasks):
        wrong = [light_wrong[i] for i in covered]
        partial = {k: _summary([v[i] for i in covered], wrong) for k, v in policies.items()}
        for p in ("mid-stream", "cascade+hedge"):
            partial[p] = _summary([_turn(by[p, tasks[i].id], (0, 1)) for i in covered], wrong)
    return {
        "covered_by_live_cascades": partial,
        "tasks": len(tasks),
        "concurrency": 1,
        "fit": msgspec.to_builtins(fit),
        "preempt_below": preempt_below,
        "policies": summaries,
        "post_hoc_sweep": sweep,
        "operating_point": operating,
        "prices": PRICES_NOTE,
    }


GRID = tuple(round(0.30 + 0.05 * k, 2) for k in range(14))  # 0.30 … 0.95
# The rule that picks the operating point (the issue's cost target, at the hosted ratio where
# it is reachable at all: cost ≤ r + e needs e ≤ 0.44 at 1:16, e ≤ 0.17 at 1:3): the threshold
# with the highest success among those whose cost at hosted 1:16 prices is at most half of
# strong-only's; ties go to the cheaper one.
MAX_HOSTED_COST_RATIO = 0.5
PRICES_NOTE = (
    "1:3 = the local profile's own prices (light 0.02/0.06, strong 0.06/0.18 USD per 1M tokens "
    "in/out): not a provider's list price, set to the models' compute ratio (1.5B ≈ 3 × 0.5B "
    "parameters), i.e. what self-hosting the pair costs relative to each other. 1:16 = a hosted "
    "mini/full pair's list prices (0.15/0.60 and 2.50/10.00, as in default.toml): the ratio a "
    "small and a large hosted model are sold at, applied to the same token counts."
)


def choose_operating_point(
    tasks: list[Task],
    by: dict[tuple[str, str], Run],
    fit: Fit,
    monitor: MonitorParams,
    light_wrong: Sequence[bool],
) -> dict[str, Any]:
    """Pick the threshold on one fold and report it on the other (each fold's calibration was
    fitted on the other fold too), so no reported turn took part in choosing its threshold;
    and the threshold the same rule picks on every turn with the shipped calibration."""
    strong_alt = {t.id: _turn(by["strong-only", t.id], (1,)).alt_cost_usd for t in tasks}

    def pick(subset: list[Task], judge: Calibration) -> float:
        base = sum(strong_alt[t.id] for t in subset)
        best: tuple[float, float, float] | None = None  # (success, -cost, threshold)
        for th in GRID:
            turns = _post_hoc(subset, by, fit, th, monitor, judge)
            cost = sum(x.alt_cost_usd for x in turns) / base
            if cost > MAX_HOSTED_COST_RATIO:
                continue
            key = (sum(x.correct for x in turns) / len(turns), -cost, th)
            if best is None or key[:2] > best[:2]:
                best = key
        return best[2] if best is not None else GRID[0]

    held: dict[str, Turn] = {}
    chosen: dict[int, float] = {}
    for k in (0, 1):
        train = [t for i, t in enumerate(tasks) if i % 2 != k]
        test = [t for i, t in enumerate(tasks) if i % 2 == k]
        chosen[k] = pick(train, fit.folds[k])  # fold k's calibration saw only the other fold
        for t, turn in zip(
            test, _post_hoc(test, by, fit, chosen[k], monitor, fit.folds[k]), strict=True
        ):
            held[t.id] = turn
    shipped = pick(tasks, fit.shipped)
    return {
        "rule": f"highest success with cost at 1:16 prices ≤ {MAX_HOSTED_COST_RATIO:.0%} of "
        "strong-only's, chosen on one fold, reported on the other",
        "chosen_per_fold": {str(k): v for k, v in chosen.items()},
        "shipped_threshold": shipped,
        "held_out_turns": [held[t.id] for t in tasks],
    }


def _post_hoc(
    tasks: list[Task],
    by: dict[tuple[str, str], Run],
    fit: Fit,
    preempt_below: float,
    monitor: MonitorParams,
    judge: Calibration | None = None,
) -> list[Turn]:
    """Post-hoc turns; each judged by its fold's calibration (fitted on the other fold), or
    by ``judge`` when given."""
    out: list[Turn] = []
    for i, t in enumerate(tasks):
        lr, sr = by["light-only", t.id], by["strong-only", t.id]
        cal = judge if judge is not None else fit.folds[i % 2]
        p = sigmoid(cal.bias + cal.w_quantile * min_quantile_lp(lr.tokens, monitor))
        light_t, strong_t = _turn(lr, (0,)), _turn(sr, (1,))
        if p >= preempt_below:
            # judged once the light answer is whole: nothing is spoken before its end
            first = lr.trace.end_ms if lr.trace.ttft_ms is not None else None
            out.append(
                Turn(
                    lr.correct,
                    light_t.cost_usd,
                    light_t.alt_cost_usd,
                    first,
                    lr.trace.end_ms,
                    False,
                )
            )
        else:
            first = lr.trace.end_ms + sr.trace.ttft_ms if sr.trace.ttft_ms is not None else None
            out.append(
                Turn(
                    sr.correct,
                    light_t.cost_usd + strong_t.cost_usd,
                    light_t.alt_cost_usd + strong_t.alt_cost_usd,
                    first,
                    lr.trace.end_ms + sr.trace.end_ms,
                    True,
                )
            )
    return out


def render(rep: dict[str, Any]) -> str:
    strong = rep["policies"]["strong-only"]
    light = rep["policies"]["light-only"]
    lines = [
        f"Real tiers: Qwen2.5-Coder-0.5B (light) and 1.5B (strong), Q4_K_M on llama-server, "
        f"greedy; {rep['tasks']} turns, one conversation at a time on 2 cores.",
        "",
        "| policy | success | cost/turn (1:3) | vs strong | cost/turn (1:16) | vs strong "
        "| first text p50 / p99 ms | vs light p50 | end p50 / p99 ms | escalated "
        "| preempt precision | preempt recall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v: float | None, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    for name, s in rep["policies"].items():
        ft, end = s["first_text_ms"], s["end_ms"]
        vs_light = (
            ft["p50"] / light["first_text_ms"]["p50"]
            if ft["p50"] and light["first_text_ms"]["p50"]
            else None
        )
        lines.append(
            f"| {name} | {s['success']:.1%} | ${s['cost_usd_per_turn'] * 1e6:.2f}e-6 "
            f"| {s['cost_usd_per_turn'] / strong['cost_usd_per_turn']:.0%} "
            f"| ${s['alt_cost_usd_per_turn'] * 1e6:.1f}e-6 "
            f"| {s['alt_cost_usd_per_turn'] / strong['alt_cost_usd_per_turn']:.0%} "
            f"| {f(ft['p50'], '.0f')} / {f(ft['p99'], '.0f')} (n={ft['n']}) "
            f"| {f(vs_light, '.2f')} | {end['p50']:.0f} / {end['p99']:.0f} "
            f"| {s['escalation_rate']:.0%} | {f(s['preempt_precision'], '.2f')} "
            f"| {f(s['preempt_recall'], '.2f')} |"
        )
    partial = rep.get("covered_by_live_cascades") or {}
    if partial:
        n = next(iter(partial.values()))["turns"]
        lines += [
            "",
            f"The live cascades covered {n} of the {rep['tasks']} turns; every policy on "
            "those turns:",
            "",
            "| policy | success | cost vs strong (1:3) | (1:16) | first text p50 / p99 ms "
            "| end p50 / p99 ms | escalated | precision | recall |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        ps = partial["strong-only"]
        for name, s in partial.items():
            ft, end = s["first_text_ms"], s["end_ms"]
            lines.append(
                f"| {name} | {s['success']:.1%} "
                f"| {s['cost_usd_per_turn'] / ps['cost_usd_per_turn']:.0%} "
                f"| {s['alt_cost_usd_per_turn'] / ps['alt_cost_usd_per_turn']:.0%} "
                f"| {f(ft['p50'], '.0f')} / {f(ft['p99'], '.0f')} "
                f"| {end['p50']:.0f} / {end['p99']:.0f} | {s['escalation_rate']:.0%} "
                f"| {f(s['preempt_precision'], '.2f')} | {f(s['preempt_recall'], '.2f')} |"
            )
    lines += [
        "",
        "Post-hoc at other thresholds (escalate when calibrated P(correct) is below it), "
        "from the same runs:",
        "",
        "| threshold | success | cost vs strong (1:3) | (1:16) | escalated | precision | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for th, s in rep.get("post_hoc_sweep", {}).items():
        lines.append(
            f"| {th} | {s['success']:.1%} "
            f"| {s['cost_usd_per_turn'] / strong['cost_usd_per_turn']:.0%} "
            f"| {s['alt_cost_usd_per_turn'] / strong['alt_cost_usd_per_turn']:.0%} "
            f"| {s['escalation_rate']:.0%} | {f(s['preempt_precision'], '.2f')} "
            f"| {f(s['preempt_recall'], '.2f')} |"
        )
    op = rep.get("operating_point")
    if op:
        lines += [
            "",
            f"Operating point: {op['rule']}. Chosen per fold: "
            + ", ".join(f"fold {k}: {v:.2f}" for k, v in op["chosen_per_fold"].items())
            + f"; on all turns (shipped in the local profile): {op['shipped_threshold']:.2f}. "
            "The row 'post-hoc (chosen, held out)' reports each fold at the threshold chosen on "
            "the other.",
        ]
    lines += ["", f"Prices: {rep.get('prices', '')}"]
    fit = rep["fit"]["shipped"]
    lines += [
        "",
        f"Calibration shipped in the local profile (fitted on all {rep['fit']['n']} light "
        f"streams): bias = {fit['bias']:.4f}, w_quantile = {fit['w_quantile']:.4f}; "
        f"the live cascades ran with preempt below P(correct) = {rep['preempt_below']}. "
        "Light tier accuracy "
        f"{rep['fit']['light_accuracy']:.1%}. Each turn of the cascades was judged by the fit "
        "of the other fold.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.real",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N tasks")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument(
        "--phase", choices=("all", "record", "calibrate", "cascade", "report"), default="all"
    )
    p.add_argument(
        "--only",
        default="",
        metavar="PREFIXES",
        help="record/cascade only the tasks whose id starts with one of these (comma-separated; "
        "their earlier runs are replaced, the others kept)",
    )
    args = p.parse_args(argv)
    only = tuple(x for x in args.only.split(",") if x)
    tasks = load()[: args.limit]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.load()
    base = cfg.profiles["local"].params()
    monitor = MonitorParams(
        window=base.monitor.window,
        quantile=base.monitor.quantile,
        min_tokens=base.monitor.min_tokens,
    )
    phases = {"record", "calibrate", "cascade", "report"} if args.phase == "all" else {args.phase}
    if "record" in phases:
        anyio.run(_phase_runs, tasks, out, {"record"}, {}, only)
    records = _read_runs(out / "streams.jsonl")
    fit = calibrate(tasks, records, out, monitor)
    (out / "calibration.json").write_bytes(msgspec.json.format(msgspec.json.encode(fit)))
    _progress(f"calibration (all tasks): {fit.shipped}")
    if "cascade" in phases:
        anyio.run(_phase_runs, tasks, out, {"cascade"}, fit.folds, only)
    cascades = _read_runs(out / "cascade.jsonl") if (out / "cascade.jsonl").exists() else []
    cascades = [r for r in cascades if r.task in {t.id for t in tasks}]
    rep = report(tasks, records, cascades, fit, base.policy.preempt_below, monitor)
    (out / "report.json").write_bytes(msgspec.json.format(msgspec.json.encode(rep)))
    md = render(rep)
    ev = subprocess.run(
        [sys.executable, "-m", "realtime_cascade", "eval", "--log", str(out / "log.csv")],
        capture_output=True,
        text=True,
    )
    md += "\n`realtime-cascade eval --log log.csv` on the recorded streams:\n\n```\n"
    md += (ev.stdout or ev.stderr).strip() + "\n```\n"
    (out / "report.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
