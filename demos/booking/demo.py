"""``realtime-cascade demo``: the booking suite under three policies, a transcript and a table.

The same suite is played three times, all conversations concurrently: the cascade (light tier
first, escalating when the monitor or the verifier says so), light-only (``max_tier=0``) and
strong-only (``first_tier`` = the last tier). Each conversation has its own store.

By default every conversation goes over its own WebSocket connection to a server started
in-process on a free port, whose profile binds the booking agent (:mod:`.agent`): the server runs
the tools, the client (:mod:`.wsagent`) only talks. ``--inprocess`` drives the same agent's tool
loop directly (:class:`~realtime_cascade.agents.testing.AgentConversation`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from realtime_cascade import config as config_mod
from realtime_cascade.agents.testing import AgentConversation, TurnResult
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.trace import TurnTrace

from .agent import Policy, make_agent
from .domain import Store
from .scenarios import SUITE, Conversation, check
from .wsagent import WsConversation

CONFIG = Path(__file__).with_name("config.toml")
PROFILE = "booking"

# Called as each conversation ends: the policy, the conversation and its turns' reports.
Progress = Callable[[str, "Conversation", list["TurnReport"]], None]


class TurnReport(msgspec.Struct, frozen=True):
    policy: str
    conversation: str
    index: int
    user: str
    hard: bool
    heard: str
    tier_path: tuple[str, ...]  # one entry per cascade step: "light", "light→strong", …
    reasons: tuple[str, ...]  # escalation / refusal / agent decisions, in order
    first_text_ms: float | None
    end_ms: float
    cost_usd: float
    escalated: bool
    success: bool
    problems: tuple[str, ...]
    hedges: int = 0  # strong tiers started speculatively (in any step)
    hedges_promoted: int = 0  # of which took over


class PolicySummary(msgspec.Struct, frozen=True):
    turns: int
    success_rate: float
    escalation_rate: float
    cost_usd: float
    hard_success_rate: float
    easy_success_rate: float
    first_text_ms_p50: float | None
    steps_per_turn: float
    hedges: int = 0
    hedges_promoted: int = 0


def step_path(trace: TurnTrace) -> str:
    """The tiers that were active in a step (hedges that never took over left out)."""
    names = [a.tier_name for a in trace.attempts if not a.speculative or a.promoted]
    return "→".join(names) or trace.final_tier_name


def step_reasons(trace: TurnTrace) -> list[str]:
    out = []
    for d in trace.decisions:
        if d.kind in ("preempt", "hedge", "hedge_cancel", "fallback", "refuse", "stop") or (
            d.kind == "route" and d.tier > 0 and d.cause != "policy"
        ):
            out.append(f"{d.kind} ({d.cause}): {d.reason}")
    return out


def report(
    policy: str, conv: Conversation, index: int, result: TurnResult, store: Store
) -> TurnReport:
    turn = conv.turns[index]
    problems = check(store, result.text, turn.expect)
    reasons = [r for s in result.steps for r in step_reasons(s)]
    reasons += [f"agent {d.kind}: {d.reason}" for d in result.decisions]
    return TurnReport(
        policy=policy,
        conversation=conv.id,
        index=index,
        user=turn.text,
        hard=turn.hard,
        heard=result.text,
        tier_path=tuple(step_path(s) for s in result.steps),
        reasons=tuple(reasons),
        first_text_ms=result.first_text_ms,
        end_ms=result.end_ms,
        cost_usd=result.cost_usd,
        escalated=result.escalated,
        success=not problems,
        problems=tuple(problems),
        hedges=sum(d.kind == "hedge" for s in result.steps for d in s.decisions),
        hedges_promoted=sum(a.speculative and a.promoted for s in result.steps for a in s.attempts),
    )


async def play_inprocess(
    policy: Policy,
    suite: Sequence[Conversation],
    *,
    config_path: Path | str = CONFIG,
    max_tool_calls: int | None = None,
    progress: Progress | None = None,
) -> list[TurnReport]:
    """Play every conversation of ``suite`` concurrently, in-process (the agent's tool loop
    driven directly, no socket)."""
    cfg = config_mod.load(config_path)
    base = config_mod.build_profile(cfg, PROFILE)
    agent = make_agent() if max_tool_calls is None else make_agent(max_tool_calls=max_tool_calls)
    reports: list[TurnReport] = []

    async def conversation(conv: Conversation) -> None:
        talk = AgentConversation(
            agent, base, first_tier=policy.first_tier, max_tier=policy.max_tier
        )
        mine = []
        for i, turn in enumerate(conv.turns):
            result = await talk.say(turn.text)
            mine.append(report(policy.name, conv, i, result, talk.state))
        reports.extend(mine)
        if progress is not None:
            progress(policy.name, conv, mine)

    try:
        async with anyio.create_task_group() as tg:
            for conv in suite:
                tg.start_soon(conversation, conv)
    finally:
        await base.aclose()
    order = {c.id: k for k, c in enumerate(suite)}
    return sorted(reports, key=lambda r: (order[r.conversation], r.index))


def served_profile(
    cfg: config_mod.Config, stores: dict[str, Store], **changes: object
) -> CascadeProfile:
    """The booking profile with the agent bound, each session's store kept in ``stores`` (by
    session id) so the suite can check what the server-side tools did."""
    profile = config_mod.build_profile(cfg, PROFILE)

    def keep(ctx: Any) -> None:
        stores[ctx.session_id] = ctx.state

    profile.agent = make_agent(on_session_start=keep, **changes)
    return profile


async def play_ws(
    url: str,
    policy: Policy,
    suite: Sequence[Conversation],
    stores: dict[str, Store],
    *,
    session_cap_usd: float,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> list[TurnReport]:
    """Play every conversation of ``suite`` concurrently (at most ``concurrency`` at once), one
    WebSocket connection each; the server's agent runs the tools (its stores in ``stores``)."""
    from websockets.asyncio.client import connect

    reports: list[TurnReport] = []
    slots = anyio.Semaphore(concurrency or max(1, len(suite)))

    async def conversation(conv: Conversation) -> None:
        async with slots, connect(url, max_size=None) as ws:
            talk = WsConversation(ws, policy=policy, session_cap_usd=session_cap_usd)
            await talk.open()
            store = stores[talk.session_id]
            mine = []
            for i, turn in enumerate(conv.turns):
                result = await talk.turn(turn.text)
                mine.append(report(policy.name, conv, i, result, store))
        reports.extend(mine)
        if progress is not None:
            progress(policy.name, conv, mine)

    async with anyio.create_task_group() as tg:
        for conv in suite:
            tg.start_soon(conversation, conv)
    order = {c.id: k for k, c in enumerate(suite)}
    return sorted(reports, key=lambda r: (order[r.conversation], r.index))


