"""Bad input to the FSPIOP hub: each gets the spec's error (status or callback) and nothing
is reserved or moved."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from connectors.fspiop import errors
from connectors.fspiop.dfsp import sdk_fulfilment
from fspiop_helpers import PAYEE_MSISDN, balances, hub, pending_total, python_dfsps
from switch.core.results import Result

def test_every_result_has_one_fspiop_code():
    for member in Result:
        code, status = errors.FSPIOP_CODES[member]
        assert len(code) == 4 and code.isdigit(), member
        assert 200 <= status <= 599
        if member is not Result.OK:
            assert code[0] in "12345", member  # the spec's families only
    assert errors.code_of(Result.EXISTS_WITH_DIFFERENT_AMOUNT) == "3106"
    assert errors.code_of(Result.TRANSFER_EXPIRED) == "3303"
    assert errors.code_of(Result.PAYER_INSUFFICIENT_LIQUIDITY) == "4001"


def test_every_error_status_the_hub_answers_can_be_written():
    """Every HTTP status of the error table (and of the codes the hub answers itself) is
    one the server writes: an unknown one was an assertion, answered 500 with a traceback
    logged for a client's request."""
    from connectors.http.server import Response

    statuses = {status for _code, status in errors.FSPIOP_CODES.values()}
    statuses |= {errors.status_of_code(code) for code in errors._STATUS_BY_CODE}
    for status in statuses:
        assert Response(status, b"").status == status


@pytest.fixture
async def world(tmp_path):
    server, banks, _ = await hub(tmp_path)
    payer, payee = await python_dfsps(server, banks, fulfil=False)
    yield server, banks, payer, payee
    for dfsp in (payer, payee):
        await dfsp.close()
    await server.stop(drain_s=0)


async def _quote(payer) -> tuple[str, dict]:
    transaction_id = str(uuid.uuid4())
    quote_id = str(uuid.uuid4())
    waiting = payer.expect(f"/quotes/{quote_id}")
    payee = {"partyIdType": "MSISDN", "partyIdentifier": PAYEE_MSISDN, "fspId": "payeefsp"}
    answer = await payer.send("POST", "/quotes", payer.quote_body(
        payee, "5", "KES", transaction_id, quote_id), resource="quotes",
        destination="payeefsp")
    assert answer.status == 202
    return transaction_id, json.loads((await asyncio.wait_for(waiting, 10)).body)


def _error_code(response) -> str:
    return json.loads(response.body)["errorInformation"]["errorCode"]


@pytest.mark.asyncio
async def test_bad_requests_are_refused_and_change_nothing(world):
    server, banks, payer, payee = world
    before = balances(server, banks)
    transaction_id, quote = await _quote(payer)
    prepare = payer.prepare_body(transaction_id, "payeefsp", quote)
    body = json.dumps(prepare).encode()

    def headers(**changes):
        found = payer.headers("POST", "/transfers", "transfers", body, "payeefsp")
        result = [(k, v) for k, v in found if k.decode() not in changes]
        return result + [(k.encode(), v.encode()) for k, v in changes.items() if v]

    cases = [
        ("malformed JSON", b"{not json", None, "3105"),  # the signature covers other bytes
        ("wrong content type", body, headers(**{"content-type": "application/json"}), "3101"),
        ("unsupported version", body, headers(**{
            "content-type": "application/vnd.interoperability.transfers+json;version=2.0"}),
         "3001"),
        ("no date", body, headers(date=""), "3102"),
        ("forged FSPIOP-Source", body, headers(**{"fspiop-source": "payeefsp"}), "3100"),
        ("no signature", body, headers(**{"fspiop-signature": ""}), "3105"),
        ("bad signature", body, headers(**{"fspiop-signature": json.dumps({
            "protectedHeader": "eyJhbGciOiJSUzI1NiJ9", "signature": "AAAA"})}), "3105"),
    ]
    for name, payload, request_headers, code in cases:
        request_headers = request_headers or payer.headers("POST", "/transfers", "transfers",
                                                           body, "payeefsp")
        response = await payer.pool.request(b"POST", b"/transfers", payload,
                                            tuple(request_headers))
        assert response.status >= 400, name
        assert _error_code(response) == code, (name, response)
    # Signed, well-formed, but not acceptable: malformed JSON, an unknown destination.
    response = await payer.send("POST", "/transfers", b"{not json", resource="transfers",
                                destination="payeefsp")
    assert response.status == 400 and _error_code(response) == "3101"
    unknown = dict(prepare, payeeFsp="nobody")
    response = await payer.send("POST", "/transfers", unknown, resource="transfers",
                                destination="nobody")
    assert response.status == 400 and _error_code(response) == "3201"
    assert balances(server, banks) == before
    assert pending_total(server) == 0


@pytest.mark.asyncio
async def test_wrong_fulfilment_voids_the_transfer_and_both_are_told(world):
    server, banks, payer, payee = world
    before = balances(server, banks)
    transaction_id, quote = await _quote(payer)
    payer_error = payer.expect(f"/transfers/{transaction_id}/error")
    payee_error = payee.expect(f"/transfers/{transaction_id}/error")
    prepared = payee.expect("/transfers")
    answer = await payer.send("POST", "/transfers", payer.prepare_body(
        transaction_id, "payeefsp", quote), resource="transfers", destination="payeefsp")
    assert answer.status == 202
    await asyncio.wait_for(prepared, 10)
    wrong = sdk_fulfilment(b"another secret", quote["ilpPacket"])
    answer = await payee.send("PUT", f"/transfers/{transaction_id}", {
        "fulfilment": wrong, "completedTimestamp": "2026-01-01T00:00:00.000Z",
        "transferState": "COMMITTED"}, resource="transfers", destination="payerfsp")
    assert answer.status == 200
    for future in (payer_error, payee_error):
        received = await asyncio.wait_for(future, 10)
        assert json.loads(received.body)["errorInformation"]["errorCode"] == "3100"
    assert balances(server, banks) == before
    assert pending_total(server) == 0


@pytest.mark.asyncio
async def test_unknown_party_lookup_gets_the_error_callback(world):
    server, banks, payer, _ = world
    path = "/parties/MSISDN/254799999999"
    waiting = payer.expect(path + "/error")
    answer = await payer.send("GET", path, resource="parties")
    assert answer.status == 202
    received = await asyncio.wait_for(waiting, 10)
    assert json.loads(received.body)["errorInformation"]["errorCode"] == "3204"


@pytest.mark.asyncio
async def test_unauthenticated_and_unregistered_callers_are_refused(world):
    server, banks, payer, _ = world
    headers = [(k, v) for k, v in payer.headers("GET", "/parties/MSISDN/1", "parties", None)
               if k != b"authorization"]
    response = await payer.pool.request(b"GET", b"/parties/MSISDN/1", None, tuple(headers))
    assert response.status == 401 and _error_code(response) == "3100"
    stream_key = banks["streambank"][1]
    headers.append((b"authorization", b"Bearer " + stream_key.encode()))
    response = await payer.pool.request(b"GET", b"/parties/MSISDN/1", None, tuple(headers))
    assert response.status == 403
