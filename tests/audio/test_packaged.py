"""Whisper models by name: the packaged base model is assembled from its parts, checked against
its pinned hash, reused, and refused when a part is wrong; multilingual models take other
languages."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from realtime_cascade.audio.stt import WhisperConfig, WhisperTranscriber, packaged
from realtime_cascade.audio.workers import EngineError

from .speech import REQUEST, speak

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _parts(tmp_path: Path) -> tuple[tuple[Path, ...], Path, str, int]:
    side = tmp_path / "pkg1"
    side.mkdir()
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (side / name).write_text(name)
    a, b = side / "model.bin.part1", tmp_path / "model.bin.part2"
    a.write_bytes(b"first half;" * 1000)
    b.write_bytes(b"second half" * 700)
    whole = a.read_bytes() + b.read_bytes()
    return (a, b), side, hashlib.sha256(whole).hexdigest(), len(whole)


def test_the_parts_are_joined_checked_and_reused(tmp_path: Path) -> None:
    parts, side, sha, size = _parts(tmp_path)
    dest = tmp_path / "cache" / "base"
    assert packaged.assemble_base(parts, side, dest, sha, size) == dest
    assert (dest / "model.bin").read_bytes() == parts[0].read_bytes() + parts[1].read_bytes()
    assert (dest / "tokenizer.json").read_text() == "tokenizer.json"
    first = (dest / "model.bin").stat().st_mtime_ns
    packaged.assemble_base(parts, side, dest, sha, size)  # verified once: not rewritten
    assert (dest / "model.bin").stat().st_mtime_ns == first
    (dest / "model.bin").write_bytes(b"truncated")  # a damaged cache is rebuilt
    packaged.assemble_base(parts, side, dest, sha, size)
    assert hashlib.sha256((dest / "model.bin").read_bytes()).hexdigest() == sha


def test_a_changed_part_is_refused_and_leaves_nothing_behind(tmp_path: Path) -> None:
    parts, side, sha, size = _parts(tmp_path)
    parts[1].write_bytes(b"other bytes" * 700)  # same size, other content
    dest = tmp_path / "cache" / "base"
    with pytest.raises(EngineError, match="does not match its pinned hash") as info:
        packaged.assemble_base(parts, side, dest, sha, size)
    assert info.value.code == "stt_unavailable"
    assert sorted(p.name for p in dest.iterdir()) == []  # no model.bin, no temporary file


def test_which_models_know_only_english() -> None:
    assert packaged.english_only(None) and packaged.english_only("tiny.en")
    assert packaged.english_only("/models/whisper-small.en")
    assert not packaged.english_only("base")
    assert packaged.installed("base")  # the voice extra that make test installs has it


async def test_the_base_model_is_built_in_the_cache_and_hears_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_CASCADE_CACHE", str(tmp_path))  # the workers inherit it
    whisper = WhisperTranscriber(WhisperConfig(model="base", workers=1))
    try:
        heard = await whisper.transcribe(speak(REQUEST))
        words = re.findall(r"[a-z0-9]+", heard.lower())
        for word in ("table", "tomorrow", "evening"):
            assert word in words, heard
        # multilingual: another language is passed on, not refused as tiny.en refuses it
        assert isinstance(await whisper.transcribe(speak(REQUEST), language="de"), str)
    finally:
        await whisper.aclose()
    model = tmp_path / "whisper" / "base" / "model.bin"
    assert model.stat().st_size == packaged.BASE_SIZE
    assert (model.parent / ".verified").read_text() == packaged.BASE_SHA256
