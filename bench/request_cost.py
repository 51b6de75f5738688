"""Per-request cost of starting a streamed chat completion: the SDK's ``create`` vs our path.

    python -m bench.request_cost [--messages 2,8,18] [--rounds R] [--loop uvloop|asyncio] [--json]

What is compared, on the same requests, the same client and transport, in the same run:

- ``sdk``:     what ``OpenAIProvider.stream`` did before it built requests itself:
               ``client.chat.completions.with_streaming_response.create(...)`` (the SDK's
               recursive TypedDict transform of the body, its generic request path: pydantic
               option models, header merging, URL building), then the raw bytes through
               :class:`~realtime_cascade.providers.openai.ChatStreamDecoder`;
- ``ours``:    ``OpenAIProvider.stream()`` now: the body encoded by one msgspec encoder, sent on
               the SDK's ``httpx2`` client with headers built once, the same decoder;
- ``floor``:   the same request already built (bytes, headers, URL) sent with
               ``httpx2.AsyncClient.send`` and its body read: the transport alone, which both
               paths pay;
- ``encode``:  ``OpenAIProvider.request_body()`` alone (the msgspec encoding);
- ``transform``: the SDK's ``async_maybe_transform`` of the same body alone (the part of
               ``sdk`` that the profile under load pointed at).

Each request is a booking conversation of N messages (system prompt, user and assistant turns,
a tool call and its result) with the booking demo's tools, logprobs on, and the reply is a
short stream (one token, finish, usage, ``[DONE]``) from an in-memory ``httpx2.MockTransport``,
so what is measured is the per-request work, not the per-token work (``bench.decode_cost``
measures that). Median µs per request over R interleaved rounds.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import anyio
import httpx2
import msgspec
import openai
from openai._utils import async_maybe_transform
from openai.types.chat import (
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolUnionParam,
    completion_create_params,
)

from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.openai import (
    ChatStreamDecoder,
    OpenAIProvider,
    OpenAIProviderConfig,
    continuation_instruction,
)

BASE_URL = "http://upstream.invalid/v1"
SSE = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{"content":"Done"},"logprobs":{"content":[{"token":"Done",'
    b'"logprob":-0.01,"top_logprobs":[{"token":"Done","logprob":-0.01}]}]},'
    b'"finish_reason":null}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":'
    b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
    b'"usage":{"prompt_tokens":100,"completion_tokens":1,"total_tokens":101}}\n\n'
    b"data: [DONE]\n\n"
)

SYSTEM = (
    "You are the booking agent of a restaurant group. Answer briefly and precisely; use the "
    "tools to look up availability and to create, change or cancel bookings. Never invent a "
    "booking reference; confirm the date, time, party size and name before booking."
)
USER = "Could you book a table for {n} people on Friday at 19:30 near the river, under Dana?"
ASSISTANT = "Friday at 19:30 for {n} is available at the riverside room. Shall I book it?"


def _tools() -> tuple[dict[str, object], ...]:
    """The booking demo's tools where the demo is there, else one of the same shape."""
    if importlib.util.find_spec("realtime_cascade.demos.booking") is not None:
        from realtime_cascade.demos.booking.tools import TOOLS

        return tuple(TOOLS)
    schema = {
        "type": "object",
        "properties": {
            "date": {"type": "string", "description": "YYYY-MM-DD"},
            "time": {"type": "string", "description": "HH:MM"},
            "party": {"type": "integer", "minimum": 1, "maximum": 12},
            "name": {"type": "string"},
        },
        "required": ["date", "time", "party", "name"],
        "additionalProperties": False,
    }
    return tuple(
        {"type": "function", "function": {"name": n, "description": n, "parameters": schema}}
        for n in ("check_availability", "create_booking", "change_booking", "cancel_booking")
    )