def policies(tiers: int) -> tuple[Policy, Policy, Policy]:
    last = tiers - 1
    return (
        Policy("cascade", 0, None),
        Policy("light-only", 0, 0),
        Policy("strong-only", last, last),
    )


async def play_all(
    suite: Sequence[Conversation] = SUITE,
    *,
    config_path: Path | str = CONFIG,
    websocket: bool = False,
    progress: Progress | None = None,
    concurrency: int | None = None,
) -> dict[str, list[TurnReport]]:
    """The suite under all three policies, concurrently; over WebSocket when ``websocket``.
    ``concurrency``: at most that many conversations at once, the policies one after the other
    (real local tiers: 2 cores fit one conversation at a time)."""
    cfg = config_mod.load(config_path)
    if PROFILE not in cfg.profiles:
        raise config_mod.ConfigError(f"{config_path}: the demo needs a profile {PROFILE!r}")
    profile = cfg.profiles[PROFILE]
    out: dict[str, list[TurnReport]] = {}
    if not websocket:

        async def one(policy: Policy) -> None:
            out[policy.name] = await play_inprocess(
                policy, suite, config_path=config_path, progress=progress
            )

        async with anyio.create_task_group() as tg:
            for p in policies(len(profile.tiers)):
                tg.start_soon(one, p)
        return out

    from realtime_cascade.server.app import RealtimeServer

    stores: dict[str, Store] = {}
    served = served_profile(cfg, stores)
    try:
        async with RealtimeServer(
            cfg, host="127.0.0.1", port=0, profiles={PROFILE: served}, start_local=True
        ) as server:
            url = server.url(PROFILE)

            async def remote(policy: Policy) -> None:
                out[policy.name] = await play_ws(
                    url,
                    policy,
                    suite,
                    stores,
                    session_cap_usd=profile.budgets.session_cap_usd,
                    progress=progress,
                    concurrency=concurrency,
                )

            if concurrency is not None:
                for p in policies(len(profile.tiers)):
                    await remote(p)
                return out
            async with anyio.create_task_group() as tg:
                for p in policies(len(profile.tiers)):
                    tg.start_soon(remote, p)
    finally:
        await served.aclose()
    return out


