"""JSON Schema for the wire protocol, generated from the msgspec structs of this package.

Deterministic byte for byte, and independent of the Python version: descriptions come from class
docstrings, whose dedenting differs between Python 3.11 and 3.13, so each is normalised with
:func:`inspect.cleandoc`. A test fails when the checked-in ``protocols/schema`` is out of date,
so the structs stay the single source of truth.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import msgspec

from .client import ClientEvent
from .server import ServerEvent

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, bytes]:
    """File name → pretty-printed schema, deterministic byte for byte."""
    out: dict[str, bytes] = {}
    for name, union, title in (
        ("client-events.json", ClientEvent, "Client events (client → server)"),
        ("server-events.json", ServerEvent, "Server events (server → client)"),
    ):
        schema: dict[str, Any] = {"$schema": DIALECT, "title": title}
        schema.update(_normalised(msgspec.json.schema(union)))
        out[name] = msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n"
    return out


def write_schema(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, data in schemas().items():
        path = out / name
        path.write_bytes(data)
        written.append(path)
    return written


def _normalised(node: Any) -> Any:
    """The schema with every ``description`` cleaned of docstring indentation."""
    if isinstance(node, dict):
        return {
            k: inspect.cleandoc(v) if k == "description" and isinstance(v, str) else _normalised(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_normalised(v) for v in node]
    return node
