"""The anyio adapter: real time, real cancellation, real providers."""

from __future__ import annotations

import socket
from collections.abc import AsyncGenerator

import anyio
import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.core import (
    Action,
    CascadeParams,
    Decision,
    Handoff,
    Release,
    TierSpec,
)
from realtime_cascade.providers.base import Chunk, Message, TierRequest
from realtime_cascade.providers.openai import OpenAIProvider, OpenAIProviderConfig
from realtime_cascade.providers.sim import SimProfile, SimProvider
from realtime_cascade.providers.sim_upstream import SimUpstream
from realtime_cascade.runtime import CascadeProfile, TurnRequest, TurnRunner

pytestmark = pytest.mark.anyio

EASY = "Book a table for two at 7pm tonight."
HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
    "and apply my voucher unless the fare goes up."
)


def request(text: str) -> TurnRequest:
    return TurnRequest((Message("user", text),))


def default_profile() -> CascadeProfile:
    return config_mod.build_profile(config_mod.load(None), "default")


async def test_easy_turn_stays_on_light_and_hard_turn_escalates_midstream() -> None:
    profile = default_profile()
    emitted: list[Action] = []
    easy = await TurnRunner(profile, request(EASY), emitted.append).run()
    assert easy.status == "completed" and not easy.escalated and easy.final_tier_name == "light"
    assert easy.text == "".join(a.text for a in emitted if isinstance(a, Release))

    emitted.clear()
    hard = await TurnRunner(profile, request(HARD), emitted.append).run()
    assert hard.status == "completed" and hard.escalated and hard.final_tier_name == "strong"
    handoffs = [a for a in emitted if isinstance(a, Handoff)]
    assert len(handoffs) == 1 and handoffs[0].released_chars > 0
    released_before = hard.text[: handoffs[0].released_chars]
    # what was released before the handoff was emitted, as such, before the Handoff action
    index = emitted.index(handoffs[0])
    assert "".join(a.text for a in emitted[:index] if isinstance(a, Release)) == released_before
    preempt = [a.record for a in emitted if isinstance(a, Decision) and a.record.kind == "preempt"]
    assert preempt and preempt[0].cause == "confidence"
    assert hard.handoff_ms is not None and hard.handoff_ms > 0


