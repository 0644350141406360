"""The HTTP connector against a real switch: auth, a full payment over callbacks on both
sides, status, idempotent resends, typed refusals that change nothing, JWS, callback retries
against a failing participant endpoint, and the served OpenAPI document."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.http import limits
from connectors.http.app import ROUTES, HttpConnector, HttpConnectorConfig
from connectors.http.errors import ErrorBody
from connectors.http.jws import COMPACT_HEADER, Signer
from connectors.http.openapi import build_document
from connectors.http.server import HttpServer, Response
from switch.core.messages import (
    CurrencyAdded,
    Outbound,
    Refused,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayOutcome,
    ReturnRequest,
    TransferOutcome,
    TransferRef,
)
from switch.core.results import RequestToPayState, Result, SettlementModel, TransferState
from switch.directory.config import DirectoryConfig
from switch.app import start_switch
from switch.server.config import ServerConfig

from http_helpers import (
    CURRENCY,
    FUNDING_MINOR,
    PAYEE_ALIAS,
    PAYER_ALIAS,
    Recorder,
    eventually,
    transfer,
)

decode_error = msgspec.json.Decoder(ErrorBody).decode


async def raw(switch, method: bytes, path: bytes, body: bytes | None = None,
              headers: tuple = ()) -> tuple[int, bytes]:
    """One request on a fresh connection with exactly the given headers (no SDK help)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", switch.http.port)
    lines = [method + b" " + path + b" HTTP/1.1", b"host: test", b"connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body is not None:
        lines.append(b"content-length: %d" % len(body))
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + (body or b""))
    response = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, answer = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), answer


def bearer(client) -> tuple:
    return ((b"authorization", b"Bearer " + client.api_key.encode()),)


async def assert_not_recorded(payer, payee_handler, transfer_id: str) -> None:
    answer = await payer.status(1, transfer_id)
    assert type(answer) is Refused
    assert answer.result is Result.TRANSFER_NOT_FOUND
    assert all(c.transfer_id != transfer_id for c in payee_handler.credit_requests)


# -- authentication --------------------------------------------------------------------


async def test_requests_without_or_with_a_wrong_key_are_refused_401(switch, payer_and_payee):
    payer, _, _, payee_handler = payer_and_payee
    body = msgspec.json.encode(transfer("t-auth"))
    json_type = ((b"content-type", b"application/json"),)
    for headers in ((), ((b"authorization", b"Bearer not-a-real-key-000000"),),
                    ((b"x-api-key", b"ponte_000000000000_wrong"),),
                    ((b"authorization", b"Basic " + payer.api_key.encode()),)):
        status, answer = await raw(switch, b"POST", b"/transfers", body, headers + json_type)
        assert status == 401
        assert decode_error(answer).name == "VALIDATION_ERROR"
    status, _ = await raw(switch, b"GET", b"/transfers/1/t-auth")
    assert status == 401
    await assert_not_recorded(payer, payee_handler, "t-auth")


async def test_x_api_key_header_authenticates(switch, payer_and_payee):
    payer, _, _, _ = payer_and_payee
    status, body = await raw(switch, b"POST", b"/transfers",
                             msgspec.json.encode(transfer("t-xkey")),
                             ((b"x-api-key", payer.api_key.encode()),
                              (b"content-type", b"application/json")))
    assert status == 202, body


# -- a payment ---------------------------------------------------------------------------


async def test_full_payment_over_http_callbacks_on_both_sides(switch, payer_and_payee):
    payer, payer_handler, payee, payee_handler = payer_and_payee
    resolved = await payer.resolve(PAYEE_ALIAS.alias_type, PAYEE_ALIAS.alias_value,
                                   payer_user_ref="user-1")
    assert resolved.payee_participant_id == 2
    assert resolved.display_name_masked == "M*** S***"
    accepted = await payer.send_transfer(transfer("t-1", amount_minor=2_500))
    assert accepted.status_path == "/transfers/1/t-1"
    await eventually(lambda: payer_handler.outcomes and payee_handler.outcomes)
    (credit,) = payee_handler.credit_requests
    assert (credit.payer_participant_id, credit.transfer_id, credit.amount_minor,
            credit.payee_account_ref) == (1, "t-1", 2_500, "payee-account-1")
    for handler in (payer_handler, payee_handler):
        (outcome,) = handler.outcomes
        assert (outcome.state, outcome.result, outcome.amount_minor) == (
            TransferState.COMMITTED, Result.OK, 2_500)
    status = await payee.status(1, "t-1")  # either party may ask
    assert status.state is TransferState.COMMITTED
    assert switch.position(1)["debits_posted"] == 2_500
    assert switch.position(2)["credits_posted"] == FUNDING_MINOR + 2_500
    # The future-returning call resolves with the final outcome.
    final = await payer.transfer(transfer("t-2", amount_minor=500), timeout_s=10)
    assert (final.transfer_id, final.state) == ("t-2", TransferState.COMMITTED)
    assert payer.pending_transfers == 0


async def test_payee_rejection_voids_the_transfer(switch, payer_and_payee):
    payer, payer_handler, _, payee_handler = payer_and_payee
    payee_handler.decision = (False, "account closed")
    await payer.send_transfer(transfer("t-rej"))
    await eventually(lambda: payer_handler.outcomes)
    (outcome,) = payer_handler.outcomes
    assert (outcome.state, outcome.result) == (TransferState.REJECTED, Result.PAYEE_REJECTED)
    assert switch.position(1)["debits_posted"] == 0
    assert switch.position(1)["debits_pending"] == 0


async def test_status_of_an_unknown_transfer_is_404(switch, payer_and_payee):
    payer, _, _, _ = payer_and_payee
    status, body = await raw(switch, b"GET", b"/transfers/1/never-sent", headers=bearer(payer))
    assert (status, decode_error(body).name) == (404, "TRANSFER_NOT_FOUND")
    answer = await payer.status(1, "never-sent")  # the SDK gives it as a Refused
    assert (type(answer), answer.result) == (Refused, Result.TRANSFER_NOT_FOUND)


async def test_duplicate_post_is_harmless(switch, payer_and_payee):
    payer, payer_handler, _, payee_handler = payer_and_payee
    request = transfer("t-dup", amount_minor=700)
    await payer.send_transfer(request)
    await eventually(lambda: payer_handler.outcomes)
    again = await payer.send_transfer(request)  # a resend: answered with the first outcome
    assert again.id == "t-dup"
    await eventually(lambda: len(payer_handler.outcomes) == 2)
    assert payer_handler.outcomes[0] == payer_handler.outcomes[1]
    assert len(payee_handler.credit_requests) == 1
    assert switch.position(1)["debits_posted"] == 700
    # Same id, different amount: refused, the first transfer stands unchanged.
    await payer.send_transfer(transfer("t-dup", amount_minor=999))
    await eventually(lambda: payer_handler.refusals)
    assert payer_handler.refusals[0].result is Result.EXISTS_WITH_DIFFERENT_AMOUNT
    assert switch.position(1)["debits_posted"] == 700


async def test_return_and_request_to_pay_over_http(switch, payer_and_payee):
    payer, payer_handler, payee, payee_handler = payer_and_payee
    assert (await payer.register_alias(
        alias_type=PAYER_ALIAS.alias_type, alias_value=PAYER_ALIAS.alias_value,
        account_ref="payer-account-1", owner_national_id="11144477735",
        display_name="Joao Souza")).result is Result.OK
    await payer.send_transfer(transfer("t-ret", amount_minor=1_000))
    await eventually(lambda: payee_handler.outcomes)
    returned = await payee.transfer(ReturnRequest(
        transfer_id="r-1", original=TransferRef(payer_participant_id=1, transfer_id="t-ret"),
        amount_minor=400, expires_at_ns=time.time_ns() + 60 * 10**9, reason="refund"))
    assert (returned.state, returned.amount_minor) == (TransferState.COMMITTED, 400)
    # Request-to-pay: the payee asks, the payer approves, it becomes a transfer.
    first = await payee.request_to_pay(RequestToPay(
        request_id="rtp-1", payer=PAYER_ALIAS, amount_minor=300, currency="BRL",
        expires_at_ns=time.time_ns() + 60 * 10**9))
    assert (type(first), first.state) == (RequestToPayOutcome, RequestToPayState.OPEN)
    await eventually(lambda: payer_handler.notices)
    notice = payer_handler.notices[0]
    assert (notice.request_id, notice.amount_minor) == ("rtp-1", 300)
    payer.decide_request_to_pay(RequestToPayDecision(
        payee_participant_id=2, request_id="rtp-1", approved=True, transfer_id="t-rtp",
        expires_at_ns=time.time_ns() + 60 * 10**9))
    await eventually(lambda: payee_handler.rtp_outcomes and any(
        o.transfer_id == "t-rtp" for o in payer_handler.outcomes))
    assert payee_handler.rtp_outcomes[-1].state is RequestToPayState.APPROVED
    status = await payer.status(1, "t-rtp")
    assert status.state is TransferState.COMMITTED


# -- bad input: typed error, nothing written ---------------------------------------------


@pytest.mark.parametrize("body, status, name, detail", [
    (b'{"transfer_id": "t-bad", ', 400, "MALFORMED_SYNTAX", "truncated"),
    (b'[1, 2]', 400, "VALIDATION_ERROR", "Expected `object`"),
    (b'{"transfer_id":"t-bad","payee":{"alias_type":"MSISDN","alias_value":"+5511987650001"},'
     b'"amount_minor":100,"currency":"BRL","expires_at_ns":1,"colour":"red"}',
     400, "VALIDATION_ERROR", "unknown field `colour`"),
    (b'{"transfer_id":"t-bad","payee":{"alias_type":"MSISDN","alias_value":"+5511987650001"},'
     b'"amount_minor":-5,"currency":"BRL","expires_at_ns":1}',
     400, "VALIDATION_ERROR", "$.amount_minor"),
    (b'{"transfer_id":"t-bad","payee":{"alias_type":"MSISDN","alias_value":"+5511987650001"},'
     b'"amount_minor":1.5,"currency":"BRL","expires_at_ns":1}',
     400, "VALIDATION_ERROR", "$.amount_minor"),
    (b'{"transfer_id":"t-bad","payee":null,"amount_minor":5,"currency":"BRL",'
     b'"expires_at_ns":1}', 400, "VALIDATION_ERROR", "$.payee"),
    # Only an approval links a transfer to a request-to-pay: a participant cannot.
    (b'{"transfer_id":"t-bad","payee":{"alias_type":"MSISDN","alias_value":"+5511987650001"},'
     b'"amount_minor":100,"currency":"BRL","expires_at_ns":1,"request_to_pay_id":"rtp-1"}',
     400, "VALIDATION_ERROR", "request_to_pay_id"),
])
async def test_bad_bodies_get_typed_errors_naming_the_field(switch, payer_and_payee, body,
                                                            status, name, detail):
    payer, _, _, payee_handler = payer_and_payee
    got_status, answer = await raw(switch, b"POST", b"/transfers", body,
                                   bearer(payer) + ((b"content-type", b"application/json"),))
    error = decode_error(answer)
    assert (got_status, error.name) == (status, name)
    assert detail in error.detail
    await assert_not_recorded(payer, payee_handler, "t-bad")


async def test_wrong_content_type_is_415_and_writes_nothing(switch, payer_and_payee):
    payer, _, _, payee_handler = payer_and_payee
    status, answer = await raw(switch, b"POST", b"/transfers",
                               msgspec.json.encode(transfer("t-ct")),
                               bearer(payer) + ((b"content-type", b"text/plain"),))
    assert status == 415
    assert decode_error(answer).result == int(Result.VALIDATION_ERROR)
    await assert_not_recorded(payer, payee_handler, "t-ct")


async def test_over_long_body_and_header_are_refused_and_write_nothing(switch, payer_and_payee):
    payer, _, _, payee_handler = payer_and_payee
    padded = msgspec.json.encode(transfer("t-big", purpose="")).replace(
        b'"transfer_id"', b' ' * limits.REQUEST_BODY_BYTES_MAX + b'"transfer_id"')
    status, _ = await raw(switch, b"POST", b"/transfers", padded,
                          bearer(payer) + ((b"content-type", b"application/json"),))
    assert status == 413
    status, _ = await raw(switch, b"POST", b"/transfers", msgspec.json.encode(transfer("t-big")),
                          bearer(payer) + ((b"content-type", b"application/json"),
                                           (b"x-pad", b"p" * limits.REQUEST_HEADER_BYTES_MAX)))
    assert status == 431
    await assert_not_recorded(payer, payee_handler, "t-big")


async def test_bad_path_ids_are_refused(switch, payer_and_payee):
    payer, _, _, _ = payer_and_payee
    for path, result in ((b"/transfers/0/t-1", Result.VALIDATION_ERROR),
                         (b"/transfers/abc/t-1", Result.VALIDATION_ERROR),
                         (b"/transfers/1/" + b"x" * 65, Result.ID_INVALID),
                         (b"/transfers/1/-leading-dash", Result.ID_INVALID),
                         (b"/transfers/1/t-1%0A", Result.ID_INVALID),  # `$` allows a "\n"
                         (b"/transfers/1/a%2Fb", Result.ID_INVALID)):
        status, answer = await raw(switch, b"GET", path, headers=bearer(payer))
        assert status == 400, path
        assert decode_error(answer).result == int(result)


async def test_an_approval_must_name_a_transfer_id_of_the_id_grammar(switch, payer_and_payee):
    """The transfer an approval creates is named in the body: it must be an `Id` like every
    other transfer id (it becomes a status path) and present, or the decision is refused at
    the door."""
    payer, _, _, payee_handler = payer_and_payee
    json_type = ((b"content-type", b"application/json"),)
    for transfer_id in ("a/b", "a b", "t-1\n", "caf\u00e9", "x" * 65, ""):
        body = msgspec.json.encode({"approved": True, "transfer_id": transfer_id,
                                    "expires_at_ns": time.time_ns() + 60 * 10**9})
        status, answer = await raw(switch, b"PUT", b"/requests-to-pay/2/rtp-hostile", body,
                                   bearer(payer) + json_type)
        error = decode_error(answer)
        assert (status, error.name) == (400, "VALIDATION_ERROR"), transfer_id
        assert "$.transfer_id" in error.detail


def test_path_ids_use_the_core_id_grammar():
    from connectors.http.app import _path_id
    from switch.core.messages import id_valid

    for text in ("t-1", "x" * 64, "x" * 65, "", "t-1\n", "a b", "-a", "caf\u00e9", "a:b.c_d"):
        raw_segment = text.encode("utf-8")
        assert (_path_id(raw_segment) == text) is id_valid(text), repr(text)


async def test_unknown_route_and_wrong_method(switch, payer_and_payee):
    payer, _, _, _ = payer_and_payee
    assert (await raw(switch, b"GET", b"/nowhere", headers=bearer(payer)))[0] == 404
    assert (await raw(switch, b"DELETE", b"/transfers", headers=bearer(payer)))[0] == 405


# -- JWS --------------------------------------------------------------------------------


@pytest.fixture
def signer() -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    return Signer(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()), "ES256", kid="payer-1")


async def test_jws_valid_invalid_and_missing_when_required(switch, payer_and_payee, signer):
    payer, payer_handler, _, payee_handler = payer_and_payee
    switch.http.set_participant_key(1, signer.public_key_pem(), signature_required=True)
    json_type = ((b"content-type", b"application/json"),)
    body = msgspec.json.encode(transfer("t-jws"))
    # Missing while required: 401, nothing recorded.
    status, answer = await raw(switch, b"POST", b"/transfers", body, bearer(payer) + json_type)
    assert (status, decode_error(answer).name) == (401, "INVALID_SIGNATURE")
    # Signed over a different body: 401, nothing recorded.
    forged = signer.sign(body.replace(b"1000", b"9999"), method=b"POST", uri=b"/transfers")
    status, answer = await raw(switch, b"POST", b"/transfers", body,
                               bearer(payer) + json_type + ((COMPACT_HEADER, forged),))
    assert (status, decode_error(answer).name) == (401, "INVALID_SIGNATURE")
    await assert_not_recorded(payer, payee_handler, "t-jws")
    # Valid (over the body, bound to the request), in either header form: accepted.
    status, _ = await raw(switch, b"POST", b"/transfers", body, bearer(payer) + json_type + (
        (COMPACT_HEADER, signer.sign(body, method=b"POST", uri=b"/transfers")),))
    assert status == 202
    body2 = msgspec.json.encode(transfer("t-jws-2"))
    status, _ = await raw(switch, b"POST", b"/transfers", body2, bearer(payer) + json_type + (
        (b"fspiop-signature", signer.sign_fspiop(body2, method=b"POST", uri=b"/transfers")),))
    assert status == 202
    await eventually(lambda: len(payer_handler.outcomes) == 2)
    # The SDK signs for you.
    payer.signer = signer
    await payer.send_transfer(transfer("t-jws-3"))
    await eventually(lambda: len(payer_handler.outcomes) == 3)


# -- callbacks ---------------------------------------------------------------------------


async def test_callbacks_are_retried_until_the_participant_recovers(switch):
    """The payee's endpoint fails its first three requests (503), then works: the credit
    request arrives on a retry, the payment commits, the payer hears the outcome."""
    received = []
    decode = msgspec.json.Decoder(Outbound).decode
    answers = []

    def endpoint(request):
        received.append(decode(request.body))
        if len(received) <= 3:
            return Response(503, b"{}")
        message = received[-1]
        if type(message).__name__ == "CreditRequest":
            answers.append(message)
        return Response(200, b"{}")

    flaky = HttpServer(endpoint)
    await flaky.start("127.0.0.1", 0)
    try:
        payer_handler = Recorder()
        payer = await switch.participant(1, payer_handler)
        payee = await switch.participant(2, None, callback_url=f"http://127.0.0.1:{flaky.port}")
        await payee.register_alias(alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value,
                                   account_ref="acc", owner_national_id="52998224725",
                                   display_name="Maria Silva")
        await payer.send_transfer(transfer("t-flaky"))
        await eventually(lambda: answers)
        assert [type(m).__name__ for m in received[:4]] == ["CreditRequest"] * 4
        await payee.answer_credit_request(1, "t-flaky", True)
        await eventually(lambda: payer_handler.outcomes)
        assert payer_handler.outcomes[0].state is TransferState.COMMITTED
        assert switch.http.callbacks.stats.retried_total >= 3
    finally:
        await flaky.close(grace_ms=100)


# -- the document ------------------------------------------------------------------------


async def test_openapi_and_docs_are_served_and_every_route_answers(switch, payer_and_payee):
    payer, _, _, _ = payer_and_payee
    status, body = await raw(switch, b"GET", b"/openapi.json")
    assert status == 200
    assert msgspec.json.decode(body) == msgspec.json.decode(
        msgspec.json.encode(build_document("/")))
    status, page = await raw(switch, b"GET", b"/docs")
    assert status == 200 and b"/transfers/{payer_participant_id}/{transfer_id}" in page
    # Every route of the table is live (its answer is never "no such resource").
    for method, template, _ in ROUTES:
        path = (template.replace("{payer_participant_id}", "1")
                .replace("{payee_participant_id}", "2").replace("{transfer_id}", "x1")
                .replace("{request_id}", "r1").replace("{alias_type}", "MSISDN")
                .replace("{alias_value}", "%2B5511000000009"))
        body = b"{}" if method in ("POST", "PUT") else None
        headers = bearer(payer) + ((b"content-type", b"application/json"),)
        status, answer = await raw(switch, method.encode(), path.encode(), body, headers)
        assert status not in (404, 405) or b"no such resource" not in answer, (method, path)


# -- restart ----------------------------------------------------------------------------


async def test_a_restarted_switch_resends_the_credit_request_over_http(tmp_path):
    """The switch stops while a transfer waits for the payee; the next start replays the
    journal and sends the credit request again to the payee's callback URL."""
    import socket

    from http_helpers import CURRENCY, Recorder, Switch
    from connectors.http.app import HttpConnector, HttpConnectorConfig
    from switch.core.messages import CurrencyAdded
    from switch.core.results import SettlementModel
    from switch.directory.config import DirectoryConfig
    from switch.server.config import ServerConfig
    from switch.app import start_switch

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ServerConfig(data_dir=str(tmp_path), stream_enabled=False, admin_enabled=False,
                          directory=DirectoryConfig(participant_categories={"1": "A"}))

    async def start() -> Switch:
        server = await start_switch(config)
        http = HttpConnector(server.gateway, HttpConnectorConfig(port=port))
        await http.start()
        return Switch(server, http)

    first = await start()
    await first.admin(CurrencyAdded(request_id="currency", currency=CURRENCY, ledger_id=986,
                                    settlement_model=SettlementModel.PREFUNDED_RTGS))
    payer_handler, payee_handler = Recorder(), Recorder(decision=None)  # payee waits
    payer = await first.participant(1, payer_handler)
    payee = await first.participant(2, payee_handler)
    await payee.register_alias(alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value,
                               account_ref="acc", owner_national_id="52998224725",
                               display_name="Maria Silva")
    await payer.send_transfer(transfer("t-restart"))
    await eventually(lambda: payee_handler.credit_requests)
    await first.http.close(grace_ms=200)
    await first.server.stop(drain_s=0)

    second = await start()
    second.clients = first.clients  # same participants, same receivers, same switch port
    try:
        await eventually(lambda: len(payee_handler.credit_requests) == 2)
        assert payee_handler.credit_requests[1].transfer_id == "t-restart"
        await payee.answer_credit_request(1, "t-restart", True)
        await eventually(lambda: payer_handler.outcomes)
        assert payer_handler.outcomes[0].state is TransferState.COMMITTED
    finally:
        for client in first.clients:
            await client.close()
        await second.http.close(grace_ms=200)
        await second.server.stop(drain_s=0.2)


async def test_callbacks_signed_by_the_switch_verify_in_the_sdk(switch, payer_and_payee,
                                                                signer):
    """With a switch key, every callback carries its signature; an SDK holding the right
    public key accepts them, one holding another key refuses them (401, not retried)."""
    from connectors.http.jws import VerifyKey

    payer, payer_handler, payee, payee_handler = payer_and_payee
    switch.http.callbacks.signer = signer
    payer.switch_key = VerifyKey(signer.public_key_pem())
    payee.switch_key = VerifyKey(signer.public_key_pem())
    await payer.send_transfer(transfer("t-signed"))
    await eventually(lambda: payer_handler.outcomes)
    assert payer_handler.outcomes[0].state is TransferState.COMMITTED
    # The payee now trusts another key: the switch's callbacks no longer verify there.
    stranger = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    payee.switch_key = VerifyKey(stranger)
    refused_before = switch.http.callbacks.stats.refused_total
    credits_before = len(payee_handler.credit_requests)
    await payer.send_transfer(transfer("t-signed-2"))
    await eventually(lambda: switch.http.callbacks.stats.refused_total > refused_before)
    assert len(payee_handler.credit_requests) == credits_before


async def test_only_the_payee_can_answer_a_credit_request(switch, payer_and_payee):
    payer, payer_handler, _, payee_handler = payer_and_payee
    payee_handler.decision = None  # the real payee does not answer
    intruder_handler = Recorder()
    intruder = await switch.participant(3, intruder_handler)
    await payer.send_transfer(transfer("t-intrude"))
    await eventually(lambda: payee_handler.credit_requests)
    await intruder.answer_credit_request(1, "t-intrude", True)  # 202: recorded...
    await eventually(lambda: intruder_handler.errors or intruder_handler.refusals)
    # ...that the switch refuses: the transfer still waits for its payee.
    assert (await payer.status(1, "t-intrude")).state is TransferState.FORWARDED
    assert payer_handler.outcomes == []
    assert switch.position(1)["debits_posted"] == 0


async def test_stream_style_options_and_bulk_aliases(switch):
    """The same calls as the stream SDK: on_credit_request returning a Decision, on_push
    seeing every message, register_aliases in bulk with a refused row named by index."""
    from connectors.sdk import Decision
    from switch.core.messages import AliasRegistration

    pushed = []
    payer = await switch.participant(1, Recorder())
    payee = await switch.participant(2, None, on_credit_request=lambda c: Decision(True),
                                     on_push=pushed.append)
    assert payee.participant_id == 2
    answer = await payee.register_aliases([
        AliasRegistration(alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value,
                          account_ref="acc-1", owner_national_id="52998224725",
                          display_name="Maria Silva"),
        AliasRegistration(alias_type="MSISDN", alias_value="not a phone number",
                          account_ref="acc-2", owner_national_id="52998224725",
                          display_name="Maria Silva"),
    ])
    assert (answer.registered, answer.rejected) == (1, 1)
    assert answer.rejections[0][0] == 1  # the second row
    outcome = await payer.transfer(transfer("t-style"), timeout_s=10)
    assert outcome.state is TransferState.COMMITTED
    await eventually(lambda: any(type(m).__name__ == "TransferOutcome" for m in pushed))
    resolved = await payer.resolve("MSISDN", "+5511000000000")
    assert resolved.result is Result.PARTY_NOT_FOUND  # an answer, not an exception


# -- production backends ----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.redis
async def test_payment_over_http_with_postgresql_and_redis(tmp_path, postgres_dsn, redis_url,
                                                           redis_prefix):
    """The same payment with the journal, directory and credentials in PostgreSQL and the
    alias cache and lookup buckets in Redis."""
    from http_helpers import CURRENCY, Switch
    from connectors.http.app import HttpConnector, HttpConnectorConfig
    from switch.core.messages import CurrencyAdded
    from switch.core.results import SettlementModel
    from switch.directory.config import DirectoryConfig
    from switch.server.config import Secret, ServerConfig
    from switch.app import start_switch

    config = ServerConfig(
        data_dir=str(tmp_path), journal="postgres", store="postgres",
        postgres_dsn=Secret(postgres_dsn), redis_url=Secret(redis_url),
        redis_prefix=redis_prefix, stream_enabled=False, admin_enabled=False,
        directory=DirectoryConfig(participant_categories={"1": "A"}))
    server = await start_switch(config)
    http = HttpConnector(server.gateway, HttpConnectorConfig(port=0))
    await http.start()
    running = Switch(server, http)
    try:
        await running.admin(CurrencyAdded(request_id="currency", currency=CURRENCY,
                                          ledger_id=986,
                                          settlement_model=SettlementModel.PREFUNDED_RTGS))
        payer_handler, payee_handler = Recorder(), Recorder()
        payer = await running.participant(1, payer_handler)
        payee = await running.participant(2, payee_handler)
        assert (await payee.register_alias(
            alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="acc",
            owner_national_id="52998224725", display_name="Maria Silva")).result is Result.OK
        outcome = await payer.transfer(transfer("t-pg", amount_minor=1_234), timeout_s=20)
        assert (outcome.state, outcome.amount_minor) == (TransferState.COMMITTED, 1_234)
        await eventually(lambda: payee_handler.outcomes)
        assert (await payee.status(1, "t-pg")).state is TransferState.COMMITTED
        assert running.position(2)["credits_posted"] == FUNDING_MINOR + 1_234
    finally:
        for client in running.clients:
            await client.close()
        await http.close(grace_ms=200)
        await server.stop(drain_s=0.2)


async def test_many_transfers_through_a_tiny_pool_all_complete(switch):
    """More transfers than the pool has room for: the overflow waits its turn (in order,
    without a task each) and every one commits exactly once."""
    payer = await switch.participant(1, Recorder(), connections_max=1,
                                     in_flight_per_connection_max=2)
    payee_handler = Recorder()
    payee = await switch.participant(2, payee_handler, connections_max=1,
                                     in_flight_per_connection_max=2)
    await payee.register_alias(alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value,
                               account_ref="acc", owner_national_id="52998224725",
                               display_name="Maria Silva")
    futures = [payer.submit_transfer(transfer(f"t-many-{n}", amount_minor=10 + n))
               for n in range(120)]
    assert len(payer._backlog) > 0  # most of them had to wait for room
    outcomes = await asyncio.wait_for(asyncio.gather(*futures), 30)
    assert [o.state for o in outcomes] == [TransferState.COMMITTED] * 120
    assert switch.position(1)["debits_posted"] == sum(10 + n for n in range(120))
    assert len(payee_handler.credit_requests) == 120
    assert not payer._backlog and payer.pending_transfers == 0


# -- nesting bombs -----------------------------------------------------------------------


def json_nesting_bomb(size_bytes: int, before_tag: bool) -> bytes:
    """A JSON body that is almost all nesting (`[[[[...]]]]`), bare or as a field placed
    before the `type` tag that a union decoder skips values looking for."""
    depth = (size_bytes - 40) // 2
    nested = b"[" * depth + b"]" * depth
    if not before_tag:
        return nested
    return b'{"x":' + nested + b',"type":"transfer"}'


@pytest.mark.parametrize("before_tag", [False, True])
@pytest.mark.parametrize("method,path", [(b"POST", b"/transfers"), (b"POST", b"/returns"),
                                         (b"POST", b"/requests-to-pay"),
                                         (b"POST", b"/aliases"),
                                         (b"PUT", b"/transfers/1/t-1"),
                                         (b"PUT", b"/requests-to-pay/2/r-1")])
async def test_nesting_bomb_bodies_get_a_typed_400_without_a_traceback(
        switch, payer_and_payee, caplog, method, path, before_tag):
    """Every body route decodes with a bounded depth: a 16 KiB bomb is a typed 400 (the
    decoder stops at the first level that breaks the schema, or at its recursion guard),
    never a 500 or a traceback, and the connector keeps serving."""
    payer, _, _, payee_handler = payer_and_payee
    body = json_nesting_bomb(limits.REQUEST_BODY_BYTES_MAX, before_tag)
    json_type = ((b"content-type", b"application/json"),)
    caplog.clear()
    with caplog.at_level("DEBUG"):
        status, answer = await raw(switch, method, path, body, bearer(payer) + json_type)
    assert status == 400
    assert decode_error(answer).name in ("MALFORMED_SYNTAX", "VALIDATION_ERROR")
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert (await payer.status(1, "t-1")).result is Result.TRANSFER_NOT_FOUND
    assert not payee_handler.credit_requests


async def test_nesting_bomb_callback_is_refused_by_the_sdk_receiver(switch, caplog):
    """The SDK's callback receiver reads the Outbound union (it skips values looking for the
    tag): a bomb posted to it is a 400 with no traceback, and it keeps working."""
    handler = Recorder()
    client = await switch.participant(5, handler)
    host, port = "127.0.0.1", client.receiver.port
    caplog.clear()
    with caplog.at_level("DEBUG"):
        for before_tag in (True, False):
            body = json_nesting_bomb(limits.REQUEST_BODY_BYTES_MAX, before_tag)
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"POST / HTTP/1.1\r\nhost: t\r\nconnection: close\r\n"
                         b"content-type: application/json\r\ncontent-length: %d\r\n\r\n"
                         % len(body) + body)
            response = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    outcome = TransferOutcome(payer_participant_id=1, transfer_id="t-9",
                              state=TransferState.COMMITTED, result=Result.OK,
                              payee_participant_id=5, amount_minor=1, currency=CURRENCY)
    switch.http.callbacks.deliver_to(5, outcome)
    switch.http.callbacks.flush()
    await eventually(lambda: handler.outcomes == [outcome])


# -- connections per address -------------------------------------------------------------


async def test_connections_per_remote_address_are_bounded(tmp_path):
    """One address cannot take every connection slot of the HTTP listener: past the
    per-address bound its next connection gets a typed 503 and is closed, another address
    is still served, and a slot freed is usable again."""
    server = await start_switch(ServerConfig(data_dir=str(tmp_path), stream_enabled=False,
                                             admin_enabled=False))
    http = HttpConnector(server.gateway, HttpConnectorConfig(
        port=0, connections_per_address_max=3))
    await http.start()
    try:
        async def open_from(source_host: str):
            return await asyncio.open_connection("127.0.0.1", http.port,
                                                 local_addr=(source_host, 0))

        async def health(connection) -> bytes:
            reader, writer = connection
            writer.write(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
            return await asyncio.wait_for(reader.read(4096), 5)

        held = [await open_from("127.0.0.1") for _ in range(3)]
        assert (await health(held[0])).startswith(b"HTTP/1.1 200")
        reader, writer = await open_from("127.0.0.1")
        refused = await asyncio.wait_for(reader.read(), 5)  # answered, then closed
        assert refused.startswith(b"HTTP/1.1 503"), refused
        assert decode_error(refused.partition(b"\r\n\r\n")[2]).name == "SERVICE_UNAVAILABLE"
        writer.close()
        assert (await health(await open_from("127.0.0.2"))).startswith(b"HTTP/1.1 200")
        held.pop()[1].close()
        await eventually(lambda: http.server.per_address.get("127.0.0.1", 0) < 3)
        assert (await health(await open_from("127.0.0.1"))).startswith(b"HTTP/1.1 200")
    finally:
        await http.close(grace_ms=100)
        await server.stop(drain_s=0)


# -- JWS: malformed headers and binding to the request -----------------------------------


@pytest.mark.parametrize("header,value", [
    (b"fspiop-signature", '{"protectedHeader": "é", "signature": "ü"}'.encode()),
    (b"fspiop-signature", b'{"protectedHeader": "\xff\xfe", "signature": "abc"}'),
    (b"x-jws-signature", "eyJhbGciOiJFUzI1NiJ9..sïg".encode()),
    (b"x-jws-signature", "é..abc".encode()),
])
async def test_non_ascii_signature_headers_are_a_typed_400_without_a_traceback(
        switch, payer_and_payee, signer, caplog, header, value):
    payer, _, _, payee_handler = payer_and_payee
    switch.http.set_participant_key(1, signer.public_key_pem())
    json_type = ((b"content-type", b"application/json"),)
    body = msgspec.json.encode(transfer("t-ascii"))
    caplog.clear()
    with caplog.at_level("DEBUG"):
        status, answer = await raw(switch, b"POST", b"/transfers", body,
                                   bearer(payer) + json_type + ((header, value),))
    assert (status, decode_error(answer).name) == (400, "INVALID_SIGNATURE")
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    await assert_not_recorded(payer, payee_handler, "t-ascii")


async def test_a_signed_answer_cannot_be_replayed_on_another_transfer(switch, payer_and_payee,
                                                                      signer):
    """The body of a payee's answer is the same for every transfer (`{"accepted":true}`):
    the signature must bind the method and path (FSPIOP-URI, FSPIOP-HTTP-Method in the
    protected header) or a captured answer accepts any transfer."""
    payer, _, payee, payee_handler = payer_and_payee
    switch.http.set_participant_key(2, signer.public_key_pem(), signature_required=True)
    payee_handler.decision = None  # the payee answers by hand below
    for transfer_id in ("t-sig-1", "t-sig-2"):
        await payer.send_transfer(transfer(transfer_id))
    await eventually(lambda: len(payee_handler.credit_requests) == 2)
    json_type = ((b"content-type", b"application/json"),)
    body = b'{"accepted":true}'
    signed = signer.sign(body, method=b"PUT", uri=b"/transfers/1/t-sig-1")
    # Replayed on the other transfer, or with another method: refused, nothing recorded.
    for method, path in ((b"PUT", b"/transfers/1/t-sig-2"), (b"POST", b"/transfers")):
        status, answer = await raw(switch, method, path, body,
                                   bearer(payee) + json_type + ((COMPACT_HEADER, signed),))
        assert (status, decode_error(answer).name) == (401, "INVALID_SIGNATURE"), path
    # A signature over the body alone (no binding) is refused too.
    status, answer = await raw(switch, b"PUT", b"/transfers/1/t-sig-1", body,
                               bearer(payee) + json_type + ((COMPACT_HEADER,
                                                             signer.sign(body)),))
    assert (status, decode_error(answer).name) == (401, "INVALID_SIGNATURE")
    # On the request it was made for it works, in either header form.
    status, _ = await raw(switch, b"PUT", b"/transfers/1/t-sig-1", body,
                          bearer(payee) + json_type + ((COMPACT_HEADER, signed),))
    assert status == 202
    status, _ = await raw(switch, b"PUT", b"/transfers/1/t-sig-2", b'{"accepted":false}',
                          bearer(payee) + json_type + ((b"fspiop-signature", signer.sign_fspiop(
                              b'{"accepted":false}', method=b"PUT",
                              uri=b"/transfers/1/t-sig-2")),))
    assert status == 202
    await eventually(lambda: len(payee_handler.outcomes) == 2)
    states = {o.transfer_id: o.state for o in payee_handler.outcomes}
    assert states == {"t-sig-1": TransferState.COMMITTED, "t-sig-2": TransferState.REJECTED}
    # The SDK binds the request itself.
    payee.signer = signer
    await payer.send_transfer(transfer("t-sig-3"))
    await eventually(lambda: len(payee_handler.credit_requests) == 3)
    await payee.answer_credit_request(1, "t-sig-3", True)
    await eventually(lambda: any(o.transfer_id == "t-sig-3" for o in payee_handler.outcomes))


async def test_a_status_query_flood_is_bounded_per_participant(tmp_path):
    """A participant floods GET /transfers/... on several pipelining connections while
    another pays: at most STATUS_QUERIES_IN_FLIGHT_PER_PARTICIPANT_MAX of its queries wait
    on the sequencer (the rest are 503 SERVER_BUSY at once), so they never fill the inbound
    queue in front of the other's transfers: every one commits, none is refused."""
    from http_helpers import Switch

    directory = DirectoryConfig(participant_categories={str(n): "A" for n in range(1, 10)})
    server = await start_switch(ServerConfig(data_dir=str(tmp_path), stream_enabled=False,
                                             admin_enabled=False, inbound_queue_max=256,
                                             directory=directory))
    await server.gateway.admin(CurrencyAdded(
        request_id="currency", currency=CURRENCY, ledger_id=986,
        settlement_model=SettlementModel.PREFUNDED_RTGS))
    http = HttpConnector(server.gateway, HttpConnectorConfig(port=0))
    await http.start()
    running = Switch(server, http)
    try:
        payer_handler, payee_handler = Recorder(), Recorder()
        payer = await running.participant(1, payer_handler)
        payee = await running.participant(2, payee_handler)
        await payee.register_alias(
            alias_type=PAYEE_ALIAS.alias_type, alias_value=PAYEE_ALIAS.alias_value,
            account_ref="payee-account-1", owner_national_id="52998224725",
            display_name="Maria Silva")
        flooder = await running.participant(3, Recorder())
        request = (b"GET /transfers/3/q-1 HTTP/1.1\r\nhost: t\r\nauthorization: Bearer "
                   + flooder.api_key.encode() + b"\r\n\r\n")
        connections, per_connection = 4, 250
        statuses: dict[int, int] = {}
        stop = asyncio.Event()

        async def flood() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
            while not stop.is_set():
                writer.write(request * per_connection)
                data = b""
                while data.count(b"HTTP/1.1 ") < per_connection or not data.endswith(b"}"):
                    chunk = await asyncio.wait_for(reader.read(65536), 30)
                    assert chunk
                    data += chunk
                for line in data.split(b"HTTP/1.1 ")[1:]:
                    status = int(line[:3])
                    statuses[status] = statuses.get(status, 0) + 1
            writer.close()

        floods = [asyncio.ensure_future(flood()) for _ in range(connections)]
        futures = []
        for n in range(40):  # paying while the flood goes on
            futures.append(payer.submit_transfer(transfer(f"p-{n}", 100)))
            await asyncio.sleep(0.002)
        outcomes = await asyncio.wait_for(asyncio.gather(*futures), 60)
        stop.set()
        await asyncio.gather(*floods)
        assert [o.state for o in outcomes] == [TransferState.COMMITTED] * len(futures)
        assert server.metrics.inbound_refused_total == 0
        assert set(statuses) <= {404, 503}
        assert sum(statuses.values()) % per_connection == 0
        assert statuses.get(503, 0) > 0
        assert 1 <= http.status_queries_peak <= limits.STATUS_QUERIES_IN_FLIGHT_PER_PARTICIPANT_MAX
    finally:
        for client in running.clients:
            await client.close()
        await http.close(grace_ms=500)
        await server.stop(drain_s=0.5)
