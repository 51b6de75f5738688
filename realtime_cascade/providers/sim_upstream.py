"""The sim tiers served as an OpenAI-compatible HTTP endpoint, with fault injection.

So the real ``openai`` path (SDK, HTTP, SSE, error mapping) runs end to end offline, and can be
benchmarked and broken on purpose. A deliberately tiny HTTP/1.1 server on anyio streams (no new
dependency): keep-alive, ``Content-Length`` request bodies, chunked SSE responses.

    POST /v1/chat/completions   stream=true: SSE chunks in the OpenAI shape (logprobs,
                                top_logprobs, a usage chunk with stream_options.include_usage,
                                then ``data: [DONE]``); otherwise one completion JSON
    GET  /v1/models             the profiles, as models

``model`` picks a profile by name. Text and timing come from :func:`~.sim.schedule`, so a
client sees exactly what an in-process :class:`~.sim.SimProvider` would, token for token. A
stream keeps absolute time, as a model server generating on its own clock does: each token is
due at the stream's start plus its scheduled offset, so a late wake-up or a slow send makes
that token late, not every later one (``clock="relative"``, ``--clock relative``: one sleep per
gap after each send, lateness accumulating along the stream). A reply already begun is
continued: a final assistant message with ``continue_final_message`` (vLLM's assistant prefix)
or the system message of :func:`~.openai.continuation_instruction`.

Faults, per request (``"sim_fault"`` in the body, e.g. ``extra_body={"sim_fault": "status:429"}``)
or for every request (constructor / ``--fault``); several are joined with commas:

    status:N            answer HTTP N with an OpenAI-style error body (429 and 503 carry
                        Retry-After; 401 echoes the key it was sent, as some upstreams do)
    retry_after:S       the Retry-After seconds for status:429/503 (default 1)
    ttft_ms:N           the first token comes after N ms instead of the profile's draw
    stall_after:K       K tokens, then nothing, with the connection held open
    drop_after:K        K tokens, then the socket is reset (RST)
    eof_after:K         K tokens, then the socket is closed mid-body (FIN, no chunked end)
    malformed_after:K   K tokens, then a chunk that is not JSON
    error_after:K       K tokens, then an ``{"error": …}`` event
    keepalive[:MS]      only SSE comments (``: ping``) every MS ms (100), forever
    content_type        200 with an HTML body (a proxy's error page)
"""

from __future__ import annotations

import argparse
import http
import importlib
import importlib.util
import logging
import socket
import struct
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteStream

from .. import loop
from .base import Message, TierRequest
from .openai import parse_continuation_instruction
from .sim import SCRIPTS, Script, SimProfile, SimStep, schedule

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024
# Longer than any client pool's keep-alive expiry (httpx: 5 s), so the client, not us, ends
# idle connections; closing first races a request the client may be sending.
_IDLE_TIMEOUT_S = 120.0


Clock = Literal["absolute", "relative"]


class StreamClock:
    """When a stream's next step is due (sans-I/O: the caller reads the clock and sleeps).

    ``absolute``: step k is due at ``anchor + delay_0 + … + delay_k``, the anchor being the
    first ``wait``; a late step is late on its own. ``relative``: each delay counts from the
    previous step's send, so lateness accumulates.
    """

    __slots__ = ("_absolute", "_anchor", "_due")

    def __init__(self, clock: Clock = "absolute") -> None:
        self._absolute = clock == "absolute"
        self._anchor: float | None = None
        self._due = 0.0

    def wait(self, delay: float, now: float) -> float:
        """Seconds to sleep, at ``now``, before the step scheduled ``delay`` after the last."""
        if not self._absolute:
            return max(0.0, delay)
        if self._anchor is None:
            self._anchor = now
        self._due += delay
        return max(0.0, self._anchor + self._due - now)


def default_profiles() -> dict[str, SimProfile]:
    """``light`` and ``strong``, as in the default config's sim tiers."""
    return {
        "light": SimProfile(ttft_ms=150, itl_ms=15, skill=0.5),
        "strong": SimProfile(ttft_ms=400, itl_ms=25, skill=1.0),
    }


# --- faults ---------------------------------------------------------------------------------


class FaultError(ValueError):
    """A fault spec that cannot be parsed."""


class Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: int | None = None
    retry_after: float = 1.0
    ttft_ms: float | None = None
    stall_after: int | None = None
    drop_after: int | None = None
    eof_after: int | None = None
    malformed_after: int | None = None
    error_after: int | None = None
    keepalive_ms: float | None = None
    content_type: bool = False

    def cut(self) -> tuple[int, str] | None:
        """Where the token stream is cut (after how many tokens) and how; the earliest wins."""
        cuts = [
            (k, kind)
            for k, kind in (
                (self.stall_after, "stall"),
                (self.drop_after, "drop"),
                (self.eof_after, "eof"),
                (self.malformed_after, "malformed"),
                (self.error_after, "error"),
            )
            if k is not None
        ]
        return min(cuts) if cuts else None


_INT_FAULTS = {"stall_after", "drop_after", "eof_after", "malformed_after", "error_after"}


def parse_fault(spec: str) -> Fault:
    """``"status:429,retry_after:2"`` → :class:`Fault`. Raises :class:`FaultError`."""
    fields: dict[str, object] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        kind, _, arg = part.partition(":")
        try:
            if kind == "status":
                code = int(arg)
                if not 400 <= code <= 599:
                    raise FaultError(f"fault {part!r}: status must be 400..599")
                fields["status"] = code
            elif kind in _INT_FAULTS:
                fields[kind] = max(0, int(arg))
            elif kind in ("ttft_ms", "retry_after"):
                fields[kind] = max(0.0, float(arg))
            elif kind == "keepalive":
                fields["keepalive_ms"] = max(1.0, float(arg)) if arg else 100.0
            elif kind == "content_type" and not arg:
                fields["content_type"] = True
            else:
                raise FaultError(f"unknown fault {part!r}")
        except ValueError as exc:
            if isinstance(exc, FaultError):
                raise
            raise FaultError(f"fault {part!r}: {kind} needs a number") from None
    return Fault(**fields)  # type: ignore[arg-type]


# --- the OpenAI request shape (what we read of it) ------------------------------------------


class _Part(msgspec.Struct):
    type: str = "text"
    text: str = ""


class _InMessage(msgspec.Struct):
    role: str
    content: str | list[_Part] | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class ChatRequest(msgspec.Struct):
    model: str
    messages: list[_InMessage]
    stream: bool = False
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] = []
    tool_choice: str | dict[str, Any] | None = None
    seed: int | None = None
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    sim_fault: str | None = None


_ROLES: dict[str, Literal["system", "user", "assistant", "tool"]] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}

_CHAT_DECODER = msgspec.json.Decoder(ChatRequest)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def tier_request(chat: ChatRequest) -> TierRequest:
    """The :class:`TierRequest` a chat request stands for, prefix recovered from either form."""
    messages: list[Message] = []
    for m in chat.messages:
        role = _ROLES.get(m.role)
        if role is None:
            raise _BadRequest(400, f"unsupported message role {m.role!r}")
        if isinstance(m.content, list):
            content: str | None = "".join(p.text for p in m.content if p.type == "text")
        else:
            content = m.content
        calls = tuple(m.tool_calls) if m.tool_calls is not None else None
        messages.append(Message(role, content, m.tool_call_id, calls))
    prefix = ""
    if messages and messages[-1].role == "assistant" and chat.continue_final_message:
        prefix = messages.pop().content or ""
    elif messages and messages[-1].role == "system":
        quoted = parse_continuation_instruction(messages[-1].content)
        if quoted is not None:
            prefix = quoted
            messages.pop()
    # Absent limits keep TierRequest's defaults, so the request equals the client's own.
    optional: dict[str, Any] = {}
    max_tokens = chat.max_completion_tokens or chat.max_tokens
    if max_tokens is not None:
        optional["max_tokens"] = max_tokens
    if chat.top_logprobs is not None:
        optional["top_logprobs"] = chat.top_logprobs
    return TierRequest(
        tuple(messages),
        prefix=prefix,
        tools=tuple(chat.tools),
        tool_choice=chat.tool_choice,
        seed=chat.seed or 0,
        **optional,
    )


