"""Log lines without secrets: websockets' own logging, redacted at every level.

At DEBUG websockets logs every request header (``Authorization: Bearer KEY``, the browser's
``Sec-WebSocket-Protocol: openai-insecure-api-key.KEY``) and every frame's content (a client's
conversation). :class:`RedactingLogger` is the logger the server hands websockets: each line
is formatted, then bearer keys, key subprotocols, cookies and any configured key are replaced
with ``[redacted]``, and frame contents with their size only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

_REDACTED = "[redacted]"
_SUBSTITUTIONS = (
    # header lines: "< Authorization: Bearer K", "< Cookie: …"
    (
        re.compile(r"(?i)((?:proxy-)?authorization|cookie|set-cookie|x-api-key)(\s*:\s*).*"),
        r"\1\2[redacted]",
    ),
    (re.compile(r"(?i)(bearer\s+)\S+"), r"\1[redacted]"),
    (re.compile(r"(openai-insecure-api-key\.)[^,\s'\"]*"), r"\1[redacted]"),
    # frames: "< TEXT '{\"type\": …}' [123 bytes]" keeps its size only
    (
        re.compile(r"^([<>] (?:TEXT|BINARY|CONT|CLOSE)) .*?( \[\d+ bytes[^\]]*\])$", re.S),
        r"\1 [redacted]\2",
    ),
)


class Redactor:
    """Scrubs secrets and frame contents out of one log line."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # A very short "secret" would scrub ordinary words; keys are long.
        self._secrets = tuple(s for s in secrets if len(s) >= 6)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        for pattern, replacement in _SUBSTITUTIONS:
            text = pattern.sub(replacement, text)
        return text


class RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger for websockets whose lines pass through a :class:`Redactor`."""

    def __init__(self, logger: logging.Logger, redact: Redactor) -> None:
        super().__init__(logger, {})
        self._redact = redact

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(map(str, (msg, *args)))
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, "%s", self._redact(text), **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs
