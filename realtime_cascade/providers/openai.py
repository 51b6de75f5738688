"""A tier on any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp, …).

The ``openai`` package gives the request's shape (its base URL, API-key auth and headers,
timeout, HTTP status errors), but neither direction of the hot path goes through its
per-request machinery, and by default not through its HTTP client either:

- the transport: ``http_client = "aiohttp"`` (the default) streams on
  :class:`~.aiohttp_client.AiohttpUpstream` (C HTTP parsing, one read per network chunk, the
  SDK's headers on the session); ``"sdk"`` sends on the SDK's ``httpx2`` client, where every
  read costs h11 parsing and a timeout scope (``python -m bench.stream_client``: about 3.5×
  the client CPU per token). Both raise the same typed errors;

- the request: ``chat.completions.create`` runs every body through the SDK's recursive
  TypedDict transform and its generic request path (pydantic option models, header merging,
  URL parsing): 0.5 ms a request with 2 messages, 2.6 ms with 18, measured at ~45% of the
  server's CPU under load. We encode the body ourselves with one long-lived ``msgspec``
  encoder (:meth:`OpenAIProvider.request_body`: the same JSON the SDK would send, in the
  same key order) and send it on the SDK's ``httpx2`` client with the SDK's own headers,
  built once per provider (``python -m bench.request_cost`` compares the two);
- the streamed body: the SDK builds a pydantic model per SSE chunk, which costs several times
  what the cascade's whole per-token budget allows (``python -m bench.decode_cost``). We read
  the raw bytes and decode each SSE ``data:`` line with one long-lived ``msgspec`` decoder
  into the few fields we use (:class:`ChatStreamDecoder`, sans-I/O: bytes in,
  :class:`~.base.Chunk` s out).

Errors are translated at this boundary, in the manner of httpcore's ``map_exceptions`` (the
aiohttp path's table is in :mod:`.aiohttp_client`)::

    openai.RateLimitError                         -> RateLimited (retry_after from the headers)
    openai.APIStatusError                         -> UpstreamStatus
    openai.APITimeoutError, httpx2 timeouts       -> UpstreamTimeout
    openai.APIConnectionError, httpx2 request and
      read errors (too many redirects included),
      an incomplete chunked body, EOF before the
      reply finished                              -> ConnectionLost
    (no connection opened at all: ``connected=False`` on the ConnectionLost or UpstreamTimeout,
    so the attempt is not charged)
    an undecodable chunk, a wrong content type    -> MalformedStream
    an ``{"error": …}`` event inside the stream   -> UpstreamStatus

The API key is read once from the environment variable the config names; it is never logged
and is scrubbed from every error message we build (upstreams do echo keys back in 401 bodies).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

import anyio
import httpx2
import msgspec
import openai

from ..core.signals import clean_logprob, clean_top_logprobs
from . import aiohttp_client
from .base import (
    Chunk,
    ConnectionLost,
    MalformedStream,
    Message,
    ProviderError,
    RateLimited,
    TierRequest,
    ToolCallDelta,
    UpstreamStatus,
    UpstreamTimeout,
    Usage,
    clip_message,
)

log = logging.getLogger(__name__)

PrefixMode = Literal["assistant_prefix", "instruction"]
HttpClient = Literal["aiohttp", "sdk"]


class OpenAIProviderConfig(msgspec.Struct, tag="openai", frozen=True, forbid_unknown_fields=True):
    """A tier served by an OpenAI-compatible endpoint.

    ``prefix_mode`` says how a stronger tier is told to continue a reply whose start was already
    spoken: ``assistant_prefix`` sends that start as a final assistant message with vLLM's
    ``continue_final_message`` (exact continuation, where the server supports it);
    ``instruction`` asks for the continuation in a system message (works everywhere, less exact).
    ``api_key_env = ""`` means the endpoint needs no key (a local server).
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    logprobs: bool = True
    # OpenAI accepts 0..20 alternatives per token.
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] = 5
    prefix_mode: PrefixMode = "instruction"
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    # Connections to the endpoint, all kept alive when idle: with fewer kept than the streams
    # that run at once (the SDK keeps 100), busy servers reconnect for every other turn.
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1000
    # Which client streams the replies: "aiohttp" (C HTTP parser, one read per network chunk:
    # about half the client CPU per token, see bench.stream_client) or "sdk" (the openai SDK's
    # httpx2 client, as before). Both send the same body and headers and raise the same errors.
    http_client: HttpClient = "aiohttp"
    # Sampling, sent only when set (None: the endpoint's default, which for llama-server is
    # temperature 0.8). Small models and logprob-based confidence both want greedy decoding.
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    seed: int | None = None
    # Merged into every request body last, so it can also override the continuation flags for
    # servers that name them differently.
    extra_body: dict[str, object] = {}
    # What one reply may make the server hold, whatever max_tokens asked for (a hostile or
    # broken upstream ignores it): text and tool arguments together, and tool calls. Over
    # either, the stream fails (malformed_stream) and the cascade falls back.
    max_reply_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1 << 20
    max_tool_calls: Annotated[int, msgspec.Meta(ge=1)] = 32


