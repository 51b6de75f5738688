"""Real servers for the scale tests: Debian's ``redis-server`` and ``haproxy`` (``make test``
installs both) and ``realtime-cascade serve`` processes, each on a free loopback port in a tmp
directory, stopped at the end of the test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for d in ("/usr/sbin", "/usr/bin") if os.access(p := f"{d}/{name}", os.X_OK)), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: `make test` installs it (apt-get)")
    return found


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def start_redis(tmp: Path, port: int | None = None) -> Redis:
    port = port or free_port()
    proc = subprocess.Popen(
        [
            binary("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Redis(port, proc)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    r = start_redis(tmp_path)
    yield r
    r.stop()


@dataclass
class Serve:
    proc: subprocess.Popen[str]
    port: int
    lines: list[str]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def start_serve(
    tmp: Path,
    config: str,
    *,
    redis_url: str | None,
    workers: int = 1,
    port: int = 0,
    grace: float = 1.0,
) -> Serve:
    cfg = tmp / f"config-{time.monotonic_ns()}.toml"
    cfg.write_text(config)
    env = dict(os.environ)
    env.pop("REALTIME_CASCADE_REDIS_URL", None)
    if redis_url is not None:
        env["REALTIME_CASCADE_REDIS_URL"] = redis_url
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "realtime_cascade.cli.main",
            "serve",
            "--config",
            str(cfg),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--grace",
            str(grace),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=tmp,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"serve exited early: {lines}")
        lines.append(line)
        if "health at" in line:
            m = re.search(r"127\.0\.0\.1:(\d+)", line)
            assert m is not None
            return Serve(proc, int(m.group(1)), lines)
    proc.kill()
    raise TimeoutError(f"serve did not start: {lines}")


def start_haproxy(tmp: Path, backends: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    """HAProxy in TCP-and-HTTP mode balancing WebSockets round-robin over ``backends``."""
    port = free_port()
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{p} check inter 500ms" for i, p in enumerate(backends)
    )
    conf = tmp / "haproxy.cfg"
    conf.write_text(
        f"""global
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""
    )
    proc = subprocess.Popen(
        [binary("haproxy"), "-f", str(conf), "-db"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port