class RecordingProvider:
    """Wraps a provider; records whether each stream was closed and how far it got."""

    def __init__(self, inner: SimProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.closed: list[bool] = []
        self.chunks: list[int] = []

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        i = len(self.closed)
        self.closed.append(False)
        self.chunks.append(0)
        try:
            async for chunk in self.inner.stream(request):
                self.chunks[i] += 1
                yield chunk
        finally:
            self.closed[i] = True

    async def aclose(self) -> None:
        return None


def recording_profile(light_itl_ms: float = 15.0) -> tuple[CascadeProfile, list[RecordingProvider]]:
    params = config_mod.load(None).profiles["default"].params()
    light = RecordingProvider(SimProvider("light", SimProfile(100, 0.1, light_itl_ms, 0.1, 0.5)))
    strong = RecordingProvider(SimProvider("strong", SimProfile(200, 0.1, 20, 0.1, 1.0)))
    return CascadeProfile("rec", params, [light, strong]), [light, strong]


async def test_preemption_cancels_the_light_stream_at_once() -> None:
    profile, (light, strong) = recording_profile()
    with anyio.fail_after(10):
        trace = await TurnRunner(profile, request(HARD), lambda a: None).run()
    assert trace.escalated
    assert light.closed == [True] and strong.closed == [True]
    # the light tier was cut well before its script ended (its reply is ~30 tokens)
    assert light.chunks[0] < 15
    assert trace.attempts[0].end_reason == "preempted"


async def test_cancel_stops_every_stream_and_keeps_what_was_released() -> None:
    profile, (light, _) = recording_profile(light_itl_ms=60)
    emitted: list[Action] = []
    runner = TurnRunner(profile, request(EASY), emitted.append)
    async with anyio.create_task_group() as tg:

        async def cancel_after_first_release() -> None:
            while not any(isinstance(a, Release) for a in emitted):  # noqa: ASYNC110
                await anyio.sleep(0.005)
            runner.cancel("barge-in")

        tg.start_soon(cancel_after_first_release)
        with anyio.fail_after(5):
            trace = await runner.run()
    assert trace.status == "cancelled" and trace.reason == "barge-in"
    assert trace.text == "".join(a.text for a in emitted if isinstance(a, Release))
    assert light.closed == [True]
    assert trace.attempts[0].end_reason.startswith("turn cancelled")
    runner.cancel()  # a no-op once done


async def test_router_learns_from_completed_turns() -> None:
    profile = default_profile()
    assert profile.router.observations == 0
    await TurnRunner(profile, request(EASY), lambda a: None).run()
    await TurnRunner(profile, request(HARD), lambda a: None).run()
    assert profile.router.observations == 2
    x_hard = TurnRunner(profile, request(HARD), lambda a: None).turn.features
    x_easy = TurnRunner(profile, request(EASY), lambda a: None).turn.features
    assert profile.router.predict(x_hard) > profile.router.predict(x_easy)


# --- the openai provider end to end, over real HTTP, with faults --------------------------

FAST = {
    "light": SimProfile(ttft_ms=20, itl_ms=3, skill=0.5),
    "strong": SimProfile(ttft_ms=40, itl_ms=3, skill=1.0),
}


def http_profile(base_url: str, light_fault: str | None) -> CascadeProfile:
    params = CascadeParams(
        tiers=(
            TierSpec("light", 0.15, 0.6, 0.8, 50, ttft_timeout_ms=1000, stall_timeout_ms=300),
            TierSpec("strong", 2.5, 10.0, 0.97, 100, ttft_timeout_ms=2000, stall_timeout_ms=500),
        )
    )
    extra: dict[str, object] = {"sim_fault": light_fault} if light_fault else {}

    def provider(model: str, extra_body: dict[str, object]) -> OpenAIProvider:
        cfg = OpenAIProviderConfig(
            base_url=base_url, model=model, api_key_env="", extra_body=extra_body
        )
        return OpenAIProvider(model, cfg)

    return CascadeProfile("http", params, [provider("light", extra), provider("strong", {})])


@pytest.fixture
async def upstream() -> AsyncGenerator[str, None]:
    server = SimUpstream(FAST)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve, "127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}/v1"
        tg.cancel_scope.cancel()


async def test_openai_path_streams_intact_text_through_the_cascade(upstream: str) -> None:
    profile = http_profile(upstream, None)
    with anyio.fail_after(10):
        trace = await TurnRunner(profile, request(EASY), lambda a: None).run()
    await profile.aclose()
    assert trace.status == "completed" and trace.final_tier_name == "light"
    assert (
        trace.text
        == "Let me check that. I can book a table for two at 7pm tonight. Shall I go ahead?"
    )
    # usage from the upstream replaced the estimate
    assert trace.attempts[0].output_tokens == 21


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ("status:429", "rate_limited"),
        ("status:500", "upstream_status"),
        ("stall_after:3", "stalled"),
        ("drop_after:3", "connection_lost"),
        ("malformed_after:2", "malformed_stream"),
    ],
)
async def test_upstream_faults_end_in_a_typed_error_and_a_fallback(
    upstream: str, fault: str, expect: str
) -> None:
    profile = http_profile(upstream, fault)
    emitted: list[Action] = []
    with anyio.fail_after(10):  # never a hang
        trace = await TurnRunner(profile, request(EASY), emitted.append).run()
    await profile.aclose()
    fallbacks = [d for d in trace.decisions if d.kind == "fallback"]
    assert len(fallbacks) == 1, msgspec.to_builtins(trace.decisions)
    assert expect in fallbacks[0].reason
    assert fallbacks[0].cause == ("latency" if expect == "stalled" else "error")
    assert trace.status == "completed" and trace.final_tier_name == "strong"
    assert trace.attempts[0].end_reason != "stop"
    # whatever the light tier had released stays; the strong tier continued after it
    assert trace.text.strip()


async def test_an_attempt_that_never_connected_is_not_charged_one_cut_mid_stream_is(
    upstream: str,
) -> None:
    # light on a port nobody listens on: refused, nothing reached an upstream
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    down = http_profile(upstream, None)
    gone = OpenAIProvider(
        "light", OpenAIProviderConfig(base_url=closed, model="light", api_key_env="")
    )
    down = CascadeProfile("down", down.params, [gone, down.providers[1]])
    with anyio.fail_after(10):
        trace = await TurnRunner(down, request(EASY), lambda a: None).run()
    await down.aclose()
    light, strong = trace.attempts
    assert "could not connect" in light.end_reason
    assert (light.input_tokens, light.output_tokens, light.cost_usd) == (0, 0, 0.0)
    assert trace.status == "completed" and strong.cost_usd > 0
    assert trace.cost_usd == strong.cost_usd

    # light connected, streamed 3 tokens, then lost the connection: its prompt was billed
    cut = http_profile(upstream, "drop_after:3")
    with anyio.fail_after(10):
        trace = await TurnRunner(cut, request(EASY), lambda a: None).run()
    await cut.aclose()
    light = trace.attempts[0]
    assert "connection_lost" in light.end_reason
    assert light.input_tokens > 0 and light.output_tokens == 3
    spec = cut.params.tiers[0]
    want = (light.input_tokens * spec.price_in + 3 * spec.price_out) / 1e6
    assert light.cost_usd == pytest.approx(want)


class StallingProvider:
    """Confident tokens every ``itl_s``, then silence: the upstream hangs mid-reply."""

    def __init__(self, tokens: int, itl_s: float) -> None:
        self.name = "light"
        self.tokens = tokens
        self.itl_s = itl_s
        self.sent_at: list[float] = []

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        for i in range(self.tokens):
            await anyio.sleep(self.itl_s)
            self.sent_at.append(anyio.current_time())
            yield Chunk(text=f" word{i}" if i else "Okay,", logprob=-0.01, top_logprobs=(-0.01,))
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        return None


