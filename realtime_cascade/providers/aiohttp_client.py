"""The lean HTTP client of :class:`~.openai.OpenAIProvider`: streamed POSTs on ``aiohttp``.

Why not the SDK's ``httpx2`` client for the streamed body: every read there goes through h11's
pure-Python parser, httpcore's per-read timeout scope and httpx's stream wrappers, which under
load was about 40% of the server's CPU. aiohttp parses HTTP in C (llhttp), its read timeout is
one timer re-armed per network read, and ``readany()`` hands over whatever bytes arrived: one
read per network chunk, however many SSE lines it holds (``python -m bench.stream_client``
measures both on the same load).

What the SDK path gave and this one keeps: the SDK's headers (API-key auth, user agent,
``x-stainless-*``), built once per provider; connect and read timeouts of ``timeout_s``; a
keep-alive pool of up to ``max_connections``; proxies from the environment (read once);
redirects. Not kept: credentials from ``~/.netrc`` (the API key is the auth) and cookies. Errors
are mapped here to the provider's typed errors, as :func:`~.openai._map_errors` does for the
SDK path::

    HTTP 429                                  -> RateLimited (retry_after from the headers)
    any other status that is not a success    -> UpstreamStatus
    connect or read timeout                   -> UpstreamTimeout
    refused, reset, closed mid-body, an
      incomplete chunked body, a bad response -> ConnectionLost
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import aiohttp
import msgspec
import yarl

from .base import ConnectionLost, ProviderError, UpstreamTimeout

# An error body is read for its message only: a hostile upstream's endless one is cut here.
_ERROR_BODY_LIMIT = 64 << 10


class _ErrorDetail(msgspec.Struct):
    message: str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    message: str | None = None


_ERROR_DECODER = msgspec.json.Decoder(_ErrorBody)


def status_message(status: int, body: bytes) -> str:
    """What an error response says: its JSON ``error.message`` (OpenAI's shape) or its text."""
    if status in (401, 403):
        # These bodies talk about the key itself ("Incorrect API key provided: sk-…").
        return "authentication failed (check the API key's environment variable)"
    detail: str | None = None
    try:
        parsed = _ERROR_DECODER.decode(body)
    except msgspec.DecodeError:
        pass
    else:
        error = parsed.error
        detail = error if isinstance(error, str) else (error.message if error else None)
        detail = detail or parsed.message
    if not detail:
        detail = body.decode("utf-8", "replace").strip() or "no message"
    return f"Error code: {status} - {detail}"


class AiohttpUpstream:
    """One provider's connection pool and request defaults; created lazily in the event loop."""

    __slots__ = ("_connections", "_proxy", "_session", "_timeout", "_url")

    def __init__(self, url: str, timeout_s: float, max_connections: int) -> None:
        self._url = yarl.URL(url)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_s, sock_connect=timeout_s, sock_read=timeout_s
        )
        self._connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY / NO_PROXY, as httpx honours them, looked up once: aiohttp's
        # trust_env would look them (and ~/.netrc) up in a thread for every request.
        try:
            self._proxy: tuple[yarl.URL | None, aiohttp.BasicAuth | None] = (
                aiohttp.helpers.get_env_proxy_for_url(self._url)
            )
        except LookupError:
            self._proxy = (None, None)

    def _open_session(self, headers: Mapping[str, str]) -> aiohttp.ClientSession:
        # In the running loop (aiohttp binds its connector to it); the fixed headers go on the
        # session, so no request merges them again.
        connector = aiohttp.TCPConnector(limit=self._connections, limit_per_host=0)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=dict(headers),
            timeout=self._timeout,
            proxy=self._proxy[0],
            proxy_auth=self._proxy[1],
            cookie_jar=aiohttp.DummyCookieJar(),  # an API client keeps no cookies
            raise_for_status=False,
        )
        return self._session

    async def post(
        self, body: bytes, headers: Callable[[], Mapping[str, str]]
    ) -> aiohttp.ClientResponse:
        """POST ``body``; the response, whatever its status (:func:`error_text` reads an
        error's). ``headers`` gives the fixed headers, asked for once."""
        session = self._session or self._open_session(headers())
        return await session.post(self._url, data=body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def error_text(response: aiohttp.ClientResponse) -> str:
    """An error response's message (:func:`status_message`), its body read up to a bound; the
    response is closed."""
    try:
        body = await _read_bounded(response)
    finally:
        response.close()
    return status_message(response.status, body)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < _ERROR_BODY_LIMIT:
        piece = await response.content.read(_ERROR_BODY_LIMIT - size)
        if not piece:
            break
        parts.append(piece)
        size += len(piece)
    return b"".join(parts)


@contextlib.contextmanager
def map_errors(name: str) -> Iterator[None]:
    """Translate aiohttp's and the socket's errors into the provider error tree.

    ``ClientResponseError`` carries the request's headers (the API key): raised ``from None``.
    Transport errors keep their cause for debugging.
    """
    try:
        yield
    except ProviderError:
        raise
    except TimeoutError as exc:  # aiohttp's connect and read timeouts are TimeoutErrors
        if isinstance(exc, aiohttp.ConnectionTimeoutError):  # the request never went out
            what = f"{name}: no connection within the timeout ({type(exc).__name__})"
            raise UpstreamTimeout(what, connected=False) from exc
        raise UpstreamTimeout(f"{name}: the upstream timed out ({type(exc).__name__})") from exc
    except aiohttp.ClientConnectorError as exc:  # refused, unreachable: nothing was sent
        what = f"{name}: could not connect ({type(exc).__name__})"
        raise ConnectionLost(what, connected=False) from exc
    except aiohttp.ClientResponseError as exc:  # a bad response, too many redirects
        raise ConnectionLost(f"{name}: connection lost ({type(exc).__name__})") from None
    except (aiohttp.ClientError, ConnectionError, OSError) as exc:
        # ClientPayloadError: an incomplete chunked body; ServerDisconnectedError: EOF.
        raise ConnectionLost(f"{name}: connection lost ({type(exc).__name__})") from exc
