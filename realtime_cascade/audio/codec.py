"""The wire's audio formats: PCM16 at a chosen rate, and G.711 μ-law / A-law at 8 kHz.

The Realtime API names three formats: ``audio/pcm`` (PCM16 little-endian, 24 kHz unless a
rate is given), ``audio/pcmu`` (G.711 μ-law) and ``audio/pcma`` (G.711 A-law), both 8 kHz,
one byte a sample: what a telephone line carries, so a phone bridge (a Twilio-style media
stream) can pass its audio through without transcoding. Inside, audio is always PCM16 at
:data:`~.pcm.RATE`: :class:`Decoder` brings input there, :class:`Encoder` takes output out.

The G.711 tables follow ITU-T G.711 as CPython's ``audioop`` implements it (the tests compare
every value against it): μ-law on the top 14 bits, A-law on the top 13.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from .pcm import RATE, PcmError, Resampler, Samples, from_bytes, to_bytes

Codec = Literal["pcm16", "pcmu", "pcma"]
G711_RATE: Final = 8_000

_U_SEG_END: Final = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_A_SEG_END: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for i, end in enumerate(ends):
        if value <= end:
            return i
    return len(ends)


def _ulaw_byte(pcm14: int) -> int:
    mask = 0xFF
    if pcm14 < 0:
        pcm14, mask = -pcm14, 0x7F
    pcm14 = min(pcm14, 8159) + (0x84 >> 2)
    seg = _segment(pcm14, _U_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm14 >> (seg + 1)) & 0xF)) ^ mask


def _alaw_byte(pcm13: int) -> int:
    mask = 0xD5
    if pcm13 < 0:
        pcm13, mask = -pcm13 - 1, 0x55
    seg = _segment(pcm13, _A_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (pcm13 >> 1) if seg < 2 else (pcm13 >> seg)
    return ((seg << 4) | (quant & 0xF)) ^ mask


def _ulaw_sample(byte: int) -> int:
    u = ~byte & 0xFF
    t = (((u & 0xF) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def _alaw_sample(byte: int) -> int:
    a = byte ^ 0x55
    i = (a & 0xF) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        i += 8
    elif seg == 1:
        i += 0x108
    else:
        i = (i + 0x108) << (seg - 1)
    return i if a & 0x80 else -i


@functools.cache
def _tables(codec: Codec) -> tuple[npt.NDArray[np.uint8], Samples]:
    """(encode: 65,536 bytes indexed by sample + 32768; decode: 256 samples) for ``codec``."""
    pcm = range(-32768, 32768)
    if codec == "pcmu":
        encode = [_ulaw_byte(x >> 2) for x in pcm]
        decode = [_ulaw_sample(b) for b in range(256)]
    else:
        encode = [_alaw_byte(x >> 3) for x in pcm]
        decode = [_alaw_sample(b) for b in range(256)]
    return np.array(encode, dtype=np.uint8), np.array(decode, dtype=np.int16)


def g711_encode(samples: Samples, codec: Codec) -> bytes:
    encode, _ = _tables(codec)
    return encode[samples.astype(np.int32) + 32768].tobytes()


def g711_decode(data: bytes, codec: Codec) -> Samples:
    _, decode = _tables(codec)
    out: Samples = decode[np.frombuffer(data, dtype=np.uint8)]
    return out


def codec_rate(codec: Codec, rate: int) -> int:
    return G711_RATE if codec != "pcm16" else rate


class Decoder:
    """Base64 audio of one format in → PCM16 at :data:`RATE` out (streaming)."""

    def __init__(self, codec: Codec = "pcm16", rate: int = RATE) -> None:
        self.codec = codec
        self.rate = codec_rate(codec, rate)
        self._resampler = Resampler(self.rate, RATE)

    def raw(self, data: str) -> bytes:
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PcmError("audio is not valid base64") from None

    def samples(self, raw: bytes) -> Samples:
        """``raw`` bytes of this format → PCM16 at :data:`RATE`."""
        pcm = from_bytes(raw) if self.codec == "pcm16" else g711_decode(raw, self.codec)
        return self._resampler.feed(pcm)

    def flush(self) -> Samples:
        """What the resampler holds back (its filter's delay, ~10 ms): at a commit."""
        return self._resampler.flush()


class Encoder:
    """PCM16 at :data:`RATE` in → base64 audio of one format out (streaming)."""

    def __init__(self, codec: Codec = "pcm16") -> None:
        self.codec = codec
        self._resampler = Resampler(RATE, codec_rate(codec, RATE))

    def encode(self, samples: Samples) -> str:
        if self.codec == "pcm16":
            return base64.b64encode(to_bytes(samples)).decode("ascii")
        return self._g711(self._resampler.feed(samples))

    def flush(self) -> str:
        """What the resampler holds back (~20 ms at 8 kHz): at the end of a phrase."""
        if self.codec == "pcm16":
            return ""
        tail = self._resampler.flush()
        return self._g711(tail) if len(tail) else ""

    def _g711(self, samples: Samples) -> str:
        return base64.b64encode(g711_encode(samples, self.codec)).decode("ascii")
