"""The GSMA Mobile Money API hub end to end: a real switch (core, ledger, journal,
directory), the hub on a real socket, wallets serving their side of the API, a stream bank.
Every response the hub serves, every request it sends a wallet and every callback it sends
is checked against gsma-mobile-money-api-1.1.2.yaml by an independent validator
(gsma_spec.py)."""

from __future__ import annotations


import pytest

from switch.core.messages import Party, TransferRequest
import gsma_spec
from mm_helpers import msisdn, new_id, payment, start_hub


@pytest.fixture
async def hub(tmp_path):
    hub = await start_hub(str(tmp_path))
    yield hub
    await hub.close()


def positions(hub) -> dict[str, int]:
    found = hub.server.positions()
    return {name: found[hub.id(name)]["KES"]["credits_posted"]
            - found[hub.id(name)]["KES"]["debits_posted"]
            for name in ("bank", "walleta", "walletb")}


def check_callback(path: str, body: dict) -> None:
    import json

    gsma_spec.validate_callback("POST", path, json.dumps(body).encode())


async def test_wallet_to_wallet_payment_completes_with_callback_and_state(hub):
    before = positions(hub)
    correlation_id = new_id()
    path = "/transactions/type/transfer"
    status, state, headers = await hub.call("POST", path, payment(msisdn("walletb", 1)),
                                            correlation_id=correlation_id)
    assert status == 202, state
    assert state["status"] == "pending" and state["notificationMethod"] == "callback"
    assert "x-date" in headers
    callback = await hub.wallets["walleta"].callback_for(correlation_id)
    check_callback(path, callback)
    assert callback["transactionStatus"] == "completed"
    reference = callback["transactionReference"]
    assert reference == state["objectReference"]
    # The payee wallet was asked through its own API: name check, then the credit.
    asked = [(method, p) for method, p, _, _ in hub.wallets["walletb"].received]
    assert asked[0] == ("GET", "/accounts/accountid/b-cust-1/accountname")
    assert asked[1] == ("POST", "/transactions/type/transfer")
    # Polling gives the same state, completed.
    status, polled, _ = await hub.call("GET", f"/requeststates/{state['serverCorrelationId']}")
    assert status == 200 and polled["status"] == "completed"
    status, transaction, _ = await hub.call("GET", f"/transactions/{reference}")
    assert status == 200 and transaction["transactionStatus"] == "completed"
    assert transaction["amount"] == "15.5"
    status, link, _ = await hub.call("GET", f"/responses/{correlation_id}")
    assert status == 200 and link["link"] == f"/transactions/{reference}"
    after = positions(hub)
    assert after["walleta"] == before["walleta"] - 1550
    assert after["walletb"] == before["walletb"] + 1550


async def test_wallet_to_bank_over_the_stream(hub):
    correlation_id = new_id()
    status, state, _ = await hub.call("POST", "/transactions/type/merchantpay",
                                      payment("+254700000100", amount="20"),
                                      correlation_id=correlation_id)
    assert status == 202
    callback = await hub.wallets["walleta"].callback_for(correlation_id)
    assert callback["transactionStatus"] == "completed"
    assert hub.bank.credits[0].amount_minor == 2000
    check_callback("/transactions/type/merchantpay", callback)


async def test_bank_to_wallet_credit_goes_through_the_wallets_api(hub):
    before = positions(hub)
    outcome = await hub.bank.transfer(TransferRequest(
        transfer_id="bank-t1", payee=Party(alias_type="MSISDN", alias_value=msisdn("walletb", 2)),
        amount_minor=1234, currency="KES", expires_at_ns=_expiry(), payer_user_ref="u1"))
    assert outcome.state.name == "COMMITTED", outcome
    received = hub.wallets["walletb"].received
    credit = [body for method, path, _, body in received if method == "POST"][0]
    assert b'"amount":"12.34"' in credit and b'"b-cust-2"' in credit
    assert positions(hub)["walletb"] == before["walletb"] + 1234


