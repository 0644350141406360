"""The console's Programmes page in a real headless Chromium against a real switch paying
real G2P batches: batches with their progress bar, rate and failures by reason, the
reports downloaded from the page, and a pause proposed on the page by one operator and
approved by another (maker-checker) that stops the batch."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import time

import pytest

from tests.g2p.g2p_helpers import World, disburse_body, link_body

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = os.environ.get("PONTE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "correct horse battery staple"


def _browser_missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} — CI requires the browser suite", pytrace=False)
    pytest.skip(f"{why} — skipped outside CI")


class Running:
    """The G2P world and its console on a loop of their own (Playwright is synchronous)."""

    def __init__(self, data_dir: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.data_dir = data_dir

    def call(self, coroutine, timeout_s: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    async def start(self) -> None:
        from switch.admin.passwords import Passwords
        from switch.admin.service import Caller
        from switch.admin.types import Role, UserCreate
        from switch.console.server_port import attach_console

        self.world = await World().start(self.data_dir, g2p={"rate_rows_per_s": 150})
        self.console = await attach_console(self.world.server,
                                            passwords=Passwords(time_cost=1, memory_kib=8192))
        for username in ("olga", "omar"):
            await self.console.service.create_user(Caller("test", Role.ADMIN, "local"),
                                                   UserCreate(username=username,
                                                              password=PASSWORD,
                                                              role="operator"))

    async def stop(self) -> None:
        await self.console.stop()
        await self.world.close()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    running = Running(str(tmp_path_factory.mktemp("g2p-console")))
    running.call(running.start())
    yield running
    try:
        running.call(running.stop())
    finally:
        running.loop.call_soon_threadsafe(running.loop.stop)
        running.thread.join(10)


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
        except Exception as error:  # noqa: BLE001
            _browser_missing(f"Chromium did not start ({error})")
        yield browser
        browser.close()


def _page(browser, running, username: str):
    context = browser.new_context(viewport={"width": 1366, "height": 860},
                                  base_url=running.console.url.rstrip("/"),
                                  accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/login" not in url)
    return page


def _wait(predicate, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_programmes_page_progress_failures_reports_and_a_pause(browser, running, tmp_path):
    world = running.world
    bank = world.clients["bank-a"]
    programme = world.clients["programme"]
    running.call(bank.post("/mapper/sync/link", link_body("links", [
        (f"l{n}", f"{6_100_000_000 + n}", world.fa("bank-a", f"acc-{n}")) for n in range(40)])))
    # 40 mapped IDs, 10 unmapped ones: the page must show the failures by reason.
    rows = [(f"r{n}", f"{6_100_000_000 + n}@nid", "2.50") for n in range(50)]
    status, _ = running.call(programme.post("/disburse", disburse_body("winter-aid", rows)))
    assert status == 200
    assert running.call(world.server.g2p_engine.wait_idle(60), 70)

    olga = _page(browser, running, "olga")
    olga.goto("/programmes")
    row = olga.locator("#batches-table tr[data-batch='winter-aid']")
    assert row.locator(".batch-state").inner_text() == "completed"
    assert row.locator(".batch-progress").get_attribute("value") == "1.0000"
    assert row.locator(".batch-paid").inner_text().startswith("40")
    assert row.locator(".batch-failed").inner_text() == "10"
    assert row.locator(".batch-reasons").inner_text() == "unmapped: 10"
    with olga.expect_download() as download:
        row.get_by_role("link", name="CSV").click()
    text = open(download.value.path()).read()
    assert text.startswith("row_no,reference_id,payee,")
    assert text.count("\n") == 51 and text.count(",unmapped,") == 10
    assert "6100000000" not in text  # beneficiaries only as identity tokens

    # A long batch, paused from the page: proposed by olga, approved by omar.
    long_rows = [(f"p{n}", world.fa("wallet-b", f"w-{n}"), "1.00") for n in range(3_000)]
    status, _ = running.call(programme.post("/disburse", disburse_body("spring-aid",
                                                                       long_rows)))
    assert status == 200
    olga.goto("/programmes")
    long_row = olga.locator("#batches-table tr[data-batch='spring-aid']")
    _wait(lambda: float(long_row.locator(".batch-progress").get_attribute("value")) > 0)
    long_row.get_by_role("button", name="Propose to pause spring-aid").click()
    olga.wait_for_url(re.compile(r"notice=proposed"))
    assert running.call(_state(world, "spring-aid")) == "active"  # nothing until checked
    olga.goto("/programmes")
    long_row = olga.locator("#batches-table tr[data-batch='spring-aid']")
    assert long_row.locator(".batch-state").inner_text() == "active"
    omar = _page(browser, running, "omar")
    omar.goto("/approvals")
    pending = omar.locator("#pending tbody tr").filter(has_text="Pause G2P batch")
    pending.get_by_role("button", name="Approve").click()
    omar.wait_for_url(re.compile(r"notice=approved"))
    assert running.call(_state(world, "spring-aid")) == "paused"
    # The page follows by itself (htmx polling): the batch shows paused.
    _wait(lambda: long_row.locator(".batch-state").inner_text() == "paused", 15)
    olga.screenshot(path=str(tmp_path / "programmes.png"), full_page=True)


async def _state(world, transaction_id: str) -> str:
    batch = await world.server.g2p_engine.store.find_batch(world.ids["programme"],
                                                           transaction_id)
    return batch.state.name.lower()
