"""Native engines in worker processes: a fault in one costs a job, never the server.

Whisper (CTranslate2), Piper (onnxruntime), espeak-ng and pocketsphinx are C/C++ libraries: a
bad input can abort or corrupt the process that loads them (an over-long espeak voice name once
aborted the whole server). So each runs in a :class:`WorkerPool` of worker processes (fresh
interpreters, ``python -m realtime_cascade.audio.worker_process``: nothing of the server's
state, and no re-import of its ``__main__``), each talking over a socket pair:

1. A worker builds its engine once (``factory(*args)``, named by import path so it can cross
   the process boundary) and serves one job at a time: ``(method, args)`` in; zero or more
   ``("chunk", value)`` then ``("ok", value)`` or ``("error", code, message)`` out.
2. Workers die with the server: ``PR_SET_PDEATHSIG`` (Linux, through ctypes) has the kernel
   kill them when their parent dies, even by SIGKILL; elsewhere an idle worker exits when its
   pipe closes.
3. A worker that dies mid-job fails that job with :class:`WorkerDied` (a clear message, the
   exit code) and is replaced on the next job: the pool restarts what died.
4. A job whose caller is cancelled (its session ended, the server shuts down) is not left
   running: its worker is killed at once and replaced on demand. Queued jobs simply leave the
   queue. So a closed session's audio never costs anyone else CPU.
5. The pool is FIFO-fair: at most ``size`` jobs run; the rest wait in arrival order.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from typing import Any, Final

import anyio

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG: Final = 1
START_TIMEOUT_S: Final = 120.0


class EngineError(Exception):
    """Raised by an engine inside a worker: the job fails with ``code`` and the message."""

    def __init__(self, message: str, code: str = "engine_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WorkerDied(Exception):
    """The worker running a job died (crashed, was killed, ran out of memory)."""


# --- the worker side -----------------------------------------------------------------------------


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux); exit now if it has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return fn


def _reply_error(conn: Connection, exc: BaseException) -> None:
    if isinstance(exc, EngineError):
        conn.send(("error", exc.code, exc.message))
    else:
        conn.send(("error", "engine_error", f"{type(exc).__name__}: {exc}"))


def worker_main(fd: int, parent_pid: int) -> None:
    """A worker process's body (see the module docstring, rule 1)."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    conn = Connection(fd)
    try:
        factory, args = conn.recv()
    except (EOFError, OSError):
        return
    try:
        engine = _resolve(factory)(*args)
    except Exception as exc:
        _reply_error(conn, exc)
        return
    conn.send(("ok", os.getpid()))
    while True:
        try:
            method, call_args = conn.recv()
        except (EOFError, OSError):
            return  # the server closed the pool (or died)
        try:
            result = getattr(engine, method)(*call_args)
            if hasattr(result, "__next__"):
                for value in result:
                    conn.send(("chunk", value))
                result = None
            conn.send(("ok", result))
        except Exception as exc:
            _reply_error(conn, exc)


# --- the server side -----------------------------------------------------------------------------


