"""Errors of a session's state: a well-formed client event that the session refuses."""

from __future__ import annotations

from .. import wire


class SessionError(wire.ProtocolError):
    """A well-formed client event that the session's current state refuses."""
