"""The audit log: one redacted JSON line per turn, written off the loop, nothing lost on exit."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.observe.audit import (
    AuditLog,
    AuditReadError,
    AuditRecord,
    FileSink,
    Redactor,
    StreamSink,
    read_records,
    upstream_secrets,
)
from realtime_cascade.observe.config import AUDIT_ENV, AuditConfig, audit_with_env
from realtime_cascade.providers.base import Chunk, RateLimited, TierRequest
from realtime_cascade.runtime import CascadeProfile

from .conftest import ServerFactory
from .helpers import BOOK, HARD, client, trace_of

pytestmark = pytest.mark.anyio


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


async def test_one_line_per_turn_with_context(make_server: ServerFactory, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    async with make_server(audit=AuditConfig(path=str(log))) as server, client(server) as c:
        t1 = trace_of(await c.turn(BOOK))
        t2 = trace_of(await c.turn(HARD))
        await c.say("and one more thing")
        t3 = trace_of(await c.respond(conversation="none"))
    records = lines(log)
    assert [r["response_id"] for r in records] == [t["turn_id"] for t in (t1, t2, t3)]
    assert [r["trace"] for r in records] == [t1, t2, t3]  # the same trace the client got
    first = records[0]
    assert first["v"] == 1
    assert first["profile"] == "default"
    assert first["tier_names"] == ["light", "strong"]
    assert (first["first_tier"], first["max_tier"]) == (0, 1)
    assert first["budgets"] == {
        "first_text_ms": 900.0,
        "end_of_turn_ms": 20000.0,
        "turn_cap_usd": 0.05,
        "session_cap_usd": 1.0,
    }
    assert len({r["session_id"] for r in records}) == 1
    assert len({r["user_item_id"] for r in records}) == 3  # each answers its own user message
    assert all(r["time"].endswith("Z") for r in records)
    # and they read back as typed records
    back = list(read_records([str(log)]))
    assert [r.response_id for r in back] == [r["response_id"] for r in records]
    assert back[1].trace is not None and back[1].trace.escalated


async def test_nothing_lost_on_shutdown_mid_response(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    log = tmp_path / "audit.jsonl"
    async with make_server(audit=AuditConfig(path=str(log))) as server:
        c_cm = client(server)
        c = await c_cm.__aenter__()
        await c.turn(BOOK)
        await c.say(HARD)
        await c.send({"type": "response.create"})
        await c.until("response.created")
        # leaving the block shuts the server down with no grace: the response is cancelled
    records = lines(log)
    assert len(records) == 2
    assert records[1]["trace"]["status"] == "cancelled"
    assert "server_shutdown" in records[1]["trace"]["reason"]
    await c_cm.__aexit__(None, None, None)


class Leaky:
    """A tier whose upstream error message carries secrets."""

    name = "light"

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        raise RateLimited(
            "401 invalid key sk-proj-abcdefghijklmnop1234 (header Authorization: Bearer "
            "tok_0123456789abcdef; url https://x.test/v1?api_key=hunter2hunter2; "
            "server key srv-key-secret-42)"
        )
        yield Chunk()  # pragma: no cover

    async def aclose(self) -> None:
        pass


async def test_secrets_and_user_text_redacted(make_server: ServerFactory, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    base = config_mod.build_profile(config_mod.load())
    profile = CascadeProfile("default", base.params, [Leaky(), base.providers[1]])
    audit = AuditConfig(path=str(log), user_text="redact", assistant_text="hash")
    async with (
        make_server(
            audit=audit, server={"api_keys": ("srv-key-secret-42",)}, profiles={"default": profile}
        ) as server,
        client(server, key="srv-key-secret-42") as c,
    ):
        trace = trace_of(await c.turn(BOOK))
    await base.aclose()
    assert "sk-proj-abcdefghijklmnop1234" in trace["attempts"][0]["end_reason"]  # on the wire
    raw = log.read_text()
    for secret in ("sk-proj-abcdefghijklmnop1234", "tok_0123456789abcdef", "hunter2hunter2"):
        assert secret not in raw
    assert "srv-key-secret-42" not in raw
    assert BOOK not in raw
    record = json.loads(raw)
    assert record["key"] == "api_keys[0]"  # its name, never the key
    assert "[redacted]" in record["trace"]["attempts"][0]["end_reason"]
    assert record["trace"]["request"] == f"[redacted: {len(BOOK)} chars]"
    assert record["trace"]["text"].startswith("sha256:")
    assert record["trace"]["text"] != trace["text"]


def test_redactor_modes_and_patterns() -> None:
    r = Redactor(["my-own-secret"], patterns=[r"\d{4}-\d{4}"], user_text="hash")
    assert r.scrub("x my-own-secret y") == "x [redacted] y"
    assert r.scrub("card 1234-5678") == "card [redacted]"
    assert r.scrub("password: pa55word, fine") == "[redacted], fine"
    assert r.scrub("over 8 tokens (q20 p=0.05)") == "over 8 tokens (q20 p=0.05)"
    assert Redactor._mode("hello", "hash") == Redactor._mode("hello", "hash")
    assert Redactor._mode("", "redact") == ""


def test_upstream_secrets_from_config(monkeypatch: pytest.MonkeyPatch) -> None:
    text = """
