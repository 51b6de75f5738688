"""What the core asks its adapter to do.

The core never performs I/O: every event it is fed returns a list of these actions, which the
runtime performs in order. The union is closed; adapters dispatch with ``match``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Cause = Literal[
    "confidence",
    "complexity",
    "completeness",
    "correctness",
    "latency",
    "router",
    "budget",
    "error",
    "policy",
    "client",
    "health",  # a tier skipped because its provider's circuit breaker is open
]

DecisionKind = Literal[
    "route",  # which tier starts the turn
    "hedge",  # a stronger tier started speculatively, release held
    "hedge_cancel",  # the speculative tier was not needed
    "preempt",  # the active tier was cut mid-stream; the next one continues
    "fallback",  # the active tier failed or stalled; another one takes over
    "refuse",  # an escalation was wanted but a budget or the tier list refused it
    "filler",  # a filler phrase was spoken to cover a wait
    "accept",  # the active tier's answer was accepted at its end
    "stop",  # the turn was stopped (deadline, budget, cancel)
]


class Scores(msgspec.Struct, frozen=True, omit_defaults=True):
    """The monitor's view when a decision was taken (all optional: not every decision has all)."""

    p_correct: float | None = None
    quantile_p: float | None = None
    min_p: float | None = None
    entropy: float | None = None
    complexity: float | None = None
    router_p: float | None = None
    utility: float | None = None
    threshold: float | None = None
    tokens: int | None = None
    cost_usd: float | None = None


class DecisionRecord(msgspec.Struct, frozen=True):
    t_ms: float
    kind: DecisionKind
    tier: int
    tier_name: str
    cause: Cause
    reason: str
    scores: Scores = Scores()
    to_tier: int | None = None


class StartTier(msgspec.Struct, frozen=True, tag="start_tier"):
    """Open a stream on ``tier``; it continues after ``prefix`` (the text already released).

    ``max_tokens``: the most output tokens the stream may be asked for (pass it upstream as
    ``max_tokens``), so that what is *billed* stays within the cost caps; None: no limit from
    the core (the core always sets it; None is for hand-made actions)."""

    attempt: int
    tier: int
    prefix: str
    speculative: bool
    max_tokens: int | None = None


class CancelTier(msgspec.Struct, frozen=True, tag="cancel_tier"):
    attempt: int
    reason: str
    # The tier missed its first-token deadline or stalled: its provider's health suffers.
    timed_out: bool = False


class Release(msgspec.Struct, frozen=True, tag="release"):
    """Text the listener may now hear. Never retracted."""

    text: str
    tier: int


class ReleaseToolCall(msgspec.Struct, frozen=True, tag="release_tool_call"):
    call_id: str
    name: str
    arguments: str
    tier: int


class Filler(msgspec.Struct, frozen=True, tag="filler"):
    """A phrase spoken to cover a wait; not part of the assistant's answer text."""

    text: str


class Decision(msgspec.Struct, frozen=True, tag="decision"):
    record: DecisionRecord


class Handoff(msgspec.Struct, frozen=True, tag="handoff"):
    from_tier: int
    to_tier: int
    released_chars: int
    t_ms: float


TurnStatus = Literal["completed", "cancelled", "incomplete", "failed"]


class FinishTurn(msgspec.Struct, frozen=True, tag="finish_turn"):
    status: TurnStatus
    reason: str


Action = (
    StartTier | CancelTier | Release | ReleaseToolCall | Filler | Decision | Handoff | FinishTurn
)
