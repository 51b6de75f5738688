"""Text-to-speech behind one interface: espeak-ng embedded, or an OpenAI-compatible endpoint.

    Synthesizer.synthesize(text, voice, speed) -> async iterator of SpeechChunk (24 kHz PCM16)

A chunk may carry word timings (:class:`Word`: where each word of ``text`` starts in the
audio); the speech track uses them to map "the listener heard N ms" onto characters. A
synthesizer that knows none (an HTTP endpoint) leaves them out and the track estimates them.

- :class:`EspeakSynthesizer` (the embedded default) drives libespeak-ng through ctypes: the
  library and its data ship in the ``espeakng-loader`` wheel (Debian's ``libespeak-ng1`` is
  used when that package is missing). espeak-ng is a process-wide singleton with global state,
  so one lock serialises every synthesis; each runs in a worker thread, off the event loop,
  and takes a few milliseconds per phrase.
- :class:`OpenAISpeech`: ``POST /audio/speech`` with ``response_format="pcm"`` through the
  ``openai`` package, streamed: audio is passed on as it arrives.

Errors become :class:`SpeechError` (the session reports them and goes on without audio for
that phrase).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, Protocol

import anyio
import msgspec
import numpy as np
import openai

from ..providers.openai import MissingAPIKey
from .pcm import RATE, Resampler, Samples, from_bytes, resample

log = logging.getLogger(__name__)


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

    async def warm(self) -> None: ...

    async def aclose(self) -> None: ...


# --- espeak-ng -----------------------------------------------------------------------------

_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
_CHARS_UTF8: Final = 1
_RATE_PARAM: Final = 1
_EVENT_LIST_TERMINATED: Final = 0
_EVENT_WORD: Final = 1
_DEFAULT_WPM: Final = 175


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def _load_espeak() -> tuple[ctypes.CDLL, bytes | None]:
    try:
        import espeakng_loader  # type: ignore[import-untyped]

        return ctypes.CDLL(espeakng_loader.get_library_path()), os.fsencode(
            espeakng_loader.get_data_path()
        )
    except (ImportError, OSError, RuntimeError):
        pass
    name = ctypes.util.find_library("espeak-ng")
    if name is None:
        raise SpeechError(
            "espeak-ng is not available: pip install espeakng-loader (or apt-get install "
            "libespeak-ng1)"
        )
    return ctypes.CDLL(name), None


class _Espeak:
    """The process's one espeak-ng engine (the C library keeps global state)."""

    _instance: _Espeak | None = None
    _create_lock = threading.Lock()

    def __init__(self) -> None:
        lib, data = _load_espeak()
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:
            raise SpeechError("espeak-ng failed to initialise (its data was not found)")
        self.rate = rate
        self._lib = lib
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._words: list[tuple[int, int, int]] = []  # (1-based position, length, ms)
        self._callback = _Callback(self._on_audio)  # kept alive as long as the engine
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: bytes | None = None

    @classmethod
    def get(cls) -> _Espeak:
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _on_audio(self, wav: Any, n: int, events: Any) -> int:
        if wav and n > 0:
            self._chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD:
                self._words.append((e.text_position, e.length, e.audio_position))
            i += 1
        return 0

    def speak(self, text: str, voice: str, wpm: int) -> tuple[Samples, list[tuple[int, int, int]]]:
        """(samples at ``self.rate``, word events) for ``text``. Blocking: call from a thread."""
        data = text.encode()
        with self._lock:
            if voice.encode() != self._voice:
                if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise SpeechError(f"espeak-ng has no voice {voice!r}")
                self._voice = voice.encode()
            self._lib.espeak_SetParameter(_RATE_PARAM, wpm, 0)
            self._chunks, self._words = [], []
            buf = ctypes.create_string_buffer(data)
            status = self._lib.espeak_Synth(buf, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
            chunks, words = self._chunks, self._words
            self._chunks, self._words = [], []
        if status != 0:
            raise SpeechError(f"espeak-ng failed to synthesise (status {status})")
        return from_bytes(b"".join(chunks)), words


def _words(text: str, events: list[tuple[int, int, int]]) -> tuple[Word, ...]:
    out: list[Word] = []
    for position, length, ms in events:
        start = max(0, min(len(text), position - 1))
        end = max(start, min(len(text), start + max(length, 0)))
        out.append(Word(start, end, float(ms)))
    return tuple(out)


class EspeakSynthesizer:
    """The embedded default: espeak-ng, one synthesis at a time, off the event loop."""

    name = "espeak"

    def __init__(self, voice: str = "en-us", wpm: int = _DEFAULT_WPM) -> None:
        self.voice = voice
        self.wpm = wpm

    def _voice(self, voice: str | None) -> str:
        # Realtime voice names ("alloy", "marin", …) are not espeak voices: use the configured one
        if voice and (voice.startswith(("en", "mb-")) or "-" in voice or "+" in voice):
            return voice
        return self.voice

    async def warm(self) -> None:
        await anyio.to_thread.run_sync(_Espeak.get)

    def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> SpeechChunk:
        """All of ``text`` at once, blocking (a few ms a phrase): for threads and tools."""
        wpm = max(80, min(450, round(self.wpm * speed)))
        try:
            engine = _Espeak.get()
            samples, events = engine.speak(text, self._voice(voice), wpm)
        except OSError as exc:
            raise SpeechError(f"espeak-ng: {exc}") from exc
        return SpeechChunk(resample(samples, engine.rate, RATE), _words(text, events))

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        yield await anyio.to_thread.run_sync(lambda: self.speak(text, voice=voice, speed=speed))

    async def aclose(self) -> None:
        pass


# --- an OpenAI-compatible speech endpoint -----------------------------------------------------


class OpenAISpeechConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST {base_url}/audio/speech`` (OpenAI, or a compatible server: Kokoro-FastAPI, …)."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    api_key_env: str = "OPENAI_API_KEY"  # "" for an endpoint that needs no key
    sample_rate: int = 24_000  # of the endpoint's raw "pcm" format (OpenAI: 24 kHz)
    instructions: str | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


def api_key(env: str, what: str) -> str:
    """The key in ``env`` (``MissingAPIKey`` when unset); a placeholder when ``env`` is ""."""
    if not env:
        return "unused"  # the SDK insists on some key; a keyless local server ignores it
    key = os.environ.get(env, "")
    if not key:
        raise MissingAPIKey(
            f"{what}: environment variable {env} is not set "
            '(set api_key_env = "" for an endpoint that needs no key)'
        )
    return key


class OpenAISpeech:
    """Streams raw PCM from an OpenAI-compatible ``/audio/speech`` endpoint."""

    name = "openai"

    def __init__(self, config: OpenAISpeechConfig) -> None:
        self.config = config
        self._client = openai.AsyncOpenAI(
            api_key=api_key(config.api_key_env, "tts"),
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=0,
        )

    async def warm(self) -> None:
        pass

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        c = self.config
        extra: dict[str, object] = {}
        if c.instructions:
            extra["instructions"] = c.instructions
        carry = b""
        resampler = Resampler(c.sample_rate, RATE) if c.sample_rate != RATE else None
        try:
            async with self._client.audio.speech.with_streaming_response.create(
                model=c.model,
                voice=voice or c.voice,
                input=text,
                response_format="pcm",
                speed=speed,
                extra_body=extra or None,
            ) as response:
                async for data in response.iter_bytes():
                    data = carry + data
                    cut = len(data) - len(data) % 2
                    carry = data[cut:]
                    if cut:
                        samples = from_bytes(data[:cut])
                        if resampler is not None:
                            samples = resampler.feed(samples)
                        yield SpeechChunk(samples)
                if resampler is not None:
                    yield SpeechChunk(resampler.flush())
        except openai.APIStatusError as exc:
            raise SpeechError(f"tts: HTTP {exc.status_code}") from None
        except openai.OpenAIError as exc:
            raise SpeechError(f"tts: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self._client.close()


def silence(ms: float) -> Samples:
    return np.zeros(round(ms * RATE / 1000), dtype=np.int16)
