"""Browser tests: Playwright driving Debian's Chromium against pytest-django's live server.

Screenshots go to test-artifacts/. Without Chromium the tests are skipped with a reason, unless
RELINK_REQUIRE_BROWSER is set (CI), where a missing browser is an error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around
# it are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    # The host-page test serves a page from a made-up public origin that frames the
    # loopback live server; Chromium's local-network protection would block that.
    "--disable-features=LocalNetworkAccessChecks",
]


def _chromium() -> str | None:
    return shutil.which("chromium") or (os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium") or None


@pytest.fixture(scope="session")
def browser():
    path = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        path = None
    if path is None:
        if os.environ.get("RELINK_REQUIRE_BROWSER"):
            pytest.fail("RELINK_REQUIRE_BROWSER is set but Chromium or Playwright is missing")
        pytest.skip("needs Debian chromium (apt-get install chromium) and the playwright package")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def shot(request):
    """shot(page, "step-name") saves a full-page screenshot under test-artifacts/<test>/."""
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(1, 1000))

    def take(page, name: str) -> Path:
        target = folder / f"{next(counter):02d}-{name}.png"
        page.screenshot(path=str(target), full_page=True)
        return target

    return take


def sign_in(page, base_url: str, email: str, then: str, next_url: str = "") -> None:
    """Sign in through the login form (factory users' password is "password"), asking for
    `next_url` if given, and wait until the browser lands on `then`."""
    page.goto(f"{base_url}/login/" + (f"?next={next_url}" if next_url else ""))
    page.fill("#id_username", email)
    page.fill("#id_password", "password")
    page.click("button[type=submit]")
    page.wait_for_url(f"**{then}")
