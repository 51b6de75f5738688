"""What a subcommand reports to the person at the terminal: one line on stderr, and a status."""

from __future__ import annotations

import errno


class CommandError(Exception):
    """The command cannot go on for a reason the user can fix; the message says how.

    ``main`` prints it as one line (``realtime-cascade: MESSAGE``), no traceback, and exits with
    ``status`` (2: the invocation or the environment is wrong).
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def port_in_use(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed bind on a busy address (asyncio raises a plain OSError, or an
    ExceptionGroup of them when it tried several addresses)."""
    if isinstance(exc, OSError):
        return exc.errno == errno.EADDRINUSE
    if isinstance(exc, BaseExceptionGroup):
        return any(port_in_use(e) for e in exc.exceptions)
    return False