[profiles.p]
[[profiles.p.tiers]]
name = "big"
provider = { kind = "openai", base_url = "http://x.test/v1", model = "m", api_key_env = "K_ENV" }
[server]
api_keys = ["plain-key-1"]
[keys.acme]
key_env = "ACME_ENV"
"""
    cfg = config_mod.loads(text)
    env = {"K_ENV": "upstream-secret-9", "ACME_ENV": "acme-secret-7"}
    assert sorted(upstream_secrets(cfg, env)) == [
        "acme-secret-7",
        "plain-key-1",
        "upstream-secret-9",
    ]


def test_file_sink_rotates_by_size(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    sink = FileSink(path, max_bytes=100, backups=2)
    for i in range(12):
        sink.write(f'{{"n":{i},"pad":"{"x" * 20}"}}\n'.encode())  # 36 bytes (37 from 10 on)
    sink.close()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["a.jsonl", "a.jsonl.1", "a.jsonl.2"]
    for p in tmp_path.iterdir():
        assert p.stat().st_size <= 100
    numbers = [json.loads(x)["n"] for x in path.read_text().splitlines()]
    older = [json.loads(x)["n"] for x in (tmp_path / "a.jsonl.1").read_text().splitlines()]
    assert older == [8, 9] and numbers == [10, 11]  # two lines a file: a third would not fit
    # a reopened sink appends, and knows the size it starts from
    again = FileSink(path, max_bytes=100, backups=2)
    again.write(b'{"n":12}\n')
    again.close()
    assert json.loads(path.read_text().splitlines()[-1])["n"] == 12


def record(i: int) -> AuditRecord:
    from realtime_cascade.observe.audit import AuditBudgets

    return AuditRecord(
        v=1,
        time=msgspec.convert("2026-01-01T00:00:00Z", type=__import__("datetime").datetime),
        session_id="s",
        response_id=f"r{i}",
        user_item_id=None,
        profile="p",
        key=None,
        policy=None,
        tier_names=("a",),
        first_tier=0,
        max_tier=0,
        budgets=AuditBudgets(900, 20000, 0.05, 1.0),
        trace=None,
    )


class Gate:
    """A sink that blocks its writer until released: a slow disk."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.out = io.BytesIO()

    def write(self, line: bytes) -> None:
        self.open.wait()
        self.out.write(line)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_full_queue_drops_instead_of_blocking() -> None:
    gate = Gate()
    dropped: list[int] = []
    log = AuditLog(AuditConfig(path="-", queue_size=5), sink=gate, on_drop=dropped.append)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    accepted = [log.append(record(i)) for i in range(200)]
    assert time.perf_counter() - t0 < 0.5  # the loop never waits on the writer
    # what fits: the queue, plus the batch the stuck writer took before it blocked
    assert 5 <= accepted.count(True) < 200
    assert log.dropped == accepted.count(False) == sum(dropped)
    gate.open.set()
    log.close()
    written = [json.loads(x)["response_id"] for x in gate.out.getvalue().splitlines()]
    assert written == [f"r{i}" for i, ok in enumerate(accepted) if ok]
    assert log.written == len(written)
    assert not log.append(record(99))  # closed


