"""Spoken test input: Piper's speech (or espeak-ng's) as the protocol carries it (base64
PCM16, 24 kHz)."""

from __future__ import annotations

import functools

import numpy as np

from realtime_cascade.audio.pcm import RATE, Samples, encode_b64
from realtime_cascade.audio.tts.espeak import speak_here
from realtime_cascade.audio.tts.piper import PiperEngine

# The request the acceptance tests speak. Picked for what pocketsphinx's general English model
# decodes exactly from espeak-ng's voice; it asks the booking agent to search for a table.
REQUEST = "Do you have a table for two tomorrow evening?"
BARGE_IN = "Wait, stop."


@functools.cache
def _piper() -> PiperEngine:
    # No sampling noise: Piper's defaults draw noise for every phrase, so the same text would
    # come out differently each run and a recogniser test could pass or fail by chance.
    return PiperEngine(None, 1, (0.0, 0.0))


@functools.cache
def speak(text: str, lead_ms: int = 300, tail_ms: int = 900, engine: str = "piper") -> Samples:
    """``text`` spoken by Piper (or ``engine="espeak"``) at 24 kHz, with silence around it (as
    a microphone gives)."""
    if engine == "piper":
        speech = np.concatenate([c.samples for c in _piper().synthesize(text, None, 1.0)])
    else:
        speech = speak_here(text).samples
    silence = np.zeros(lead_ms * RATE // 1000, dtype=np.int16)
    tail = np.zeros(tail_ms * RATE // 1000, dtype=np.int16)
    out: Samples = np.concatenate((silence, speech, tail))
    return out


def chunks_b64(samples: Samples, chunk_ms: int = 100) -> list[str]:
    step = chunk_ms * RATE // 1000
    return [encode_b64(samples[i : i + step]) for i in range(0, len(samples), step)]