def conversation(n: int) -> tuple[Message, ...]:
    """A system prompt and n - 1 messages: user and assistant turns, one tool round trip."""
    out = [Message("system", SYSTEM)]
    k = 0
    while len(out) < n:
        k += 1
        if k == 2 and n - len(out) >= 3:
            args = '{"date":"2026-11-27","time":"19:30","party":4,"name":"Dana"}'
            call_id = f"call_{k}"
            call: dict[str, object] = {
                "id": call_id,
                "type": "function",
                "function": {"name": "create_booking", "arguments": args},
            }
            out.append(Message("assistant", tool_calls=(call,)))
            out.append(Message("tool", '{"ok":true,"reference":"B-1042"}', tool_call_id=call_id))
        if len(out) % 2:
            out.append(Message("user", USER.format(n=k + 1)))
        else:
            out.append(Message("assistant", ASSISTANT.format(n=k + 1)))
    return tuple(out[:n])


def requests(sizes: Sequence[int]) -> dict[int, TierRequest]:
    tools = _tools()
    return {n: TierRequest(conversation(n), tools=tools, tool_choice="auto") for n in sizes}


def transport() -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=SSE)

    return httpx2.MockTransport(handler)


def sdk_arguments(provider: OpenAIProvider, request: TierRequest) -> dict[str, Any]:
    """The arguments the provider passed to ``chat.completions.create`` before this change."""
    config = provider.config
    messages: list[dict[str, Any]] = [msgspec.to_builtins(m) for m in request.messages]
    extra: dict[str, object] = {}
    if request.prefix:
        if config.prefix_mode == "assistant_prefix":
            messages.append({"role": "assistant", "content": request.prefix})
            extra = {"continue_final_message": True, "add_generation_prompt": False}
        else:
            messages.append({"role": "system", "content": continuation_instruction(request.prefix)})
    extra.update(config.extra_body)
    top = max(0, min(config.top_logprobs, request.top_logprobs))
    return {
        "model": config.model,
        "messages": cast(list[ChatCompletionMessageParam], messages),
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True if config.logprobs else openai.omit,
        "top_logprobs": top if config.logprobs else openai.omit,
        "tools": cast(list[ChatCompletionToolUnionParam], list(request.tools))
        if request.tools
        else openai.omit,
        "tool_choice": cast(ChatCompletionToolChoiceOptionParam, request.tool_choice)
        if request.tool_choice is not None
        else openai.omit,
        "max_tokens": request.max_tokens,
        "seed": config.seed if config.seed is not None else openai.omit,
        "temperature": config.temperature if config.temperature is not None else openai.omit,
        "top_p": config.top_p if config.top_p is not None else openai.omit,
        "extra_body": extra,
    }


Path = Callable[[], Awaitable[int]]


def paths(http: httpx2.AsyncClient, request: TierRequest) -> dict[str, Path]:
    config = OpenAIProviderConfig(base_url=BASE_URL, model="m", api_key_env="")
    provider = OpenAIProvider("bench", config, http_client=http)
    client = openai.AsyncOpenAI(
        api_key="unused", base_url=BASE_URL, max_retries=0, http_client=http
    )
    body = provider.request_body(request)
    sdk_body = {k: v for k, v in msgspec.json.decode(body).items() if k != "stream"}

    async def sdk() -> int:
        n = 0
        decoder = ChatStreamDecoder("bench")
        kwargs = sdk_arguments(provider, request)
        async with client.chat.completions.with_streaming_response.create(**kwargs) as response:
            async for piece in response.http_response.aiter_bytes():
                n += len(decoder.feed(piece))
        return n

    async def ours() -> int:
        n = 0
        async for _chunk in provider.stream(request):
            n += 1
        return n

    built: list[httpx2.Request] = []

    async def floor() -> int:
        if not built:  # the request exactly as ours sends it, built once
            headers = provider._request_headers()
            built.append(http.build_request("POST", provider._url, content=body, headers=headers))
        response = await http.send(built[0], stream=True)
        try:
            decoder = ChatStreamDecoder("bench")
            n = 0
            async for piece in response.aiter_bytes():
                n += len(decoder.feed(piece))
            return n
        finally:
            await response.aclose()

    async def encode() -> int:
        return len(provider.request_body(request))

    async def transform() -> int:
        params = completion_create_params.CompletionCreateParamsStreaming
        done = await async_maybe_transform({"stream": True, **sdk_body}, params)
        return len(cast(dict[str, object], done))

    return {"sdk": sdk, "ours": ours, "floor": floor, "encode": encode, "transform": transform}