class MissingAPIKey(ValueError):
    """The environment variable that should hold a tier's API key is unset or empty."""


# --- the continuation instruction (``prefix_mode = "instruction"``) -----------------------
# Kept next to its parser so the sim upstream can recognise it and continue exactly like a
# model that follows it would.

_INSTRUCTION_HEAD = (
    "Your reply so far has already been spoken to the user, word for word, and cannot be taken"
    ' back:\n"""'
)
_INSTRUCTION_TAIL = (
    '"""\nContinue the reply from exactly where it stops. Do not repeat any of it, do not start'
    " over, and do not contradict it."
)


def continuation_instruction(prefix: str) -> str:
    """The system message that asks a model to continue ``prefix`` without repeating it."""
    return f"{_INSTRUCTION_HEAD}{prefix}{_INSTRUCTION_TAIL}"


def parse_continuation_instruction(text: str | None) -> str | None:
    """The prefix quoted by :func:`continuation_instruction`, or None for any other text."""
    if text is None or len(text) < len(_INSTRUCTION_HEAD) + len(_INSTRUCTION_TAIL):
        return None
    if not (text.startswith(_INSTRUCTION_HEAD) and text.endswith(_INSTRUCTION_TAIL)):
        return None
    return text[len(_INSTRUCTION_HEAD) : len(text) - len(_INSTRUCTION_TAIL)]


# --- the stream chunk shape, only the fields we read ---------------------------------------
# msgspec skips every other field (``id``, ``bytes``, alternatives' token strings, …) without
# building anything for it. ``gc=False``: decoded chunks hold no reference cycles.


# A logprob that is missing or null is *unknown*, never 0.0 (which would read as certainty);
# invalid ones (positive, +inf) are made unknown by ``_logprob``/``_tops`` below. Numbers JSON
# cannot hold (NaN, 1e400) fail the chunk's decoding: a clear stream error, not a score.


class _TopLogprob(msgspec.Struct, gc=False):
    logprob: float | None = None


class _TokenLogprob(msgspec.Struct, gc=False):
    token: str = ""
    logprob: float | None = None
    top_logprobs: list[_TopLogprob] = []


def _logprob(entry: _TokenLogprob) -> float | None:
    return clean_logprob(entry.logprob)


def _tops(entry: _TokenLogprob) -> tuple[float, ...]:
    tops = tuple(t.logprob for t in entry.top_logprobs if t.logprob is not None)
    return tuple(clean_top_logprobs(tops))  # the same tuple when every one is valid


class _Logprobs(msgspec.Struct, gc=False):
    content: list[_TokenLogprob] | None = None


