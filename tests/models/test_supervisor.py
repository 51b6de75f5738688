"""The llama-server supervisor, on a stand-in server: health, restart, stop, death with parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from realtime_cascade.models.errors import ServerFailed
from realtime_cascade.models.supervisor import LlamaServer, ServerSpec, probe_health

pytestmark = pytest.mark.anyio

FAKE = Path(__file__).with_name("fake_server.py")


def fake_binary(tmp_path: Path, *flags: str) -> Path:
    """An executable that runs the fake server with this interpreter."""
    binary = tmp_path / "llama-server"
    binary.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} {" ".join(flags)} "$@"\n')
    binary.chmod(0o755)
    return binary


def spec(tmp_path: Path, *flags: str) -> ServerSpec:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    return ServerSpec(binary=fake_binary(tmp_path, *flags), model=model)


def gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_the_command_line_names_one_thread_one_slot_and_the_port(tmp_path: Path) -> None:
    argv = spec(tmp_path).argv(4321)
    assert argv[1:] == [
        "--model", str(tmp_path / "m.gguf"), "--host", "127.0.0.1", "--port", "4321",
        "--threads", "1", "--parallel", "1", "--ctx-size", "2048",
    ]  # fmt: skip


async def test_ready_only_once_health_answers_200_and_restarted_after_death(
    tmp_path: Path,
) -> None:
    server = LlamaServer("light", spec(tmp_path), tmp_path / "log")
    try:
        url = await server.ensure(timeout_s=20)
        assert url == f"http://127.0.0.1:{server.port}/v1"
        assert await probe_health("127.0.0.1", server.port) == 200
        assert server.starts == 1
        server.suspect()  # a failed request: health is checked again, nothing restarted
        await server.ensure(timeout_s=20)
        assert server.starts == 1
        first = server.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # it dies between turns
        with anyio.fail_after(5):
            while server.alive():  # noqa: ASYNC110 - a process, no event to wait on
                await anyio.sleep(0.02)
        await server.ensure(timeout_s=20)
        assert server.starts == 2 and server.pid != first
        assert await probe_health("127.0.0.1", server.port) == 200
    finally:
        pid = server.pid
        server.stop()
    assert pid is not None and gone(pid) and not server.alive()


async def test_health_is_503_while_loading(tmp_path: Path) -> None:
    server = LlamaServer("light", spec(tmp_path, "--loading-s", "30"), tmp_path / "log")
    server.spawn()
    try:
        with anyio.fail_after(10):
            while (status := await probe_health("127.0.0.1", server.port)) is None:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert status == 503
        with pytest.raises(ServerFailed, match="not healthy after 1 s"):
            await server.wait_ready(timeout_s=1)
        assert not server.alive()  # given up on: stopped
    finally:
        server.stop()


async def test_a_server_that_exits_says_so_with_its_log(tmp_path: Path) -> None:
    server = LlamaServer("strong", spec(tmp_path, "--exit-at-once"), tmp_path / "log")
    with pytest.raises(ServerFailed) as err:
        await server.ensure(timeout_s=20)
    assert "exited (status 3) before it was ready" in err.value.message
    assert "cannot load the model" in err.value.message


async def test_missing_binary_or_model_is_a_clear_error(tmp_path: Path) -> None:
    s = spec(tmp_path)
    missing = ServerSpec(binary=tmp_path / "nope", model=s.model)
    with pytest.raises(ServerFailed, match=r"llama-server .*nope does not exist"):
        await LlamaServer("light", missing, tmp_path / "log").ensure()
    with pytest.raises(ServerFailed, match=r"model .*x\.gguf does not exist"):
        await LlamaServer(
            "light", ServerSpec(s.binary, tmp_path / "x.gguf"), tmp_path / "l"
        ).ensure()


async def test_nothing_listening_is_no_status() -> None:
    from realtime_cascade.models.supervisor import free_port

    assert await probe_health("127.0.0.1", free_port(), timeout_s=1) is None


def test_the_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """SIGKILL the owner (no cleanup runs at all): the kernel's death signal ends the server."""
    s = spec(tmp_path)
    pidfile = tmp_path / "pid"
    owner = textwrap.dedent(
        f"""
        import anyio, pathlib, time
        from pathlib import Path
        from realtime_cascade.models.supervisor import LlamaServer, ServerSpec
        server = LlamaServer("light", ServerSpec(Path({str(s.binary)!r}), Path({str(s.model)!r})),
                             Path({str(tmp_path / "log")!r}))
        anyio.run(server.ensure)
        pathlib.Path({str(pidfile)!r}).write_text(str(server.pid))
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", owner])
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        child = int(pidfile.read_text())
        os.kill(child, 0)  # running
        proc.kill()
        proc.wait()
        assert gone(child), "the server outlived the process that started it"
    finally:
        if proc.poll() is None:
            proc.kill()
