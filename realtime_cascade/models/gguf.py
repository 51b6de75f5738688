"""Read the key/value metadata at the head of a GGUF file (enough to name the model in it).

The layout (GGUF v2/v3, little-endian): magic ``GGUF``, version u32, tensor count u64, key/value
count u64, then each pair as a string key (u64 length + UTF-8), a u32 value type and the value.
Arrays (the tokenizer's vocabulary) are skipped without being kept, so reading a 1 GB model's
metadata costs a few MB of reads.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from .errors import VerifyFailed

MAGIC = b"GGUF"

# value type -> struct format of a scalar
_SCALARS = {
    0: "<B",  # u8
    1: "<b",  # i8
    2: "<H",  # u16
    3: "<h",  # i16
    4: "<I",  # u32
    5: "<i",  # i32
    6: "<f",  # f32
    7: "<?",  # bool
    10: "<Q",  # u64
    11: "<q",  # i64
    12: "<d",  # f64
}
_STRING = 8
_ARRAY = 9
_MAX_STRING = 1 << 24  # no metadata string is this long: a larger length means a corrupt file


def _read(f: BinaryIO, n: int, where: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise VerifyFailed(f"{where}: truncated GGUF metadata")
    return data


def _string(f: BinaryIO, where: str) -> str:
    (n,) = struct.unpack("<Q", _read(f, 8, where))
    if n > _MAX_STRING:
        raise VerifyFailed(f"{where}: corrupt GGUF metadata (a {n}-byte string)")
    return _read(f, n, where).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int, where: str) -> object:
    fmt = _SCALARS.get(kind)
    if fmt is not None:
        return struct.unpack(fmt, _read(f, struct.calcsize(fmt), where))[0]
    if kind == _STRING:
        return _string(f, where)
    if kind == _ARRAY:
        (item, n) = struct.unpack("<IQ", _read(f, 12, where))
        item_fmt = _SCALARS.get(item)
        if item_fmt is not None:
            f.seek(struct.calcsize(item_fmt) * n, 1)  # skipped: only scalars and strings matter
        else:
            for _ in range(n):
                _value(f, item, where)
        return None
    raise VerifyFailed(f"{where}: corrupt GGUF metadata (value type {kind})")


def read_metadata(path: Path) -> dict[str, object]:
    """Every scalar and string of ``path``'s metadata (arrays map to None)."""
    where = str(path)
    with path.open("rb") as f:
        if _read(f, 4, where) != MAGIC:
            raise VerifyFailed(f"{where}: not a GGUF file")
        (version,) = struct.unpack("<I", _read(f, 4, where))
        if version not in (2, 3):
            raise VerifyFailed(f"{where}: GGUF version {version} (expected 2 or 3)")
        _tensors, count = struct.unpack("<QQ", _read(f, 16, where))
        out: dict[str, object] = {}
        for _ in range(count):
            key = _string(f, where)
            (kind,) = struct.unpack("<I", _read(f, 4, where))
            out[key] = _value(f, kind, where)
        return out
