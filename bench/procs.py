"""The processes under test: sim upstreams, the server, the bare baseline; config generation.

Each is a subprocess started with this interpreter, ready once it prints its address. CPU time
and resident memory are read from ``/proc/PID/stat`` and ``/proc/PID/status`` (no psutil): the
server's own numbers, threads included, without the client's or the upstreams'.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from realtime_cascade import config as config_mod

_TICKS = os.sysconf("SC_CLK_TCK")


class ProcError(RuntimeError):
    pass


class Proc:
    """A child process that announces itself with a line matching ``ready``."""

    def __init__(self, name: str, argv: Sequence[str], ready: str, cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self._ready = re.compile(ready)
        self._cwd = cwd
        self._tail: deque[str] = deque(maxlen=40)
        self._popen: subprocess.Popen[str] | None = None
        self.match: re.Match[str] | None = None

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def start(self, timeout: float = 60.0) -> re.Match[str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(self._cwd) + (os.pathsep + path if path else "")
        self._popen = subprocess.Popen(
            self.argv,
            cwd=self._cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        found = threading.Event()
        stream = self._popen.stdout
        assert stream is not None

        def pump() -> None:
            for line in stream:
                self._tail.append(line.rstrip())
                if self.match is None:
                    m = self._ready.search(line)
                    if m is not None:
                        self.match = m
                        found.set()

        threading.Thread(target=pump, name=f"{self.name}-out", daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self._popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ProcError(f"{self.name} did not start:\n" + "\n".join(self._tail))
        assert self.match is not None
        return self.match

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def tail(self) -> str:
        return "\n".join(self._tail)

    def cpu_seconds(self) -> float:
        # `serve --workers N`: the supervisor and its workers (one process: just itself)
        return sum(_or_zero(cpu_seconds, p) for p in tree_pids(self.pid))

    def rss_bytes(self) -> int:
        return sum(_or_zero(rss_bytes, p) for p in tree_pids(self.pid))

    def stop(self, timeout: float = 10.0) -> None:
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGINT)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (``/proc/PID/task/TID/children``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children", encoding="ascii") as f:
                    todo.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    return out


def _or_zero(fn: Callable[[int], float], pid: int) -> float:
    try:
        return fn(pid)
    except (OSError, ValueError, IndexError):
        return 0  # it exited between listing and reading


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # after "pid (comm) ": state is field 3, utime 14, stime 15 (1-based, man 5 proc)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid``."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_busy_seconds() -> float:
    """CPU-seconds all cores have spent busy since boot (``/proc/stat``: all but idle, iowait)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICKS


# --- config generation ----------------------------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        items = [f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def toml_dumps(data: Mapping[str, Any]) -> str:
    """A minimal TOML writer for config builtins: scalars at the top, then one table per
    section (``[server]``, ``[profiles.NAME]``), everything below it inline."""
    lines = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in data.items() if _is_leaf(v)]
    for key, value in data.items():
        if _is_leaf(value) or value is None:
            continue
        if key == "profiles":
            for name, profile in value.items():
                lines.append(f"\n[profiles.{json.dumps(name)}]")
                lines += [
                    f"{json.dumps(k)} = {_toml_value(v)}"
                    for k, v in profile.items()
                    if v is not None
                ]
        else:
            lines.append(f"\n[{json.dumps(key)}]")
            lines += [
                f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
            ]
    return "\n".join(lines) + "\n"


def _is_leaf(v: Any) -> bool:
    return v is not None and not isinstance(v, Mapping)


def sim_tiers(config_path: Path | None, profile: str) -> list[tuple[str, dict[str, Any]]]:
    """``(tier name, sim profile fields)`` of each tier, script resolved as the server would."""
    cfg = config_mod.load(config_path)
    prof = cfg.profiles[profile]
    out = []
    for tier in prof.tiers:
        provider = tier.provider
        if not isinstance(provider, config_mod.SimProviderConfig):
            raise ProcError(f"tier {tier.name!r} of {profile!r} is not a sim tier")
        fields = msgspec.to_builtins(provider)
        fields.pop("kind", None)
        if prof.script:
            fields["script"] = prof.script
        out.append((tier.name, fields))
    return out


def server_config(
    config_path: Path | None,
    profile: str,
    upstreams: Mapping[str, str],
    max_sessions: int,
    *,
    http_client: str = "aiohttp",
) -> str:
    """The profile with each tier on its sim upstream over the ``openai`` provider, as TOML.

    The router is switched off (``router_min_observations`` out of reach), so a policy's
    figures do not depend on what earlier cells taught it, nor on completion order.
    """
    cfg = config_mod.load(config_path)
    data = msgspec.to_builtins(cfg)
    prof = data["profiles"][profile]
    data["profiles"] = {profile: prof}
    for tier in prof["tiers"]:
        tier["provider"] = {
            "kind": "openai",
            "base_url": upstreams[tier["name"]],
            "model": tier["name"],
            "api_key_env": "",
            "http_client": http_client,
        }
    prof.setdefault("policy", {})["router_min_observations"] = 1_000_000_000
    server = data.setdefault("server", {})
    server["max_sessions"] = max(max_sessions, int(server.get("max_sessions", 0)))
    # every bench client is 127.0.0.1, one identity: its cap must not be the bench's
    server["max_sessions_per_key"] = 0
    server["max_events_per_second"] = max(1000.0, float(server.get("max_events_per_second", 0)))
    data["log_level"] = "warning"
    text = toml_dumps(data)
    config_mod.loads(text, "<bench config>")  # fail here, not in the server
    return text


def upstream_argv(
    port: int, tiers: Sequence[tuple[str, dict[str, Any]]], clock: str = "absolute"
) -> list[str]:
    """``realtime-cascade sim-upstream`` serving ``tiers``, keeping ``clock`` time
    (``absolute``: each token due at the stream's start plus its offset; ``relative``: one
    sleep per gap, lateness accumulating)."""
    module = "realtime_cascade.cli.sim_upstream"
    argv = [sys.executable, "-m", module, "--port", str(port), "--clock", clock]
    for name, fields in tiers:
        spec = ",".join([f"name={name}", *(f"{k}={v}" for k, v in fields.items())])
        argv += ["--profile", spec]
    return argv
