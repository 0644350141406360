"""The console's JSON API on a real running switch (no browser): onboarding through the
sequencer, key rotation the gateway honours at once, callback URLs in the credential store,
suspension refusing real SDK transfers, metrics from the server's registry, and the
console inside the server process when `console_enabled`."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from connectors.sdk import ACCEPT
from connectors.sdk.stream_client import StreamClient
from connectors.stream.protocol import StreamError

from console_traffic import Traffic, msisdn, start_server
from switch.admin.passwords import Passwords
from switch.console.server_port import attach_console, create_demo_operators
from switch.admin.service import Caller
from switch.admin.types import Role, UserCreate
from switch.core.results import Result

from console_helpers import PASSWORD


@pytest.fixture
async def running(tmp_path):
    server = await start_server(str(tmp_path))
    traffic = Traffic(server, customers=3)
    await traffic.onboard()
    console = await attach_console(server, passwords=Passwords(time_cost=1, memory_kib=8192))
    for username, role in (("alice", "admin"), ("ada", "admin"), ("bob", "operator")):
        await console.service.create_user(Caller("test", Role.ADMIN, "local"), UserCreate(
            username=username, password=PASSWORD, role=role))
    yield server, traffic, console
    await traffic.close()
    await console.stop()
    await server.stop(drain_s=1)


class session:
    """An httpx client logged in as `username`, sending its CSRF token on every request."""

    def __init__(self, console, username: str):
        self.client = httpx.AsyncClient(base_url=console.url, timeout=10)
        self.username = username

    async def __aenter__(self) -> httpx.AsyncClient:
        client = self.client
        answer = await client.post("/api/admin/session",
                                   json={"username": self.username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return client

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()


async def _carried_out(maker, checker, body: dict) -> dict:
    proposed = await maker.post("/api/admin/proposals", json=body)
    assert proposed.status_code == 201, proposed.text
    decided = await checker.post(f"/api/admin/proposals/{proposed.json()['proposal_id']}"
                                 "/decision", json={"approve": True})
    assert decided.status_code == 200, decided.text
    return decided.json()


async def test_onboard_rotate_and_callback_through_the_running_switch(running):
    server, _traffic, console = running
    async with session(console, "alice") as alice, session(console, "ada") as ada:
        proposed = await alice.post("/api/admin/proposals", json={
            "kind": "onboard", "participant_id": 40, "name": "bank-new",
            "currencies": ["BRL"], "callback_url": "https://bank-new.example/ponte",
            "funding_minor": 12_345})
        assert proposed.status_code == 201, proposed.text
        assert server.core.participant(40) is None  # nothing until a second admin approves
        decided = await ada.post(
            f"/api/admin/proposals/{proposed.json()['proposal_id']}/decision",
            json={"approve": True})
        created = decided.json()
        assert created["state"] == "executed", created
        assert server.core.participant(40).name == "bank-new"
        assert server.positions()[40]["BRL"]["credits_posted"] == 12_345
        assert server.credentials.callback_url(40) == "https://bank-new.example/ponte"
        assert server.gateway.authenticate(created["api_key"]) == 40

        first = await _carried_out(ada, alice, {"kind": "rotate_key", "participant_id": 40})
        assert server.gateway.authenticate(first["api_key"]) == 40
        assert server.gateway.authenticate(created["api_key"]) is None

        moved = await _carried_out(alice, ada, {"kind": "callback_url", "participant_id": 40,
                                                "callback_url": "https://bank-new.example/v2"})
        assert moved["state"] == "executed"
        assert server.credentials.callback_url(40) == "https://bank-new.example/v2"
        bad = await alice.post("/api/admin/proposals", json={
            "kind": "callback_url", "participant_id": 40, "callback_url": "ftp://nope"})
        assert bad.status_code == 400
        assert server.credentials.callback_url(40) == "https://bank-new.example/v2"

        fingerprint = "cd" * 32
        await _carried_out(ada, alice, {"kind": "certificate", "participant_id": 40,
                                        "fingerprint_sha256": fingerprint})
        assert server.credentials.participant_for_certificate(bytes.fromhex(fingerprint)) == 40
        # The old direct routes are gone.
        assert (await alice.post("/api/admin/participants/40/rotate-key")).status_code in (
            404, 405)
        assert (await alice.put("/api/admin/participants/40/callback-url",
                                json={"callback_url": "https://x.example"})).status_code in (
            404, 405)


async def test_a_new_bank_is_not_throttled_and_its_category_changes_at_run_time(running):
    """Onboarded through the console with the default category, a bank makes a few dozen
    lookups unthrottled; the category the operators approve applies from its next lookup."""
    from connectors.sdk.stream_client import StreamClient

    server, traffic, console = running
    async with session(console, "alice") as alice, session(console, "ada") as ada:
        created = await _carried_out(alice, ada, {"kind": "onboard", "name": "bank-fresh",
                                                  "currencies": ["BRL"]})
        participant_id = created["participant_id"]
        client = await StreamClient.connect("127.0.0.1", server.stream_port,
                                            api_key=created["api_key"], reconnect=False)
        try:
            async def lookups(count: int, tag: str) -> list:
                return [await client.resolve("MSISDN", msisdn(1, 0),
                                             payer_user_ref=f"{tag}-{index}")
                        for index in range(count)]

            answers = await lookups(60, "a")
            assert {a.result for a in answers} == {Result.OK}, answers
            view = (await alice.get(f"/api/admin/participants/{participant_id}")).json()
            assert view["category"] == server.config.directory.participant_category_default
            async with session(console, "bob") as bob:
                await _carried_out(bob, alice, {"kind": "category",
                                                "participant_id": participant_id,
                                                "category": "H"})
            answers = await lookups(60, "b")
            results = [a.result for a in answers]
            assert Result.LOOKUP_RATE_LIMITED in results
            assert results.count(Result.OK) <= 50  # category H: 50 lookups, +2 a minute
            assert (await alice.get(f"/api/admin/participants/{participant_id}")).json()[
                "category"] == "H"
        finally:
            await client.close()


async def test_the_in_process_bootstrap_is_audited_as_system(running):
    from switch.admin.bootstrap import add_participant

    server, _traffic, console = running
    created = await add_participant(server, "bank-boot", "bank", ["BRL"], funding_minor=99)
    records = await console.service.audit_page(limit=20, actor="system")
    target = f"participant:{created.participant_id}"
    actions = [r.action for r in records if r.target == target]
    assert "bootstrap.ParticipantAdded" in actions
    assert "bootstrap.FundsDeposited" in actions
    assert "bootstrap.issue_key" in actions
    assert all(created.api_key not in r.detail for r in records)


async def reconnect(server, traffic, name: str, api_key: str) -> None:
    await traffic.clients[name].close()
    traffic.clients[name] = await StreamClient.connect(
        "127.0.0.1", server.stream_port, api_key=api_key, on_credit_request=lambda _r: ACCEPT)


async def test_a_suspension_through_the_console_closes_sessions_and_refuses_transfers(running):
    """Suspension ends the participant's live stream session at once (SESSION_REVOKED, the
    count in the audit record); reconnecting, it is refused PAYER_BLOCKED until resumed.
    Its stateless doors stay attached, so it is served again once resumed."""
    server, traffic, console = running
    bank_a = traffic.participant_ids["bank-a"]
    live = traffic.clients["bank-a"]
    api_key = await server.credentials.issue_key(bank_a)  # the session's key stays valid
    async with session(console, "bob") as bob:
        answer = await bob.post(f"/api/admin/participants/{bank_a}/suspend")
        assert answer.status_code == 200
        for _ in range(100):
            if live.protocol_error is not None:
                break
            await asyncio.sleep(0.02)
        assert live.protocol_error.error is StreamError.SESSION_REVOKED
        assert live.protocol_error.detail == "participant suspended"
        assert not server.gateway.attached(bank_a)
        await reconnect(server, traffic, "bank-a", api_key)
        _, future = traffic.transfer("bank-a", 1, 100)
        outcome = await future
        assert outcome.result == Result.PAYER_BLOCKED
        await bob.post(f"/api/admin/participants/{bank_a}/resume")
        _, future = traffic.transfer("bank-a", 1, 100)
        assert (await future).result == Result.OK
        suspended = [r for r in (await bob.get("/api/admin/audit", params={
            "actor": "bob"})).json() if r["action"] == "participant.suspend"]
        assert json.loads(suspended[0]["detail"])["sessions_closed"] == 1
        metrics = (await bob.get("/metrics")).text
        assert 'ponte_transfers_total{state="REJECTED",result="PAYER_BLOCKED"} 1' in metrics
        assert 'ponte_transfers_total{state="COMMITTED",result="OK"} 1' in metrics
        audit = (await bob.get("/api/admin/audit", params={"actor": "bob"})).json()
        assert [r["action"] for r in audit][:2] == ["participant.resume", "participant.suspend"]


async def test_the_server_starts_its_console_when_configured(tmp_path):
    from switch.server.config import load_config
    from switch.app import start_switch

    config = load_config(environ={}, data_dir=str(tmp_path), stream_port=0,
                         admin_enabled=False, console_enabled=True, console_port=0)
    server = await start_switch(config)
    try:
        assert server.console is not None
        operators = await _demo_operators(str(tmp_path))
        assert [role for _u, _p, role in operators] == ["admin", "operator", "viewer"]
        username, password, _role = operators[0]
        async with httpx.AsyncClient(base_url=server.console.url) as client:
            assert (await client.get("/health")).json()["status"] == "ok"
            login = await client.post("/api/admin/session",
                                      json={"username": username, "password": password})
            assert login.status_code == 200
        assert await _demo_operators(str(tmp_path)) == []  # only once
    finally:
        await server.stop(drain_s=0)
    assert server.console.http._task is None  # stopped with the server


async def _demo_operators(data_dir: str):
    import asyncio

    # create_demo_operators blocks (it is for the demo's own process): run it in a thread.
    return await asyncio.to_thread(create_demo_operators, data_dir)


def _self_signed(directory) -> tuple[str, str]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "console.pem", directory / "console.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_on_tls_the_session_cookie_is_secure(tmp_path):
    from switch.server.config import load_config
    from switch.app import start_switch

    cert, key = _self_signed(tmp_path)
    config = load_config(environ={}, data_dir=str(tmp_path / "data"), stream_port=0,
                         admin_enabled=False, console_enabled=True, console_port=0,
                         console_tls_cert=cert, console_tls_key=key)
    server = await start_switch(config)
    try:
        assert server.console.url.startswith("https://")
        (username, password, _), *_ = await _demo_operators(str(tmp_path / "data"))
        async with httpx.AsyncClient(base_url=server.console.url, verify=False) as client:
            login = await client.post("/api/admin/session",
                                      json={"username": username, "password": password})
            assert login.status_code == 200
            cookie = login.headers["set-cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await server.stop(drain_s=0)


async def test_verify_audit_command_detects_a_tail_truncated_after_the_anchor(running):
    """The CLI reads the anchor from the switch's journal file: records removed from the end
    of the audit table are named even though what is left is a valid chain."""
    import asyncio
    import sqlite3

    from click.testing import CliRunner

    from switch.admin.types import Decision, FundProposal
    from switch.cli import main as ponte

    server, traffic, console = running
    service = console.service
    proposal = await service.propose(Caller("bob", Role.OPERATOR, "t"), FundProposal(
        participant_id=traffic.participant_ids["bank-a"], currency="BRL", amount_minor=100))
    await service.decide(Caller("alice", Role.ADMIN, "t"), proposal.proposal_id,
                         Decision(approve=True))
    anchored_seq, _hash = server.core.audit_anchor()
    data_dir = server.config.data_dir

    def verify():
        return CliRunner().invoke(ponte, ["admin", "verify-audit", "--data-dir", data_dir])

    intact = await asyncio.to_thread(verify)
    assert intact.exit_code == 0, intact.output
    assert f"anchored #{anchored_seq}" in intact.output
    db = sqlite3.connect(f"{data_dir}/admin.sqlite3")
    db.execute("DROP TRIGGER admin_audit_no_delete")
    db.execute("DELETE FROM admin_audit WHERE seq >= ?", (anchored_seq - 1,))
    db.commit()
    db.close()
    truncated = await asyncio.to_thread(verify)
    assert truncated.exit_code == 1, truncated.output
    assert f"BROKEN at record {anchored_seq - 1}" in truncated.output
    assert "removed from its end" in truncated.output


async def test_a_key_rotation_closes_the_revoked_keys_live_sessions_and_says_how_many(running):
    server, traffic, console = running
    bank_b = traffic.participant_ids["bank-b"]
    live = traffic.clients["bank-b"]
    async with session(console, "alice") as alice, session(console, "ada") as ada:
        rotated = await _carried_out(alice, ada, {"kind": "rotate_key", "participant_id": bank_b,
                                                  "revoke_others": True})
        assert rotated["state"] == "executed", rotated
        for _ in range(100):
            if live.protocol_error is not None:
                break
            await asyncio.sleep(0.02)
        assert live.protocol_error.error is StreamError.SESSION_REVOKED
        assert "others revoked, 1 live sessions closed" in json.dumps(rotated), rotated
