"""Browser tests: the real pages in headless Debian Chromium driven by Playwright, against a real server.

The test setup installs Chromium from Debian's packages when it is missing (the machine's registries include Debian's;
Playwright's own browser download is not used). REFRACTURE_BROWSER may name another Chromium binary.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from service.devtools.local_services import LocalServices
from tests.support.clock import ManualClock
from tests.support.debian import installed
from tests.support.parts import api_app, build_parts
from tests.support.paths import ARTIFACTS
from tests.support.queue import RecordingQueue
from tests.support.servers import serving
from tests.support.settings import make_settings
from tests.worklist_data import NOW

_FLAGS = [
    "--no-sandbox",  # root in a container has no user namespaces for the sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    """The Chromium binary, installed from Debian's packages first if the machine has none."""
    return (
        os.environ.get("REFRACTURE_BROWSER")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
        or installed("chromium", "chromium", pytest.fail, ": set REFRACTURE_BROWSER")
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    executable = _chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=_FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def server(services: LocalServices, worklist_url: str) -> Iterator[str]:
    """The service in a real HTTP server (uvicorn in a thread) over a copy of the loaded worklist."""
    settings = make_settings(services, worklist_url)
    parts = build_parts(settings, queue=RecordingQueue(), clock=ManualClock(NOW))
    with serving(api_app(parts), log_level="warning") as url:
        yield url


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A laptop-sized page; console errors fail the test."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    yield opened
    context.close()
    assert errors == []


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
