from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime_cascade.audio import pcm


def test_base64_round_trip() -> None:
    x = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    assert np.array_equal(pcm.decode_b64(pcm.encode_b64(x)), x)
    assert pcm.encode_b64(x) == "AAABAP///38AgA=="  # little-endian on the wire


@pytest.mark.parametrize("bad", ["AAAA", "not base64!", "AA="])
def test_bad_audio_is_refused(bad: str) -> None:
    with pytest.raises(pcm.PcmError):
        pcm.decode_b64(bad)


@pytest.mark.parametrize(("src", "dst"), [(24000, 16000), (48000, 24000), (16000, 24000)])
def test_resampling_keeps_a_tone_and_the_duration(src: int, dst: int) -> None:
    t = np.arange(src) / src
    x = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    y = pcm.resample(x, src, dst)
    assert abs(len(y) - dst) <= 1
    middle = y[dst // 10 : -dst // 10]
    assert 7800 < middle.max() < 8200  # no loss in the pass band
    # the tone is still 440 Hz: count zero crossings over the middle
    crossings = np.count_nonzero(np.signbit(middle[1:]) != np.signbit(middle[:-1]))
    assert abs(crossings / (len(middle) / dst) - 880) < 10


def test_downsampling_filters_what_does_not_fit() -> None:
    t = np.arange(48000) / 48000
    x = (8000 * np.sin(2 * np.pi * 15000 * t)).astype(np.int16)  # above 12 kHz
    y = pcm.resample(x, 48000, 24000)
    assert np.abs(y[100:-100]).max() < 400  # not folded back into the band


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=40), st.sampled_from([16000, 48000]))
def test_streaming_equals_one_shot(cuts: list[int], src: int) -> None:
    rng = np.random.default_rng(len(cuts))
    x = rng.integers(-20000, 20000, sum(cuts)).astype(np.int16)
    whole = pcm.resample(x, src, pcm.RATE)
    r = pcm.Resampler(src, pcm.RATE)
    parts, i = [], 0
    for n in cuts:
        parts.append(r.feed(x[i : i + n]))
        i += n
    parts.append(r.flush())
    streamed = np.concatenate(parts)
    assert len(streamed) == len(whole)
    assert np.abs(streamed.astype(int) - whole).max() <= 1
