"""Speculative transcription (audio.session, rule 9): the recogniser starts at a pause in the
speech, before the silence that ends the turn has been timed; the turn takes that transcript
if no speech came after the pause, and drops it if the user went on."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import msgspec
import numpy as np
import pytest

from realtime_cascade import config as config_mod
from realtime_cascade.audio.config import AudioConfig, Speech, build_speech
from realtime_cascade.audio.pcm import RATE, Samples, encode_b64
from realtime_cascade.server.app import RealtimeServer
from tests.server.helpers import Raw, raw

from .fakes import FakeStt, FakeTts, silence, tone

pytestmark = pytest.mark.anyio

TRANSCRIBED = "conversation.item.input_audio_transcription.completed"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class LengthStt(FakeStt):
    """Transcribes audio as its length: which audio a transcript came from is in the text."""

    def __init__(self) -> None:
        super().__init__()
        self.started = anyio.Event()
        self.stopped = anyio.Event()  # a job was cancelled

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        self.started.set()
        try:
            await super().transcribe(samples, language=language, prompt=prompt)
        finally:
            if self.cancelled:
                self.stopped.set()
        return f"{len(samples) * 1000 // RATE} ms"


async def serve(stt: FakeStt, *, speculate: bool = True) -> AsyncIterator[RealtimeServer]:
    cfg = config_mod.load()
    profile = config_mod.build_profile(cfg, "default")
    profile.speech = Speech(stt, FakeTts(), vad="energy", speculate=speculate)
    async with RealtimeServer(cfg, host="127.0.0.1", port=0, profiles={"default": profile}) as srv:
        yield srv


async def send(c: Raw, samples: Samples, chunk_ms: int = 100, real_time: bool = False) -> None:
    step = chunk_ms * RATE // 1000
    start = time.monotonic()
    for i in range(0, len(samples), step):
        if real_time:
            await anyio.sleep(max(0.0, start + i / RATE - time.monotonic()))
        chunk = encode_b64(samples[i : i + step])
        await c.send({"type": "input_audio_buffer.append", "audio": chunk})


def speech(*parts: tuple[int, int]) -> Samples:
    """300 ms of silence, then (tone ms, silence ms) pairs."""
    out = [silence(300)]
    for on, off in parts:
        out += [tone(on), silence(off)]
    return np.concatenate(out)


def event(events: list[dict[str, object]], kind: str) -> dict[str, object]:
    return next(e for e in events if e["type"] == kind)


async def test_the_turn_takes_the_transcript_started_at_its_pause() -> None:
    stt = LengthStt()
    stt.delay = 0.25
    async for server in serve(stt):
        async with raw(server) as c:
            # in real time: the recogniser runs while the 500 ms of silence is timed
            await send(c, speech((800, 700)), real_time=True)
            events = await c.until("response.done")
    assert len(stt.heard) == 1  # one recognition for the turn, started at the pause
    done, how = event(events, TRANSCRIBED), event(events, "cascade.transcription")
    assert how["speculative"] is True and how["item_id"] == done["item_id"]
    assert done["transcript"] == f"{len(stt.heard[0]) * 1000 // RATE} ms"
    assert 1100 <= len(stt.heard[0]) * 1000 // RATE <= 1200  # speech up to the pause
    assert done["usage"] == {"type": "duration", "seconds": 1.6}  # the item: speech + silence
    # the recogniser's 250 ms ran inside the 500 ms of silence: the turn waited for none of it
    assert isinstance(how["stt_ms"], float) and isinstance(how["saved_ms"], float)
    assert how["stt_ms"] >= 240 and how["saved_ms"] >= 0.8 * how["stt_ms"]


async def test_speech_after_the_pause_drops_the_speculation() -> None:
    stt = LengthStt()
    async for server in serve(stt):
        async with raw(server) as c:
            # a 200 ms pause (shorter than the 500 ms that ends a turn), then more speech
            await send(c, speech((800, 200), (400, 700)), real_time=True)
            events = await c.until("response.done")
    assert len(stt.heard) == 2  # at the first pause (dropped), at the second (taken)
    done, how = event(events, TRANSCRIBED), event(events, "cascade.transcription")
    assert how["speculative"] is True
    # the transcript the turn answered includes the speech after the first pause
    assert done["transcript"] == f"{len(stt.heard[1]) * 1000 // RATE} ms"
    assert len(stt.heard[1]) * 1000 // RATE >= 300 + 800 + 200 + 400
    assert len(stt.heard[0]) * 1000 // RATE <= 1200


async def test_one_speculation_in_flight_a_session() -> None:
    stt = LengthStt()
    stt.delay = 1.0  # still decoding the first pause when the second comes
    async for server in serve(stt):
        async with raw(server) as c:
            await send(c, speech((800, 200), (400, 700)))
            events = await c.until("response.done")
    # the dropped speculation, then the turn's own recognition at its commit: no second
    # speculation while the first was in flight
    assert len(stt.heard) == 2
    done, how = event(events, TRANSCRIBED), event(events, "cascade.transcription")
    assert how["speculative"] is False and how["saved_ms"] == 0.0
    assert done["transcript"] == "2200 ms"  # the whole turn: to the end of 500 ms of silence


async def test_a_speculation_is_cancelled_when_the_session_ends() -> None:
    stt = LengthStt()
    stt.delay = 30.0
    async for server in serve(stt):
        async with raw(server) as c:
            await send(c, speech((800, 200)))  # a pause, and no stop yet
            with anyio.fail_after(5):
                await stt.started.wait()
        with anyio.fail_after(5):  # the session closed: its speculative job goes with it
            await stt.stopped.wait()
    assert (len(stt.heard), stt.cancelled) == (1, 1)


async def test_speculation_can_be_turned_off() -> None:
    stt = LengthStt()
    async for server in serve(stt, speculate=False):
        async with raw(server) as c:
            await send(c, speech((800, 700)))
            events = await c.until("response.done")
    assert [len(h) for h in stt.heard] == [1600 * RATE // 1000]  # at the commit, all of it
    how = event(events, "cascade.transcription")
    assert how["speculative"] is False and how["saved_ms"] == 0.0


def test_speculative_stt_is_a_config_setting() -> None:
    off = msgspec.toml.decode(b'vad = "energy"\nspeculative_stt = false', type=AudioConfig)
    assert build_speech(off).speculate is False
    assert build_speech(AudioConfig(vad="energy")).speculate is True  # on by default
