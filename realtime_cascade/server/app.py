"""The websockets adapter: HTTP admission, frames in, events out, limits, shutdown.

    GET /v1/realtime?model=PROFILE   WebSocket; the Realtime-compatible protocol (protocols/)
    GET /healthz                     200 JSON while serving, 503 while shutting down
    GET /metrics                     Prometheus text (realtime_cascade.metrics; [metrics])
    GET /anything-else               static files (ServerConfig.static_dir, else the demo page)

Admission happens before the WebSocket handshake (``process_request``), so a refused client
costs an HTTP response and nothing more: 401 for a missing or wrong bearer key, 403 for a
browser Origin not on the allow-list, 503 at the session limit or while shutting down.

Per connection, three tasks share one task group: the reader (decode, rate-limit, dispatch to
the :class:`~.session.Session`), the writer (drains the bounded send queue
into the socket) and a watcher that closes the connection (1013) when the queue overflows.
The session never awaits the socket: a slow client fills only its own queue, and is then
dropped rather than allowed to grow memory or stall anyone else.

Frame limits are two-tier: a frame over ``max_frame_bytes`` is refused with an ``error``
event and the session continues; a frame over ``HARD_FRAME_FACTOR`` × that is cut off by
websockets itself (close 1009) before it is buffered whole.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

import anyio
import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from .. import config as config_mod
from .. import wire
from ..models.provider import start_profiles, warm_local
from ..observe.governance import OPEN
from ..observe.observer import NULL_OBSERVER, Observer
from ..runtime import CascadeProfile
from .admission import TokenBucket, client_identity, matched_key
from .connection import GuardedConnection, close_within
from .conversation import ConversationLimits, IdFactory, new_id
from .heap import HeapTrimmer
from .ops import Operations
from .redact import RedactingLogger, Redactor
from .session import Session
from .state import SharedState, SpendRecorder, build_state

log = logging.getLogger(__name__)

REALTIME_PATH = "/v1/realtime"
HARD_FRAME_FACTOR = 4
SHUTDOWN_GRACE_S = 5.0
_CLOSE_TIMEOUT_S = 2.0
_WRITER_GRACE_S = _CLOSE_TIMEOUT_S + 1.0  # the writer's close handshake, at a session's end
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}
_KEY_PROTOCOL = "openai-insecure-api-key."  # browsers cannot set headers on a WebSocket
_SINGLE_HEADERS = ("Authorization", "Origin", "Host")


# --- admission (pure) -----------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hostname_of(authority: str) -> str:
    """The host of a ``Host`` header or an Origin's authority: no port, no brackets."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    if authority.count(":") == 1:
        authority = authority.partition(":")[0]
    return authority.lower().rstrip(".")


def duplicated_header(headers: Headers) -> str | None:
    """The first of the headers admission reads that the request repeats (refused: 400)."""
    for name in _SINGLE_HEADERS:
        if len(headers.get_all(name)) > 1:
            return name
    return None


def offered_keys(headers: Headers) -> list[str]:
    """Bearer keys a client offers: ``Authorization: Bearer K`` or the browser subprotocol."""
    keys: list[str] = []
    values = headers.get_all("Authorization")
    auth = values[0] if len(values) == 1 else ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    for value in headers.get_all("Sec-WebSocket-Protocol"):
        for proto in value.split(","):
            proto = proto.strip()
            if proto.startswith(_KEY_PROTOCOL):
                keys.append(proto[len(_KEY_PROTOCOL) :])
    return keys


def authorized(offered: list[str], keys: tuple[str, ...]) -> bool:
    """No keys configured, or one of ``offered`` is one of them (compared in constant time)."""
    return not keys or matched_key(offered, keys) is not None


def origin_allowed(
    origin: str | None, host: str | None, allowed: tuple[str, ...], *, loopback_only: bool = False
) -> bool:
    """No Origin (not a browser): allowed. Else it must be listed ("*": any), or, with an
    empty list, be the server's own host (the page it served) — and, with ``loopback_only``
    (a server without keys), a loopback one: a DNS-rebinding page is the same host as the
    name it rebinds, so only a loopback name tells the server's own page apart."""
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    if allowed or host is None:
        return False
    _, _, origin_host = origin.partition("://")
    if origin_host != host:
        return False
    return not loopback_only or is_loopback(hostname_of(origin_host))


