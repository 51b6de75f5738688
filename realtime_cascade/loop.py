"""Running an async entry point: on uvloop where it is installed (the faster loop; the runtime
needs nothing else), on asyncio's own loop otherwise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar, TypeVarTuple

import anyio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def backend_options() -> dict[str, object]:
    """anyio's asyncio backend options: uvloop when it can be imported."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


def run(fn: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    return anyio.run(fn, *args, backend="asyncio", backend_options=backend_options())
