"""Nobody let in who should not be, nothing handed out that should not be: exposure, keys,
per-key limits, Origins, upstream secrets, and sessions that cannot touch each other."""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bench.chaos import fault_params
from realtime_cascade.providers.openai import OpenAIProvider, OpenAIProviderConfig
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server import admission
from realtime_cascade.server.app import RealtimeServer
from realtime_cascade.wire import schema

from .conftest import BOOK, HARD, ServerFactory, UpstreamFactory, raw, user_item

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def status_of(server: RealtimeServer, **kwargs: Any) -> int:
    try:
        async with connect(server.url(), **kwargs) as ws:
            await ws.recv()
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def bearer(key: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Bearer {key}"}}


# --- exposure and keys ---------------------------------------------------------------------------


def test_a_non_loopback_bind_without_keys_refuses_to_start() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "realtime_cascade", "serve", "--host", "0.0.0.0", "--port", "0"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, cwd=ROOT)
    assert result.returncode == 2
    assert "refusing to serve 0.0.0.0 without api_keys" in result.stderr


def test_keys_are_matched_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # admission looks it up per call
    keys = ("alpha-key", "beta-key-that-is-longer", "gamma")
    assert admission.matched_key(["nope", "beta-key-that-is-longer"], keys) == keys[1]
    # every offered key against every configured one, no early exit, equal-length digests
    assert len(calls) == 2 * 3
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}
    calls.clear()
    assert admission.matched_key(["alpha-key"], keys) == "alpha-key"
    assert len(calls) == 3
    assert admission.matched_key([], keys) is None
    assert admission.matched_key(["x"], ()) is None
    # identities never carry the key itself
    ident = admission.client_identity(["gamma"], keys, ("10.0.0.1", 5))
    assert ident is not None and "gamma" not in ident and ident.startswith("key_")
    assert admission.client_identity(["bad"], keys, None) is None
    assert admission.client_identity([], (), ("10.0.0.1", 5)) == "addr_10.0.0.1"


async def test_per_key_session_cap(make_server: ServerFactory) -> None:
    async with make_server(api_keys=("k-one", "k-two"), max_sessions_per_key=2) as server:
        assert await status_of(server) == 401
        async with raw(server, **bearer("k-one")), raw(server, **bearer("k-one")):
            assert await status_of(server, **bearer("k-one")) == 429
            assert await status_of(server, **bearer("k-two")) == 101  # another key: unaffected
        await anyio.sleep(0.05)  # the handlers unregister as they return
        assert await status_of(server, **bearer("k-one")) == 101


async def test_per_key_event_rate_is_shared_by_the_keys_sessions(
    make_server: ServerFactory,
) -> None:
    keys = ("k-one", "k-two")
    async with (
        make_server(api_keys=keys, max_events_per_second_per_key=6.0) as srv,
        raw(srv, **bearer("k-one")) as a,
        raw(srv, **bearer("k-one")) as b,
        raw(srv, **bearer("k-two")) as c,
    ):
        kinds: list[str] = []
        for client in (a, b):  # 4 + 4 events of one key: 8 > 6
            for _ in range(4):
                await client.send({"type": "session.update", "session": {}})
            for _ in range(4):
                event = await client.recv()
                kinds.append(event["type"] if event["type"] != "error" else event["error"]["code"])
        # a burst of 6, refilled at 6/s: of 8 events sent within moments, 1-2 are refused
        assert kinds.count("rate_limit_exceeded") >= 1
        assert kinds.count("session.updated") >= 6
        for _ in range(4):  # the other key has its own bucket
            await c.send({"type": "session.update", "session": {}})
        assert [(await c.recv())["type"] for _ in range(4)] == ["session.updated"] * 4


async def test_origin_checks(make_server: ServerFactory) -> None:
    async with make_server() as server:
        same = f"http://127.0.0.1:{server.port}"
        assert await status_of(server, origin=same) == 101
        for origin in (
            "null",
            "http://evil.example",
            f"http://127.0.0.1:{server.port}.evil.example",
            f"http://evil.example/{same}",
            f"https://127.0.0.1:{server.port}@evil.example",
        ):
            assert await status_of(server, origin=origin) == 403, origin
    async with make_server(allowed_origins=("https://app.example",)) as server:
        assert await status_of(server, origin="https://app.example") == 101
        assert await status_of(server, origin="http://app.example") == 403
        assert await status_of(server, origin="https://app.example.evil") == 403


# --- upstream secrets stay secret -----------------------------------------------------------

SECRET_ENV = "RC_RELIABILITY_UPSTREAM_KEY"
LEAK_FAULTS = ("status:401", "status:500", "error_after:2", "malformed_after:1", "content_type")


def secret_profile(base_url: str, fault: str) -> CascadeProfile:
    def provider(model: str) -> OpenAIProvider:
        cfg = OpenAIProviderConfig(
            base_url=base_url, model=model, api_key_env=SECRET_ENV, extra_body={"sim_fault": fault}
        )
        return OpenAIProvider(model, cfg)

    return CascadeProfile("secret", fault_params(), [provider("light"), provider("strong")])


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body


