"""The core's parameters: what a tier costs and promises, and how the policy weighs it.

Plain frozen structs with defaults that suit the embedded sim tiers; ``config.py`` decodes them
from TOML. Times are milliseconds here (what people write in config) and seconds in events.
"""

from __future__ import annotations

import msgspec


class TierSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the core needs to know of a tier (how it is reached is the provider's business)."""

    name: str
    price_in: float = 0.0  # USD per 1M input tokens
    price_out: float = 0.0  # USD per 1M output tokens
    quality: float = 0.8  # expected P(correct) on a typical turn; used to weigh escalation
    expected_ttft_ms: float = 300.0  # used to weigh latency and to decide on fillers
    ttft_timeout_ms: float = 2000.0  # no first token by then: abandon the tier
    stall_timeout_ms: float = 1500.0  # no token for this long after the first: abandon
    max_output_tokens: int = 512


class Calibration(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Logistic map from monitor features to P(correct); fit offline on logs (``eval``)."""

    bias: float = 3.0
    w_quantile: float = 2.5  # × log-probability at the window quantile
    w_min: float = 0.15  # × minimum log-probability so far
    w_entropy: float = -0.8  # × mean top-k entropy (nats) over the window
    w_complexity: float = -1.5  # × request complexity in [0, 1]


class MonitorParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window: int = 12  # tokens in the sliding window
    quantile: float = 0.2  # Chow-Quantile: which quantile of per-token probability
    min_tokens: int = 4  # no confidence verdict on fewer tokens than this
    calibration: Calibration = Calibration()


class ComplexityParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Logistic map from cheap request features to complexity in [0, 1]."""

    bias: float = -3.0
    w_words: float = 0.05  # per word
    w_clauses: float = 0.55  # per conjunction / condition word
    w_numbers: float = 0.15  # per number or time mention
    w_questions: float = 0.3  # per question mark
    skip_above: float = 0.97  # complexity this high: skip tiers below ``skip_to``
    skip_to: int = -1  # tier to jump to (-1: the strongest)


class PolicyParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    preempt_below: float = 0.45  # P(correct) under this: preempt (if worth it)
    hedge_below: float = 0.65  # under this: hold the release and hedge
    hedging: bool = True
    hedge_window_ms: float = 600.0  # how long a hedge may hold the release before a verdict
    w_quality: float = 1.0
    w_cost: float = 0.2
    w_latency: float = 0.2
    router_skip_above: float = 0.85  # router's P(preempt) this high: skip the first tier
    router_min_observations: int = 20


class GateParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The speech commit gate: how much text is held back before the listener hears it."""

    min_phrase_chars: int = 6  # a phrase shorter than this waits for more
    max_phrase_chars: int = 160  # longer than this: release at the last word boundary
    lookahead_tokens: int = 1  # tokens scored after a phrase's end before it is released
    max_hold_ms: float = 500.0  # text held this long is released at a word boundary
    eager_last_tier: bool = True  # the strongest allowed tier releases token by token


class BudgetParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    first_text_ms: float = 900.0  # nothing released by then: speak a filler
    end_of_turn_ms: float = 20000.0  # the turn ends by then, whatever happens
    turn_cap_usd: float = 0.05
    session_cap_usd: float = 1.0
    fillers: tuple[str, ...] = ("One moment.", "Let me check.", "Just a second.")


class CascadeParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tiers: tuple[TierSpec, ...]
    monitor: MonitorParams = MonitorParams()
    complexity: ComplexityParams = ComplexityParams()
    policy: PolicyParams = PolicyParams()
    gate: GateParams = GateParams()
    budgets: BudgetParams = BudgetParams()
