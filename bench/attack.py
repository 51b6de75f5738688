"""Issue 12's attacks against a served process: memory, crashes, and what bystanders feel.

    python -m bench.attack [--seconds S] [--seed N] [--json PATH]

Starts ``realtime-cascade serve`` (the default config with two API keys, the attackers' and
the bystander's, and a per-key event rate; loopback, a free port) and, one attack
at a time, runs a bounded attacker (``--seconds`` each, 6 by default) beside a bystander that
runs turns. Per attack: cases tried (payloads are drawn per case from the seed: sizes, header
choices, path lengths vary), HTTP 5xx / ERROR log lines / a dead server (crashes), the
server's peak RSS (``/proc/PID/status`` VmRSS, sampled every 50 ms), its RSS 3 s after the
attacker left, and the bystander's median turn latency over the no-attack median.
Loopback only; everything bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import anyio
from websockets.asyncio.client import connect

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {key}\r\n{extra}\r\n"
)
# The served process has two keys, so the attackers' per-key limits are not the bystander's.
ATTACKER_KEY, BYSTANDER_KEY = "attacker-key-0123456789", "bystander-key-0123456789"
PER_KEY_RATE = 400.0  # events per second per key (server.max_events_per_second_per_key)


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (mask 0: the payload goes as it is)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Result:
    attack: str
    cases: int = 0
    server_5xx: int = 0
    peak_rss_mb: float = 0.0
    rss_after_mb: float = 0.0
    bystander_ratio: float = 0.0
    notes: list[str] = field(default_factory=list)


class Target:
    def __init__(self, port: int, pid: int) -> None:
        self.port, self.pid = port, pid
        self.url = f"ws://127.0.0.1:{port}/v1/realtime?model=default"

    def raw(self, extra: str = "", path: str = "/v1/realtime") -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(
            HANDSHAKE.format(path=path, port=self.port, extra=extra, key=ATTACKER_KEY).encode()
        )
        s.recv(4096)
        s.setblocking(False)
        return s


def send_some(s: socket.socket, data: bytes) -> bool:
    """False once the server closed or stopped taking data (the attacker is cut off)."""
    try:
        s.send(data)
        return True
    except BlockingIOError:
        time.sleep(0.01)
        return True
    except OSError:
        return False


# --- attackers (threads: blocking sockets, never reading) ---------------------------------------


def slow_reader(t: Target, rng: random.Random, until: float, r: Result) -> None:
    """Large items retrieved fast by a client that never reads (item 2)."""
    while time.monotonic() < until:
        s = t.raw()
        size = rng.randint(200_000, 900_000)
        item = {"type": "message", "role": "user", "id": "big"}
        item["content"] = [{"type": "input_text", "text": "a" * size}]  # type: ignore[assignment]
        send_some(
            s, frame(1, json.dumps({"type": "conversation.item.create", "item": item}).encode())
        )
        r.cases += 1
        t0 = time.monotonic()
        retrieve = frame(1, b'{"type":"conversation.item.retrieve","item_id":"big"}')
        while time.monotonic() < until and send_some(s, retrieve):
            time.sleep(1 / 150)
        cut = time.monotonic() < until
        r.notes.append(f"{'cut off' if cut else 'still open'} after {time.monotonic() - t0:.1f} s")
        s.close()


def ping_flood(t: Target, rng: random.Random, until: float, r: Result) -> None:
    """Pings (and unsolicited pongs) as fast as the socket takes them, never reading (item 5)."""
    while time.monotonic() < until:
        s = t.raw()
        r.cases += 1
        op = rng.choice((9, 9, 10))
        burst = frame(op, os.urandom(rng.randint(0, 125))) * 50
        while time.monotonic() < until and send_some(s, burst):
            pass
        s.close()


def conversation_growth(t: Target, rng: random.Random, until: float, r: Result) -> None:
    """Items of up to ~1 MB, added until refused (item 4); reads its errors."""
    while time.monotonic() < until:
        s = t.raw()
        s.setblocking(True)
        s.settimeout(2)
        for _ in range(400):
            if time.monotonic() >= until:
                break
            size = rng.randint(1000, 1_000_000)
            item = {"type": "message", "role": "user"}
            item["content"] = [{"type": "input_text", "text": "b" * size}]  # type: ignore[assignment]
            try:
                s.sendall(
                    frame(
                        1, json.dumps({"type": "conversation.item.create", "item": item}).encode()
                    )
                )
                s.recv(1 << 20)
            except OSError:
                break
            r.cases += 1
        s.close()


def session_hog(t: Target, rng: random.Random, until: float, r: Result) -> None:
    """Sessions opened and held idle, past the per-client cap (item 10)."""
    held: list[socket.socket] = []
    refused = 0
    while time.monotonic() < until and len(held) + refused < 300:
        s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
        s.sendall(
            HANDSHAKE.format(path="/v1/realtime", port=t.port, extra="", key=ATTACKER_KEY).encode()
        )
        head = s.recv(4096)
        r.cases += 1
        if b" 101 " in head.split(b"\r\n")[0]:
            held.append(s)
        else:
            refused += 1
            s.close()
    r.notes.append(f"held {len(held)}, refused {refused}")
    time.sleep(max(0.0, until - time.monotonic()))
    for s in held:
        s.close()


def http_cases(t: Target, rng: random.Random, until: float, r: Result) -> None:
    """Duplicate Authorization/Origin/Host, NUL and over-long path components, rebound Hosts
    (items 9, 12): every answer must be a 4xx (or a 2xx/101 for what is fine)."""
    while time.monotonic() < until and r.cases < 2000:
        path = rng.choice(["/v1/realtime", "/metrics", "/healthz", "/", "/index.html"])
        kind = rng.choice(["dup", "nul", "long", "rebind"])
        extra = ""
        if kind == "dup":
            name = rng.choice(["Authorization", "Origin", "Host"])
            value = {"Authorization": "Bearer x", "Origin": "http://127.0.0.1", "Host": "a"}[name]
            extra = f"{name}: {value}\r\n" * rng.randint(2, 4)
        elif kind == "nul":
            path = "/" + "x" * rng.randint(0, 20) + "\0" + "y" * rng.randint(0, 20)
        elif kind == "long":
            path = "/" + "z" * rng.randint(250, 4000)
        else:
            host = rng.choice(["evil.example", "127.0.0.1.evil.example", "attacker.test"])
            extra = f"Origin: http://{host}\r\n"
        req = HANDSHAKE.format(path=path, port=t.port, extra=extra, key=ATTACKER_KEY)
        if kind == "rebind":
            req = req.replace("Host: 127.0.0.1", f"Host: {host}")
        try:
            with socket.create_connection(("127.0.0.1", t.port), timeout=5) as s:
                s.sendall(req.encode("latin-1"))
                status = int(s.recv(4096).split()[1])
        except (OSError, ValueError, IndexError):
            status = 0
        r.cases += 1
        if status >= 500:
            r.server_5xx += 1


def reconnect_rate(t: Target, rng: random.Random, until: float, r: Result) -> None:
    """Bursts of events, reconnecting after each to get a fresh session bucket (item 8): what
    the key gets accepted per second must stay near the per-key rate, not sessions × 200/s."""
    accepted = refused = 0
    t0 = time.monotonic()
    while time.monotonic() < until:
        s = t.raw()
        s.setblocking(True)
        s.settimeout(0.3)
        burst = rng.randint(50, 400)
        try:
            s.sendall(frame(1, b'{"type":"input_audio_buffer.clear"}') * burst)
            got = b""
            while True:
                piece = s.recv(1 << 16)
                if not piece:
                    break
                got += piece
        except OSError:
            pass
        finally:
            s.close()
        r.cases += 1
        accepted += got.count(b"input_audio_buffer.cleared")
        refused += got.count(b"rate_limit_exceeded")
    rate = accepted / max(1e-9, time.monotonic() - t0)
    r.notes.append(
        f"{accepted} accepted ({rate:.0f}/s; per-key limit {PER_KEY_RATE:.0f}/s, "
        f"per session 200/s), {refused} refused"
    )


ATTACKS: dict[str, Callable[[Target, random.Random, float, Result], None]] = {
    "slow_reader": slow_reader,
    "ping_flood": ping_flood,
    "conversation_growth": conversation_growth,
    "session_hog": session_hog,
    "http_cases": http_cases,
    "reconnect_rate": reconnect_rate,
}


# --- bystander ---------------------------------------------------------------------------------


async def bystander(url: str, until: float) -> list[float]:
    out: list[float] = []
    item = {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Book a table for two."}],
        },
    }
    while time.monotonic() < until:
        try:
            auth = {"Authorization": f"Bearer {BYSTANDER_KEY}"}
            async with connect(url, max_size=None, additional_headers=auth) as ws:
                await ws.recv()
                for _ in range(3):
                    t0 = time.monotonic()
                    await ws.send(json.dumps(item))
                    await ws.send('{"type":"response.create"}')
                    while json.loads(await ws.recv())["type"] != "response.done":
                        pass
                    out.append(time.monotonic() - t0)
        except Exception as exc:  # a refused bystander is a finding, not a crash of the bench
            print(f"bystander: {type(exc).__name__}: {exc}", file=sys.stderr)
            await anyio.sleep(0.2)
    return out


async def phase(
    t: Target, name: str | None, seconds: float, seed: int
) -> tuple[Result, list[float]]:
    r = Result(name or "none")
    until = time.monotonic() + seconds
    peak = rss_mb(t.pid)
    rng = random.Random(seed)
    latencies: list[float] = []

    async def sample() -> None:
        nonlocal peak
        while time.monotonic() < until + 0.5:
            peak = max(peak, rss_mb(t.pid))
            await anyio.sleep(0.05)

    async def attack() -> None:
        if name is not None:
            await anyio.to_thread.run_sync(ATTACKS[name], t, rng, until, r)

    async def by() -> None:
        latencies.extend(await bystander(t.url, until))

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        tg.start_soon(attack)
        tg.start_soon(by)
    await anyio.sleep(3.0)
    r.peak_rss_mb, r.rss_after_mb = round(peak, 1), round(rss_mb(t.pid), 1)
    return r, latencies


async def main_async(seconds: float, seed: int, rounds: int = 1) -> dict[str, object]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "from realtime_cascade.cli.main import main; raise SystemExit(main())"
    # The default config, with two keys and a per-key event rate.
    default = (resources.files("realtime_cascade") / "default.toml").read_text()
    server = (
        f'\n[server]\napi_keys = ["{ATTACKER_KEY}", "{BYSTANDER_KEY}"]\n'
        f"max_events_per_second_per_key = {PER_KEY_RATE}\n"
    )
    cfg = Path(tempfile.mkdtemp(prefix="attack-")) / "attack.toml"
    cfg.write_text(default + server)
    argv = [sys.executable, "-c", code, "serve", "--port", str(port), "--config", str(cfg)]
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once, before any attack)
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    await anyio.sleep(0.2)
        t = Target(port, proc.pid)
        await phase(t, None, 3.0, seed)  # warm-up
        base, base_lat = await phase(t, None, seconds, seed)
        baseline_rss = base.rss_after_mb
        base_median = statistics.median(base_lat)
        rows = [base]
        # A second round shows whether what stays after an attack grows on repeat.
        for round_ in range(rounds):
            for k, name in enumerate(ATTACKS):
                r, lat = await phase(t, name, seconds, seed + k + 100 * round_)
                if round_:
                    r.attack = f"{name} (round {round_ + 1})"
                median = statistics.median(lat) if lat else 0.0
                r.bystander_ratio = round(median / base_median, 2)
                rows.append(r)
                print(json.dumps(asdict(r)), flush=True)
        alive = proc.poll() is None
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    errors = [line for line in err.splitlines() if " ERROR " in line or "Traceback" in line]
    return {
        "baseline_rss_mb": baseline_rss,
        "baseline_turn_s": round(base_median, 3),
        "server_alive_after": alive,
        "error_log_lines": len(errors),
        "error_samples": errors[:5],
        "attacks": [asdict(r) for r in rows[1:]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=6.0, help="per attack (6)")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--rounds", type=int, default=1, help="run every attack this often (1)")
    args = p.parse_args(argv)
    report = anyio.run(main_async, min(args.seconds, 20.0), args.seed, max(1, min(args.rounds, 3)))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