async def measure(named: dict[str, Path], rounds: int, batch: int) -> dict[str, float]:
    """Median µs per call of each path, interleaved round by round (``batch`` calls each)."""
    for name, call in named.items():  # warm up (imports, pools, caches)
        seen = await call()
        if name in ("sdk", "ours", "floor") and seen != 2:  # one token, one final chunk
            raise RuntimeError(f"{name} read {seen} chunks, expected 2")
    samples: dict[str, list[float]] = {name: [] for name in named}
    names = list(named)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            call = named[name]
            gc.collect()  # each path starts from the same heap state; its own garbage counts
            start = time.perf_counter_ns()
            for _ in range(batch):
                await call()
            samples[name].append((time.perf_counter_ns() - start) / 1000 / batch)
    return {name: statistics.median(values) for name, values in samples.items()}


async def run(sizes: Sequence[int], rounds: int, batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds, "batch": batch, "sizes": []}
    async with httpx2.AsyncClient(transport=transport()) as http:
        for n, request in requests(sizes).items():
            body = OpenAIProvider(
                "bench", OpenAIProviderConfig(base_url=BASE_URL, model="m", api_key_env="")
            ).request_body(request)
            us = await measure(paths(http, request), rounds, batch)
            out["sizes"].append({"messages": n, "body_bytes": len(body), "us_per_request": us})
    return out


def report(result: dict[str, Any]) -> str:
    lines = [
        "request cost per streamed chat completion (in-memory transport, a 1-token reply), "
        f"median of {result['rounds']} interleaved rounds of {result['batch']}, µs/request:",
        f"  {'messages':>8}{'body B':>8}{'sdk':>9}{'ours':>9}{'floor':>9}"
        f"{'sdk-floor':>11}{'ours-floor':>12}{'saved':>9}{'encode':>9}{'transform':>11}",
    ]
    for row in result["sizes"]:
        us = row["us_per_request"]
        sdk, ours, floor = us["sdk"], us["ours"], us["floor"]
        lines.append(
            f"  {row['messages']:>8}{row['body_bytes']:>8}{sdk:>9.1f}{ours:>9.1f}{floor:>9.1f}"
            f"{sdk - floor:>11.1f}{ours - floor:>12.1f}{sdk - ours:>9.1f}"
            f"{us['encode']:>9.1f}{us['transform']:>11.1f}"
        )
    lines.append(
        "  sdk: chat.completions.with_streaming_response.create (the old path); ours: "
        "OpenAIProvider.stream; floor: the built request sent with httpx2 alone; encode: "
        "request_body (msgspec); transform: the SDK's async_maybe_transform of the same body"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cost", description=__doc__)
    parser.add_argument(
        "--messages", default="2,8,18", help="conversation sizes, comma-separated (2,8,18)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per path (7)")
    parser.add_argument("--batch", type=int, default=200, help="requests per round (200)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.messages.split(",") if s.strip()]
    # uvloop, as the runtime uses, where installed.
    use_uvloop = args.loop == "uvloop" and importlib.util.find_spec("uvloop") is not None
    options = {"use_uvloop": use_uvloop}
    result = anyio.run(run, sizes, args.rounds, args.batch, backend_options=options)
    result["loop"] = "uvloop" if use_uvloop else "asyncio"
    print(msgspec.json.encode(result).decode() if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
