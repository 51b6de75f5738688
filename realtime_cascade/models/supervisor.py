"""Run and watch one ``llama-server`` process per local tier.

Each server binds a free loopback port, runs with one thread and one slot by default (two
servers share 2 cores: two threads each was 20× slower), and is:

- **health-checked**: ready once ``GET /health`` answers 200 (503 while the model loads);
- **restarted**: :meth:`LlamaServer.ensure` starts it again if it has died, before a stream;
- **stopped with its owner**: :meth:`LlamaServer.stop` ends its whole process group; a
  finalizer does the same if the owner is collected or the interpreter exits without it; and on
  Linux the kernel sends it SIGTERM if the process that started it dies (``PR_SET_PDEATHSIG``),
  so a killed cascade server never leaves a model loaded behind it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Sequence
from pathlib import Path

import anyio
import msgspec

from .errors import ServerFailed

_PR_SET_PDEATHSIG = 1


class ServerSpec(msgspec.Struct, frozen=True):
    """How to run one llama-server."""

    binary: Path
    model: Path
    threads: int = 1
    parallel: int = 1  # slots: one conversation at a time keeps the prompt cache warm
    ctx_size: int = 2048
    host: str = "127.0.0.1"
    extra_args: tuple[str, ...] = ()

    def argv(self, port: int) -> list[str]:
        return [
            str(self.binary),
            "--model",
            str(self.model),
            "--host",
            self.host,
            "--port",
            str(port),
            "--threads",
            str(self.threads),
            "--parallel",
            str(self.parallel),
            "--ctx-size",
            str(self.ctx_size),
            *self.extra_args,
        ]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _kill_group(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers; reap the leader."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def probe_health(host: str, port: int, timeout_s: float = 2.0) -> int | None:
    """The HTTP status of ``GET /health``, or None when nothing answers."""
    try:
        with anyio.fail_after(timeout_s):
            stream = await anyio.connect_tcp(host, port)
            async with stream:
                request = (
                    f"GET /health HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                )
                await stream.send(request.encode())
                head = b""
                while b"\r\n" not in head:
                    head += await stream.receive()
    except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
        return None
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return int(parts[1])


class LlamaServer:
    """One supervised llama-server. ``await ensure()`` before each use; ``stop()`` at the end."""

    def __init__(self, name: str, spec: ServerSpec, log_path: Path) -> None:
        self.name = name
        self.spec = spec
        self.log_path = log_path
        self.port = 0
        self.starts = 0  # 1 after the first start; more means it was restarted
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._lock = anyio.Lock()
        self._finalizer: weakref.finalize[..., LlamaServer] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.spec.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def spawn(self) -> None:
        """Start the process now (not waiting for it to load). Must be called from the thread
        that lives as long as the server should: the death signal follows the parent thread."""
        for path, what in ((self.spec.binary, "llama-server"), (self.spec.model, "model")):
            if not path.is_file():
                raise ServerFailed(f"{self.name}: {what} {path} does not exist")
        self.stop()
        self.port = free_port(self.spec.host)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            try:
                self._proc = subprocess.Popen(
                    self.spec.argv(self.port),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stop() ends all of it
                    preexec_fn=_die_with_parent,
                )
            except OSError as exc:
                raise ServerFailed(f"{self.name}: cannot start {self.spec.binary}: {exc}") from None
        self.starts += 1
        self._ready = False
        self._finalizer = weakref.finalize(self, _kill_group, self._proc, 2.0)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until ``/health`` answers 200; :class:`ServerFailed` if it dies or times out."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                raise ServerFailed(
                    f"{self.name}: llama-server exited (status {code}) before it was ready; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if await probe_health(self.spec.host, self.port) == 200:
                self._ready = True
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerFailed(
                    f"{self.name}: llama-server not healthy after {timeout_s:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            await anyio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def ensure(self, timeout_s: float = 60.0) -> str:
        """Running and healthy (started, or restarted after it died): its base URL."""
        async with self._lock:
            if not self.alive():
                self.spawn()
            if not self._ready:
                await self.wait_ready(timeout_s)
        return self.base_url

    def suspect(self) -> None:
        """A request to it failed: check its health again before the next one (a hung server
        that never answers is then stopped and started afresh)."""
        self._ready = False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self._ready = False
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            _kill_group(proc)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:])


def start_all(servers: Sequence[LlamaServer]) -> None:
    """Spawn every server that is not running (they load their models in parallel)."""
    for s in servers:
        if not s.alive():
            s.spawn()
