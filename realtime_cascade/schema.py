"""JSON Schema for the wire protocol, generated from the msgspec structs in :mod:`.wire`.

``realtime-cascade schema --out protocols/schema`` (or ``python -m realtime_cascade.schema``)
writes one file per direction; a test fails when the checked-in copy is out of date, so the
structs stay the single source of truth.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from . import wire

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schemas() -> dict[str, bytes]:
    """File name → pretty-printed schema, deterministic byte for byte."""
    out: dict[str, bytes] = {}
    for name, union, title in (
        ("client-events.json", wire.ClientEvent, "Client events (client → server)"),
        ("server-events.json", wire.ServerEvent, "Server events (server → client)"),
    ):
        schema: dict[str, Any] = {"$schema": DIALECT, "title": title}
        schema.update(msgspec.json.schema(union))
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


def add_schema_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("schema", help="write the protocol's JSON Schema files")
    p.add_argument("--out", default="protocols/schema", help="directory (default: %(default)s)")
    p.set_defaults(func=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    for path in write_schema(args.out):
        print(path)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m realtime_cascade.schema")
    add_schema_parser(parser.add_subparsers(dest="command"))
    return run_schema(parser.parse_args(["schema", *sys.argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main())
