"""Speech-to-text behind one interface: pocketsphinx embedded, or an OpenAI-compatible endpoint.

    Transcriber.transcribe(samples, language=…, prompt=…) -> str   (24 kHz PCM16 in)

- :class:`PocketsphinxTranscriber` (the embedded default): CMU pocketsphinx with the US English
  model its wheel ships, fully offline. Decoding is CPU work (roughly a fifth of the audio's
  duration here) and pocketsphinx holds the GIL while it works (a thread would stall the event
  loop for the whole decode), so it runs in worker *processes*: a ``spawn`` process pool of
  ``decoders`` workers, each loading its decoder once (~0.25 s) and keeping it. (``spawn``, not
  ``anyio.to_process``: a worker then imports the main module the way multiprocessing does, so
  ``python -m package`` entry points work; a script run by path needs the usual
  ``if __name__ == "__main__":`` guard.)
  A faint, seeded noise floor (``dither``) is added before decoding: digital silence (all-zero
  frames, as synthetic speech or a browser's noise suppression produce) throws the recogniser's
  feature normalisation off badly, and a real microphone's hiss never does.
- :class:`OpenAITranscriber`: ``POST /audio/transcriptions`` (a WAV upload) through the
  ``openai`` package: OpenAI (``gpt-4o-mini-transcribe``, ``whisper-1``), or any compatible
  server (faster-whisper-server, vLLM, …).

Errors become :class:`TranscriptionError`, which the session reports as
``conversation.item.input_audio_transcription.failed``.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import io
import multiprocessing
import warnings
import wave
from typing import Annotated, Any, Protocol

import anyio
import msgspec
import numpy as np
import openai

from .pcm import RATE, Samples, resample, to_bytes
from .tts import api_key

DECODER_RATE = 16_000  # the pocketsphinx English model's


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


# --- pocketsphinx ------------------------------------------------------------------------------


class PocketsphinxConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The embedded recogniser. Paths default to the model in the ``pocketsphinx`` wheel."""

    hmm: str | None = None  # acoustic model directory
    lm: str | None = None  # language model (ARPA or binary)
    dict: str | None = None  # pronunciation dictionary
    dither: Annotated[float, msgspec.Meta(ge=0)] = 100.0  # noise floor, std dev in PCM16 units
    decoders: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2  # concurrent decodes at most


# In each worker process: its decoders, loaded on first use, by their options.
_DECODERS: dict[tuple[tuple[str, Any], ...], Any] = {}
_INITIAL_CMN: dict[tuple[tuple[str, Any], ...], str] = {}  # each decoder's CMN when loaded

_Options = tuple[tuple[str, Any], ...]
_Outcome = tuple[str, str]  # ("ok", text) or (error code, message): exceptions stay here


def _decoder(options: _Options) -> Any:
    decoder = _DECODERS.get(options)
    if decoder is None:
        from pocketsphinx import Decoder  # type: ignore[import-untyped]

        decoder = _DECODERS[options] = Decoder(**dict(options))
        _INITIAL_CMN[options] = decoder.get_cmn()
    return decoder


def _load_in_worker(options: _Options) -> _Outcome:
    try:
        _decoder(options)
    except ImportError:
        return "stt_unavailable", "pocketsphinx is not installed: pip install pocketsphinx"
    except (RuntimeError, ValueError, OSError) as exc:
        return "stt_unavailable", f"pocketsphinx: {exc}"
    return "ok", ""