async def test_close_drains_everything_queued() -> None:
    out = io.BytesIO()
    log = AuditLog(AuditConfig(path="-", queue_size=10_000), sink=StreamSink(out))
    for i in range(2000):
        assert log.append(record(i))
    await log.aclose()
    assert len(out.getvalue().splitlines()) == 2000


def test_read_records_tolerates_banners_and_a_partial_last_line(tmp_path: Path) -> None:
    good = msgspec.json.encode(record(1)).decode()
    path = tmp_path / "a.jsonl"
    path.write_text(f"realtime-cascade: serving ws://…\n{good}\n{good[:40]}")
    assert [r.response_id for r in read_records([str(path)])] == ["r1"]
    path.write_text(f"{good}\n{good[:40]}\n{good}\n")
    with pytest.raises(AuditReadError, match=r"a\.jsonl:2: "):
        list(read_records([str(path)]))
    with pytest.raises(AuditReadError, match="cannot read"):
        list(read_records([str(tmp_path / "missing.jsonl")]))


def test_env_turns_the_log_on_unless_configured() -> None:
    assert audit_with_env(AuditConfig(), {AUDIT_ENV: "x.jsonl"}).path == "x.jsonl"
    assert audit_with_env(AuditConfig(path="cfg.jsonl"), {AUDIT_ENV: "x.jsonl"}).path == (
        "cfg.jsonl"
    )
    assert audit_with_env(AuditConfig(), {}).path is None


async def test_env_var_reaches_a_server(
    make_server: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "env.jsonl"
    monkeypatch.setenv(AUDIT_ENV, str(log))
    async with make_server() as server, client(server) as c:
        await c.turn(BOOK)
    assert len(lines(log)) == 1


def test_serve_takes_an_audit_path() -> None:
    from realtime_cascade.cli.main import build_parser

    assert build_parser().parse_args(["serve", "--audit", "a.jsonl"]).audit == "a.jsonl"
    assert build_parser().parse_args(["serve"]).audit is None


def test_bad_audit_config_is_named() -> None:
    base = '[profiles.p]\n[[profiles.p.tiers]]\nname = "t"\n'
    with pytest.raises(config_mod.ConfigError, match=r"audit\.max_bytes: must not be negative"):
        config_mod.loads(base + "[audit]\nmax_bytes = -1\n")
    with pytest.raises(config_mod.ConfigError, match=r"audit\.redact_patterns\[0\]"):
        config_mod.loads(base + '[audit]\nredact_patterns = ["("]\n')
    with pytest.raises(config_mod.ConfigError, match="user_text"):
        config_mod.loads(base + '[audit]\nuser_text = "shred"\n')
    with pytest.raises(config_mod.ConfigError, match="unknown field"):
        config_mod.loads(base + '[audit]\npaht = "x"\n')


async def test_writer_thread_keeps_the_loop_free(tmp_path: Path) -> None:
    """A blocked disk does not stall the event loop: turns keep their timing."""
    gate = Gate()
    log = AuditLog(AuditConfig(path="-", queue_size=100), sink=gate)  # type: ignore[arg-type]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        for i in range(50):
            log.append(record(i))
        await anyio.sleep(0.2)
        tg.cancel_scope.cancel()
    assert ticks >= 10
    gate.open.set()
    await log.aclose()
