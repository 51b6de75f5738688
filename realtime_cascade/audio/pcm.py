"""PCM16 helpers: base64 on the wire, int16 arrays inside, resampling between rates.

The Realtime protocol carries audio as base64 little-endian 16-bit mono PCM, 24 kHz unless the
session says otherwise. Inside, audio is a 1-D ``numpy.int16`` array at :data:`RATE`.

Resampling is libsoxr's (the ``soxr`` package, LGPL-2.1-or-later), streaming:
:class:`Resampler` takes a stream cut into arbitrary chunks, so appends of any size give the
audio one call would.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped]

RATE: Final = 24_000  # the protocol's rate, and the one used everywhere inside
MIN_RATE: Final = 8_000
MAX_RATE: Final = 48_000

Samples = npt.NDArray[np.int16]


class PcmError(ValueError):
    """Audio that cannot be decoded: not base64, or an odd number of bytes."""


def empty() -> Samples:
    return np.zeros(0, dtype=np.int16)


def decode_b64(data: str) -> Samples:
    """Base64 PCM16 (little-endian) → int16 samples."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise PcmError("audio is not valid base64") from None
    return from_bytes(raw)


def from_bytes(raw: bytes) -> Samples:
    if len(raw) % 2:
        raise PcmError("PCM16 audio must have an even number of bytes")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)


def to_bytes(samples: Samples) -> bytes:
    return samples.astype("<i2", copy=False).tobytes()


def encode_b64(samples: Samples) -> str:
    return base64.b64encode(to_bytes(samples)).decode("ascii")


def ms_of(n_samples: int, rate: int = RATE) -> float:
    return n_samples * 1000.0 / rate


def samples_of(ms: float, rate: int = RATE) -> int:
    return round(ms * rate / 1000.0)


def resample(samples: Samples, src: int, dst: int) -> Samples:
    """All of ``samples`` from ``src`` Hz to ``dst`` Hz in one go."""
    if src == dst or len(samples) == 0:
        return samples
    r = Resampler(src, dst)
    return np.concatenate((r.feed(samples), r.flush()))


def _round(x: npt.NDArray[np.float32]) -> Samples:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


class Resampler:
    """Streaming resampler (libsoxr, "HQ"): ``feed`` chunks of any size, ``flush`` at the end.

    The output does not depend on how the input was chunked. soxr holds back a few
    milliseconds of input (its filter's delay) until more arrives or ``flush``.
    """

    def __init__(self, src: int, dst: int) -> None:
        if not (MIN_RATE // 2 <= src <= MAX_RATE * 2 and MIN_RATE // 2 <= dst <= MAX_RATE * 2):
            raise ValueError(f"unsupported rates {src} -> {dst}")
        self.src, self.dst = src, dst
        self._stream: Any = None if src == dst else soxr.ResampleStream(src, dst, 1, "float32")

    def feed(self, samples: Samples) -> Samples:
        if self._stream is None:
            return samples
        # float inside (soxr's int16 path rounds differently chunk by chunk), rounded once here
        return _round(self._stream.resample_chunk(samples.astype(np.float32)))

    def flush(self) -> Samples:
        """The tail held back by the filter."""
        if self._stream is None:
            return empty()
        out = _round(self._stream.resample_chunk(np.zeros(0, np.float32), last=True))
        self._stream.clear()
        return out
