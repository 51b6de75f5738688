"""What the sim upstream reads of an OpenAI request, the little HTTP/1.1 it speaks, and the
OpenAI response shapes it writes."""

from __future__ import annotations

import http
import logging
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteStream

from ..base import Message, TierRequest
from ..openai import parse_continuation_instruction
from ..sim import SimStep

log = logging.getLogger(__name__)

_MAX_HEAD = 64 * 1024
_MAX_BODY = 8 * 1024 * 1024
# Longer than any client pool's keep-alive expiry (httpx: 5 s), so the client, not us, ends
# idle connections; closing first races a request the client may be sending.
_IDLE_TIMEOUT_S = 120.0


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

CHAT_DECODER = msgspec.json.Decoder(ChatRequest)


class BadRequest(Exception):
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
            raise BadRequest(400, f"unsupported message role {m.role!r}")
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


class HttpRequest(msgspec.Struct):
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


async def read_request(conn: BufferedByteStream) -> HttpRequest | None:
    """The next request on the connection; None when the peer closed (or idled) between
    requests. Raises :class:`BadRequest` for anything malformed."""
    with anyio.move_on_after(_IDLE_TIMEOUT_S):
        try:
            head = await conn.receive_until(b"\r\n\r\n", _MAX_HEAD)
        except (anyio.IncompleteRead, anyio.EndOfStream):
            return None
        except anyio.DelimiterNotFound:
            raise BadRequest(431, "request head too large") from None
        lines = head.lstrip(b"\r\n").split(b"\r\n")
        try:
            method, target, version = lines[0].decode("ascii").split(" ")
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "malformed request line") from None
        if version not in ("HTTP/1.1", "HTTP/1.0") or not method.isalpha() or not target:
            raise BadRequest(400, "malformed request line")
        headers: dict[str, str] = {}
        for raw in lines[1:]:
            name, sep, value = raw.partition(b":")
            if not sep or not name or name != name.strip() or b" " in name:
                raise BadRequest(400, "malformed header line")
            try:
                key = name.decode("ascii").lower()
            except UnicodeDecodeError:
                raise BadRequest(400, "malformed header name") from None
            text = value.strip().decode("latin-1")
            if key in headers and key == "content-length" and headers[key] != text:
                raise BadRequest(400, "conflicting content-length")
            headers[key] = text
        if "transfer-encoding" in headers:
            raise BadRequest(501, "chunked request bodies are not supported")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise BadRequest(400, "bad content-length")
        length = int(length_text)
        if length > _MAX_BODY:
            raise BadRequest(413, "request body too large")
        try:
            body = await conn.receive_exactly(length) if length else b""
        except (anyio.IncompleteRead, anyio.EndOfStream):
            return None
        return HttpRequest(method, target, version, headers, body)
    return None


def head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_response(
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
    await conn.send(head(status, all_headers) + body)


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}
    )


def chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk (one SSE event per chunk, as streaming servers write them)."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def sse(obj: object) -> bytes:
    return chunk(b"data: " + msgspec.json.encode(obj) + b"\n\n")


LAST_CHUNK = b"0\r\n\r\n"


async def watching(sock: SocketStream, conn: BufferedByteStream, work: Awaitable[bool]) -> bool:
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


def reset(conn: SocketStream) -> None:
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


class ChatReply:
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
        return sse(self._envelope([choice]))

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
        return sse(self._envelope([choice]))

    def tool_call_chunk(self, index: int, id_: str | None, name: str | None, args: str) -> bytes:
        """One tool-call delta (hostile-upstream faults: many calls, endless arguments)."""
        piece: dict[str, Any] = {"index": index}
        if id_ is not None:
            piece["id"] = id_
            piece["type"] = "function"
        function: dict[str, Any] = {"arguments": args}
        if name is not None:
            function["name"] = name
        piece["function"] = function
        delta = {"tool_calls": [piece]}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
        return sse(self._envelope([choice]))

    def finish_chunks(self, step: SimStep, *, usage: int | None = None) -> bytes:
        """The last chunks; ``usage`` (a fault) replaces every reported token count."""
        c = step.chunk
        choice = {"index": 0, "delta": {}, "logprobs": None, "finish_reason": c.finish_reason}
        out = sse(self._envelope([choice]))
        if self.include_usage and usage is not None:
            out += sse({**self._envelope([]), "usage": self._usage(usage, usage)})
        elif self.include_usage and c.usage is not None:
            counts = self._usage(c.usage.input_tokens, c.usage.output_tokens)
            out += sse({**self._envelope([]), "usage": counts})
        return out + chunk(b"data: [DONE]\n\n")

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
