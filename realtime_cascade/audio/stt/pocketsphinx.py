"""CMU pocketsphinx with the US English model its wheel ships: light and fully offline.

Decoding is CPU work (roughly a fifth of the audio's duration) that holds the GIL, and the
library is native code: it runs in worker processes (:mod:`..workers`), each loading its
decoder once (~0.25 s). A faint, seeded noise floor (``dither``) is added before decoding:
digital silence (all-zero frames, as synthetic speech or a browser's noise suppression
produce) throws the recogniser's feature normalisation off badly, and a real microphone's hiss
never does.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import msgspec
import numpy as np

from ..pcm import RATE, Samples, resample, to_bytes
from ..workers import EngineError, WorkerPool
from . import check_english, run_in_pool

DECODER_RATE = 16_000  # the pocketsphinx English model's


class PocketsphinxConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The light recogniser. Paths default to the model in the ``pocketsphinx`` wheel."""

    hmm: str | None = None  # acoustic model directory
    lm: str | None = None  # language model (ARPA or binary)
    dict: str | None = None  # pronunciation dictionary
    dither: Annotated[float, msgspec.Meta(ge=0)] = 100.0  # noise floor, std dev in PCM16 units
    decoders: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # worker processes


class PocketsphinxEngine:
    """In a worker process: one decoder, loaded once."""

    def __init__(self, options: dict[str, Any], dither: float) -> None:
        try:
            from pocketsphinx import Decoder  # type: ignore[import-untyped]
        except ImportError:
            raise EngineError("pocketsphinx is not installed: pip install pocketsphinx") from None
        try:
            self._decoder = Decoder(**options)
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"pocketsphinx: {exc}") from None
        self._cmn = self._decoder.get_cmn()
        self._dither = dither

    def transcribe(self, samples: Samples) -> str:
        audio = resample(samples, RATE, DECODER_RATE)
        if self._dither > 0 and len(audio):
            noise = np.random.default_rng(0).normal(0.0, self._dither, len(audio))
            audio = np.clip(audio + np.rint(noise), -32768, 32767).astype(np.int16)
        decoder = self._decoder
        try:
            # A worker serves every session, so a transcript must depend on its audio alone,
            # not on what the decoder heard before: start_stream() resets the front end's
            # noise estimate (start_utt() does not), and the CMN is reset too.
            decoder.set_cmn(self._cmn)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                decoder.start_stream()
            decoder.start_utt()
            decoder.process_raw(to_bytes(audio), full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
        except RuntimeError as exc:
            raise EngineError(f"pocketsphinx: {exc}", "transcription_failed") from None
        return str(hyp.hypstr).strip() if hyp is not None else ""


class PocketsphinxTranscriber:
    name = "pocketsphinx"

    def __init__(self, config: PocketsphinxConfig | None = None) -> None:
        self.config = c = config or PocketsphinxConfig()
        options: dict[str, Any] = {"samprate": DECODER_RATE, "loglevel": "FATAL"}
        options.update({k: getattr(c, k) for k in ("hmm", "lm", "dict") if getattr(c, k)})
        self.pool = WorkerPool(
            "pocketsphinx",
            "realtime_cascade.audio.stt.pocketsphinx:PocketsphinxEngine",
            (options, c.dither),
            size=c.decoders,
        )

    async def warm(self) -> None:
        """Start a worker and load its decoder now, so the first turn does not wait for it."""
        await self.pool.warm()

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        check_english("embedded pocketsphinx", language)
        return await run_in_pool(self.pool, "transcribe", samples)

    async def aclose(self) -> None:
        await self.pool.aclose()
