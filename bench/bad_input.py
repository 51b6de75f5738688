"""Bad input against a live server, with bystanders: how much was tried, how much crashed.

    python -m bench.bad_input [--per-category N] [--bystanders N] [--seed S] [--json]

Attackers send, over WebSocket to an in-process server on the embedded sim tiers:

- generated frames (``bench.fuzzing``): client events drawn from the JSON Schema, mutations of
  them and of the golden transcripts' client events, byte damage to golden events, and random
  frames (bytes, text, JSON values, known-nasty events);
- fixed sets: invalid UTF-8 in text frames, deep nesting (10 … 100,000 levels), huge strings
  (below the soft frame limit, above it, above the hard limit), invalid base64 audio;
- floods: clients that send thousands of events without reading, against a second server with
  the default rate limits;
- generated variants of the hostile classes (issue 12): HTTP handshakes with duplicate
  ``Authorization`` / ``Origin`` / ``Host`` headers and NUL, over-long, percent-encoded or
  traversing path components (each must get a 4xx or a 101, never a 5xx or silence); huge
  ``conversation.item.create`` items and item floods past the conversation caps (the served
  process has ``max_item_bytes`` below the frame limit, so ``item_too_large`` and
  ``conversation_limit`` are both reached); ping/pong control frames interleaved with events;
  ``session.update`` with oversized or odd voices and instructions.

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
    http: Counter[int] = field(default_factory=Counter)  # handshakes: status (0: no answer)
    # handshakes whose request line is not ASCII (not HTTP/1.1): websockets closes the
    # connection without a response, by design; an answer, not a crash
    dropped_not_http: int = 0

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out["closes"] = dict(sorted(self.closes.items()))
        out["http"] = dict(sorted(self.http.items()))
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
        # a handshake answered 5xx, or not answered at all
        http = sum(n for c in self.categories for k, n in c.http.items() if k == 0 or k >= 500)
        return len(self.error_logs) + unanswered + internal + c1011 + lost + http

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


_HANDSHAKE_PATHS = (
    "/v1/realtime",
    "/v1/realtime?model=",
    "/",
    "/healthz",
    "/%00",
    "/v1/realtime%00",
    "/v1/realtime/../healthz",
    "/../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "//etc//passwd",
    "/%ff%fe%fd",
    "/\\..\\..\\boot.ini",
    "/index.html%00.js",
    "/%c0%ae%c0%ae/",
)


def _handshake_request(rng: random.Random, port: int) -> tuple[bytes, bool, bool]:
    """One hostile handshake and whether it must be refused (4xx): duplicated headers, NUL and
    over-long path components, traversal, odd percent-encoding, in random combinations."""
    path = rng.choice(_HANDSHAKE_PATHS)
    match rng.randrange(5):
        case 0:  # over-long: a component, a query, or many components
            n = rng.choice((300, 4000, 9000, 20_000, 70_000))
            path = rng.choice((f"/{'a' * n}", f"/v1/realtime?model={'m' * n}", "/x" * (n // 2)))
        case 1:  # NUL, raw or encoded, somewhere in the path
            cut = rng.randrange(1, len(path) + 1)
            path = path[:cut] + rng.choice(("\x00", "%00", "\x00\x00", "%2500")) + path[cut:]
        case 2:  # control characters and bytes that are not ASCII
            path = path + rng.choice(("\x01", "\x7f", "\xe9", "\u2028", "\t"))
        case _:
            pass
    host = f"127.0.0.1:{port}"
    headers: list[tuple[str, str]] = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    dup = rng.sample(("Authorization", "Origin", "Host"), rng.randrange(0, 4))
    for name in dup:
        values = {
            "Authorization": (f"Bearer k{rng.randrange(9)}", "Bearer ", "Basic Zm9vOmJhcg=="),
            "Origin": (f"http://{host}", "http://evil.example", "null"),
            "Host": (host, "evil.example", "localhost"),
        }[name]
        existing = [v for k, v in headers if k == name]
        headers.extend((name, rng.choice(values)) for _ in range(1 if existing else 2))
    rng.shuffle(headers)
    if rng.random() < 0.3:  # case games: the same header under two spellings
        headers = [(k.upper() if rng.random() < 0.5 else k.lower(), v) for k, v in headers]
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), "", ""]
    raw = "\r\n".join(lines).encode("utf-8", "surrogateescape")
    return raw, bool(dup), path.isascii()


async def _handshakes(server: RealtimeServer, rng: random.Random, n: int) -> Category:
    cat = Category("hostile handshakes (dup headers, odd paths)")
    port = server.port
    for _ in range(n):
        raw, must_refuse, is_http = _handshake_request(rng, port)
        cat.frames += 1
        cat.refused += must_refuse
        status = 0
        try:
            with anyio.fail_after(10):
                async with await anyio.connect_tcp("127.0.0.1", port) as stream:
                    await stream.send(raw)
                    head = b""
                    while b"\r\n" not in head and len(head) < 4096:
                        head += await stream.receive()
            status = int(head.split(b" ", 2)[1])
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            status = 0
        except (IndexError, ValueError):
            status = 0
        if status == 0 and not is_http:
            cat.dropped_not_http += 1
            cat.refused_answered += must_refuse
            continue
        cat.http[status] += 1
        if must_refuse and 400 <= status < 500:
            cat.refused_answered += 1
    return cat


def _item(text: str, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    }
    if item_id is not None:
        item["id"] = item_id
    return item


async def _huge_items(server: RealtimeServer, rng: random.Random, n: int) -> Category:
    """Items around and past ``max_item_bytes`` and the frame limit, until the conversation's
    byte cap refuses every further one."""
    cat = Category("huge items (item and conversation byte caps)")
    attacker = _Attacker(server, cat)
    item_cap = server.limits.max_item_bytes
    frame_cap = server.limits.max_frame_bytes
    for i in range(n):
        size = max(1, item_cap + rng.randint(-item_cap // 4, item_cap // 2))
        if rng.random() < 0.2:
            size = rng.choice((frame_cap - 100, frame_cap + 1, 2 * frame_cap))
        text = rng.choice(("y", "\u00e9", "\U0001f600", "\x00")) * (size // 4 or 1)
        text = text + "z" * (size - len(text.encode()))
        event: dict[str, Any] = {"type": "conversation.item.create", "item": _item(text)}
        if rng.random() < 0.3:
            event["previous_item_id"] = rng.choice(("root", "nope", f"i{i}"))
        frame = json.dumps(event)
        over = len(text.encode()) > item_cap or len(frame.encode()) > frame_cap
        await attacker.send(frame, refused=over)
    await attacker.close()
    return cat


async def _item_flood(server: RealtimeServer, rng: random.Random, n: int) -> Category:
    """Small items until the conversation's item cap, then ``n`` more: each of those refused."""
    cat = Category("item floods (past the item cap)")
    attacker = _Attacker(server, cat)
    cap = server.limits.max_items
    done = 0
    while done < cap:
        # filling up in batches, each answered by one sentinel: a client that does not read
        # what it is sent is closed (1013) by design, which is not what this measures
        ws = await attacker._connect()
        batch = min(200, cap - done)
        for i in range(done, done + batch):
            text = rng.choice(("", "a", "hi " * rng.randrange(1, 20), "\u200b" * 3))
            item_id = rng.choice((None, f"flood_{i}"))
            event = {"type": "conversation.item.create", "item": _item(text, item_id)}
            await ws.send(json.dumps(event))
        done += batch
        await attacker.send(
            json.dumps({"type": "conversation.item.retrieve", "item_id": "x"}), refused=True
        )
        cat.frames += batch
    for i in range(n):
        event: dict[str, Any] = {"type": "conversation.item.create", "item": _item(f"more {i}")}
        if rng.random() < 0.3:
            event["previous_item_id"] = rng.choice(("root", "flood_3", "gone"))
        await attacker.send(json.dumps(event), refused=True)
    await attacker.close()
    return cat


