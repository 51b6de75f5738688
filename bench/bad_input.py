"""Bad input against a live server, with bystanders: how much was tried, how much crashed.

    python -m bench.bad_input [--per-category N] [--bystanders N] [--seed S] [--json]

Attackers send, over WebSocket to an in-process server on the embedded sim tiers:

- generated frames (``bench.fuzzing``): client events drawn from the JSON Schema, mutations of
  them and of the golden transcripts' client events, byte damage to golden events, and random
  frames (bytes, text, JSON values, known-nasty events);
- fixed sets: invalid UTF-8 in text frames, deep nesting (10 … 100,000 levels), huge strings
  (below the soft frame limit, above it, above the hard limit), invalid base64 audio;
- floods: clients that send thousands of events without reading, against a second server with
  the default rate limits.

After every frame an attacker sends a sentinel (``conversation.item.retrieve`` of an id that
does not exist) and reads up to the sentinel's ``error``: so every frame is answered before the
next, and a frame the decoder refuses must have produced an ``error`` of its own. Meanwhile
*bystander* sessions run turns on the same server; each must complete.

A *crash* is any of: a log record at ERROR or above (an unhandled exception in a handler, the
"connection handler failed" of websockets), an ``internal_error`` event, a close with 1011, a
refused frame that got no ``error``, or a bystander turn that did not complete.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from realtime_cascade import config as config_mod
from realtime_cascade import wire
from realtime_cascade.server.app import RealtimeServer

from .fuzzing import categories, deep, load_schema, sample

BOOK = "Book a table for two at 7pm tonight."
_SENTINEL_ID = "__no_such_item__"


@dataclass
class Category:
    name: str
    frames: int = 0
    refused: int = 0  # frames the decoder (or a frame limit) refuses
    refused_answered: int = 0  # … that got their own ``error``
    errors: int = 0  # error events received (any)
    closes: Counter[int] = field(default_factory=Counter)
    internal_errors: int = 0

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["closes"] = dict(sorted(self.closes.items()))
        return out


@dataclass
class Report:
    categories: list[Category]
    bystander_turns: int
    bystander_completed: int
    bystander_p99_ms: float | None
    error_logs: list[str]
    flood_clients: int
    flood_events: int
    flood_closed_1008: int
    sessions_left: int
    wall_s: float

    @property
    def tried(self) -> int:
        return sum(c.frames for c in self.categories) + self.flood_events

    @property
    def crashes(self) -> int:
        unanswered = sum(c.refused - c.refused_answered for c in self.categories)
        internal = sum(c.internal_errors for c in self.categories)
        c1011 = sum(c.closes.get(1011, 0) for c in self.categories)
        lost = self.bystander_turns - self.bystander_completed
        return len(self.error_logs) + unanswered + internal + c1011 + lost

    @property
    def ok(self) -> bool:
        return self.crashes == 0 and self.sessions_left == 0


class _ErrorLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def _refused(decoder: wire.ClientDecoder, frame: str | bytes, soft_limit: int) -> bool:
    if isinstance(frame, bytes):
        return True
    if len(frame.encode("utf-8", "surrogatepass")) > soft_limit:
        return True
    try:
        decoder.decode(frame)
    except wire.ProtocolError:
        return True
    return False


class _Attacker:
    """One connection that sends frames and reads each one's answers up to a sentinel."""

    def __init__(self, server: RealtimeServer, category: Category) -> None:
        self.server = server
        self.cat = category
        self.ws: ClientConnection | None = None
        self.n = 0

    async def _connect(self) -> ClientConnection:
        if self.ws is None:
            self.ws = await connect(self.server.url(), max_size=None)
            json.loads(await self.ws.recv())  # session.created
        return self.ws

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def send(self, frame: str | bytes, *, refused: bool, text: bool | None = None) -> None:
        cat = self.cat
        ws = await self._connect()
        cat.frames += 1
        cat.refused += refused
        self.n += 1
        sentinel = f"sentinel-{self.n}"
        answered = False
        try:
            await ws.send(frame, text=text)
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.retrieve",
                        "item_id": _SENTINEL_ID,
                        "event_id": sentinel,
                    }
                )
            )
            with anyio.fail_after(30):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] != "error":
                        continue
                    error = event["error"]
                    if error.get("event_id") == sentinel:
                        break
                    cat.errors += 1
                    answered = True
                    if error.get("code") == "internal_error":
                        cat.internal_errors += 1
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            cat.closes[code] += 1
            answered = True  # a close is the answer (1007, 1009): the next frame reconnects
            self.ws = None
        except Exception:  # the client library failing on a connection the server closed
            code = ws.close_code if ws.close_code is not None else 1006
            cat.closes[code] += 1
            answered = True
            self.ws = None
        if refused and answered:
            cat.refused_answered += 1


