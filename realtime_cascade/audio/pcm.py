"""PCM16 helpers: base64 on the wire, int16 arrays inside, resampling between rates.

The Realtime protocol carries audio as base64 little-endian 16-bit mono PCM, 24 kHz unless the
session says otherwise. Inside, audio is a 1-D ``numpy.int16`` array at :data:`RATE`.

Resampling is linear interpolation, with a windowed-sinc low-pass first when the rate goes
down (so 24 kHz → 16 kHz for speech recognition does not fold high frequencies into the band).
That is plenty for speech; it is not a music-grade resampler. :class:`Resampler` does the same
on a stream cut into arbitrary chunks, so appends of any size give the audio one call would.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final

import numpy as np
import numpy.typing as npt

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


def _lowpass(src: int, dst: int, taps: int = 63) -> npt.NDArray[np.float64]:
    # cut at 90% of the new Nyquist frequency, Hamming window, unity gain at DC
    cutoff = 0.5 * dst / src * 0.9
    n = np.arange(taps) - (taps - 1) / 2
    h: npt.NDArray[np.float64] = 2 * cutoff * np.sinc(2 * cutoff * n) * np.hamming(taps)
    unity: npt.NDArray[np.float64] = h / h.sum()
    return unity


def _clip(x: npt.NDArray[np.float64]) -> Samples:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def resample(samples: Samples, src: int, dst: int) -> Samples:
    """All of ``samples`` from ``src`` Hz to ``dst`` Hz in one go."""
    if src == dst or len(samples) == 0:
        return samples
    r = Resampler(src, dst)
    return np.concatenate((r.feed(samples), r.flush()))


class Resampler:
    """Streaming resampler: ``feed`` chunks of any size, ``flush`` at the end.

    Output sample k sits at input position ``k * src / dst`` (after the low-pass, whose delay
    is compensated), so the output is the same however the input was chunked.
    """

    def __init__(self, src: int, dst: int) -> None:
        if not (MIN_RATE // 2 <= src <= MAX_RATE * 2 and MIN_RATE // 2 <= dst <= MAX_RATE * 2):
            raise ValueError(f"unsupported rates {src} -> {dst}")
        self.src, self.dst = src, dst
        self._step = src / dst
        self._filter = _lowpass(src, dst) if dst < src else None
        half = 0 if self._filter is None else (len(self._filter) - 1) // 2
        # filter history (zeros before the start) and the filtered samples not yet consumed
        self._hist: npt.NDArray[np.float64] = np.zeros(2 * half)
        self._delay = half
        self._buf: npt.NDArray[np.float64] = np.zeros(0)
        self._t = 0.0  # position of the next output sample, in _buf's coordinates
        self._skip = half  # filtered samples to drop (the filter's delay)

    def _filtered(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self._filter is None:
            return x
        joined = np.concatenate((self._hist, x))
        self._hist = joined[len(joined) - len(self._hist) :] if len(self._hist) else self._hist
        y: npt.NDArray[np.float64] = np.convolve(joined, self._filter, mode="valid")
        if self._skip:
            drop = min(self._skip, len(y))
            y, self._skip = y[drop:], self._skip - drop
        return y

    def _interpolate(self, y: npt.NDArray[np.float64]) -> Samples:
        buf = np.concatenate((self._buf, y)) if len(self._buf) else y
        if len(buf) == 0:
            return empty()
        last = len(buf) - 1
        count = int(np.floor((last - self._t) / self._step)) + 1 if last >= self._t else 0
        if count <= 0:
            self._buf = buf
            return empty()
        pos = self._t + self._step * np.arange(count)
        out = np.interp(pos, np.arange(len(buf)), buf)
        self._t += self._step * count
        keep = min(int(np.floor(self._t)), len(buf) - 1)
        self._buf = buf[keep:]
        self._t -= keep
        return _clip(out)

    def feed(self, samples: Samples) -> Samples:
        if self.src == self.dst:
            return samples
        return self._interpolate(self._filtered(samples.astype(np.float64)))

    def flush(self) -> Samples:
        """The tail: the filter's last samples (zero-padded) and the last interpolated points."""
        if self.src == self.dst:
            return empty()
        tail = self._filtered(np.zeros(self._delay)) if self._filter is not None else np.zeros(0)
        out = self._interpolate(tail)
        self._buf = np.zeros(0)
        self._t = 0.0
        return out
