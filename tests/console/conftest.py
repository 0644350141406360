"""Fixtures for the browser suite: a real switch with real traffic and its console, and
Debian's headless Chromium driven by Playwright (never a downloaded browser).

Chromium missing fails the suite under CI=true and skips it elsewhere, saying why.
"""

from __future__ import annotations

import os
import shutil

import pytest

from console_helpers import PASSWORD, log_in
from console_traffic import SwitchThread

CHROMIUM = os.environ.get("PONTE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI") == "true"
OPERATORS = {"alice": "admin", "ada": "admin", "bob": "operator", "carol": "operator",
             "vic": "viewer"}
TRAFFIC_PER_S = 40.0


def _browser_missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} — CI requires the browser suite", pytrace=False)
    pytest.skip(f"{why} — skipped outside CI")


@pytest.fixture(scope="module")
def switch(tmp_path_factory):
    """The switch, its console and SDK participants sending transfers all along."""
    from switch.admin.passwords import Passwords
    from switch.admin.service import Caller
    from switch.admin.types import Role, UserCreate

    running = SwitchThread(str(tmp_path_factory.mktemp("switch")),
                           passwords=Passwords(time_cost=1, memory_kib=8 * 1024))
    running.start()
    try:
        service = running.console.service
        for username, role in OPERATORS.items():
            running.call(service.create_user(Caller("test", Role.ADMIN, "local"), UserCreate(
                username=username, password=PASSWORD, role=role)))
        running.loop.call_soon_threadsafe(running.traffic.start, TRAFFIC_PER_S)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _browser_missing(f"Chromium not found at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _browser_missing(f"the playwright package is missing ({error})")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                 headless=True)
        except Exception as error:  # noqa: BLE001 - any launch failure means no browser
            _browser_missing(f"Chromium did not start ({error})")
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, switch):
    """A fresh browser context (its own cookies) per operator, laptop-sized."""
    contexts = []

    def open_page(username: str | None = None):
        context = browser.new_context(viewport={"width": 1366, "height": 860},
                                      base_url=switch.console.url.rstrip("/"))
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        if username is not None:
            log_in(page, username)
        return page

    yield open_page
    for context in contexts:
        context.close()
