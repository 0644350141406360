"""The switch's small HTTP port over a real socket: /health and /metrics without a token,
the read-only participant list with it, and no route left that changes anything (changes
are maker-checker proposals of the operator console)."""

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


async def test_participants_are_listed_read_only_with_their_balances(server):
    created = await onboard(server, ["bank_z"], funding_minor=5000)
    participant_id = created["bank_z"][0]
    status, listed = await call(server, "GET", "/admin/participants")
    assert status == 200
    (row,) = listed
    assert (row["participant_id"], row["name"], row["kind"]) == (participant_id, "bank_z", "bank")
    assert row["accounts"]["KES"]["credits_posted"] == 5000
    status, one = await call(server, "GET", f"/admin/participants/{participant_id}")
    assert status == 200 and one == row
    status, answer = await call(server, "GET", "/admin/participants/999")
    assert status == 404 and answer["name"] == "ADMIN_PARTICIPANT_NOT_FOUND"


# Every route the token API used to change the switch with. None may change anything now,
# however well-formed the body and whatever the token: changes are maker-checker proposals.
MUTATIONS = [
    ("POST", "/admin/participants", {"name": "x", "kind": "bank", "currencies": ["KES"],
                                     "funding_minor": 5000}),
    ("POST", "/admin/currencies", {"currency": "BRL", "ledger_id": 986}),
    ("POST", "/admin/participants/{id}/keys", {"revoke_others": True}),
    ("POST", "/admin/participants/{id}/accounts", {"currency": "KES"}),
    ("PUT", "/admin/participants/{id}/callback-url", {"callback_url": "https://evil.example"}),
    ("POST", "/admin/participants/{id}/funds", {"request_id": "f1", "currency": "KES",
                                                "amount_minor": 700}),
    ("POST", "/admin/participants/{id}/funds", {"request_id": "w1", "currency": "KES",
                                                "amount_minor": 700, "withdraw": True}),
    ("POST", "/admin/participants/{id}/net-debit-cap", {"request_id": "c1", "currency": "KES",
                                                        "cap_minor": 10**9}),
    ("POST", "/admin/participants/{id}/certificates", {"fingerprint_sha256": "ab" * 32}),
]


@pytest.mark.parametrize("method, path, body", MUTATIONS)
async def test_the_token_port_changes_nothing_even_with_the_token(server, method, path, body):
    created = await onboard(server, ["bank_z"], funding_minor=5000)
    participant_id, api_key = created["bank_z"]
    positions = server.positions()
    currencies = server.core.currencies()
    records = server.credentials.records()
    status, answer = await call(server, method, path.replace("{id}", str(participant_id)), body)
    assert status in (404, 405), (status, answer)
    assert server.positions() == positions
    assert server.core.currencies() == currencies
    assert server.credentials.records() == records
    assert server.gateway.authenticate(api_key) == participant_id
    assert server.credentials.participant_for_certificate(bytes.fromhex("ab" * 32)) is None


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
