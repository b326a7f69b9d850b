"""What the browser tests share: Debian's headless Chromium driven by Playwright.

A browser test asks for the ``chromium`` fixture (the executable's path) and launches it with
``ARGS``; it is skipped with the reason where Chromium is not installed, and fails instead under
CI (``CI`` set, as ``.ci/run`` does), where a skipped browser test would hide a missing package.
Screenshots go to the ``screenshots`` fixture's directory: ``VIGIL_SCREENSHOT_DIR``/<test module>
(``.ci/run`` sets it to ``var/screenshots`` in the clone, files a person can open after the run),
else the test's tmp dir. ``watch(page)`` collects what would be a console error for a person:
uncaught exceptions, ``console.error`` messages and responses of 400 or more.

    def test_the_dashboard(live_server, chromium, screenshots):
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 390, "height": 900})
                errors = watch(page)
                ...
                assert page.evaluate(BODY_FITS)
                page.screenshot(path=screenshots / "dashboard-390.png", full_page=True)
                assert errors == []
            finally:
                browser.close()

(Read the database after the ``with`` block: Playwright's sync API runs an event loop, and
Django refuses synchronous queries inside one.)

Registered as a plugin in ``tests/conftest.py``, so the fixtures need no import.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("VIGIL_CHROMIUM") or shutil.which("chromium") or ""
MISSING = "needs Chromium (apt-get install chromium, or set VIGIL_CHROMIUM)"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WIDTHS = (1280, 390)  # a laptop, a phone

# The page body is no wider than the window (Django admin's list table scrolls in its own box).
BODY_FITS = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
# Elements (but those inside a box that scrolls sideways) whose right edge passes the window's.
OVERFLOWING = """(selector) => [...document.querySelectorAll(selector)].filter((el) => {
    for (let box = el.parentElement; box; box = box.parentElement) {
        const x = getComputedStyle(box).overflowX;
        if (x === "auto" || x === "scroll") return false;
    }
    return el.getBoundingClientRect().right > document.documentElement.clientWidth + 1;
}).map((el) => el.tagName + "." + el.className)"""


PASSWORD = "vigil-test-pass"  # tests.factories.UserFactory's


def sign_in(page, base_url: str, username: str, *, then: str = "/admin/") -> None:
    """Sign ``username`` (a UserFactory user) in through the admin's login form and wait for
    the page it leads to (``then``)."""
    page.goto(f"{base_url}/admin/login/?next={then}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{then}")


def require_chromium() -> str:
    """Chromium's path; skips the test without it, or fails it under CI."""
    if not CHROMIUM:
        if os.environ.get("CI"):
            pytest.fail(MISSING + ": CI must run the browser tests", pytrace=False)
        pytest.skip(MISSING)
    return CHROMIUM


@pytest.fixture
def chromium() -> str:
    return require_chromium()


@pytest.fixture
def screenshots(request, tmp_path) -> Path:
    """Where the test writes its screenshots: a folder per test module under
    ``VIGIL_SCREENSHOT_DIR``, else the test's tmp dir."""
    root = os.environ.get("VIGIL_SCREENSHOT_DIR")
    if root:
        name = request.module.__name__.rpartition(".")[2].removeprefix("test_")
        directory = Path(root) / name
    else:
        directory = tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def watch(page, *, ignore: tuple[str, ...] = ()) -> list[str]:
    """A list that fills with the page's errors as it runs: uncaught exceptions,
    ``console.error`` messages and responses of 400 or more (but URLs containing one of
    ``ignore``, for a test that provokes an error on purpose)."""
    errors: list[str] = []

    def ignored(text: str) -> bool:
        return any(part in text for part in ignore)

    def on_console(message) -> None:
        # A failed load is reported again as its response, with its URL.
        if (
            message.type == "error"
            and not message.text.startswith("Failed to load resource")
            and not ignored(message.location.get("url", ""))
        ):
            errors.append(f"console: {message.text}")

    def on_response(response) -> None:
        if response.status >= 400 and not ignored(response.url):
            errors.append(f"{response.status} {response.url}")

    page.on("pageerror", lambda error: errors.append(f"uncaught: {error}"))
    page.on("console", on_console)
    page.on("response", on_response)
    return errors
