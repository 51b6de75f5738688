"""OpenAIProvider against sim-upstream over real HTTP, with the real ``openai`` client.

What arrives must be exactly what the sim scheduled (token by token, logprobs included), and
every way an upstream can fail must end in a typed error, quickly, never in a hang.
"""

from __future__ import annotations

import contextlib
import sys
import traceback

import anyio
import httpx2
import msgspec
import pytest

from realtime_cascade.providers.aiohttp_client import status_message
from realtime_cascade.providers.base import (
    Chunk,
    ConnectionLost,
    MalformedStream,
    Message,
    ProviderError,
    RateLimited,
    TierRequest,
    ToolCallDelta,
    UpstreamStatus,
    UpstreamTimeout,
    Usage,
)
from realtime_cascade.providers.openai import (
    ChatStreamDecoder,
    MissingAPIKey,
    OpenAIProvider,
    OpenAIProviderConfig,
    continuation_instruction,
    parse_continuation_instruction,
    retry_after_seconds,
)
from realtime_cascade.providers.sim import SCRIPTS, schedule

from .conftest import FAST, RunningUpstream

KEY = "sk-test-Zq8v1DoNotLeakThisKey"
EASY = "Book a table for two at 7pm tonight."
HARD = (
    "Move my Thursday flight to the earliest Friday option, keep my aisle seat, "
    "and apply my voucher unless the fare goes up."
)


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_API_KEY", KEY)


# Every test runs on both HTTP clients: the same stream, the same typed errors.
HTTP_CLIENT = "aiohttp"


@pytest.fixture(autouse=True, params=["aiohttp", "sdk"])
def http_client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    client: str = request.param
    monkeypatch.setattr(sys.modules[__name__], "HTTP_CLIENT", client)
    return client


def make(sim: RunningUpstream, model: str = "light", **fields: object) -> OpenAIProvider:
    config = msgspec.convert(
        {
            "base_url": sim.base_url,
            "model": model,
            "api_key_env": "SIM_API_KEY",
            "http_client": HTTP_CLIENT,
            **fields,
        },
        OpenAIProviderConfig,
    )
    return OpenAIProvider(f"tier-{model}", config)


def faulty(sim: RunningUpstream, fault: str) -> OpenAIProvider:
    return make(sim, extra_body={"sim_fault": fault})


def expected(model: str, request: TierRequest) -> list[Chunk]:
    return [s.chunk for s in schedule(FAST[model], model, SCRIPTS["generic"], request)]


async def collect(provider: OpenAIProvider, request: TierRequest) -> list[Chunk]:
    async with contextlib.aclosing(provider.stream(request)) as stream:
        return [chunk async for chunk in stream]


