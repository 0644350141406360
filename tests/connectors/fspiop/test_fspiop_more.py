"""The FSPIOP hub's features beyond a plain payment, with Python DFSPs on a real switch: the
PATCH a payee that answered RESERVED is owed at commit, status queries, the served OpenAPI
document, the oracle's lookup and delete, and duplicate prepares. Every callback the hub
sends (errors, PATCH, oracle answers included) is checked against the Mojaloop spec with
an independent validator, and what the hub writes itself against its signing key."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import yaml
from fspiop_helpers import (
    PAYEE_MSISDN,
    SPEC,
    balances,
    check_against_spec,
    hub,
    pending_total,
    python_dfsps,
    raw_spec,
)
from openapi_schema_validator import OAS30Validator

from connectors.fspiop import ilp, jws
from connectors.http.jws import VerifyKey

pytestmark = pytest.mark.asyncio
WAIT_S = 10


@pytest.fixture
async def world(tmp_path):
    server, banks, hub_public = await hub(tmp_path)
    payer, payee = await python_dfsps(server, banks)
    yield server, banks, hub_public, payer, payee
    for dfsp in (payer, payee):
        await dfsp.close()
    await server.stop(drain_s=0)


def _spec_checked(*dfsps) -> None:
    """Everything the hub sent these DFSPs is an operation of the spec with a valid body."""
    for dfsp in dfsps:
        for received in dfsp.received:
            check_against_spec(received.method, received.path, received.headers,
                               received.body)


def _hub_signed(received, hub_public: bytes) -> None:
    """Written by the hub itself: its FSP id as the source, signed with its key, binding
    the method and the path it was sent to."""
    assert received.headers[b"fspiop-source"] == b"ponte"
    jws.verify(received.headers, received.body, VerifyKey(hub_public),
               method=received.method.encode(), uri=received.path.encode())


def _error_code(received) -> str:
    return json.loads(received.body)["errorInformation"]["errorCode"]


def _answer_valid(method: str, template: str, response) -> None:
    """A synchronous error answer: the body the spec declares for that status of that
    operation (ErrorInformationResponse), checked on the spec's own yaml."""
    document = raw_spec()
    declared = document["paths"][template][method.lower()]["responses"][str(response.status)]
    if "$ref" in declared:
        declared = document["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
    schema = declared["content"]["application/json"]["schema"]
    OAS30Validator({**schema, "components": document["components"]}).validate(
        json.loads(response.body))


async def _quote(payer, amount: str) -> tuple[str, dict]:
    """A quote from the payee DFSP under a new transaction id (used as the transfer id,
    the SDK's convention)."""
    transaction_id = str(uuid.uuid4())
    quote_id = str(uuid.uuid4())
    waiting = payer.expect(f"/quotes/{quote_id}")
    payee = {"partyIdType": "MSISDN", "partyIdentifier": PAYEE_MSISDN, "fspId": "payeefsp"}
    answer = await payer.send("POST", "/quotes", payer.quote_body(
        payee, amount, "KES", transaction_id, quote_id), resource="quotes",
        destination="payeefsp")
    assert answer.status == 202, answer
    return transaction_id, json.loads((await asyncio.wait_for(waiting, WAIT_S)).body)


def _prepare(payer, body: dict):
    return payer.send("POST", "/transfers", body, resource="transfers",
                      destination="payeefsp")


def _fulfil(payee, transfer_id: str):
    return payee.send("PUT", f"/transfers/{transfer_id}", {
        "fulfilment": payee.quotes[transfer_id],
        "completedTimestamp": "2026-01-01T00:00:00.000Z", "transferState": "COMMITTED"},
        resource="transfers", destination="payerfsp")


async def _status(dfsp, transfer_id: str, suffix: str = ""):
    """GET /transfers/{ID}: answered 202, then the callback at the path (+ suffix)."""
    path = f"/transfers/{transfer_id}"
    waiting = dfsp.expect(path + suffix)
    answer = await dfsp.send("GET", path, resource="transfers")
    assert answer.status == 202, answer
    return await asyncio.wait_for(waiting, WAIT_S)


async def test_payee_answering_reserved_is_sent_patch_at_commit(world):
    server, banks, hub_public, payer, payee = world
    payee.transfer_state = "RESERVED"
    before = balances(server, banks)
    transfer_id, quote = await _quote(payer, "7")
    path = f"/transfers/{transfer_id}"
    committed = payer.expect(path)
    patched = payee.expect(path)  # the payee's only request at this path: the PATCH
    answer = await _prepare(payer, payer.prepare_body(transfer_id, "payeefsp", quote))
    assert answer.status == 202, answer
    to_payer = await asyncio.wait_for(committed, WAIT_S)
    fulfil = json.loads(to_payer.body)
    assert fulfil["transferState"] == "COMMITTED"
    assert ilp.condition_of(fulfil["fulfilment"]) == quote["condition"]
    # The payee's PUT said RESERVED, not what the payer is owed: the hub writes the payer's.
    _hub_signed(to_payer, hub_public)
    patch = await asyncio.wait_for(patched, WAIT_S)
    assert patch.method == "PATCH"
    body = json.loads(patch.body)
    assert body["transferState"] == "COMMITTED"
    assert body["completedTimestamp"]
    assert patch.headers[b"fspiop-destination"] == b"payeefsp"
    _hub_signed(patch, hub_public)
    after = balances(server, banks)
    assert after["payerfsp"] == before["payerfsp"] - 700
    assert after["payeefsp"] == before["payeefsp"] + 700
    assert pending_total(server) == 0
    _spec_checked(payer, payee)


async def test_status_query_answers_the_current_state(world):
    _server, _banks, hub_public, payer, payee = world
    payee.fulfil = False
    transfer_id, quote = await _quote(payer, "3")
    prepared = payee.expect("/transfers")
    answer = await _prepare(payer, payer.prepare_body(transfer_id, "payeefsp", quote))
    assert answer.status == 202, answer
    await asyncio.wait_for(prepared, WAIT_S)
    # Held by the payee: RESERVED, no fulfilment, to either party.
    for dfsp in (payer, payee):
        received = await _status(dfsp, transfer_id)
        assert received.method == "PUT"
        assert json.loads(received.body) == {"transferState": "RESERVED"}
        _hub_signed(received, hub_public)
    committed = payer.expect(f"/transfers/{transfer_id}")
    answer = await _fulfil(payee, transfer_id)
    assert answer.status == 200, answer
    fulfil = json.loads((await asyncio.wait_for(committed, WAIT_S)).body)
    assert fulfil["transferState"] == "COMMITTED"
    # Final: COMMITTED with the fulfilment and when it was decided.
    received = await _status(payer, transfer_id)
    state = json.loads(received.body)
    assert state["transferState"] == "COMMITTED"
    assert state["fulfilment"] == payee.quotes[transfer_id]
    assert state["completedTimestamp"]
    _hub_signed(received, hub_public)
    # An id nobody used: the error callback, 3208 Transfer ID not found.
    unknown = str(uuid.uuid4())
    received = await _status(payer, unknown, "/error")
    assert received.method == "PUT"
    assert _error_code(received) == "3208"
    _hub_signed(received, hub_public)
    _spec_checked(payer, payee)


async def test_payee_may_ask_the_state_of_a_final_transfer(world):
    """Once final, the hub still knows the transfer's parties (a bounded table of recent
    final transfers), so the payee's GET asks the core with the right payer: COMMITTED,
    not 3208."""
    _server, _banks, _hub_public, payer, payee = world
    # RESERVED: the PATCH tells the payee (and this test) that the hub retired the transfer.
    payee.transfer_state = "RESERVED"
    transfer_id, quote = await _quote(payer, "2")
    patched = payee.expect(f"/transfers/{transfer_id}")
    answer = await _prepare(payer, payer.prepare_body(transfer_id, "payeefsp", quote))
    assert answer.status == 202, answer
    assert (await asyncio.wait_for(patched, WAIT_S)).method == "PATCH"
    path = f"/transfers/{transfer_id}"
    state, error = payee.expect(path), payee.expect(path + "/error")
    answer = await payee.send("GET", path, resource="transfers")
    assert answer.status == 202, answer
    done, _ = await asyncio.wait({state, error}, timeout=WAIT_S,
                                 return_when=asyncio.FIRST_COMPLETED)
    assert state in done, [json.loads(f.result().body) for f in done]
    assert json.loads(state.result().body)["transferState"] == "COMMITTED"


async def test_openapi_document_is_served(world):
    _server, _banks, _hub_public, payer, _payee = world
    response = await payer.pool.request(b"GET", b"/openapi.yaml")  # no credentials needed
    assert response.status == 200, response
    assert response.headers[b"content-type"].startswith(b"application/yaml")
    assert response.body == SPEC.read_bytes()
    document = yaml.safe_load(response.body)
    assert document["openapi"].startswith("3.0")
    assert document["info"]["version"] == "1.1"
    assert "/transfers/{ID}" in document["paths"]


async def test_oracle_lookup_and_delete(world):
    _server, _banks, hub_public, payer, payee = world
    path = f"/participants/MSISDN/{PAYEE_MSISDN}"

    async def ask(dfsp, method: str, suffix: str = ""):
        waiting = dfsp.expect(path + suffix)
        answer = await dfsp.send(method, path, resource="participants")
        assert answer.status == 202, answer
        received = await asyncio.wait_for(waiting, WAIT_S)
        assert received.method == "PUT"
        _hub_signed(received, hub_public)
        return json.loads(received.body)

    assert await ask(payer, "GET") == {"fspId": "payeefsp"}
    # Only the DFSP holding the alias deletes it; to another it does not exist (3204).
    refused = await ask(payer, "DELETE", "/error")
    assert refused["errorInformation"]["errorCode"] == "3204"
    assert await ask(payer, "GET") == {"fspId": "payeefsp"}
    assert await ask(payee, "DELETE") == {"fspId": "payeefsp"}
    gone = await ask(payer, "GET", "/error")
    assert gone["errorInformation"]["errorCode"] == "3204"
    # A party type the hub does not offer: refused at once, the spec's error body.
    response = await payer.send("GET", "/participants/PERSONAL_ID/1234567890",
                                resource="participants")
    assert response.status == 400
    assert json.loads(response.body)["errorInformation"]["errorCode"] == "3100"
    _answer_valid("GET", "/participants/{Type}/{ID}", response)
    _spec_checked(payer, payee)


async def test_duplicate_prepare_same_body_gets_state_changed_body_3106(world):
    server, banks, hub_public, payer, payee = world
    payee.fulfil = False
    before = balances(server, banks)
    transfer_id, quote = await _quote(payer, "5")
    prepare = payer.prepare_body(transfer_id, "payeefsp", quote)
    changed = dict(prepare, amount={"currency": "KES", "amount": "6"})
    path = f"/transfers/{transfer_id}"
    committed = payer.expect(path)
    prepared = payee.expect("/transfers")
    answer = await _prepare(payer, prepare)
    assert answer.status == 202, answer
    first = await asyncio.wait_for(prepared, WAIT_S)
    # In progress. The same body: nothing to say yet (the first PUT the payer gets below
    # is the commit). A changed body: the error callback, 3106 Modified request.
    answer = await _prepare(payer, prepare)
    assert answer.status == 202, answer
    refused = payer.expect(path + "/error")
    answer = await _prepare(payer, changed)
    assert answer.status == 202, answer
    received = await asyncio.wait_for(refused, WAIT_S)
    assert _error_code(received) == "3106"
    _hub_signed(received, hub_public)
    answer = await _fulfil(payee, transfer_id)
    assert answer.status == 200, answer
    fulfil = json.loads((await asyncio.wait_for(committed, WAIT_S)).body)
    assert fulfil["transferState"] == "COMMITTED"
    # The first prepare was the one forwarded, once; it moved its own amount, once.
    forwarded = [r for r in payee.received if r.method == "POST" and r.path == "/transfers"]
    assert [r.body for r in forwarded] == [first.body]
    after = balances(server, banks)
    assert after["payerfsp"] == before["payerfsp"] - 500
    assert after["payeefsp"] == before["payeefsp"] + 500
    # Final. The same body again: the transfer's state, PUT COMMITTED again.
    again = payer.expect(path)
    answer = await _prepare(payer, prepare)
    assert answer.status == 202, answer
    state = json.loads((await asyncio.wait_for(again, WAIT_S)).body)
    assert state["transferState"] == "COMMITTED"
    assert state["fulfilment"] == fulfil["fulfilment"]
    # A changed body: 3106 again, and nothing moves.
    refused = payer.expect(path + "/error")
    answer = await _prepare(payer, changed)
    assert answer.status == 202, answer
    assert _error_code(await asyncio.wait_for(refused, WAIT_S)) == "3106"
    assert balances(server, banks) == after
    assert pending_total(server) == 0
    _spec_checked(payer, payee)
