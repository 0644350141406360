"""The SDK's StreamClient against a real switch: retries after SERVER_BUSY keep the
transfer id (exactly one payment each), request-to-pay end to end, pipelining."""

from __future__ import annotations

import asyncio
import time

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import (
    CreditRequest,
    Party,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import RequestToPayState, TransferState
from switch.core.messages import AliasRegistration
from switch.testing import onboard, start_test_server

PAYEE_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
PAYER_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000002")


async def register(client: StreamClient, alias: Party, account_ref: str, owner: str) -> None:
    answer = await client.register_aliases([AliasRegistration(
        alias_type=alias.alias_type, alias_value=alias.alias_value, account_ref=account_ref,
        owner_national_id=owner, display_name="Jane Doe")])
    assert answer.registered == 1


async def test_retries_after_server_busy_keep_the_transfer_id(tmp_path):
    server = await start_test_server(str(tmp_path), inbound_queue_max=3)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        port = server.stream_port
        payee = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["bank_b"][1],
                                           on_credit_request=lambda cr: Decision(True))
        await register(payee, PAYEE_ALIAS, "acc-1", "1234567890")
        payer = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["bank_a"][1])
        count = 40
        futures = [payer.submit_transfer(TransferRequest(
            transfer_id=f"r-{i}", payee=PAYEE_ALIAS, amount_minor=10, currency="KES",
            expires_at_ns=time.time_ns() + 30 * 10**9, payer_user_ref="u1"))
            for i in range(count)]
        outcomes = await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert all(type(o) is TransferOutcome and o.state is TransferState.COMMITTED
                   for o in outcomes)
        assert sorted(o.transfer_id for o in outcomes) == sorted(f"r-{i}" for i in range(count))
        # The queue of 3 refused most of the 40 at first: they were retried, not lost.
        assert server.metrics.inbound_refused_total > 0
        payer_id = participants["bank_a"][0]
        assert server.positions()[payer_id]["KES"]["debits_posted"] == 10 * count
        # Nothing is remembered per transfer once it is final, on either side.
        for _ in range(100):
            if payer.tracked_entries == 0 and payee.tracked_entries == 0:
                break
            await asyncio.sleep(0.01)
        assert (payer.tracked_entries, payee.tracked_entries) == (0, 0)
        await payer.close()
        await payee.close()
    finally:
        await server.stop(drain_s=0)


async def test_request_to_pay_end_to_end(tmp_path):
    server = await start_test_server(str(tmp_path))
    try:
        participants = await onboard(server, ["shop_bank", "customer_bank"])
        port = server.stream_port
        notices: list = []
        credits: list = []
        payer = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["customer_bank"][1],
                                           on_push=notices.append)
        await register(payer, PAYER_ALIAS, "cust-1", "1234567891")

        def on_credit(credit_request: CreditRequest):
            credits.append(credit_request)
            return Decision(True)

        payee = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["shop_bank"][1],
                                           on_credit_request=on_credit)
        first = await asyncio.wait_for(payee.request_to_pay(RequestToPay(
            request_id="invoice-1", payer=PAYER_ALIAS, amount_minor=4_200, currency="KES",
            expires_at_ns=time.time_ns() + 30 * 10**9, payee_account_ref="till-9")), 10)
        assert type(first) is RequestToPayOutcome and first.state is RequestToPayState.OPEN
        for _ in range(200):
            if any(type(m) is RequestToPayNotice for m in notices):
                break
            await asyncio.sleep(0.01)
        (notice,) = [m for m in notices if type(m) is RequestToPayNotice]
        assert notice.amount_minor == 4_200 and notice.payer_account_ref == "cust-1"
        payer.decide_request_to_pay(RequestToPayDecision(
            payee_participant_id=notice.payee_participant_id, request_id="invoice-1",
            approved=True, transfer_id="pay-invoice-1",
            expires_at_ns=time.time_ns() + 30 * 10**9, payer_account_ref="cust-1"))
        for _ in range(300):
            if any(type(m) is TransferOutcome and m.state is TransferState.COMMITTED
                   for m in notices):
                break
            await asyncio.sleep(0.01)
        (outcome,) = [m for m in notices if type(m) is TransferOutcome]
        assert outcome.transfer_id == "pay-invoice-1" and outcome.amount_minor == 4_200
        assert [c.request_to_pay_id for c in credits] == ["invoice-1"]
        assert credits[0].payee_account_ref == "till-9"
        shop_id = participants["shop_bank"][0]
        assert server.positions()[shop_id]["KES"]["credits_posted"] == 10**12 + 4_200
        await payer.close()
        await payee.close()
    finally:
        await server.stop(drain_s=0)


