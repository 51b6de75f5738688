"""``realtime-cascade sim-upstream`` keeping absolute time, for the bench.

    python -m bench.upstream [sim-upstream options]

The stock sim upstream sleeps each token's inter-token gap *after* sending the previous token,
so every late wake-up and every send's own cost push all later tokens back: over a 50-token
reply at 2 cores' load that is tens of milliseconds the bench would otherwise book as runtime
overhead (a real model server generates on its own clock, whatever its sends cost). Here each
stream's tokens are due at ``start + their scheduled offset``: a late token is late on its own.

How: the module's ``schedule`` is wrapped so that each step's ``delay`` is read as the time
left until that step is due, the stream's clock anchored when its first delay is read (just
before the time-to-first-token sleep). Text, logprobs, tool calls, usage and the stream's
timing *as scheduled* are unchanged; only lateness stops accumulating. Streaming responses
only (the non-streaming path sums the delays up front and would over-wait; the ``openai``
provider always streams). Drop this once sim-upstream keeps absolute time itself.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Sequence
from typing import Any

from realtime_cascade.providers import sim_upstream
from realtime_cascade.providers.base import Chunk
from realtime_cascade.providers.sim import SimStep
from realtime_cascade.providers.sim import schedule as _stock_schedule


class _StreamClock:
    __slots__ = ("anchor", "due")

    def __init__(self, delays: Sequence[float]) -> None:
        self.due = list(itertools.accumulate(delays))
        self.anchor: float | None = None

    def left(self, k: int) -> float:
        now = time.monotonic()  # the event loop's clock (asyncio and uvloop alike)
        if self.anchor is None:
            self.anchor = now
        return max(0.0, self.anchor + self.due[k] - now)


class DueStep:
    """A :class:`~realtime_cascade.providers.sim.SimStep` whose ``delay`` is the time left."""

    __slots__ = ("_clock", "_k", "chunk")

    def __init__(self, chunk: Chunk, clock: _StreamClock, k: int) -> None:
        self.chunk = chunk
        self._clock = clock
        self._k = k

    @property
    def delay(self) -> float:
        return self._clock.left(self._k)


def absolute_schedule(*args: Any, **kwargs: Any) -> list[SimStep]:
    steps = _stock_schedule(*args, **kwargs)
    clock = _StreamClock([s.delay for s in steps])
    return [DueStep(s.chunk, clock, k) for k, s in enumerate(steps)]  # type: ignore[misc]


def main(argv: Sequence[str] | None = None) -> int:
    if not callable(getattr(sim_upstream, "schedule", None)):
        print("bench.upstream: sim_upstream.schedule is gone; update this shim", file=sys.stderr)
        return 2
    sim_upstream.schedule = absolute_schedule  # type: ignore[attr-defined]
    return sim_upstream.main(list(argv) if argv is not None else None)


if __name__ == "__main__":
    raise SystemExit(main())