def host_allowed(host: str | None, allowed: tuple[str, ...], *, loopback_only: bool) -> bool:
    """The ``Host`` header: listed ("*": any; names match with or without the port), or,
    with an empty list, any on a server with keys and a loopback name on one without (a
    rebound name such as ``evil.example`` resolving to 127.0.0.1 is refused)."""
    if "*" in allowed:
        return True
    if allowed:
        return host is not None and (host in allowed or hostname_of(host) in allowed)
    if not loopback_only:
        return True
    return host is not None and is_loopback(hostname_of(host))


# --- the send queue -------------------------------------------------------------------------------


class SendQueue:
    """A session's bounded outbox. ``put`` never blocks: when full, the session is dropped.

    Bounded twice: in events (``size``) and in bytes (``max_bytes``, what the queued events
    hold: one large reply, such as a retrieved 1 MB item, weighs what it is). Dropping one
    event silently would corrupt the client's view of the conversation, so a full queue ends
    the connection (1013, try again later) instead.

    While nothing is queued or being written and the socket takes more (the transport's
    buffer stays under websockets' high-water mark with the event in it), ``put`` frames the
    event and writes it to the transport at once, as ``ws.send`` would, without waking the
    writer task: most events (one delta per released token) go out that way, with no task
    switch and no queue. Once the socket pushes back, events queue and the writer sends them
    in order; direct writes resume only when it has caught up, so the order is the order of
    ``put``.
    """

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        self._tx, self._rx = anyio.create_memory_object_stream[bytes](size)
        self.max_bytes = max_bytes  # 0: events only
        self.queued_bytes = 0  # queued, or being written to the socket
        self.overflowed = anyio.Event()
        self.drained = anyio.Event()  # the writer is done
        self.close_code: int = CloseCode.NORMAL_CLOSURE
        self.close_reason = ""
        self._closed = False
        self._ws: ServerConnection | None = None  # set while the writer runs

    def put(self, data: bytes) -> None:
        if self.overflowed.is_set():
            return
        ws = self._ws
        if (
            ws is not None
            and not self.queued_bytes
            and not self._closed
            and not ws.paused
            and ws.send_in_progress is None
            and ws.protocol.state is State.OPEN
            # uvloop may hold writes until the end of the loop's iteration, and only then
            # pause us: bound what direct writes leave in the transport by the high-water mark
            and ws.transport.get_write_buffer_size() + len(data) <= ws.write_limit_high
        ):
            try:
                ws.protocol.send_text(data)
                ws.send_data()
            except Exception:  # a transport that failed under us: the connection is over
                log.debug("direct write failed; aborting the connection", exc_info=True)
                ws.transport.abort()
            return
        n = len(data)
        if self.max_bytes and self.queued_bytes + n > self.max_bytes:
            self.overflowed.set()
            return
        try:
            self._tx.send_nowait(data)
        except anyio.WouldBlock:
            self.overflowed.set()
            return
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the connection is going away; nothing more will be read
        self.queued_bytes += n

    def close(self, code: int, reason: str) -> None:
        """No more events: the writer drains what is queued, then closes with ``code``."""
        if self._closed:
            return
        self._closed = True
        self.close_code, self.close_reason = code, reason
        self._tx.close()

    async def pump(self, ws: ServerConnection) -> None:
        """The writer task."""
        self._ws = ws
        try:
            async with self._rx:
                async for data in self._rx:
                    await ws.send(data, text=True)  # already UTF-8 JSON: no decode, no re-encode
                    self.queued_bytes -= len(data)
            await close_within(ws, self.close_code, self.close_reason)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self.drained.set()


# --- the server -----------------------------------------------------------------------------------


@dataclass
class _Live:
    session: Session
    queue: SendQueue
    ws: ServerConnection
    identity: str = ""  # what per-key limits count against (admission.client_identity)
    last_frame: float = 0.0  # when the client last sent a data frame (the idle timeout's)
    ended: bool = False  # the connection's handler is done: its tasks end on their own


def default_static_dir() -> Path | None:
    """The browser console (``demos/web`` in the repository, ``realtime_cascade.demos`` once
    installed), or None where the demos are not installed."""
    try:
        root = Path(str(resources.files("realtime_cascade.demos").joinpath("web")))
    except ModuleNotFoundError:
        return None
    return root if root.is_dir() else None