async def test_a_message_that_cannot_be_sent_is_refused_at_once_and_the_connection_lives(
        tmp_path):
    """An amount past 2**64 cannot even be encoded, an amount of 0 breaks its type: the SDK
    says so at once with a typed error, writes nothing (no empty frame the server would
    close the connection over), and the next transfer on the same connection commits."""
    from connectors.sdk import InvalidRequest
    from switch.core.results import Result

    server = await start_test_server(str(tmp_path))
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        port = server.stream_port
        payee = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["bank_b"][1],
                                           on_credit_request=lambda cr: Decision(True))
        await register(payee, PAYEE_ALIAS, "acc-1", "1234567890")
        payer = await StreamClient.connect("127.0.0.1", port,
                                           api_key=participants["bank_a"][1])

        def request(transfer_id: str, amount_minor: int) -> TransferRequest:
            return TransferRequest(transfer_id=transfer_id, payee=PAYEE_ALIAS,
                                   amount_minor=amount_minor, currency="KES",
                                   expires_at_ns=time.time_ns() + 30 * 10**9,
                                   payer_user_ref="u1")

        for bad in (2**64, 2**70, 0):
            try:
                payer.submit_transfer(request(f"bad-{bad}", bad))
            except InvalidRequest as error:
                assert error.result is Result.VALIDATION_ERROR
                assert "amount_minor" in error.detail or "serialize" in error.detail
            else:
                raise AssertionError(f"amount {bad} was accepted")
        assert payer.pending_transfers == 0 and payer.tracked_entries == 0
        try:
            await payer.status(participants["bank_a"][0], "x" * 300)  # id too long
        except InvalidRequest as error:
            assert error.result is Result.VALIDATION_ERROR
        else:
            raise AssertionError("an over-long id was sent")
        outcome = await payer.transfer(request("good-1", 700), timeout_s=10)
        assert type(outcome) is TransferOutcome and outcome.state is TransferState.COMMITTED
        assert payer.protocol_error is None and payer.reconnects == 0
        assert server.stream_server.protocol_errors == {}
        payer_id = participants["bank_a"][0]
        assert server.positions()[payer_id]["KES"]["debits_posted"] == 700
        await payer.close()
        await payee.close()
    finally:
        await server.stop(drain_s=0)


async def test_the_sdk_does_not_reconnect_a_revoked_session(tmp_path):
    """SESSION_REVOKED is final for those credentials: the SDK fails what it waits for with
    an SdkError naming it instead of reconnecting in a loop with a revoked key."""
    import pytest

    from connectors.sdk import RetryPolicy, SdkError
    from connectors.stream.protocol import StreamError

    server = await start_test_server(str(tmp_path))
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        payer_id, key = participants["bank_a"]
        payer = await StreamClient.connect(
            "127.0.0.1", server.stream_port, api_key=key,
            retry=RetryPolicy(backoff_initial_s=0.01, backoff_max_s=0.02))
        waiting = payer.submit_transfer(TransferRequest(
            transfer_id="t-revoked", payee=PAYEE_ALIAS, amount_minor=10, currency="KES",
            expires_at_ns=time.time_ns() + 30 * 10**9, payer_user_ref="u1"))
        await server.credentials.issue_key(payer_id, revoke_others=True)
        with pytest.raises(SdkError, match="SESSION_REVOKED"):
            await asyncio.wait_for(waiting, 5)
        assert payer.protocol_error.error is StreamError.SESSION_REVOKED
        assert not payer.connected and payer.reconnects == 0
        assert server.stream_server.protocol_errors.get("AUTHENTICATION_FAILED", 0) == 0
        await payer.close()
    finally:
        await server.stop(drain_s=0)
