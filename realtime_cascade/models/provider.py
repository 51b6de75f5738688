"""A tier on a local llama-server: started and supervised by the cascade, or one already running.

``provider = { kind = "local", model = "qwen2.5-coder-0.5b" }`` in a tier runs that model from
the cache (``realtime-cascade models fetch``/``build`` put it there) on its own llama-server.
Nothing starts when the config is loaded: the server is spawned by :meth:`LocalProvider.start`
or the first stream, so a config that holds a local profile costs nothing until it is used
(``make run`` works without any model). ``base_url`` set: connect to that server instead, and
supervise nothing.

Streams go through the OpenAI-compatible provider (its msgspec SSE decoder, error mapping,
cancellation), with greedy sampling by default, ``logprobs`` on, and tools described in the
prompt and parsed back out of the text (:mod:`.toolcalls`), since llama-server cannot stream
logprobs with native tools. A token that comes without a logprob is passed on with
``logprob=None``: unknown, never confident.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

import anyio
import msgspec

from ..providers.base import (
    Chunk,
    ConnectionLost,
    Message,
    Provider,
    ProviderError,
    TierRequest,
    UpstreamTimeout,
)
from ..providers.openai import OpenAIProvider, OpenAIProviderConfig
from .build import require_server
from .cache import Cache
from .errors import ModelsError
from .fetch import require
from .manifest import model as manifest_model
from .supervisor import LlamaServer, ServerSpec
from .toolcalls import TextToolCalls, plain_messages


class LocalProviderConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A tier on a local llama-server (``kind = "local"``)."""

    model: str  # a key of the manifest (``realtime-cascade models list``)
    base_url: str = ""  # a llama-server already running ("http://127.0.0.1:8081/v1")
    threads: Annotated[int, msgspec.Meta(ge=1)] = 1  # two servers on 2 cores: 1 each
    parallel: Annotated[int, msgspec.Meta(ge=1)] = 1  # slots (conversations at once)
    ctx_size: Annotated[int, msgspec.Meta(ge=256)] = 2048
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = 0.0  # greedy
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    seed: int | None = 0
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] = 5
    tools: Literal["prompt", "native"] = "prompt"  # native: the endpoint streams tool_calls
    startup_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    cache_dir: str = ""  # default: $REALTIME_CASCADE_CACHE or ~/.cache/realtime-cascade
    extra_args: tuple[str, ...] = ()  # more llama-server flags


class LocalProvider:
    """A tier served by llama-server; satisfies :class:`~..providers.base.Provider`."""

    def __init__(self, name: str, config: LocalProviderConfig) -> None:
        manifest_model(config.model)  # an unknown model is a config error, now
        self.name = name
        self.config = config
        self.cache = Cache(Path(config.cache_dir).expanduser() if config.cache_dir else None)
        self.server: LlamaServer | None = None
        self._inner: OpenAIProvider | None = None
        self._inner_url = ""
        self._calls = itertools.count()

    def _spec(self) -> ServerSpec:
        c = self.config
        return ServerSpec(
            binary=require_server(self.cache),
            model=require(self.cache, manifest_model(c.model)),
            threads=c.threads,
            parallel=c.parallel,
            ctx_size=c.ctx_size,
            extra_args=c.extra_args,
        )

    async def start(self) -> str:
        """Start (or restart) the server if it is not healthy; the base URL to talk to.

        Raises :class:`~.errors.ModelsError` subclasses: not fetched, not built, did not start.
        """
        if self.config.base_url:
            return self.config.base_url
        if self.server is None:
            log = self.cache.logs / f"llama-server-{self.name}.log"
            self.server = LlamaServer(self.name, self._spec(), log)
        return await self.server.ensure(self.config.startup_timeout_s)

    def _provider(self, base_url: str) -> OpenAIProvider:
        if self._inner is None or self._inner_url != base_url:
            c = self.config
            self._inner = OpenAIProvider(
                self.name,
                OpenAIProviderConfig(
                    base_url=base_url,
                    model=c.model,
                    api_key_env="",
                    logprobs=True,
                    top_logprobs=c.top_logprobs,
                    timeout_s=c.timeout_s,
                    max_connections=max(4, c.parallel * 2),
                    temperature=c.temperature,
                    top_p=c.top_p,
                    seed=c.seed,
                ),
            )
            self._inner_url = base_url
        return self._inner

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        try:
            base_url = await self.start()
        except ModelsError as exc:
            # A provider error, so the cascade falls back to another tier and the trace says why.
            # never reached a model: nothing was billed
            raise ConnectionLost(f"{self.name}: {exc.message}", connected=False) from None
        inner = self._provider(base_url)
        parser: TextToolCalls | None = None
        if request.tools and self.config.tools == "prompt":
            request = msgspec.structs.replace(
                request,
                messages=plain_messages(request.messages, request.tools),
                tools=(),
                tool_choice=None,
            )
            parser = TextToolCalls(f"{self.name}{next(self._calls)}")
        elif any(m.role == "tool" or m.tool_calls for m in request.messages):
            request = msgspec.structs.replace(
                request, messages=plain_messages(request.messages, ())
            )
        try:
            async with contextlib.aclosing(inner.stream(request)) as chunks:
                async for chunk in chunks:
                    if parser is None:
                        yield chunk
                    else:
                        for out in parser.feed(chunk):
                            yield out
        except (ConnectionLost, UpstreamTimeout):
            if self.server is not None:
                self.server.suspect()  # dead or hung: the next stream checks, restarts
            raise

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
            self._inner = None
        if self.server is not None:
            self.server.stop()


