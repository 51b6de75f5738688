"""GET /metrics: Prometheus text that prometheus-client's parser reads, matching the turns run."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtime_cascade import config as config_mod
from realtime_cascade.observe.config import MetricsConfig
from realtime_cascade.observe.metrics import Metrics
from realtime_cascade.providers.base import Chunk, RateLimited, TierRequest
from realtime_cascade.runtime import CascadeProfile

from .conftest import ServerFactory
from .helpers import BOOK, HARD, client, http_get, trace_of

pytestmark = pytest.mark.anyio


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → [(labels, value)], through prometheus-client's own parser."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def total(s: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(
        v for lab, v in s.get(name, []) if all(lab.get(k) == want for k, want in labels.items())
    )


async def scrape(server: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    status, headers, body = await http_get(server, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    return samples(body.decode())


async def test_counters_match_the_turns_run(make_server: ServerFactory) -> None:
    traces: list[dict[str, Any]] = []
    async with make_server() as server:
        async with client(server) as a, client(server) as b:
            before = await scrape(server)
            assert total(before, "realtime_cascade_active_sessions", profile="default") == 2
            for text in (BOOK, HARD, BOOK):
                traces.append(trace_of(await a.turn(text)))
            traces.append(trace_of(await b.turn(HARD)))
        s = await scrape(server)

    n = len(traces)
    assert total(s, "realtime_cascade_turns_total") == n
    for tier in ("light", "strong"):
        want = sum(t["final_tier_name"] == tier for t in traces)
        assert total(s, "realtime_cascade_turns_total", final_tier=tier) == want
    assert total(s, "realtime_cascade_turns_total", status="completed") == sum(
        t["status"] == "completed" for t in traces
    )
    escalated = [t for t in traces if t["escalated"]]
    assert escalated, "the hard request escalates on the default sim tiers"
    assert total(s, "realtime_cascade_escalated_turns_total") == len(escalated)
    preempts = sum(d["kind"] == "preempt" for t in traces for d in t["decisions"])
    assert total(s, "realtime_cascade_escalations_total", kind="preempt") == preempts
    assert total(s, "realtime_cascade_escalations_total", kind="preempt", cause="confidence") == (
        preempts
    )
    # histograms: one observation per turn that released text / that handed off
    with_text = sum(t["ttft_ms"] is not None for t in traces)
    assert total(s, "realtime_cascade_first_text_seconds_count") == with_text
    handoffs = [t["handoff_ms"] for t in traces if t["handoff_ms"] is not None]
    assert total(s, "realtime_cascade_handoff_gap_seconds_count") == len(handoffs)
    assert total(s, "realtime_cascade_handoff_gap_seconds_sum") == pytest.approx(
        sum(handoffs) / 1000.0
    )
    assert total(s, "realtime_cascade_turn_seconds_count") == n
    # cost and tokens, per tier, every attempt counted
    cost = sum(t["cost_usd"] for t in traces)
    assert total(s, "realtime_cascade_cost_usd_total") == pytest.approx(cost)
    out_tokens = sum(a["output_tokens"] for t in traces for a in t["attempts"])
    assert total(s, "realtime_cascade_tokens_total", direction="output") == out_tokens
    assert 0 < total(s, "realtime_cascade_wasted_cost_usd_total") < cost
    # sessions
    assert total(s, "realtime_cascade_sessions_total") == 2
    assert total(s, "realtime_cascade_active_sessions") == 0
    assert total(s, "realtime_cascade_budget_refusals_total") == 0


class Failing:
    """A tier whose upstream always answers 429."""

    name = "light"

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        raise RateLimited("429 from upstream: slow down")
        yield Chunk()  # pragma: no cover

    async def aclose(self) -> None:
        pass


async def test_upstream_errors_by_tier(make_server: ServerFactory) -> None:
    base = config_mod.build_profile(config_mod.load())
    profile = CascadeProfile(
        "default", base.params, [Failing(), base.providers[1]], verifiers=base.verifiers
    )
    async with make_server(profiles={"default": profile}) as server:
        async with client(server) as c:
            trace = trace_of(await c.turn(BOOK))
        s = await scrape(server)
    await base.aclose()
    assert trace["final_tier_name"] == "strong"
    assert any(d["kind"] == "fallback" for d in trace["decisions"])
    errors = "realtime_cascade_upstream_errors_total"
    assert total(s, errors, tier="light", kind="rate_limited") == 1
    assert total(s, errors, tier="strong") == 0
    assert total(s, "realtime_cascade_escalations_total", kind="fallback", cause="error") == 1


async def test_budget_refusals(make_server: ServerFactory) -> None:
    cfg = config_mod.load()
    profile = cfg.profiles["default"]
    tight = msgspec.structs.replace(profile.budgets, turn_cap_usd=0.00005)
    cfg = msgspec.structs.replace(
        cfg, profiles={"default": msgspec.structs.replace(profile, budgets=tight)}
    )
    async with make_server(cfg) as server:
        async with client(server) as c:
            trace = trace_of(await c.turn(HARD))
        s = await scrape(server)
    budget = [d for d in trace["decisions"] if d["cause"] == "budget"]
    assert budget, trace["decisions"]
    assert total(s, "realtime_cascade_budget_refusals_total") == len(budget)


async def test_each_server_has_its_own_registry(make_server: ServerFactory) -> None:
    async with make_server() as one, make_server() as two:
        async with client(one) as c:
            await c.turn(BOOK)
        s1, s2 = await scrape(one), await scrape(two)
    assert total(s1, "realtime_cascade_turns_total") == 1
    assert total(s2, "realtime_cascade_turns_total") == 0
    assert Metrics().registry is not Metrics().registry


async def test_metrics_off_and_behind_a_key(make_server: ServerFactory) -> None:
    async with make_server(metrics=MetricsConfig(enabled=False)) as server:
        status, _, _ = await http_get(server, "/metrics")
        assert status == 404
    locked = MetricsConfig(require_key=True)
    async with make_server(metrics=locked, server={"api_keys": ("k-123456",)}) as server:
        assert (await http_get(server, "/metrics"))[0] == 401
        ok = await http_get(server, "/metrics", {"Authorization": "Bearer k-123456"})
        assert ok[0] == 200
    async with make_server(server={"api_keys": ("k-123456",)}) as server:
        assert (await http_get(server, "/metrics"))[0] == 200  # open by default, like /healthz
