"""``realtime-cascade serve --agent``, as a user runs it: the ten-line example agent in
``examples/``, served from the repository root, answers a client with its tool run
server-side; a bad reference fails before anything is served."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[2]
# the console script, as a user runs it (its sys.path does not hold the current directory)
CLI = Path(sys.executable).with_name("realtime-cascade")


def serve(*args: str) -> subprocess.Popen[str]:
    exe = CLI if CLI.exists() else Path(shutil.which("realtime-cascade") or "realtime-cascade")
    return subprocess.Popen(
        [str(exe), "serve", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def one_turn(url: str, text: str) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    async with connect(url) as ws:
        content = [{"type": "input_text", "text": text}]
        item = {"type": "message", "role": "user", "content": content}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        with anyio.fail_after(15):
            while True:
                event = json.loads(await ws.recv())
                events.append(event)
                if event["type"] == "response.done":
                    return events


def test_serve_agent_runs_the_example_agents_tool() -> None:
    proc = serve("--agent", "examples.weather_agent:agent")
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"(ws://\S+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        events = anyio.run(one_turn, match.group(1), "call get_weather for Paris")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    (ran,) = [e for e in events if e["type"] == "cascade.tool_result"]
    assert ran["name"] == "get_weather" and ran["status"] == "ok"
    done = events[-1]["response"]
    assert isinstance(done, dict) and done["status"] == "completed"
    outputs = [i["output"] for i in done["output"] if i["type"] == "function_call_output"]
    assert outputs == ["Sunny and 21 °C in Paris."]
    created = events[0]
    assert created["type"] == "session.created"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("examples.weather_agent:nope", "has no attribute 'nope'"),
        ("examples.weather_agent:get_weather", "not an agent"),
        ("no_such_module_here:agent", "No module named"),
        ("examples.weather_agent", "expected 'package.module:attribute'"),
    ],
)
def test_a_bad_agent_reference_fails_before_serving(ref: str, message: str) -> None:
    proc = serve("--agent", ref)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert message in err and "serving" not in out
