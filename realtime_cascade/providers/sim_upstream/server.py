"""The sim upstream's server: a task per connection; streams keep time on a :class:`StreamClock`."""

from __future__ import annotations

import http
import importlib
import importlib.util
import logging
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import SocketAttribute, SocketStream, TaskStatus
from anyio.streams.buffered import BufferedByteStream

from ..sim import SCRIPTS, Script, SimProfile, SimStep, schedule
from .faults import Fault, FaultError, parse_fault
from .shapes import (
    CHAT_DECODER,
    LAST_CHUNK,
    BadRequest,
    ChatReply,
    HttpRequest,
    ReceivedRequest,
    chunk,
    error_body,
    head,
    read_request,
    reset,
    send_response,
    sse,
    tier_request,
    watching,
)

log = logging.getLogger(__name__)


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
        self.accepted_connections = 0  # every connection ever accepted (reuse shows here)

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
        self.accepted_connections += 1
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
                        request = await read_request(conn)
                    except BadRequest as exc:
                        body = error_body(exc.message, "invalid_request_error")
                        await send_response(conn, exc.status, body, keep_alive=False)
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

    async def _respond(
        self, sock: SocketStream, conn: BufferedByteStream, req: HttpRequest
    ) -> bool:
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

    def _record(self, req: HttpRequest, body: Any) -> None:
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
        body = error_body(message, type_, code)
        await send_response(conn, status, body, keep_alive=keep, headers=headers)
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
        await send_response(conn, 200, body, keep_alive=keep)
        return keep

    async def _chat(self, sock: SocketStream, conn: BufferedByteStream, req: HttpRequest) -> bool:
        keep = req.keep_alive
        try:
            raw: Any = msgspec.json.decode(req.body)
        except msgspec.DecodeError:
            self._record(req, None)
            return await self._error(conn, 400, "the body is not JSON", keep)
        self._record(req, raw)
        try:
            chat = CHAT_DECODER.decode(req.body)
            fault = parse_fault(chat.sim_fault) if chat.sim_fault is not None else self.fault
            tier = tier_request(chat)
        except msgspec.ValidationError as exc:
            return await self._error(conn, 400, f"invalid request: {exc}", keep)
        except FaultError as exc:
            return await self._error(conn, 400, str(exc), keep)
        except BadRequest as exc:
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
            await send_response(conn, 200, page, content_type="text/html", keep_alive=keep)
            return keep
        steps = schedule(profile, chat.model, self._script(profile), tier)
        reply = ChatReply(chat.model, chat)
        if chat.stream:
            self.open_streams += 1
            try:
                return await watching(
                    sock, conn, self._stream(sock, conn, reply, steps, fault, keep)
                )
            finally:
                self.open_streams -= 1
        return await watching(sock, conn, self._complete(sock, conn, reply, steps, fault, keep))

    async def _status_fault(
        self, conn: BufferedByteStream, req: HttpRequest, fault: Fault, keep: bool
    ) -> bool:
        status = fault.status
        assert status is not None
        if fault.error_bytes is not None:  # a huge error body (a proxy's page, a dump)
            message = padded(f"{http.HTTPStatus(status).phrase} (sim fault)", fault.error_bytes)
            return await self._error(conn, status, message, keep, type_="server_error")
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
        reply: ChatReply,
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
        await conn.send(head(200, headers))
        if fault.keepalive_ms is not None:
            # A server that only ever pings: inter-byte timeouts never fire, only the client's
            # own time-to-first-token budget can end this.
            while True:
                await conn.send(chunk(b": ping\n\n"))
                await anyio.sleep(fault.keepalive_ms / 1000.0)
        await conn.send(reply.role_chunk())
        if fault.tool_calls is not None:
            for i in range(fault.tool_calls):
                await conn.send(reply.tool_call_chunk(i, f"call_sim{i}", "get_weather", "{}"))
        if fault.arg_chunk_bytes is not None:
            # Arguments that never end: the client must give up on its own size limit.
            piece = "a" * fault.arg_chunk_bytes
            await conn.send(reply.tool_call_chunk(0, "call_sim_endless", "get_weather", '{"q":"'))
            while True:
                await conn.send(reply.tool_call_chunk(0, None, None, piece))
        tokens, final = steps[:-1], steps[-1]
        cut = fault.cut()
        for k, step in enumerate(tokens):
            if cut is not None and cut[0] == k:
                return await self._cut(sock, conn, cut[1], fault)
            delay = fault.ttft_ms / 1000.0 if k == 0 and fault.ttft_ms is not None else step.delay
            wait = clock.wait(delay, anyio.current_time())
            if wait > 0:
                await anyio.sleep(wait)
            await conn.send(reply.step_chunk(step))
        if cut is not None:
            return await self._cut(sock, conn, cut[1], fault)
        delay = fault.ttft_ms / 1000.0 if not tokens and fault.ttft_ms is not None else final.delay
        wait = clock.wait(delay, anyio.current_time())
        if wait > 0:
            await anyio.sleep(wait)
        await conn.send(reply.finish_chunks(final, usage=fault.usage) + LAST_CHUNK)
        return keep

    async def _cut(
        self, sock: SocketStream, conn: BufferedByteStream, how: str, fault: Fault
    ) -> bool:
        if how == "stall":
            await anyio.sleep_forever()  # until the watcher sees the client hang up
        if how == "drop":
            reset(sock)
            await sock.aclose()
            return False
        if how == "eof":
            return False  # the handler closes the socket: FIN without the chunked terminator
        if how == "malformed":
            await conn.send(chunk(b'data: {"choices": [{"delta": {"content": "tru\n\n'))
        else:
            error = {
                "message": padded(
                    "The server had an error while processing your request (sim).",
                    fault.error_bytes or 0,
                ),
                "type": "server_error",
                "param": None,
                "code": 500,
            }
            await conn.send(sse({"error": error}))
        await conn.send(LAST_CHUNK)
        return False

    async def _complete(
        self,
        sock: SocketStream,
        conn: BufferedByteStream,
        reply: ChatReply,
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
            reset(sock)
            await sock.aclose()
            return False
        if cut is not None and cut[1] == "eof":
            return False
        if cut is not None and cut[1] == "malformed":
            await send_response(conn, 200, b'{"choices": [', keep_alive=False)
            return False
        if cut is not None:
            return await self._error(conn, 500, "server error (sim)", keep, type_="server_error")
        await send_response(conn, 200, reply.completion(steps), keep_alive=keep)
        return keep


def padded(message: str, size: int) -> str:
    """``message`` filled up to ``size`` characters (an ``error_bytes`` fault)."""
    return message + " " + "x" * max(0, size - len(message) - 1) if size > len(message) else message


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
