"""The console in a real headless Chromium against a real switch carrying real traffic:
log in, watch live numbers move, suspend a participant and see its transfers rejected,
propose and approve a limit change with two operators, onboard with two admins and see the
key once, find a transfer and open its timeline, page through a search by UTC date, money
in currency units and participants by name, interpolated latency cards, one date format,
a favicon, no form a role cannot use, a form posted without its CSRF token refused.
The overview's screenshot is saved to docs/console.png for the README."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from console_helpers import log_in
from switch.core.results import Result, TransferState

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC")
SERVER_BOUNDS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
                    2500.0, 5000.0, 10000.0, 30000.0)


def number(page, selector: str) -> float:
    return float(re.sub(r"[^0-9.]", "", page.locator(selector).inner_text()) or 0)


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval_s)


def test_log_in_and_watch_live_numbers_move(new_page, switch):
    page = new_page()
    page.goto("/")
    assert "/login" in page.url  # no session: the console asks to log in first
    assert page.evaluate("document.activeElement.id") == "username"  # ready to type
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong password, surely")
    page.get_by_role("button", name="Log in").click()
    assert "LOGIN_FAILED" in page.locator(".error").inner_text()


    log_in(page, "alice")
    # Keyboard first: the skip link is the first stop, and it leads to the main content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.wait_for_selector("#live-state:text('connected')")
    first_total = number(page, "#kpi-total")
    # Traffic keeps flowing: the number decided grows without a reload (Server-Sent Events).
    # (Polled from here: the page's Content-Security-Policy forbids eval, which
    # wait_for_function would need.)
    wait_until(lambda: number(page, "#kpi-total") > first_total)
    wait_until(lambda: number(page, "#kpi-tps") > 0)
    assert number(page, "#kpi-p99") > 0
    assert "OK" in page.locator("#outcomes").inner_text()
    # Let the chart gather a few seconds of points, then keep the picture for the README.
    page.locator("#tps-chart canvas").first.wait_for()
    time.sleep(4)
    page.evaluate("document.activeElement.blur()")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 20_000


def test_suspend_a_participant_and_see_its_transfers_rejected(new_page, switch):
    """Suspending ends the participant's live session at once; connected again, its
    transfers and those to it are refused, the console shows it; resumed, it pays again."""
    bank_a = switch.traffic.participant_ids["bank-a"]
    page = new_page("bob")
    page.goto(f"/participants/{bank_a}")
    page.get_by_role("button", name="Suspend participant").click()
    page.wait_for_url(re.compile(r"notice=suspended"))
    assert page.locator("#participant-status").inner_text() == "suspended"
    try:
        # Its live session ended at once; connecting again, its transfers are refused.
        wait_until(lambda: switch.traffic.clients["bank-a"].protocol_error is not None)
        assert switch.traffic.clients["bank-a"].protocol_error.detail == "participant suspended"
        switch.call(switch.traffic.reconnect("bank-a"))
        transfer_id, outcome = switch.send("bank-a", 1)
        assert outcome.state == TransferState.REJECTED
        assert outcome.result == Result.PAYER_BLOCKED
        _, inbound = switch.send("wallet-c", 0)
        assert inbound.result == Result.PAYEE_BLOCKED
        # The console shows the refusal in the transfer search and the alert on the overview.
        page.goto(f"/transfers?payer_participant_id={bank_a}&transfer_id={transfer_id}")
        row = page.locator("#transfer-results tbody tr").first
        assert "PAYER_BLOCKED" in row.inner_text()
        page.goto("/")
        page.wait_for_selector("#alerts li.alert:has-text('bank-a')")
    finally:
        page.goto(f"/participants/{bank_a}")
        page.get_by_role("button", name="Resume participant").click()
        page.wait_for_url(re.compile(r"notice=resumed"))
    assert page.locator("#participant-status").inner_text() == "active"
    _, outcome = switch.send("bank-a", 1)
    assert outcome.state == TransferState.COMMITTED


def test_propose_and_approve_a_limit_change_with_two_operators(new_page, switch):
    bank_b = switch.traffic.participant_ids["bank-b"]
    core = switch.server.core
    before = switch.call(_daily_max(core, bank_b))
    maker = new_page("bob")
    maker.goto("/approvals")
    maker.get_by_label("Change", exact=True).select_option("daily_limit")
    maker.get_by_label("Participant", exact=True).select_option(str(bank_b))
    maker.get_by_label("Currency", exact=True).select_option("BRL")
    maker.get_by_label("Amount, cap or limit, in the currency's units").fill("777,000.00")
    maker.get_by_label("Note", exact=True).fill("raise for payday")
    maker.get_by_role("button", name="Propose").click()
    maker.wait_for_url(re.compile(r"notice=proposed"))
    row = maker.locator("#pending tbody tr").filter(has_text="777,000.00 BRL")
    assert "waiting for another operator" in row.inner_text()  # the maker cannot check it
    proposal_id = row.get_attribute("data-proposal")
    assert switch.call(_daily_max(core, bank_b)) == before  # nothing applied yet

    checker = new_page("carol")
    checker.goto("/approvals")
    mine = checker.locator(f"#pending tr[data-proposal='{proposal_id}']")
    mine.get_by_role("button", name="Approve").click()
    checker.wait_for_url(re.compile(r"notice=approved"))
    decided = checker.locator(f"#decided tr[data-proposal='{proposal_id}']").inner_text()
    assert "executed" in decided and "bob" in decided and "carol" in decided
    assert switch.call(_daily_max(core, bank_b)) == 77_700_000
    checker.goto("/audit?action=proposal.approve")
    assert "carol" in checker.locator("#audit").inner_text()


def test_onboard_a_participant_with_two_admins_and_see_its_key_once(new_page, switch):
    maker = new_page("alice")
    maker.goto("/participants")
    maker.get_by_label("Name", exact=True).fill("bank-ui")
    maker.get_by_label("Currencies (comma-separated)").fill("BRL")
    maker.get_by_label("Opening funding, in the currency's units (prefunded currencies)").fill(
        "2,500.00")
    maker.get_by_role("button", name="Propose onboarding").click()
    maker.wait_for_url(re.compile(r"/approvals\?notice=proposed"))
    row = maker.locator("#pending tbody tr").filter(has_text="bank-ui")
    assert "2,500.00 BRL" in row.inner_text()
    proposal_id = row.get_attribute("data-proposal")
    assert switch.server.core.participant_id_by_name("bank-ui") is None  # not yet

    checker = new_page("ada")
    checker.goto("/approvals")
    checker.locator(f"#pending tr[data-proposal='{proposal_id}']").get_by_role(
        "button", name="Approve").click()
    key = checker.locator("#new-api-key").inner_text()
    assert key.startswith("ponte_")
    participant_id = switch.server.core.participant_id_by_name("bank-ui")
    assert participant_id is not None
    assert switch.server.gateway.authenticate(key) == participant_id
    assert "executed" in checker.locator(f"#decided tr[data-proposal='{proposal_id}']").inner_text()
    # Shown once: neither a reload nor the maker ever sees it again.
    checker.goto("/approvals")
    assert checker.locator("#new-api-key").count() == 0
    maker.goto("/approvals")
    assert key not in maker.content()
    maker.goto("/audit")
    assert key not in maker.content()


async def _daily_max(core, participant_id: int) -> int:
    return core.daily_max_minor(participant_id, "BRL")


def test_find_a_transfer_and_open_its_timeline(new_page, switch):
    transfer_id, outcome = switch.send("bank-b", 2, amount_minor=4_321, end_to_end_id="E2E-UI-1")
    assert outcome.state == TransferState.COMMITTED
    page = new_page("vic")
    page.goto("/transfers")
    page.get_by_label("End-to-end id").fill("E2E-UI-1")
    page.get_by_role("button", name="Search").click()
    link = page.locator("#transfer-results a.timeline-link", has_text=transfer_id)
    link.wait_for()
    assert "43.21 BRL" in page.locator("#transfer-results").inner_text()
    link.click()
    page.wait_for_url(re.compile(rf"/transfers/\d+/{transfer_id}$"))
    assert page.locator("#timeline-state").inner_text() == "committed"
    steps = page.locator("#timeline li").all_inner_texts()
    assert any("received" in step for step in steps)
    assert any("reserve (pending)" in step for step in steps)
    assert any("post" in step and "43.21 BRL" in step for step in steps)
    assert not any("minor units" in step for step in steps)
    # Participants by name, times in the console's one format.
    facts = page.locator("dl.facts").inner_text()
    assert "bank-b" in facts and "wallet-c" in facts
    assert all(TIME.search(step) for step in steps)
    assert steps.index(next(s for s in steps if "received" in s)) < steps.index(
        next(s for s in steps if "post" in s and "ledger" in s))


def test_a_viewer_sees_no_form_it_cannot_use_and_is_refused_a_forged_one(new_page, switch):
    bank_a = switch.traffic.participant_ids["bank-a"]
    page = new_page("vic")
    for path in ("/", "/participants", f"/participants/{bank_a}", "/approvals", "/users",
                 "/transfers", "/audit"):
        page.goto(path)
        actions = page.locator("form[method=post]:not([action='/logout'])")
        assert actions.count() == 0, path
    assert page.get_by_role("button", name="Suspend participant").count() == 0
    # Posting anyway (with the session's own CSRF token) is refused all the same.
    page.goto(f"/participants/{bank_a}")
    status = page.evaluate(
        "fetch('/participants/" + str(bank_a) + "/suspend', {method: 'POST', headers: "
        "JSON.parse(document.body.getAttribute('hx-headers'))}).then(r => r.status)")
    assert status == 403
    assert switch.server.core.participant(bank_a).status.name == "ACTIVE"


def test_an_operator_sees_only_the_forms_of_its_role(new_page, switch):
    bank_a = switch.traffic.participant_ids["bank-a"]
    page = new_page("bob")
    page.goto(f"/participants/{bank_a}")
    assert page.get_by_role("button", name="Suspend participant").count() == 1
    assert page.get_by_role("button", name="Propose callback URL").count() == 1
    assert page.get_by_role("button", name="Propose an API key rotation").count() == 0
    page.goto("/users")
    assert page.get_by_role("button", name="Add operator").count() == 0
    page.goto("/participants")
    assert page.get_by_role("button", name="Propose onboarding").count() == 0


def test_latency_cards_are_interpolated_not_bucket_bounds(new_page, switch):
    page = new_page("vic")
    page.goto("/")
    page.wait_for_selector("#live-state:text('connected')")
    seen = []

    def read() -> bool:
        text = page.locator("#kpi-p99").inner_text()
        assert re.fullmatch(r"\d+\.\d{2} ms", text), text
        seen.append(float(text.split()[0]))
        return seen[-1] > 0 and seen[-1] not in SERVER_BOUNDS_MS

    wait_until(read, timeout_s=15, interval_s=1.0)
    # Live times are written like every other time on the console, the chart's too.
    wait_until(lambda: TIME.search(page.locator("#live-at").inner_text()) is not None)
    chart = page.locator("#tps-chart .u-over")
    chart.wait_for()
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    legend_time = page.locator("#tps-chart .u-legend .u-series").first.inner_text()
    assert TIME.search(legend_time), legend_time


def test_transfer_search_is_paged_and_takes_utc_dates(new_page, switch):
    bank_a = switch.traffic.participant_ids["bank-a"]
    page = new_page("vic")
    page.goto("/transfers")
    assert page.locator("#q-from").get_attribute("type") == "datetime-local"
    page.get_by_label("Participant (payer or payee)").fill(str(bank_a))
    page.get_by_label("Per page").select_option("20")
    page.get_by_label("Received from (UTC)").fill("2020-01-01T00:00:00")
    page.get_by_role("button", name="Search").click()
    page.locator("#transfer-results a.timeline-link").first.wait_for()
    first_page = page.locator("#transfer-results a.timeline-link").all_inner_texts()
    assert len(first_page) == 20
    assert "bank-a" in page.locator("#transfer-results tbody").inner_text()
    page.locator("#older-page").click()
    page.wait_for_url(re.compile(r"before_seq=\d+"))
    second_page = page.locator("#transfer-results a.timeline-link").all_inner_texts()
    assert second_page and not set(second_page) & set(first_page)
    assert page.locator("#newest-page").count() == 1
    # A date in the future: nothing received since.
    page.goto("/transfers?received_from=2999-01-01T00:00")
    assert page.locator("#transfer-results a.timeline-link").count() == 0


def test_amounts_in_approvals_are_in_currency_units(new_page, switch):
    bank_a = switch.traffic.participant_ids["bank-a"]
    maker = new_page("carol")
    maker.goto("/approvals")
    maker.get_by_label("Change", exact=True).select_option("fund")
    maker.get_by_label("Participant", exact=True).select_option(str(bank_a))
    maker.get_by_label("Amount, cap or limit, in the currency's units").fill("12.34")
    maker.get_by_role("button", name="Propose").click()
    maker.wait_for_url(re.compile(r"notice=proposed"))
    row = maker.locator("#pending tbody tr").filter(has_text="12.34 BRL")
    assert "bank-a" in row.inner_text()
    proposal_id = row.get_attribute("data-proposal")
    # Too many decimals for BRL: refused, nothing recorded.
    maker.get_by_label("Change", exact=True).select_option("fund")
    maker.get_by_label("Amount, cap or limit, in the currency's units").fill("1.234")
    maker.get_by_role("button", name="Propose").click()
    assert "VALIDATION_ERROR" in maker.locator(".error").inner_text()
    checker = new_page("bob")
    checker.goto("/approvals")
    checker.locator(f"#pending tr[data-proposal='{proposal_id}']").get_by_role(
        "button", name="Reject").click()
    checker.wait_for_url(re.compile(r"notice=rejected"))
    assert TIME.search(checker.locator(f"#decided tr[data-proposal='{proposal_id}']")
                       .inner_text())


def test_the_console_has_a_favicon(new_page, switch):
    page = new_page()
    page.goto("/login")
    assert page.locator("link[rel=icon]").get_attribute("href") == "/favicon.ico"
    icon = page.request.get("/favicon.ico")
    assert icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")


def test_a_form_posted_without_its_csrf_token_is_refused(new_page, switch):
    bank_a = switch.traffic.participant_ids["bank-a"]
    page = new_page("bob")
    page.goto(f"/participants/{bank_a}")
    # Strip the token from the real form, as a forged cross-site form would lack it.
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Suspend participant").click()
    assert answer.value.status == 403
    assert "CSRF_TOKEN_INVALID" in page.locator(".error").inner_text()
    # A script posting without the header is refused the same way.
    status = page.evaluate(f"fetch('/api/admin/participants/{bank_a}/suspend', "
                           "{method: 'POST'}).then(r => r.status)")
    assert status == 403
    assert switch.server.core.participant(bank_a).status.name == "ACTIVE"


def test_close_and_settle_a_deferred_net_window_with_two_operators(new_page, switch):
    """Settlement page: a KES (deferred net) window with a position is closed by one
    operator's proposal and another's approval, shows its positions, matrix and
    statements, and is settled by a confirmation proposed with the RTGS reference."""
    import asyncio

    from connectors.sdk.stream_client import StreamClient  # noqa: F401 - the clients' type
    from switch.admin.bootstrap import add_currency, open_account, set_net_debit_cap
    from switch.core.messages import Party, TransferRequest
    from switch.core.results import SettlementModel

    bank_a = switch.traffic.participant_ids["bank-a"]
    bank_b = switch.traffic.participant_ids["bank-b"]

    async def kes_position() -> int:
        server = switch.server
        await add_currency(server, "KES", 404, SettlementModel.DEFERRED_NET)
        for participant in (bank_a, bank_b):
            await open_account(server, participant, "KES")
            await set_net_debit_cap(server, participant, "KES", 10_000_000,
                                    request_id=f"kes-cap-{participant}")
        outcome = await asyncio.wait_for(switch.traffic.clients["bank-a"].submit_transfer(
            TransferRequest(transfer_id="kes-1", payee=Party(alias_type="MSISDN",
                                                             alias_value="+551191000000"),
                            amount_minor=12_345_00, currency="KES",
                            expires_at_ns=time.time_ns() + 30 * 10**9)), 15)
        assert outcome.state == TransferState.COMMITTED, outcome
        return server.core.open_window_id("KES")

    window_id = switch.call(kes_position())
    maker = new_page("bob")
    maker.goto("/settlement")
    row = maker.locator("#currencies tr[data-currency='KES']")
    assert "deferred net" in row.inner_text()
    row.get_by_role("button", name=f"Propose closing window {window_id}").click()
    maker.wait_for_url(re.compile(r"/approvals\?notice=proposed"))
    proposal = maker.locator("#pending tbody tr").filter(has_text=f"window {window_id}")
    proposal_id = proposal.get_attribute("data-proposal")
    assert switch.server.core.open_window_id("KES") == window_id  # nothing closed yet

    checker = new_page("carol")
    checker.goto("/approvals")
    checker.locator(f"#pending tr[data-proposal='{proposal_id}']").get_by_role(
        "button", name="Approve").click()
    checker.wait_for_url(re.compile(r"notice=approved"))
    checker.goto(f"/settlement/windows/{window_id}")
    assert checker.locator("#window-state").inner_text() == "pending settlement"
    positions = checker.locator("#positions").inner_text()
    assert "bank-a" in positions and "-12,345.00 KES" in positions and "pays in" in positions
    assert "12,345.00 KES" in checker.locator("#bilateral").inner_text()
    assert checker.locator("#net-sum").inner_text() == "0.00 KES"
    # The documents download with the session: instructions and each statement.
    instructions = checker.request.get(checker.locator("#instructions-link").get_attribute(
        "href"))
    assert instructions.ok and b"pacs.009.001.08" in instructions.body()
    statement = checker.locator(f"#positions tr[data-participant='{bank_a}'] a",
                                has_text="camt.053")
    answer = checker.request.get(statement.get_attribute("href"))
    assert answer.ok and b"camt.053.001.08" in answer.body() and b"kes-1" in answer.body()

    maker.goto(f"/settlement/windows/{window_id}")
    maker.get_by_label("RTGS reference").fill("RTGS-2024-0001")
    maker.get_by_role("button", name="Propose confirming the settlement").click()
    maker.wait_for_url(re.compile(r"notice=proposed"))
    confirm = maker.locator("#pending tbody tr").filter(has_text="RTGS-2024-0001")
    confirm_id = confirm.get_attribute("data-proposal")
    checker.goto("/approvals")
    checker.locator(f"#pending tr[data-proposal='{confirm_id}']").get_by_role(
        "button", name="Approve").click()
    checker.wait_for_url(re.compile(r"notice=approved"))
    checker.goto(f"/settlement/windows/{window_id}")
    assert checker.locator("#window-state").inner_text() == "settled"
    assert "RTGS-2024-0001" in checker.locator("#rtgs").inner_text()
    checker.goto("/settlement")
    assert "settled" in checker.locator(f"#windows tr[data-window='{window_id}']").inner_text()
