from __future__ import annotations

from pathlib import Path

import pytest

# The shared data sits beside the repository: <root>/../shared/data/...
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def routellm_dir() -> Path:
    path = DATA / "routellm"
    if not (path / "routellm" / "evals").is_dir():
        pytest.fail(f"RouteLLM data not present at {path} (CI and sessions have ../shared)")
    return path


@pytest.fixture
def frugal_dir() -> Path:
    path = DATA / "frugalgpt-summary"
    if not (path / "summary").is_dir():
        pytest.fail(f"FrugalGPT summary not present at {path} (CI and sessions have ../shared)")
    return path
