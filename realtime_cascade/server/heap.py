"""Giving freed heap back to the system after sessions end (glibc's ``malloc_trim``).

An attacker's large items (or a burst of sessions) are freed when their sessions end —
tracemalloc in the server finds under 0.1 MB of Python objects left after the attacks of
``bench.attack`` — but glibc keeps the freed pages: its mmap threshold rises to the largest
block freed so far (up to 32 MiB), so 1 MB strings then come from the heap, whose free pages
are only returned from its top. ``malloc_trim(0)`` returns every free page. Measured with
``bench.attack``: after two rounds of conversation growth RSS stayed 16 MB above its baseline;
one trim took it back to +3 MB.

The trim runs ``delay_s`` after a session ends (one pending at a time, so a burst of closes
costs one trim), off the hot path of every other session's events; it takes a few
milliseconds on a 100 MB heap. Without glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable


def glibc_trim() -> Callable[[], object] | None:
    """``malloc_trim(0)``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """Schedules one trim ``delay_s`` after the last batch of session ends; 0 turns it off."""

    def __init__(self, delay_s: float, trim: Callable[[], object] | None = None) -> None:
        self.delay_s = delay_s
        self._trim = trim if trim is not None else (glibc_trim() if delay_s > 0 else None)
        self._pending: asyncio.TimerHandle | None = None
        self.trims = 0  # how many ran (tests, metrics)

    def session_ended(self) -> None:
        if self._trim is None or self.delay_s <= 0 or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().call_later(self.delay_s, self._run)

    def _run(self) -> None:
        self._pending = None
        assert self._trim is not None
        self._trim()
        self.trims += 1

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
