"""espeak-ng through ctypes: light and robotic (GPL-3.0-or-later, like the library).

The library and its data ship in the ``espeakng-loader`` wheel (Debian's ``libespeak-ng1`` is
used when that package is missing). espeak-ng is a process-wide singleton with global state and
C buffers: the server runs it in a worker process (:mod:`..workers`), one synthesis at a time,
a few milliseconds per phrase, and passes it only voice names found in its data directory
(:func:`espeak_voices`; a 40+ character name once overflowed a buffer inside the library and
aborted the process). :func:`speak_here` runs it in the calling process, for tests and tools.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

from ..pcm import RATE, Samples, from_bytes, resample
from ..workers import EngineError, WorkerPool
from . import REALTIME_VOICES, SpeechChunk, SpeechError, Word, check_listed, stream_from_pool

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


@functools.cache
def _data_dir() -> Path | None:
    try:
        import espeakng_loader

        return Path(espeakng_loader.get_data_path())
    except (ImportError, OSError, RuntimeError):
        pass
    for d in ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/share/espeak-ng-data"):
        if Path(d).is_dir():
            return Path(d)
    return None


@functools.cache
def espeak_voices() -> frozenset[str]:
    """The installed voice names, lower case: each language (``en-us``, ``en-gb-x-rp``, …),
    alone or with a variant (``en-us+f3``). Read from the data directory, never from the
    library, so the server can check a name without loading native code."""
    data = _data_dir()
    if data is None:
        return frozenset()
    langs: set[str] = set()
    for path in (data / "lang").rglob("*"):
        if path.is_file():
            langs.add(path.name.lower())
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("language "):
                    langs.add(line.split()[1].lower())
    variants_dir = data / "voices" / "!v"
    variants = [p.name.lower() for p in variants_dir.iterdir()] if variants_dir.is_dir() else []
    return frozenset(langs | {f"{lang}+{v}" for lang in langs for v in variants if " " not in v})


def _check(voice: str) -> None:
    check_listed("espeak-ng", voice, espeak_voices())


def _wpm(base: int, speed: float) -> int:
    return max(80, min(450, round(base * speed)))


def speak_here(text: str, voice: str = "en-us", wpm: int = _DEFAULT_WPM) -> SpeechChunk:
    """``text`` spoken by espeak-ng *in this process*, blocking (tests, tools: not the server)."""
    _check(voice)
    try:
        engine = _Espeak.get()
        samples, events = engine.speak(text, voice, wpm)
    except OSError as exc:
        raise SpeechError(f"espeak-ng: {exc}") from exc
    return SpeechChunk(resample(samples, engine.rate, RATE), _words(text, events))


class EspeakEngine:
    """In a worker process: the engine, its default voice and rate."""

    def __init__(self, voice: str, wpm: int) -> None:
        self.voice, self.wpm = voice, wpm
        try:
            _Espeak.get()
        except SpeechError as exc:
            raise EngineError(str(exc), "tts_unavailable") from None

    def synthesize(self, text: str, voice: str | None, speed: float) -> SpeechChunk:
        voice = self.voice if voice is None or voice in REALTIME_VOICES else voice
        try:
            return speak_here(text, voice, _wpm(self.wpm, speed))
        except SpeechError as exc:
            raise EngineError(str(exc), "speech_failed") from None


class EspeakSynthesizer:
    """espeak-ng in a worker process (see the module docstring)."""

    name = "espeak"

    def __init__(self, voice: str = "en-us", wpm: int = _DEFAULT_WPM) -> None:
        _check(voice)
        self.voice = voice
        self.wpm = wpm
        self.pool = WorkerPool(
            "espeak", "realtime_cascade.audio.tts.espeak:EspeakEngine", (voice, wpm), size=1
        )

    def check_voice(self, voice: str) -> None:
        _check(voice)

    async def warm(self) -> None:
        await self.pool.warm()

    def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0) -> SpeechChunk:
        """All of ``text`` at once, in this process (tests, tools): see :func:`speak_here`."""
        return speak_here(text, voice or self.voice, _wpm(self.wpm, speed))

    async def synthesize(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncIterator[SpeechChunk]:
        if not text.strip():
            return
        if voice is not None:
            _check(voice)  # again: a name reaches the library only from the allow-list
        async for chunk in stream_from_pool(self.pool, text, voice, speed):
            yield chunk

    async def aclose(self) -> None:
        await self.pool.aclose()
