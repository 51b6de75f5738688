"""``serve --workers N``: N worker processes sharing one port, under one supervisor.

Each worker is an ordinary ``serve`` (its own event loop, its own sessions) started with a
hidden ``--worker-fd``; every one binds the port with ``SO_REUSEPORT``, so the kernel spreads
new connections across them. A WebSocket stays on the worker that accepted it, so no session
state needs to move; what must agree across workers (per-key limits, spend, breakers, router
statistics) lives in Redis (:mod:`.state`).

The supervisor is small and synchronous on purpose (no event loop of its own to get stuck):

- **start**: spawn N workers; each writes one byte to its readiness pipe once it listens. Port 0
  is resolved first, by a bound (never listening) ``SO_REUSEPORT`` socket the supervisor keeps:
  it holds the port for the workers and receives no connections.
- **a worker dies** (crash, OOM kill) while serving: it is started again, after a back-off that
  doubles while it keeps dying young (0.1 s … 5 s).
- **SIGHUP**: graceful restart, one worker at a time: start the new one, wait until it listens,
  then SIGTERM the old one, which finishes its responses within the grace period. The port never
  stops accepting.
- **SIGTERM / SIGINT**: SIGTERM to every worker (each drains for ``--grace`` seconds, as a
  single ``serve`` does); whatever is still alive ``grace + 5`` s later is killed.
- **the supervisor dies** (even by SIGKILL): each worker asked the kernel for SIGTERM on its
  parent's death (``prctl(PR_SET_PDEATHSIG)``), so none is left serving alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

SUPERVISOR_ENV = "REALTIME_CASCADE_SUPERVISOR"  # the supervisor's pid, as its workers see it
_PR_SET_PDEATHSIG = 1
READY_TIMEOUT_S = 60.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound, non-listening ``SO_REUSEPORT`` socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def die_with_parent() -> None:
    """In a worker: SIGTERM when the supervisor dies; exit now if it already has (Linux)."""
    expected = os.environ.get(SUPERVISOR_ENV)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if expected is not None and str(os.getppid()) != expected:
        os._exit(0)  # the supervisor died before prctl took effect


def signal_ready(fd: int) -> None:
    """In a worker: tell the supervisor this worker listens."""
    try:
        os.write(fd, b"R")
        os.close(fd)
    except OSError:
        pass  # the supervisor is gone; PDEATHSIG ends us


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen[bytes]
    ready_fd: int  # the read end of its readiness pipe; -1 once read or closed
    started: float
    ready: bool = False


@dataclass
class _Slot:
    worker: _Worker | None = None
    deaths: int = 0  # young deaths in a row: what the back-off doubles on
    restart_at: float = 0.0
    retiring: list[_Worker] = field(default_factory=list)


class Supervisor:
    """Runs ``command(ready_fd)`` N times and keeps N running until told to stop."""

    def __init__(
        self,
        command: Callable[[int], Sequence[str]],
        workers: int,
        *,
        grace_s: float,
        on_ready: Callable[[], None] = lambda: None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.command = command
        self.n = workers
        self.grace_s = grace_s
        self.on_ready = on_ready
        self.slots = [_Slot() for _ in range(workers)]
        self.restarts = 0
        self._stop = False
        self._reload = False

    # -- signals

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def _on_reload(self, signum: int, frame: FrameType | None) -> None:
        self._reload = True

    # -- workers

    def _spawn(self, slot: int) -> _Worker:
        r, w = os.pipe()
        env = dict(os.environ)
        env[SUPERVISOR_ENV] = str(os.getpid())
        try:
            proc = subprocess.Popen(list(self.command(w)), pass_fds=(w,), env=env)
        finally:
            os.close(w)
        log.info("worker %d: started (pid %d)", slot, proc.pid)
        return _Worker(slot, proc, r, time.monotonic())

    def _check_ready(self, worker: _Worker, timeout: float = 0.0) -> bool:
        if worker.ready:
            return True
        if worker.ready_fd < 0:
            return False
        readable, _, _ = select.select([worker.ready_fd], [], [], timeout)
        if readable:
            data = os.read(worker.ready_fd, 1)
            os.close(worker.ready_fd)
            worker.ready_fd = -1
            worker.ready = data == b"R"
        return worker.ready

    def _close(self, worker: _Worker) -> None:
        if worker.ready_fd >= 0:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def run(self) -> int:
        """Until SIGTERM/SIGINT; the exit status is 0 after a graceful stop."""
        old = {
            s: signal.signal(s, h)
            for s, h in (
                (signal.SIGTERM, self._on_stop),
                (signal.SIGINT, self._on_stop),
                (signal.SIGHUP, self._on_reload),
            )
        }
        try:
            for i, slot in enumerate(self.slots):
                slot.worker = self._spawn(i)
            announced = False
            while not self._stop:
                if not announced and all(
                    s.worker is not None and self._check_ready(s.worker) for s in self.slots
                ):
                    announced = True
                    self.on_ready()
                if self._reload:
                    self._reload = False
                    self._rolling_restart()
                self._reap()
                time.sleep(0.05)
        finally:
            self._stop_all()
            for s, h in old.items():
                signal.signal(s, h)
        return 0

    def _reap(self) -> None:
        now = time.monotonic()
        for i, slot in enumerate(self.slots):
            for old in list(slot.retiring):
                if old.proc.poll() is not None:
                    slot.retiring.remove(old)
                    self._close(old)
            w = slot.worker
            if w is None:
                if now >= slot.restart_at and not self._stop:
                    slot.worker = self._spawn(i)
                continue
            code = w.proc.poll()
            if code is None:
                self._check_ready(w)
                if w.ready and now - w.started > 10.0:
                    slot.deaths = 0
                continue
            self._close(w)
            slot.worker = None
            young = now - w.started < 10.0
            slot.deaths = slot.deaths + 1 if young else 0
            delay = 0.0 if slot.deaths == 0 else min(5.0, 0.1 * 2 ** (slot.deaths - 1))
            slot.restart_at = now + delay
            self.restarts += 1
            log.warning(
                "worker %d (pid %d) exited with %s; restarting in %.1f s",
                i,
                w.proc.pid,
                code,
                delay,
            )

    def _rolling_restart(self) -> None:
        log.info("SIGHUP: restarting %d workers one at a time", self.n)
        for i, slot in enumerate(self.slots):
            if self._stop:
                return
            new = self._spawn(i)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not self._stop and not self._check_ready(new, 0.05):
                if new.proc.poll() is not None or time.monotonic() > deadline:
                    log.error("worker %d: the new worker never got ready; keeping the old", i)
                    self._terminate([new], 0.0)
                    self._close(new)
                    break
            else:
                old, slot.worker = slot.worker, new
                if old is not None:
                    with contextlib.suppress(ProcessLookupError):
                        old.proc.send_signal(signal.SIGTERM)
                    slot.retiring.append(old)  # it drains for --grace; _reap collects it

    def _stop_all(self) -> None:
        everyone: list[_Worker] = []
        for slot in self.slots:
            everyone.extend(slot.retiring)
            if slot.worker is not None:
                everyone.append(slot.worker)
        self._terminate(everyone, self.grace_s + 5.0)
        for w in everyone:
            self._close(w)

    @staticmethod
    def _terminate(workers: Sequence[_Worker], wait_s: float) -> None:
        for w in workers:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time: killing it", w.proc.pid)
                w.proc.kill()
                w.proc.wait()
