"""Text deltas are exact: a client joining them gets the tiers' tokens, leading space and all."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.providers.base import Chunk, RateLimited, TierRequest
from realtime_cascade.runtime import CascadeProfile
from realtime_cascade.server.app import RealtimeServer

from .helpers import BOOK, raw, text_of

pytestmark = pytest.mark.anyio

# a tokenizer's usual first token has a leading space (" Sure"): the text is the tokens joined
TOKENS = (" Sure", ",", " a", " table", " for", " two", " at", " 7", ".30", ".", " Bye", "!")


class Scripted:
    """Says ``TOKENS`` confidently, or fails before its first token."""

    def __init__(self, name: str, *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.prefixes: list[str] = []

    async def stream(self, request: TierRequest) -> AsyncGenerator[Chunk, None]:
        self.prefixes.append(request.prefix)
        if self.fail:
            raise RateLimited("429 from upstream: slow down")
        for token in TOKENS:
            yield Chunk(token, -0.01, (-0.01, -6.0))
        yield Chunk(finish_reason="stop")

    async def aclose(self) -> None:
        pass


@pytest.mark.parametrize("light_fails", [False, True], ids=["phrases", "eager-after-fallback"])
async def test_joined_text_deltas_are_the_joined_tokens(light_fails: bool) -> None:
    # on the light tier the gate cuts phrases; after a fallback the last tier goes out token
    # by token (eager): either way nothing is stripped, added or rewritten
    cfg = config_mod.load()
    base = config_mod.build_profile(cfg)
    light, strong = Scripted("light", fail=light_fails), Scripted("strong")
    profile = CascadeProfile("default", base.params, [light, strong])
    try:
        async with (
            RealtimeServer(cfg, host="127.0.0.1", port=0, profiles={"default": profile}) as server,
            raw(server) as client,
        ):
            events = await client.turn(BOOK)
    finally:
        await base.aclose()
    want = "".join(TOKENS)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas and deltas[0].startswith(" Sure")
    assert text_of(events) == want
    done = next(e for e in events if e["type"] == "response.output_text.done")
    assert done["text"] == want
    response = events[-1]["response"]
    assert response["status"] == "completed"
    assert response["output"][0]["content"][0]["text"] == want
    assert strong.prefixes == ([""] if light_fails else [])