async def _ping_pong(server: RealtimeServer, rng: random.Random, n: int) -> Category:
    """Ping and unsolicited pong control frames (0 … 125 bytes of payload) between events."""
    cat = Category("interleaved ping/pong")
    attacker = _Attacker(server, cat)
    decoder = wire.ClientDecoder()
    limit = server.limits.max_frame_bytes
    events = (
        {"type": "session.update", "session": {}},
        {"type": "input_audio_buffer.clear"},
        {"type": "conversation.item.create", "item": _item("ping?")},
        {"type": "response.cancel"},
        {"type": "nope"},
    )
    for _ in range(n):
        ws = await attacker._connect()
        try:
            for _ in range(rng.randrange(1, 6)):
                payload = rng.randbytes(rng.randrange(126))
                if rng.random() < 0.5:
                    await ws.ping(payload)
                else:
                    await ws.pong(payload)
        except ConnectionClosed as exc:
            cat.closes[exc.rcvd.code if exc.rcvd is not None else 1006] += 1
            attacker.ws = None
        frame = json.dumps(rng.choice(events))
        await attacker.send(frame, refused=_refused(decoder, frame, limit))
    await attacker.close()
    return cat


async def _session_updates(server: RealtimeServer, rng: random.Random, n: int) -> Category:
    """``session.update`` with oversized, empty, NUL or unknown voices and instructions."""
    cat = Category("session.update voices / instructions")
    attacker = _Attacker(server, cat)
    decoder = wire.ClientDecoder()
    limit = server.limits.max_frame_bytes
    for _ in range(n):
        session: dict[str, Any] = {}
        size = rng.choice((0, 1, 100, 10_000, limit // 2, limit - 300, limit + 1, 2 * limit))
        if rng.random() < 0.6:
            session["voice"] = rng.choice(
                (
                    "",
                    "\x00",
                    "en-us\x00",
                    "../../etc/passwd",
                    "v" * min(size, limit + 1),
                    "\u00e9" * 50,
                    "alloy",
                    "en-us",
                    "nope",
                )
            )
        if rng.random() < 0.6 or not session:
            session["instructions"] = rng.choice(("i", "\x00", "\U0001f600")) * size
        if rng.random() < 0.2:
            session["modalities"] = rng.choice((["audio", "text"], ["text"], ["audio"], []))
        frame = json.dumps({"type": "session.update", "session": session})
        await attacker.send(frame, refused=_refused(decoder, frame, limit))
    await attacker.close()
    return cat


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
    # and an item cap below the frame limit, so that ``item_too_large`` is reachable
    fast = msgspec.structs.replace(
        base.server,
        max_events_per_second=5000.0,
        max_item_bytes=min(base.server.max_item_bytes, base.server.max_frame_bytes // 4),
    )
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

                    async def hostile(make: Any, n: int) -> None:
                        cats.append(await make(server, random.Random(rng.random()), n))

                    for name, frames in generated.items():
                        attack.start_soon(gen, name, frames)
                    attack.start_soon(fixed)
                    attack.start_soon(hostile, _handshakes, per_category)
                    attack.start_soon(hostile, _huge_items, max(20, per_category // 4))
                    attack.start_soon(hostile, _item_flood, per_category)
                    attack.start_soon(hostile, _ping_pong, per_category)
                    attack.start_soon(hostile, _session_updates, per_category)
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
        "hostile handshakes (dup headers, odd paths)",
        "huge items (item and conversation byte caps)",
        "item floods (past the item cap)",
        "interleaved ping/pong",
        "session.update voices / instructions",
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
        "| category | frames | refused | refused and answered | error events | closes / HTTP |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for c in report.categories:
        closes = ", ".join(f"{k}×{v}" for k, v in sorted(c.closes.items()))
        http = ", ".join(f"HTTP {k}×{v}" for k, v in sorted(c.http.items()))
        if c.dropped_not_http:
            http += f", EOF (request line not ASCII)×{c.dropped_not_http}"
        closes = ", ".join(x for x in (closes, http) if x) or "–"
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
