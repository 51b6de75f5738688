"""Server VAD: where speech starts and stops in a stream of PCM16 samples (sans-I/O).

Fed samples (24 kHz mono int16, any chunk size) with :meth:`Vad.feed`, it returns the
:class:`SpeechStarted` / :class:`SpeechStopped` events those samples complete. Time is *audio*
time: milliseconds since the first sample fed, so the same audio gives the same events whether
it arrives in real time or all at once; it never reads a clock.

Rules (per 20 ms frame):

1. A frame is **loud** when its RMS level (dBFS) is at least ``floor_db(threshold)`` and at
   least ``margin_db(threshold)`` above the tracked noise floor. ``threshold`` (0..1, the
   Realtime API's knob) raises both: a higher threshold needs louder speech.
2. While speaking, a quieter frame with many zero crossings (a fricative: "s", "f", "th") still
   counts as speech if it is within ``FRICATIVE_DB`` of the loud level: trailing "s" sounds are
   not cut off. Idle, such frames never start speech (hiss has many crossings too).
3. Speech **starts** after ``MIN_SPEECH_MS`` of consecutive speech frames; ``audio_start_ms``
   is the first of them minus ``prefix_padding_ms`` (not before ``not_before_ms``, where the
   current buffer starts).
4. Speech **stops** after ``silence_duration_ms`` of consecutive non-speech frames;
   ``audio_end_ms`` is the end of the frame that completed the silence (it includes the
   silence, as in the Realtime API).
5. The noise floor follows the level while idle (down fast, up slowly, so a short onset barely
   moves it); it does not move during speech.
"""

from __future__ import annotations

import math
from typing import Final

import msgspec
import numpy as np

from .pcm import RATE, Samples

FRAME_MS: Final = 20
MIN_SPEECH_MS: Final = 80
FRICATIVE_DB: Final = 12.0
FRICATIVE_ZCR: Final = 0.25  # zero crossings per sample: ~3 kHz and up at 24 kHz
_SILENT_DB: Final = -100.0


class VadParams(msgspec.Struct, frozen=True):
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500

    @property
    def floor_db(self) -> float:
        """The quietest level that can be speech: -65 dBFS at threshold 0, -25 at 1."""
        return -65.0 + 40.0 * self.threshold

    @property
    def margin_db(self) -> float:
        """How far above the noise floor speech must be: 6 dB at threshold 0, 18 at 1."""
        return 6.0 + 12.0 * self.threshold


class SpeechStarted(msgspec.Struct, frozen=True):
    audio_start_ms: int  # includes prefix_padding_ms
    speech_ms: int  # where the first speech frame began (no padding)


class SpeechStopped(msgspec.Struct, frozen=True):
    audio_end_ms: int  # includes the silence that ended it
    speech_end_ms: int  # where the last speech frame ended


VadEvent = SpeechStarted | SpeechStopped


def frame_level(frame: Samples) -> tuple[float, float]:
    """(RMS level in dBFS, zero crossings per sample) of one frame."""
    x = frame.astype(np.float64)
    energy = float(np.mean(x * x)) if len(x) else 0.0
    level = 10.0 * math.log10(energy / (32768.0 * 32768.0)) if energy > 0 else _SILENT_DB
    signs = np.signbit(frame)
    zcr = float(np.count_nonzero(signs[1:] != signs[:-1])) / max(1, len(frame) - 1)
    return level, zcr


class Vad:
    """One input stream's voice activity detector. Not thread-safe; no I/O."""

    def __init__(self, params: VadParams | None = None, rate: int = RATE) -> None:
        self.params = params or VadParams()
        self.rate = rate
        self._frame = rate * FRAME_MS // 1000
        self._rest: Samples = np.zeros(0, dtype=np.int16)
        self._frames = 0  # frames consumed so far
        self._noise_db: float | None = None
        self.speaking = False
        self._run = 0  # consecutive speech frames (idle) or silent frames (speaking)
        self._run_start = 0  # frame index where the current run began
        self._last_speech_end = 0  # frame index after the last speech frame
        self.not_before_ms = 0  # audio_start_ms is never earlier than this

    @property
    def position_ms(self) -> int:
        """Audio time of the end of the last whole frame consumed."""
        return self._frames * FRAME_MS

    def configure(self, params: VadParams) -> None:
        self.params = params

    def reset(self, at_ms: int | None = None) -> None:
        """Forget a speech in progress (the buffer was cleared or committed by hand)."""
        self.speaking = False
        self._run = 0
        self.not_before_ms = self.position_ms if at_ms is None else at_ms

    def feed(self, samples: Samples) -> list[VadEvent]:
        if len(self._rest):
            samples = np.concatenate((self._rest, samples))
        n = len(samples) // self._frame
        events: list[VadEvent] = []
        for i in range(n):
            frame = samples[i * self._frame : (i + 1) * self._frame]
            event = self._step(*frame_level(frame))
            if event is not None:
                events.append(event)
        self._rest = samples[n * self._frame :].copy()
        return events

    def _is_speech(self, level: float, zcr: float) -> bool:
        p = self.params
        noise = self._noise_db
        gate = p.floor_db if noise is None else max(p.floor_db, noise + p.margin_db)
        if level >= gate:
            return True
        return self.speaking and zcr >= FRICATIVE_ZCR and level >= gate - FRICATIVE_DB

    def _track_noise(self, level: float) -> None:
        if self._noise_db is None:
            self._noise_db = level
        elif level < self._noise_db:
            self._noise_db += 0.5 * (level - self._noise_db)  # down fast
        else:
            self._noise_db += 0.02 * (level - self._noise_db)  # up slowly

    def _step(self, level: float, zcr: float) -> VadEvent | None:
        index = self._frames
        self._frames += 1
        speech = self._is_speech(level, zcr)
        p = self.params
        if not self.speaking:
            self._track_noise(level)
            if not speech:
                self._run = 0
                return None
            if self._run == 0:
                self._run_start = index
            self._run += 1
            if self._run * FRAME_MS < MIN_SPEECH_MS:
                return None
            self.speaking = True
            self._run = 0
            self._last_speech_end = index + 1
            start = self._run_start * FRAME_MS
            padded = max(self.not_before_ms, start - p.prefix_padding_ms, 0)
            return SpeechStarted(audio_start_ms=padded, speech_ms=start)
        if speech:
            self._run = 0
            self._last_speech_end = index + 1
            return None
        self._run += 1
        if self._run * FRAME_MS < p.silence_duration_ms:
            return None
        self.speaking = False
        self._run = 0
        self.not_before_ms = self.position_ms
        return SpeechStopped(
            audio_end_ms=self.position_ms, speech_end_ms=self._last_speech_end * FRAME_MS
        )