async def test_upstream_keys_never_appear_in_logs_traces_errors_or_the_schema(
    make_server: ServerFactory,
    make_upstream: UpstreamFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    key = "sk-rel-" + secrets.token_hex(16)
    monkeypatch.setenv(SECRET_ENV, key)
    outputs: list[str] = []
    caplog.set_level(logging.DEBUG)
    async with make_upstream() as up:
        profiles = {f"p{i}": secret_profile(up.base_url, f) for i, f in enumerate(LEAK_FAULTS)}
        async with make_server(profiles=profiles) as server:
            for name in profiles:
                async with raw(server, name) as c:
                    events = await c.turn(BOOK)
                    assert events[-1]["type"] == "response.done"
                    outputs.extend(json.dumps(e) for e in events)
                    await c.send({"type": "conversation.item.retrieve", "item_id": "nope"})
                    outputs.append(json.dumps(await c.recv()))
            health = await anyio.to_thread.run_sync(
                http_get, f"http://127.0.0.1:{server.port}/healthz"
            )
            outputs.append(health.decode())
        # the upstream did receive it (so the check is not vacuous) …
        sent = [r.headers.get("authorization", "") for r in up.upstream.received]
        assert any(key in s for s in sent)
        for profile in profiles.values():
            provider = profile.providers[0]
            assert isinstance(provider, OpenAIProvider)
            outputs.append(repr(provider) + repr(provider.config))
            await profile.aclose()
    outputs.extend(b.decode() for b in schema.schemas().values())
    outputs.append(caplog.text)
    outputs.extend(str(r.exc_info) for r in caplog.records if r.exc_info)
    # … and nothing we produced carries it, or a recognisable part of it
    for text in outputs:
        assert key not in text
        assert key[7:23] not in text


def test_the_cli_never_prints_the_upstream_key(tmp_path: Path) -> None:
    key = "sk-rel-" + secrets.token_hex(16)
    env = {**os.environ, SECRET_ENV: key, "PYTHONPATH": str(ROOT)}
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realtime_cascade",
            "sim-upstream",
            "--port",
            "0",
            "--fault",
            "status:401",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert upstream.stderr is not None
        banner = upstream.stderr.readline()
        port = int(banner.split("http://127.0.0.1:")[1].split("/")[0])
        config = tmp_path / "secret.toml"
        tiers = "\n".join(
            f"""
[[profiles.default.tiers]]
name = "{name}"
ttft_timeout_ms = 1000
provider.kind = "openai"
provider.base_url = "http://127.0.0.1:{port}/v1"
provider.model = "{name}"
provider.api_key_env = "{SECRET_ENV}"
"""
            for name in ("light", "strong")
        )
        config.write_text("[profiles.default]\n" + tiers)
        for extra in ([], ["--json"]):
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "realtime_cascade",
                    "ask",
                    "--config",
                    str(config),
                    HARD,
                    *extra,
                ],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                cwd=ROOT,
            )
            out = result.stdout + result.stderr
            assert "authentication failed" in out  # the 401 is reported …
            assert key not in out and key[7:23] not in out  # … without the key
    finally:
        upstream.terminate()
        upstream.wait(10)


# --- sessions are isolated ----------------------------------------------------------------------


async def test_a_session_cannot_read_cancel_or_edit_another_sessions_items(
    make_server: ServerFactory,
) -> None:
    async with make_server() as server, raw(server) as a, raw(server) as b:
        await a.send(user_item("my secret is 4242", id="secret_item"))
        added = await a.until("conversation.item.done")
        assert added[-1]["item"]["id"] == "secret_item"
        events = await a.turn(BOOK)
        assistant = next(e["item"]["id"] for e in events if e["type"] == "conversation.item.added")
        call_id = "call_of_a"
        await a.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call",
                    "name": "f",
                    "arguments": "{}",
                    "call_id": call_id,
                },
            }
        )
        await a.until("conversation.item.done")
        # A starts a long response; B tries everything against A's ids
        await a.send(user_item(HARD))
        await a.until("conversation.item.done")
        await a.send({"type": "response.create"})
        created = await a.until("response.created")
        a_response = created[-1]["response"]["id"]

        seen_by_b: list[dict[str, Any]] = []

        async def attempt(event: dict[str, Any]) -> str:
            await b.send(event)
            reply = await b.recv()
            seen_by_b.append(reply)
            return str(reply["error"]["code"]) if reply["type"] == "error" else reply["type"]

        for item_id in ("secret_item", assistant):
            assert await attempt({"type": "conversation.item.retrieve", "item_id": item_id}) == (
                "item_not_found"
            )
            assert await attempt({"type": "conversation.item.delete", "item_id": item_id}) == (
                "item_not_found"
            )
            truncate = {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 0,
                "text_end": 0,
            }
            assert await attempt(truncate) == "item_not_found"
            after = user_item("hi") | {"previous_item_id": item_id}
            assert await attempt(after) == "item_not_found"
        output = {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": call_id, "output": "stolen"},
        }
        assert await attempt(output) == "unknown_call_id"
        cancel = {"type": "response.cancel", "response_id": a_response}
        assert await attempt(cancel) == "response_cancel_not_active"
        # B may reuse A's item id in its own conversation: a separate namespace
        assert await attempt(user_item("mine", id="secret_item")) == "conversation.item.added"
        await b.recv()  # its .done

        # A is untouched: its response completes, its items are intact
        events = await a.until("response.done", within=20)
        assert events[-1]["response"]["status"] == "completed"
        await a.send({"type": "conversation.item.retrieve", "item_id": "secret_item"})
        got = await a.recv()
        assert got["item"]["content"][0]["text"] == "my secret is 4242"
        assert all("4242" not in json.dumps(e) for e in seen_by_b)
        assert a.session["id"] != b.session["id"]
