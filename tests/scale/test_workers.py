"""``serve --workers 2`` as real processes: both workers serve the one port, a crashed worker is
replaced, SIGTERM stops every worker, and a key's event rate holds across workers and
reconnects exactly when the state is shared (and does not without it: the test can fail)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from importlib import resources
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

from .conftest import Redis, start_serve

pytestmark = pytest.mark.anyio

KEY = "sk-scale-test"


def config(**server: object) -> str:
    base = resources.files("realtime_cascade").joinpath("default.toml").read_text()
    fields = "\n".join(f"{k} = {json.dumps(v)}" for k, v in server.items())
    return f'{base}\n[server]\napi_keys = ["{KEY}"]\n{fields}\n'


def health(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        body: dict[str, object] = json.loads(r.read())
        return body


def workers_seen(port: int, tries: int = 60) -> set[int]:
    # Each request is a new connection: SO_REUSEPORT hashes it to one of the workers.
    return {int(str(health(port)["worker"])) for _ in range(tries)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by the supervisor) is not serving
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_two_workers_share_the_port_restart_on_crash_and_stop_together(
    tmp_path: Path, redis_server: Redis
) -> None:
    srv = start_serve(tmp_path, config(), redis_url=redis_server.url, workers=2)
    try:
        first = workers_seen(srv.port)
        assert len(first) == 2, first
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        now_seen: set[int] = set()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                now_seen = workers_seen(srv.port, 20)
            except OSError:
                continue
            if len(now_seen) == 2 and victim not in now_seen:
                break
        assert len(now_seen) == 2 and victim not in now_seen, now_seen
        assert srv.stop() == 0
        for pid in first | now_seen:
            assert not alive(pid), pid
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


async def _flood(port: int, seconds: float, per_second: float, conns: int) -> tuple[int, int]:
    """``conns`` concurrent clients, each reconnecting every ~second, together sending
    ``per_second`` session.update events a second; returns (accepted, refused)."""
    accepted = refused = 0
    end = time.monotonic() + seconds

    async def client() -> None:
        nonlocal accepted, refused
        while time.monotonic() < end:
            async with connect(
                f"ws://127.0.0.1:{port}/v1/realtime?model=default",
                additional_headers={"Authorization": f"Bearer {KEY}"},
            ) as ws:
                json.loads(await ws.recv())  # session.created
                reconnect_at = min(end, time.monotonic() + 1.0)
                while time.monotonic() < reconnect_at:
                    await ws.send(json.dumps({"type": "session.update", "session": {}}))
                    event = json.loads(await ws.recv())
                    if event["type"] == "session.updated":
                        accepted += 1
                    else:
                        assert event["error"]["code"] == "rate_limit_exceeded", event
                        refused += 1
                    await anyio.sleep(conns / per_second)

    async with anyio.create_task_group() as tg:
        for _ in range(conns):
            tg.start_soon(client)
    return accepted, refused


async def test_a_key_limited_to_5_events_a_second_gets_5_across_two_workers(
    tmp_path: Path, redis_server: Redis
) -> None:
    rate, seconds = 5.0, 4.0
    cfg = config(max_events_per_second_per_key=rate)
    shared = start_serve(tmp_path, cfg, redis_url=redis_server.url, workers=2)
    try:
        assert len(workers_seen(shared.port)) == 2
        t0 = time.monotonic()
        accepted, refused = await _flood(shared.port, seconds, per_second=25.0, conns=6)
        elapsed = time.monotonic() - t0
    finally:
        shared.stop()
    # A token bucket (burst = rate) lets through at most burst + rate × elapsed, however the
    # events are spread over workers and connections.
    assert accepted <= rate + rate * elapsed, (accepted, elapsed)
    assert accepted >= rate * seconds * 0.6, accepted  # and it is not refusing everything
    assert refused > accepted

    # The control: the same two workers with no shared state each keep their own bucket.
    alone = start_serve(tmp_path, cfg, redis_url=None, workers=2)
    try:
        assert len(workers_seen(alone.port)) == 2
        t0 = time.monotonic()
        accepted_alone, _ = await _flood(alone.port, seconds, per_second=25.0, conns=6)
        elapsed_alone = time.monotonic() - t0
    finally:
        alone.stop()
    assert accepted_alone > rate + rate * elapsed_alone, accepted_alone