async def start_local(providers: Sequence[Provider]) -> None:
    """Start every :class:`LocalProvider` among ``providers`` (a profile's), all at once, and
    wait until each is healthy: a turn then does not spend its first-token budget on loading.
    Raises the first :class:`~.errors.ModelsError` (not fetched, not built, did not start)."""
    local = [p for p in providers if isinstance(p, LocalProvider)]
    errors: list[ModelsError] = []

    async def one(p: LocalProvider) -> None:
        try:
            await p.start()
        except ModelsError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for p in local:
            tg.start_soon(one, p)
    if errors:
        raise errors[0]


log = logging.getLogger(__name__)


async def warm_local(
    providers: Sequence[Provider], instructions: str, tools: Sequence[dict[str, object]]
) -> int:
    """Ask each started :class:`LocalProvider` among ``providers`` for one token of a request
    that holds only the system prompt (``instructions`` and ``tools``, as a session sends them),
    one after the other. llama-server keeps that prompt in its slot's cache, so a session's
    first turn reuses it instead of paying for it: a booking agent's prompt with its five tools
    is ~2000 tokens, 10-30 s of prompt processing on one core for a 0.5-1.5B model, which is
    past a voice turn's first-token timeout. Returns how many tiers were warmed; a failure is
    logged, never raised (the tier is just cold)."""
    request = TierRequest(
        (Message("system", instructions),) if instructions else (),
        tools=tuple(tools),
        max_tokens=1,
    )
    warmed = 0
    for p in providers:
        if not isinstance(p, LocalProvider):
            continue
        try:
            async with contextlib.aclosing(p.stream(request)) as chunks:
                async for _ in chunks:
                    pass
            warmed += 1
        except ProviderError as exc:
            log.warning("local tier %s: prompt warm-up failed (%s); it starts cold", p.name, exc)
    return warmed


async def start_profiles(
    profiles: Mapping[str, Sequence[Provider]],
) -> dict[str, ModelsError | None]:
    """Start the local tiers of every profile that has any, all at once, and wait until each
    is healthy (``serve`` does this before it listens, so no turn waits for a model to load).
    Returns, for each profile with local tiers, None when they are ready, or why they are not
    (not fetched, not built, did not start): such a profile's turns fail over as before, and
    its next turn tries to start them again."""
    results: dict[str, ModelsError | None] = {}

    async def one(name: str, providers: Sequence[Provider]) -> None:
        try:
            await start_local(providers)
            results[name] = None
        except ModelsError as exc:
            results[name] = exc

    async with anyio.create_task_group() as tg:
        for name, providers in profiles.items():
            if any(isinstance(p, LocalProvider) for p in providers):
                tg.start_soon(one, name, providers)
    return results
