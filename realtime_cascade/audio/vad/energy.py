"""The energy VAD (the fallback): level and zero crossings per 20 ms frame.

Rules (per frame; the :class:`~.Segmenter` turns frames into events):

1. A frame is **loud** when its RMS level (dBFS) is at least ``floor_db(threshold)`` and at
   least ``margin_db(threshold)`` above the tracked noise floor. ``threshold`` (0..1, the
   Realtime API's knob) raises both: a higher threshold needs louder speech.
2. While speaking, a quieter frame with many zero crossings (a fricative: "s", "f", "th") still
   counts as speech if it is within ``FRICATIVE_DB`` of the loud level: trailing "s" sounds are
   not cut off. Idle, such frames never start speech (hiss has many crossings too).
3. The noise floor follows the level while idle (down fast, up slowly, so a short onset barely
   moves it); it does not move during speech.

It cannot tell loud noise from speech (white, pink and brown noise at speech level all start
"speech"): the Silero VAD is the default.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from ..pcm import RATE, Samples
from . import Segmenter, VadEvent, VadParams

FRAME_MS: Final = 20
FRICATIVE_DB: Final = 12.0
FRICATIVE_ZCR: Final = 0.25  # zero crossings per sample: ~3 kHz and up at 24 kHz
_SILENT_DB: Final = -100.0


def floor_db(threshold: float) -> float:
    """The quietest level that can be speech: -65 dBFS at threshold 0, -25 at 1."""
    return -65.0 + 40.0 * threshold


def margin_db(threshold: float) -> float:
    """How far above the noise floor speech must be: 6 dB at threshold 0, 18 at 1."""
    return 6.0 + 12.0 * threshold


def frame_level(frame: Samples) -> tuple[float, float]:
    """(RMS level in dBFS, zero crossings per sample) of one frame."""
    x = frame.astype(np.float64)
    energy = float(np.mean(x * x)) if len(x) else 0.0
    level = 10.0 * math.log10(energy / (32768.0 * 32768.0)) if energy > 0 else _SILENT_DB
    signs = np.signbit(frame)
    zcr = float(np.count_nonzero(signs[1:] != signs[:-1])) / max(1, len(frame) - 1)
    return level, zcr


class EnergyVad:
    """One input stream's energy VAD. Not thread-safe; no I/O."""

    def __init__(self, params: VadParams | None = None, rate: int = RATE) -> None:
        self.params = params or VadParams()
        self.rate = rate
        self._frame = rate * FRAME_MS // 1000
        self._rest: Samples = np.zeros(0, dtype=np.int16)
        self._noise_db: float | None = None
        self._seg = Segmenter(FRAME_MS, self.params)

    @property
    def speaking(self) -> bool:
        return self._seg.speaking

    @property
    def not_before_ms(self) -> int:
        return self._seg.not_before_ms

    @property
    def position_ms(self) -> int:
        return self._seg.position_ms

    @property
    def pause_ms(self) -> int | None:
        return self._seg.pause_ms

    def configure(self, params: VadParams) -> None:
        self.params = self._seg.params = params

    def reset(self, at_ms: int | None = None) -> None:
        """Forget a speech in progress (the buffer was cleared or committed by hand)."""
        self._seg.reset(at_ms)

    def feed(self, samples: Samples) -> list[VadEvent]:
        if len(self._rest):
            samples = np.concatenate((self._rest, samples))
        n = len(samples) // self._frame
        events: list[VadEvent] = []
        for i in range(n):
            frame = samples[i * self._frame : (i + 1) * self._frame]
            level, zcr = frame_level(frame)
            speech = self._is_speech(level, zcr)
            if not self._seg.speaking:
                self._track_noise(level)
            event = self._seg.step(speech)
            if event is not None:
                events.append(event)
        self._rest = samples[n * self._frame :].copy()
        return events

    def _is_speech(self, level: float, zcr: float) -> bool:
        t = self.params.threshold
        noise = self._noise_db
        gate = floor_db(t) if noise is None else max(floor_db(t), noise + margin_db(t))
        if level >= gate:
            return True
        return self._seg.speaking and zcr >= FRICATIVE_ZCR and level >= gate - FRICATIVE_DB

    def _track_noise(self, level: float) -> None:
        if self._noise_db is None:
            self._noise_db = level
        elif level < self._noise_db:
            self._noise_db += 0.5 * (level - self._noise_db)  # down fast
        else:
            self._noise_db += 0.02 * (level - self._noise_db)  # up slowly
