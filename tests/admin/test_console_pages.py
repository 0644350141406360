"""The console's pages as a person reads them (item by item of what confused operators):
no form a role cannot use, names rather than numbers, money in currency units, one date
format, transfer search in pages and by date, interpolated latency quantiles, a favicon.
The real service, core and store behind the real app (the browser suite drives the same
pages in Chromium)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from litestar.testing import AsyncTestClient

from admin_helpers import BANK_A, BANK_B, PASSWORD, S
from switch.console.pages import create_console_app
from switch.admin.money import parse_major
from switch.admin.timeline import quantile_ms
from switch.admin.types import FundProposal, OnboardProposal
from switch.console.pages import format_utc, parse_utc

SERVER_BOUNDS_MS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
ACTION_FORM = re.compile(r'<form method="post" action="(?!/logout)[^"]*"')
TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} UTC")


@pytest.fixture
async def app(embedded_world):
    return create_console_app(embedded_world.service, sample_interval_s=0.05)


async def login(client, username: str) -> str:
    answer = await client.post("/api/admin/session",
                               json={"username": username, "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    return answer.json()["csrf_token"]


# -- latency ---------------------------------------------------------------------------------


def test_a_quantile_is_interpolated_within_its_bucket_not_its_upper_bound():
    counts = [0] * (len(SERVER_BOUNDS_MS) + 1)
    counts[4] = 985  # (5, 10] ms
    counts[5] = 15  # (10, 25] ms
    p99 = quantile_ms(counts, 0.99, SERVER_BOUNDS_MS)
    assert p99 == pytest.approx(15.0)  # a third into (10, 25], not 25
    assert quantile_ms(counts, 0.5, SERVER_BOUNDS_MS) == pytest.approx(5 + 5 * 500 / 985)
    counts = [0] * (len(SERVER_BOUNDS_MS) + 1)
    counts[0] = 10  # (0, 0.5]
    assert quantile_ms(counts, 0.5, SERVER_BOUNDS_MS) == pytest.approx(0.25)
    counts[-1] = 1000  # past the last bound: it is all that can be said
    assert quantile_ms(counts, 0.99, SERVER_BOUNDS_MS) == SERVER_BOUNDS_MS[-1]


# -- money and time ------------------------------------------------------------------------


def test_amounts_typed_in_currency_units_become_exact_minor_units():
    assert parse_major("1,234.56", "BRL") == 123_456
    assert parse_major("7", "BRL") == 700
    assert parse_major("0.05", "BRL") == 5
    assert parse_major("12345", "JPY") == 12_345
    assert parse_major("1.234", "KWD") == 1_234
    assert parse_major("10000000000000.01", "BRL") == 1_000_000_000_000_001
    for bad in ("", "1.234", "-5", "1e3", "1.2.3", "abc", "1,23,4.5x", " ", "0.5.", "١٢"):
        with pytest.raises(ValueError):
            parse_major(bad, "BRL")
    with pytest.raises(ValueError):
        parse_major("1.5", "JPY")


def test_one_date_format_everywhere_and_utc_inputs_round_trip():
    at_ns = 1_700_000_000_123_456_789
    assert format_utc(at_ns) == "2023-11-14 22:13:20.123 UTC"
    assert format_utc(0) == "—"
    assert parse_utc("2023-11-14T22:13") == 1_700_000_000 * S - 20 * S
    assert parse_utc("2023-11-14T22:13:20") == 1_700_000_000 * S
    assert parse_utc("2023-11-14T22:13:20.5") == 1_700_000_000 * S + S // 2
    for bad in ("yesterday", "2023-13-01T00:00", "1700000000000000000", "2023-11-14"):
        with pytest.raises(ValueError):
            parse_utc(bad)


# -- pages ------------------------------------------------------------------------------------


PAGES = ["/", "/participants", f"/participants/{BANK_A}", "/approvals", "/transfers",
         "/directory", "/audit", "/users"]


async def test_a_viewer_is_shown_no_form_it_cannot_use(app, embedded_world):
    await embedded_world.service.propose(embedded_world.caller("bob"), FundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=100))
    async with AsyncTestClient(app=app) as client:
        await login(client, "vic")
        for path in PAGES:
            page = await client.get(path)
            assert page.status_code == 200, path
            assert not ACTION_FORM.search(page.text), (path, ACTION_FORM.search(page.text))


async def test_an_operator_is_shown_only_the_forms_of_its_role(app, embedded_world):
    await embedded_world.service.propose(embedded_world.caller("alice"), OnboardProposal(
        name="bank-x"))
    async with AsyncTestClient(app=app) as client:
        await login(client, "bob")
        participants = (await client.get("/participants")).text
        assert "Propose onboarding" not in participants  # admin only
        participant = (await client.get(f"/participants/{BANK_A}")).text
        assert "Suspend participant" in participant and "Propose callback URL" in participant
        assert "Propose an API key rotation" not in participant  # admin only
        users = (await client.get("/users")).text
        assert "Add operator" not in users and ">Disable<" not in users
        approvals = (await client.get("/approvals")).text
        assert "Propose currency" not in approvals
        # bob may not check an admin's onboarding: no Approve button for it.
        row = re.search(r'<tr data-proposal="p-[0-9a-f]+">.*?</tr>', approvals, re.S).group(0)
        assert "Approve" not in row and "needs an admin" in row


async def test_participants_are_named_and_money_is_in_currency_units(app, embedded_world):
    transfer_id, _ = embedded_world.send(payer=BANK_A, payee=BANK_B, amount_minor=4_321)
    await embedded_world.service.propose(embedded_world.caller("bob"), FundProposal(
        participant_id=BANK_B, currency="BRL", amount_minor=250_075))
    async with AsyncTestClient(app=app) as client:
        await login(client, "vic")
        results = (await client.get("/transfers", params={"transfer_id": transfer_id})).text
        assert "bank-a" in results and "bank-b" in results and "43.21 BRL" in results
        timeline = (await client.get(f"/transfers/{BANK_A}/{transfer_id}")).text
        assert "bank-a" in timeline and "bank-b" in timeline
        assert "minor units" not in timeline and "43.21 BRL" in timeline
        approvals = (await client.get("/approvals")).text
        assert "bank-b" in approvals and "2,500.75 BRL" in approvals
        assert "minor units" not in approvals


async def test_dates_have_one_format_on_every_page(app, embedded_world):
    embedded_world.send()
    await embedded_world.service.propose(embedded_world.caller("bob"), FundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=100))
    async with AsyncTestClient(app=app) as client:
        await login(client, "alice")
        for path in ("/transfers?participant_id=1", f"/transfers/{BANK_A}/t1", "/audit",
                     "/users", "/approvals"):
            text = re.sub(r"<[^>]+>", " ", (await client.get(path)).text)
            stamps = re.findall(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}[^ <]*(?: UTC)?", text)
            assert stamps, path
            for stamp in stamps:
                assert TIME.fullmatch(stamp), (path, stamp)


async def test_transfer_search_pages_newest_first_and_takes_dates(app, embedded_world):
    clock = embedded_world.clock
    start_ns = clock()
    ids = []
    for _ in range(7):
        ids.append(embedded_world.send()[0])
        clock.advance(60)
    async with AsyncTestClient(app=app) as client:
        await login(client, "vic")
        api = (await client.get("/api/admin/transfers", params={"limit": 3})).json()
        assert [t["transfer_id"] for t in api["transfers"]] == ids[::-1][:3]
        second = (await client.get("/api/admin/transfers", params={
            "limit": 3, "before_seq": api["next_before_seq"]})).json()
        assert [t["transfer_id"] for t in second["transfers"]] == ids[::-1][3:6]
        third = (await client.get("/api/admin/transfers", params={
            "limit": 3, "before_seq": second["next_before_seq"]})).json()
        assert [t["transfer_id"] for t in third["transfers"]] == ids[:1]
        assert third["next_before_seq"] == 0  # the end

        page = (await client.get("/transfers", params={"participant_id": BANK_A,
                                                       "limit": 3})).text
        older = re.search(r'href="(/transfers\?[^"]*before_seq=\d+[^"]*)"', page).group(1)
        shown = re.findall(r'class="timeline-link">([^<]+)<', page)
        assert shown == ids[::-1][:3]
        page = (await client.get(older.replace("&amp;", "&"))).text
        # Ids are matched as link text: a random token elsewhere in the page may hold "t7".
        assert re.findall(r'class="timeline-link">([^<]+)<', page) == ids[::-1][3:6]
        # The form asks for UTC dates and times, not nanoseconds.
        form = (await client.get("/transfers")).text
        assert 'type="datetime-local"' in form
        assert not re.search(r'name="[^"]*_ns"', form)
        moment = datetime.fromtimestamp((start_ns + 150 * S) / S, tz=timezone.utc)
        page = (await client.get("/transfers", params={
            "received_from": moment.strftime("%Y-%m-%dT%H:%M:%S")})).text
        assert all(i in page for i in ids[3:]) and not any(
            re.search(rf">{i}<", page) for i in ids[:3])
        bad = await client.get("/transfers", params={"received_from": "yesterday"})
        assert bad.status_code == 400 and "VALIDATION_ERROR" in bad.text


async def test_a_favicon_is_served_without_a_session(app):
    async with AsyncTestClient(app=app) as client:
        icon = await client.get("/favicon.ico")
        assert icon.status_code == 200
        assert icon.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in icon.content
        login_page = (await client.get("/login")).text
        assert 'rel="icon"' in login_page


async def test_an_fspiop_proposal_shows_the_checker_its_fsp_id_endpoint_and_key(
        app, embedded_world):
    """The approvals page lists an `fspiop_participant` proposal with what a checker
    compares against the DFSP's letter: FSP id, endpoint, the key's SHA-256 fingerprint."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from switch.admin.types import FspiopParticipantProposal

    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    assert base64.b64encode(der).decode() in pem.replace("\n", "")
    await embedded_world.service.propose(embedded_world.caller("alice"),
                                         FspiopParticipantProposal(
        participant_id=BANK_B, fsp_id="bank-b-fsp", endpoint="https://b.example/fspiop",
        public_key_pem=pem, signature_required=False))
    async with AsyncTestClient(app=app) as client:
        await login(client, "ada")
        approvals = (await client.get("/approvals")).text
        row = re.search(r'<tr data-proposal="p-[0-9a-f]+">.*?</tr>', approvals, re.S).group(0)
        assert "bank-b-fsp" in row and "https://b.example/fspiop" in row
        assert hashlib.sha256(der).hexdigest()[:16] in row
        assert "signature optional" in row and "Approve" in row
