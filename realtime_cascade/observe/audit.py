"""The audit log: every turn's trace as one JSON line, written off the event loop.

::

    Session ─turn_finished─▶ AuditLog.turn_finished   (event loop: put_nowait, nothing else)
                                   │ bounded queue.Queue
                                   ▼
                             writer thread: redact → msgspec encode → FileSink / stdout
                                            (batches, flushes when the queue runs dry,
                                             rotates past max_bytes: audit.jsonl.1 … .N)

Rules:

- The event loop never waits on the log: a full queue drops the record, counts it
  (``dropped``, and ``realtime_cascade_audit_dropped_total`` in ``/metrics``) and warns.
- Nothing queued is lost on a clean shutdown: :meth:`AuditLog.aclose` (the server's shutdown
  calls it after the last response is done) enqueues a stop marker behind every record and
  waits, in a worker thread, for the writer to drain, flush and close.
- Secrets never reach the file: every string of a record is scrubbed of the server's API keys,
  the upstream providers' keys (their ``api_key_env`` values), ``Bearer …`` tokens, ``sk-…``
  keys, ``api_key=…``-style parameters and any ``redact_patterns``. The user's request and the
  assistant's words can be kept, redacted (``[redacted: N chars]``) or hashed
  (``sha256:…``, to count repeats without reading them).

One line is an :class:`AuditRecord` (``v`` = 1); readers ignore fields they do not know.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import anyio
import msgspec

from ..core import TurnTrace
from .config import AuditConfig, TextMode
from .observer import SessionInfo, TurnInfo

log = logging.getLogger(__name__)

VERSION = 1
REDACTED = "[redacted]"


class AuditBudgets(msgspec.Struct, frozen=True):
    """The budgets the turn ran under: what SLA compliance is measured against."""

    first_text_ms: float
    end_of_turn_ms: float
    turn_cap_usd: float
    session_cap_usd: float


class AuditRecord(msgspec.Struct, frozen=True):
    v: int
    time: datetime  # when the turn ended, UTC
    session_id: str
    response_id: str
    user_item_id: str | None  # the user message answered; several responses may share it
    profile: str
    key: str | None  # the API key's name, never the key
    policy: str | None
    tier_names: tuple[str, ...]
    first_tier: int  # the tiers the turn was allowed, after overrides and the key's policy
    max_tier: int
    budgets: AuditBudgets
    trace: TurnTrace | None
    error: str | None = None
    governed: bool = False  # the key's policy narrowed the turn's tiers (see its decisions)

    @property
    def tier_range(self) -> str:
        names = self.tier_names
        return f"{names[self.first_tier]}..{names[self.max_tier]}"


def record_of(turn: TurnInfo) -> AuditRecord:
    s, b = turn.session, turn.budgets
    return AuditRecord(
        v=VERSION,
        time=datetime.fromtimestamp(turn.ended_at, UTC),
        session_id=s.session_id,
        response_id=turn.response_id,
        user_item_id=turn.user_item_id,
        profile=s.profile,
        key=s.key,
        policy=s.policy,
        tier_names=turn.tier_names,
        first_tier=turn.first_tier,
        max_tier=turn.max_tier,
        budgets=AuditBudgets(b.first_text_ms, b.end_of_turn_ms, b.turn_cap_usd, b.session_cap_usd),
        trace=turn.trace,
        error=turn.error,
        governed=turn.governed,
    )


# --- redaction ------------------------------------------------------------------------------------

_SECRET_PATTERNS = (
    r"\bsk-[A-Za-z0-9_\-]{12,}",  # OpenAI-style keys
    r"(?i:\bbearer\s+[A-Za-z0-9._~+/=\-]{8,})",
    r"(?i:\b(?:api[_-]?key|access[_-]?token|token|secret|password)\s*[=:]\s*[^\s&,;\"']+)",
)


class Redactor:
    """Scrubs secrets from every string of a record; keeps, redacts or hashes user text."""

    def __init__(
        self,
        secrets: Iterable[str] = (),
        *,
        patterns: Sequence[str] = (),
        user_text: TextMode = "keep",
        assistant_text: TextMode = "keep",
    ) -> None:
        literal = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        parts = [re.escape(s) for s in literal] + list(_SECRET_PATTERNS) + list(patterns)
        self._scrub = re.compile("|".join(f"(?:{p})" for p in parts))
        self.user_text = user_text
        self.assistant_text = assistant_text

    def scrub(self, text: str) -> str:
        return self._scrub.sub(REDACTED, text)

    @staticmethod
    def _mode(text: str, mode: TextMode) -> str:
        if mode == "keep" or not text:
            return text
        if mode == "hash":
            return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        return f"[redacted: {len(text)} chars]"

    def record(self, record: AuditRecord) -> dict[str, Any]:
        """The record as JSON-ready builtins, redacted."""
        data: dict[str, Any] = msgspec.to_builtins(record)
        trace = data.get("trace")
        if isinstance(trace, dict):
            trace["request"] = self._mode(trace.get("request", ""), self.user_text)
            trace["text"] = self._mode(trace.get("text", ""), self.assistant_text)
            for call in trace.get("tool_calls", ()):
                call["arguments"] = self._mode(call.get("arguments", ""), self.assistant_text)
        out = self._walk(data)
        assert isinstance(out, dict)
        return out

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):  # to_builtins keeps tuples
            return [self._walk(v) for v in value]
        return value


def upstream_secrets(config: Any, environ: dict[str, str] | None = None) -> list[str]:
    """Every secret a config can reach: server keys, named keys, providers' API keys."""
    env = dict(os.environ) if environ is None else environ
    out: list[str] = list(getattr(config.server, "api_keys", ()))
    for k in getattr(config, "keys", {}).values():
        if k.key:
            out.append(k.key)
        if k.key_env and env.get(k.key_env):
            out.append(env[k.key_env])
    for profile in config.profiles.values():
        for tier in profile.tiers:
            var = getattr(tier.provider, "api_key_env", "")
            if var and env.get(var):
                out.append(env[var])
    return out


