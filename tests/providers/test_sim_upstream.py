"""sim-upstream as an HTTP server: the OpenAI shapes (checked with the SDK's own parser),
faults, and robustness against malformed HTTP."""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time

import anyio
import httpx2
import msgspec
import openai
import pytest

from realtime_cascade.cli.sim_upstream import add_sim_upstream_parser, main, parse_profile
from realtime_cascade.providers.base import Message, TierRequest
from realtime_cascade.providers.sim import SCRIPTS, SimProfile, SimStep, schedule
from realtime_cascade.providers.sim_upstream import (
    Clock,
    Fault,
    FaultError,
    SimUpstream,
    StreamClock,
    parse_fault,
    serve_sim_upstream,
    shapes,
)

from .conftest import FAST, RunningUpstream

TEXT = "Book a table for two at 7pm tonight."


def client(sim: RunningUpstream) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test", base_url=sim.base_url, max_retries=0, timeout=5)


def scheduled(model: str, text: str = TEXT) -> list[str]:
    request = TierRequest((Message("user", text),))
    return [s.chunk.text for s in schedule(FAST[model], model, SCRIPTS["generic"], request)]


@pytest.mark.anyio
async def test_models(sim: RunningUpstream) -> None:
    async with client(sim) as c:
        models = await c.models.list()
        assert [m.id for m in models.data] == ["light", "strong", "slow"]
        assert (await c.models.retrieve("strong")).id == "strong"
        with pytest.raises(openai.NotFoundError):
            await c.models.retrieve("huge")


@pytest.mark.anyio
async def test_stream_parses_with_the_sdk_itself(sim: RunningUpstream) -> None:
    """The SSE shape is the OpenAI one: the SDK's pydantic models accept every chunk."""
    async with client(sim) as c:
        stream = await c.chat.completions.create(
            model="light",
            messages=[{"role": "user", "content": TEXT}],
            stream=True,
            logprobs=True,
            top_logprobs=2,
            stream_options={"include_usage": True},
        )
        text, entries, finish, usage = [], [], None, None
        async for chunk in stream:
            assert chunk.object == "chat.completion.chunk" and chunk.model == "light"
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text.append(choice.delta.content or "")
                if choice.logprobs is not None and choice.logprobs.content:
                    entries.extend(choice.logprobs.content)
                finish = choice.finish_reason or finish
    want = scheduled("light")
    assert "".join(text) == "".join(want)
    assert [e.token for e in entries] == want[:-1]
    assert all(len(e.top_logprobs) == 2 for e in entries)
    # The chosen token is among its own alternatives (when it ranks in the top 2).
    assert any(e.token in [t.token for t in e.top_logprobs] for e in entries)
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == len(want) - 1


@pytest.mark.anyio
async def test_non_streaming_completion(sim: RunningUpstream) -> None:
    async with client(sim) as c:
        done = await c.chat.completions.create(
            model="strong", messages=[{"role": "user", "content": TEXT}], logprobs=True
        )
    assert done.object == "chat.completion"
    assert done.choices[0].message.content == "".join(scheduled("strong"))
    assert done.choices[0].finish_reason == "stop"
    assert done.choices[0].logprobs is not None and done.choices[0].logprobs.content
    assert done.usage is not None and done.usage.completion_tokens == len(scheduled("strong")) - 1


@pytest.mark.anyio
async def test_non_streaming_tool_call(sim: RunningUpstream) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    async with client(sim) as c:
        done = await c.chat.completions.create(
            model="light",
            messages=[{"role": "user", "content": "lookup my booking"}],
            tools=[tool],  # type: ignore[list-item]
        )
    calls = done.choices[0].message.tool_calls
    assert done.choices[0].finish_reason == "tool_calls" and calls
    call = calls[0]
    assert call.type == "function" and call.function.name == "lookup"
    assert msgspec.json.decode(call.function.arguments) == {"query": "my booking"}


@pytest.mark.anyio
async def test_first_token_follows_the_schedule_and_ttft_fault() -> None:
    profiles = {"m": SimProfile(ttft_ms=150, ttft_sigma=0.0, itl_ms=1, itl_sigma=0.0)}
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_sim_upstream, "127.0.0.1", 0, profiles)
        async with openai.AsyncOpenAI(
            api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        ) as c:
            for extra, low, high in [({}, 0.14, 1.0), ({"sim_fault": "ttft_ms:350"}, 0.34, 1.5)]:
                start = time.perf_counter()
                stream = await c.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": TEXT}],
                    stream=True,
                    extra_body=extra,
                )
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].delta.content:
                        break
                elapsed = time.perf_counter() - start
                await stream.close()
                assert low <= elapsed <= high
        tg.cancel_scope.cancel()