def _median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def summarize(reports: Sequence[TurnReport]) -> PolicySummary:
    n = len(reports)
    hard = [r for r in reports if r.hard]
    easy = [r for r in reports if not r.hard]

    def rate(rs: Sequence[TurnReport]) -> float:
        return round(sum(r.success for r in rs) / len(rs), 4) if rs else 0.0

    firsts = [r.first_text_ms for r in reports if r.first_text_ms is not None]
    p50 = _median(firsts)
    return PolicySummary(
        turns=n,
        success_rate=rate(reports),
        escalation_rate=round(sum(r.escalated for r in reports) / n, 4) if n else 0.0,
        cost_usd=round(sum(r.cost_usd for r in reports), 6),
        hard_success_rate=rate(hard),
        easy_success_rate=rate(easy),
        first_text_ms_p50=None if p50 is None else round(p50, 1),
        steps_per_turn=round(sum(len(r.tier_path) for r in reports) / n, 2) if n else 0.0,
        hedges=sum(r.hedges for r in reports),
        hedges_promoted=sum(r.hedges_promoted for r in reports),
    )


def summary_json(runs: dict[str, list[TurnReport]]) -> dict[str, Any]:
    cascade = summarize(runs["cascade"])
    light = summarize(runs["light-only"])
    strong = summarize(runs["strong-only"])
    out: dict[str, Any] = msgspec.to_builtins(cascade)
    out["policy"] = "cascade"
    out["hard_turns"] = sum(r.hard for r in runs["cascade"])
    out["light_only"] = msgspec.to_builtins(light)
    out["strong_only"] = msgspec.to_builtins(strong)
    ratio = cascade.cost_usd / strong.cost_usd if strong.cost_usd else None
    out["cost_vs_strong"] = None if ratio is None else round(ratio, 4)
    out["success_gap_vs_strong"] = round(strong.success_rate - cascade.success_rate, 4)
    return out


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def render_transcript(reports: Sequence[TurnReport]) -> str:
    lines: list[str] = []
    current = ""
    for r in reports:
        if r.conversation != current:
            current = r.conversation
            lines.append(f"\n=== {r.policy} · {current}")
        mark = "✓" if r.success else "✗"
        lines.append(f"[{r.index + 1}]{' (hard)' if r.hard else ''} user: {r.user}")
        lines.append(f"    agent: {r.heard}")
        lines.append(
            f"    {mark} tiers: {' | '.join(r.tier_path)}; first text {_ms(r.first_text_ms)}; "
            f"end {_ms(r.end_ms)}; ${r.cost_usd:.5f}"
        )
        lines.extend(f"      · {reason}" for reason in r.reasons)
        lines.extend(f"      ✗ {p}" for p in r.problems)
    return "\n".join(lines)


