"""The Mobile Money hub's paths the other files leave open: the account-name lookup once
the anti-enumeration buckets run dry, an account the payee wallet does not know, the
inttransfer and disbursement types, and X-CorrelationID resends while the first request
is still in flight. A real switch, the hub on a real socket, wallets serving their side of
the API; every answer the hub serves is checked against the spec (mm_helpers.Hub.call)."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time

import gsma_spec
import mm_helpers
import pytest
from mm_helpers import msisdn, new_id, payment, start_hub

from switch.core.messages import Party, SchemeRules, TransferRequest
from switch.testing import start_test_server

# A silent payee must not time out while a test resends: the payment stays in flight
# until the wallet answers (the hub's own expiry is 30 s).
IN_FLIGHT_RULES = SchemeRules(payee_timeout_ms=30_000)
MISSING = "+254711111111"  # well-formed, held by nobody


@pytest.fixture
async def hub(tmp_path):
    hub = await start_hub(str(tmp_path), rules=IN_FLIGHT_RULES)
    yield hub
    await hub.close()


def positions(hub) -> dict[str, int]:
    found = hub.server.positions()
    return {name: found[hub.id(name)]["KES"]["credits_posted"]
            - found[hub.id(name)]["KES"]["debits_posted"]
            for name in ("bank", "walleta", "walletb")}


def ledger_state(hub) -> tuple:
    found = hub.server.positions()
    return (hub.server.core.transfers_retained, tuple(sorted(
        (pid, tuple(sorted(accounts["KES"].items()))) for pid, accounts in found.items())),
        len(hub.connector.requests))


def parameters(error: dict) -> dict[str, str]:
    return {item["key"]: item["value"] for item in error["errorParameters"]}


async def until(condition, what: str, timeout_s: float = 10.0) -> None:
    """Wait for a condition the switch brings about (bounded; fails saying what)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        await asyncio.sleep(0.02)


# -- the account-name lookup once the buckets run dry ------------------------------------

SMALL_USER_BUCKET = {"capacity_tokens": 21, "refill_tokens_per_minute": 1,
                     "hit_cost_tokens": 1, "miss_cost_tokens": 20, "refund_tokens": 1}
SMALL_PARTICIPANT_BUCKET = {"capacity_tokens": 30, "refill_tokens_per_minute": 1,
                            "hit_cost_tokens": 1, "miss_cost_tokens": 10, "refund_tokens": 1}


def throttled_view(status: int, answer: dict, headers: dict) -> tuple:
    """What a throttled answer tells the caller, less the clock (the time and the wait in
    milliseconds shrink as the bucket refills)."""
    return (status, answer["errorCategory"], answer["errorCode"],
            re.sub(r"[0-9]+", "N", answer.get("errordescription", "")),
            tuple(sorted(parameters(answer).items())), tuple(sorted(headers)))


@pytest.mark.parametrize("bucket", ["user", "participant"])
async def test_a_dry_bucket_answers_the_same_rate_limit_error_for_any_account(
        tmp_path, monkeypatch, bucket):
    # start_hub takes no server settings: give its test server a directory whose user or
    # participant bucket is small. Everything else is the real switch and directory.
    directory = ({"user_bucket": SMALL_USER_BUCKET} if bucket == "user"
                 else {"participant_buckets": {"SIM": SMALL_PARTICIPANT_BUCKET}})
    monkeypatch.setattr(mm_helpers, "start_test_server",
                        functools.partial(start_test_server, directory=directory))
    hub = await start_hub(str(tmp_path))
    try:
        user = {"x-ponte-user-ref": "user-1"}
        existing = f"/accounts/msisdn/{msisdn('walletb', 1)}/accountname"
        missing = f"/accounts/msisdn/{MISSING}/accountname"
        status, found, _ = await hub.call("GET", existing, headers=user)
        assert status == 200, found
        masked = found["name"]["fullName"]
        assert masked and masked != "Wallet Customer b1"
        status, answer, _ = await hub.call("GET", missing, headers=user)
        assert (status, answer["errorCode"]) == (404, "identifierError")
        # Misses cost far more than hits: a few more empty the bucket.
        for _ in range(10):
            status, answer, _ = await hub.call("GET", missing, headers=user)
            if status != 404:
                break
        assert status == 400, answer

        # Dry: the same answer for an account that does not exist and one that does.
        answers = [await hub.call("GET", path, headers=user) for path in (missing, existing)]
        for status, answer, headers in answers:
            assert status == 400
            gsma_spec.validate_schema("errorObject", answer)
            assert (answer["errorCategory"], answer["errorCode"]) == ("businessRule",
                                                                      "rateLimitError")
            assert parameters(answer) == {"ponteResult": "3170",
                                          "ponteResultName": "LOOKUP_RATE_LIMITED"}
            assert int(headers["retry-after"]) >= 1
            assert "name" not in answer
            text = json.dumps(answer)
            for secret in (masked, "Wallet Customer", "b-cust-1"):
                assert secret not in text, (secret, text)
        assert throttled_view(*answers[0]) == throttled_view(*answers[1])

        # Another end user of the same wallet: its own bucket is full, the wallet's is not.
        status, other, _ = await hub.call("GET", existing,
                                          headers={"x-ponte-user-ref": "user-2"})
        if bucket == "user":
            assert (status, other["name"]["fullName"]) == (200, masked)
        else:
            assert (status, other["errorCode"]) == (400, "rateLimitError")
    finally:
        await hub.close()


