"""The console's JSON API on a real running switch (no browser): onboarding through the
sequencer, key rotation the gateway honours at once, callback URLs in the credential store,
suspension refusing real SDK transfers, metrics from the server's registry, and the
console inside the server process when `console_enabled`."""

from __future__ import annotations

import httpx
import pytest

from console_traffic import Traffic, start_server
from switch.admin.passwords import Passwords
from switch.admin.server_port import attach_console, create_demo_operators
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
    for username, role in (("alice", "admin"), ("bob", "operator")):
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


async def test_onboard_rotate_and_callback_through_the_running_switch(running):
    server, _traffic, console = running
    async with session(console, "alice") as alice:
        created = await alice.post("/api/admin/participants", json={
            "participant_id": 40, "name": "bank-new", "kind": "bank", "currencies": ["BRL"],
            "callback_url": "https://bank-new.example/ponte"})
        assert created.status_code == 201, created.text
        assert created.json()["positions"][0]["currency"] == "BRL"
        assert server.core.participant(40).name == "bank-new"
        assert server.credentials.callback_url(40) == "https://bank-new.example/ponte"

        first = (await alice.post("/api/admin/participants/40/rotate-key")).json()
        assert server.gateway.authenticate(first["api_key"]) == 40
        second = (await alice.post("/api/admin/participants/40/rotate-key")).json()
        assert server.gateway.authenticate(second["api_key"]) == 40
        assert server.gateway.authenticate(first["api_key"]) is None

        moved = await alice.put("/api/admin/participants/40/callback-url",
                                json={"callback_url": "https://bank-new.example/v2"})
        assert moved.status_code == 200
        assert server.credentials.callback_url(40) == "https://bank-new.example/v2"
        bad = await alice.put("/api/admin/participants/40/callback-url",
                              json={"callback_url": "ftp://nope"})
        assert bad.status_code == 400
        assert server.credentials.callback_url(40) == "https://bank-new.example/v2"


async def test_a_suspension_through_the_console_refuses_real_transfers(running):
    server, traffic, console = running
    bank_a = traffic.participant_ids["bank-a"]
    async with session(console, "bob") as bob:
        answer = await bob.post(f"/api/admin/participants/{bank_a}/suspend")
        assert answer.status_code == 200
        _, future = traffic.transfer("bank-a", 1, 100)
        outcome = await future
        assert outcome.result == Result.PAYER_BLOCKED
        await bob.post(f"/api/admin/participants/{bank_a}/resume")
        _, future = traffic.transfer("bank-a", 1, 100)
        assert (await future).result == Result.OK
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
