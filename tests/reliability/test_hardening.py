"""Issue 12's attacks, each as a test: memory bounded, state freed, 4xx not 500, secrets out of
logs, hostile upstreams bounded. (bench.attack measures the same against a served process.)"""

from __future__ import annotations

import gc
import json
import logging
import socket
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime_cascade import config as config_mod
from realtime_cascade import wire
from realtime_cascade.providers.base import MalformedStream, UpstreamStatus
from realtime_cascade.providers.openai import ChatStreamDecoder
from realtime_cascade.server.admission import KeyLimits
from realtime_cascade.server.app import RealtimeServer, SendQueue, host_allowed, origin_allowed
from realtime_cascade.server.conversation import Conversation, ConversationLimits
from realtime_cascade.server.errors import SessionError
from realtime_cascade.server.redact import Redactor

from ..server.conftest import ServerFactory
from ..server.helpers import BOOK, raw, user_item

pytestmark = pytest.mark.anyio


@contextmanager
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def no_sessions(server: RealtimeServer) -> None:
    with anyio.fail_after(5):
        while server.session_count:  # noqa: ASYNC110 (the server has no event for it)
            await anyio.sleep(0.02)


# --- item 3: a closed session is freed by reference counting alone


async def test_closed_session_is_freed_without_a_collection(make_server: ServerFactory) -> None:
    async with make_server() as server:
        with no_collector():
            for how in ("turn", "mid_turn"):
                async with raw(server) as c:
                    if how == "turn":
                        await c.turn(BOOK)
                    else:
                        await c.send(user_item(BOOK))
                        await c.send({"type": "response.create"})
                        await c.until("response.output_text.delta")
                    live = next(iter(server._live.values()))
                    refs = [
                        weakref.ref(live.session),
                        weakref.ref(live.queue),
                        weakref.ref(live.ws),
                        weakref.ref(live.session.conversation),
                    ]
                    del live
                await no_sessions(server)
                await anyio.sleep(0.2)
                assert [r() is None for r in refs] == [True] * 4, how


# --- item 2: the send queue is bounded in bytes


def test_send_queue_overflows_on_bytes() -> None:
    q = SendQueue(1000, max_bytes=10_000)
    q.put(b"x" * 6000)
    assert not q.overflowed.is_set()
    q.put(b"x" * 6000)
    assert q.overflowed.is_set() and q.queued_bytes == 6000


async def test_slow_reader_of_large_items_is_closed(make_server: ServerFactory) -> None:
    async with make_server(send_queue_bytes=1 << 20) as server:
        async with connect(server.url(), max_size=None, max_queue=1) as ws:
            await ws.recv()
            big = user_item("a" * 200_000, id="big")
            await ws.send(json.dumps(big))
            with pytest.raises(ConnectionClosed) as caught:
                for _ in range(40):  # 8 MB asked, never read
                    await ws.send(
                        json.dumps({"type": "conversation.item.retrieve", "item_id": "big"})
                    )
                with anyio.fail_after(10):
                    while True:
                        await ws.recv()
                        await anyio.sleep(0.5)  # reading slowly
            assert caught.value.rcvd is None or caught.value.rcvd.code == 1013
        async with raw(server) as other:  # the server is fine
            assert (await other.turn(BOOK))[-1]["response"]["status"] == "completed"