# -- Ponte -> wallet: an account the payee wallet does not know ---------------------------

async def test_an_account_the_payee_wallet_does_not_know_rejects_the_transfer(hub):
    payee = hub.wallets["walletb"]
    # The directory still routes b2's alias to account b-cust-2; the wallet closed it.
    payee.customers.discard("b-cust-2")
    before = positions(hub)
    correlation_id = new_id()
    path = "/transactions/type/transfer"
    status, state, _ = await hub.call("POST", path, payment(msisdn("walletb", 2), "9"),
                                      correlation_id=correlation_id)
    assert status == 202, state
    failed = await hub.wallets["walleta"].callback_for(correlation_id)
    gsma_spec.validate_callback("POST", path, json.dumps(failed).encode())
    gsma_spec.validate_schema("errorObject", failed)
    assert (failed["errorCategory"], failed["errorCode"]) == ("businessRule", "requestDeclined")
    assert parameters(failed) == {"ponteResult": "5104", "ponteResultName": "PAYEE_REJECTED"}
    assert "account not found" in failed["errordescription"]
    status, polled, _ = await hub.call("GET", f"/requeststates/{state['serverCorrelationId']}")
    assert status == 200 and polled["status"] == "failed"
    assert polled["error"]["errorCode"] == "requestDeclined"
    status, transaction, _ = await hub.call("GET", f"/transactions/{state['objectReference']}")
    assert status == 200 and transaction["transactionStatus"] == "rejected"

    # A bank paying the same alias over the stream meets the same answer.
    outcome = await hub.bank.transfer(TransferRequest(
        transfer_id="bank-unknown-1", payee=Party(alias_type="MSISDN",
                                                  alias_value=msisdn("walletb", 2)),
        amount_minor=300, currency="KES", expires_at_ns=time.time_ns() + 20 * 10**9))
    assert (outcome.state.name, outcome.result.name) == ("REJECTED", "PAYEE_REJECTED")

    # The wallet was only asked the name, never to credit; no money moved.
    asked = [(method, p) for method, p, _, _ in payee.received]
    assert asked == [("GET", "/accounts/accountid/b-cust-2/accountname")] * 2
    assert not payee.credits
    assert positions(hub) == before


# -- inttransfer and disbursement ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["inttransfer", "disbursement"])
async def test_inttransfer_and_disbursement_pay_like_a_transfer(hub, kind):
    before = positions(hub)
    correlation_id = new_id()
    path = f"/transactions/type/{kind}"
    body = payment(msisdn("walletb", 1), "12.5")
    if kind == "inttransfer":
        body["internationalTransferInformation"] = {
            "originCountry": "GB", "receivingCountry": "KE",
            "remittancePurpose": "family support"}
    else:
        body["debitParty"] = [{"key": "accountid", "value": "a-payroll"}]
    callback_url = f"{hub.wallets['walleta'].url}/cb/{correlation_id}"
    gsma_spec.validate_request("POST", path, {"x-correlationid": correlation_id,
                                              "x-callback-url": callback_url},
                               json.dumps(body).encode())
    status, state, _ = await hub.call("POST", path, body, correlation_id=correlation_id)
    assert status == 202, state
    done = await hub.wallets["walleta"].callback_for(correlation_id)
    gsma_spec.validate_callback("POST", path, json.dumps(done).encode())
    assert (done["transactionStatus"], done["type"], done["amount"]) == ("completed", kind,
                                                                          "12.5")
    status, transaction, _ = await hub.call("GET", f"/transactions/{state['objectReference']}")
    assert status == 200 and transaction["type"] == kind
    assert transaction["transactionStatus"] == "completed"
    # The payee wallet is credited with its own configured type; nothing international
    # (or otherwise unread) is forwarded to it.
    credits = [(p, sent) for method, p, _, sent in hub.wallets["walletb"].received
               if method == "POST"]
    assert [p for p, _ in credits] == ["/transactions/type/transfer"]
    credit = json.loads(credits[0][1])
    assert credit["amount"] == "12.5"
    assert b"originCountry" not in credits[0][1] and b"a-payroll" not in credits[0][1]
    after = positions(hub)
    assert after["walleta"] == before["walleta"] - 1250
    assert after["walletb"] == before["walletb"] + 1250


# -- X-CorrelationID while the first request is in flight ---------------------------------