class _Worker:
    def __init__(self, process: subprocess.Popen[bytes], conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self.conn.close()

    def reap(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)


class WorkerPool:
    """Up to ``size`` worker processes running ``factory(*args)``'s engine (module docstring)."""

    def __init__(self, name: str, factory: str, args: tuple[Any, ...] = (), size: int = 1) -> None:
        self.name = name
        self.factory = factory
        self.args = args
        self.size = size
        self._slots = anyio.Semaphore(size, fast_acquire=False)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._closed = False
        self.restarts = 0  # workers that died or were killed and so will be replaced
        atexit.register(self._kill_all)

    def pids(self) -> list[int]:
        """The live workers' process ids (for tests and operators)."""
        return [w.pid for w in self._all if w.alive()]

    def _start(self) -> _Worker:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "realtime_cascade.audio.worker_process",
                    str(theirs.fileno()),
                    str(os.getpid()),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
            conn = Connection(ours.detach())
        worker = _Worker(process, conn)
        with contextlib.suppress(OSError):  # it died at once: the ready message will say so
            conn.send((self.factory, self.args))
        return worker

    async def _spawn(self) -> _Worker:
        # On the event loop's thread, not a worker thread: PR_SET_PDEATHSIG fires when the
        # *thread* that forked the child ends, and anyio retires idle worker threads. (A
        # vfork + exec: a few milliseconds.)
        worker = self._start()
        self._all.add(worker)
        try:
            with anyio.fail_after(START_TIMEOUT_S):
                reply = await anyio.to_thread.run_sync(worker.conn.recv, abandon_on_cancel=True)
        except BaseException as exc:
            self._discard(worker)
            if isinstance(exc, (EOFError, OSError)):
                raise WorkerDied(self._died(worker)) from None
            if isinstance(exc, TimeoutError):
                raise EngineError(f"{self.name}: the engine did not start", "unavailable") from None
            raise
        if reply[0] != "ok":
            self._discard(worker)
            raise EngineError(f"{self.name}: {reply[2]}", "unavailable")
        return worker

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        worker.reap(0.5)
        self._all.discard(worker)

    def _died(self, worker: _Worker) -> str:
        worker.reap(1.0)
        code = worker.process.returncode
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return (
            f"the {self.name} worker (pid {worker.pid}) died ({how}); "
            "a new one starts with the next job"
        )

    async def stream(self, method: str, *args: Any) -> AsyncIterator[Any]:
        """Run ``method(*args)`` on a worker's engine; yields its chunks, then its result
        (when not None). :class:`EngineError` from the engine, :class:`WorkerDied`."""
        if self._closed:
            raise EngineError(f"{self.name}: the engine is shut down", "unavailable")
        async with self._slots:
            worker = self._idle.pop() if self._idle else await self._spawn()
            done = sent = False
            try:
                while True:
                    try:
                        if not sent:
                            sent = True
                            await anyio.to_thread.run_sync(worker.conn.send, (method, args))
                        reply = await anyio.to_thread.run_sync(
                            worker.conn.recv, abandon_on_cancel=True
                        )
                    except (EOFError, OSError):
                        self.restarts += 1
                        self._all.discard(worker)
                        done = True  # nothing to kill: it is dead
                        raise WorkerDied(self._died(worker)) from None
                    match reply:
                        case ("chunk", value):
                            yield value
                        case ("ok", value):
                            done = True
                            if value is not None:
                                yield value
                            break
                        case ("error", code, message):
                            done = True
                            raise EngineError(message, code)
                        case _:
                            raise WorkerDied(f"the {self.name} worker sent {reply!r}")
            finally:
                if done and worker in self._all and not self._closed:
                    self._idle.append(worker)
                elif not done:
                    # the caller left mid-job (cancelled, or stopped reading): the job's CPU
                    # is nobody's now, so the worker goes, and a fresh one replaces it
                    self.restarts += 1
                    self._all.discard(worker)
                    worker.kill()
                    with anyio.CancelScope(shield=True):
                        await anyio.to_thread.run_sync(worker.reap, 1.0)

    async def call(self, method: str, *args: Any) -> Any:
        """``method(*args)``'s result on a worker (one value; see :meth:`stream`)."""
        result: Any = None
        async for value in self.stream(method, *args):
            result = value
        return result

    async def warm(self) -> None:
        """Start one worker now (so the first job does not wait for its engine to load)."""
        if self._idle or self._all:
            return
        async with self._slots:
            self._idle.append(await self._spawn())

    def _kill_all(self) -> None:
        for worker in list(self._all):
            worker.kill()
        for worker in list(self._all):
            worker.reap(1.0)
        self._all.clear()
        self._idle.clear()

    async def aclose(self) -> None:
        self._closed = True
        await anyio.to_thread.run_sync(self._kill_all)
        atexit.unregister(self._kill_all)