# --- the stream's clock --------------------------------------------------------------------


def test_absolute_clock_keeps_lateness_from_accumulating() -> None:
    delays = [0.15, *([0.015] * 20), 0.0]
    clock = StreamClock("absolute")
    now = 100.0
    clock.wait(0.0, now)  # the stream starts
    due = 0.0
    for k, delay in enumerate(delays):
        due += delay
        # every step's sleep starts 2 ms late (a slow send, a late wake-up) ...
        now += 0.002 if k else 0.0
        got = clock.wait(delay, now)
        # ... and is shortened by exactly that: the lateness never accumulates
        assert got == pytest.approx(max(0.0, delay - (0.002 if k else 0.0)))
        now += got
    assert now - 100.0 == pytest.approx(due, abs=0.0021)


def test_absolute_clock_never_asks_for_a_negative_sleep_and_catches_up() -> None:
    clock = StreamClock("absolute")
    clock.wait(0.0, 0.0)
    assert clock.wait(0.01, 0.05) == 0.0  # 40 ms late (a stall): no sleep ...
    assert clock.wait(0.01, 0.05) == 0.0  # ... and the next step is due already too
    assert clock.wait(0.05, 0.05) == pytest.approx(0.02)  # back on schedule: due at 70 ms


def test_relative_clock_sleeps_each_gap() -> None:
    clock = StreamClock("relative")
    assert clock.wait(0.0, 0.0) == 0.0
    assert clock.wait(0.015, 5.0) == 0.015
    assert clock.wait(-1.0, 6.0) == 0.0
    with pytest.raises(ValueError, match="clock"):
        SimUpstream(FAST, clock="wall")  # type: ignore[arg-type]