async def test_credit_by_polling(tmp_path):
    hub = await start_hub(str(tmp_path), wallet_settings={"walletb": {
        "notification": "polling", "account_check": False}})
    try:
        hub.wallets["walletb"].mode = "polling"
        outcome = await hub.bank.transfer(TransferRequest(
            transfer_id="bank-p1", payee=Party(alias_type="MSISDN",
                                               alias_value=msisdn("walletb", 1)),
            amount_minor=500, currency="KES", expires_at_ns=_expiry()))
        assert outcome.state.name == "COMMITTED"
        paths = [path for _, path, _, _ in hub.wallets["walletb"].received]
        assert any(path.startswith("/requeststates/") for path in paths)
        assert not any("x-callback-url" in headers for _, _, headers, _ in
                       hub.wallets["walletb"].received)
    finally:
        await hub.close()


async def test_wallet_rejection_and_unknown_account_reject_the_credit(hub):
    hub.wallets["walletb"].mode = "reject"
    outcome = await hub.bank.transfer(TransferRequest(
        transfer_id="bank-r1", payee=Party(alias_type="MSISDN", alias_value=msisdn("walletb", 1)),
        amount_minor=500, currency="KES", expires_at_ns=_expiry()))
    assert outcome.state.name == "REJECTED" and outcome.result.name == "PAYEE_REJECTED"


def _expiry() -> int:
    import time

    return time.time_ns() + 20 * 10**9


async def test_wallet_and_http_bank_pay_each_other(tmp_path):
    """A bank on the HTTP connector (its SDK, callbacks to its receiver) and a wallet on the
    GSMA API: each pays the other's customer through the one core and ledger."""
    from connectors.sdk.http_client import HttpClient, ParticipantHandler
    from switch.testing import onboard

    class Bank(ParticipantHandler):
        def __init__(self) -> None:
            self.credit_requests = []

        def on_credit_request(self, message):
            self.credit_requests.append(message)
            return True

    hub = await start_hub(str(tmp_path), http_enabled=True, http={"port": 0})
    bank = Bank()
    client = HttpClient(f"http://127.0.0.1:{hub.server.http_connector.port}", "", handler=bank)
    try:
        receiver = await client.start_receiver()
        (bank_id, api_key), = (await onboard(hub.server, ["httpbank"])).values()
        await hub.server.credentials.set_callback_url(bank_id, receiver)
        client.api_key = api_key
        await client.connect()
        answer = await hub.server.gateway.register_alias(
            bank_id, alias_type="MSISDN", alias_value="+254700000150", account_ref="h-cust-1",
            owner_national_id="1000000150", display_name="Http Customer")
        assert int(answer.result) == 0, answer

        def balance() -> dict[str, int]:
            found = hub.server.positions()
            return {name: found[pid]["KES"]["credits_posted"] - found[pid]["KES"]["debits_posted"]
                    for name, pid in (("walleta", hub.id("walleta")),
                                      ("walletb", hub.id("walletb")), ("httpbank", bank_id))}

        before = balance()

        correlation_id = new_id()
        path = "/transactions/type/transfer"
        status, state, _ = await hub.call("POST", path, payment("+254700000150", amount="7.25"),
                                          correlation_id=correlation_id)
        assert status == 202, state
        callback = await hub.wallets["walleta"].callback_for(correlation_id)
        check_callback(path, callback)
        assert callback["transactionStatus"] == "completed", callback
        (credit,) = bank.credit_requests
        assert (credit.amount_minor, credit.payee_account_ref) == (725, "h-cust-1")

        outcome = await client.submit_transfer(TransferRequest(
            transfer_id="http-to-wallet-1", payee=Party(
                alias_type="MSISDN", alias_value=msisdn("walletb", 1)),
            amount_minor=333, currency="KES", expires_at_ns=_expiry(), payer_user_ref="u7"))
        assert outcome.state.name == "COMMITTED", outcome
        credit_body = [body for method, _p, _h, body in hub.wallets["walletb"].received
                       if method == "POST"][-1]
        assert b'"amount":"3.33"' in credit_body and b'"b-cust-1"' in credit_body

        after = balance()
        assert after["walleta"] == before["walleta"] - 725
        assert after["httpbank"] == before["httpbank"] + 725 - 333
        assert after["walletb"] == before["walletb"] + 333
    finally:
        await client.close()
        await hub.close()
