"""The request the provider sends is the one ``chat.completions.create`` would send.

The provider encodes the body itself (msgspec) and sends it on the SDK's ``httpx2`` client with
headers built once, skipping the SDK's per-request transform. These tests pin that to the SDK:
for each request shape, the same method, URL, headers, timeout and body bytes as the SDK's own
``create`` with the arguments the provider used to pass it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import anyio
import httpx2
import msgspec
import openai
import pytest

from bench.request_cost import sdk_arguments
from realtime_cascade.providers.base import (
    Chunk,
    ConnectionLost,
    Message,
    RateLimited,
    TierRequest,
    UpstreamStatus,
)
from realtime_cascade.providers.openai import (
    OpenAIProvider,
    OpenAIProviderConfig,
)

KEY = "sk-test-request-shape-0123456789"
SSE = (
    b'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
    b"data: [DONE]\n\n"
)
TOOLS: tuple[dict[str, object], ...] = (
    {
        "type": "function",
        "function": {
            "name": "book",
            "description": "Book a table",
            "parameters": {
                "type": "object",
                "properties": {"time": {"type": "string"}, "people": {"type": "integer"}},
                "required": ["time", "people"],
            },
        },
    },
)
HISTORY = (
    Message("system", "You book tables. Be brief."),
    Message("user", "Une table pour deux à 19 h, près du fleuve — merci ☕"),
    Message(
        "assistant",
        tool_calls=(
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "book", "arguments": '{"time":"19:00","people":2}'},
            },
        ),
    ),
    Message("tool", '{"ok": true, "ref": "B-17"}', tool_call_id="call_1"),
    Message("user", 'Quote: "\\n" and a tab\there, \u2028 and \x7f.'),
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQ_API_KEY", KEY)


class Recorder:
    """An in-memory transport: records each request, answers with a short SSE reply."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=SSE)


def provider(http: httpx2.AsyncClient, **fields: object) -> OpenAIProvider:
    config = msgspec.convert(
        {"base_url": "http://up.example/v1", "model": "m-1", "api_key_env": "REQ_API_KEY"} | fields,
        OpenAIProviderConfig,
    )
    return OpenAIProvider("t", config, http_client=http)


async def sdk_create(client: openai.AsyncOpenAI, p: OpenAIProvider, request: TierRequest) -> None:
    """What the provider sent before it built requests itself: ``create`` through the SDK,
    with the arguments ``bench.request_cost`` measures it with."""
    async with client.chat.completions.with_streaming_response.create(
        **sdk_arguments(p, request)
    ) as response:
        await response.http_response.aread()


async def collect(p: OpenAIProvider, request: TierRequest) -> list[Chunk]:
    async with contextlib.aclosing(p.stream(request)) as stream:
        return [chunk async for chunk in stream]


CASES: list[tuple[dict[str, object], TierRequest]] = [
    ({}, TierRequest((Message("user", "Book a table for two."),))),
    ({}, TierRequest(HISTORY, tools=TOOLS, tool_choice="auto", max_tokens=77, top_logprobs=3)),
    ({"top_logprobs": 2}, TierRequest(HISTORY, top_logprobs=9)),
    ({"logprobs": False}, TierRequest(HISTORY, tools=TOOLS)),
    (
        {},
        TierRequest(
            HISTORY, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "book"}}
        ),
    ),
    ({"prefix_mode": "instruction"}, TierRequest(HISTORY, prefix="Sure — a table for ")),
    ({"prefix_mode": "assistant_prefix"}, TierRequest(HISTORY, prefix="Sure — a table for ")),
    (
        {
            "prefix_mode": "assistant_prefix",
            "extra_body": {"continue_final_message": False, "max_tokens": 5, "seed": 7},
        },
        TierRequest(HISTORY, prefix="Sure"),
    ),
    (
        {"extra_body": {"temperature": 0.25, "metadata": {"a": [1, 2.5, None]}}},
        TierRequest(HISTORY),
    ),
    ({"timeout_s": 2.5}, TierRequest(HISTORY, tool_choice="none")),
    ({"temperature": 0.0, "top_p": 0.9, "seed": 42}, TierRequest(HISTORY, tools=TOOLS)),
    ({"temperature": 0.7}, TierRequest(HISTORY)),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("fields", "request_"), CASES)