@pytest.mark.anyio
@pytest.mark.parametrize("clock", ["absolute", "relative"])
async def test_slow_sends_delay_one_token_only_on_the_absolute_clock(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    """Each token's send blocks the loop for 4 ms: on the absolute clock the reply still ends
    on schedule (give or take one send); on the relative clock every send pushes the rest."""
    profile = SimProfile(ttft_ms=20, ttft_sigma=0.0, itl_ms=5, itl_sigma=0.0)
    request = TierRequest((Message("user", TEXT),))
    steps = schedule(profile, "m", SCRIPTS["generic"], request)
    scheduled_s = sum(s.delay for s in steps)
    block_s = 0.004
    stock = shapes.ChatReply.step_chunk

    def slow_step_chunk(self: shapes.ChatReply, step: SimStep) -> bytes:
        time.sleep(block_s)  # a slow send: blocks the event loop
        return stock(self, step)

    monkeypatch.setattr(shapes.ChatReply, "step_chunk", slow_step_chunk)
    upstream = SimUpstream({"m": profile}, clock=clock)
    async with anyio.create_task_group() as tg:
        port = await tg.start(upstream.serve, "127.0.0.1", 0)
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", timeout=5) as http:
            body = {"model": "m", "messages": [{"role": "user", "content": TEXT}], "stream": True}
            await http.get("/models")  # the connection is open before the clock starts
            start = time.perf_counter()
            response = await http.post("/chat/completions", json=body)
            elapsed = time.perf_counter() - start
        tg.cancel_scope.cancel()
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    late = elapsed - scheduled_s
    tokens = len(steps) - 1
    if clock == "absolute":
        assert late < 2 * block_s + 0.03, (late, tokens)
    else:
        assert late > 0.8 * tokens * block_s, (late, tokens)


# --- malformed HTTP never crashes the server ------------------------------------------------


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Sends raw bytes, returns everything the server answers until it closes."""
    with anyio.fail_after(3):
        async with await anyio.connect_tcp("127.0.0.1", port) as sock:
            await sock.send(data)
            out = b""
            try:
                while b"\r\n\r\n" not in out or not out.endswith(b"}"):
                    out += await sock.receive()
            except anyio.EndOfStream:
                pass
            return out


def post(body: bytes, path: str = "/v1/chat/completions", extra: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


def chat_body(**fields: object) -> bytes:
    return msgspec.json.encode(
        {"model": "light", "messages": [{"role": "user", "content": "hi"}], **fields}
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/models HTTP/9.9\r\n\r\n", 400),
        (b"GET /v1/models HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET /v1/models HTTP/1.1\r\nContent-Length: -4\r\n\r\n", 400),
        (b"\xff\xfe /v1 HTTP/1.1\r\n\r\n", 400),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 431),
        (b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (post(b"{not json"), 400),
        (post(b'{"model": "light"}'), 400),
        (post(chat_body(messages=[{"role": "wizard", "content": "hi"}])), 400),
        (post(chat_body(sim_fault="explode:3")), 400),
        (post(chat_body(model="huge")), 404),
        (post(b"{}", path="/v1/embeddings"), 404),
        (b"GET /v1/chat/completions HTTP/1.1\r\n\r\n", 405),
    ],
)
async def test_bad_requests_get_errors_and_the_server_lives_on(
    sim: RunningUpstream, request_bytes: bytes, status: int
) -> None:
    answer = await raw_exchange(sim.port, request_bytes)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    body = msgspec.json.decode(answer.split(b"\r\n\r\n", 1)[1])
    assert isinstance(body["error"]["message"], str)
    async with client(sim) as c:
        done = await c.chat.completions.create(
            model="light", messages=[{"role": "user", "content": "still there?"}]
        )
    assert done.choices[0].message.content


@pytest.mark.anyio
async def test_half_requests_and_resets_do_not_crash(sim: RunningUpstream) -> None:
    with anyio.fail_after(3):
        for data in [b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 50\r\n\r\n{", b"GE"]:
            async with await anyio.connect_tcp("127.0.0.1", sim.port) as sock:
                await sock.send(data)
    answer = await raw_exchange(sim.port, b"GET /v1/models HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ")


@pytest.mark.anyio
async def test_keep_alive_serves_several_requests_on_one_connection(sim: RunningUpstream) -> None:
    async with httpx2.AsyncClient(base_url=sim.base_url) as http:
        for _ in range(3):
            r = await http.post(
                "/chat/completions",
                json={
                    "model": "light",
                    "stream": True,
                    "messages": [{"role": "user", "content": TEXT}],
                },
            )
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.text.endswith("data: [DONE]\n\n")
        assert {e.headers.get("connection") for e in sim.upstream.received} == {"keep-alive"}


# --- faults ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_server_wide_fault_and_per_request_override() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_sim_upstream, "127.0.0.1", 0, FAST, "status:503")
        async with openai.AsyncOpenAI(
            api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        ) as c:
            with pytest.raises(openai.InternalServerError) as info:
                await c.chat.completions.create(
                    model="light", messages=[{"role": "user", "content": "hi"}]
                )
            assert info.value.status_code == 503
            assert info.value.response.headers["retry-after"] == "1"
            # A per-request fault replaces the server's (an empty one: no fault).
            done = await c.chat.completions.create(
                model="light",
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"sim_fault": ""},
            )
            assert done.choices[0].message.content
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_keepalive_fault_sends_only_comments(sim: RunningUpstream) -> None:
    got = b""
    async with httpx2.AsyncClient(base_url=sim.base_url) as http:
        body = {"model": "light", "stream": True, "messages": [], "sim_fault": "keepalive:10"}
        async with http.stream("POST", "/chat/completions", json=body) as r:
            with anyio.move_on_after(0.1):
                async for piece in r.aiter_bytes():
                    got += piece
    assert got and set(got.split(b"\n\n")) <= {b": ping", b""}
    await sim.wait_streams_closed()


def test_parse_fault() -> None:
    assert parse_fault("status:429,retry_after:2") == Fault(status=429, retry_after=2.0)
    assert parse_fault("keepalive") == Fault(keepalive_ms=100.0)
    assert parse_fault(" stall_after:3 , ttft_ms:50 ") == Fault(stall_after=3, ttft_ms=50.0)
    assert parse_fault("drop_after:5,stall_after:2").cut() == (2, "stall")
    assert parse_fault("") == Fault()
    for bad in ["status:200", "status:x", "explode", "content_type:1", "drop_after"]:
        with pytest.raises(FaultError):
            parse_fault(bad)


def test_parse_profile() -> None:
    name, profile = parse_profile("name=light,ttft_ms=150,itl_ms=15,skill=0.5")
    assert name == "light" and profile == SimProfile(ttft_ms=150, itl_ms=15, skill=0.5)
    assert parse_profile("fast,skill=0.2") == ("fast", SimProfile(skill=0.2))
    for bad in ["ttft_ms=3", "x,nonsense=1", "x,skill=high", "x,=1"]:
        with pytest.raises(ValueError):
            parse_profile(bad)


def test_cli_parser_hookup() -> None:
    parser = argparse.ArgumentParser(prog="realtime-cascade")
    add_sim_upstream_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["sim-upstream", "--port", "0", "--profile", "name=a,skill=0.3", "--fault", "status:500"]
    )
    assert (args.command, args.port, args.host) == ("sim-upstream", 0, "127.0.0.1")
    assert args.profile == ["name=a,skill=0.3"] and args.fault == "status:500"
    assert args.clock == "absolute"
    assert parser.parse_args(["sim-upstream", "--clock", "relative"]).clock == "relative"
    assert main(["--profile", "nameless=", "--port", "0"]) == 2
    assert main(["--fault", "explode", "--port", "0"]) == 2


def test_cli_serves() -> None:
    """``python -m …sim_upstream --port 0`` binds, says where, and answers."""
    with subprocess.Popen(
        [sys.executable, "-m", "realtime_cascade.cli.sim_upstream", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()  # the first line: "sim-upstream on http://H:P/v1 …"
            assert "sim-upstream on http://127.0.0.1:" in line, line
            base_url = line.split()[2]
            models = httpx2.get(f"{base_url}/models", timeout=5).json()
            assert [m["id"] for m in models["data"]] == ["light", "strong"]
        finally:
            proc.terminate()
            proc.wait(timeout=5)


def test_parse_hostile_faults() -> None:
    assert parse_fault("tool_calls:300") == Fault(tool_calls=300)
    assert parse_fault("usage:-5,error_bytes:100") == Fault(usage=-5, error_bytes=100)
    assert parse_fault("arg_chunk_bytes:0").arg_chunk_bytes == 1  # at least one byte
    assert parse_fault("error_bytes:99999999999").error_bytes == 64 << 20  # bounded
    for bad in ["tool_calls:x", "usage:", "arg_chunk_bytes"]:
        with pytest.raises(FaultError):
            parse_fault(bad)


async def _sse(sim: RunningUpstream, fault: str, limit: int) -> list[dict[str, object]]:
    """The first ``limit`` bytes of a faulted stream, as its decoded data events."""
    got = b""
    body = {
        "model": "light",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "hi"}],
        "sim_fault": fault,
    }
    async with (
        httpx2.AsyncClient(base_url=sim.base_url) as http,
        http.stream("POST", "/chat/completions", json=body) as r,
    ):
        async for piece in r.aiter_bytes():
            got += piece
            if len(got) >= limit:
                break
    events = []
    for block in got.split(b"\n\n"):
        if block.startswith(b"data: {"):
            with contextlib.suppress(msgspec.DecodeError):  # the cut at ``limit`` bytes
                events.append(msgspec.json.decode(block[6:]))
    return events


@pytest.mark.anyio
async def test_hostile_stream_faults(sim: RunningUpstream) -> None:
    events = await _sse(sim, "tool_calls:300", 1 << 30)
    calls = {
        c["index"]
        for e in events
        for ch in e["choices"]  # type: ignore[attr-defined]
        for c in ch["delta"].get("tool_calls", [])
    }
    assert calls == set(range(300))
    events = await _sse(sim, "usage:-7", 1 << 30)
    assert [e["usage"] for e in events if e.get("usage")] == [
        {"prompt_tokens": -7, "completion_tokens": -7, "total_tokens": -14}
    ]
    events = await _sse(sim, "arg_chunk_bytes:100000", 3_000_000)  # endless: read 3 MB
    args = [
        c["function"]["arguments"]
        for e in events
        for ch in e["choices"]  # type: ignore[attr-defined]
        for c in ch["delta"].get("tool_calls", [])
    ]
    assert len(args) >= 20 and set(args[1:]) == {"a" * 100_000}
    events = await _sse(sim, "error_after:1,error_bytes:50000", 1 << 30)
    errors = [e["error"] for e in events if "error" in e]
    assert len(errors[0]["message"]) == 50_000  # type: ignore[index]
    await sim.wait_streams_closed()


@pytest.mark.anyio
async def test_huge_error_body_fault(sim: RunningUpstream) -> None:
    async with httpx2.AsyncClient(base_url=sim.base_url) as http:
        body = {"model": "light", "messages": [], "sim_fault": "status:500,error_bytes:2000000"}
        r = await http.post("/chat/completions", json=body)
    assert r.status_code == 500 and len(r.json()["error"]["message"]) == 2_000_000