def _decode_in_worker(options: _Options, dither: float, samples: Samples) -> _Outcome:
    loaded = _load_in_worker(options)
    if loaded[0] != "ok":
        return loaded
    audio = resample(samples, RATE, DECODER_RATE)
    if dither > 0 and len(audio):
        noise = np.random.default_rng(0).normal(0.0, dither, len(audio))
        audio = np.clip(audio + np.rint(noise), -32768, 32767).astype(np.int16)
    decoder = _decoder(options)
    try:
        # A worker serves every session, so a transcript must depend on its audio alone, not
        # on what the decoder heard before (and so on which worker got the job). start_utt()
        # does not reset the front end's noise-removal estimate (the model's remove_noise),
        # start_stream() does: without it, the request as VAD commits it came back "u have a
        # table…" when the same worker had decoded an utterance before it (as happens, under
        # load, when two sessions' turns land on one worker). The binding calls start_stream()
        # deprecated and unnecessary: it is neither here. The CMN is reset too, for models with
        # live CMN (this one's is batch: computed afresh for each whole utterance).
        decoder.set_cmn(_INITIAL_CMN[options])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            decoder.start_stream()
        decoder.start_utt()
        decoder.process_raw(to_bytes(audio), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
    except RuntimeError as exc:
        return "transcription_failed", f"pocketsphinx: {exc}"
    return "ok", str(hyp.hypstr).strip() if hyp is not None else ""


class PocketsphinxTranscriber:
    name = "pocketsphinx"

    def __init__(self, config: PocketsphinxConfig | None = None) -> None:
        self.config = config or PocketsphinxConfig()
        c = self.config
        options: dict[str, Any] = {"samprate": DECODER_RATE, "loglevel": "FATAL"}
        options.update({k: getattr(c, k) for k in ("hmm", "lm", "dict") if getattr(c, k)})
        self._options: _Options = tuple(sorted(options.items()))
        self._pool: cf.ProcessPoolExecutor | None = None

    def _workers(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = cf.ProcessPoolExecutor(self.config.decoders, mp_context=context)
            # let go of it at exit while the interpreter is whole (else its weakref callback
            # runs during teardown and prints an ignored exception)
            atexit.register(self._close_pool)
        return self._pool

    def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _result(outcome: _Outcome) -> str:
        code, text = outcome
        if code != "ok":
            raise TranscriptionError(text, code)
        return text

    async def _run(self, fn: Any, *args: Any) -> str:
        try:
            future = self._workers().submit(fn, *args)
            # a thread waits on the worker; the event loop does not
            outcome: _Outcome = await anyio.to_thread.run_sync(
                future.result, abandon_on_cancel=True
            )
        except cf.BrokenExecutor as exc:  # a worker died (killed, out of memory, …)
            self._pool = None  # the next call starts a new pool
            raise TranscriptionError(f"pocketsphinx worker: {exc}", "stt_unavailable") from None
        return self._result(outcome)

    async def warm(self) -> None:
        """Start a worker and load its decoder now, so the first turn does not wait for it."""
        await self._run(_load_in_worker, self._options)

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        if language is not None and not language.lower().startswith("en"):
            raise TranscriptionError(
                f"the embedded recogniser only knows English, not {language!r}",
                "unsupported_language",
            )
        return await self._run(_decode_in_worker, self._options, self.config.dither, samples)

    async def aclose(self) -> None:
        self._close_pool()


# --- an OpenAI-compatible transcription endpoint -----------------------------------------------


class OpenAITranscriptionConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST {base_url}/audio/transcriptions``."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini-transcribe"
    api_key_env: str = "OPENAI_API_KEY"  # "" for an endpoint that needs no key
    language: str | None = None
    prompt: str | None = None  # vocabulary hints ("Sakura, Luigi's, R-1001")
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


def wav_bytes(samples: Samples, rate: int = RATE) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_bytes(samples))
    return out.getvalue()


class OpenAITranscriber:
    name = "openai"

    def __init__(self, config: OpenAITranscriptionConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            api_key=api_key(config.api_key_env, "stt"),
            base_url=config.base_url, timeout=config.timeout_s, max_retries=0
        )

    async def warm(self) -> None:
        pass

    async def transcribe(
        self, samples: Samples, *, language: str | None = None, prompt: str | None = None
    ) -> str:
        c = self.config
        language = language or c.language
        prompt = prompt or c.prompt
        try:
            result = await self._client.audio.transcriptions.create(
                model=c.model,
                file=("speech.wav", wav_bytes(samples), "audio/wav"),
                language=language if language else openai.omit,
                prompt=prompt if prompt else openai.omit,
                response_format="json",
            )
        except openai.APIStatusError as exc:
            raise TranscriptionError(f"stt: HTTP {exc.status_code}") from None
        except openai.OpenAIError as exc:
            raise TranscriptionError(f"stt: {type(exc).__name__}") from None
        return str(result.text).strip()

    async def aclose(self) -> None:
        await self._client.close()