def assert_same(got: list[Chunk], want: list[Chunk]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.text == w.text
        assert g.tool_call == w.tool_call
        assert g.finish_reason == w.finish_reason
        assert g.usage == w.usage
        if w.logprob is None:
            assert g.logprob is None
        else:
            assert g.logprob == pytest.approx(w.logprob, abs=1e-9)
        assert g.top_logprobs == pytest.approx(w.top_logprobs, abs=1e-9)


def user(text: str, **kw: object) -> TierRequest:
    return TierRequest((Message("user", text),), **kw)  # type: ignore[arg-type]


# --- the stream arrives intact --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("model", ["light", "strong"])
@pytest.mark.parametrize("text", [EASY, HARD])
async def test_tokens_and_logprobs_match_the_schedule(
    sim: RunningUpstream, model: str, text: str
) -> None:
    request = user(text)
    provider = make(sim, model)
    try:
        got = await collect(provider, request)
    finally:
        await provider.aclose()
    want = expected(model, request)
    assert_same(got, want)
    # One Chunk per token, each with its alternatives; the last carries finish and usage.
    assert all(c.logprob is not None and len(c.top_logprobs) == 5 for c in got[:-1])
    assert got[-1].finish_reason == "stop"
    assert got[-1].usage == want[-1].usage
    assert isinstance(got[-1].usage, Usage) and got[-1].usage.output_tokens == len(got) - 1


@pytest.mark.anyio
async def test_request_carries_logprobs_usage_and_limits(sim: RunningUpstream) -> None:
    provider = make(sim, top_logprobs=3)
    got = await collect(provider, user(EASY, max_tokens=4))
    await provider.aclose()
    body = sim.upstream.received[-1].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert body["max_tokens"] == 4
    assert "tools" not in body and "tool_choice" not in body
    assert [len(c.top_logprobs) for c in got[:-1]] == [3, 3, 3, 3]
    assert got[-1].finish_reason == "length"


@pytest.mark.anyio
async def test_without_logprobs_text_still_arrives(sim: RunningUpstream) -> None:
    request = user(EASY)
    provider = make(sim, logprobs=False)
    got = await collect(provider, request)
    await provider.aclose()
    assert "logprobs" not in sim.upstream.received[-1].body
    want = expected("light", request)
    assert [c.text for c in got] == [c.text for c in want]
    assert all(c.logprob is None and c.top_logprobs == () for c in got)


@pytest.mark.anyio
async def test_tool_call_deltas(sim: RunningUpstream) -> None:
    tool: dict[str, object] = {
        "type": "function",
        "function": {
            "name": "find_flights",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
    request = TierRequest(
        (Message("user", "Please find_flights to Oslo on Friday."),),
        tools=(tool,),
        tool_choice="auto",
    )
    provider = make(sim)
    got = await collect(provider, request)
    await provider.aclose()
    assert_same(got, expected("light", request))
    body = sim.upstream.received[-1].body
    assert body["tools"] == [tool] and body["tool_choice"] == "auto"
    calls = [c.tool_call for c in got if c.tool_call is not None]
    first = calls[0]
    assert first == ToolCallDelta(0, id=first.id, name="find_flights", arguments=first.arguments)
    assert calls[0].id is not None and all(c.id is None and c.name is None for c in calls[1:])
    arguments = msgspec.json.decode("".join(c.arguments for c in calls))
    assert arguments == {"query": "Oslo on Friday"}  # the words after the tool's name
    assert got[-1].finish_reason == "tool_calls"


@pytest.mark.anyio
async def test_two_streams_reuse_the_provider(sim: RunningUpstream) -> None:
    provider = make(sim)
    first = await collect(provider, user(EASY))
    second = await collect(provider, user(HARD))
    await provider.aclose()
    assert_same(first, expected("light", user(EASY)))
    assert_same(second, expected("light", user(HARD)))


@pytest.mark.anyio
async def test_streams_one_after_another_reuse_the_connection(sim: RunningUpstream) -> None:
    """The body is read to its chunked end after [DONE], so the next request goes out on the
    same kept-alive connection."""
    provider = make(sim)
    for text in (EASY, HARD, EASY):
        await collect(provider, user(text))
    await provider.aclose()
    assert sim.upstream.accepted_connections == 1


@pytest.mark.anyio
async def test_an_error_body_is_read_for_its_message(sim: RunningUpstream) -> None:
    err = await failing(faulty(sim, "status:500"))
    assert isinstance(err, UpstreamStatus)
    assert err.message.startswith("tier-light: HTTP 500: Error code: 500")
    assert len(err.message) < 1200


def test_status_message_takes_the_json_message_or_the_text() -> None:
    body = b'{"error": {"message": "The model is overloaded", "type": "server_error"}}'
    assert status_message(503, body) == "Error code: 503 - The model is overloaded"
    assert status_message(502, b"<html>Bad Gateway</html>") == (
        "Error code: 502 - <html>Bad Gateway</html>"
    )
    assert status_message(500, b"") == "Error code: 500 - no message"
    assert status_message(400, b'{"error": "bad field"}') == "Error code: 400 - bad field"
    assert "sk-" not in status_message(401, b'{"error": {"message": "Incorrect key sk-abc"}}')


def test_a_given_httpx_client_selects_the_sdk_path() -> None:
    config = OpenAIProviderConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="")
    assert config.http_client == "aiohttp"
    assert OpenAIProvider("t", config)._lean is not None
    http = httpx2.AsyncClient()
    assert OpenAIProvider("t", config, http_client=http)._lean is None


# --- continuing a reply already spoken ------------------------------------------------------


def spoken_prefix(model: str, text: str, tokens: int) -> str:
    return "".join(c.text for c in expected(model, user(text))[:tokens])


@pytest.mark.anyio
async def test_assistant_prefix_continuation(sim: RunningUpstream) -> None:
    prefix = spoken_prefix("strong", HARD, 6)
    request = user(HARD, prefix=prefix)
    provider = make(sim, "strong", prefix_mode="assistant_prefix", extra_body={"seed": 0})
    got = await collect(provider, request)
    await provider.aclose()
    body = sim.upstream.received[-1].body
    assert body["messages"][-1] == {"role": "assistant", "content": prefix}
    assert body["messages"][:-1] == [{"role": "user", "content": HARD}]
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["seed"] == 0  # config.extra_body merged in
    assert_same(got, expected("strong", request))
    # Prefix + continuation is the reply, with nothing repeated.
    full = "".join(c.text for c in expected("strong", user(HARD)))
    assert prefix + "".join(c.text for c in got) == full


@pytest.mark.anyio
async def test_instruction_continuation(sim: RunningUpstream) -> None:
    prefix = spoken_prefix("light", HARD, 5)
    request = user(HARD, prefix=prefix)
    provider = make(sim, "strong", prefix_mode="instruction")
    got = await collect(provider, request)
    await provider.aclose()
    body = sim.upstream.received[-1].body
    last = body["messages"][-1]
    assert last["role"] == "system"
    assert prefix in last["content"] and "Do not repeat" in last["content"]
    assert parse_continuation_instruction(last["content"]) == prefix
    assert "continue_final_message" not in body and "add_generation_prompt" not in body
    assert_same(got, expected("strong", request))
    assert got[0].text.strip() and not got[0].text.strip().startswith(prefix.strip()[:10])


def test_instruction_round_trip() -> None:
    for prefix in ["", "Sure.", 'He said """hi""" then\nleft.']:
        assert parse_continuation_instruction(continuation_instruction(prefix)) == prefix
    assert parse_continuation_instruction("You are a helpful assistant.") is None
    assert parse_continuation_instruction(None) is None


# --- failures end in typed errors, fast -----------------------------------------------------


async def failing(provider: OpenAIProvider, request: TierRequest | None = None) -> ProviderError:
    chunks: list[Chunk] = []
    with anyio.fail_after(3), pytest.raises(ProviderError) as info:
        async with contextlib.aclosing(provider.stream(request or user(EASY))) as stream:
            async for chunk in stream:
                chunks.append(chunk)
    await provider.aclose()
    return info.value


@pytest.mark.anyio
async def test_429_is_rate_limited_with_retry_after(sim: RunningUpstream) -> None:
    err = await failing(faulty(sim, "status:429,retry_after:2.5"))
    assert isinstance(err, RateLimited)
    assert err.retry_after == 2.5
    assert err.retryable and "rate limit" in err.message.lower()


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False)])
async def test_status_is_upstream_status(
    sim: RunningUpstream, status: int, retryable: bool
) -> None:
    err = await failing(faulty(sim, f"status:{status}"))
    assert isinstance(err, UpstreamStatus)
    assert err.status == status and err.retryable is retryable


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["stall_after:3", "keepalive:20", "ttft_ms:5000"])
async def test_a_silent_upstream_is_ended_by_the_consumer_and_closed(
    sim: RunningUpstream, fault: str
) -> None:
    """No inter-byte timeout saves us from keep-alive pings: the consumer's own budget does,
    and cancelling it must close the HTTP stream so the upstream stops."""
    provider = faulty(sim, fault)
    chunks: list[Chunk] = []
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.3):
            async with contextlib.aclosing(provider.stream(user(EASY))) as stream:
                async for chunk in stream:
                    chunks.append(chunk)
    assert len(chunks) == (3 if fault.startswith("stall") else 0)
    await sim.wait_streams_closed()
    await provider.aclose()


