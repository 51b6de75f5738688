"""Native engines' worker processes: faults cost a job, cancelled jobs stop, workers die with
the server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import anyio
import pytest

from realtime_cascade.audio.workers import EngineError, WorkerDied, WorkerPool

pytestmark = pytest.mark.anyio

CRASHY = "tests.audio.engines_for_tests:Crashy"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (killed, not yet reaped by a parent that is itself gone)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_jobs_results_errors_and_streams() -> None:
    pool = WorkerPool("crashy", CRASHY, ("a",), size=2)
    try:
        assert await pool.call("echo", [1, 2]) == ("a", [1, 2])
        assert [x async for x in pool.stream("count", 3)] == [0, 1, 2]
        with pytest.raises(EngineError) as info:
            await pool.call("fail")
        assert (info.value.code, info.value.message) == ("bad_thing", "no such thing")
        assert await pool.call("echo", 3) == ("a", 3)  # an engine error keeps the worker
        assert pool.restarts == 0
    finally:
        await pool.aclose()
    assert pool.pids() == []


async def test_an_engine_that_cannot_start_is_a_clear_error() -> None:
    pool = WorkerPool("broken", "tests.audio.engines_for_tests:Broken")
    with pytest.raises(EngineError, match="the model is missing") as info:
        await pool.call("anything")
    assert info.value.code == "unavailable"
    await pool.aclose()


async def test_a_worker_that_dies_fails_its_job_and_is_replaced() -> None:
    pool = WorkerPool("crashy", CRASHY, ("a",), size=1)
    try:
        first = await pool.call("pid")
        with pytest.raises(WorkerDied, match=r"crashy worker \(pid \d+\) died \(signal 6\)"):
            await pool.call("abort")
        assert not alive(first)
        second = await pool.call("pid")  # restarted
        assert second != first and pool.restarts == 1
        assert await pool.call("echo", "still here") == ("a", "still here")
    finally:
        await pool.aclose()


async def test_a_cancelled_job_kills_its_worker_and_queued_jobs_leave() -> None:
    pool = WorkerPool("crashy", CRASHY, ("a",), size=1)
    try:
        busy = await pool.call("pid")
        outcome: list[str] = []

        async def sleeper() -> None:
            outcome.append(await pool.call("sleep", 30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            tg.start_soon(sleeper)  # queued behind the first
            await anyio.sleep(0.5)
            tg.cancel_scope.cancel()
        assert outcome == []
        deadline = time.monotonic() + 5
        while alive(busy) and time.monotonic() < deadline:  # noqa: ASYNC110
            await anyio.sleep(0.05)
        assert not alive(busy)  # the job's CPU is not spent for nobody
        assert await pool.call("echo", 1) == ("a", 1)
        assert len(pool.pids()) == 1
    finally:
        await pool.aclose()


def test_workers_die_with_their_parent(tmp_path: os.PathLike[str]) -> None:
    script = textwrap.dedent(
        f"""
        import anyio, sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from realtime_cascade.audio.workers import WorkerPool

        async def main():
            pool = WorkerPool("crashy", {CRASHY!r}, ("a",), size=2)
            await pool.call("pid")
            async with anyio.create_task_group() as tg:
                tg.start_soon(pool.call, "sleep", 60)  # both workers busy
                tg.start_soon(pool.call, "sleep", 60)
                while len(pool.pids()) < 2:
                    await anyio.sleep(0.1)
                await anyio.sleep(0.5)
                print(" ".join(map(str, pool.pids())), flush=True)
                await anyio.sleep(60)

        anyio.run(main)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(p) for p in pids), "orphaned workers survived their parent"
    finally:
        parent.kill()
        parent.wait()