class ReceivedRequest(msgspec.Struct, frozen=True):
    """A request as the server saw it (tests check what a provider sent)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the decoded JSON body, or None


# --- HTTP/1.1, the little we need -----------------------------------------------------------


class _Request(msgspec.Struct):
    method: str
    target: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


async def _read_request(conn: BufferedByteStream) -> _Request | None:
    """The next request on the connection; None when the peer closed (or idled) between
    requests. Raises :class:`_BadRequest` for anything malformed."""
    with anyio.move_on_after(_IDLE_TIMEOUT_S):
        try:
            head = await conn.receive_until(b"\r\n\r\n", _MAX_HEAD)
        except (anyio.IncompleteRead, anyio.EndOfStream):
            return None
        except anyio.DelimiterNotFound:
            raise _BadRequest(431, "request head too large") from None
        lines = head.lstrip(b"\r\n").split(b"\r\n")
        try:
            method, target, version = lines[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            raise _BadRequest(400, "malformed request line") from None
        if version not in ("HTTP/1.1", "HTTP/1.0") or not method.isalpha() or not target:
            raise _BadRequest(400, "malformed request line")
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise _BadRequest(400, "malformed header line")
            try:
                key = name.decode("ascii").lower()
            except UnicodeDecodeError:
                raise _BadRequest(400, "malformed header name") from None
            text = value.strip().decode("latin-1")
            if key in headers and key == "content-length" and headers[key] != text:
                raise _BadRequest(400, "conflicting content-length")
            headers[key] = text
        if "transfer-encoding" in headers:
            raise _BadRequest(501, "chunked request bodies are not supported")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise _BadRequest(400, "bad content-length")
        length = int(length_text)
        if length > _MAX_BODY:
            raise _BadRequest(413, "request body too large")
        try:
            body = await conn.receive_exactly(length) if length else b""
        except (anyio.IncompleteRead, anyio.EndOfStream):
            return None
        return _Request(method, target, version, headers, body)
    return None


def _head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _send_response(
    conn: BufferedByteStream,
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    keep_alive: bool = True,
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    all_headers = [
        ("content-type", content_type),
        ("content-length", str(len(body))),
        ("connection", "keep-alive" if keep_alive else "close"),
        ("x-request-id", f"req_sim{uuid.uuid4().hex[:16]}"),
        *headers,
    ]
    await conn.send(_head(status, all_headers) + body)


def _error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk (one SSE event per chunk, as streaming servers write them)."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _sse(obj: object) -> bytes:
    return _chunk(b"data: " + msgspec.json.encode(obj) + b"\n\n")


_LAST_CHUNK = b"0\r\n\r\n"


async def _watching(sock: SocketStream, conn: BufferedByteStream, work: Awaitable[bool]) -> bool:
    """Runs a response while watching the socket: when the client hangs up (a cancelled
    stream), the response is abandoned at once, as a real server stops generating, instead of
    at its next write (which may be seconds away: a long TTFT, a stall, a slow ping)."""
    keep = False

    async def watch(scope: anyio.CancelScope) -> None:
        try:
            data = await sock.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            scope.cancel()
            return
        # A pipelined next request: keep it for the next round, stop watching.
        conn.feed_data(data)

    async def run(scope: anyio.CancelScope) -> None:
        nonlocal keep
        try:
            keep = await work
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            keep = False  # the client went away while we wrote
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, tg.cancel_scope)
        tg.start_soon(run, tg.cancel_scope)
    return keep


def _reset(conn: SocketStream) -> None:
    """Arm an abrupt close: with SO_LINGER 0, closing sends RST instead of FIN."""
    sock: socket.socket = conn.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --- the OpenAI response shape --------------------------------------------------------------


def _token_logprobs(token: str, logprob: float, tops: Sequence[float], n: int) -> dict[str, Any]:
    alternatives: list[dict[str, Any]] = []
    chosen = False
    for k, value in enumerate(tops[:n]):
        # The chosen token is among its own alternatives (as with OpenAI); others are synthetic.
        if not chosen and value == logprob:
            alt, chosen = token, True
        else:
            alt = f"<alt{k}>"
        alternatives.append({"token": alt, "logprob": value, "bytes": list(alt.encode())})
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": alternatives,
    }


class _Reply:
    """Builds the SSE chunks / the completion JSON of one reply."""

    def __init__(self, model: str, chat: ChatRequest) -> None:
        self.id = f"chatcmpl-sim{uuid.uuid4().hex[:20]}"
        self.created = int(time.time())
        self.model = model
        self.logprobs = chat.logprobs
        self.top = max(0, chat.top_logprobs or 0)
        self.include_usage = chat.stream_options is not None and chat.stream_options.include_usage

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_sim",
            "choices": choices,
        }
        if self.include_usage:
            out["usage"] = None
        return out

    def role_chunk(self) -> bytes:
        delta = {"role": "assistant", "content": "", "refusal": None}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return _sse(self._envelope([choice]))

    def step_chunk(self, step: SimStep) -> bytes:
        c = step.chunk
        delta: dict[str, Any]
        if c.tool_call is not None:
            call = c.tool_call
            piece: dict[str, Any] = {"index": call.index}
            if call.id is not None:
                piece["id"] = call.id
                piece["type"] = "function"
            function: dict[str, Any] = {"arguments": call.arguments}
            if call.name is not None:
                function["name"] = call.name
            piece["function"] = function
            delta = {"tool_calls": [piece]}
            token = call.arguments
        else:
            delta = {"content": c.text}
            token = c.text
        logprobs = None
        if self.logprobs and c.logprob is not None:
            entry = _token_logprobs(token, c.logprob, c.top_logprobs, self.top)
            logprobs = {"content": [entry], "refusal": None}
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}
        return _sse(self._envelope([choice]))

    def finish_chunks(self, step: SimStep) -> bytes:
        c = step.chunk
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason}
        out = _sse(self._envelope([choice]))
        if self.include_usage and c.usage is not None:
            usage = self._usage(c.usage.input_tokens, c.usage.output_tokens)
            out += _sse({**self._envelope([]), "usage": usage})
        return out + _chunk(b"data: [DONE]\n\n")

    @staticmethod
    def _usage(prompt: int, completion: int) -> dict[str, int]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def completion(self, steps: Sequence[SimStep]) -> bytes:
        text = "".join(s.chunk.text for s in steps)
        calls: dict[int, dict[str, Any]] = {}
        entries: list[dict[str, Any]] = []
        for s in steps:
            c = s.chunk
            if c.tool_call is not None:
                call = calls.setdefault(
                    c.tool_call.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                if c.tool_call.id is not None:
                    call["id"] = c.tool_call.id
                if c.tool_call.name is not None:
                    call["function"]["name"] = c.tool_call.name
                call["function"]["arguments"] += c.tool_call.arguments
            elif c.logprob is not None and c.finish_reason is None:
                entries.append(_token_logprobs(c.text, c.logprob, c.top_logprobs, self.top))
        final = steps[-1].chunk
        message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
        if calls:
            message["tool_calls"] = [calls[k] for k in sorted(calls)]
        usage = final.usage
        return msgspec.json.encode(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_sim",
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": {"content": entries, "refusal": None}
                        if self.logprobs
                        else None,
                        "finish_reason": final.finish_reason,
                    }
                ],
                "usage": self._usage(usage.input_tokens, usage.output_tokens)
                if usage is not None
                else None,
            }
        )


# --- the server -----------------------------------------------------------------------------


class SimUpstream:
    """An OpenAI-compatible endpoint over the sim tiers. ``serve`` runs it until cancelled.

    ``received`` holds the last requests (method, path, headers, JSON body) so tests can check
    what a client sent; ``open_streams`` counts SSE responses in flight, so tests can check that
    a cancelled client really closed its stream. ``clock``: how a stream keeps time
    (:class:`StreamClock`).
    """

    def __init__(
        self,
        profiles: Mapping[str, SimProfile] | None = None,
        fault: Fault | str | None = None,
        *,
        scripts: Mapping[str, Script] | None = None,
        history: int = 256,
        clock: Clock = "absolute",
    ) -> None:
        if clock not in ("absolute", "relative"):
            raise ValueError(f"clock must be 'absolute' or 'relative', not {clock!r}")
        self.clock: Clock = clock
        self.profiles = dict(profiles) if profiles is not None else default_profiles()
        self.fault = parse_fault(fault) if isinstance(fault, str) else fault
        self._scripts: dict[str, Script] = {**SCRIPTS, **(scripts or {})}
        # Resolve every profile's script now: a typo fails at startup, not at the first request.
        for profile in self.profiles.values():
            self._script(profile)
        self.received: deque[ReceivedRequest] = deque(maxlen=history)
        self.open_streams = 0
        self.open_connections = 0  # client connections held open (keep-alive ones included)

    def _script(self, profile: SimProfile) -> Script:
        # Cached by name, so "module:attr" scripts are imported once.
        script = self._scripts.get(profile.script)
        if script is None:
            script = self._scripts[profile.script] = resolve_script(profile.script, self._scripts)
        return script

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port) and report the bound port."""
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        async with listener:
            bound: int = listener.listeners[0].extra(SocketAttribute.local_port)
            log.info("sim-upstream listening on %s:%d", host, bound)
            task_status.started(bound)
            await listener.serve(self._connection)

    async def _connection(self, sock: SocketStream) -> None:
        self.open_connections += 1
        try:
            await self._serve_connection(sock)
        finally:
            self.open_connections -= 1

    async def _serve_connection(self, sock: SocketStream) -> None:
        # Everything is caught here: one bad connection must never take the listener down.
        conn = BufferedByteStream(sock)
        async with sock:
            try:
                while True:
                    try:
                        request = await _read_request(conn)
                    except _BadRequest as exc:
                        body = _error_body(exc.message, "invalid_request_error")
                        await _send_response(conn, exc.status, body, keep_alive=False)
                        return
                    if request is None:
                        return
                    if not await self._respond(sock, conn, request):
                        return
            except (
                anyio.EndOfStream,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                anyio.IncompleteRead,
                OSError,
            ):
                return  # the peer went away mid-request
            except Exception:
                log.exception("sim-upstream: unexpected error on a connection")

    async def _respond(self, sock: SocketStream, conn: BufferedByteStream, req: _Request) -> bool:
        """Answers one request; returns whether the connection may serve another."""
        path = req.target.split("?", 1)[0].rstrip("/")
        keep = req.keep_alive
        if path == "/v1/models" or path.startswith("/v1/models/"):
            self._record(req, None)
            if req.method != "GET":
                return await self._error(conn, 405, "method not allowed", keep)
            return await self._models(conn, path, keep)
        if path == "/v1/chat/completions":
            if req.method != "POST":
                self._record(req, None)
                return await self._error(conn, 405, "method not allowed", keep)
            return await self._chat(sock, conn, req)
        self._record(req, None)
        return await self._error(conn, 404, f"no route for {req.method} {path}", keep)

    def _record(self, req: _Request, body: Any) -> None:
        path = req.target.split("?", 1)[0]
        self.received.append(ReceivedRequest(req.method, path, dict(req.headers), body))

    async def _error(
        self,
        conn: BufferedByteStream,
        status: int,
        message: str,
        keep: bool,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        body = _error_body(message, type_, code)
        await _send_response(conn, status, body, keep_alive=keep, headers=headers)
        return keep

    async def _models(self, conn: BufferedByteStream, path: str, keep: bool) -> bool:
        def model(name: str) -> dict[str, Any]:
            return {"id": name, "object": "model", "created": 0, "owned_by": "realtime-cascade"}

        if path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            if name not in self.profiles:
                return await self._error(conn, 404, f"model {name!r} not found", keep)
            body = msgspec.json.encode(model(name))
        else:
            body = msgspec.json.encode(
                {"object": "list", "data": [model(n) for n in self.profiles]}
            )
        await _send_response(conn, 200, body, keep_alive=keep)
        return keep

    async def _chat(self, sock: SocketStream, conn: BufferedByteStream, req: _Request) -> bool:
        keep = req.keep_alive
        try:
            raw: Any = msgspec.json.decode(req.body)
        except msgspec.DecodeError:
            self._record(req, None)
            return await self._error(conn, 400, "the body is not JSON", keep)
        self._record(req, raw)
        try:
            chat = _CHAT_DECODER.decode(req.body)
            fault = parse_fault(chat.sim_fault) if chat.sim_fault is not None else self.fault
            tier = tier_request(chat)
        except msgspec.ValidationError as exc:
            return await self._error(conn, 400, f"invalid request: {exc}", keep)
        except FaultError as exc:
            return await self._error(conn, 400, str(exc), keep)
        except _BadRequest as exc:
            return await self._error(conn, exc.status, exc.message, keep)
        profile = self.profiles.get(chat.model)
        if profile is None:
            message = f"The model {chat.model!r} does not exist (have: {', '.join(self.profiles)})"
            return await self._error(
                conn, 404, message, keep, code="model_not_found", type_="invalid_request_error"
            )
        fault = fault or Fault()
        if fault.status is not None:
            return await self._status_fault(conn, req, fault, keep)
        if fault.content_type:
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            await _send_response(conn, 200, page, content_type="text/html", keep_alive=keep)
            return keep
        steps = schedule(profile, chat.model, self._script(profile), tier)
        reply = _Reply(chat.model, chat)
        if chat.stream:
            self.open_streams += 1
            try:
                return await _watching(
                    sock, conn, self._stream(sock, conn, reply, steps, fault, keep)
                )
            finally:
                self.open_streams -= 1
        return await _watching(sock, conn, self._complete(sock, conn, reply, steps, fault, keep))

    async def _status_fault(
        self, conn: BufferedByteStream, req: _Request, fault: Fault, keep: bool
    ) -> bool:
        status = fault.status
        assert status is not None
        headers: list[tuple[str, str]] = []
        if status in (429, 503):
            headers.append(("retry-after", f"{fault.retry_after:g}"))
        if status == 429:
            message = "Rate limit reached for requests (sim fault)."
            return await self._error(
                conn,
                429,
                message,
                keep,
                type_="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if status == 401:
            # Upstreams echo the key they were given; a client must keep it out of its errors.
            key = req.headers.get("authorization", "").removeprefix("Bearer ").strip()
            message = f"Incorrect API key provided: {key}."
            return await self._error(
                conn, 401, message, keep, type_="invalid_request_error", code="invalid_api_key"
            )
        type_ = "server_error" if status >= 500 else "invalid_request_error"
        message = f"{http.HTTPStatus(status).phrase} (sim fault)"
        return await self._error(conn, status, message, keep, type_=type_, headers=headers)

    async def _stream(
        self,
        sock: SocketStream,
        conn: BufferedByteStream,
        reply: _Reply,
        steps: list[SimStep],
        fault: Fault,
        keep: bool,
    ) -> bool:
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive" if keep else "close"),
            ("x-request-id", f"req_sim{uuid.uuid4().hex[:16]}"),
        ]
        # The stream's clock starts as the request is answered (the time to first token counts
        # from here).
        clock = StreamClock(self.clock)
        clock.wait(0.0, anyio.current_time())
        await conn.send(_head(200, headers))
        if fault.keepalive_ms is not None:
            # A server that only ever pings: inter-byte timeouts never fire, only the client's
            # own time-to-first-token budget can end this.
            while True:
                await conn.send(_chunk(b": ping\n\n"))
                await anyio.sleep(fault.keepalive_ms / 1000.0)
        await conn.send(reply.role_chunk())
        tokens, final = steps[:-1], steps[-1]
        cut = fault.cut()
        for k, step in enumerate(tokens):
            if cut is not None and cut[0] == k:
                return await self._cut(sock, conn, cut[1])
            delay = fault.ttft_ms / 1000.0 if k == 0 and fault.ttft_ms is not None else step.delay
            wait = clock.wait(delay, anyio.current_time())
            if wait > 0:
                await anyio.sleep(wait)
            await conn.send(reply.step_chunk(step))
        if cut is not None:
            return await self._cut(sock, conn, cut[1])
        delay = fault.ttft_ms / 1000.0 if not tokens and fault.ttft_ms is not None else final.delay
        wait = clock.wait(delay, anyio.current_time())
        if wait > 0:
            await anyio.sleep(wait)
        await conn.send(reply.finish_chunks(final) + _LAST_CHUNK)
        return keep

    async def _cut(self, sock: SocketStream, conn: BufferedByteStream, how: str) -> bool:
        if how == "stall":
            await anyio.sleep_forever()  # until the watcher sees the client hang up
        if how == "drop":
            _reset(sock)
            await sock.aclose()
            return False
        if how == "eof":
            return False  # the handler closes the socket: FIN without the chunked terminator
        if how == "malformed":
            await conn.send(_chunk(b'data: {"choices": [{"delta": {"content": "tru\n\n'))
        else:
            error = {
                "message": "The server had an error while processing your request (sim).",
                "type": "server_error",
                "param": None,
                "code": 500,
            }
            await conn.send(_sse({"error": error}))
        await conn.send(_LAST_CHUNK)
        return False

    async def _complete(
        self,
        sock: SocketStream,
        conn: BufferedByteStream,
        reply: _Reply,
        steps: list[SimStep],
        fault: Fault,
        keep: bool,
    ) -> bool:
        cut = fault.cut()
        if fault.keepalive_ms is not None or (cut is not None and cut[1] == "stall"):
            await anyio.sleep_forever()  # until the watcher sees the client hang up
        delay = sum(s.delay for s in steps)
        if fault.ttft_ms is not None:
            delay += fault.ttft_ms / 1000.0 - (steps[0].delay if steps else 0.0)
        if delay > 0:
            await anyio.sleep(delay)
        if cut is not None and cut[1] == "drop":
            _reset(sock)
            await sock.aclose()
            return False
        if cut is not None and cut[1] == "eof":
            return False
        if cut is not None and cut[1] == "malformed":
            await _send_response(conn, 200, b'{"choices": [', keep_alive=False)
            return False
        if cut is not None:
            return await self._error(conn, 500, "server error (sim)", keep, type_="server_error")
        await _send_response(conn, 200, reply.completion(steps), keep_alive=keep)
        return keep


def resolve_script(name: str, scripts: Mapping[str, Script]) -> Script:
    """A script by name, or ``"package.module:attr"`` imported (a domain script)."""
    if name in scripts:
        return scripts[name]
    module, sep, attr = name.partition(":")
    if not sep:
        raise ValueError(f"unknown sim script {name!r} (have: {', '.join(scripts)})")
    obj: Any = getattr(importlib.import_module(module), attr)
    # A class is instantiated; an instance is used as is.
    script: Script = obj() if isinstance(obj, type) else obj
    return script


async def serve_sim_upstream(
    host: str,
    port: int,
    profiles: Mapping[str, SimProfile] | None = None,
    fault: Fault | str | None = None,
    *,
    clock: Clock = "absolute",
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the sim tiers on ``host:port`` until cancelled; ``tg.start`` returns the port."""
    await SimUpstream(profiles, fault, clock=clock).serve(host, port, task_status=task_status)


# --- the CLI --------------------------------------------------------------------------------


def parse_profile(spec: str) -> tuple[str, SimProfile]:
    """``"name=light,ttft_ms=150,itl_ms=15,skill=0.5"`` → ``("light", SimProfile(...))``.

    Without ``name=`` the first item is the name (``"light,skill=0.4"``); fields not given
    take :class:`SimProfile`'s defaults.
    """
    fields: dict[str, str] = {}
    name: str | None = None
    for k, part in enumerate(p.strip() for p in spec.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            if k == 0 and key:
                name = key
                continue
            raise ValueError(f"profile {spec!r}: expected key=value, got {part!r}")
        if key == "name":
            name = value
        else:
            fields[key] = value
    if not name:
        raise ValueError(f"profile {spec!r}: no name")
    try:
        profile = msgspec.convert(fields, SimProfile, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(f"profile {spec!r}: {exc}") from None
    return name, profile


def add_sim_upstream_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds ``sim-upstream`` to a CLI's subparsers (``argparse._SubParsersAction``)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sim-upstream",
        help="serve the sim tiers as an OpenAI-compatible endpoint",
        description="Serve the simulated tiers as an OpenAI-compatible HTTP endpoint "
        "(/v1/chat/completions with SSE, logprobs and usage; /v1/models).",
    )
    _add_arguments(parser)
    parser.set_defaults(func=run_sim_upstream)
    return parser


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8100, help="port to bind (8100; 0: any)")
    parser.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="SPEC",
        help="a model: name=light,ttft_ms=150,itl_ms=15,skill=0.5 (repeatable; "
        "default: light and strong)",
    )
    parser.add_argument(
        "--fault",
        default=None,
        metavar="KIND",
        help="inject into every request: status:N, ttft_ms:N, stall_after:K, drop_after:K, "
        "eof_after:K, malformed_after:K, error_after:K, keepalive[:MS], content_type "
        "(comma-separated)",
    )
    parser.add_argument(
        "--clock",
        choices=["absolute", "relative"],
        default="absolute",
        help="absolute (default): each token due at the stream's start plus its scheduled "
        "offset; relative: one sleep per gap after each send (lateness accumulates)",
    )


def run_sim_upstream(args: argparse.Namespace) -> int:
    try:
        profiles = dict(parse_profile(p) for p in args.profile) or default_profiles()
        fault = parse_fault(args.fault) if args.fault else None
        upstream = SimUpstream(profiles, fault, clock=args.clock)
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"sim-upstream: {exc}", file=sys.stderr)
        return 2

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            port = await tg.start(upstream.serve, args.host, args.port)
            models = ", ".join(upstream.profiles)
            print(
                f"sim-upstream on http://{args.host}:{port}/v1 (models: {models})",
                file=sys.stderr,
                flush=True,
            )

    try:
        loop.run(run)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"sim-upstream: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="realtime-cascade sim-upstream")
    _add_arguments(parser)
    return run_sim_upstream(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
