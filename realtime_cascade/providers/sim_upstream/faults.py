"""Faults the sim upstream injects, per request or for every request (see the package doc)."""

from __future__ import annotations

import msgspec


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
    # Hostile upstreams (issue 12): what a broken or malicious provider could send.
    tool_calls: int | None = None  # this many distinct tool calls before the reply
    arg_chunk_bytes: int | None = None  # one tool call whose arguments never end, in chunks
    usage: int | None = None  # every usage figure reported as this (negative, absurd)
    error_bytes: int | None = None  # error messages (status faults, error events) this long

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
_SIZE_FAULTS = {"tool_calls", "arg_chunk_bytes", "error_bytes"}
_MAX_SIZE = 64 << 20  # a fault spec must not make the sim itself run out of memory


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
            elif kind in _SIZE_FAULTS:
                fields[kind] = min(_MAX_SIZE, max(1, int(arg)))
            elif kind == "usage":
                fields["usage"] = int(arg)
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