class RealtimeServer:
    """The server for one config. ``async with RealtimeServer(cfg) as srv:`` serves until the
    block ends (or :meth:`shutdown`); ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(
        self,
        config: config_mod.Config,
        *,
        host: str | None = None,
        port: int | None = None,
        profiles: Mapping[str, CascadeProfile] | None = None,
        ids: IdFactory = new_id,
        clock: Callable[[], float] = time.monotonic,
        observers: Sequence[Observer] = (),
        state: SharedState | None = None,
        reuse_port: bool = False,
        start_local: bool = False,
    ) -> None:
        self.config = config
        self.limits = config.server
        self.host = host if host is not None else self.limits.host
        self._port = port if port is not None else self.limits.port
        self._given_profiles = dict(profiles) if profiles is not None else None
        self.profiles: dict[str, CascadeProfile] = {}
        self._ids = ids
        self._clock = clock
        self._observers = tuple(observers)  # beside the config's audit log, metrics, telemetry
        self.ops: Operations | None = None  # from start() on: keys, policies, observers
        self._decoder = wire.ClientDecoder()
        self._encoder = msgspec.json.Encoder()
        self._live: dict[str, _Live] = {}
        # Per-key limits and spend: this process's memory, or Redis shared by every worker.
        self.state = state if state is not None else build_state(config)
        self._reuse_port = reuse_port  # `serve --workers N`: N processes share the port
        # `serve`: local model servers start (and are healthy) before the port opens, so the
        # first turn does not spend its first-token budget loading a model.
        self._start_local = start_local
        self.local_status: dict[str, str | None] = {}  # profile -> None (ready) or why not
        self._server: Server | None = None
        self._stopping = False
        self.heap = HeapTrimmer(self.limits.heap_trim_delay_s)
        static = self.limits.static_dir
        self.static_dir = Path(static).resolve() if static else default_static_dir()

    # -- lifecycle

    async def __aenter__(self) -> RealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown(grace_s=0.0)

    def check_exposure(self) -> None:
        """Refuse to serve open on a non-loopback host unless told to; warn when told to."""
        if self.limits.api_keys or self.config.keys or is_loopback(self.host):
            return
        if not self.limits.allow_unauthenticated:
            raise config_mod.ConfigError(
                f"refusing to serve {self.host} without api_keys: set server.api_keys, or "
                "server.allow_unauthenticated = true to serve it open"
            )
        log.warning("serving %s with no API keys: anyone who can reach it can use it", self.host)

    async def start(self) -> None:
        self.check_exposure()
        if self._given_profiles is not None:
            self.profiles = self._given_profiles
        else:
            # One per profile for the server's life: the router inside learns across sessions.
            self.profiles = {
                name: config_mod.build_profile(self.config, name) for name in self.config.profiles
            }
        spend = SpendRecorder(self.state, self._identity_of)
        self.ops = Operations(self.config, observers=(*self._observers, spend))
        await self.state.start(self.profiles)
        limits = self.limits
        redact = Redactor((*limits.api_keys, *self.ops.keys.secrets))

        def connection(*args: Any, **kwargs: Any) -> GuardedConnection:
            rate = limits.max_events_per_second
            return GuardedConnection(*args, **kwargs).guard(
                TokenBucket(rate, max(1.0, rate), self._clock()),
                self._clock,
                limits.send_queue_bytes,
            )

        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            process_request=self._admit,
            select_subprotocol=_select_subprotocol,
            max_size=self.limits.max_frame_bytes * HARD_FRAME_FACTOR,
            max_queue=8,
            compression=None,  # small JSON events: deflate costs more latency than it saves
            close_timeout=_CLOSE_TIMEOUT_S,
            backlog=min(4096, max(128, self.limits.max_sessions)),  # bursts of connects
            create_connection=cast(type[ServerConnection], connection),
            logger=RedactingLogger(logging.getLogger("websockets.server"), redact),
            reuse_port=self._reuse_port,
        )
        if self._start_local:
            # After the bind (a busy port fails at once, loading nothing), before start()
            # returns: `serve` announces its URLs only once the models answer.
            await self._start_local_tiers()

    async def _start_local_tiers(self) -> None:
        t0 = time.monotonic()
        results = await start_profiles({n: p.providers for n, p in self.profiles.items()})
        for name, error in results.items():
            # debug: `serve` prints each profile's outcome itself, on stdout
            if error is None:
                log.debug("profile %r: local models ready in %.1f s", name, time.monotonic() - t0)
            else:
                log.debug(
                    "profile %r: local models not started (%s); its turns fall back until "
                    "they are",
                    name,
                    error.message,
                )
            self.local_status[name] = None if error is None else error.message
            profile = self.profiles[name]
            if error is None and profile.agent is not None:
                # The agent's prompt is what every session of the profile opens with.
                bound = profile.agent.bind("warm-up")
                warmed = await warm_local(profile.providers, bound.instructions, bound.tools)
                log.debug("profile %r: %d local tier(s) warmed", name, warmed)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, model: str = "default") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{REALTIME_PATH}?model={model}"

    @property
    def session_count(self) -> int:
        return len(self._live)

    async def shutdown(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting; let running responses finish for ``grace_s``, then cancel them
        (each still gets its ``response.done``); close every session with 1001."""
        if self._server is None:
            return
        self._stopping = True

        async def drain(live: _Live) -> None:
            await live.session.finish_response(grace_s, "server_shutdown")
            live.queue.close(CloseCode.GOING_AWAY, "server shutting down")

        async with anyio.create_task_group() as tg:
            for live in list(self._live.values()):
                tg.start_soon(drain, live)
        server, self._server = self._server, None
        server.close(close_connections=True)
        await server.wait_closed()
        if self._given_profiles is None:
            for profile in self.profiles.values():
                await profile.aclose()
        if self.ops is not None:  # last: every response is done, so the audit log drains whole
            await self.ops.aclose()
        await self.state.aclose()
        self.heap.close()

    # -- HTTP: admission, health, static files

    def _json(self, status: int, body: object) -> Response:
        headers = Headers([("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        return Response(status, _reason(status), headers, json.dumps(body).encode())

    @property
    def _keyless(self) -> bool:
        secrets = self.ops.keys.secrets if self.ops is not None else self.limits.api_keys
        return not secrets

    async def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        path, _, _ = request.path.partition("?")
        headers = request.headers
        duplicated = duplicated_header(headers)
        if duplicated is not None:
            return _text(400, f"more than one {duplicated} header\n")
        loopback_only = self._keyless
        if not host_allowed(
            headers.get("Host"), self.limits.allowed_hosts, loopback_only=loopback_only
        ):
            return _text(403, "this Host is not allowed (server.allowed_hosts)\n")
        if path == "/healthz":
            status = 503 if self._stopping else 200
            body = {
                "status": "stopping" if self._stopping else "ok",
                "sessions": len(self._live),
                "profiles": sorted(self.profiles),
                "worker": os.getpid(),
                "state": {"kind": self.state.kind, "errors": self.state.errors},
            }
            return self._json(status, body)
        if path == "/metrics" and self.ops is not None:
            code, text, kind = self.ops.metrics_body(offered_keys(request.headers))
            headers = Headers([("Content-Type", kind), ("Cache-Control", "no-store")])
            return Response(code, _reason(code), headers, text)
        if path != REALTIME_PATH:
            return await self._static(path)
        if self._stopping:
            return ws.respond(503, "the server is shutting down\n")
        origin, host = headers.get("Origin"), headers.get("Host")
        if not origin_allowed(
            origin, host, self.limits.allowed_origins, loopback_only=loopback_only
        ):
            return ws.respond(403, "this Origin is not allowed\n")
        secrets = self.ops.keys.secrets if self.ops is not None else self.limits.api_keys
        if not authorized(offered_keys(headers), secrets):
            response = ws.respond(401, "missing or invalid API key (Authorization: Bearer KEY)\n")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if len(self._live) >= self.limits.max_sessions:
            return ws.respond(503, "too many sessions; try again later\n")
        identity = self._identity(ws)
        if identity is not None and not await self.state.can_open(identity):
            return ws.respond(429, "too many sessions for this API key; try again later\n")
        return None

    def _identity_of(self, session_id: str) -> str | None:
        live = self._live.get(session_id)
        return None if live is None else live.identity

    def _identity(self, ws: ServerConnection) -> str | None:
        assert ws.request is not None
        offered = offered_keys(ws.request.headers)
        secrets = self.ops.keys.secrets if self.ops is not None else self.limits.api_keys
        return client_identity(offered, secrets, ws.remote_address)

    async def _static(self, path: str) -> Response:
        root = self.static_dir
        if root is None:
            return _text(404, "not found\n")
        rel = path.lstrip("/") or "index.html"
        try:
            target = (root / rel).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_relative_to(root) or not target.is_file():
                return _text(404, "not found\n")
            body = await anyio.Path(target).read_bytes()
        except (OSError, ValueError, RuntimeError):  # NUL, a name too long, a symlink loop
            return _text(404, "not found\n")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        headers = Headers([("Content-Type", kind), ("Cache-Control", "no-cache")])
        return Response(200, "OK", headers, body)

    # -- WebSocket sessions

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(ws.request.path.partition("?")[2])
        model = query.get("model", ["default"])[0]
        profile = self.profiles.get(model)
        identity = self._identity(ws) or ""
        session_id = self._ids("sess")
        if (
            profile is None
            or len(self._live) >= self.limits.max_sessions
            or not await self.state.open_session(identity, session_id)
        ):
            await self._refuse(ws, model, unknown=profile is None)
            return
        queue = SendQueue(self.limits.send_queue_size, self.limits.send_queue_bytes)
        limits = ConversationLimits(
            self.limits.max_items, self.limits.max_item_bytes, self.limits.max_conversation_bytes
        )
        async with anyio.create_task_group() as tg:
            access = OPEN
            if self.ops is not None:
                access = self.ops.access(offered_keys(ws.request.headers)) or OPEN
            observer = self.ops.observer if self.ops is not None else NULL_OBSERVER
            session = Session(
                profile,
                queue.put,
                tg,
                session_id=session_id,
                ids=self._ids,
                access=access,
                observer=observer,
                limits=limits,
            )
            live = self._live[session.id] = _Live(session, queue, ws, identity, self._clock())
            tg.start_soon(queue.pump, ws)
            tg.start_soon(self._watch, live)
            session.start()
            session.observer.session_started(session.info)
            try:
                await self._read(live)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await self.state.close_session(identity, session.id)
                    await session.cancel_response("connection_closed")
                del self._live[session.id]
                session.observer.session_ended(session.info)
                # The pump and the watcher end by themselves: a task the group cancels keeps
                # its frames (the session, the queue) in a reference cycle through its
                # CancelledError (anyio's task_done holds it), freed only by a full collection.
                live.ended = True
                queue.close(CloseCode.NORMAL_CLOSURE, "")
                queue.overflowed.set()  # wakes the watcher
                with anyio.CancelScope(shield=True), anyio.move_on_after(_WRITER_GRACE_S):
                    await queue.drained.wait()
                tg.cancel_scope.cancel()  # only what did not end in time
        if isinstance(ws, GuardedConnection):
            ws.forget_handshake()
        self.heap.session_ended()

    async def _refuse(self, ws: ServerConnection, model: str, *, unknown: bool) -> None:
        if unknown:
            known = ", ".join(sorted(self.profiles))
            error = wire.ProtocolError(
                "model_not_found",
                f"unknown model {model!r} (cascade profiles: {known})",
                param="model",
            )
            code, reason = CloseCode.POLICY_VIOLATION, "unknown model"
        else:
            error = wire.ProtocolError("session_limit", "too many sessions; try again later")
            code, reason = CloseCode.TRY_AGAIN_LATER, "too many sessions"
        writer = wire.EventWriter("refused")
        try:
            await ws.send(writer.encode(wire.error_event(error)).decode())
            await ws.close(code, reason)
        except ConnectionClosed:
            pass

    async def _watch(self, live: _Live) -> None:
        """Close the connection when its send queue overflows (1013, the client is too slow)
        or when it has been idle for ``idle_timeout_s`` with no response running (1001)."""
        queue, timeout = live.queue, self.limits.idle_timeout_s
        while not live.ended:
            left = 3600.0 if timeout <= 0 else live.last_frame + timeout - self._clock()
            with anyio.move_on_after(max(left, 1.0)):
                await queue.overflowed.wait()
            if live.ended:
                return
            if queue.overflowed.is_set():
                log.warning(
                    "session %s: send queue full, closing (client too slow)", live.session.id
                )
                # Closing ends the reader, whose cleanup cancels the running turn.
                await close_within(
                    live.ws, CloseCode.TRY_AGAIN_LATER, "send queue full: client too slow"
                )
                return
            idle = self._clock() - live.last_frame
            if timeout > 0 and idle >= timeout and not live.session.responding:
                log.info("session %s: idle for %.0f s, closing", live.session.id, idle)
                live.session.error(
                    wire.ProtocolError(
                        "session_idle_timeout",
                        f"no event from the client for {timeout:g} s; the session is closed",
                    )
                )
                live.queue.close(CloseCode.GOING_AWAY, "idle timeout")
                return

    async def _read(self, live: _Live) -> None:
        session, ws, limits = live.session, live.ws, self.limits
        rate = limits.max_events_per_second
        # One bucket for the connection's data and control frames (pings: GuardedConnection).
        guarded = ws.events if isinstance(ws, GuardedConnection) else None
        bucket = guarded or TokenBucket(rate, max(1.0, rate), self._clock())
        strikes = 0
        soft_limit = limits.max_frame_bytes
        try:
            async for message in ws:
                now = live.last_frame = self._clock()
                if not (bucket.take(now) and await self.state.take_event(live.identity, now)):
                    strikes += 1
                    if strikes > bucket.burst:
                        # Kept flooding after a second's worth of refusals: a policy matter.
                        await ws.close(CloseCode.POLICY_VIOLATION, "event rate limit exceeded")
                        return
                    session.error(
                        wire.FrameError(
                            "rate_limit_exceeded",
                            f"more than {rate:g} events a second; this event was dropped",
                            event_id=self._decoder.event_id_of(message),
                        )
                    )
                    continue
                strikes = 0
                try:
                    event = self._decode(message, soft_limit)
                except wire.ProtocolError as exc:
                    session.error(exc)
                    continue
                except Exception:  # a decoder bug must cost one frame, not the session
                    log.exception("session %s: a frame could not be decoded", session.id)
                    error = wire.ProtocolError(
                        "internal_error", "the server failed to decode this frame"
                    )
                    error.error_type = "server_error"
                    session.error(error)
                    continue
                if isinstance(event, wire.ResponseCreate) and not await self._within_budget(live):
                    session.error(
                        wire.ProtocolError(
                            "budget_exhausted",
                            "this API key has spent its budget ([state] key_budget_usd)",
                            event_id=event.event_id,
                        )
                    )
                    continue
                try:
                    await session.handle(event)
                except wire.ProtocolError as exc:
                    exc.event_id = exc.event_id or event.event_id
                    session.error(exc)
                except Exception:  # a bug must cost one event, not the session
                    log.exception("session %s: %s failed", session.id, type(event).__name__)
                    error = wire.ProtocolError(
                        "internal_error",
                        "the server failed to handle this event",
                        event_id=event.event_id,
                    )
                    error.error_type = "server_error"
                    session.error(error)
        except ConnectionClosed:
            pass

    async def _within_budget(self, live: _Live) -> bool:
        left = await self.state.key_budget_left(live.identity)
        return left is None or left > 0

    def _decode(self, message: str | bytes, soft_limit: int) -> wire.ClientEvent:
        if isinstance(message, bytes):
            raise wire.FrameError(
                "binary_frame_not_supported",
                "binary frames are not supported; send each event as a JSON text frame",
            )
        # len() counts characters; only near the limit is the exact UTF-8 size worth computing
        n = len(message)
        if n > soft_limit or (4 * n > soft_limit and len(message.encode()) > soft_limit):
            raise wire.FrameError(
                "frame_too_large",
                f"the frame is larger than {soft_limit} bytes; it was dropped",
                event_id=self._decoder.event_id_of(message),
            )
        return self._decoder.decode(message)


def _select_subprotocol(ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
    # A browser that offers protocols fails the handshake unless one is selected.
    return Subprotocol("realtime") if "realtime" in offered else None


def _reason(status: int) -> str:
    from http import HTTPStatus

    return HTTPStatus(status).phrase


def _text(status: int, text: str) -> Response:
    headers = Headers([("Content-Type", "text/plain; charset=utf-8")])
    return Response(status, _reason(status), headers, text.encode())
