"""One session's audio must not slow the others: a session appends 48 kHz audio at the
largest sustained rate allowed (4x real time: 100 ms every 25 ms; resampling and Silero VAD
run in worker threads), while a bystander runs text turns and /healthz is polled.

    python -m bench.voice_loop

Prints the bystander's turn time and /healthz p50, alone and beside the appender.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
import urllib.request

import anyio
import numpy as np
from websockets.asyncio.client import connect

from realtime_cascade import config as config_mod
from realtime_cascade.server.app import RealtimeServer


async def turns(url: str, n: int) -> list[float]:
    out = []
    async with connect(url, max_size=None) as ws:
        await ws.recv()
        for _ in range(n):
            t = time.perf_counter()
            await ws.send(
                json.dumps(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [
                                {"type": "input_text", "text": "Is there a table for two tomorrow?"}
                            ],
                        },
                    }
                )
            )
            await ws.send(json.dumps({"type": "response.create"}))
            while json.loads(await ws.recv())["type"] != "response.done":
                pass
            out.append((time.perf_counter() - t) * 1000)
    return out


def health(port: int, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read()
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.05)
    return out


async def appender(url: str, stop: anyio.Event) -> None:
    chunk = base64.b64encode(
        np.random.default_rng(0).normal(0, 2000, 48000 // 10).astype("<i2").tobytes()
    ).decode()
    async with connect(url, max_size=None) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {
                        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 48000}}}
                    },
                }
            )
        )
        while not stop.is_set():
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await anyio.sleep(0.025)  # 100 ms of audio every 25 ms: 4x real time


async def main() -> None:
    cfg = config_mod.load()
    async with RealtimeServer(cfg, host="127.0.0.1", port=0) as server:
        url = server.url("default")
        await turns(url, 3)
        base = await turns(url, 15)
        hb = await anyio.to_thread.run_sync(health, server.port, 20)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(appender, url, stop)
            await anyio.sleep(1)
            loaded = await turns(url, 15)
            hl = await anyio.to_thread.run_sync(health, server.port, 20)
            stop.set()
        print(
            f"bystander turn p50 ms: alone {statistics.median(base):.0f}, "
            f"with a 48 kHz appender {statistics.median(loaded):.0f}"
        )
        print(
            f"/healthz p50 ms: alone {statistics.median(hb):.1f}, "
            f"with the appender {statistics.median(hl):.1f}"
        )


if __name__ == "__main__":
    anyio.run(main)
