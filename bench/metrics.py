"""From what the client saw (and the replays) to the figures, per policy and concurrency.

Every latency is a full distribution summarised by :func:`bench.stats.summarize`. Times are
milliseconds; the client's clock is ``time.perf_counter()``.

- ``first_text_ms``: user turn start (its first ``response.create``; for post-hoc, too) to the
  first text the listener gets (a delta; for post-hoc an adopted light answer counts when its
  ``response.done`` arrives, since it is spoken only once checked).
- ``end_of_turn_ms``: user turn start to the ``response.done`` of its last step (tool steps
  included).
- ``overhead_ms``: for every text delta, its arrival minus the instant the zero-overhead replay
  (:mod:`bench.ideal`) released the same character; ``overhead_first_text_ms`` the first delta
  of each response only; ``overhead_end_ms`` each ``response.done`` minus the replay's finish.
  Only responses whose replay matched (same text, decisions, status) count.
- ``handoff_gap_ms``: per handoff, the first text after it minus the preempt (or fallback)
  decision's arrival minus the new tier's scheduled time to first token still outstanding at
  the decision (all of it for a fresh start; for a promoted hedge, what remained of it since the
  hedge decision). ``handoff_wait_ms`` is the raw silence (decision to text);
  ``handoff_gap_vs_replay_ms`` the wait minus the replay's wait for the same handoff (matched
  responses), which also takes out the gate's word-completion wait.
- ``barge_in_ms``: ``response.cancel`` sent to ``response.done`` (cancelled) received.
- ``server_cpu_us_per_token``: the server process's CPU time over the cell divided by the tokens
  it streamed (``usage.output_tokens`` of every response: preempted and hedge tokens included).
- ``server_rss_per_session_kib``: peak RSS during the cell minus RSS before it, over sessions.
- ``pace``: Σ replay durations / Σ observed durations over matched responses (1.0 keeps the
  schedule's pace); ``throughput_vs_bare``: pace over the bare baseline's pace at the same
  concurrency. ``delta_chars_per_s``: released characters per second of the cell's wall time.
- ``upstream_first_token_lag_ms`` / ``upstream_end_lag_ms``: server-side (from the trace), per
  tier attempt, its first token / its finish minus the schedule's: what the sim upstream, HTTP
  and SSE decoding added before the runtime saw the token. The rest of ``overhead_ms`` is the
  runtime and the wire: ``overhead_net_end_ms`` is ``overhead_end_ms`` minus the upstream lag of
  the attempt that finished the turn (request delivery, the runtime's work on the last chunk,
  ``response.done`` delivery).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from realtime_cascade import wire
from realtime_cascade.core import CascadeParams, TierSpec, Verifier
from realtime_cascade.server.settings import apply_overrides

from .client import CancelRecord, ResponseRecord, TurnRecord
from .ideal import Ideal, TierSim, replay_bare, replay_turn, tier_schedule
from .stats import ratio, summarize

# Every cell's ``metrics`` object has exactly these keys (bench/README.md documents each).
DISTRIBUTIONS = (
    "first_text_ms",
    "end_of_turn_ms",
    "end_of_turn_escalated_ms",
    "overhead_ms",
    "overhead_first_text_ms",
    "overhead_end_ms",
    "overhead_net_end_ms",
    "upstream_first_token_lag_ms",
    "upstream_end_lag_ms",
    "handoff_gap_ms",
    "handoff_wait_ms",
    "handoff_gap_vs_replay_ms",
    "barge_in_ms",
    "cost_per_turn_usd",
)
SCALARS = (
    "turns",
    "responses",
    "replay_match_rate",
    "errors",
    "barge_in_attempts",
    "handoffs",
    "hedge_rate",
    "server_cpu_s",
    "server_cpu_us_per_token",
    "server_rss_per_session_kib",
    "streamed_tokens",
    "delta_chars_per_s",
    "pace",
    "throughput_vs_bare",
    "cpu_vs_bare",
    "cpu_vs_bare_proxy",
    "cost_total_usd",
    "task_success",
    "task_success_hard",
    "task_success_easy",
    "escalation_rate",
    "escalation_rate_hard",
    "escalation_rate_easy",
    "wall_s",
    "machine_busy",
    "server_cpu_cores",
    "upstream_cpu_cores",
    "client_cpu_cores",
    "others_cpu_cores",
)


@dataclass
class CellRaw:
    """What one cell (a policy at a concurrency) produced while it ran."""

    policy: str
    sessions: int
    turns: list[TurnRecord] = field(default_factory=list)
    cancels: list[CancelRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    rss_before: int = 0
    rss_peak: int = 0
    others_cpu_s: float = 0.0  # CPU the machine spent on processes the run did not start
    upstream_cpu_s: float = 0.0  # the sim upstreams' CPU
    client_cpu_s: float = 0.0  # this process's (the client's) CPU
    machine_busy: float = 0.0  # fraction of all cores busy during the cell


@dataclass
class Replayer:
    """Replays responses in virtual time, each distinct request once."""

    params: CascadeParams
    tiers: Sequence[TierSim]
    verifiers: Sequence[Verifier]
    bare_tier: int = 0
    _cache: dict[str, Ideal] = field(default_factory=dict)
    replays: int = 0

    def ideal(self, response: ResponseRecord, *, bare: bool) -> Ideal:
        key = json.dumps(
            [
                bare,
                response.overrides,
                response.spent_before,
                msgspec.to_builtins(response.messages),
            ],
            sort_keys=True,
        )
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        self.replays += 1
        choice = "auto" if response.tools else None
        if bare:
            spec = self.params.tiers[self.bare_tier]
            ideal = replay_bare(
                self.tiers[self.bare_tier],
                spec,
                response.messages,
                tools=response.tools,
                tool_choice=choice,
            )
        else:
            overrides = msgspec.convert(response.overrides or {}, wire.CascadeOverrides)
            eff = apply_overrides(self.params, overrides)
            ideal = replay_turn(
                eff.params,
                self.tiers,
                response.messages,
                tools=response.tools,
                tool_choice=choice,
                first_tier=eff.first_tier,
                max_tier=eff.max_tier,
                session_spent_usd=response.spent_before,
                verifiers=self.verifiers,
            )
        self._cache[key] = ideal
        return ideal

    def ttft(self, response: ResponseRecord, tier: int, prefix: str) -> float:
        spec: TierSpec = self.params.tiers[tier]
        choice = "auto" if response.tools else None
        steps = tier_schedule(
            self.tiers[tier], response.messages, response.tools, choice, None, spec, prefix
        )
        return steps[0].delay


def matches(response: ResponseRecord, ideal: Ideal, *, bare: bool) -> bool:
    if response.text != ideal.text:
        return False
    if bare:
        return response.status == ideal.status
    kinds = [d[1] for d in response.decisions if d[1] != "filler"]
    return kinds == ideal.decision_kinds() and response.status == ideal.status


def _handoffs(
    response: ResponseRecord, ideal: Ideal | None, replayer: Replayer
) -> list[tuple[float, float, float | None]]:
    """(gap, wait, gap vs replay) in ms for each handoff of the response that got text after it."""
    out = []
    released = ""
    deltas = response.deltas
    for k, (t_h, _from, to, chars) in enumerate(response.handoffs):
        # the decision that caused it: the last preempt/fallback before the handoff event
        decision = None
        hedge_at = None
        for d in response.decisions:
            if d[0] > t_h:
                break
            if d[1] in ("preempt", "fallback"):
                decision = d
            elif d[1] == "hedge" and d[3] == to:
                hedge_at = d[0]
            elif d[1] == "hedge_cancel":
                hedge_at = None
        if decision is None:
            continue
        after = [t for t, _ in deltas if t >= t_h]
        if not after:
            continue
        t_dec = decision[0]
        released = "".join(x for t, x in deltas if t < t_h)[:chars]
        ttft = replayer.ttft(response, to, released)
        # a promoted hedge started at its own decision: only what is left of its TTFT counts
        outstanding = ttft if hedge_at is None else max(0.0, hedge_at + ttft - t_dec)
        wait = after[0] - t_dec
        vs_replay = None
        if ideal is not None and k < len(ideal.handoffs):
            t_ih = ideal.handoffs[k][0]
            ideal_after = [t for t, _ in ideal.releases if t >= t_ih]
            if ideal_after:
                vs_replay = (wait - (ideal_after[0] - t_ih)) * 1000.0
        out.append(((wait - outstanding) * 1000.0, wait * 1000.0, vs_replay))
    return out


def cell_metrics(
    cell: CellRaw,
    replayer: Replayer,
    preempt_below: float,
    min_tokens: int,
    progress: Callable[[], None] = lambda: None,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The cell's figures, and the full samples behind its distributions (for plots)."""
    bare = cell.policy in ("bare", "bare-proxy")  # the light tier's stream, nothing else
    first_text, end_of_turn, end_escalated = [], [], []
    hedged = 0
    overhead, overhead_first, overhead_end = [], [], []
    gaps, waits, gaps_vs = [], [], []
    lag_first, lag_end, overhead_net_end = [], [], []
    ideal_total = observed_total = 0.0
    responses = matched = handoffs = 0
    tokens = chars = 0
    for turn in cell.turns:
        if turn.t_first_text is not None:
            first_text.append((turn.t_first_text - turn.t_start) * 1000.0)
        end_of_turn.append((turn.t_end - turn.t_start) * 1000.0)
        if turn.escalated:
            end_escalated.append(end_of_turn[-1])
        for r in turn.responses:
            responses += 1
            handoffs += len(r.handoffs)
            hedged += any(d[1] == "hedge" for d in r.decisions)
            tokens += r.output_tokens
            chars += len(r.text)
            ideal = replayer.ideal(r, bare=bare)
            ok = matches(r, ideal, bare=bare)
            if ok:
                matched += 1
                offset = 0
                for i, (t, piece) in enumerate(r.deltas):
                    offset += len(piece)
                    at = ideal.release_time(offset)
                    if at is None:
                        continue
                    o = ((t - r.t_send) - at) * 1000.0
                    overhead.append(o)
                    if i == 0:
                        overhead_first.append(o)
                overhead_end.append(((r.t_done - r.t_send) - ideal.end) * 1000.0)
                ideal_total += ideal.end
                final_lag = None
                for (started, first, ended, reason), ia in zip(
                    r.attempts, ideal.attempts, strict=False
                ):
                    if first is not None:
                        lag_first.append((first - started) - ia.ttft * 1000.0)
                    if ended is not None and reason in ("stop", "tool_calls", "length"):
                        final_lag = (ended - started) - ia.duration * 1000.0
                        lag_end.append(final_lag)
                if final_lag is not None:
                    overhead_net_end.append(overhead_end[-1] - final_lag)
                observed_total += r.t_done - r.t_send
            for gap, wait, vs in _handoffs(r, ideal if ok else None, replayer):
                gaps.append(gap)
                waits.append(wait)
                if vs is not None:
                    gaps_vs.append(vs)
        progress()
    barge = [
        (c.t_done - c.t_cancel) * 1000.0
        for c in cell.cancels
        if c.t_cancel is not None and c.status == "cancelled"
    ]
    turns = cell.turns
    hard = [t for t in turns if t.hard]
    easy = [t for t in turns if not t.hard]

    def rate(xs: Sequence[TurnRecord], pred: Callable[[TurnRecord], bool]) -> float | None:
        return round(sum(1 for t in xs if pred(t)) / len(xs), 4) if xs else None

    costs = [t.cost_usd for t in turns]
    pace = ratio(ideal_total, observed_total)
    n = max(1, cell.sessions)
    samples = {
        "first_text_ms": first_text,
        "end_of_turn_ms": end_of_turn,
        "overhead_ms": overhead,
        "handoff_gap_ms": gaps,
        "barge_in_ms": barge,
    }
    return {
        "turns": len(turns),
        "responses": responses,
        "replay_match_rate": ratio(matched, responses),
        "errors": len(cell.errors),
        "first_text_ms": summarize(first_text),
        "end_of_turn_ms": summarize(end_of_turn),
        "end_of_turn_escalated_ms": summarize(end_escalated),
        "overhead_ms": summarize(overhead),
        "overhead_first_text_ms": summarize(overhead_first),
        "overhead_end_ms": summarize(overhead_end),
        "overhead_net_end_ms": summarize(overhead_net_end),
        "upstream_first_token_lag_ms": summarize(lag_first),
        "upstream_end_lag_ms": summarize(lag_end),
        "handoff_gap_ms": summarize(gaps),
        "handoff_wait_ms": summarize(waits),
        "handoff_gap_vs_replay_ms": summarize(gaps_vs),
        "barge_in_ms": summarize(barge),
        "barge_in_attempts": len(cell.cancels),
        "handoffs": handoffs,
        "hedge_rate": ratio(hedged, responses),
        "server_cpu_s": round(cell.cpu_s, 3),
        "server_cpu_us_per_token": round(cell.cpu_s * 1e6 / tokens, 2) if tokens else None,
        "server_rss_per_session_kib": round((cell.rss_peak - cell.rss_before) / n / 1024, 1),
        "streamed_tokens": tokens,
        "delta_chars_per_s": round(chars / cell.wall_s, 1) if cell.wall_s else None,
        "pace": pace,
        "throughput_vs_bare": None,  # filled in once the bare cell is known
        "cpu_vs_bare": None,  # per-token CPU over the bare server's (same N)
        "cpu_vs_bare_proxy": None,  # ... over the bare proxy's
        "cost_per_turn_usd": summarize(costs, digits=7),
        "cost_total_usd": round(sum(costs), 6),
        "task_success": rate(turns, lambda t: not t.problems),
        "task_success_hard": rate(hard, lambda t: not t.problems),
        "task_success_easy": rate(easy, lambda t: not t.problems),
        "escalation_rate": rate(turns, lambda t: t.escalated),
        "escalation_rate_hard": rate(hard, lambda t: t.escalated),
        "escalation_rate_easy": rate(easy, lambda t: t.escalated),
        "wall_s": round(cell.wall_s, 2),
        "machine_busy": round(cell.machine_busy, 3),
        "server_cpu_cores": _per_s(cell.cpu_s, cell.wall_s),
        "upstream_cpu_cores": _per_s(cell.upstream_cpu_s, cell.wall_s),
        "client_cpu_cores": _per_s(cell.client_cpu_s, cell.wall_s),
        "others_cpu_cores": _per_s(cell.others_cpu_s, cell.wall_s),
    }, samples


def _per_s(cpu_s: float, wall_s: float) -> float | None:
    return round(cpu_s / wall_s, 3) if wall_s else None


def posthoc_passes(preempt_below: float, min_tokens: int) -> Callable[[ResponseRecord], bool]:
    """The check the core makes when a tier finishes, applied to a finished light answer:
    completeness and verifiers (a problem leaves a light-only turn not ``completed``), then
    the end-of-answer confidence (the ``accept`` decision's scores)."""

    def passes(r: ResponseRecord) -> bool:
        if r.status != "completed":
            return False
        for _t, kind, _tier, _to, p_correct, n_tokens in r.decisions:
            if kind == "accept" and p_correct is not None and (n_tokens or 0) >= min_tokens:
                return p_correct >= preempt_below
        return True

    return passes
