"""Circuit breakers: a provider that keeps failing is taken out of routing, probed again after
a cooldown, and put back when the probe works — the breaker's table, then the runtime over real
HTTP, then the server."""

from __future__ import annotations

import time

import anyio
import pytest

from bench.chaos import EASY, fault_params, http_provider
from realtime_cascade.providers.base import (
    ConnectionLost,
    MalformedStream,
    Message,
    RateLimited,
    UpstreamStatus,
)
from realtime_cascade.providers.health import BreakerParams, CircuitBreaker, ProviderHealth
from realtime_cascade.runtime import CascadeProfile, TurnRequest, TurnRunner

from .conftest import ServerFactory, UpstreamFactory, raw

pytestmark = pytest.mark.anyio

P = BreakerParams(failure_threshold=3, cooldown_s=10.0, max_cooldown_s=35.0)

# --- the table, pure -------------------------------------------------------------------------


def test_opens_after_the_threshold_of_consecutive_failures() -> None:
    b = CircuitBreaker(P)
    b.failed(0.0)
    b.failed(1.0)
    assert b.state == "closed" and b.available(1.0)
    b.succeeded(1.5)  # a success resets the count
    b.failed(2.0)
    b.failed(2.1)
    assert b.state == "closed"
    b.failed(2.2)
    assert b.state == "open" and not b.available(2.2)
    assert b.retry_in(5.2) == pytest.approx(7.0)


def test_half_open_probe_closes_on_success() -> None:
    b = CircuitBreaker(P)
    for t in (0.0, 0.1, 0.2):
        b.failed(t)
    assert not b.available(10.1)
    assert b.available(10.2)  # cooldown over: a probe may start
    b.started(10.2)
    assert b.state == "half_open"
    assert not b.available(10.3)  # one probe at a time
    b.succeeded(10.5)
    assert b.state == "closed" and b.available(10.5) and b.consecutive_failures == 0


def test_a_failed_probe_doubles_the_cooldown_up_to_the_cap() -> None:
    b = CircuitBreaker(P)
    for t in (0.0, 0.1, 0.2):
        b.failed(t)
    b.started(10.2)
    b.failed(10.3)  # probe failed: open for 20 s
    assert b.state == "open" and not b.available(30.2) and b.available(30.3)
    b.started(30.3)
    b.failed(30.4)  # 40 s, capped at 35
    assert not b.available(65.3) and b.available(65.4)
    assert b.opened_count == 3


def test_a_lost_probe_frees_its_slot_after_a_cooldown() -> None:
    b = CircuitBreaker(P)
    for t in (0.0, 0.1, 0.2):
        b.failed(t)
    b.started(10.2)
    assert not b.available(20.1)
    assert b.available(20.2)  # the probe never reported: another may start
    b.abandoned(20.2)  # or it was cancelled before any verdict
    assert b.available(20.2)


def test_rate_limited_with_retry_after_opens_at_once_for_that_long() -> None:
    b = CircuitBreaker(P)
    b.failed(0.0, retry_after=2.0)
    assert b.state == "open" and not b.available(1.9) and b.available(2.0)
    b2 = CircuitBreaker(P)
    b2.failed(0.0, retry_after=600.0)  # capped at max_cooldown_s
    assert b2.available(35.0)


def test_disabled_breaker_never_opens() -> None:
    b = CircuitBreaker(BreakerParams(enabled=False, failure_threshold=1))
    b.failed(0.0)
    assert b.available(0.0)


def test_request_faults_do_not_count_against_the_provider() -> None:
    now = [0.0]
    h = ProviderHealth(
        ["light", "strong"], BreakerParams(failure_threshold=1), clock=lambda: now[0]
    )
    h.failed(0, UpstreamStatus("bad request", 400))
    h.failed(0, UpstreamStatus("too large", 413))
    assert h.unavailable() == frozenset()
    h.failed(0, MalformedStream("x"))
    assert h.unavailable() == {0}
    h.failed(1, ConnectionLost("x"))
    assert h.unavailable() == {0, 1}
    h.failed(0, RateLimited("slow down", retry_after=3.0))  # already open: unchanged
    now[0] = 5.0
    assert h.unavailable() == frozenset()  # both cooldowns (5 s) are over
    snap = {s.tier: s for s in h.snapshot()}
    assert snap["light"].state == "open" and snap["light"].opened_count == 1
    assert snap["light"].retry_in_s == 0.0


# --- the runtime, over real HTTP --------------------------------------------------------------


def request(text: str = EASY) -> TurnRequest:
    return TurnRequest((Message("user", text),))


async def run(profile: CascadeProfile) -> tuple[float, object]:
    t0 = time.monotonic()
    with anyio.fail_after(5):
        trace = await TurnRunner(profile, request(), lambda a: None).run()
    return time.monotonic() - t0, trace


def two_tier(
    name: str, light_url: str, strong_url: str, *, health: BreakerParams | None = None
) -> CascadeProfile:
    """The fault tests' two tiers, each on its own sim upstream (or both on one)."""
    light = http_provider(light_url, "light", None)
    strong = http_provider(strong_url, "strong", None)
    return CascadeProfile(name, fault_params(), [light, strong], health=health)


