"""Where the eval tests find their data.

The samples under ``tests/data`` ship with the repository, so the real loaders run on every
clone. The full public data is not shipped: it sits beside the repository
(``<root>/../shared/data``) or where ``REALTIME_CASCADE_DATA`` points. Tests that need it skip
without it (the summary at the end of the run lists them), unless
``REALTIME_CASCADE_REQUIRE_DATA=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data"


def full_data_dir() -> Path:
    env = os.environ.get("REALTIME_CASCADE_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def _full(name: str, marker: str) -> Path:
    path = full_data_dir() / name
    if not (path / marker).is_dir():
        why = f"full {name} data not present at {path} (set REALTIME_CASCADE_DATA)"
        if os.environ.get("REALTIME_CASCADE_REQUIRE_DATA") == "1":
            pytest.fail(f"{why}; REALTIME_CASCADE_REQUIRE_DATA=1 requires it")
        pytest.skip(why)
    return path


@pytest.fixture
def routellm_sample() -> Path:
    return SAMPLES / "routellm"


@pytest.fixture
def frugal_sample() -> Path:
    return SAMPLES / "frugalgpt-summary"


@pytest.fixture
def routellm_dir() -> Path:
    return _full("routellm", "routellm/evals")


@pytest.fixture
def frugal_dir() -> Path:
    return _full("frugalgpt-summary", "summary")
