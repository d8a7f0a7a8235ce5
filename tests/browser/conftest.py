"""Pages checked in a real browser: Debian's headless Chromium, driven by Playwright from PyPI.

Playwright's own browser downloads are never used (they are out of reach of CI): `.ci/run`
installs Debian's ``chromium`` and every test launches that binary. Pages are opened offline:
every request that leaves loopback is aborted and recorded, so a page that needs the internet
shows it in the test, as it would on a machine without it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# The flags Chromium needs as root in a container, and the ones that stop its own background
# traffic (updates, sync, safe browsing), which a closed network refuses many times a second.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
# Schemes that never reach a network.
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome-error"}


def chromium_path() -> str:
    """Debian's Chromium (or the binary CHURN_TEST_CHROMIUM names), which CI must have."""
    found = shutil.which(os.environ.get("CHURN_TEST_CHROMIUM", "chromium"))
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing in CI: .ci/run must install Debian's chromium package")
    pytest.skip("browser tests SKIPPED: install Debian's chromium package (apt-get install chromium) to run them")


# Per module, not per session: Playwright's sync API keeps an asyncio loop running on the main
# thread while it is open, and fsspec (S3 run folders in later tests) cannot run its own calls
# from a thread with a running loop.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class OfflinePage:
    """A browser page whose requests beyond loopback are aborted; ``blocked`` lists them and
    ``console_errors`` what the page's scripts reported as errors."""

    page: object
    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


def reaches_only_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in LOCAL_SCHEMES or parts.hostname in LOOPBACK_HOSTS


@pytest.fixture
def offline_page(browser) -> Iterator[OfflinePage]:
    """A fresh page (own cookies and storage) in the shared browser, cut off from every
    network but loopback."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    offline = OfflinePage(page)

    def only_loopback(route) -> None:
        if reaches_only_loopback(route.request.url):
            route.continue_()
        else:
            offline.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_loopback)
    page.on("console", lambda message: message.type == "error" and offline.console_errors.append(message.text))
    try:
        yield offline
    finally:
        context.close()


# The password of the user ``admin`` in the Airflow that a browser test starts.
ADMIN_PASSWORD = "browser-test"


def api_server_environment(root: Path, metadata_url: str | None = None) -> tuple[dict[str, str], str]:
    """The environment of a throwaway Airflow in ``root`` (a SQLite warehouse, and metadata
    database unless ``metadata_url`` names one) whose API server is to listen on a free
    loopback port, with the user ``admin`` and :data:`ADMIN_PASSWORD`; and that server's base URL."""
    from tests.conftest import free_port
    from tests.e2e.airflow_stack import airflow_environment

    (root / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    api_port = free_port()
    env = airflow_environment(
        root,
        metadata_url=metadata_url or f"sqlite:///{root / 'airflow.db'}",
        warehouse_url=f"sqlite:///{root / 'warehouse.db'}",
        api_port=api_port,
        password_file=root / "passwords.json",
    )
    return env, f"http://127.0.0.1:{api_port}"


def sign_in(page, url: str, password: str = ADMIN_PASSWORD) -> None:
    """Open ``url``; Airflow's login page comes first, and returns to it once signed in as admin."""
    page.goto(url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