async def test_slow_reader_that_keeps_sending_is_cut_off(make_server: ServerFactory) -> None:
    """A client that never reads but keeps sending: websockets' close would wait forever for
    the close frame to be written; the session must end within the close timeout anyway."""
    async with make_server(send_queue_bytes=1 << 20) as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        await stream.send(
            b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await stream.receive(4096)
        item = json.dumps(user_item("a" * 200_000, id="big")).encode()
        retrieve = b'{"type":"conversation.item.retrieve","item_id":"big"}'

        def frame(payload: bytes) -> bytes:
            n = len(payload)
            size = bytes([0x80 | 127]) + n.to_bytes(8, "big") if n > 125 else bytes([0x80 | n])
            return bytes([0x81]) + size + b"\0\0\0\0" + payload

        await stream.send(frame(item))
        cut_off = False
        async with anyio.create_task_group() as tg:

            async def keep_sending() -> None:
                nonlocal cut_off
                try:
                    while True:  # never reading
                        await stream.send(frame(retrieve))
                        await anyio.sleep(0.01)
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    cut_off = True

            tg.start_soon(keep_sending)
            with anyio.fail_after(10):  # 1013, then the 2 s close timeout: not forever
                while server.session_count:  # noqa: ASYNC110 (the server has no event for it)
                    await anyio.sleep(0.05)
                while not cut_off:  # noqa: ASYNC110 (the sender notices on its next write)
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
        await stream.aclose()
        async with raw(server) as other:
            assert (await other.turn(BOOK))[-1]["response"]["status"] == "completed"


# --- item 4: conversation caps


def test_conversation_limits() -> None:
    conv = Conversation(limits=ConversationLimits(max_items=10, max_item_bytes=500, max_bytes=1100))
    small = wire.MessageItem("i1", "user", [wire.InputText("hi")])
    conv.admit(small)
    conv.add(small)
    with pytest.raises(SessionError) as too_big:
        conv.admit(wire.MessageItem("i2", "user", [wire.InputText("x" * 600)]))
    assert too_big.value.code == "item_too_large"
    for k in range(2):
        item = wire.MessageItem(f"j{k}", "user", [wire.InputText("y" * 300)])
        conv.admit(item)
        conv.add(item)
    with pytest.raises(SessionError) as full:
        conv.admit(wire.MessageItem("k", "user", [wire.InputText("z")]))
    assert full.value.code == "conversation_limit"
    conv.delete("j0")
    conv.admit(wire.MessageItem("k", "user", [wire.InputText("z")]))  # room again


async def test_conversation_limit_is_an_error_event(make_server: ServerFactory) -> None:
    async with make_server(max_items=2) as server, raw(server) as c:
        await c.send(user_item("one"))
        await c.send(user_item("two"))
        await c.until("conversation.item.done")
        await c.until("conversation.item.done")
        await c.send(user_item("three"))
        error = (await c.until("error"))[-1]
        assert error["error"]["code"] == "conversation_limit"
        await c.send({"type": "response.create"})
        assert (await c.until("error"))[-1]["error"]["code"] == "conversation_limit"


# --- item 5: ping floods


async def test_ping_flood_is_closed(make_server: ServerFactory) -> None:
    async with make_server(max_events_per_second=50.0) as server:
        stream = await anyio.connect_tcp("127.0.0.1", server.port)
        await stream.send(
            b"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        ping = bytes([0x89, 0x80 | 125]) + b"\0\0\0\0" + b"p" * 125  # masked, 125 bytes
        sent = 0
        with anyio.move_on_after(10):
            try:
                while sent < 20_000:  # never reading a pong
                    await stream.send(ping * 10)
                    sent += 10
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass  # closed on us: what should happen
        await no_sessions(server)
        await stream.aclose()
        assert sent < 20_000  # cut off long before the flood ended
        async with raw(server) as other:
            assert (await other.turn(BOOK))[-1]["response"]["status"] == "completed"


# --- item 8: the per-key rate outlives sessions


def test_key_rate_survives_reconnects() -> None:
    keys = KeyLimits(0, events_per_second=5.0)
    taken = 0
    for _ in range(20):  # 20 "sessions" in the same instant, 10 events each
        assert keys.open("k")
        taken += sum(keys.take("k", 100.0) for _ in range(10))
        keys.close("k")
    assert taken == 5
    assert keys.take("k", 102.0)  # refilled with time


def test_key_store_forgets_refilled_idle_identities() -> None:
    keys = KeyLimits(0, events_per_second=1.0)
    for i in range(5000):
        keys.take(f"id{i}", float(i))  # each refilled a second later
    assert keys.buckets < 2100


# --- item 9: DNS rebinding


def test_keyless_server_takes_loopback_hosts_only() -> None:
    assert host_allowed("127.0.0.1:8765", (), loopback_only=True)
    assert host_allowed("localhost:8765", (), loopback_only=True)
    assert host_allowed("[::1]:8765", (), loopback_only=True)
    assert not host_allowed("evil.example:8765", (), loopback_only=True)
    assert not host_allowed(None, (), loopback_only=True)
    assert host_allowed("evil.example:8765", (), loopback_only=False)
    assert host_allowed("app.example", ("app.example",), loopback_only=True)
    origin, host = "http://evil.example:8765", "evil.example:8765"
    assert not origin_allowed(origin, host, (), loopback_only=True)
    assert origin_allowed(origin, host, (), loopback_only=False)
    assert origin_allowed("http://localhost:8765", "localhost:8765", (), loopback_only=True)


async def test_rebound_host_is_refused(make_server: ServerFactory) -> None:
    async with make_server() as server:
        for host, origin in (("evil.example", ""), ("evil.example", "http://evil.example")):
            request = (
                f"GET /v1/realtime HTTP/1.1\r\nHost: {host}:{server.port}\r\n"
                + (f"Origin: {origin}:{server.port}\r\n" if origin else "")
                + "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            assert await anyio.to_thread.run_sync(http_status, server.port, request) == 403


# --- item 10: idle sessions end


async def test_idle_session_is_closed(make_server: ServerFactory) -> None:
    async with make_server(idle_timeout_s=0.5) as server, raw(server) as c:
        error = (await c.until("error", within=5))[-1]
        assert error["error"]["code"] == "session_idle_timeout"
        with pytest.raises(ConnectionClosed) as closed:
            await c.recv(within=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


# --- item 11: no secrets in logs


async def test_debug_logs_hold_no_key_and_no_frames(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    key = "sk-test-" + "q" * 30
    caplog.set_level(logging.DEBUG)
    async with make_server(api_keys=(key,)) as server:
        headers = {"Authorization": f"Bearer {key}"}
        async with raw(server, additional_headers=headers) as c:
            await c.send(user_item("my secret plan is pineapples"))
            await c.until("conversation.item.done")
    served = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    text = "\n".join(r.getMessage() for r in served)
    assert "TEXT" in text  # frames were logged, by size
    assert key not in text and "pineapples" not in text


def test_redactor_keeps_sizes() -> None:
    r = Redactor(["configured-key-1"])
    assert r("< Authorization: Bearer abc") == "< Authorization: [redacted]"
    assert r("< TEXT '{\"a\": 1}' [8 bytes]") == "< TEXT [redacted] [8 bytes]"
    assert "configured-key-1" not in r("x configured-key-1 y")


# --- item 12: 4xx, never 500


def http_status(port: int, request: bytes) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        head = s.recv(4096)
    return int(head.split()[1])


@pytest.mark.parametrize("header", ["Authorization: Bearer a", "Origin: http://x", "Host: a"])
@pytest.mark.parametrize("path", ["/v1/realtime", "/metrics", "/healthz", "/"])
async def test_duplicate_headers_are_400(
    make_server: ServerFactory, header: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_server() as server:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\n{header}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        assert await anyio.to_thread.run_sync(http_status, server.port, request) == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_bad_static_paths_are_404(
    make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "index.html").write_text("hi")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    async with make_server(static_dir=str(tmp_path)) as server:
        for path in (b"/a\x00b", b"/" + b"x" * 300, b"/loop", b"/loop/x", b"/%00"):
            request = b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            status = await anyio.to_thread.run_sync(http_status, server.port, request)
            assert 400 <= status < 500, (path, status)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- item 13: hostile upstreams


def sse(*events: dict[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def tool_delta(index: int, args: str) -> dict[str, object]:
    call = {"index": index, "id": f"c{index}", "function": {"name": "f", "arguments": args}}
    return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}


def test_decoder_refuses_too_many_tool_calls() -> None:
    decoder = ChatStreamDecoder("t", max_tool_calls=4)
    with pytest.raises(MalformedStream, match="more than 4 tool calls"):
        decoder.feed(sse(*(tool_delta(i, "{}") for i in range(200))))


def test_decoder_refuses_endless_arguments() -> None:
    decoder = ChatStreamDecoder("t", max_reply_bytes=100_000)
    with pytest.raises(MalformedStream, match="exceeds"):
        for _ in range(10):
            decoder.feed(sse(tool_delta(0, "a" * 30_000)))
    decoder = ChatStreamDecoder("t", max_reply_bytes=100_000)
    with pytest.raises(MalformedStream, match="over"):  # one endless line, never a newline
        for _ in range(10):
            decoder.feed(b"data: " + b"a" * 30_000)


def test_decoder_clamps_usage_and_clips_errors() -> None:
    decoder = ChatStreamDecoder("t")
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": -5, "completion_tokens": -(10**12)}}
    chunks = decoder.feed(sse(finish, usage))
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (0, 0)
    with pytest.raises(UpstreamStatus) as caught:
        ChatStreamDecoder("t").feed(sse({"error": {"message": "m" * 100_000}}))
    assert len(caught.value.message) < 2000
    with pytest.raises(MalformedStream) as too_big:  # refused before it is decoded
        ChatStreamDecoder("t").feed(sse({"error": {"message": "m" * 8_000_000}}))
    assert len(too_big.value.message) < 2000


def test_defaults_are_documented_in_the_config() -> None:
    server = config_mod.load().server
    assert server.max_sessions_per_key > 0 and server.idle_timeout_s > 0
    assert server.send_queue_bytes > 0 and server.max_items > 0
    assert server.allowed_hosts == ()


async def test_server_survives_all_of_it(make_server: ServerFactory) -> None:
    """After the attacks above on one server, another client's turn still completes."""
    async with make_server(max_items=3, idle_timeout_s=30) as server:
        server_: RealtimeServer = server
        async with raw(server_) as c:
            for i in range(5):
                await c.send(user_item(f"item {i}"))
            assert (await c.until("error"))[-1]["error"]["code"] == "conversation_limit"
        async with raw(server_) as c:
            assert (await c.turn(BOOK))[-1]["response"]["status"] == "completed"