@pytest.mark.anyio
async def test_transport_read_timeout_is_upstream_timeout(sim: RunningUpstream) -> None:
    err = await failing(make(sim, timeout_s=0.2, extra_body={"sim_fault": "stall_after:2"}))
    assert isinstance(err, UpstreamTimeout) and err.retryable
    await sim.wait_streams_closed()


@pytest.mark.anyio
async def test_cancelling_mid_stream_closes_the_response(sim: RunningUpstream) -> None:
    provider = make(sim, "slow")
    seen = 0
    with anyio.CancelScope() as scope:
        async for _chunk in provider.stream(user(HARD)):
            seen += 1
            if seen == 2:
                scope.cancel()
    assert seen == 2
    await sim.wait_streams_closed()
    await provider.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["drop_after:4", "eof_after:4", "drop_after:0"])
async def test_dropped_connection_is_connection_lost(sim: RunningUpstream, fault: str) -> None:
    err = await failing(faulty(sim, fault))
    assert isinstance(err, ConnectionLost)
    assert err.retryable
    assert err.connected  # the request reached the upstream: it may have been billed


@pytest.mark.anyio
async def test_unreachable_upstream_is_connection_lost(
    sim: RunningUpstream, http_client: str
) -> None:
    with anyio.fail_after(3):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()  # a port nobody listens on
    config = OpenAIProviderConfig(
        base_url=f"http://127.0.0.1:{port}/v1",
        model="light",
        api_key_env="SIM_API_KEY",
        http_client=http_client,  # type: ignore[arg-type]
    )
    err = await failing(OpenAIProvider("gone", config))
    assert isinstance(err, ConnectionLost)
    assert not err.connected  # refused: the request never reached anyone, nothing was billed
    assert "could not connect" in err.message


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["malformed_after:3", "content_type"])
async def test_malformed_stream(sim: RunningUpstream, fault: str) -> None:
    err = await failing(faulty(sim, fault))
    assert isinstance(err, MalformedStream)
    assert not err.retryable


