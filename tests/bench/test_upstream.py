"""The bench's sim upstream keeps absolute time: a late token is late on its own."""

from __future__ import annotations

import pytest

from bench import upstream
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import SCRIPTS, SimProfile, schedule


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_delays_are_time_left_until_each_token_is_due(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(upstream.time, "monotonic", clock)
    profile = SimProfile(ttft_ms=150, itl_ms=15)
    request = TierRequest((Message("user", "Book a table for two at 7pm tonight."),))
    stock = schedule(profile, "light", SCRIPTS["generic"], request)
    steps = upstream.absolute_schedule(profile, "light", SCRIPTS["generic"], request)
    assert [s.chunk for s in steps] == [s.chunk for s in stock]
    due = 0.0
    for k, (step, want) in enumerate(zip(steps, stock, strict=True)):
        due += want.delay
        # every token's sleep starts 2 ms late (a slow send, a late wake-up) ...
        late = 0.002 if k else 0.0
        clock.now += late
        got = step.delay
        # ... and is shortened by exactly that: the lateness never accumulates
        assert got == pytest.approx(max(0.0, want.delay - late))
        clock.now += got
    assert clock.now - 100.0 == pytest.approx(due, abs=0.0021)
