"""The zero-overhead replay: same core, same schedules, virtual time — it must say exactly what
the real runtime says (text, decisions, status, cost), only at the scheduled instants."""

from __future__ import annotations

import msgspec
import pytest

from bench.ideal import TierSim, replay_bare, replay_turn, upstream_request
from realtime_cascade import config as config_mod
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import SCRIPTS, SimProfile, SimProvider, schedule
from realtime_cascade.runtime import CascadeProfile, TurnRequest, run_turn

pytestmark = pytest.mark.anyio

EASY = "Book a table for two at 7pm tonight."
HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, and apply my "
    "voucher unless the fare goes up."
)
FAST = {
    "light": SimProfile(ttft_ms=15, itl_ms=2, skill=0.5),
    "strong": SimProfile(ttft_ms=30, itl_ms=3, skill=1.0),
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _setup() -> tuple[CascadeProfile, list[TierSim]]:
    params = config_mod.load().profiles["default"].params()
    tiers = [TierSim(t.name, FAST[t.name], SCRIPTS["generic"]) for t in params.tiers]
    providers = [SimProvider(t.name, t.profile) for t in tiers]
    return CascadeProfile("default", params, providers), tiers


def test_the_upstream_round_trip_drops_the_seed_and_keeps_the_prefix() -> None:
    tier = TierSim("light", FAST["light"], SCRIPTS["generic"])
    request = TierRequest((Message("user", HARD),), prefix="Alright, let me see.", seed=9)
    seen = upstream_request(request, tier)
    assert seen.prefix == "Alright, let me see." and seen.seed == 0
    assert seen.messages == request.messages


@pytest.mark.parametrize("text", [EASY, HARD])
@pytest.mark.parametrize(
    ("first", "top", "hedging"), [(0, None, True), (0, None, False), (0, 0, True), (1, 1, True)]
)
async def test_replay_says_what_the_runtime_says(
    text: str, first: int, top: int | None, hedging: bool
) -> None:
    profile, tiers = _setup()
    params = profile.params
    params = msgspec.structs.replace(
        params, policy=msgspec.structs.replace(params.policy, hedging=hedging)
    )
    messages = (Message("user", text),)
    trace = await run_turn(
        profile,
        TurnRequest(messages),
        params=params,
        first_tier=first,
        max_tier=top,
        learn=False,
    )
    ideal = replay_turn(params, tiers, messages, first_tier=first, max_tier=top)
    assert ideal.text == trace.text
    assert ideal.status == trace.status
    assert ideal.decision_kinds() == [d.kind for d in trace.decisions if d.kind != "filler"]
    assert ideal.cost_usd == pytest.approx(trace.cost_usd)
    assert [a.tier for a in ideal.attempts] == [a.tier for a in trace.attempts]
    times = [t for t, _ in ideal.releases]
    assert times == sorted(times) and ideal.end >= times[-1]
    # every attempt's first token is its scheduled TTFT after its start, no later
    for a, seen in zip(ideal.attempts, trace.attempts, strict=True):
        if seen.first_token_ms is not None:
            assert seen.first_token_ms - seen.started_ms >= a.ttft * 1000 - 1.0
    if text == HARD and top is None:
        assert ideal.handoffs and trace.escalated


def test_bare_replay_is_the_light_schedule_token_by_token() -> None:
    tier = TierSim("light", FAST["light"], SCRIPTS["generic"])
    params = config_mod.load().profiles["default"].params()
    messages = (Message("user", EASY),)
    ideal = replay_bare(tier, params.tiers[0], messages)
    steps = schedule(tier.profile, "light", tier.script, TierRequest(messages, max_tokens=512))
    assert ideal.text == "".join(s.chunk.text for s in steps)
    assert len(ideal.releases) == sum(1 for s in steps if s.chunk.text)
    assert ideal.end == pytest.approx(sum(s.delay for s in steps))
    assert ideal.release_time(len(ideal.text)) == ideal.releases[-1][0]
    assert ideal.release_time(len(ideal.text) + 1) is None
