"""SIGTERM while the recogniser is busy: the server honours its grace, and takes its worker
processes with it (they used to outlive it by a minute, or for ever when it was killed)."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

from realtime_cascade.audio.pcm import RATE

from .test_workers import alive


def workers_of(pid: int) -> list[int]:
    """The server's worker processes (its children running worker_process)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(") ", 1)[1].split()[1])
        if ppid == pid and b"worker_process" in cmdline:
            out.append(int(entry.name))
    return out


def test_sigterm_with_a_transcription_running_honours_the_grace() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "realtime_cascade", "serve", "--port", "0", "--grace", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = re.search(r"ws://\S+", line)
        assert url, line
        noise = np.random.default_rng(0).normal(0, 3000, 20 * RATE).astype("<i2")  # 20 s
        with connect(url[0], max_size=None) as ws:
            json.loads(ws.recv())  # session.created
            manual = {"audio": {"input": {"turn_detection": None}}}
            ws.send(json.dumps({"type": "session.update", "session": manual}))
            for i in range(0, len(noise), 2 * RATE):
                chunk = base64.b64encode(noise[i : i + 2 * RATE].tobytes()).decode()
                ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            while json.loads(ws.recv())["type"] != "input_audio_buffer.committed":
                pass
            deadline = time.monotonic() + 30
            while len(workers_of(server.pid)) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            workers = workers_of(server.pid)
            assert workers
            time.sleep(0.5)  # the decode is under way
            started = time.monotonic()
            server.send_signal(signal.SIGTERM)
            server.wait(15)
            took = time.monotonic() - started
        assert server.returncode == 0
        assert took < 1 + 4, f"shutdown took {took:.1f} s with a 1 s grace"
        deadline = time.monotonic() + 5
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(w) for w in workers)
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
        server.wait()
