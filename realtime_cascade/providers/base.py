"""The one small interface every tier provider implements, and the errors it may raise.

    ProviderError              anything that ends a stream early; ``retryable`` says whether
    │                          another try (or another tier) may succeed
    ├── RateLimited            429; ``retry_after`` seconds when the upstream said so
    ├── UpstreamStatus         another HTTP error status (500, 503, 400, …)
    ├── ConnectionLost         the connection dropped or could not be made
    ├── UpstreamTimeout        the upstream did not answer in time (transport level)
    └── MalformedStream        a chunk that is not what the protocol promises

Providers translate their library's exceptions into these at the boundary (in the manner of
httpcore's ``map_exceptions``), so nothing above them imports ``openai``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Literal, Protocol

import msgspec


class Message(msgspec.Struct, frozen=True, omit_defaults=True):
    """A chat message in the OpenAI shape (``tool_calls`` / ``tool_call_id`` when relevant)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[dict[str, object], ...] | None = None


class TierRequest(msgspec.Struct, frozen=True, omit_defaults=True):
    messages: tuple[Message, ...]
    # The text already released to the listener: the tier must continue after it.
    prefix: str = ""
    tools: tuple[dict[str, object], ...] = ()
    tool_choice: str | dict[str, object] | None = None
    max_tokens: int = 512
    top_logprobs: int = 5
    # Varies the sim's random draws per turn; ignored by real endpoints.
    seed: int = 0


class ToolCallDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


MAX_USAGE_TOKENS = 10_000_000  # more than any context window: a larger count is not believed


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int
    output_tokens: int

    @classmethod
    def reported(cls, input_tokens: int, output_tokens: int) -> Usage:
        """Usage as an upstream reported it, clamped to [0, MAX_USAGE_TOKENS]: a negative
        count would credit cost, a huge one spend a budget on a lie."""

        def clamp(n: int) -> int:
            return max(0, min(n, MAX_USAGE_TOKENS))

        return cls(clamp(input_tokens), clamp(output_tokens))


MAX_ERROR_CHARS = 1000  # of an upstream's error message kept (they are relayed to clients)


def clip_message(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """An upstream's message, cut to ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text) - limit} more chars)"


class Chunk(msgspec.Struct, frozen=True, omit_defaults=True):
    """One token (or tool-call piece) of a stream; the last chunk carries ``finish_reason``
    and, where the upstream reports it, ``usage``."""

    text: str = ""
    logprob: float | None = None
    top_logprobs: tuple[float, ...] = ()
    tool_call: ToolCallDelta | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


class Provider(Protocol):
    """A tier's model. ``stream`` yields chunks; cancelling the consumer closes the stream."""

    name: str

    def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]: ...

    async def aclose(self) -> None: ...


class ProviderError(Exception):
    kind: str = "error"
    retryable: bool = True

    def __init__(self, message: str, *, connected: bool = True) -> None:
        super().__init__(message)
        self.message = message
        # False only when the request never reached the upstream (the connection was refused
        # or never opened in time): nothing was billed for it, so the attempt costs nothing.
        # True whenever that is not certain (lost mid-stream, a status, a read timeout).
        self.connected = connected


class RateLimited(ProviderError):
    kind = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamStatus(ProviderError):
    kind = "upstream_status"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = status >= 500 or status in (408, 409)


class ConnectionLost(ProviderError):
    kind = "connection_lost"


class UpstreamTimeout(ProviderError):
    kind = "timeout"


class MalformedStream(ProviderError):
    kind = "malformed_stream"
    retryable = False


ProviderKind = Literal["sim", "openai"]
