"""Fixtures for the provider tests: a sim upstream on a free port, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from realtime_cascade.providers.sim import SimProfile
from realtime_cascade.providers.sim_upstream import SimUpstream

# Fast profiles: the tests check shapes and errors, not latency, and must stay well under a
# second each.
FAST = {
    "light": SimProfile(ttft_ms=5, itl_ms=1, skill=0.5),
    "strong": SimProfile(ttft_ms=8, itl_ms=1, skill=1.0),
    "slow": SimProfile(ttft_ms=5, itl_ms=50, skill=0.5),  # time to cancel between tokens
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RunningUpstream:
    def __init__(self, upstream: SimUpstream, port: int) -> None:
        self.upstream = upstream
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def wait_streams_closed(self, within: float = 2.0) -> None:
        """Until the server has no SSE response in flight (the client really hung up)."""
        with anyio.fail_after(within):
            # Polling a counter is fine in a test; the server needs no event for it.
            while self.upstream.open_streams:  # noqa: ASYNC110
                await anyio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[RunningUpstream]:
    upstream = SimUpstream(FAST)
    async with anyio.create_task_group() as tg:
        port = await tg.start(upstream.serve, "127.0.0.1", 0)
        yield RunningUpstream(upstream, port)
        tg.cancel_scope.cancel()
