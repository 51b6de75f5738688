"""The server's WebSocket connection: websockets' own, with what a hostile client could grow.

websockets answers a ping with a pong by itself, below the session: a client that sends pings
and never reads would pile pongs up in the socket's write buffer without limit, and pings never
reach the event rate limit. :class:`GuardedConnection` therefore

- counts every control frame (ping, pong) against the connection's event bucket, the same
  one its data frames take from (``server.max_events_per_second``): a control frame with no
  token left fails the connection (1008);
- aborts the connection when what is waiting in the socket's write buffer exceeds
  ``write_cap`` bytes after the client's data was handled (the send queue bounds the
  session's own output; this bounds websockets' automatic replies).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Frame, Opcode

from .admission import TokenBucket

log = logging.getLogger(__name__)

_CONTROL = (Opcode.PING, Opcode.PONG)
_ABORT_AFTER_S = 2.0


class GuardedConnection(ServerConnection):
    """A :class:`ServerConnection` whose control frames and write buffer are bounded."""

    events: TokenBucket | None = None  # shared with the session's data frames
    clock: Callable[[], float] | None = None
    write_cap: int = 0  # bytes; 0: no cap
    refused: str = ""  # why the guard ended the connection, once it did

    def guard(
        self, events: TokenBucket, clock: Callable[[], float], write_cap: int
    ) -> GuardedConnection:
        self.events, self.clock, self.write_cap = events, clock, write_cap
        return self

    def process_event(self, event: Any) -> None:
        if (
            isinstance(event, Frame)
            and event.opcode in _CONTROL
            and self.events is not None
            and self.clock is not None
            and not self.refused
            and not self.events.take(self.clock())
        ):
            self._refuse("control frame rate limit exceeded")
            return
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cap = self.write_cap
        if cap and not self.refused and self.transport.get_write_buffer_size() > cap:
            self.refused = "write buffer full: client not reading"
            log.warning("connection %s: %s; aborted", self.id, self.refused)
            self.transport.abort()

    def _refuse(self, reason: str) -> None:
        self.refused = reason
        log.warning("connection %s: %s; closing (1008)", self.id, reason)
        self.protocol.fail(CloseCode.POLICY_VIOLATION, reason)
        try:
            self.send_data()
        except Exception:  # the transport is already gone: nothing left to tell the client
            self.transport.abort()
            return
        # close() waits for the close frame to be written, which a client that does not read
        # never lets happen: abort after the close timeout.
        self.transport.close()
        self.loop.call_later(self.close_timeout or _ABORT_AFTER_S, self.transport.abort)

    def forget_handshake(self) -> None:
        """Drop websockets' bound ``select_subprotocol`` callback: it closes over this
        connection, a reference cycle that would keep the connection (and the session's
        send queue) alive after it ends, until a full collection."""
        vars(self.protocol).pop("select_subprotocol", None)


async def close_within(ws: Connection, code: int, reason: str) -> None:
    """Close with ``code``, and abort the TCP connection if that has not ended it within the
    close timeout. websockets' ``close`` first waits for the close frame to be *written*
    (``drain``, with no deadline), and its close timeout only starts after that: against a
    client that never reads but keeps sending (so the socket never times out), the close
    would wait forever and keep the session, its queue and its conversation alive."""
    ws.loop.call_later(ws.close_timeout or _ABORT_AFTER_S, ws.transport.abort)
    await ws.close(code, reason)
