"""Suite-wide fixtures."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module")
def _freeze_the_heap_left_by_earlier_modules() -> Iterator[None]:
    # One pytest process runs every module, and what earlier modules leave behind (imports,
    # hypothesis' examples, servers' caches) makes each full collection slower: late in the
    # suite one took 250 ms, long enough to trip the fault tests' 400 ms stall timeouts. A
    # server process does not carry that heap, so the suite should not either: freeze it.
    gc.collect()
    gc.freeze()
    yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # A skipped test is easy to miss in `-q` output; the full-data tests are the ones that skip
    # on a plain clone, so say which did not run and why, every time.
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if "full_data" in r.nodeid
    ]
    if not skipped:
        return
    terminalreporter.section("full-data tests not run")
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        terminalreporter.line(f"{report.nodeid}: {reason}")