# --- sinks ----------------------------------------------------------------------------------------


class FileSink:
    """Appends lines to ``path``; past ``max_bytes`` it rotates ``path`` → ``path.1`` → …
    keeping ``backups`` old files (0: the old file is removed)."""

    def __init__(self, path: str | Path, max_bytes: int = 0, backups: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 (held open)
        self._size = self._file.tell()

    def write(self, line: bytes) -> None:
        if self.max_bytes and self._size and self._size + len(line) > self.max_bytes:
            self.rotate()
        self._file.write(line)
        self._size += len(line)

    def rotate(self) -> None:
        self._file.close()
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
        else:
            for i in range(self.backups - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class StreamSink:
    """Lines to a binary stream (stdout by default); never closes it."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdout.buffer

    def write(self, line: bytes) -> None:
        self._stream.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        self.flush()


Sink = FileSink | StreamSink


def open_sink(config: AuditConfig) -> Sink:
    assert config.path is not None
    if config.path == "-":
        return StreamSink()
    return FileSink(config.path, config.max_bytes, config.backups)


# --- the log --------------------------------------------------------------------------------------

_STOP = object()
_BATCH = 512


class AuditLog:
    """An observer that appends one line per finished turn (see the module docstring)."""

    def __init__(
        self,
        config: AuditConfig,
        *,
        secrets: Iterable[str] = (),
        sink: Sink | None = None,
        on_write: Callable[[int], None] | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.redactor = Redactor(
            secrets,
            patterns=config.redact_patterns,
            user_text=config.user_text,
            assistant_text=config.assistant_text,
        )
        self._sink = sink if sink is not None else open_sink(config)
        self._queue: queue.Queue[object] = queue.Queue(config.queue_size)
        self._encoder = msgspec.json.Encoder()
        self._on_write = on_write
        self._on_drop = on_drop
        self.written = 0
        self.dropped = 0
        self._last_warning = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    # -- observer hooks (event loop)

    def session_started(self, info: SessionInfo) -> None:
        pass

    def session_ended(self, info: SessionInfo) -> None:
        pass

    def turn_finished(self, turn: TurnInfo) -> None:
        self.append(record_of(turn))

    def append(self, record: AuditRecord) -> bool:
        """Queue ``record`` without blocking; False (and counted) when it had to be dropped."""
        if self._closed:
            self._drop("the audit log is closed")
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop(f"queue of {self.config.queue_size} records full")
            return False
        return True

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(1)
        now = time.monotonic()
        if now - self._last_warning > 10.0:
            self._last_warning = now
            log.warning("audit: record dropped (%s); %d dropped so far", why, self.dropped)

    async def aclose(self) -> None:
        """Write everything queued, flush and close; waits in a worker thread."""
        await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)  # blocks only until the writer makes room
        self._thread.join()

    # -- the writer thread

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            lines: list[bytes] = []
            for item in batch:
                if item is _STOP:
                    stopping = True
                    continue
                assert isinstance(item, AuditRecord)
                try:
                    lines.append(self._encoder.encode(self.redactor.record(item)) + b"\n")
                except Exception:
                    log.exception("audit: cannot encode the record of %s", item.response_id)
                    self.dropped += 1
            self._write(lines)
        leftover: list[bytes] = []  # appended while closing, behind the stop marker
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, AuditRecord):
                leftover.append(self._encoder.encode(self.redactor.record(item)) + b"\n")
        self._write(leftover)
        try:
            self._sink.close()
        except OSError as exc:
            log.error("audit: closing the sink failed: %s", exc)

    def _write(self, lines: list[bytes]) -> None:
        written = 0
        try:
            for line in lines:
                self._sink.write(line)
                written += 1
            self._sink.flush()
        except OSError as exc:
            log.error("audit: write failed: %s", exc)
            lost = len(lines) - written
            self.dropped += lost
            if self._on_drop is not None and lost:
                self._on_drop(lost)
        self.written += written
        if self._on_write is not None and written:
            self._on_write(written)


# --- reading --------------------------------------------------------------------------------------


class AuditReadError(Exception):
    """A line that is not an audit record: ``file:line: what is wrong``."""


_decoder = msgspec.json.Decoder(AuditRecord)


def read_records(paths: Sequence[str]) -> Iterator[AuditRecord]:
    """Records from audit files (``-``: stdin), in file order. Lines that are not JSON objects
    (a ``serve`` banner in captured stdout) are skipped; so is a last line cut short without its
    newline (a log still being written). Anything else malformed raises
    :class:`AuditReadError`."""
    for path in paths:
        if path == "-":
            yield from _records("<stdin>", sys.stdin.buffer.read())
            continue
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise AuditReadError(f"{path}: cannot read: {exc.strerror}") from None
        yield from _records(path, data)


def _records(name: str, data: bytes) -> Iterator[AuditRecord]:
    lines = data.split(b"\n")
    complete = data.endswith(b"\n")
    for n, line in enumerate(lines, start=1):
        if not line.strip().startswith(b"{"):
            continue
        try:
            yield _decoder.decode(line)
        except msgspec.DecodeError as exc:
            if n == len(lines) and not complete:
                return  # a partial last line
            raise AuditReadError(f"{name}:{n}: {exc}") from None
