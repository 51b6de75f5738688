"""Building llama-server: tools, CPU flags, extraction and the 'is it built' check."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from realtime_cascade.models import build as build_mod
from realtime_cascade.models.build import (
    build,
    cpu_features,
    cpu_flags,
    extract,
    is_built,
    missing_tools,
    require_server,
)
from realtime_cascade.models.cache import Cache
from realtime_cascade.models.errors import BuildFailed, NotInstalled, ToolMissing


def test_missing_tools_name_what_to_install() -> None:
    assert missing_tools(lambda _name: "/usr/bin/x") == []
    assert missing_tools(lambda _name: None) == [
        "cmake",
        "a C++ compiler (g++ or clang++)",
        "make or ninja",
    ]
    assert missing_tools(lambda name: None if name == "cmake" else "/bin/x") == ["cmake"]


def test_build_without_cmake_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_mod, "missing_tools", lambda: ["cmake"])
    with pytest.raises(ToolMissing, match=r"missing cmake .*apt-get install cmake"):
        build(Cache(tmp_path), lambda _: None)


def test_x86_flags_name_each_extension_and_never_amx(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx avx2 fma f16c bmi2 avx512f amx_tile\n")
    features = cpu_features(info)
    assert features is not None and "amx_tile" in features
    flags = cpu_flags(features)
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX512=ON" in flags
    assert "-DGGML_AVX512_VNNI=OFF" in flags
    assert "-DGGML_AMX_TILE=OFF" in flags and not any("AMX" in f and "ON" in f for f in flags)
    assert cpu_flags(frozenset({"sse2"})) == ()  # no AVX2 (or not x86): ggml's own default
    assert cpu_features(tmp_path / "absent") is None


def test_extract_takes_only_the_source_folder(tmp_path: Path) -> None:
    archive = tmp_path / "sdist.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in {
            "pkg-1/vendor/llama.cpp/CMakeLists.txt": b"project(x)",
            "pkg-1/vendor/llama.cpp/src/a.c": b"int a;",
            "pkg-1/setup.py": b"",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "src"
    extract(archive, "pkg-1/vendor/llama.cpp", dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "CMakeLists.txt",
        "src",
        "src/a.c",
    ]
    with pytest.raises(BuildFailed, match="has no pkg-1/nothing/"):
        extract(archive, "pkg-1/nothing", tmp_path / "other")


def test_a_binary_built_with_other_flags_is_not_built(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    with pytest.raises(NotInstalled, match="realtime-cascade models build"):
        require_server(cache)
    binary = cache.server_binary()
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert not is_built(cache)  # no record of its flags
    binary.with_name("llama-server.flags").write_text("\n".join(build_mod.build_flags()))
    assert is_built(cache) and require_server(cache) == binary
    binary.with_name("llama-server.flags").write_text("-DGGML_NATIVE=ON")
    assert not is_built(cache)