async def _bystander(server: RealtimeServer, stop: anyio.Event, out: list[float | None]) -> None:
    async with connect(server.url(), max_size=None) as ws:
        await ws.recv()
        while not stop.is_set():
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": BOOK}],
            }
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            status = None
            with anyio.move_on_after(30):
                while True:
                    event = json.loads(await ws.recv())
                    if event["type"] == "response.done":
                        status = event["response"]["status"]
                        break
            out.append((time.monotonic() - t0) * 1000.0 if status == "completed" else None)


async def _generated(server: RealtimeServer, name: str, frames: list[Any]) -> Category:
    cat = Category(name)
    attacker = _Attacker(server, cat)
    decoder = wire.ClientDecoder()
    limit = server.limits.max_frame_bytes
    for frame in frames:
        await attacker.send(frame, refused=_refused(decoder, frame, limit))
    await attacker.close()
    return cat


async def _fixed(server: RealtimeServer, rng: random.Random) -> list[Category]:
    decoder = wire.ClientDecoder()
    limit = server.limits.max_frame_bytes
    out = []

    utf8 = Category("invalid UTF-8 (text frames)")
    attacker = _Attacker(server, utf8)
    for _ in range(20):
        junk = bytes([0xFF, rng.randrange(256), 0xC0, 0x80]) + rng.randbytes(rng.randrange(16))
        await attacker.send(b'{"type": "' + junk + b'"}', refused=True, text=True)
    await attacker.close()
    out.append(utf8)

    nesting = Category("deep nesting")
    attacker = _Attacker(server, nesting)
    for depth in (10, 100, 500, 900, 1000, 2000, 10_000, 100_000, 300_000):
        for frame in (deep(depth), "[" * depth + "]" * depth):
            await attacker.send(frame, refused=_refused(decoder, frame, limit))
    await attacker.close()
    out.append(nesting)

    huge = Category("huge strings")
    attacker = _Attacker(server, huge)
    for size in (limit // 2, limit - 200, limit + 1, 2 * limit, 3 * limit, 5 * limit):
        frame = json.dumps({"type": "session.update", "session": {"instructions": "x" * size}})
        await attacker.send(frame, refused=_refused(decoder, frame, limit))
        text = json.dumps(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "y" * size}],
                },
            }
        )
        await attacker.send(text, refused=_refused(decoder, text, limit))
    await attacker.close()
    out.append(huge)

    audio = Category("invalid base64 audio")
    attacker = _Attacker(server, audio)
    for payload in ("%%%", "====", "a", "\u00e9t\u00e9", "QUJD" * 1000 + "!", "QUJD\n!"):
        for event in (
            {"type": "input_audio_buffer.append", "audio": payload},
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_audio", "audio": payload}],
                },
            },
        ):
            # not base64: refused (or, without audio support, audio_not_supported)
            await attacker.send(json.dumps(event), refused=True)
    await attacker.close()
    out.append(audio)
    return out


async def _flood(server: RealtimeServer, clients: int, events: int) -> tuple[int, int]:
    closed = 0
    sent_total = 0

    async def one() -> None:
        nonlocal closed, sent_total
        try:
            async with connect(server.url(), max_size=None, max_queue=None) as ws:
                await ws.recv()
                frame = json.dumps({"type": "session.update", "session": {}})
                for _ in range(events):
                    await ws.send(frame)
                    sent_total += 1
                with anyio.fail_after(30):
                    while True:
                        await ws.recv()
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == 1008:
                closed += 1

    async with anyio.create_task_group() as tg:
        for _ in range(clients):
            tg.start_soon(one)
    return sent_total, closed


async def run_bad_input(
    per_category: int = 200, *, bystanders: int = 4, seed: int = 0, flood_clients: int = 4
) -> Report:
    t0 = time.monotonic()
    rng = random.Random(seed)
    schema = load_schema()
    generated = {name: sample(s, per_category, seed) for name, s in categories(schema).items()}
    logs = _ErrorLogs()
    watched = [logging.getLogger(n) for n in ("realtime_cascade", "websockets", "asyncio")]
    for logger in watched:
        logger.addHandler(logs)
    base = config_mod.load()
    # the attackers answer each frame before the next: allow them more than a person types
    fast = msgspec.structs.replace(base.server, max_events_per_second=5000.0)
    cfg = msgspec.structs.replace(base, server=fast)
    turns: list[float | None] = []
    try:
        async with RealtimeServer(cfg, host="127.0.0.1", port=0) as server:
            stop = anyio.Event()
            cats: list[Category] = []
            async with anyio.create_task_group() as tg:
                for _ in range(bystanders):
                    tg.start_soon(_bystander, server, stop, turns)

                async with anyio.create_task_group() as attack:

                    async def gen(name: str, frames: list[Any]) -> None:
                        cats.append(await _generated(server, name, frames))

                    async def fixed() -> None:
                        cats.extend(await _fixed(server, rng))

                    for name, frames in generated.items():
                        attack.start_soon(gen, name, frames)
                    attack.start_soon(fixed)
                stop.set()
            # floods, against a server with the default limits, with bystanders on it
            async with RealtimeServer(base, host="127.0.0.1", port=0) as flood_server:
                stop = anyio.Event()
                async with anyio.create_task_group() as tg:
                    for _ in range(max(1, bystanders // 2)):
                        tg.start_soon(_bystander, flood_server, stop, turns)
                    flood_events, flood_closed = await _flood(flood_server, flood_clients, 3000)
                    stop.set()
            with anyio.move_on_after(5):
                while server.session_count or flood_server.session_count:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            left = server.session_count + flood_server.session_count
    finally:
        for logger in watched:
            logger.removeHandler(logs)
    done = sorted(t for t in turns if t is not None)
    p99 = done[min(len(done) - 1, int(0.99 * len(done)))] if done else None
    order = [
        *generated,
        "invalid UTF-8 (text frames)",
        "deep nesting",
        "huge strings",
        "invalid base64 audio",
    ]
    cats.sort(key=lambda c: order.index(c.name))
    return Report(
        categories=cats,
        bystander_turns=len(turns),
        bystander_completed=len(done),
        bystander_p99_ms=None if p99 is None else round(p99, 1),
        error_logs=logs.records,
        flood_clients=flood_clients,
        flood_events=flood_events,
        flood_closed_1008=flood_closed,
        sessions_left=left,
        wall_s=round(time.monotonic() - t0, 2),
    )


def render(report: Report) -> str:
    lines = [
        "| category | frames | refused | refused and answered | error events | closes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in report.categories:
        closes = ", ".join(f"{k}×{v}" for k, v in sorted(c.closes.items())) or "–"
        lines.append(
            f"| {c.name} | {c.frames} | {c.refused} | {c.refused_answered} | {c.errors} "
            f"| {closes} |"
        )
    lines.append(
        f"| floods ({report.flood_clients} clients, not reading) | {report.flood_events} | – | – "
        f"| – | 1008×{report.flood_closed_1008} |"
    )
    lines.append("")
    lines.append(
        f"Bad inputs tried: {report.tried}; crashes: {report.crashes} "
        f"(error logs {len(report.error_logs)}); bystander turns completed: "
        f"{report.bystander_completed}/{report.bystander_turns} (p99 {report.bystander_p99_ms} "
        f"ms); sessions left: {report.sessions_left}; wall time {report.wall_s} s."
    )
    lines.extend(f"ERROR LOG: {r}" for r in report.error_logs[:20])
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bad_input", description=__doc__)
    parser.add_argument("--per-category", type=int, default=200, help="generated frames (200)")
    parser.add_argument("--bystanders", type=int, default=4, help="sessions running turns (4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    async def go() -> Report:
        return await run_bad_input(args.per_category, bystanders=args.bystanders, seed=args.seed)

    report = anyio.run(go, backend="asyncio")
    if args.json:
        out = {
            "categories": [c.row() for c in report.categories],
            "tried": report.tried,
            "crashes": report.crashes,
            "error_logs": report.error_logs,
            "bystander_turns": report.bystander_turns,
            "bystander_completed": report.bystander_completed,
            "bystander_p99_ms": report.bystander_p99_ms,
            "flood_events": report.flood_events,
            "flood_closed_1008": report.flood_closed_1008,
            "sessions_left": report.sessions_left,
            "wall_s": report.wall_s,
        }
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