def render_table(runs: dict[str, list[TurnReport]]) -> str:
    head = (
        f"{'policy':<12} {'turns':>5} {'success':>8} {'hard':>6} {'easy':>6} {'escal.':>7} "
        f"{'cost $':>9} {'vs strong':>9} {'1st text p50':>12}"
    )
    strong_cost = summarize(runs["strong-only"]).cost_usd
    rows = [head, "-" * len(head)]
    for name, reports in runs.items():
        s = summarize(reports)
        ratio = s.cost_usd / strong_cost if strong_cost else 0.0
        rows.append(
            f"{name:<12} {s.turns:>5} {s.success_rate:>8.1%} {s.hard_success_rate:>6.0%} "
            f"{s.easy_success_rate:>6.0%} {s.escalation_rate:>7.1%} {s.cost_usd:>9.5f} "
            f"{ratio:>9.1%} {_ms(s.first_text_ms_p50):>12}"
        )
    return "\n".join(rows)


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    demo: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="play the booking suite under cascade, light-only and strong-only",
        description="Play the booking suite (17 conversations, 50 user turns) under three "
        "policies, over WebSocket connections to a server started in-process: a line per "
        "conversation as it ends, then the transcript, then the summary table.",
    )
    demo.add_argument("--json", action="store_true", help="print only the summary, as JSON")
    demo.add_argument(
        "--config",
        default="booking",
        help="the booking config: a TOML file with a 'booking' profile, or the packaged one "
        "(default: %(default)s)",
    )
    demo.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="at most N conversations at once, the policies one after the other (default: "
        "everything at once; real local tiers want 1). Over WebSocket only",
    )
    demo.add_argument(
        "--conversations",
        type=int,
        default=None,
        metavar="N",
        help="only the suite's first N conversations (default: all)",
    )
    demo.add_argument(
        "--inprocess", action="store_true",
        help="drive the runtime directly instead of over WebSocket connections to a server",
    )
    demo.set_defaults(func=run_demo)
    return demo


def progress_line(total: int) -> Progress:
    """A progress report on stderr, one line per finished conversation: the run is silent for
    seconds otherwise, and stdout stays the transcript and the table."""
    done = 0

    def line(policy: str, conv: Conversation, reports: list[TurnReport]) -> None:
        nonlocal done
        done += 1
        ok = sum(r.success for r in reports)
        sys.stderr.write(
            f"demo: [{done:>{len(str(total))}}/{total}] {policy:<11} {conv.id}: "
            f"{ok}/{len(reports)} turns succeeded\n"
        )
        sys.stderr.flush()

    return line


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    websocket = not args.inprocess
    how = "over WebSocket" if websocket else "in-process"
    suite = SUITE[: args.conversations] if getattr(args, "conversations", None) else SUITE
    concurrency: int | None = getattr(args, "concurrency", None)
    if concurrency is not None and concurrency < 1:
        raise config_mod.ConfigError("--concurrency must be at least 1")
    total = 3 * len(suite)
    at_once = "" if concurrency is None else f", at most {concurrency} at once"
    sys.stderr.write(
        f"demo: {len(suite)} conversations x 3 policies, {how}{at_once} (Ctrl-C stops)\n"
    )

    async def main() -> dict[str, list[TurnReport]]:
        return await play_all(
            suite,
            config_path=args.config,
            websocket=websocket,
            progress=progress_line(total),
            concurrency=concurrency,
        )

    runs = anyio.run(main)
    ordered = {k: runs[k] for k in ("cascade", "light-only", "strong-only")}
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary_json(ordered)).decode() + "\n")
        return 0
    for reports in ordered.values():
        sys.stdout.write(render_transcript(reports) + "\n")
    sys.stdout.write(f"\n({how}, {time.monotonic() - started:.1f} s)\n")
    sys.stdout.write("\n" + render_table(ordered) + "\n")  # last: what a reader looks for
    return 0
