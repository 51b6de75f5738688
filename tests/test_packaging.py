"""What the wheel installs: the package list in pyproject.toml names every package in the tree,
and the demos land inside the package's namespace, never as a top-level ``demos``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree_packages() -> set[str]:
    found = set()
    for top, name in (
        ("realtime_cascade", "realtime_cascade"),
        ("demos", "realtime_cascade.demos"),
    ):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    return found


def test_pyproject_lists_every_package() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(setuptools["packages"]) == _tree_packages()
    assert setuptools["package-dir"] == {"realtime_cascade.demos": "demos"}


def test_wheel_installs_demos_inside_the_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("realtime_cascade-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"realtime_cascade"}
    for path in (
        "realtime_cascade/demos/web/index.html",
        "realtime_cascade/demos/booking/config.toml",
        "realtime_cascade/demos/booking/agent.py",
        "realtime_cascade/default.toml",
        "realtime_cascade/py.typed",
    ):
        assert path in names

    # From the installed wheel, in a directory with no demos/ folder, the packaged booking
    # config is named, not pathed.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = (
        "import json, sys, realtime_cascade\n"
        f"assert realtime_cascade.__file__.startswith({str(site)!r}), realtime_cascade.__file__\n"
        "from realtime_cascade.cli.main import main\n"
        "sys.exit(main(['ask', '--json', '--config', 'booking', 'Cancel booking B-1001.']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["status"] == "completed"
