"""The server VAD on exact, synthetic audio: no clock, no event loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_cascade.audio.pcm import RATE
from realtime_cascade.audio.vad import EnergyVad as Vad
from realtime_cascade.audio.vad import SpeechStarted, SpeechStopped, VadParams, energy

from .fakes import silence, tone
from .speech import REQUEST, speak


def noise(ms: int, std: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, std, ms * RATE // 1000).astype(np.int16)


def test_tone_between_silences() -> None:
    vad = Vad(VadParams(prefix_padding_ms=300, silence_duration_ms=500))
    audio = np.concatenate((silence(1000), tone(600), silence(800)))
    events = vad.feed(audio)
    assert events == [
        SpeechStarted(audio_start_ms=700, speech_ms=1000),
        SpeechStopped(audio_end_ms=2100, speech_end_ms=1600),
    ]


def test_padding_never_reaches_before_the_buffer() -> None:
    vad = Vad(VadParams(prefix_padding_ms=300))
    (start,) = vad.feed(np.concatenate((silence(100), tone(200))))
    assert start == SpeechStarted(audio_start_ms=0, speech_ms=100)
    vad = Vad(VadParams(prefix_padding_ms=300))
    vad.feed(silence(1000))
    vad.reset(at_ms=900)  # e.g. the buffer was cleared at 900 ms
    (start,) = vad.feed(tone(200))
    assert start.audio_start_ms == 900


def test_a_short_click_is_not_speech_and_a_short_pause_does_not_end_it() -> None:
    vad = Vad(VadParams(silence_duration_ms=500))
    assert vad.feed(np.concatenate((silence(500), tone(40), silence(500)))) == []
    events = vad.feed(np.concatenate((tone(300), silence(300), tone(300), silence(600))))
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped]


def test_threshold_and_noise_floor() -> None:
    quiet = np.concatenate((silence(300), tone(500, amplitude=120), silence(700)))  # -52 dBFS
    assert Vad(VadParams(threshold=0.5)).feed(quiet) == []
    assert len(Vad(VadParams(threshold=0.1)).feed(quiet)) == 2
    # steady hiss at -45 dBFS is background, not speech; a voice above it is
    hiss = noise(3000, 200)
    voiced = hiss.copy()
    voiced[1000 * 24 : 1600 * 24] += tone(600)
    vad = Vad()
    assert [type(e) for e in vad.feed(voiced)] == [SpeechStarted, SpeechStopped]
    assert Vad().feed(noise(3000, 200, seed=1)) == []


def test_espeak_speech() -> None:
    # 300 ms of silence, about 2 s of speech, 900 ms of silence
    audio = speak(REQUEST, engine="espeak")
    started, stopped = Vad().feed(audio)
    assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
    assert started.speech_ms in range(300, 400)
    total_ms = len(audio) * 1000 // RATE
    assert stopped.speech_end_ms in range(total_ms - 1000, total_ms - 850)
    assert stopped.audio_end_ms == stopped.speech_end_ms + 500


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=30))
def test_chunking_does_not_matter(cuts: list[int]) -> None:
    audio = np.concatenate((silence(400), tone(700), silence(900), tone(300), silence(600)))
    whole = Vad().feed(audio)
    vad, events, i = Vad(), [], 0
    for n in [*cuts, len(audio)]:
        events += vad.feed(audio[i : i + n])
        i += n
    assert events == whole
    assert len(whole) == 4


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_threshold_maps_to_levels(threshold: float) -> None:
    assert -65 <= energy.floor_db(threshold) <= -25
    assert 6 <= energy.margin_db(threshold) <= 18


def test_a_pause_is_seen_before_the_stop_and_the_stop_ends_it() -> None:
    vad = Vad(VadParams(prefix_padding_ms=300, silence_duration_ms=500))
    assert vad.pause_ms is None
    vad.feed(np.concatenate((silence(1000), tone(600))))
    assert vad.speaking and vad.pause_ms is None  # speech goes on
    vad.feed(silence(100))
    assert vad.pause_ms == 1600  # where the speech stopped, before the stop is certain
    vad.feed(tone(200))
    assert vad.pause_ms is None  # it resumed: that pause is over
    vad.feed(silence(100))
    assert vad.pause_ms == 1900  # a new pause
    (stop,) = vad.feed(silence(500))
    assert stop == SpeechStopped(audio_end_ms=2400, speech_end_ms=1900)  # ended as that pause
    assert vad.pause_ms is None
