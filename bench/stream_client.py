"""Client CPU of streamed chat completions over real HTTP: which HTTP client reads them cheapest.

    python -m bench.stream_client [--concurrency C] [--requests R] [--tokens 4,64] [--rounds N]
                                  [--variants sdk,httpcore,aiohttp] [--itl-ms MS] [--json]

A sim upstream runs in its own process (``--itl-ms`` 10: each token arrives in its own network
read, as a live stream's do), and this process streams R requests, C at a time, through each
client in turn, interleaved over N rounds, in the same run. Every variant sends the same body
(``OpenAIProvider.request_body``) with the same headers and feeds the same
:class:`~realtime_cascade.providers.openai.ChatStreamDecoder`, so what differs is the HTTP
client alone:

- ``sdk``:      ``OpenAIProvider.stream()`` with ``http_client = "sdk"``: the body sent on the
                openai SDK's ``httpx2`` client (``send(stream=True)``, ``aiter_bytes()``: h11
                parsing, one timeout scope per read);
- ``httpcore``: ``httpcore2.AsyncConnectionPool.stream`` and ``aiter_stream()``: the layer below
                httpx2 (h11 still parses every read);
- ``aiohttp``:  ``OpenAIProvider.stream()`` with ``http_client = "aiohttp"`` (the default):
                aiohttp's C HTTP parser, one ``iter_any()`` read per network chunk.

This process's CPU (``time.process_time``) per round is split into a per-request and a
per-token part by running two reply lengths (``--tokens a,b``): cost(n) = request + n × token.
Medians over rounds; the load average of the machine is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.openai import (
    ChatStreamDecoder,
    OpenAIProvider,
    OpenAIProviderConfig,
)

from .procs import Proc, upstream_argv

Streamer = Callable[[TierRequest], Awaitable[int]]


def _request(tokens: int, seed: int) -> TierRequest:
    return TierRequest(
        messages=(
            Message("system", "You are a helpful voice agent. Answer briefly."),
            Message("user", "Tell me about the opening hours of the riverside room, please."),
        ),
        max_tokens=tokens,
        seed=seed,
    )


def _provider(base_url: str, client: str) -> OpenAIProvider:
    config = msgspec.convert(
        {"base_url": base_url, "model": "fast", "api_key_env": "", "http_client": client},
        OpenAIProviderConfig,
    )
    return OpenAIProvider("fast", config)


def _via_provider(provider: OpenAIProvider) -> Streamer:
    async def one(request: TierRequest) -> int:
        n = 0
        async for chunk in provider.stream(request):
            n += chunk.text != ""
        return n

    return one


def _via_httpcore(provider: OpenAIProvider, base_url: str) -> tuple[Streamer, Any]:
    import httpcore2

    pool = httpcore2.AsyncConnectionPool(max_connections=1000, max_keepalive_connections=1000)
    url = base_url.rstrip("/") + "/chat/completions"
    headers = [(k.encode(), v.encode()) for k, v in provider._request_headers().items()]
    timeout = {"connect": 30.0, "read": 30.0, "write": 30.0, "pool": 30.0}

    async def one(request: TierRequest) -> int:
        decoder = ChatStreamDecoder()
        n = 0
        body = provider.request_body(request)
        async with pool.stream(
            "POST", url, headers=headers, content=body, extensions={"timeout": timeout}
        ) as response:
            async for piece in response.aiter_stream():
                for chunk in decoder.feed(piece):
                    n += chunk.text != ""
                if decoder.done:
                    break
        return n

    return one, pool


async def _round(streamer: Streamer, requests: int, concurrency: int, tokens: int) -> float:
    """CPU seconds this process spent streaming ``requests`` replies, C at a time."""
    counter = iter(range(requests))
    got: list[int] = []

    async def worker() -> None:
        for seed in counter:
            got.append(await streamer(_request(tokens, seed)))

    start = time.process_time()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    spent = time.process_time() - start
    if len(got) != requests or min(got) < 1:
        raise RuntimeError(f"short replies: {len(got)} of {requests}, min {min(got, default=0)}")
    return spent


async def run(args: argparse.Namespace, base_url: str) -> dict[str, dict[str, float]]:
    variants: dict[str, Streamer] = {}
    closers: list[Callable[[], Awaitable[None]]] = []
    for name in args.variants:
        if name in ("sdk", "aiohttp"):
            provider = _provider(base_url, name)
            variants[name] = _via_provider(provider)
            closers.append(provider.aclose)
        elif name == "httpcore":
            provider = _provider(base_url, "sdk")
            streamer, pool = _via_httpcore(provider, base_url)
            variants[name] = streamer
            closers += [provider.aclose, pool.aclose]
        else:
            raise SystemExit(f"unknown variant {name!r}")
    tokens = [_tokens for _tokens in args.tokens]
    samples: dict[tuple[str, int], list[float]] = {}
    try:
        # One warm-up round each (connections opened, imports, caches), not counted.
        for streamer in variants.values():
            await _round(streamer, args.concurrency, args.concurrency, tokens[0])
        for _ in range(args.rounds):
            for n in tokens:
                for name, streamer in variants.items():
                    spent = await _round(streamer, args.requests, args.concurrency, n)
                    samples.setdefault((name, n), []).append(spent / args.requests)
    finally:
        for close in closers:
            await close()
    out: dict[str, dict[str, float]] = {}
    short, long = tokens[0], tokens[-1]
    for name in variants:
        a = statistics.median(samples[(name, short)])
        b = statistics.median(samples[(name, long)])
        per_token = (b - a) / (long - short)
        out[name] = {
            f"us_per_request_{short}_tokens": a * 1e6,
            f"us_per_request_{long}_tokens": b * 1e6,
            "us_per_token": per_token * 1e6,
            "us_per_request_fixed": (a - short * per_token) * 1e6,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stream_client", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tokens", type=lambda s: [int(x) for x in s.split(",")], default=[4, 64])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--variants", type=lambda s: s.split(","), default=["sdk", "httpcore", "aiohttp"]
    )
    parser.add_argument(
        "--itl-ms",
        type=float,
        default=10.0,
        help="gap between tokens (10: each token is its own network read, as in a live stream)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if len(args.tokens) != 2 or args.tokens[0] >= args.tokens[1]:
        parser.error("--tokens takes two lengths, shorter first")
    tiers = [("fast", {"ttft_ms": 1, "itl_ms": args.itl_ms, "ttft_sigma": 0, "itl_sigma": 0})]
    upstream = Proc("sim-upstream", upstream_argv(0, tiers), r"on (http://\S+/v1)", Path.cwd())
    base_url = upstream.start().group(1)
    load_before = os.getloadavg()[0]
    try:
        from realtime_cascade import loop

        out = loop.run(run, args, base_url)
    finally:
        upstream.stop()
    load_after = os.getloadavg()[0]
    if args.json:
        print(msgspec.json.encode({"load": [load_before, load_after], "variants": out}).decode())
        return 0
    print(
        f"{args.rounds} rounds × {args.requests} requests, {args.concurrency} at a time, "
        f"{args.tokens[0]} and {args.tokens[1]} tokens {args.itl_ms:g} ms apart; "
        f"load average {load_before:.2f} → {load_after:.2f} on {os.cpu_count()} cores"
    )
    base = out.get("sdk")
    print(f"{'client':<10} {'µs/token':>9} {'µs/request':>11} {'token vs sdk':>13}")
    for name, row in out.items():
        ratio = f"{row['us_per_token'] / base['us_per_token']:.2f}" if base else "-"
        print(
            f"{name:<10} {row['us_per_token']:>9.1f} {row['us_per_request_fixed']:>11.1f} "
            f"{ratio:>13}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