async def test_a_resend_in_flight_is_the_same_state_and_a_changed_body_is_refused(hub):
    payee = hub.wallets["walletb"]
    payee.mode = "silent"  # takes the credit and answers nothing yet: the payment waits
    correlation_id = new_id()
    path = "/transactions/type/transfer"
    body = payment(msisdn("walletb", 1), "7")
    before = positions(hub)
    status, first, _ = await hub.call("POST", path, body, correlation_id=correlation_id)
    assert status == 202 and first["status"] == "pending", first
    await until(lambda: payee.credits, "the payee wallet never got the credit")
    held = ledger_state(hub)

    status, again, _ = await hub.call("POST", path, body, correlation_id=correlation_id)
    assert (status, again) == (202, first)
    for changed_path, changed in (
            (path, {**body, "amount": "8"}),
            (path, {**body, "creditParty": [{"key": "msisdn", "value": msisdn("walletb", 2)}]}),
            ("/transactions/type/merchantpay", body)):
        status, refused, _ = await hub.call("POST", changed_path, changed,
                                            correlation_id=correlation_id)
        assert status == 400, (changed_path, refused)
        assert (refused["errorCategory"], refused["errorCode"]) == ("businessRule",
                                                                    "duplicateRequest")
        assert parameters(refused)["ponteResultName"] == "EXISTS_WITH_DIFFERENT_BODY"
    status, polled, _ = await hub.call("GET", f"/requeststates/{first['serverCorrelationId']}")
    assert (status, polled) == (200, first)
    assert ledger_state(hub) == held
    posts = [entry for entry in payee.received if entry[0] == "POST"]
    assert len(posts) == 1  # one credit asked of the payee, for the first body

    # The wallet completes that credit: the payment is the first body's, told once.
    credit = next(iter(payee.credits.values()))
    await payee._complete(posts[0][2]["x-callback-url"], credit, posts[0][2])
    done = await hub.wallets["walleta"].callback_for(correlation_id)
    assert (done["transactionStatus"], done["amount"]) == ("completed", "7")
    assert len(hub.wallets["walleta"].callbacks[correlation_id]) == 1
    after = positions(hub)
    assert after["walletb"] == before["walletb"] + 700
    assert after["walleta"] == before["walleta"] - 700


async def test_pipelined_resends_of_a_payment_before_its_202(hub):
    """Sent in one write, so the second arrives before the first is journaled."""
    await hub.call("GET", "/heartbeat")  # one open connection: both requests go on it
    before = positions(hub)
    path = "/transactions/type/transfer"
    body = payment(msisdn("walletb", 1), "5")
    same_id, changed_id = new_id(), new_id()
    (s1, a1, _), (s2, a2, _), (s3, a3, _), (s4, a4, _) = await asyncio.gather(
        hub.call("POST", path, body, correlation_id=same_id),
        hub.call("POST", path, body, correlation_id=same_id),
        hub.call("POST", path, body, correlation_id=changed_id),
        hub.call("POST", path, {**body, "amount": "6"}, correlation_id=changed_id))
    assert (s1, s2) == (202, 202) and a1["serverCorrelationId"] == a2["serverCorrelationId"]
    assert s3 == 202, a3
    assert (s4, a4["errorCode"]) == (400, "duplicateRequest")
    for correlation_id in (same_id, changed_id):
        done = await hub.wallets["walleta"].callback_for(correlation_id)
        assert (done["transactionStatus"], done["amount"]) == ("completed", "5")
    assert positions(hub)["walletb"] == before["walletb"] + 1000


async def test_pipelined_reversals_with_one_id_and_two_amounts(hub):
    """A reversal is checked against the original (a status query) before it is
    submitted: a resend arriving in that window must still be refused, not paid twice
    nor told a wrong outcome."""
    correlation_id = new_id()
    await hub.call("POST", "/transactions/type/transfer", payment(msisdn("walletb", 1), "10"),
                   correlation_id=correlation_id)
    paid = await hub.wallets["walleta"].callback_for(correlation_id)
    reference = paid["transactionReference"]
    before = positions(hub)
    await hub.call("GET", "/heartbeat", wallet="walletb")
    path = f"/transactions/{reference}/reversals"
    reversal_id = new_id()
    (s1, a1, _), (s2, a2, _) = await asyncio.gather(
        hub.call("POST", path, {"type": "reversal", "amount": "4", "currency": "KES"},
                 wallet="walletb", correlation_id=reversal_id),
        hub.call("POST", path, {"type": "reversal", "amount": "6", "currency": "KES"},
                 wallet="walletb", correlation_id=reversal_id))
    assert s1 == 202, a1
    assert (s2, a2["errorCode"]) == (400, "duplicateRequest")
    told = await hub.wallets["walletb"].callback_for(reversal_id)
    gsma_spec.validate_callback("POST", path, json.dumps(told).encode())
    assert (told.get("transactionStatus"), told.get("amount")) == ("completed", "4"), told
    await until(lambda: positions(hub)["walleta"] != before["walleta"], "no reversal posted")
    assert positions(hub)["walleta"] == before["walleta"] + 400
    assert len(hub.wallets["walletb"].callbacks[reversal_id]) == 1
