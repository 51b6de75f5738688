"""An engine for worker-pool tests (imported by worker processes by its path)."""

from __future__ import annotations

import os
import time

from realtime_cascade.audio.workers import EngineError


class Crashy:
    """Echoes, sleeps, fails, or aborts its process (as a fault in native code would)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def echo(self, value: object) -> object:
        return (self.tag, value)

    def pid(self) -> int:
        return os.getpid()

    def sleep(self, seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def fail(self) -> None:
        raise EngineError("no such thing", "bad_thing")

    def count(self, n: int) -> object:
        yield from range(n)

    def abort(self) -> None:
        os.abort()  # what glibc's buffer-overflow check does


class Broken:
    def __init__(self) -> None:
        raise EngineError("the model is missing", "unavailable")