@pytest.mark.anyio
async def test_error_event_inside_the_stream(sim: RunningUpstream) -> None:
    err = await failing(faulty(sim, "error_after:2"))
    assert isinstance(err, UpstreamStatus) and err.status == 500


@pytest.mark.anyio
async def test_unknown_model_is_upstream_status_404(sim: RunningUpstream) -> None:
    err = await failing(make(sim, "no-such-model"))
    assert isinstance(err, UpstreamStatus) and err.status == 404 and not err.retryable


# --- the key stays secret -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault",
    ["status:401", "status:403", "status:429", "status:500", "drop_after:1", "eof_after:1",
     "malformed_after:1", "content_type", "error_after:1"],
)  # fmt: skip
async def test_api_key_never_in_an_error(sim: RunningUpstream, fault: str) -> None:
    err = await failing(faulty(sim, fault))
    if fault == "status:401":
        # The sim echoes the key it received, as real upstreams do in 401 bodies.
        assert KEY in str(sim.upstream.received[-1].headers.get("authorization"))
    formatted = "".join(traceback.format_exception(err))
    assert KEY not in formatted
    assert KEY not in repr(err) and KEY not in err.message


def test_missing_key_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIM_API_KEY")
    config = OpenAIProviderConfig(base_url="http://x/v1", model="m", api_key_env="SIM_API_KEY")
    with pytest.raises(MissingAPIKey, match="SIM_API_KEY"):
        OpenAIProvider("t", config)
    # An endpoint that needs no key.
    OpenAIProvider("t", OpenAIProviderConfig(base_url="http://x/v1", model="m", api_key_env=""))


def test_config_rejects_unknown_fields_and_bad_values() -> None:
    base = {"base_url": "http://x/v1", "model": "m"}
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**base, "api_key": "sk-inline"}, OpenAIProviderConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**base, "top_logprobs": 50}, OpenAIProviderConfig)
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**base, "prefix_mode": "guess"}, OpenAIProviderConfig)
    assert msgspec.convert(base, OpenAIProviderConfig).prefix_mode == "instruction"


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


# --- the SSE decoder alone (no network) -----------------------------------------------------


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


def lp(token: str, logprob: float, *tops: float) -> dict[str, object]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": "x", "logprob": t, "bytes": [120]} for t in tops],
    }


def choice(
    delta: dict[str, object], entries: list[object] | None = None, finish: str | None = None
) -> dict[str, object]:
    logprobs = {"content": entries} if entries is not None else None
    one = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
    return {"choices": [one]}


def decode_all(data: bytes, piece: int) -> list[Chunk]:
    decoder = ChatStreamDecoder("t")
    out: list[Chunk] = []
    for k in range(0, len(data), piece):
        out.extend(decoder.feed(data[k : k + piece]))
    out.extend(decoder.end())
    return out