def chat_requests(up: object) -> int:
    received = up.upstream.received  # type: ignore[attr-defined]
    return sum(1 for r in received if r.path.endswith("/chat/completions"))


async def test_a_failing_tier_is_skipped_then_probed_then_used_again(
    make_upstream: UpstreamFactory,
) -> None:
    breaker = BreakerParams(failure_threshold=3, cooldown_s=0.3)
    async with make_upstream(fault="status:500") as light_up, make_upstream() as strong_up:
        profile = two_tier("flaky", light_up.base_url, strong_up.base_url, health=breaker)
        for _ in range(3):
            _, trace = await run(profile)
            assert trace.status == "completed"  # type: ignore[attr-defined]
            assert [d.kind for d in trace.decisions][:2] == ["route", "fallback"]  # type: ignore[attr-defined]
        assert profile.health.unavailable() == {0}
        assert chat_requests(light_up) == 3

        # open: the light tier is not even asked; the route says why
        _, trace = await run(profile)
        route = trace.decisions[0]  # type: ignore[attr-defined]
        assert (route.kind, route.cause, route.tier) == ("route", "health", 1)
        assert "light is unavailable (circuit open)" in route.reason
        assert chat_requests(light_up) == 3

        # healed; after the cooldown one turn probes it, and it is closed again
        light_up.upstream.fault = None
        await anyio.sleep(0.35)
        assert profile.health.unavailable() == frozenset()
        _, trace = await run(profile)
        assert trace.final_tier_name == "light" and trace.status == "completed"  # type: ignore[attr-defined]
        assert profile.health.breakers[0].state == "closed"
        assert chat_requests(light_up) == 4
        await profile.aclose()


async def test_a_failed_probe_reopens_the_breaker(make_upstream: UpstreamFactory) -> None:
    breaker = BreakerParams(failure_threshold=1, cooldown_s=0.2)
    async with make_upstream(fault="status:503") as light_up, make_upstream() as strong_up:
        profile = two_tier("flaky", light_up.base_url, strong_up.base_url, health=breaker)
        await run(profile)
        assert profile.health.unavailable() == {0}
        await anyio.sleep(0.25)
        _, trace = await run(profile)  # the probe: fails again, falls back
        assert trace.status == "completed" and trace.final_tier_name == "strong"  # type: ignore[attr-defined]
        b = profile.health.breakers[0]
        assert b.state == "open" and b.opened_count == 2
        # doubled: 0.4 s (read as the cooldown itself: how much of it is left depends on how
        # long the fallback turn took on a loaded machine)
        assert b.cooldown_s == pytest.approx(0.4)
        assert (b.retry_in(time.monotonic()) or 0) <= 0.4
        await profile.aclose()


async def test_timeouts_count_as_failures(make_upstream: UpstreamFactory) -> None:
    # pings only: each turn's light attempt misses its first-token deadline
    breaker = BreakerParams(failure_threshold=2, cooldown_s=5)
    async with make_upstream(fault="keepalive:20") as light_up, make_upstream() as strong_up:
        profile = two_tier("slow", light_up.base_url, strong_up.base_url, health=breaker)
        slow1, _ = await run(profile)
        slow2, _ = await run(profile)
        assert profile.health.unavailable() == {0}
        fast, trace = await run(profile)  # straight to strong: no 400 ms first-token wait
        assert trace.decisions[0].cause == "health"  # type: ignore[attr-defined]
        assert fast < min(slow1, slow2) - 0.2
        await profile.aclose()
        assert await light_up.settle() == 0


async def test_rate_limit_retry_after_opens_the_breaker_for_that_long(
    make_upstream: UpstreamFactory,
) -> None:
    async with (
        make_upstream(fault="status:429,retry_after:0.3") as light_up,
        make_upstream() as strong_up,
    ):
        profile = two_tier("limited", light_up.base_url, strong_up.base_url)
        await run(profile)  # one 429 is enough
        assert profile.health.unavailable() == {0}
        await anyio.sleep(0.35)
        assert profile.health.unavailable() == frozenset()
        await profile.aclose()


# --- the server -------------------------------------------------------------------------------


async def test_with_every_tier_open_a_response_fails_at_once_saying_why(
    make_server: ServerFactory, make_upstream: UpstreamFactory
) -> None:
    async with make_upstream(fault="status:500") as up:
        breaker = BreakerParams(failure_threshold=1, cooldown_s=30)
        profile = two_tier("down", up.base_url, up.base_url, health=breaker)
        async with make_server(profiles={"down": profile}) as server, raw(server, "down") as c:
            first = await c.turn(EASY)
            assert first[-1]["response"]["status"] == "failed"
            t0 = time.monotonic()
            events = await c.turn(EASY)
            elapsed = time.monotonic() - t0
            done = events[-1]["response"]
            assert done["status"] == "failed"
            message = done["status_details"]["error"]["message"]
            assert message == "every allowed tier is unavailable (circuit open: light, strong)"
            trace = next(e["trace"] for e in events if e["type"] == "cascade.trace")
            assert trace["attempts"] == [] and trace["decisions"][0]["cause"] == "health"
            assert elapsed < 2.0  # refused at once: nothing waited on the 30 s cooldown
        await profile.aclose()
