"""The Mobile Money hub's harder paths: reversals, batches with good and bad rows,
timeouts, duplicates by X-CorrelationID, bad input (the spec's error object and nothing
written), another wallet's resources, OAuth2 and X-Content-Hash, and the error table."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import gsma_spec
from connectors.mobilemoney import errors
from mm_helpers import msisdn, new_id, payment, start_hub
from switch.core.results import Result

SCHEME_TIMEOUT = {"payee_timeout_ms": 1_000}


@pytest.fixture
async def hub(tmp_path):
    hub = await start_hub(str(tmp_path))
    yield hub
    await hub.close()


def ledger_state(hub) -> tuple:
    positions = hub.server.positions()
    return (hub.server.core.transfers_retained, tuple(sorted(
        (pid, tuple(sorted(accounts["KES"].items()))) for pid, accounts in positions.items())),
        len(hub.connector.requests))


async def pay(hub, creditor: str, amount: str = "15.5", wallet: str = "walleta") -> dict:
    correlation_id = new_id()
    status, state, _ = await hub.call("POST", "/transactions/type/transfer",
                                      payment(creditor, amount), wallet=wallet,
                                      correlation_id=correlation_id)
    assert status == 202, state
    callback = await hub.wallets[wallet].callback_for(correlation_id)
    gsma_spec.validate_callback("POST", "/transactions/type/transfer",
                                json.dumps(callback).encode())
    return callback


async def test_reversal_is_a_return_capped_by_the_original(hub):
    done = await pay(hub, msisdn("walletb", 1), "10")
    reference = done["transactionReference"]
    before = hub.server.positions()[hub.id("walleta")]["KES"]["credits_posted"]
    correlation_id = new_id()
    path = f"/transactions/{reference}/reversals"
    status, state, _ = await hub.call("POST", path, {"type": "reversal", "amount": "4",
                                                      "currency": "KES"},
                                      wallet="walletb", correlation_id=correlation_id)
    assert status == 202, state
    callback = await hub.wallets["walletb"].callback_for(correlation_id)
    gsma_spec.validate_callback("POST", path, json.dumps(callback).encode())
    assert callback["transactionStatus"] == "completed"
    assert callback["originalTransactionReference"] == reference
    assert hub.server.positions()[hub.id("walleta")]["KES"]["credits_posted"] == before + 400
    # The rest (no amount: the whole original) goes past the cap: refused by the core.
    second = new_id()
    status, state, _ = await hub.call("POST", path, {"type": "reversal"}, wallet="walletb",
                                      correlation_id=second)
    assert status == 202
    failed = await hub.wallets["walletb"].callback_for(second)
    gsma_spec.validate_callback("POST", path, json.dumps(failed).encode())
    assert failed["errorCode"] == "overPaymentNotAllowed"


async def test_batch_with_good_and_bad_rows(hub):
    rows = [payment(msisdn("walletb", 1), "1"), payment(msisdn("walletb", 2), "2"),
            {**payment(msisdn("walletb", 1), "3"), "type": "transfer"},
            {**payment("+254799999999", "4"), "type": "transfer"},  # nobody has it
            {**payment(msisdn("walletb", 1), "-5"), "type": "transfer"},  # negative
            {**payment(msisdn("walletb", 1), "6"), "type": "withdrawal"},  # not a payment
            ]
    for row in rows[:3]:
        row["type"] = "transfer"
    correlation_id = new_id()
    status, state, _ = await hub.call("POST", "/batchtransactions", {
        "batchTitle": "payroll", "transactions": rows}, correlation_id=correlation_id)
    assert status == 202, state
    batch_id = state["objectReference"]
    callback = await hub.wallets["walleta"].callback_for(correlation_id)
    gsma_spec.validate_callback("POST", "/batchtransactions", json.dumps(callback).encode())
    assert callback["batchStatus"] == "completed"
    status, batch, _ = await hub.call("GET", f"/batchtransactions/{batch_id}")
    assert status == 200
    assert batch["completedCount"] == 3 and batch["rejectionCount"] == 3
    status, completions, headers = await hub.call("GET",
                                                  f"/batchtransactions/{batch_id}/completions")
    assert status == 200 and len(completions) == 3
    assert headers["x-records-available-count"] == "3"
    status, rejections, _ = await hub.call(
        "GET", f"/batchtransactions/{batch_id}/rejections?limit=2&offset=1")
    assert status == 200 and len(rejections) == 2
    status, all_rejections, _ = await hub.call("GET",
                                               f"/batchtransactions/{batch_id}/rejections")
    reasons = " ".join(r["rejectionReason"] for r in all_rejections)
    assert "PARTY_NOT_FOUND" in reasons and "withdrawal" in reasons
    # Another wallet cannot see it.
    status, _, _ = await hub.call("GET", f"/batchtransactions/{batch_id}", wallet="walletb")
    assert status == 404


async def test_credit_timeout_is_voided_and_a_late_completion_reversed(tmp_path):
    hub = await start_hub(str(tmp_path), rules=None)
    try:
        from switch.admin.bootstrap import _admin
        from switch.core.messages import SchemeRules, SchemeRulesChanged

        await _admin(hub.server, SchemeRulesChanged(request_id="rules-1", currency="KES",
                                                    rules=SchemeRules(payee_timeout_ms=1_000)))
        hub.wallets["walletb"].mode = "late"
        hub.wallets["walletb"].late_s = 1.5
        before = hub.server.positions()
        correlation_id = new_id()
        await hub.call("POST", "/transactions/type/transfer", payment(msisdn("walletb", 1)),
                       correlation_id=correlation_id)
        callback = await hub.wallets["walleta"].callback_for(correlation_id)
        gsma_spec.validate_callback("POST", "/transactions/type/transfer",
                                    json.dumps(callback).encode())
        assert callback["errorCode"] == "requestDeclined"
        names = {p["key"]: p["value"] for p in callback["errorParameters"]}
        assert names["ponteResultName"] == "TRANSFER_EXPIRED"
        assert hub.server.positions() == before  # voided: no money moved
        deadline = time.monotonic() + 10
        while not hub.wallets["walletb"].reversals and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert hub.wallets["walletb"].reversals == ["walletb-1"]
    finally:
        await hub.close()


async def test_silent_wallet_times_out(tmp_path):
    hub = await start_hub(str(tmp_path))
    try:
        from switch.admin.bootstrap import _admin
        from switch.core.messages import SchemeRules, SchemeRulesChanged

        await _admin(hub.server, SchemeRulesChanged(request_id="rules-2", currency="KES",
                                                    rules=SchemeRules(payee_timeout_ms=500)))
        hub.wallets["walletb"].mode = "silent"
        correlation_id = new_id()
        status, state, _ = await hub.call("POST", "/transactions/type/transfer",
                                          payment(msisdn("walletb", 1)), callback=False,
                                          correlation_id=correlation_id)
        assert status == 202 and state["notificationMethod"] == "polling"
        deadline = time.monotonic() + 10
        while True:
            status, polled, _ = await hub.call(
                "GET", f"/requeststates/{state['serverCorrelationId']}")
            if polled["status"] != "pending" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert polled["status"] == "failed"
        assert polled["error"]["errorCategory"] == "businessRule"
    finally:
        await hub.close()


async def test_duplicates_by_correlation_id(hub):
    correlation_id = new_id()
    body = payment(msisdn("walletb", 1), "7")
    status, first, _ = await hub.call("POST", "/transactions/type/transfer", body,
                                      correlation_id=correlation_id)
    assert status == 202
    await hub.wallets["walleta"].callback_for(correlation_id)
    before = ledger_state(hub)
    status, again, _ = await hub.call("POST", "/transactions/type/transfer", body,
                                      correlation_id=correlation_id)
    assert status == 202 and again["serverCorrelationId"] == first["serverCorrelationId"]
    assert again["status"] == "completed"
    status, changed, _ = await hub.call("POST", "/transactions/type/transfer",
                                        {**body, "amount": "8"}, correlation_id=correlation_id)
    assert status == 400 and changed["errorCode"] == "duplicateRequest"
    assert ledger_state(hub) == before


@pytest.mark.parametrize("case, body, code", [
    ("not JSON", b"{not json", "formatError"),
    ("schema-invalid", json.dumps({"amount": "1", "currency": "KES", "colour": "red"}).encode(),
     "formatError"),
    ("negative amount", json.dumps(payment("+254700000301", "-5")).encode(), "negativeValue"),
    ("trailing zeros", json.dumps(payment("+254700000301", "5.10")).encode(), "formatError"),
    ("too many decimals", json.dumps(payment("+254700000301", "5.123")).encode(),
     "lessThanTransactionMinValue"),
    ("zero", json.dumps(payment("+254700000301", "0")).encode(),
     "lessThanTransactionMinValue"),
    ("unknown identifier type", json.dumps({**payment("x"), "creditParty": [
        {"key": "linkref", "value": "L1"}]}).encode(), "identifierError"),
    ("no credit party", json.dumps({k: v for k, v in payment("x").items()
                                    if k != "creditParty"}).encode(), "mandatoryValueNotSupplied"),
])
async def test_bad_input_is_the_specs_error_object_and_nothing_is_written(hub, case, body,
                                                                          code):
    before = ledger_state(hub)
    status, answer, _ = await hub.call("POST", "/transactions/type/transfer", raw=body,
                                       correlation_id=new_id())
    assert status == 400, (case, answer)
    assert answer["errorCode"] == code, (case, answer)
    gsma_spec.validate_schema("errorObject", answer)
    assert ledger_state(hub) == before


async def test_bad_headers_and_paths(hub):
    before = ledger_state(hub)
    status, answer, _ = await hub.call("POST", "/transactions/type/transfer",
                                       payment(msisdn("walletb", 1)))  # no X-CorrelationID
    assert status == 400 and answer["errorCode"] == "mandatoryValueNotSupplied"
    status, answer, _ = await hub.call("POST", "/transactions/type/transfer",
                                       payment(msisdn("walletb", 1)), correlation_id="nope")
    assert status == 400
    status, answer, _ = await hub.call("POST", "/transactions/type/withdrawal",
                                       payment(msisdn("walletb", 1)), correlation_id=new_id())
    assert status == 400 and answer["errorCode"] == "transactionTypeError"
    status, answer, _ = await hub.call("GET", "/accounts/linkref/L1/accountname")
    assert status == 400 and answer["errorCode"] == "identifierError"
    status, answer, _ = await hub.call("POST", "/transactions/type/transfer",
                                       payment(msisdn("walletb", 1)), correlation_id=new_id(),
                                       headers={"x-callback-url": "http://evil.example/x"})
    assert status == 400
    status, answer, _ = await hub.call("GET", "/heartbeat", key="ponte_nope_nope")
    assert status == 200  # the heartbeat needs no credential
    status, answer, _ = await hub.call("GET", "/requeststates/" + new_id(), key="bad-key-xx")
    assert status == 401 and answer["errorCategory"] == "authorisation"
    status, answer, _ = await hub.call("GET", "/requeststates/" + new_id(), wallet="bank")
    assert status == 401  # a participant not on this API
    assert ledger_state(hub) == before


async def test_another_wallets_reference_reveals_nothing(hub):
    # walleta pays the bank: walletb is no party to it.
    correlation_id = new_id()
    await hub.call("POST", "/transactions/type/transfer", payment("+254700000100", "3"),
                   correlation_id=correlation_id)
    reference = (await hub.wallets["walleta"].callback_for(correlation_id))[
        "transactionReference"]
    before = ledger_state(hub)
    unknown = f"{hub.id('walleta')}.{new_id()}"
    status, answer, _ = await hub.call("GET", f"/transactions/{reference}", wallet="walletb")
    assert status == 404 and answer["errorCategory"] == "identification"
    status, same, _ = await hub.call("GET", f"/transactions/{unknown}", wallet="walletb")
    assert (status, same["errorCode"]) == (404, answer["errorCode"])  # indistinguishable
    for body in ({"type": "reversal", "amount": "1", "currency": "KES"}, {"type": "reversal"}):
        status, answer, _ = await hub.call("POST", f"/transactions/{reference}/reversals",
                                           body, wallet="walletb", correlation_id=new_id())
        assert status == 404 and answer["errorCategory"] == "identification"
    # The payer may read it, but only the payee may reverse it.
    status, answer, _ = await hub.call("POST", f"/transactions/{reference}/reversals",
                                       {"type": "reversal"}, correlation_id=new_id())
    assert status == 401 and answer["errorCode"] == "requestingPartyAuthorisationError"
    state_id = hub.connector.requests[(hub.id("walleta"), correlation_id)].server_correlation_id
    status, _, _ = await hub.call("GET", f"/requeststates/{state_id}", wallet="walletb")
    assert status == 404
    status, _, _ = await hub.call("GET", f"/responses/{correlation_id}", wallet="walletb")
    assert status == 404
    assert ledger_state(hub) == before


async def test_oauth2_client_credentials_and_content_hash(tmp_path):
    hub = await start_hub(str(tmp_path), wallet_settings={"walleta": {
        "auth": "oauth2", "content_hash_required": True}})
    try:
        key = hub.key("walleta")
        status, answer, _ = await hub.call("GET", "/heartbeat")
        status, answer, _ = await hub.call("GET", f"/requeststates/{new_id()}")
        assert status == 401  # the API key alone is refused: this wallet uses OAuth2
        form = f"grant_type=client_credentials&client_id={key.split('_')[1]}&client_secret={key}"
        response = await hub.pool.request(b"POST", b"/oauth/token", form.encode())
        assert response.status == 200, response
        token = json.loads(response.body)["access_token"]
        bad = await hub.pool.request(b"POST", b"/oauth/token", form.replace(
            key.split("_")[1], "other").encode())
        assert bad.status == 401
        bearer = {"authorization": f"Bearer {token}"}
        correlation_id = new_id()
        status, state, _ = await hub.call("POST", "/transactions/type/transfer",
                                          payment(msisdn("walletb", 1)), key="",
                                          headers=bearer, correlation_id=correlation_id)
        assert status == 401  # an empty X-API-Key header is a (wrong) key
        headers = dict(bearer)
        response = await hub.pool.request(b"POST", b"/transactions/type/transfer", json.dumps(
            payment(msisdn("walletb", 1))).encode(), (
            (b"authorization", f"Bearer {token}".encode()),
            (b"x-correlationid", new_id().encode())))
        assert response.status == 401  # no X-Content-Hash
        body = json.dumps(payment(msisdn("walletb", 1))).encode()
        import hashlib

        response = await hub.pool.request(b"POST", b"/transactions/type/transfer", body, (
            (b"authorization", f"Bearer {token}".encode()),
            (b"x-correlationid", new_id().encode()),
            (b"x-content-hash", hashlib.sha256(body).hexdigest().encode())))
        assert response.status == 202, response
        gsma_spec.validate_response("POST", "/transactions/type/transfer", 202, response.body)
        assert headers
    finally:
        await hub.close()


async def test_account_name_is_masked_and_quotation_has_the_fee(hub):
    status, answer, _ = await hub.call("GET", f"/accounts/msisdn/{msisdn('walletb', 1)}"
                                              "/accountname")
    assert status == 200
    assert answer["name"]["fullName"] != "Wallet Customer b1"  # masked by the directory
    status, answer, _ = await hub.call("GET", "/accounts/msisdn/+254711111111/accountname")
    assert status == 404 and answer["errorCode"] == "identifierError"
    status, quote, _ = await hub.call("POST", "/quotations", {
        "requestAmount": "100", "requestCurrency": "KES",
        "requestDate": "2024-05-01T12:00:00.000Z",
        "debitParty": [{"key": "accountid", "value": "a-cust-1"}],
        "creditParty": [{"key": "msisdn", "value": msisdn("walletb", 1)}]})
    assert status == 201 and quote["quotes"][0]["sendingAmount"] == "100"


def test_every_result_maps_to_an_error_object_the_spec_allows():
    for member in Result:
        error = errors.error_object(member, "detail", time.time_ns())
        body = json.loads(json.dumps({k: v for k, v in {
            "errorCategory": error.error_category, "errorCode": error.error_code,
            "errordescription": error.error_description,
            "errorDateTime": error.error_date_time,
            "errorParameters": [{"key": m.key, "value": m.value}
                                for m in error.error_parameters]}.items()}))
        gsma_spec.validate_schema("errorObject", body)
        assert errors.CATEGORY_STATUS[error.error_category] in (400, 401, 404, 500, 503)
