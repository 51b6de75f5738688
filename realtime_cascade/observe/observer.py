"""What the server tells its observers: sessions starting and ending, turns finishing.

Three observers read the same events — the audit log (:mod:`~realtime_cascade.audit`), the
Prometheus metrics (:mod:`~realtime_cascade.metrics`) and the OpenTelemetry spans
(:mod:`~realtime_cascade.telemetry`). Every hook runs on the event loop and must not block: the
audit log only enqueues, metrics only add to counters, spans are built from the finished trace
with its own timestamps. A hook that raises is logged and costs nothing else: observing must
never take a session down.

::

    Session ──turn_finished(TurnInfo)──▶ Observers ──▶ AuditLog   (queue → writer thread → file)
    Server  ──session_started/ended───▶            ──▶ Metrics    (per-server CollectorRegistry)
                                                   ──▶ Telemetry  (spans; only when configured)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..core import BudgetParams, TurnTrace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    profile: str
    key: str | None = None  # the key's name, never the key
    policy: str | None = None
    started_at: float = field(default_factory=time.time)  # wall clock, seconds


@dataclass(frozen=True)
class TurnInfo:
    """One finished response: its trace and what it ran with."""

    session: SessionInfo
    response_id: str
    user_item_id: str | None  # the user message it answers: a user turn may take several steps
    tier_names: tuple[str, ...]
    first_tier: int
    max_tier: int
    budgets: BudgetParams
    trace: TurnTrace | None  # None when the turn failed inside the server (``error``)
    error: str | None = None
    governed: bool = False  # the key's policy narrowed the turn's tiers (a traced refusal)
    ended_at: float = field(default_factory=time.time)  # wall clock, seconds


class Observer(Protocol):
    def session_started(self, info: SessionInfo) -> None: ...

    def turn_finished(self, turn: TurnInfo) -> None: ...

    def session_ended(self, info: SessionInfo) -> None: ...

    async def aclose(self) -> None: ...


class NullObserver:
    def session_started(self, info: SessionInfo) -> None:
        pass

    def turn_finished(self, turn: TurnInfo) -> None:
        pass

    def session_ended(self, info: SessionInfo) -> None:
        pass

    async def aclose(self) -> None:
        pass


NULL_OBSERVER = NullObserver()


class Observers:
    """Fan-out to several observers; one that raises is logged and skipped."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self.observers = tuple(observers)

    def session_started(self, info: SessionInfo) -> None:
        for o in self.observers:
            try:
                o.session_started(info)
            except Exception:
                log.exception("observer %s failed on session start", type(o).__name__)

    def turn_finished(self, turn: TurnInfo) -> None:
        for o in self.observers:
            try:
                o.turn_finished(turn)
            except Exception:
                log.exception("observer %s failed on a turn", type(o).__name__)

    def session_ended(self, info: SessionInfo) -> None:
        for o in self.observers:
            try:
                o.session_ended(info)
            except Exception:
                log.exception("observer %s failed on session end", type(o).__name__)

    async def aclose(self) -> None:
        for o in self.observers:
            try:
                await o.aclose()
            except Exception:
                log.exception("observer %s failed to close", type(o).__name__)


def superseded(trace: TurnTrace) -> list[bool]:
    """Per attempt: was it paid for without producing the turn's answer?

    The main line is the attempts that were active (not speculative, or promoted hedges); all but
    its last were replaced (preempted, failed, stalled). Hedges never promoted were not needed.
    A preempted attempt counts whole, including the opening it released before it was cut.
    """
    main = [i for i, a in enumerate(trace.attempts) if not a.speculative or a.promoted]
    last = main[-1] if main else -1
    return [
        (a.speculative and not a.promoted) or (i != last and i in main)
        for i, a in enumerate(trace.attempts)
    ]


def escalation_of(trace: TurnTrace, first_tier: int) -> tuple[str, str, str] | None:
    """The decisive escalation of a turn — (cause, kind, reason) — or None if it had none:
    the first preempt or fallback, or a route that skipped above the first allowed tier."""
    for d in trace.decisions:
        if d.kind in ("preempt", "fallback") or (d.kind == "route" and d.tier > first_tier):
            return d.cause, d.kind, d.reason
    return None


def upstream_error_kind(end_reason: str) -> str | None:
    """``error: rate_limited: …`` → ``rate_limited``; a bounded label for metrics."""
    if not end_reason.startswith("error: "):
        return None
    kind = end_reason[len("error: ") :].partition(":")[0].strip()
    return kind if kind.replace("_", "").isalnum() and len(kind) <= 32 else "other"
