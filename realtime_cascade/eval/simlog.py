"""A per-query log from the sim tiers, so ``eval`` runs (and is tested) without real data.

Each generated request (a booking-style ask with 0–4 constraint clauses, which is what the sim's
``difficulty()`` counts) is scheduled on a light and a strong ``SimProfile`` that mirror the
embedded default config (``default.toml``). Per tier and request:

- ``correct``: the sim's own difficulty model, ``difficulty(text) <= skill`` — the condition
  under which its script writes a sure answer rather than a vague one;
- ``raw_confidence``: the Chow-Quantile of the streamed token log-probabilities at the monitor's
  default quantile (``MonitorParams.quantile``), over the whole reply rather than a sliding
  window, so a calibration fitted on this log is on the scale the runtime's monitor uses;
- ``cost_usd``: the usage the stream reports, times the tier's per-token prices;
- ``latency_ms``: the sum of the schedule's delays (time to the last chunk).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec

from ..core.params import MonitorParams
from ..providers.base import Message, TierRequest
from ..providers.sim import SCRIPTS, SimProfile, difficulty, schedule
from .logs import LogRow


class SimTier(msgspec.Struct, frozen=True):
    name: str
    profile: SimProfile
    price_in: float  # USD per 1M input tokens
    price_out: float  # USD per 1M output tokens


# The embedded default's two tiers (realtime_cascade/default.toml, profile "default").
LIGHT = SimTier("light", SimProfile(ttft_ms=150, itl_ms=15, skill=0.5), 0.15, 0.60)
STRONG = SimTier("strong", SimProfile(ttft_ms=400, itl_ms=25, skill=1.0), 2.50, 10.00)
DEFAULT_TIERS = (LIGHT, STRONG)

_ASKS = (
    "Book a table for two tonight",
    "Move my dentist appointment to Friday",
    "Find me a flight to Lisbon next week",
    "Reserve a hotel room in Berlin for three nights",
    "Get me a taxi to the airport tomorrow morning",
    "Cancel my yoga class on Thursday",
    "Schedule a haircut for Saturday",
    "Order groceries for delivery this evening",
    "Set up a call with the landlord",
    "Rent a car in Porto for the weekend",
)
# Each clause carries one of the words the sim's difficulty model counts as a constraint.
_CLAUSES = (
    "and keep the window seat",
    "unless it is raining",
    "but only after six",
    "if the price is under two hundred euros",
    "then send me a confirmation",
    "except on Mondays",
    "and apply my loyalty discount",
    "while avoiding layovers",
    "instead of the usual place",
    "the cheapest option please",
    "the earliest slot that is free",
    "and only with free cancellation",
)
_CLAUSE_WEIGHTS = (4, 3, 2, 1, 1)  # how many requests have 0, 1, 2, 3, 4 clauses


def generate_requests(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choices(range(len(_CLAUSE_WEIGHTS)), weights=_CLAUSE_WEIGHTS)[0]
        clauses = rng.sample(_CLAUSES, k)
        out.append(" ".join([rng.choice(_ASKS), *clauses]).strip() + ".")
    return out


def chow_quantile(logprobs: Sequence[float], q: float) -> float:
    """The ``q`` quantile of per-token log-probabilities, indexed as the runtime's monitor does."""
    ordered = sorted(logprobs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def sim_rows(
    n: int, seed: int = 0, tiers: Sequence[SimTier] = DEFAULT_TIERS, benchmark: str = "sim"
) -> list[LogRow]:
    q = MonitorParams().quantile
    rows: list[LogRow] = []
    for i, text in enumerate(generate_requests(n, seed)):
        request = TierRequest((Message("user", text),), seed=seed * 1_000_003 + i)
        for tier in tiers:
            steps = schedule(tier.profile, tier.name, SCRIPTS[tier.profile.script], request)
            lps = [s.chunk.logprob for s in steps if s.chunk.logprob is not None]
            usage = steps[-1].chunk.usage
            tokens_in, tokens_out = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
            rows.append(
                LogRow(
                    query_idx=str(i),
                    model=tier.name,
                    correct=difficulty(text) <= tier.profile.skill,
                    raw_confidence=min(0.0, chow_quantile(lps, q)) if lps else 0.0,
                    cost_usd=(tokens_in * tier.price_in + tokens_out * tier.price_out) / 1e6,
                    latency_ms=1000.0 * sum(s.delay for s in steps),
                    benchmark=benchmark,
                )
            )
    return rows