async def test_a_stall_fires_after_the_last_token_however_often_it_moved() -> None:
    # Every token moves the stall deadline later; the timer, asleep toward an earlier one,
    # must wake, re-read it and sleep again until the tokens stop, then fire it on time.
    base = config_mod.load(None).profiles["default"].params()
    light = msgspec.structs.replace(base.tiers[0], ttft_timeout_ms=2000, stall_timeout_ms=200)
    # no fillers: nothing else wakes the timer before the light tier's first-token deadline
    budgets = msgspec.structs.replace(base.budgets, fillers=())
    params = msgspec.structs.replace(base, tiers=(light, *base.tiers[1:]), budgets=budgets)
    stalling = StallingProvider(tokens=12, itl_s=0.05)
    strong = SimProvider("strong", SimProfile(100, 0.1, 10, 0.1, 1.0))
    profile = CascadeProfile("stall", params, [stalling, strong])
    runner = TurnRunner(profile, request(EASY), lambda a: None)
    with anyio.fail_after(10):
        t0 = anyio.current_time()
        trace = await runner.run()
    assert len(stalling.sent_at) == 12
    assert trace.status == "completed" and trace.final_tier_name == "strong"
    assert "stall" in trace.attempts[0].end_reason
    fallback = next(d for d in trace.decisions if d.kind == "fallback")
    last_token_ms = (stalling.sent_at[-1] - t0) * 1000.0
    # not before the deadline (last token + 200 ms), and not long after it
    assert last_token_ms + 200 <= fallback.t_ms + 1.0
    assert fallback.t_ms < last_token_ms + 200 + 250


async def test_a_tier_is_asked_for_no_more_tokens_than_the_cost_cap_pays_for() -> None:
    # core rule 6: StartTier.max_tokens reaches the provider as the request's max_tokens
    asked: list[int] = []

    class Asking(RecordingProvider):
        async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
            asked.append(request.max_tokens)
            async for chunk in super().stream(request):
                yield chunk

    params = config_mod.load(None).profiles["default"].params()
    light = params.tiers[0]
    cap = (60 * light.price_in + 20 * light.price_out) / 1e6  # room for ≈20 output tokens
    params = msgspec.structs.replace(
        params,
        budgets=msgspec.structs.replace(params.budgets, turn_cap_usd=cap),
        tiers=(light,),
    )
    provider = Asking(SimProvider("light", SimProfile(50, 0.1, 5, 0.1, 0.5)))
    emitted: list[Action] = []
    runner = TurnRunner(CascadeProfile("cap", params, [provider]), request(EASY), emitted.append)
    with anyio.fail_after(10):
        trace = await runner.run()
    assert len(asked) == 1 and 1 <= asked[0] < light.max_output_tokens
    assert trace.cost_usd <= cap + 1e-12


async def test_a_lying_usage_is_billed_no_more_than_the_request_could_use() -> None:
    # An upstream that reports 10^7 tokens each way for a short reply: the runtime bills at
    # most what the tier was asked for (output) and a multiple of what it sent (input), so the
    # turn completes within its cost cap, and the clamp is recorded.
    from realtime_cascade.providers.base import Usage
    from realtime_cascade.runtime import INPUT_USAGE_FACTOR, usage_bound

    class Lying(RecordingProvider):
        async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
            async for chunk in super().stream(request):
                if chunk.finish_reason is not None:
                    chunk = msgspec.structs.replace(chunk, usage=Usage(10**7, 10**7))
                yield chunk

    params = config_mod.load(None).profiles["default"].params()
    light = params.tiers[0]
    params = msgspec.structs.replace(params, tiers=(light,))
    provider = Lying(SimProvider("light", SimProfile(50, 0.1, 5, 0.1, 0.5)))
    runner = TurnRunner(CascadeProfile("lie", params, [provider]), request(EASY), lambda _: None)
    with anyio.fail_after(10):
        trace = await runner.run()
    assert trace.status == "completed", trace.reason
    assert len(runner.usage_clamps) == 1
    clamp = runner.usage_clamps[0]
    assert clamp.reported == Usage(10**7, 10**7)
    assert clamp.billed.output_tokens <= light.max_output_tokens
    assert clamp.billed.input_tokens < 10**7 // 100
    assert clamp.billed.input_tokens >= INPUT_USAGE_FACTOR  # a multiple, not the estimate
    assert trace.cost_usd <= params.budgets.turn_cap_usd
    (attempt,) = trace.attempts
    assert (attempt.input_tokens, attempt.output_tokens) == (
        clamp.billed.input_tokens,
        clamp.billed.output_tokens,
    )
    # an honest count is believed as reported
    honest = TierRequest(messages=request(EASY).messages, max_tokens=64)
    bound = usage_bound(honest)
    assert bound.output_tokens == 64 and bound.input_tokens >= 1024
