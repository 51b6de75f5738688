"""The voice quality bench's scoring: normalisation, word edits, the noise it mixes in."""

from __future__ import annotations

import numpy as np

from bench.voice_quality import SENTENCES, edits, normalise, with_noise


def test_normalise_spells_out_numbers_and_drops_punctuation() -> None:
    assert normalise("Book a table for 2 at 7:30 PM.") == normalise(
        "book a table for two at seven thirty pm"
    )
    assert normalise("Table for 12, at 8pm!") == ["table", "for", "twelve", "at", "eight", "pm"]
    assert normalise("I'd like it") == ["id", "like", "it"]


def test_word_edits() -> None:
    ref = ["book", "a", "table", "for", "two"]
    assert edits(ref, ref) == 0
    # "book a" → "look at the": 2 substitutions and 1 insertion
    assert edits(ref, ["look", "at", "the", "table", "for", "two"]) == 3
    assert edits(ref, []) == len(ref)
    assert edits([], ref) == len(ref)


def test_noise_at_the_asked_snr_and_the_set_size() -> None:
    assert len(SENTENCES) >= 50 and len(set(SENTENCES)) == len(SENTENCES)
    t = np.arange(24_000) / 24_000
    speech = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    noisy = with_noise(speech, 15.0, seed=1)
    noise = noisy.astype(float) - speech
    snr = 10 * np.log10(np.mean(speech.astype(float) ** 2) / np.mean(noise**2))
    assert abs(snr - 15.0) < 1.0
