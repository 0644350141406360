"""The admin HTTP surface over a real socket: token required, typed errors that change
nothing, onboarding that goes through journaled core events, key rotation, /metrics."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request

import pytest

from switch.testing import onboard, start_test_server


@pytest.fixture
async def server(tmp_path):
    server = await start_test_server(str(tmp_path))
    await onboard(server, [])  # the KES currency only
    yield server
    await server.stop(drain_s=0)


def _call(url: str, method: str, token: str | None, body) -> tuple[int, object]:
    data = None if body is None else (body if isinstance(body, bytes) else
                                      json.dumps(body).encode())
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw = error.read()
        status = error.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode()


async def call(server, method: str, path: str, body=None, token: str | None = "default"):
    if token == "default":
        token = server.admin_token.reveal()
    url = f"http://127.0.0.1:{server.admin_port}{path}"
    return await asyncio.to_thread(_call, url, method, token, body)


async def test_admin_needs_the_token(server):
    status, body = await call(server, "GET", "/admin/participants", token=None)
    assert status == 401 and body["name"] == "VALIDATION_ERROR"
    status, body = await call(server, "GET", "/admin/participants", token="wrong")
    assert status == 401
    status, body = await call(server, "GET", "/health", token=None)
    assert status == 200 and body["status"] == "ok" and body["accepting"] is True


async def test_onboarding_creates_a_participant_with_a_working_key(server):
    status, created = await call(server, "POST", "/admin/participants", {
        "name": "wallet_x", "kind": "wallet", "currencies": ["KES"], "funding_minor": 5000,
        "callback_url": "http://127.0.0.1:9/cb"})
    assert status == 201
    participant_id = created["participant_id"]
    assert server.gateway.authenticate(created["api_key"]) == participant_id
    assert server.gateway.callback_url(participant_id) == "http://127.0.0.1:9/cb"
    status, listed = await call(server, "GET", "/admin/participants")
    (row,) = [r for r in listed if r["participant_id"] == participant_id]
    assert row["kind"] == "wallet" and row["status"] == "ACTIVE"
    assert row["accounts"]["KES"]["credits_posted"] == 5000
    # Rotation with revocation: the old key stops working at once.
    status, rotated = await call(server, "POST", f"/admin/participants/{participant_id}/keys",
                                 {"revoke_others": True})
    assert status == 201
    assert server.gateway.authenticate(rotated["api_key"]) == participant_id
    assert server.gateway.authenticate(created["api_key"]) is None
    status, _ = await call(server, "POST", f"/admin/participants/{participant_id}/funds",
                           {"request_id": "top-up-1", "currency": "KES", "amount_minor": 700})
    assert status == 200
    assert server.positions()[participant_id]["KES"]["credits_posted"] == 5700


@pytest.mark.parametrize("body, status, name", [
    (b"{not json", 400, "VALIDATION_ERROR"),
    ({"name": "x", "kind": "bank", "currencies": ["KES"], "colour": "red"}, 400,
     "VALIDATION_ERROR"),
    ({"name": "x", "kind": "bakery", "currencies": ["KES"]}, 400, "VALIDATION_ERROR"),
    ({"name": "x", "kind": "bank", "currencies": ["KES"], "callback_url": "ftp://x"}, 400,
     "VALIDATION_ERROR"),
    ({"name": "x", "kind": "bank", "currencies": ["XYZ"]}, 404, "ADMIN_CURRENCY_NOT_FOUND"),
])
async def test_bad_requests_are_typed_and_create_nothing(server, body, status, name):
    before = server.core.participant_ids()
    got_status, answer = await call(server, "POST", "/admin/participants", body)
    assert (got_status, answer["name"]) == (status, name)
    assert server.core.participant_ids() == before
    assert server.credentials.records() == []


async def test_opening_another_currency(server):
    status, _ = await call(server, "POST", "/admin/currencies", {
        "currency": "BRL", "ledger_id": 986, "settlement_model": "deferred_net"})
    assert status == 201
    status, created = await call(server, "POST", "/admin/participants", {
        "name": "bank_w", "kind": "bank", "currencies": ["KES"]})
    participant_id = created["participant_id"]
    status, _ = await call(server, "POST", f"/admin/participants/{participant_id}/accounts",
                           {"currency": "BRL"})
    assert status == 201
    status, _ = await call(server, "POST", f"/admin/participants/{participant_id}/net-debit-cap",
                           {"request_id": "cap-1", "currency": "BRL", "cap_minor": 9000})
    assert status == 200
    status, answer = await call(server, "POST",
                                f"/admin/participants/{participant_id}/accounts",
                                {"currency": "USD"})
    assert status == 404 and answer["name"] == "ADMIN_CURRENCY_NOT_FOUND"
    accounts = server.positions()[participant_id]
    assert set(accounts) == {"KES", "BRL"}
    assert accounts["BRL"]["credits_posted"] == 9000


async def test_withdrawing_more_than_the_balance_is_refused(server):
    status, created = await call(server, "POST", "/admin/participants", {
        "name": "bank_y", "kind": "bank", "currencies": ["KES"], "funding_minor": 100})
    participant_id = created["participant_id"]
    status, answer = await call(server, "POST", f"/admin/participants/{participant_id}/funds",
                                {"request_id": "w1", "currency": "KES", "amount_minor": 101,
                                 "withdraw": True})
    assert status == 409 and answer["name"] == "ADMIN_FUNDS_INSUFFICIENT"
    assert server.positions()[participant_id]["KES"]["credits_posted"] == 100


async def test_metrics_are_prometheus_text(server):
    status, text = await call(server, "GET", "/metrics", token=None)
    assert status == 200
    names = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    metric_names = {name for name, _kind in names}
    for expected in ("ponte_transfers_total", "ponte_transfer_phase_seconds",
                     "ponte_journal_commit_seconds", "ponte_inbound_queue_depth",
                     "ponte_participant_position_minor", "ponte_stream_connections"):
        assert expected in metric_names
    assert all(name.startswith("ponte_") for name in metric_names)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'ponte_[a-z_]+(\{[^}]*\})? -?[0-9.e+Inf-]+', line), line
