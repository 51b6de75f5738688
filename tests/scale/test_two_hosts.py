"""Two machines, simulated: two ``serve`` processes on different ports share one Redis behind a
real load balancer (HAProxy, WebSocket proxying, round robin). Per-key limits hold across the
two hosts, a turn streams through the balancer, and losing a host loses only its sessions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import Redis, Serve, start_haproxy, start_serve
from .test_workers import KEY, _flood, config, health

pytestmark = pytest.mark.anyio


@pytest.fixture
def two_hosts(tmp_path: Path, redis_server: Redis) -> Iterator[tuple[Serve, Serve, int]]:
    cfg = config(max_sessions_per_key=2, max_events_per_second_per_key=5.0)
    a = start_serve(tmp_path, cfg, redis_url=redis_server.url)
    b = start_serve(tmp_path, cfg, redis_url=redis_server.url)
    lb, port = start_haproxy(tmp_path, [a.port, b.port])
    try:
        yield a, b, port
    finally:
        lb.terminate()
        lb.wait(10)
        for s in (a, b):
            if s.proc.poll() is None:
                s.stop()


def _open(port: int) -> connect:
    return connect(
        f"ws://127.0.0.1:{port}/v1/realtime?model=default",
        additional_headers={"Authorization": f"Bearer {KEY}"},
    )


async def test_a_key_session_cap_holds_across_hosts_behind_the_balancer(
    two_hosts: tuple[Serve, Serve, int],
) -> None:
    a, b, port = two_hosts
    async with _open(port) as one, _open(port) as two:
        for ws in (one, two):
            assert json.loads(await ws.recv())["type"] == "session.created"
        # round robin put one session on each host; the cap of 2 counts both
        assert (health(a.port)["sessions"], health(b.port)["sessions"]) == (1, 1)
        with pytest.raises(InvalidStatus) as refused:
            async with _open(port):
                pass
        assert refused.value.response.status_code == 429
        # a turn streams through the balancer
        await one.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "What is 2 + 2?"}],
                    },
                }
            )
        )
        await one.send(json.dumps({"type": "response.create"}))
        kinds: list[str] = []
        with anyio.fail_after(20):
            while not kinds or kinds[-1] != "response.done":
                kinds.append(json.loads(await one.recv())["type"])
        assert "response.output_text.delta" in kinds
    # both closed: the key's slots are free again, on either host
    async with _open(port) as again:
        assert json.loads(await again.recv())["type"] == "session.created"


async def test_the_event_rate_of_a_key_holds_across_hosts(
    two_hosts: tuple[Serve, Serve, int],
) -> None:
    _, _, port = two_hosts
    rate = 5.0
    # one client reconnecting every second: round robin alternates the hosts (one connection
    # at a time: a closing session holds its slot of the cap of 2 until the server has seen
    # the close)
    accepted, refused = await _flood(port, 3.0, per_second=20.0, conns=1)
    assert accepted <= rate + rate * 3.5, accepted
    assert accepted >= rate * 3.0 * 0.6 and refused > 0, (accepted, refused)


async def test_losing_a_host_loses_only_its_sessions(two_hosts: tuple[Serve, Serve, int]) -> None:
    a, b, port = two_hosts
    async with _open(port) as one, _open(port) as two:
        for ws in (one, two):
            json.loads(await ws.recv())
        assert (health(a.port)["sessions"], health(b.port)["sessions"]) == (1, 1)
        # graceful: it drains, closes its session (1001) and exits; waited for off the loop, so
        # the clients here can answer the close handshake meanwhile
        assert await anyio.to_thread.run_sync(a.stop) == 0
        closed = 0
        for ws in (one, two):
            try:
                await ws.send(json.dumps({"type": "session.update", "session": {}}))
                with anyio.fail_after(5):
                    while json.loads(await ws.recv())["type"] != "session.updated":
                        pass
            except ConnectionClosed:
                closed += 1
        assert closed == 1  # the session on b lives on
    # the balancer's health check (every 500 ms) takes a out; new sessions all go to b
    for _ in range(75):
        try:
            async with _open(port) as ws:
                assert json.loads(await ws.recv())["type"] == "session.created"
                break
        except (InvalidStatus, OSError, EOFError, ConnectionClosed):
            await anyio.sleep(0.2)
    for _ in range(4):
        async with _open(port) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