class _Function(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta = msgspec.field(default_factory=_Delta)
    logprobs: _Logprobs | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _StreamError(msgspec.Struct, gc=False):
    message: str = ""
    type: str | None = None
    code: int | str | None = None


class _StreamChunk(msgspec.Struct, gc=False):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: _StreamError | None = None


# One decoder for every stream of the process: it holds no per-stream state.
_CHUNK_DECODER = msgspec.json.Decoder(_StreamChunk)
# And one encoder for every request body.
_BODY_ENCODER = msgspec.json.Encoder()
_INCLUDE_USAGE: dict[str, object] = {"include_usage": True}
_EVENT_SLACK = 64 << 10  # an SSE event's JSON around its text


class _Redactor:
    """Scrubs the API key from text that may end up in an error message or a log."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        # A very short "key" (a placeholder for a local server) would scrub ordinary words.
        self._secret = secret if len(secret) >= 6 else ""

    def __call__(self, text: str) -> str:
        return text.replace(self._secret, "[redacted]") if self._secret else text


class ChatStreamDecoder:
    """An OpenAI chat-completions SSE body in, one :class:`Chunk` per token out (sans-I/O).

    ``feed(bytes)`` returns the chunks completed by those bytes; ``done`` turns true at
    ``data: [DONE]``; ``end()`` is called at EOF. The last chunk carries ``finish_reason`` and
    ``usage``: it is emitted once both are known (usage comes in its own chunk after the
    finish), or at ``[DONE]`` for servers that send no usage.
    """

    __slots__ = (
        "_buffer",
        "_calls",
        "_data",
        "_final_sent",
        "_finish",
        "_max_bytes",
        "_max_calls",
        "_name",
        "_redact",
        "_reply_bytes",
        "_usage",
        "done",
    )

    def __init__(
        self,
        name: str = "openai",
        redact: _Redactor | None = None,
        *,
        max_reply_bytes: int = 1 << 20,
        max_tool_calls: int = 32,
    ) -> None:
        self._name = name
        self._redact = redact if redact is not None else _Redactor("")
        self._max_bytes = max_reply_bytes
        self._max_calls = max_tool_calls
        self._reply_bytes = 0  # characters of text and tool arguments so far
        self._calls: set[int] = set()  # tool-call indices seen
        self._buffer = b""  # an incomplete line
        self._data: bytes | None = None  # the ``data:`` of the event being read
        self._finish: str | None = None
        self._usage: Usage | None = None
        self._final_sent = False
        self.done = False

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        if self.done:
            return out
        buffer = self._buffer + data if self._buffer else data
        lines = buffer.split(b"\n")
        self._buffer = lines.pop()
        # One event cannot be larger than a whole reply (plus its JSON): an endless line is
        # refused before it is held.
        if len(self._buffer) > self._max_bytes + _EVENT_SLACK:
            raise MalformedStream(f"{self._name}: a stream event over {self._max_bytes} bytes")
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]  # CRLF line ends are legal SSE
            if line:
                if line.startswith(b"data:"):
                    value = line[5:]
                    if value[:1] == b" ":
                        value = value[1:]
                    # Multi-line data is joined with "\n", as the SSE spec says.
                    self._data = value if self._data is None else self._data + b"\n" + value
                    if len(self._data) > self._max_bytes + _EVENT_SLACK:
                        raise MalformedStream(
                            f"{self._name}: a stream event over {self._max_bytes} bytes"
                        )
                # Comments (": ping" keep-alives), event:, id: and retry: carry nothing we use.
                continue
            if self._data is not None:
                event, self._data = self._data, None
                self._event(event, out)
                if self.done:
                    break
        return out

    def end(self) -> list[Chunk]:
        """The body ended. Raises :class:`ConnectionLost` if the reply had not finished."""
        out: list[Chunk] = []
        if not self.done:
            # A last event without its blank line still counts (lenient, like browsers).
            tail = self.feed(b"\n\n") if (self._buffer or self._data is not None) else []
            out.extend(tail)
        if self.done or self._finish is not None:
            # Some servers end the body without [DONE]: a reply with a finish is complete.
            self._emit_final(out)
            return out
        raise ConnectionLost(f"{self._name}: the stream ended before the reply finished")

    # -- one event -------------------------------------------------------------------------

    def _event(self, data: bytes, out: list[Chunk]) -> None:
        if data == b"[DONE]":
            self.done = True
            self._emit_final(out)
            return
        try:
            msg = _CHUNK_DECODER.decode(data)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError too
            sample = self._redact(repr(data[:80]))
            raise MalformedStream(
                f"{self._name}: undecodable stream chunk ({self._redact(str(exc))}): {sample}"
            ) from None
        if msg.error is not None:
            code = msg.error.code
            status = code if isinstance(code, int) and 400 <= code <= 599 else 500
            detail = clip_message(self._redact(msg.error.message or msg.error.type or "no message"))
            raise UpstreamStatus(f"{self._name}: error event in the stream: {detail}", status)
        if msg.usage is not None:
            self._usage = Usage.reported(msg.usage.prompt_tokens, msg.usage.completion_tokens)
        if msg.choices:
            choice = msg.choices[0]  # we never ask for n > 1
            self._choice(choice, out)
            if choice.finish_reason is not None:
                self._finish = choice.finish_reason
        if self._finish is not None and self._usage is not None:
            self._emit_final(out)

    def _bound(self, delta: _Delta) -> None:
        """Refuse a reply over its size or tool-call count (``max_reply_bytes``,
        ``max_tool_calls``) before any of it is passed on."""
        n = len(delta.content) if delta.content else 0
        for call in delta.tool_calls or ():
            self._calls.add(call.index)
            if call.function is not None and call.function.arguments:
                n += len(call.function.arguments)
        self._reply_bytes += n
        if self._reply_bytes > self._max_bytes:
            raise MalformedStream(
                f"{self._name}: the reply exceeds {self._max_bytes} characters "
                "(max_reply_bytes), whatever max_tokens asked for"
            )
        if len(self._calls) > self._max_calls:
            raise MalformedStream(
                f"{self._name}: the reply has more than {self._max_calls} tool calls "
                "(max_tool_calls)"
            )

    def _choice(self, choice: _Choice, out: list[Chunk]) -> None:
        delta = choice.delta
        self._bound(delta)
        entries = choice.logprobs.content if choice.logprobs is not None else None
        text = delta.content
        if text:
            if not entries:
                out.append(Chunk(text))
            elif len(entries) == 1:
                # The content is authoritative: a byte-level token's string can differ from it.
                e = entries[0]
                out.append(Chunk(text, _logprob(e), _tops(e)))
            elif "".join(e.token for e in entries) == text:
                # Several tokens in one SSE chunk (servers batch under load): one Chunk each,
                # so the monitor sees every token's probability.
                for e in entries:
                    out.append(Chunk(e.token, _logprob(e), _tops(e)))
            else:
                # Tokens that do not spell the content (partial UTF-8): keep the text exact on
                # the first chunk, the remaining tokens' probabilities on empty chunks.
                for k, e in enumerate(entries):
                    out.append(Chunk(text if k == 0 else "", _logprob(e), _tops(e)))
        if delta.tool_calls:
            # A lone tool-call piece with one logprob entry (vLLM reports them) keeps it.
            single = entries[0] if entries and len(entries) == 1 and not text else None
            lone = len(delta.tool_calls) == 1
            for call in delta.tool_calls:
                fn = call.function
                piece = ToolCallDelta(
                    call.index,
                    id=call.id,
                    name=fn.name if fn is not None else None,
                    arguments=(fn.arguments or "") if fn is not None else "",
                )
                if single is not None and lone:
                    lp, tops = _logprob(single), _tops(single)
                    out.append(Chunk(logprob=lp, top_logprobs=tops, tool_call=piece))
                else:
                    out.append(Chunk(tool_call=piece))

    def _emit_final(self, out: list[Chunk]) -> None:
        if self._final_sent:
            return
        self._final_sent = True
        # A [DONE] without any finish_reason (seen from some proxies) is taken as a stop.
        out.append(Chunk(finish_reason=self._finish or "stop", usage=self._usage))


# --- error mapping --------------------------------------------------------------------------


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI) or ``retry-after`` (seconds or date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _status_detail(exc: openai.APIStatusError, redact: _Redactor) -> str:
    # 401/403 bodies talk about the key itself ("Incorrect API key provided: sk-…"): keep none
    # of it, not even a partly masked key.
    if exc.status_code in (401, 403):
        return "authentication failed (check the API key's environment variable)"
    return clip_message(redact(exc.message))


def _connected(exc: BaseException) -> bool:
    """False when ``exc`` (or what it wraps) says the connection was never opened, so the
    request never reached the upstream; True otherwise, the safe side for billing."""
    seen: BaseException | None = exc
    for _ in range(8):  # the SDK wraps httpx2's error, which wraps the socket's
        if seen is None:
            return True
        if isinstance(seen, httpx2.ConnectError | httpx2.ConnectTimeout | ConnectionRefusedError):
            return False
        seen = seen.__cause__ or seen.__context__
    return True


@contextlib.contextmanager
def _map_errors(name: str, redact: _Redactor) -> Iterator[None]:
    """Translate ``openai`` / ``httpx2`` / socket errors into the provider error tree.

    Status errors are raised ``from None``: the SDK exception's body and request (headers
    included) may hold what we scrubbed. Transport errors keep their cause for debugging.
    """
    try:
        yield
    except ProviderError:
        raise
    except openai.RateLimitError as exc:
        retry = retry_after_seconds(exc.response.headers)
        raise RateLimited(f"{name}: rate limited: {_status_detail(exc, redact)}", retry) from None
    except openai.APIStatusError as exc:
        detail = _status_detail(exc, redact)
        raise UpstreamStatus(f"{name}: HTTP {exc.status_code}: {detail}", exc.status_code) from None
    except (openai.APITimeoutError, httpx2.TimeoutException) as exc:
        if not _connected(exc):
            what = f"{name}: no connection within the timeout ({type(exc).__name__})"
            raise UpstreamTimeout(what, connected=False) from exc
        raise UpstreamTimeout(f"{name}: the upstream timed out ({type(exc).__name__})") from exc
    except httpx2.DecodingError as exc:
        raise MalformedStream(f"{name}: undecodable response body: {redact(str(exc))}") from exc
    except (
        openai.APIConnectionError,
        httpx2.RequestError,  # transport errors, too many redirects (decoding: above)
        anyio.EndOfStream,
        anyio.BrokenResourceError,
        ssl.SSLError,
        ConnectionError,
    ) as exc:
        # httpx2 reports an incomplete chunked body as RemoteProtocolError, a reset as ReadError.
        if not _connected(exc):
            what = f"{name}: could not connect ({type(exc).__name__})"
            raise ConnectionLost(what, connected=False) from exc
        raise ConnectionLost(f"{name}: connection lost ({type(exc).__name__})") from exc
    except openai.OpenAIError as exc:
        raise ProviderError(f"{name}: {type(exc).__name__}: {redact(str(exc))}") from None


# --- the provider ---------------------------------------------------------------------------


class OpenAIProvider:
    """A tier on an OpenAI-compatible endpoint. ``stream`` yields one :class:`Chunk` per token.

    Cancel the consumer (or ``aclose()`` the iterator; wrap it in ``contextlib.aclosing``)
    and the HTTP response is closed, so the upstream stops generating.
    """

    def __init__(
        self,
        name: str,
        config: OpenAIProviderConfig,
        *,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        """``http_client``: an ``httpx2`` client to send on (tests, benches: a mock transport);
        given one, the provider uses the SDK path whatever ``config.http_client`` says."""
        self.name = name
        self.config = config
        key = ""
        if config.api_key_env:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise MissingAPIKey(
                    f"tier {name!r}: environment variable {config.api_key_env} is not set "
                    '(set api_key_env = "" for an endpoint that needs no key)'
                )
        self._redact = _Redactor(key)
        # The SDK's own default client (its connection limits, redirects), unless one is given:
        # requests are sent on it directly, so we keep the reference.
        self._http = http_client or openai.DefaultAsyncHttpxClient(
            base_url=config.base_url,
            timeout=config.timeout_s,
            limits=httpx2.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
            ),
        )
        # max_retries=0: the cascade falls back to another tier rather than retrying blindly.
        self._client = openai.AsyncOpenAI(
            # The SDK insists on some key; a keyless local server ignores this placeholder.
            api_key=key or "unused",
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
            http_client=self._http,
        )
        base = self._client.base_url  # the SDK's: normalised to end in "/"
        self._url = base.copy_with(raw_path=base.raw_path + b"chat/completions")
        self._timeout = self._client.timeout
        self._lean = (
            aiohttp_client.AiohttpUpstream(str(self._url), config.timeout_s, config.max_connections)
            if config.http_client == "aiohttp" and http_client is None
            else None
        )
        self._headers: dict[str, str] | None = None  # built on first use, in the event loop
        # The request body's fixed parts.
        self._logprobs = config.logprobs
        self._prefix_flags: dict[str, object] = (
            # vLLM's names (also SGLang's); the generation continues the last assistant message.
            {"continue_final_message": True, "add_generation_prompt": False}
            if config.prefix_mode == "assistant_prefix"
            else {}
        )

    def _request_headers(self) -> dict[str, str]:
        """The headers the SDK would send with a chat completion (what ``create`` sends with
        ``max_retries=0``): API-key auth, its defaults (content type, user agent, platform),
        the retry count and read timeout. Fixed for a provider's life, so built once — in the
        event loop, since ``X-Stainless-Async`` names the running async library."""
        if self._headers is None:
            client = self._client
            headers = {**client.auth_headers}
            for header, value in client.default_headers.items():
                if isinstance(value, str):  # an Omit() leaves the header out
                    headers[header] = value
            headers["x-stainless-retry-count"] = "0"
            timeout = self._timeout
            read = timeout.read if isinstance(timeout, httpx2.Timeout) else timeout
            if read is not None:
                headers["x-stainless-read-timeout"] = str(read)
            self._headers = headers
        return self._headers

    def request_body(self, request: TierRequest) -> bytes:
        """The chat-completions request body: what ``chat.completions.create`` would send for
        the same request (same fields, same key order), encoded by one msgspec encoder.

        The continuation is the last message: the spoken prefix as an assistant message
        (``assistant_prefix``, with vLLM's continuation flags) or the instruction as a system
        message. ``extra_body`` is merged last, so it may override any field.
        """
        config = self.config
        messages: list[Message] = list(request.messages)
        prefix = request.prefix
        if prefix:
            if self._prefix_flags:
                messages.append(Message("assistant", prefix))
            else:
                messages.append(Message("system", continuation_instruction(prefix)))
        body: dict[str, object] = {"model": config.model, "stream": True, "messages": messages}
        if self._logprobs:
            body["logprobs"] = True
        body["max_tokens"] = request.max_tokens
        if config.seed is not None:
            body["seed"] = config.seed
        body["stream_options"] = _INCLUDE_USAGE
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.tools:
            body["tools"] = request.tools
        if self._logprobs:
            # The tier's cap (config) and what the monitor asked for, whichever is smaller.
            body["top_logprobs"] = max(0, min(config.top_logprobs, request.top_logprobs))
        if config.top_p is not None:
            body["top_p"] = config.top_p
        if prefix and self._prefix_flags:
            body.update(self._prefix_flags)
        if config.extra_body:
            body.update(config.extra_body)
        return _BODY_ENCODER.encode(body)

    async def _open(self, request: TierRequest) -> httpx2.Response:
        """Send the request; the streamed response once its status is a success (else the
        SDK's status error, raised from its body as the SDK raises it)."""
        http = self._http
        sent = http.build_request(
            "POST",
            self._url,
            content=self.request_body(request),
            headers=self._request_headers(),
            timeout=self._timeout,
        )
        response = await http.send(sent, stream=True)
        if response.is_success:
            return response
        try:
            await response.aread()
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        raise self._client._make_status_error_from_response(response)

    def _check_content_type(self, content_type: str) -> None:
        if not content_type.lower().startswith("text/event-stream"):
            raise MalformedStream(
                f"{self.name}: expected an event stream, got content type "
                f"{self._redact(content_type)!r}"
            )

    # An AsyncGenerator (not just an iterator), so callers can ``aclosing()`` it.
    def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        config = self.config
        decoder = ChatStreamDecoder(
            self.name,
            self._redact,
            max_reply_bytes=config.max_reply_bytes,
            max_tool_calls=config.max_tool_calls,
        )
        if self._lean is not None:
            return self._stream_aiohttp(self._lean, request, decoder)
        return self._stream_sdk(request, decoder)

    async def _stream_aiohttp(
        self,
        http: aiohttp_client.AiohttpUpstream,
        request: TierRequest,
        decoder: ChatStreamDecoder,
    ) -> AsyncGenerator[Chunk, None]:
        name = self.name
        with aiohttp_client.map_errors(name):
            response = await http.post(self.request_body(request), self._request_headers)
            done = False
            try:
                status = response.status
                if not 200 <= status < 300:
                    detail = clip_message(self._redact(await aiohttp_client.error_text(response)))
                    if status == 429:
                        retry = retry_after_seconds(response.headers)
                        raise RateLimited(f"{name}: rate limited: {detail}", retry)
                    raise UpstreamStatus(f"{name}: HTTP {status}: {detail}", status)
                self._check_content_type(response.headers.get("content-type", ""))
                # One read per network chunk, whatever it holds: the decoder splits the lines.
                content = response.content
                feed = decoder.feed
                while piece := await content.readany():
                    for chunk in feed(piece):
                        yield chunk
                    if decoder.done:
                        break
                else:
                    for chunk in decoder.end():
                        yield chunk
                    done = True
                    return
                # Read the chunked terminator after [DONE] so the connection is kept alive;
                # bounded, for servers that keep the body open after it.
                with anyio.move_on_after(0.1):
                    while await content.readany():
                        pass
                    done = True
            finally:
                if done:
                    response.release()  # back to the pool (closed by aiohttp if unfinished)
                else:
                    # Not read to its end (cancelled, failed): drop the connection, so the
                    # upstream stops generating tokens nobody reads (and bills for them).
                    response.close()

    async def _stream_sdk(
        self, request: TierRequest, decoder: ChatStreamDecoder
    ) -> AsyncGenerator[Chunk, None]:
        with _map_errors(self.name, self._redact):
            response = await self._open(request)
            try:
                self._check_content_type(response.headers.get("content-type", ""))
                async with contextlib.aclosing(response.aiter_bytes()) as body:
                    async for piece in body:
                        for chunk in decoder.feed(piece):
                            yield chunk
                        if decoder.done:
                            break
                    else:
                        for chunk in decoder.end():
                            yield chunk
                        return
                    await _drain(body)
            finally:
                # Shielded: a cancelled consumer must still close the response, or the
                # upstream keeps generating tokens nobody reads (and bills for them).
                with anyio.CancelScope(shield=True):
                    await response.aclose()

    async def aclose(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
        await self._client.close()


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what follows ``[DONE]`` (the chunked terminator) so HTTP/1.1 can reuse the
    connection; bounded, for servers that keep the body open after it."""
    with anyio.move_on_after(0.1):
        try:
            async for _ in body:
                pass
        except (httpx2.HTTPError, anyio.EndOfStream, OSError):
            # The reply is complete; a failing tail only costs the connection.
            log.debug("ignoring an error after [DONE]")
