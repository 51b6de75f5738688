"""The scenario suite in-process: the cascade is nearly as good as strong-only, far cheaper."""

from __future__ import annotations

import anyio
from realtime_cascade.demos.booking.demo import (
    CONFIG,
    PROFILE,
    TurnReport,
    play_all,
    summarize,
    summary_json,
)
from realtime_cascade.demos.booking.scenarios import SUITE

from realtime_cascade import config


def test_suite_shape() -> None:
    turns = [t for c in SUITE for t in c.turns]
    assert len(turns) >= 40
    hard = sum(t.hard for t in turns)
    assert 0.25 <= hard / len(turns) <= 0.4
    assert all(len(c.turns) >= 2 for c in SUITE)


def test_acceptance_ratios() -> None:
    runs = anyio.run(play_all)
    cascade, light, strong = (summarize(runs[k]) for k in ("cascade", "light-only", "strong-only"))
    assert cascade.turns == strong.turns == light.turns >= 40
    assert cascade.success_rate >= strong.success_rate - 0.02, summary_json(runs)
    assert cascade.cost_usd <= 0.40 * strong.cost_usd, summary_json(runs)
    # the cascade earns its keep: the light tier alone fails the hard turns
    assert light.hard_success_rate < 0.6 <= cascade.hard_success_rate
    assert 0.15 <= cascade.escalation_rate <= 0.6
    # every tool step opens with words: the listener hears something before a filler is due
    budget = config.load(CONFIG).profiles[PROFILE].budgets.first_text_ms
    for s in (cascade, light, strong):
        assert s.first_text_ms_p50 is not None and s.first_text_ms_p50 < budget
    # requests just beyond the light tier hedge: some recover, some hand over to the hedge
    assert 0 < cascade.hedges_promoted < cascade.hedges, summary_json(runs)
    assert light.hedges == strong.hedges == 0


def test_conversations_over_websocket_match_in_process() -> None:
    suite = tuple(c for c in SUITE if c.id in ("chen-move", "chen-basic", "okafor-swap"))

    async def both() -> tuple[dict[str, list[TurnReport]], dict[str, list[TurnReport]]]:
        return await play_all(suite, websocket=True), await play_all(suite)

    remote, local = anyio.run(both)
    for name in ("cascade", "strong-only"):
        assert [r.success for r in remote[name]] == [r.success for r in local[name]]
        assert all(r.success for r in remote[name]), [r.problems for r in remote[name]]
    assert any(r.escalated for r in remote["cascade"])


def test_bounded_concurrency_plays_each_policy_in_turn() -> None:
    # what the real-tier variant (--config booking-local --concurrency 1) relies on: at most
    # one conversation at a time, the policies one after the other, the same verdicts
    suite = SUITE[:2]
    seen: list[str] = []

    def progress(policy: str, conv: object, reports: object) -> None:
        seen.append(policy)

    async def both() -> tuple[dict[str, list[TurnReport]], dict[str, list[TurnReport]]]:
        return (
            await play_all(suite, websocket=True, concurrency=1, progress=progress),
            await play_all(suite, websocket=True),
        )

    bounded, free = anyio.run(both)
    assert seen[:6] == ["cascade", "cascade", "light-only", "light-only", "strong-only",
                        "strong-only"]  # fmt: skip
    for name in ("cascade", "light-only", "strong-only"):
        assert [r.success for r in bounded[name]] == [r.success for r in free[name]]


def test_the_real_tier_booking_config_is_packaged_and_local() -> None:
    cfg = config.load("booking-local")
    tiers = cfg.profiles["booking"].tiers
    assert [getattr(t.provider, "model", None) for t in tiers] == [
        "qwen2.5-coder-0.5b",
        "qwen2.5-coder-1.5b",
    ]
