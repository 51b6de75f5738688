"""Client faults: a client that vanishes mid-turn, one that stops reading, one that comes back,
and many of them in a row — every upstream stream is closed, every task and socket released."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.chaos import fault_params, http_provider
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.app import RealtimeServer

from .conftest import (
    BOOK,
    HARD,
    SLOW,
    ServerFactory,
    UpstreamFactory,
    fd_count,
    raw,
    settle,
    task_count,
    text_of,
    user_item,
)

pytestmark = pytest.mark.anyio


def upstream_profile(base_url: str, name: str = "http") -> CascadeProfile:
    params = fault_params(end_of_turn_ms=20000)
    return CascadeProfile(
        name,
        params,
        [http_provider(base_url, "light", None), http_provider(base_url, "strong", None)],
    )


@pytest.mark.parametrize("how", ["abort", "close"])
async def test_disconnect_mid_turn_cancels_the_turn_and_closes_upstream_streams(
    make_server: ServerFactory, make_upstream: UpstreamFactory, how: str
) -> None:
    async with make_upstream(SLOW) as up:
        profile = upstream_profile(up.base_url)
        async with make_server(profiles={"http": profile}) as server:
            async with raw(server, "http") as c:
                await c.send(user_item(HARD))
                await c.send({"type": "response.create"})
                await c.until("response.output_text.delta")
                assert up.open_streams >= 1  # the tier is mid-stream (60 ms a token)
                if how == "abort":
                    c.ws.transport.abort()  # no close frame: the TCP connection just dies
                else:
                    await c.ws.close()
            # the server notices, cancels the turn, and the upstream sees the hang-up
            assert await up.settle(within=3.0) == 0
            assert await settle(lambda: server.session_count == 0)
            # and it keeps serving
            async with raw(server, "http") as c2:
                events = await c2.turn(BOOK, within=20)
                assert events[-1]["response"]["status"] == "completed"
        await profile.aclose()


async def test_a_client_that_stops_reading_is_dropped_alone(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # The documented behaviour: the session's bounded send queue fills, the connection is
    # closed (1013; the close handshake cannot complete, so it is aborted after close_timeout),
    # and every other session carries on.
    async with make_server(send_queue_size=16) as server:
        big = "x" * 900_000
        url = server.url()
        async with connect(url, max_size=None, max_queue=1) as slow:
            await slow.recv()  # session.created; from now on this client reads nothing
            await slow.send(json.dumps(user_item(big, id="big")))
            for i in range(64):  # 58 MB of replies, far past socket buffers and the queue
                await slow.send(
                    json.dumps(
                        {
                            "type": "conversation.item.retrieve",
                            "item_id": "big",
                            "event_id": f"r{i}",
                        }
                    )
                )
            async with raw(server) as other:
                events = await other.turn(BOOK)
                assert events[-1]["response"]["status"] == "completed"
                assert await settle(lambda: server.session_count == 1, within=8.0)
                # the other session is still served after the slow one is gone
                events = await other.turn(BOOK)
                assert "book a table" in text_of(events)
            with pytest.raises(ConnectionClosed):
                with anyio.fail_after(10):
                    while True:
                        await slow.recv()
    assert "send queue full, closing (client too slow)" in caplog.text


async def test_reconnecting_starts_a_new_session_and_the_old_one_is_gone(
    server_default: RealtimeServer,
) -> None:
    server = server_default
    async with raw(server) as a:
        await a.send(user_item(BOOK, id="item_mine"))
        await a.until("conversation.item.done")
        events = await a.turn(BOOK)
        old_session = a.session["id"]
        old_response = events[-1]["response"]["id"]
    # "resume" attempts: same URL, or naming the old session, which is not honoured
    for query in ("", f"&session_id={old_session}"):
        async with connect(server.url() + query, max_size=None) as ws:
            created = json.loads(await ws.recv())
            assert created["type"] == "session.created"
            assert created["session"]["id"] != old_session
            await ws.send(
                json.dumps({"type": "conversation.item.retrieve", "item_id": "item_mine"})
            )
            error = json.loads(await ws.recv())
            assert error["error"]["code"] == "item_not_found"
            await ws.send(json.dumps({"type": "response.cancel", "response_id": old_response}))
            error = json.loads(await ws.recv())
            assert error["error"]["code"] == "response_cancel_not_active"


@pytest.fixture
async def server_default(make_server: ServerFactory) -> Any:
    async with make_server() as srv:
        yield srv


# --- no leaks: many sessions of every kind -----------------------------------------------------


async def _client(server: RealtimeServer, model: str, kind: str, rng: random.Random) -> None:
    try:
        async with raw(server, model) as c:
            match kind:
                case "complete":
                    events = await c.turn(rng.choice([BOOK, HARD]), within=20)
                    assert events[-1]["response"]["status"] == "completed"
                case "cancel":
                    await c.send(user_item(HARD))
                    await c.send({"type": "response.create"})
                    await c.until("response.created")
                    await anyio.sleep(rng.uniform(0, 0.2))
                    await c.send({"type": "response.cancel"})
                    events = await c.until("response.done", within=20)
                    assert events[-1]["response"]["status"] in ("cancelled", "completed")
                case "barge_in":
                    await c.send(user_item(HARD))
                    await c.send({"type": "response.create"})
                    await c.until("response.created")
                    await anyio.sleep(rng.uniform(0, 0.2))
                    await c.send(user_item(BOOK))
                    await c.until("response.done", within=20)
                case "abort":
                    await c.send(user_item(HARD))
                    await c.send({"type": "response.create"})
                    await c.until("response.created")
                    await anyio.sleep(rng.uniform(0, 0.2))
                    c.ws.transport.abort()
                case "garbage":
                    for frame in ("{", "[]", '{"type": 1}', b"\x00\xff", "x" * 1000):
                        await c.send(frame)
                        assert (await c.recv())["type"] == "error"
                case "idle":
                    pass
    except ConnectionClosed:
        assert kind == "abort"


KINDS = ("complete", "cancel", "barge_in", "abort", "garbage", "idle")


async def _many(server: RealtimeServer, model: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    limiter = anyio.CapacityLimiter(20)

    async def one(kind: str) -> None:
        async with limiter:
            await _client(server, model, kind, rng)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, KINDS[i % len(KINDS)])


async def test_task_and_socket_counts_return_to_their_baseline(make_server: ServerFactory) -> None:
    async with make_server() as server:
        await _many(server, "default", 12, seed=1)  # warm up: imports, caches, first-time allocs
        assert await settle(lambda: server.session_count == 0)
        await anyio.sleep(0.1)
        tasks, fds = task_count(), fd_count()
        await _many(server, "default", 120, seed=2)
        assert await settle(lambda: server.session_count == 0)
        assert await settle(lambda: task_count() <= tasks), (task_count(), tasks)
        assert await settle(lambda: fd_count() <= fds), (fd_count(), fds)


async def test_no_task_or_upstream_stream_leaks_over_http(
    make_server: ServerFactory, make_upstream: UpstreamFactory
) -> None:
    async with make_upstream() as up:
        profile = upstream_profile(up.base_url)
        async with make_server(profiles={"http": profile}) as server:
            await _many(server, "http", 12, seed=3)
            assert await settle(lambda: server.session_count == 0)
            await anyio.sleep(0.1)

            # The sim runs one task per client connection; idle keep-alive connections in the
            # tiers' pools are reused, not leaked (the pool grows to the peak concurrency, at
            # most 20 here), so their tasks are counted apart.
            def others() -> int:
                return task_count() - up.upstream.open_connections

            tasks = others()
            await _many(server, "http", 90, seed=4)
            assert await settle(lambda: server.session_count == 0)
            assert await up.settle() == 0
            assert await settle(lambda: others() <= tasks), (others(), tasks)
            assert up.upstream.open_connections <= 2 * 20  # two tiers, 20 sessions at a time
        await profile.aclose()