@pytest.mark.parametrize("piece", [1, 7, 10_000])
def test_decoder_splits_multi_token_chunks_at_any_byte_boundary(piece: int) -> None:
    body = sse(
        choice({"role": "assistant", "content": ""}, []),
        choice(
            {"content": " Hello there"},
            [lp(" Hello", -0.1, -0.1, -2.0), lp(" there", -0.5, -0.5)],
        ),
        choice({"content": "!"}, [lp("!", -0.01, -0.01)], finish="stop"),
        {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
    )
    assert decode_all(body, piece) == [
        Chunk(" Hello", -0.1, (-0.1, -2.0)),
        Chunk(" there", -0.5, (-0.5,)),
        Chunk("!", -0.01, (-0.01,)),
        Chunk(finish_reason="stop", usage=Usage(7, 3)),
    ]


def test_decoder_makes_invalid_or_missing_logprobs_unknown() -> None:
    # positive, null or missing logprobs never reach the monitor as a score (0.0 = certain)
    body = sse(
        choice({"content": "A"}, [lp("A", 710.0, 710.0, -1.0)]),
        choice({"content": "B"}, [{"token": "B", "logprob": None, "top_logprobs": []}]),
        choice({"content": "C"}, [{"token": "C", "top_logprobs": [{"token": "x"}]}]),
        choice({"content": "D"}, [lp("D", 1e-7, 1e-7, -2.0)], finish="stop"),
    )
    assert decode_all(body, 10_000) == [
        Chunk("A", None, (-1.0,)),
        Chunk("B"),
        Chunk("C"),
        Chunk("D", 0.0, (0.0, -2.0)),
        Chunk(finish_reason="stop"),
    ]


def test_decoder_tolerates_crlf_comments_and_multiline_data() -> None:
    body = (
        b": ping\r\n\r\nevent: message\r\nid: 1\r\n"
        b'data: {"choices": [{"delta":\r\ndata: {"content": "Hi"}}]}\r\n\r\n'
        b'data: {"choices": [{"delta": {}, "finish_reason": "stop"}]}\r\n\r\ndata: [DONE]\r\n\r\n'
    )
    assert decode_all(body, 5) == [Chunk("Hi"), Chunk(finish_reason="stop")]


def test_decoder_keeps_text_exact_when_tokens_do_not_spell_it() -> None:
    body = sse(choice({"content": "é!"}, [lp("\\xc3", -0.2), lp("\\xa9!", -0.3)], finish="stop"))
    assert decode_all(body, 3) == [
        Chunk("é!", -0.2),
        Chunk("", -0.3),
        Chunk(finish_reason="stop"),
    ]


def test_decoder_end_without_finish_is_connection_lost() -> None:
    decoder = ChatStreamDecoder("t")
    assert decoder.feed(b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n') == [Chunk("Hi")]
    with pytest.raises(ConnectionLost):
        decoder.end()


def test_decoder_rejects_wrong_shapes() -> None:
    for bad in [b"data: {nope\n\n", b'data: {"choices": {"a": 1}}\n\n', b"data: 42\n\n"]:
        with pytest.raises(MalformedStream):
            ChatStreamDecoder("t").feed(bad)


@pytest.mark.anyio
async def test_the_proxy_from_the_environment_is_used(
    sim: RunningUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY carries the request (read once, when the provider is made), whichever client
    sends it: the sim, standing in for the proxy, sees the absolute URL of an unreachable host."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", sim.base_url.rsplit("/v1", 1)[0])
    config = OpenAIProviderConfig(
        base_url="http://upstream.invalid/v1",
        model="light",
        api_key_env="SIM_API_KEY",
        http_client=HTTP_CLIENT,  # type: ignore[arg-type]
    )
    provider = OpenAIProvider("proxied", config)
    with contextlib.suppress(ProviderError):
        await collect(provider, user(EASY))
    await provider.aclose()
    assert sim.upstream.received, "nothing reached the proxy"
    assert "upstream.invalid" in sim.upstream.received[-1].path or (
        sim.upstream.received[-1].headers.get("host") == "upstream.invalid"
    )
