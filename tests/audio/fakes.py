"""Stand-in speech engines: instant, deterministic, scriptable to fail."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import numpy as np

from realtime_cascade.audio.pcm import RATE, Samples
from realtime_cascade.audio.speech import word_spans
from realtime_cascade.audio.stt import TranscriptionError
from realtime_cascade.audio.tts import SpeechChunk, SpeechError, Word

MS_PER_CHAR = 50  # the fake voice: 50 ms of audio per character


class FakeStt:
    """Transcribes any audio as ``text`` (or fails with ``error``), after ``delay`` seconds."""

    name = "fake-stt"

    def __init__(self, text: str = "book a table", error: str | None = None) -> None:
        self.text = text
        self.error = error
        self.delay = 0.0
        self.heard: list[Samples] = []
        self.prompts: list[str | None] = []
        self.cancelled = 0  # jobs whose caller left before they finished

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        self.heard.append(samples)
        self.prompts.append(prompt)
        try:
            await anyio.sleep(self.delay)
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        if self.error is not None:
            raise TranscriptionError(self.error)
        return self.text

    async def warm(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FakeTts:
    """A constant tone, ``MS_PER_CHAR`` per character, with exact word timings; may fail on
    phrases containing ``fail_on``; ``delay`` seconds per phrase."""

    name = "fake-tts"

    def __init__(self, fail_on: str | None = None, delay: float = 0.0, chunks: int = 1) -> None:
        self.fail_on = fail_on
        self.delay = delay
        self.chunks = chunks
        self.spoken: list[str] = []

    def check_voice(self, voice: str) -> None:
        if voice.startswith("missing"):
            raise SpeechError(f"fake-tts has no voice {voice!r}")

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]:
        await anyio.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in text:
            raise SpeechError("fake failure")
        self.spoken.append(text)
        n = len(text) * MS_PER_CHAR * RATE // 1000
        samples = np.full(n, 1000, dtype=np.int16)
        words = [Word(i, j, float(i * MS_PER_CHAR)) for i, j in word_spans(text)]
        step = -(-n // self.chunks)
        for k in range(0, n, step):
            yield SpeechChunk(samples[k : k + step], tuple(words) if k == 0 else ())

    async def warm(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def tone(ms: int, amplitude: int = 3000, hz: float = 220.0) -> Samples:
    t = np.arange(ms * RATE // 1000) / RATE
    out: Samples = (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return out


def silence(ms: int) -> Samples:
    return np.zeros(ms * RATE // 1000, dtype=np.int16)
