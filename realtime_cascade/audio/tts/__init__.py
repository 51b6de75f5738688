"""Text-to-speech behind one interface; one module per engine.

    Synthesizer.synthesize(text, voice, speed) -> async iterator of SpeechChunk (24 kHz PCM16)
    Synthesizer.check_voice(voice)             -> SpeechError unless the engine has that voice

    piper.py    Piper (onnxruntime), the CC0 "joe" en_US voice from a package: natural speech,
                the default (the ``voice`` extra); worker processes; GPL-3.0-or-later
    espeak.py   espeak-ng through ctypes: light, robotic; worker processes; GPL-3.0-or-later
    openai.py   ``POST /audio/speech`` on an OpenAI-compatible endpoint

A chunk may carry word timings (:class:`Word`: where each word of ``text`` starts in the
audio); the speech track uses them to map "the listener heard N ms" onto characters. A
synthesizer that knows none leaves them out and the track estimates them.

Voice names reach native code only after :meth:`Synthesizer.check_voice` found them in the
engine's installed voices (an allow-list): an unknown or over-long name is refused at
``session.update`` with a clear error. The Realtime API's own voice names ("alloy", "marin",
…) are accepted everywhere and mean "the configured voice" for the embedded engines.

Errors become :class:`SpeechError` (the session reports them and goes on without audio for
that phrase).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, Protocol

import msgspec
import numpy as np

from ..pcm import RATE, Samples
from ..workers import EngineError, WorkerDied, WorkerPool

# The OpenAI Realtime API's voices: a client may name one; an embedded engine uses its own.
REALTIME_VOICES: Final = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
)
MAX_VOICE_CHARS: Final = 40


class SpeechError(Exception):
    """Synthesis failed (the engine is missing, the endpoint refused, the connection broke)."""


class Word(msgspec.Struct, frozen=True):
    """A word of the synthesised text: characters [start, end) start at ``ms`` in the audio."""

    start: int
    end: int
    ms: float


class SpeechChunk(msgspec.Struct, frozen=True):
    samples: Samples  # 24 kHz mono int16
    words: tuple[Word, ...] = ()  # timings relative to the phrase's first sample


class Synthesizer(Protocol):
    name: str

    def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]: ...

    def check_voice(self, voice: str) -> None: ...

    async def warm(self) -> None: ...

    async def aclose(self) -> None: ...


def check_listed(engine: str, voice: str, installed: frozenset[str]) -> None:
    """:class:`SpeechError` unless ``voice`` is a Realtime voice or one of ``installed``."""
    if voice in REALTIME_VOICES:
        return
    if len(voice) > MAX_VOICE_CHARS or voice.lower() not in installed:
        shown = voice if len(voice) <= MAX_VOICE_CHARS else voice[:MAX_VOICE_CHARS] + "…"
        some = ", ".join(sorted(installed)[:8])
        raise SpeechError(f"{engine} has no voice {shown!r} (installed voices include {some})")


async def stream_from_pool(pool: WorkerPool, *args: object) -> AsyncIterator[SpeechChunk]:
    """A worker's chunks for ``synthesize(*args)``; its failures as :class:`SpeechError`."""
    try:
        async for chunk in pool.stream("synthesize", *args):
            yield chunk
    except EngineError as exc:
        raise SpeechError(f"{pool.name}: {exc.message}") from None
    except WorkerDied as exc:
        raise SpeechError(str(exc)) from None


def silence(ms: float) -> Samples:
    return np.zeros(round(ms * RATE / 1000), dtype=np.int16)


from .espeak import EspeakSynthesizer, espeak_voices  # noqa: E402
from .openai import OpenAISpeech, OpenAISpeechConfig, api_key  # noqa: E402
from .piper import PiperConfig, PiperSynthesizer  # noqa: E402

__all__ = [
    "REALTIME_VOICES",
    "EspeakSynthesizer",
    "OpenAISpeech",
    "OpenAISpeechConfig",
    "PiperConfig",
    "PiperSynthesizer",
    "SpeechChunk",
    "SpeechError",
    "Synthesizer",
    "Word",
    "api_key",
    "check_listed",
    "espeak_voices",
    "silence",
    "stream_from_pool",
]
