"""Upstream faults for the reliability runs: the fault kinds of ``sim-upstream``, what each one
must leave in a turn's trace, and cascade profiles whose tiers are reached over real HTTP (the
``openai`` provider) with faults switched on.

Used by ``bench.fault_matrix`` (every kind on every tier placement, once) and ``bench.soak``
(faults drawn at random per request, for minutes).
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx2

from realtime_cascade.core import BudgetParams, CascadeParams, TierSpec
from realtime_cascade.providers.base import Chunk, Provider, TierRequest
from realtime_cascade.providers.health import BreakerParams
from realtime_cascade.providers.openai import OpenAIProvider, OpenAIProviderConfig
from realtime_cascade.providers.sim import SimProfile
from realtime_cascade.runtime import CascadeProfile


@dataclass(frozen=True)
class FaultKind:
    name: str  # as the docs and tables call it
    spec: str  # the sim-upstream fault spec (``sim_fault``)
    evidence: tuple[str, ...]  # one of these must appear in the trace's reasons
    # Hostile kinds draw a new variant (sizes, counts, signs) per use; ``spec`` is an example.
    draw: Callable[[random.Random], str] | None = None
    # A variant may be harmless (negative usage is clamped to 0): a completed turn needs no
    # evidence, and a light-tier fault need not be recovered (a huge usage spends the budget).
    may_complete: bool = False

    def variant(self, rng: random.Random) -> str:
        return self.draw(rng) if self.draw is not None else self.spec


def _usage(r: random.Random) -> str:
    return f"usage:{r.choice([-r.randint(1, 10**12), r.randint(10**7 + 1, 10**15)])}"


def _arg_chunks(r: random.Random) -> str:
    return f"arg_chunk_bytes:{r.choice([r.randint(512, 65536), r.randint(65536, 2 << 20)])}"


# Timeouts of the tiers below: a TTFT spike is twice the light tier's first-token timeout.
LIGHT_TTFT_TIMEOUT_MS = 400.0
STRONG_TTFT_TIMEOUT_MS = 800.0

FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind("status:429", "status:429", ("rate_limited",)),
    FaultKind("retry_after", "status:429,retry_after:2", ("rate_limited",)),
    FaultKind("status:500", "status:500", ("HTTP 500",)),
    FaultKind("status:503", "status:503", ("HTTP 503",)),
    FaultKind("status:401", "status:401", ("authentication failed",)),
    FaultKind("ttft_ms", "ttft_ms:1600", ("no first token",)),
    FaultKind("stall_after", "stall_after:3", ("stalled",)),
    FaultKind("drop_after", "drop_after:3", ("connection_lost",)),
    FaultKind("eof_after", "eof_after:3", ("connection_lost",)),
    FaultKind("malformed_after", "malformed_after:2", ("malformed_stream",)),
    FaultKind("error_after", "error_after:3", ("error event in the stream",)),
    FaultKind("keepalive", "keepalive:50", ("no first token",)),
    FaultKind("content_type", "content_type", ("expected an event stream",)),
    # Hostile upstreams (issue 12), a new variant per use.
    FaultKind(
        "tool_calls",
        "tool_calls:300",
        ("max_tool_calls",),
        lambda r: f"tool_calls:{r.randint(33, 600)}",
    ),
    FaultKind(
        "arg_chunk_bytes",
        "arg_chunk_bytes:1048576",
        ("max_reply_bytes", "a stream event over"),
        _arg_chunks,
    ),
    FaultKind("usage", "usage:-1", ("billed usage broke the cost cap",), _usage, may_complete=True),
    FaultKind(
        "error_body",
        "status:500,error_bytes:8000000",
        ("HTTP 50", "no first token"),  # megabytes may outlast the first-token timeout
        lambda r: f"status:{r.choice([500, 502, 503])},error_bytes:{r.randint(10**4, 8 * 10**6)}",
    ),
    FaultKind(
        "error_event_body",
        "error_after:3,error_bytes:1000000",
        ("error event in the stream", "a stream event over", "no first token"),
        lambda r: f"error_after:{r.randint(0, 5)},error_bytes:{r.randint(10**4, 4 * 10**6)}",
    ),
)

# Fast sim tiers: the runs check behaviour under faults, not latency.
FAST_PROFILES: dict[str, SimProfile] = {
    "light": SimProfile(ttft_ms=20, itl_ms=3, skill=0.5),
    "strong": SimProfile(ttft_ms=40, itl_ms=4, skill=1.0),
}

EASY = "Book a table for two at 7pm tonight."
HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
    "and apply my voucher unless the fare goes up."
)


def fault_params(end_of_turn_ms: float = 4000.0) -> CascadeParams:
    """Two tiers with tight timeouts, so every timeout fault resolves in well under a second."""
    return CascadeParams(
        tiers=(
            TierSpec(
                "light",
                0.15,
                0.6,
                0.8,
                50,
                ttft_timeout_ms=LIGHT_TTFT_TIMEOUT_MS,
                stall_timeout_ms=250,
            ),
            TierSpec(
                "strong",
                2.5,
                10.0,
                0.97,
                100,
                ttft_timeout_ms=STRONG_TTFT_TIMEOUT_MS,
                stall_timeout_ms=400,
            ),
        ),
        budgets=BudgetParams(first_text_ms=600, end_of_turn_ms=end_of_turn_ms),
    )


def http_provider(
    base_url: str,
    model: str,
    fault: str | None,
    client: httpx2.AsyncClient | None = None,
) -> OpenAIProvider:
    """A tier on sim-upstream through the real ``openai`` path, ``fault`` on every request."""
    extra: dict[str, object] = {"sim_fault": fault} if fault else {}
    cfg = OpenAIProviderConfig(
        base_url=base_url, model=model, api_key_env="", extra_body=extra, timeout_s=10.0
    )
    return OpenAIProvider(model, cfg, http_client=client)


def fault_profile(
    name: str,
    base_url: str,
    light_fault: str | None,
    strong_fault: str | None,
    *,
    params: CascadeParams | None = None,
    health: BreakerParams | None = None,
) -> CascadeProfile:
    return CascadeProfile(
        name,
        params or fault_params(),
        [
            http_provider(base_url, "light", light_fault),
            http_provider(base_url, "strong", strong_fault),
        ],
        health=health,
    )


class ChaosProvider:
    """Sends each request through one of several providers of the same tier, drawn at random
    by weight: one per fault kind (plus a clean one), so faults vary per request."""

    def __init__(
        self, name: str, choices: Sequence[tuple[float, str, Provider]], rng: random.Random
    ) -> None:
        self.name = name
        self._weights = [w for w, _, _ in choices]
        self._choices = [(label, p) for _, label, p in choices]
        self._rng = rng
        self.drawn: dict[str, int] = {label: 0 for _, label, _ in choices}

    def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        label, provider = self._rng.choices(self._choices, self._weights)[0]
        self.drawn[label] += 1
        return provider.stream(request)

    async def aclose(self) -> None:
        seen: set[int] = set()
        for _, provider in self._choices:
            if id(provider) not in seen:
                seen.add(id(provider))
                await provider.aclose()


def chaos_profile(
    name: str,
    base_url: str,
    fault_rate: float,
    rng: random.Random,
    *,
    client: httpx2.AsyncClient,
    kinds: Sequence[FaultKind] = FAULT_KINDS,
    params: CascadeParams | None = None,
    health: BreakerParams | None = None,
) -> tuple[CascadeProfile, list[ChaosProvider]]:
    """A profile whose every request fails with probability ``fault_rate``, the kind drawn
    uniformly from ``kinds``. All providers share one HTTP client (one connection pool)."""
    tiers: list[ChaosProvider] = []
    for model in ("light", "strong"):
        each = fault_rate / len(kinds) if kinds else 0.0
        choices: list[tuple[float, str, Provider]] = [
            (1.0 - fault_rate, "none", http_provider(base_url, model, None, client))
        ]
        choices += [
            (each, k.name, http_provider(base_url, model, k.variant(rng), client)) for k in kinds
        ]
        tiers.append(ChaosProvider(model, choices, rng))
    profile = CascadeProfile(name, params or fault_params(), list(tiers), health=health)
    return profile, tiers


def evidence_found(kind: FaultKind, reasons: Sequence[str]) -> bool:
    return any(e in r for r in reasons for e in kind.evidence)


def kinds_by_name(names: Sequence[str] | None) -> tuple[FaultKind, ...]:
    if not names:
        return FAULT_KINDS
    table: Mapping[str, FaultKind] = {k.name: k for k in FAULT_KINDS}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown} (have: {', '.join(table)})")
    return tuple(table[n] for n in names)
