"""Admission and limits: keys, Origins, session cap, event rate, send queue, health, static
files, shutdown. Each violation is an error event or a proper HTTP status / close code, and
the server and other sessions keep working."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime_cascade import config as config_mod
from realtime_cascade.server.admission import TokenBucket
from realtime_cascade.server.app import RealtimeServer, authorized, origin_allowed

from .conftest import ServerFactory
from .helpers import BOOK, HARD, Raw, raw, text_of, user_item

pytestmark = pytest.mark.anyio


def url(server: RealtimeServer) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/realtime?model=default"


async def status_of(server: RealtimeServer, **kwargs: Any) -> int:
    try:
        async with connect(url(server), **kwargs) as ws:
            await ws.recv()
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def http_get(server: RealtimeServer, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --- pure pieces


def test_authorized_compares_every_key() -> None:
    assert authorized([], ())
    assert not authorized([], ("k",))
    assert authorized(["x", "k2"], ("k1", "k2"))
    assert not authorized(["k"], ("k1",))


def test_origin_rules() -> None:
    assert origin_allowed(None, "h:1", ())
    assert origin_allowed("http://h:1", "h:1", ())
    assert not origin_allowed("http://evil:1", "h:1", ())
    assert origin_allowed("http://a", "h:1", ("http://a",))
    assert not origin_allowed("http://h:1", "h:1", ("http://a",))
    assert origin_allowed("http://x", "h:1", ("*",))


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0.0)
    assert bucket.take(0.0) and bucket.take(0.0) and not bucket.take(0.0)
    assert bucket.take(0.5) and not bucket.take(0.5)


def test_exposure_needs_keys_or_consent(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config_mod.load()
    with pytest.raises(config_mod.ConfigError, match="allow_unauthenticated"):
        RealtimeServer(cfg, host="0.0.0.0").check_exposure()
    open_cfg = msgspec.structs.replace(
        cfg, server=msgspec.structs.replace(cfg.server, allow_unauthenticated=True)
    )
    with caplog.at_level(logging.WARNING):
        RealtimeServer(open_cfg, host="0.0.0.0").check_exposure()
    assert "no API keys" in caplog.text
    RealtimeServer(cfg, host="127.0.0.1").check_exposure()


# --- over the network


async def test_api_keys(make_server: ServerFactory) -> None:
    async with make_server(api_keys=("key-one", "key-two")) as server:
        assert await status_of(server) == 401
        assert await status_of(server, additional_headers={"Authorization": "Bearer nope"}) == 401
        ok = {"Authorization": "Bearer key-two"}
        assert await status_of(server, additional_headers=ok) == 101
        # browsers: the key rides in a subprotocol
        protocols: Any = ["realtime", "openai-insecure-api-key.key-one"]
        async with connect(url(server), subprotocols=protocols) as ws:
            assert ws.subprotocol == "realtime"
            assert "session.created" in str(await ws.recv())
        client = AsyncOpenAI(
            api_key="key-one", base_url=f"http://127.0.0.1:{server.port}/v1", max_retries=0
        )
        async with client.realtime.connect(model="default", max_retries=0) as conn:
            assert (await conn.recv()).type == "session.created"


async def test_origin_allow_list(make_server: ServerFactory) -> None:
    async with make_server(allowed_origins=("http://app.example",)) as server:
        assert await status_of(server, origin="http://app.example") == 101
        assert await status_of(server, origin="http://evil.example") == 403
        assert await status_of(server) == 101  # not a browser
    async with make_server() as server:
        same = f"http://127.0.0.1:{server.port}"
        assert await status_of(server, origin=same) == 101
        assert await status_of(server, origin="http://evil.example") == 403


async def test_max_sessions(make_server: ServerFactory) -> None:
    async with make_server(max_sessions=2) as server:
        async with raw(server), raw(server):
            assert await status_of(server) == 503
        await anyio.sleep(0.05)  # the handlers unregister as they return
        assert await status_of(server) == 101


async def test_event_rate_limit(make_server: ServerFactory) -> None:
    async with make_server(max_events_per_second=5.0) as server, raw(server) as c:
        for i in range(6):
            await c.send({"type": "session.update", "event_id": f"u{i}", "session": {}})
        kinds = [(await c.recv())["type"] for _ in range(6)]
        assert kinds == ["session.updated"] * 5 + ["error"]
        await anyio.sleep(0.5)
        await c.send({"type": "session.update", "session": {}})
        assert (await c.recv())["type"] == "session.updated"
        # keeps flooding: closed with 1008
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(100):
                await c.send({"type": "session.update", "session": {}})
            while True:
                await c.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_send_queue_overflow_closes_only_that_session(make_server: ServerFactory) -> None:
    # Events go straight to the socket while it takes them; a client that stops reading makes
    # it push back, and then events queue: a queue of 3 overflows on the 4th waiting event
    # (each a 200 kB item, so the socket's buffers fill quickly). The session is closed with
    # 1013; another session on the same server is unaffected.
    async with (
        make_server(send_queue_size=3, send_queue_bytes=0) as server,
        connect(url(server), max_size=None, max_queue=1) as slow,
    ):
        await slow.recv()  # session.created
        await slow.send(msgspec.json.encode(user_item("a" * 200_000, id="big")).decode())
        retrieve = '{"type": "conversation.item.retrieve", "item_id": "big"}'
        with pytest.raises(ConnectionClosed) as info:
            for _ in range(60):  # 12 MB asked for, more than the socket buffers hold
                await slow.send(retrieve)
            with anyio.fail_after(10):
                while True:  # reading it all now: the close frame comes after what was sent
                    await slow.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert "send queue full" in info.value.rcvd.reason
        async with connect(url(server), max_size=None) as ws:
            created = await Raw(ws).recv()
            assert created["type"] == "session.created"
            fine = Raw(ws)
            assert text_of(await fine.turn(BOOK))


async def test_healthz_and_static(make_server: ServerFactory, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("<h1>hi</h1>")
    (tmp_path / "app.js").write_text("1;")
    async with make_server(static_dir=str(tmp_path)) as server:
        status, body = await anyio.to_thread.run_sync(http_get, server, "/healthz")
        assert status == 200 and b'"ok"' in body
        status, body = await anyio.to_thread.run_sync(http_get, server, "/")
        assert (status, body) == (200, b"<h1>hi</h1>")
        status, body = await anyio.to_thread.run_sync(http_get, server, "/app.js")
        assert (status, body) == (200, b"1;")
        status, _ = await anyio.to_thread.run_sync(http_get, server, "/../pyproject.toml")
        assert status == 404
        status, _ = await anyio.to_thread.run_sync(http_get, server, "/missing.txt")
        assert status == 404


async def test_graceful_shutdown_cancels_cleanly(make_server: ServerFactory) -> None:
    async with make_server() as server, raw(server) as c:
        await c.send(user_item(HARD))
        await c.send({"type": "response.create"})
        await c.until("response.output_text.delta")
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.shutdown, 0.1)
            events = await c.until("response.done")
            done = events[-1]["response"]
            assert done["status"] == "cancelled"
            assert done["status_details"]["reason"] == "server_shutdown"
            with pytest.raises(ConnectionClosed) as info:
                await c.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
