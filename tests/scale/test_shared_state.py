"""server/state.py against a real Redis: two RedisState objects stand for two workers (or two
machines) sharing one Redis; every limit must hold across them exactly."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.server.state import LocalState, RedisState, build_state

from .conftest import Redis, free_port

pytestmark = pytest.mark.anyio

StateFactory = Callable[..., Awaitable[RedisState]]


def make_config(**fields: object) -> config_mod.Config:
    cfg = config_mod.load(None)
    server = {k: v for k, v in fields.items() if k in config_mod.ServerConfig.__struct_fields__}
    state = {k: v for k, v in fields.items() if k in config_mod.StateConfig.__struct_fields__}
    return msgspec.structs.replace(
        cfg,
        server=msgspec.structs.replace(cfg.server, **server),
        state=msgspec.structs.replace(cfg.state, **state),
    )


@pytest.fixture
async def states(redis_server: Redis) -> AsyncIterator[StateFactory]:
    made: list[RedisState] = []

    async def make(url: str | None = None, **fields: object) -> RedisState:
        cfg = make_config(**fields)
        s = RedisState(cfg.server, cfg.state, url or redis_server.url)
        made.append(s)
        return s

    yield make
    for s in made:
        await s.aclose()


async def test_without_a_url_the_state_is_this_process_memory() -> None:
    assert isinstance(build_state(make_config(), environ={}), LocalState)
    cfg = make_config(redis_url="redis://127.0.0.1:1/0")
    assert isinstance(build_state(cfg, environ={}), RedisState)
    env = {"REALTIME_CASCADE_REDIS_URL": "redis://127.0.0.1:1/0"}
    assert isinstance(build_state(make_config(), environ=env), RedisState)


async def test_the_event_rate_of_a_key_is_one_bucket_across_workers(
    states: StateFactory,
) -> None:
    a = await states(max_events_per_second_per_key=5.0)
    b = await states(max_events_per_second_per_key=5.0)
    # Burst 5: five events in a row pass, from whichever worker; the sixth does not.
    got = [await (a if i % 2 else b).take_event("key_x", 0.0) for i in range(8)]
    assert got == [True] * 5 + [False] * 3
    assert await a.take_event("key_other", 0.0)  # other keys have their own bucket
    await anyio.sleep(0.45)  # ~2 tokens back at 5/s
    more = [await (a if i % 2 else b).take_event("key_x", 0.0) for i in range(4)]
    assert more[:2] == [True, True] and more[3] is False


async def test_a_key_session_cap_holds_across_workers_and_leases_expire(
    states: StateFactory,
) -> None:
    a = await states(max_sessions_per_key=2, session_lease_s=0.6)
    b = await states(max_sessions_per_key=2, session_lease_s=0.6)
    assert await a.open_session("key_x", "s1")
    assert await b.open_session("key_x", "s2")
    assert not await a.can_open("key_x")
    assert not await b.open_session("key_x", "s3")
    await a.close_session("key_x", "s1")
    assert await b.open_session("key_x", "s3")
    # Worker a "crashes" holding s4's slot... (b closes s3 to make room first)
    await b.close_session("key_x", "s3")
    assert await a.open_session("key_x", "s4")
    a._mine.clear()  # it will never renew or close s4
    assert not await b.can_open("key_x")
    # ...while b's live s2 is renewed by its sync: after the lease only s4's slot is free again.
    for _ in range(4):
        await anyio.sleep(0.25)
        await b.sync()
    assert await b.can_open("key_x")
    assert await b.open_session("key_x", "s5")
    assert not await b.open_session("key_x", "s6")  # s2 (renewed) and s5


async def test_spend_adds_up_across_workers_against_the_key_budget(states: StateFactory) -> None:
    a = await states(key_budget_usd=0.01)
    b = await states(key_budget_usd=0.01)
    await a.start({})
    await b.start({})
    a.record_cost("key_x", "s1", 0.004)
    b.record_cost("key_x", "s2", 0.004)
    a.record_cost("key_x", "s1", 0.001)
    for _ in range(250):  # the spend is flushed in the background
        if await a.key_spent("key_x") >= 0.009 - 1e-12:
            break
        await anyio.sleep(0.02)
    assert await b.key_spent("key_x") == pytest.approx(0.009)
    assert await b.session_spent("s1") == pytest.approx(0.005)
    left = await b.key_budget_left("key_x")
    assert left == pytest.approx(0.001)
    b.record_cost("key_x", "s2", 0.002)
    for _ in range(250):
        left = await a.key_budget_left("key_x")
        if left is not None and left <= 0:
            break
        await anyio.sleep(0.02)
    assert left is not None and left < 0


async def test_an_open_breaker_and_router_statistics_are_shared(states: StateFactory) -> None:
    cfg = config_mod.load(None)
    pa = config_mod.build_profile(cfg, "default")
    pb = config_mod.build_profile(cfg, "default")
    a = await states(sync_interval_s=60.0)
    b = await states(sync_interval_s=60.0)
    a._profiles = {"default": pa}
    b._profiles = {"default": pb}
    now = time.monotonic()
    pa.health.breakers[1].failed(now, retry_after=5.0)  # a: 429 with Retry-After
    assert pa.health.unavailable() == {1}
    assert pb.health.unavailable() == frozenset()
    # Router: a learned from 30 turns, b from 10.
    for _ in range(30):
        pa.router.observe([1.0, 0.0, 0.0, 0.0, 0.0], True)
    for _ in range(10):
        pb.router.observe([0.0, 1.0, 0.0, 0.0, 0.0], False)
    wa, wb = pa.router.weights, pb.router.weights
    await a.sync()
    await b.sync()
    assert pb.health.unavailable() == {1}
    left = pb.health.breakers[1].retry_in(time.monotonic())
    assert left is not None and 3.0 < left <= 5.0
    expected = [(x * 30 + y * 10) / 40 for x, y in zip(wa, wb, strict=True)]
    assert pb.router.weights == pytest.approx(expected)
    await a.sync()
    assert pa.router.weights == pytest.approx(expected)
    assert pa.router.observations == 30  # its own count: the next merge weighs it the same


@pytest.mark.parametrize("on_error", ["open", "closed"])
async def test_redis_down_answers_per_setting_and_never_raises(
    states: StateFactory, on_error: str, tmp_path: Path
) -> None:
    s = await states(
        url=f"redis://127.0.0.1:{free_port()}/0",
        on_error=on_error,
        timeout_s=0.2,
        max_sessions_per_key=1,
        max_events_per_second_per_key=5.0,
        key_budget_usd=1.0,
    )
    want = on_error == "open"
    assert await s.can_open("k") is want
    assert await s.open_session("k", "s1") is want
    assert await s.take_event("k", 0.0) is want
    assert (await s.key_budget_left("k") or 0.0) > 0 if want else await s.key_budget_left("k") == 0
    await s.sync()  # breakers and routers: a failed round is logged, nothing raised
    s.record_cost("k", "s1", 0.5)
    await s.close_session("k", "s1")
    assert s.errors >= 4
