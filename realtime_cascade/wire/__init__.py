"""The wire contract: client and server events of the Realtime-compatible protocol, as msgspec
structs.

Client events form ONE closed tagged union (``type`` is the tag), decoded by ONE long-lived
:class:`ClientDecoder`; server events are structs encoded by an :class:`EventWriter`, which
stamps each with a per-session ``event_id``. ``protocols/README.md`` is the prose spec and
``protocols/schema/`` the JSON Schema generated from these structs (``realtime-cascade schema``).

Client structs ignore fields they do not know (OpenAI clients send more than we use), except
inside our own ``cascade`` extension objects, where a typo should be an error, not a no-op.

Errors a frame can cause, each one an ``error`` event for the client::

    ProtocolError            a client frame the server cannot act on (code, message, param)
    ├── FrameError           the frame itself: binary, too large, not JSON, too many
    ├── EventError           JSON that is not a known, well-formed client event
    └── server.session.SessionError a well-formed event that the session's state refuses
"""

from __future__ import annotations

from .client import *  # noqa: F403
from .common import *  # noqa: F403
from .server import *  # noqa: F403
