"""Speech-to-text behind one interface; one module per engine.

    Transcriber.transcribe(samples, language=…, prompt=…) -> str   (24 kHz PCM16 in)

    whisper.py       faster-whisper, Whisper tiny.en (int8, CTranslate2) from a package: the
                     default (the ``voice`` extra); worker processes
    packaged.py      the Whisper models that come in packages, by name (tiny.en, base)
    pocketsphinx.py  CMU pocketsphinx, its wheel's US English model: light; worker processes
    openai.py        ``POST /audio/transcriptions`` on an OpenAI-compatible endpoint

Native recognisers run in :class:`~realtime_cascade.audio.workers.WorkerPool` processes: a
fault costs one transcription (``stt_unavailable``), a session that ends cancels its jobs.
Errors become :class:`TranscriptionError`, which the session reports as
``conversation.item.input_audio_transcription.failed``.
"""

from __future__ import annotations

from typing import Protocol

from ..pcm import Samples
from ..workers import EngineError, WorkerDied, WorkerPool


class TranscriptionError(Exception):
    """The audio could not be transcribed; ``code`` is the wire error code."""

    def __init__(self, message: str, code: str = "transcription_failed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Transcriber(Protocol):
    name: str

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str: ...

    async def warm(self) -> None: ...

    async def aclose(self) -> None: ...


def check_english(engine: str, language: str | None) -> None:
    if language is not None and not language.lower().startswith("en"):
        raise TranscriptionError(
            f"the {engine} recogniser only knows English, not {language!r}",
            "unsupported_language",
        )


async def run_in_pool(pool: WorkerPool, method: str, *args: object) -> str:
    """A worker's transcript; its failures as :class:`TranscriptionError`."""
    try:
        return str(await pool.call(method, *args))
    except EngineError as exc:
        raise TranscriptionError(f"{pool.name}: {exc.message}", exc.code) from None
    except WorkerDied as exc:
        raise TranscriptionError(str(exc), "stt_unavailable") from None


from . import packaged  # noqa: E402
from .openai import OpenAITranscriber, OpenAITranscriptionConfig, wav_bytes  # noqa: E402
from .pocketsphinx import PocketsphinxConfig, PocketsphinxTranscriber  # noqa: E402
from .whisper import WhisperConfig, WhisperTranscriber  # noqa: E402

__all__ = [
    "OpenAITranscriber",
    "OpenAITranscriptionConfig",
    "PocketsphinxConfig",
    "PocketsphinxTranscriber",
    "Transcriber",
    "TranscriptionError",
    "WhisperConfig",
    "WhisperTranscriber",
    "check_english",
    "packaged",
    "run_in_pool",
    "wav_bytes",
]
