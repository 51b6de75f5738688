"""Per-chunk cost of reading a streamed chat completion: our msgspec SSE path vs the SDK's own.

    python -m bench.decode_cost [--chunks N] [--rounds R] [--loop uvloop|asyncio] [--json]

The comparison, and why it is the honest one:

1. sim-upstream serves one reply of N one-token chunks (each with 5 top_logprobs, a usage chunk,
   ``[DONE]``) and the SSE body is recorded once.
2. The same recorded events are replayed, one SSE event per transport read (as a live stream
   arrives), through an in-memory ``httpx2.MockTransport`` under an ``AsyncOpenAI`` client, to
   three readers in turn, interleaved over R rounds (median reported):

   - floor:   ``with_streaming_response`` + ``aiter_bytes()``, no parsing (what both share:
              request building, the SDK's request path, the transport);
   - msgspec: ``OpenAIProvider.stream()`` (one ``Chunk`` per token, finish and usage);
   - sdk:     ``client.chat.completions.create(stream=True)``, iterating the pydantic
              ``ChatCompletionChunk`` objects (and reading their content and logprobs).

   Same bytes, same boundaries, same client, same run: the difference is the parsing.
   ``minus floor`` isolates it. The sdk path does less than ours (it builds no ``Chunk``), so
   the ratio understates our advantage, if anything.
3. For scale, the three readers also run live over real HTTP against sim-upstream (itl 0, same
   process: the server's own cost is in every number, the floor included).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2
import msgspec
import openai
from openai.types.chat import ChatCompletionMessageParam

from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.openai import OpenAIProvider, OpenAIProviderConfig
from realtime_cascade.providers.sim import Reply, Segment, SimProfile, Sureness
from realtime_cascade.providers.sim_upstream import SimUpstream

SENTENCE = "The quick brown fox, number 7, jumps over the lazy dog while we wait."


class LongScript:
    """A long reply with mixed sureness, so logprobs and alternatives vary like real ones."""

    def reply(self, request: TierRequest, skill: float, rng: random.Random) -> Reply:
        kinds: tuple[Sureness, ...] = ("sure", "doubt", "unsure")
        return Reply(tuple(Segment(" " + SENTENCE, kinds[k % 3]) for k in range(400)))


def _request(chunks: int) -> TierRequest:
    # max_tokens cuts the reply at exactly ``chunks`` tokens.
    return TierRequest((Message("user", "Tell me a long story."),), max_tokens=chunks)


def _body(chunks: int, model: str) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 5,
        "max_tokens": chunks,
    }


async def _serve(upstream: SimUpstream, tg: anyio.abc.TaskGroup) -> str:
    port = await tg.start(upstream.serve, "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}/v1"


async def record(base_url: str, chunks: int) -> list[bytes]:
    """The SSE body of one reply, split into its events (each ending in a blank line)."""
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
        r = await http.post("/chat/completions", json=_body(chunks, "bench"))
        r.raise_for_status()
        body = r.content
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


def replay_client(events: list[bytes]) -> httpx2.AsyncClient:
    async def stream() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=stream()
        )

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


Reader = Callable[[], Awaitable[int]]


def readers(base_url: str, chunks: int, http: httpx2.AsyncClient | None) -> dict[str, Reader]:
    config = OpenAIProviderConfig(base_url=base_url, model="bench", api_key_env="")
    provider = OpenAIProvider("bench", config, http_client=http)
    client = openai.AsyncOpenAI(
        api_key="unused", base_url=base_url, max_retries=0, http_client=http
    )
    request = _request(chunks)
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Tell me a long story."}
    ]
    # the same request for the floor and the SDK path (stream=True is passed at each call, so
    # the SDK's overloads see it)
    create: dict[str, Any] = {
        "model": "bench",
        "messages": messages,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 5,
        "max_tokens": chunks,
    }

    async def floor() -> int:
        n = 0
        async with client.chat.completions.with_streaming_response.create(
            **create, stream=True
        ) as response:
            async for piece in response.http_response.aiter_bytes():
                n += piece.count(b"\n\n")
        return n

    async def ours() -> int:
        n = 0
        async for _chunk in provider.stream(request):
            n += 1
        return n

    async def sdk() -> int:
        n = 0
        stream = await client.chat.completions.create(**create, stream=True)
        async for chunk in stream:
            n += 1
            for choice in chunk.choices:
                # Read what the cascade needs, as a consumer of these objects would.
                _ = choice.delta.content
                if choice.logprobs is not None and choice.logprobs.content:
                    for entry in choice.logprobs.content:
                        _ = entry.logprob, [t.logprob for t in entry.top_logprobs]
        return n

    return {"floor": floor, "msgspec": ours, "sdk": sdk}


async def measure(paths: dict[str, Reader], rounds: int, events: int) -> dict[str, float]:
    """Median µs per SSE event of each path, the paths interleaved round by round."""
    for name, read in paths.items():  # warm up (imports, pools, caches) and check the work
        seen = await read()
        # Events: the role chunk, one per token, finish, usage (and [DONE], which only the
        # floor counts). msgspec yields one Chunk per token plus one final Chunk.
        want = {"floor": events + 1, "msgspec": events - 2}.get(name, events)
        if seen != want:
            raise RuntimeError(f"{name} read {seen} items, expected {want}")
    samples: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()  # each path starts from the same heap state; its own garbage counts
            start = time.perf_counter_ns()
            await paths[name]()
            samples[name].append((time.perf_counter_ns() - start) / 1000 / events)
    return {name: statistics.median(values) for name, values in samples.items()}


async def run(chunks: int, rounds: int) -> dict[str, object]:
    profile = SimProfile(ttft_ms=0, ttft_sigma=0, itl_ms=0, itl_sigma=0, script="bench")
    upstream = SimUpstream({"bench": profile}, scripts={"bench": LongScript()})
    async with anyio.create_task_group() as tg:
        base_url = await _serve(upstream, tg)
        events = await record(base_url, chunks)
        data_events = sum(1 for e in events if e.startswith(b"data: {"))
        async with replay_client(events) as http:
            replay = await measure(readers(base_url, chunks, http), rounds, data_events)
        live = await measure(readers(base_url, chunks, None), max(3, rounds // 2), data_events)
        tg.cancel_scope.cancel()
    return {
        "sse_events": data_events,
        "bytes": sum(len(e) for e in events),
        "rounds": rounds,
        "replay_us_per_chunk": replay,
        "live_us_per_chunk": live,
    }


def report(result: dict[str, object]) -> str:
    replay = msgspec.convert(result["replay_us_per_chunk"], dict[str, float])
    live = msgspec.convert(result["live_us_per_chunk"], dict[str, float])
    floor = replay["floor"]
    ours, sdk = replay["msgspec"], replay["sdk"]
    lines = [
        f"decode cost per SSE chunk: {result['sse_events']} chunks "
        f"({result['bytes']} bytes, 1 token + 5 top_logprobs each), "
        f"median of {result['rounds']} interleaved rounds",
        "same recorded SSE events replayed through one in-memory transport:",
        f"  {'path':<34}{'µs/chunk':>10}{'minus floor':>14}",
        f"  {'floor (SDK request + raw bytes)':<34}{floor:>10.1f}",
        f"  {'msgspec (OpenAIProvider.stream)':<34}{ours:>10.1f}{ours - floor:>14.1f}",
        f"  {'sdk (pydantic ChatCompletionChunk)':<34}{sdk:>10.1f}{sdk - floor:>14.1f}",
        f"  ratio sdk / msgspec: {sdk / ours:.1f}x end to end, "
        f"{(sdk - floor) / max(ours - floor, 1e-9):.1f}x parsing only",
        "live over HTTP from sim-upstream (itl 0; the server runs in the same process, so its",
        "cost is in every number, the floor included):",
        f"  floor {live['floor']:.1f}, msgspec {live['msgspec']:.1f}, sdk {live['sdk']:.1f} "
        f"µs/chunk; ratio {live['sdk'] / live['msgspec']:.1f}x end to end, "
        f"{(live['sdk'] - live['floor']) / max(live['msgspec'] - live['floor'], 1e-9):.1f}x "
        "over the floor",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decode_cost", description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000, help="tokens in the reply (2000)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per path (7)")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    # uvloop, as the runtime uses, where installed.
    use_uvloop = args.loop == "uvloop" and importlib.util.find_spec("uvloop") is not None
    options = {"use_uvloop": use_uvloop}
    result = anyio.run(run, args.chunks, args.rounds, backend_options=options)
    result["loop"] = "uvloop" if use_uvloop else "asyncio"
    print(msgspec.json.encode(result).decode() if args.json else report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