async def test_the_request_is_what_the_sdk_would_send(
    fields: dict[str, object], request_: TierRequest
) -> None:
    ours, theirs = Recorder(), Recorder()
    async with (
        httpx2.AsyncClient(transport=httpx2.MockTransport(ours)) as http,
        httpx2.AsyncClient(transport=httpx2.MockTransport(theirs)) as sdk_http,
    ):
        p = provider(http, **fields)
        got = await collect(p, request_)
        assert [c.text for c in got] == ["Hi", ""] and got[-1].finish_reason == "stop"
        sdk = openai.AsyncOpenAI(
            api_key=KEY,
            base_url=p.config.base_url,
            timeout=p.config.timeout_s,
            max_retries=0,
            http_client=sdk_http,
        )
        await sdk_create(sdk, p, request_)
    (mine,), (want,) = ours.requests, theirs.requests
    assert mine.method == want.method == "POST"
    assert mine.url == want.url == httpx2.URL("http://up.example/v1/chat/completions")
    # Every header, case-insensitively, but the SDK's own in-process marker for
    # ``with_streaming_response`` (it tells the SDK how to wrap the response; the server
    # ignores it).
    sdk_headers = want.headers.copy()
    assert sdk_headers.pop("x-stainless-raw-response") == "stream"
    assert mine.headers == sdk_headers
    assert mine.headers["authorization"] == f"Bearer {KEY}"
    assert mine.extensions["timeout"] == want.extensions["timeout"]
    # Byte for byte: the same fields in the same order, and msgspec writes JSON as the SDK's
    # ``json.dumps(ensure_ascii=False, separators=(",", ":"))`` does for these values.
    assert mine.content == want.content
    body = json.loads(mine.content)
    if request_.prefix and fields.get("prefix_mode") == "assistant_prefix":
        assert body["messages"][-1] == {"role": "assistant", "content": request_.prefix}


@pytest.mark.anyio
async def test_a_keyless_endpoint_gets_the_placeholder_as_the_sdk_sends_it() -> None:
    rec = Recorder()
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(rec)) as http:
        await collect(provider(http, api_key_env=""), TierRequest((Message("user", "hi"),)))
    assert rec.requests[0].headers["authorization"] == "Bearer unused"


@pytest.mark.anyio
async def test_status_errors_come_from_the_sdk_and_close_the_response() -> None:
    closed: list[bool] = []

    class Body(httpx2.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"error": {"message": "slow down", "type": "requests"}}'

        async def aclose(self) -> None:
            closed.append(True)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, headers={"retry-after-ms": "1500"}, stream=Body())

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        p = provider(http)
        with pytest.raises(RateLimited) as info:
            await collect(p, TierRequest((Message("user", "hi"),)))
    assert info.value.retry_after == 1.5
    assert "slow down" in info.value.message and KEY not in info.value.message
    assert closed


@pytest.mark.anyio
async def test_an_error_status_without_a_json_body_is_upstream_status() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(502, content=b"<html>bad gateway</html>")

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as http:
        with pytest.raises(UpstreamStatus) as info:
            await collect(provider(http), TierRequest((Message("user", "hi"),)))
    assert info.value.status == 502 and info.value.retryable


@pytest.mark.anyio
async def test_a_redirect_loop_is_connection_lost() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(307, headers={"location": str(request.url)})

    with anyio.fail_after(5):
        async with httpx2.AsyncClient(
            transport=httpx2.MockTransport(handler), follow_redirects=True
        ) as http:
            with pytest.raises(ConnectionLost):
                await collect(provider(http), TierRequest((Message("user", "hi"),)))


@pytest.mark.anyio
async def test_the_default_client_is_the_sdks_and_aclose_closes_it() -> None:
    p = OpenAIProvider(
        "t",
        OpenAIProviderConfig(base_url="http://up.example/v1", model="m", api_key_env=""),
    )
    http = p._http
    assert isinstance(http, openai.DefaultAsyncHttpxClient)
    assert http.follow_redirects
    await p.aclose()
    assert http.is_closed
