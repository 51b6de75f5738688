"""Fixtures for the browser tests: the server in-process on a free loopback port (its event loop
in a thread, so the sync Playwright API can drive the browser from the test's thread), and
Debian's Chromium, headless, through Playwright.

Neither Chromium nor Playwright is optional here: when one is missing the tests fail and say
how to install it (``make test`` does), rather than skip.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import pytest
from anyio.from_thread import start_blocking_portal

from realtime_cascade import config as config_mod
from realtime_cascade.server.app import RealtimeServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
OUTPUT = REPO / "test-output" / "web"


@pytest.fixture(scope="module")
def live_server() -> Iterator[str]:
    """The default config (the embedded sim tiers), serving demos/web at ``/``: its base URL.

    Beside ``default``, a profile ``fillers``: the same tiers with a 300 ms first-text budget,
    so the gap of a handoff is covered by a filler phrase.
    """
    cfg = config_mod.load()
    default = cfg.profiles["default"]
    quick = msgspec.structs.replace(default.budgets, first_text_ms=300.0)
    profiles = {**cfg.profiles, "fillers": msgspec.structs.replace(default, budgets=quick)}
    cfg = msgspec.structs.replace(cfg, profiles=profiles)
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(RealtimeServer(cfg, host="127.0.0.1", port=0)) as srv,
    ):
        assert srv.static_dir is not None and (srv.static_dir / "index.html").is_file()
        yield f"http://127.0.0.1:{srv.port}/"


# Package scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, and tests run after tests/web (anyio.run) must not find one.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's Chromium (apt-get install -y chromium; "
            "`make test` does) or point CHROMIUM at a Chromium binary"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: pip install -e '.[dev]' (`make test` does)")
    with sync_playwright() as pw:
        # Debian's binary, never a downloaded one (`playwright install` is not used).
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def open_page(browser: Browser, permissions: list[str] | None = None) -> Iterator[Page]:
    """A page in a fresh context; on leaving, any uncaught error in the page fails the test."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, permissions=permissions or []
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with open_page(browser) as page:
        yield page


@pytest.fixture
def output_dir() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT
