"""Provider health: one circuit breaker per tier, so turns stop going to a provider that keeps
failing, and it is probed again after a cooldown.

Rules (in the manner of h11's ``_state.py``: the table is the specification)::

    state       event                                        next
    ─────────   ──────────────────────────────────────────   ──────────────────────────────────
    closed      success                                      closed (failure count reset)
    closed      failure, < failure_threshold in a row        closed
    closed      failure, the failure_threshold-th in a row   open, for cooldown_s
    closed      rate limited with Retry-After S              open, for S (at most max_cooldown_s)
    open        cooldown elapsed, a stream starts (probe)    half_open
    half_open   the probe streams a token or finishes        closed, cooldown back to cooldown_s
    half_open   the probe fails                              open, cooldown doubled (≤ max)
    any         a stream cancelled before any verdict        unchanged (a probe slot is freed)

- A *failure* is what says the provider, not the request, is at fault: a provider error (HTTP
  429/5xx/401/403/404, connection lost, malformed stream, transport timeout) or the core
  abandoning a stream that missed its first-token deadline or stalled. HTTP 400, 413 and 422
  are the request's fault and count as nothing.
- A *success* is a stream that delivered a token or a finish. A stream cut by the cascade itself
  (preempted, hedge not needed, turn over, client cancel) before either counts as nothing.
- *Available* (routable) means: closed; or open with the cooldown elapsed and no probe running.
  While a probe runs, other turns keep away from the tier; a probe that reports nothing within a
  cooldown is presumed lost and another one may start.

:class:`CircuitBreaker` is pure (every method takes ``now``, seconds, monotonic);
:class:`ProviderHealth` holds one per tier of a :class:`~realtime_cascade.runtime.CascadeProfile`
and reads its clock, so the runtime and the server share one view per profile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import msgspec

from .base import ProviderError, RateLimited, UpstreamStatus

BreakerState = Literal["closed", "open", "half_open"]

# Statuses that describe the request rather than the provider.
_REQUEST_FAULTS = frozenset({400, 413, 422})


class BreakerParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[profiles.NAME.health]``: when a tier's provider is taken out of the cascade."""

    enabled: bool = True
    failure_threshold: Annotated[int, msgspec.Meta(ge=1)] = 3
    cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    max_cooldown_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0


DEFAULT_BREAKER = BreakerParams()


class BreakerSnapshot(msgspec.Struct, frozen=True):
    """A breaker as an operator sees it (``/healthz``, metrics, tests)."""

    tier: str
    state: BreakerState
    consecutive_failures: int
    opened_count: int
    retry_in_s: float | None  # open: seconds until a probe may start


def counts_as_failure(exc: ProviderError) -> bool:
    """Does this error say the provider (not this request) is unwell?"""
    return not (isinstance(exc, UpstreamStatus) and exc.status in _REQUEST_FAULTS)


class CircuitBreaker:
    """One tier's breaker; see the module docstring for its table. Pure: ``now`` is passed."""

    __slots__ = (
        "_cooldown",
        "_failures",
        "_opened_at",
        "_probe_at",
        "opened_count",
        "params",
        "state",
    )

    def __init__(self, params: BreakerParams = DEFAULT_BREAKER) -> None:
        self.params = params
        self.state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._cooldown = params.cooldown_s
        self._probe_at: float | None = None
        self.opened_count = 0

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def cooldown_s(self) -> float:
        """How long the current (or last) opening keeps the tier out: doubled by each failed
        probe up to ``max_cooldown_s``, back to ``cooldown_s`` after a success."""
        return self._cooldown

    def available(self, now: float) -> bool:
        """May a new turn route to this tier now?"""
        if not self.params.enabled or self.state == "closed":
            return True
        if self.state == "open":
            return now >= self._opened_at + self._cooldown
        probe = self._probe_at
        return probe is None or now >= probe + self._cooldown  # half-open: one probe at a time

    def retry_in(self, now: float) -> float | None:
        if self.state != "open":
            return None
        return max(0.0, self._opened_at + self._cooldown - now)

    def started(self, now: float) -> None:
        """A stream starts on the tier: after the cooldown it is the probe."""
        if self.state == "open" and now >= self._opened_at + self._cooldown:
            self.state = "half_open"
        if self.state == "half_open":
            self._probe_at = now

    def succeeded(self, now: float) -> None:
        self.state = "closed"
        self._failures = 0
        self._cooldown = self.params.cooldown_s
        self._probe_at = None

    def failed(self, now: float, retry_after: float | None = None) -> None:
        self._failures += 1
        params = self.params
        if self.state == "half_open":
            self._open(now, min(params.max_cooldown_s, max(self._cooldown * 2, params.cooldown_s)))
        elif self.state == "closed":
            if retry_after is not None:
                self._open(now, min(params.max_cooldown_s, retry_after))
            elif self._failures >= params.failure_threshold:
                self._open(now, params.cooldown_s)
        # open: a stream that started before the breaker opened failed too; nothing changes

    def abandoned(self, now: float) -> None:
        """A stream ended without a verdict (cut by the cascade before any token)."""
        self._probe_at = None

    def _open(self, now: float, cooldown: float) -> None:
        self.state = "open"
        self._opened_at = now
        self._cooldown = cooldown
        self._probe_at = None
        self.opened_count += 1


class ProviderHealth:
    """The breakers of one profile's tiers, on one clock."""

    def __init__(
        self,
        tier_names: Sequence[str],
        params: BreakerParams = DEFAULT_BREAKER,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.names = tuple(tier_names)
        self.breakers = tuple(CircuitBreaker(params) for _ in self.names)
        self._clock = clock

    def unavailable(self) -> frozenset[int]:
        """The tiers routing must skip now."""
        now = self._clock()
        return frozenset(i for i, b in enumerate(self.breakers) if not b.available(now))

    def started(self, tier: int) -> None:
        self.breakers[tier].started(self._clock())

    def succeeded(self, tier: int) -> None:
        self.breakers[tier].succeeded(self._clock())

    def failed(self, tier: int, exc: ProviderError | None = None) -> None:
        """``exc`` None: the core abandoned the stream for lateness (TTFT or stall)."""
        if exc is not None and not counts_as_failure(exc):
            self.breakers[tier].abandoned(self._clock())
            return
        retry = exc.retry_after if isinstance(exc, RateLimited) else None
        self.breakers[tier].failed(self._clock(), retry)

    def abandoned(self, tier: int) -> None:
        self.breakers[tier].abandoned(self._clock())

    def snapshot(self) -> list[BreakerSnapshot]:
        now = self._clock()
        return [
            BreakerSnapshot(
                tier=name,
                state=b.state,
                consecutive_failures=b.consecutive_failures,
                opened_count=b.opened_count,
                retry_in_s=None if (r := b.retry_in(now)) is None else round(r, 3),
            )
            for name, b in zip(self.names, self.breakers, strict=True)
        ]
