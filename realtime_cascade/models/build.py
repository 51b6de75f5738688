"""Build ``llama-server`` once, from the llama.cpp source inside the pinned llama-cpp-python
sdist, into the cache (about 7 minutes on 2 cores; every later run reuses it).

Steps: check the tools (cmake, a C++ compiler, make or ninja), download the sdist (pinned hash),
extract its ``vendor/llama.cpp``, configure and build the one target with every core, copy the
self-contained binary to ``bin/llama-server`` and check that it runs. Progress is reported from
cmake's ``[ NN%]`` lines; a failure ends with the log's tail and its path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from .cache import Cache
from .errors import BuildFailed, NotInstalled, ToolMissing
from .fetch import Progress, pip_download
from .manifest import SERVER, ServerSource

_PERCENT = re.compile(rb"^\[\s*(\d+)%\]")
# ggml's CPU features, named as /proc/cpuinfo names them, and the cmake option that uses each.
_X86_FEATURES = (
    ("avx", "GGML_AVX"),
    ("avx2", "GGML_AVX2"),
    ("fma", "GGML_FMA"),
    ("f16c", "GGML_F16C"),
    ("bmi2", "GGML_BMI2"),
    ("avx512f", "GGML_AVX512"),
    ("avx512vbmi", "GGML_AVX512_VBMI"),
    ("avx512_vnni", "GGML_AVX512_VNNI"),
    ("avx512_bf16", "GGML_AVX512_BF16"),
)
_INSTALL_HINT = "on Debian/Ubuntu: apt-get install cmake g++ make"


def missing_tools(which: object = shutil.which) -> list[str]:
    """The build tools that are not on PATH (empty when the build can run)."""
    find = which if callable(which) else shutil.which
    missing = []
    if find("cmake") is None:
        missing.append("cmake")
    if not any(find(cxx) for cxx in ("c++", "g++", "clang++")):
        missing.append("a C++ compiler (g++ or clang++)")
    if not any(find(tool) for tool in ("make", "ninja")):
        missing.append("make or ninja")
    return missing


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags (Linux x86), or None where they cannot be read."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def cpu_flags(features: frozenset[str] | None) -> tuple[str, ...]:
    """cmake flags for this CPU. On x86 every SIMD extension it has is named explicitly, with
    ``GGML_NATIVE`` off, because ``-march=native`` also turns on AMX where the CPU reports it,
    and ggml's AMX path crashed (SIGSEGV in ``ggml_backend_amx_mul_mat``) on a VM whose CPU
    reports AMX. Elsewhere: ggml's native default."""
    if features is None or "avx2" not in features:
        return ()
    flags = ["-DGGML_NATIVE=OFF"]
    for feature, option in _X86_FEATURES:
        flags.append(f"-D{option}={'ON' if feature in features else 'OFF'}")
    flags += ["-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    return tuple(flags)


def build_flags(source: ServerSource = SERVER) -> tuple[str, ...]:
    return (*source.cmake_flags, *cpu_flags(cpu_features()))


def _stamp(binary: Path) -> Path:
    return binary.with_name(binary.name + ".flags")


def is_built(cache: Cache, source: ServerSource = SERVER) -> bool:
    """Built, and with the flags this machine needs now (a build made with others is redone)."""
    binary = cache.server_binary(source.package.version)
    try:
        stamp = _stamp(binary).read_text()
    except OSError:
        return False
    return os.access(binary, os.X_OK) and stamp == "\n".join(build_flags(source))


def require_server(cache: Cache) -> Path:
    binary = cache.server_binary()
    if not is_built(cache):
        raise NotInstalled(
            f"llama-server is not built yet for this machine ({binary}): run "
            "`realtime-cascade models build` (or `make models`; about 6 minutes on 2 cores)"
        )
    return binary


def extract(archive: Path, member: str, dest: Path) -> None:
    """Extract the folder ``member`` of the sdist into ``dest`` (its contents, not the path)."""
    prefix = member.rstrip("/") + "/"
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(archive) as tar:
            chosen = []
            for info in tar.getmembers():
                if info.name.startswith(prefix):
                    info.name = info.name[len(prefix) :]
                    if info.name:
                        chosen.append(info)
            if not chosen:
                raise BuildFailed(f"{archive}: has no {member}/")
            tar.extractall(tmp, members=chosen, filter="data")
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BuildFailed(f"{archive}: cannot extract {member}: {exc}") from None
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _run_logged(cmd: Sequence[str], log: Path, progress: Progress, step: str) -> None:
    """Run ``cmd`` at low priority, its output appended to ``log``; report cmake's percentages."""
    last = -10
    with log.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.nice(10),  # the build must not starve what runs beside it
            )
        except FileNotFoundError as exc:
            raise ToolMissing(f"{exc.filename} is not installed ({_INSTALL_HINT})") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            m = _PERCENT.match(line)
            if m and int(m.group(1)) >= last + 10:
                last = int(m.group(1))
                progress(f"  {step}: {last}%")
        code = proc.wait()
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise BuildFailed(f"{step} failed (exit {code}); full log: {log}\n{tail}")


def build(
    cache: Cache,
    progress: Progress,
    *,
    source: ServerSource = SERVER,
    jobs: int | None = None,
    force: bool = False,
) -> Path:
    """Build llama-server into the cache unless it is there already; its path."""
    binary = cache.server_binary(source.package.version)
    with cache.locked():
        if not force and is_built(cache, source):
            progress(f"llama-server {source.package.version}: present ({binary})")
            return binary
        missing = missing_tools()
        if missing:
            raise ToolMissing(
                f"cannot build llama-server: missing {', '.join(missing)} ({_INSTALL_HINT})"
            )
        root = cache.server_dir(source.package.version)
        src, build_dir = root / "src", root / "build"
        cache.logs.mkdir(parents=True, exist_ok=True)
        log = cache.logs / f"build-llama-server-{source.package.version}.log"
        log.write_bytes(b"")
        if not (src / "CMakeLists.txt").is_file():
            pip_download([source.package], cache.downloads, progress, binary=False)
            progress(f"extracting llama.cpp from {source.package.filename}")
            extract(cache.downloads / source.package.filename, source.package.member, src)
        jobs = jobs or os.cpu_count() or 1
        progress(f"configuring llama-server (log: {log})")
        flags = build_flags(source)
        configure = ["cmake", "-S", str(src), "-B", str(build_dir), *flags]
        _run_logged(configure, log, progress, "cmake configure")
        progress(f"building llama-server with {jobs} job(s): several minutes on 2 cores")
        compile_ = ["cmake", "--build", str(build_dir), "--target", source.target, "-j", str(jobs)]
        _run_logged(compile_, log, progress, "build")
        built = build_dir / "bin" / source.target
        if not built.is_file():
            raise BuildFailed(f"the build finished but {built} is missing; log: {log}")
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_name(binary.name + ".tmp")
        shutil.copy2(built, tmp)
        check = subprocess.run([str(tmp), "--version"], capture_output=True, text=True)
        if check.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise BuildFailed(f"{built} does not run: {(check.stderr or check.stdout)[-400:]}")
        os.replace(tmp, binary)
        _stamp(binary).write_text("\n".join(flags))
        progress(f"llama-server {source.package.version}: built ({binary})")
        return binary
