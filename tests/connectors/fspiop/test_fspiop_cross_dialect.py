"""Cross-dialect payments through the FSPIOP hub, both ways: an FSPIOP DFSP (the Python
stand-in) pays a participant on the stream protocol (SDK StreamClient) and one on the HTTP
protocol (SDK HttpClient), Ponte producing the condition and fulfilment on their behalf;
stream and HTTP participants pay an FSPIOP DFSP, Ponte quoting, preparing and checking the
fulfilment. Money moves in the ledger, both sides learn the outcome, the books reconcile."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from connectors.fspiop import ilp
from connectors.sdk import ACCEPT, Decision
from connectors.sdk.http_client import HttpClient
from connectors.sdk.stream_client import StreamClient
from fspiop_helpers import (
    PAYEE_MSISDN,
    balances,
    check_against_spec,
    hub,
    pending_total,
    python_dfsps,
    register_payee,
)
from switch.admin.bootstrap import add_participant
from switch.core.messages import (
    Party,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import RequestToPayState, Result, TransferState
from switch.testing import CURRENCY

pytestmark = pytest.mark.asyncio
STREAM_MSISDN = "254700000003"
HTTP_MSISDN = "254700000004"
S = 1_000_000_000


class Books:
    """What an SDK participant keeps: its final outcomes, by transfer; credits on COMMITTED."""

    def __init__(self, participant_id: int) -> None:
        self.participant_id = participant_id
        self.outcomes: dict[tuple[int, str], TransferOutcome] = {}
        self.credited_minor = 0
        self.debited_minor = 0
        self.changed = asyncio.Event()

    def on_message(self, message) -> None:
        if type(message) is not TransferOutcome or message.state not in (
                TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED):
            return
        key = (message.payer_participant_id, message.transfer_id)
        if key in self.outcomes:
            assert self.outcomes[key].state == message.state
            return
        self.outcomes[key] = message
        if message.state == TransferState.COMMITTED:
            if message.payee_participant_id == self.participant_id:
                self.credited_minor += message.amount_minor
            if message.payer_participant_id == self.participant_id:
                self.debited_minor += message.amount_minor + message.fee_minor
        self.changed.set()

    async def outcome(self, key, timeout_s: float = 10) -> TransferOutcome:
        deadline = time.monotonic() + timeout_s
        while key not in self.outcomes:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))
        return self.outcomes[key]


@pytest.fixture
async def world(tmp_path):
    server, banks, _ = await hub(tmp_path, server={"http_enabled": True, "http": {"port": 0}})
    payer, payee = await python_dfsps(server, banks)
    stream_id, stream_key = banks["streambank"]
    stream_books = Books(stream_id)
    stream = await StreamClient.connect("127.0.0.1", server.stream_port, api_key=stream_key,
                                        on_credit_request=lambda credit: ACCEPT,
                                        on_push=stream_books.on_message)
    await register_payee(server, stream_id, "+" + STREAM_MSISDN, "1234567891")
    http_answers: list = []

    def http_credit(credit):
        http_answers.append(credit)
        return Decision(True)

    http_books = Books(0)
    http = HttpClient(f"http://127.0.0.1:{server.http_connector.port}", "",
                      on_credit_request=http_credit, on_push=http_books.on_message)
    callback_url = await http.start_receiver()
    created = await add_participant(server, "httpbank", "bank", [CURRENCY],
                                    callback_url=callback_url, funding_minor=10**12)
    http.api_key = created.api_key
    await http.connect()
    http_books.participant_id = created.participant_id
    banks["httpbank"] = (created.participant_id, created.api_key)
    await register_payee(server, created.participant_id, "+" + HTTP_MSISDN, "1234567892")
    yield server, banks, payer, payee, stream, stream_books, http, http_books, http_answers
    await stream.close()
    await http.close()
    for dfsp in (payer, payee):
        await dfsp.close()
    await server.stop(drain_s=0)


def _condition_of_prepare(dfsp, transfer_id: str) -> str:
    (prepare,) = [json.loads(r.body) for r in dfsp.received if r.method == "POST"
                  and r.path == "/transfers" and json.loads(r.body)["transferId"] == transfer_id]
    return prepare["condition"]


async def test_an_fspiop_dfsp_pays_stream_and_http_participants(world):
    server, banks, payer, _payee, _stream, stream_books, _http, http_books, answers = world
    before = balances(server, banks)
    for msisdn, books, amount_minor in ((STREAM_MSISDN, stream_books, 1_234),
                                        (HTTP_MSISDN, http_books, 4_321)):
        fulfil, _ = await payer.pay("MSISDN", msisdn, f"{amount_minor / 100:.2f}", "KES")
        assert fulfil["transferState"] == "COMMITTED"
        # The fulfilment Ponte gave on the payee's behalf opens the condition of the quote
        # the hub made, which the payer's prepare carried.
        put = [r for r in payer.received if r.method == "PUT"
               and r.path.startswith("/transfers/")][-1]
        transfer_id = put.path.rsplit("/", 1)[1]
        quote = [r for r in payer.received if r.method == "PUT" and r.path.startswith(
            "/quotes/")][-1]
        condition = json.loads(quote.body)["condition"]
        assert ilp.condition_of(fulfil["fulfilment"]) == condition
        assert put.headers[b"fspiop-source"] == b"ponte"  # the hub answers for the payee
        outcome = await books.outcome((banks["payerfsp"][0], transfer_id))
        assert outcome.state == TransferState.COMMITTED
        assert outcome.amount_minor == amount_minor
    assert answers and answers[0].payer_participant_id == banks["payerfsp"][0]
    after = balances(server, banks)
    assert after["payerfsp"] == before["payerfsp"] - 1_234 - 4_321
    assert after["streambank"] == before["streambank"] + 1_234
    assert after["httpbank"] == before["httpbank"] + 4_321
    assert stream_books.credited_minor == 1_234 and http_books.credited_minor == 4_321
    assert pending_total(server) == 0
    for received in payer.received:
        check_against_spec(received.method, received.path, received.headers, received.body)


async def test_stream_and_http_participants_pay_an_fspiop_dfsp(world):
    server, banks, _payer, payee, stream, stream_books, http, http_books, _ = world
    before = balances(server, banks)
    alias = Party(alias_type="MSISDN", alias_value="+" + PAYEE_MSISDN)
    for client, books, amount_minor in ((stream, stream_books, 777), (http, http_books, 888)):
        transfer_id = f"x-{uuid.uuid4().hex[:12]}"
        outcome = await client.transfer(TransferRequest(
            transfer_id=transfer_id, payee=alias, amount_minor=amount_minor,
            currency="KES", expires_at_ns=time.time_ns() + 30 * S), timeout_s=20)
        assert outcome.state == TransferState.COMMITTED, outcome
        # The payee DFSP was quoted and sent the prepare by the hub, and its fulfilment
        # (checked by the hub against its own quote's condition) reached the payer.
        fspiop_id = [r for r in payee.received if r.method == "POST" and r.path == "/transfers"]
        assert fspiop_id
        assert outcome.fulfilment == "" or ilp.condition_of(outcome.fulfilment)
        await books.outcome((client.participant_id, transfer_id))
    after = balances(server, banks)
    assert after["streambank"] == before["streambank"] - 777
    assert after["httpbank"] == before["httpbank"] - 888
    assert after["payeefsp"] == before["payeefsp"] + 777 + 888
    assert stream_books.debited_minor == 777 and http_books.debited_minor == 888
    assert pending_total(server) == 0
    for received in payee.received:
        check_against_spec(received.method, received.path, received.headers, received.body)


async def test_a_wrong_fulfilment_from_the_fspiop_payee_rejects_the_stream_payment(world):
    server, banks, _payer, payee, stream, _books, _http, _http_books, _ = world
    before = balances(server, banks)
    payee.fulfil_secret = b"not the quote's secret"
    outcome = await stream.transfer(TransferRequest(
        transfer_id="x-wrong-fulfilment", payee=Party(alias_type="MSISDN",
                                                      alias_value="+" + PAYEE_MSISDN),
        amount_minor=500, currency="KES", expires_at_ns=time.time_ns() + 30 * S),
        timeout_s=20)
    assert outcome.state == TransferState.REJECTED
    assert outcome.result == Result.PAYEE_REJECTED
    assert "fulfilment" in outcome.reason
    # The payee DFSP is told too: its transfer is aborted (3100), nothing was committed.
    errors = [json.loads(r.body)["errorInformation"]["errorCode"] for r in payee.received
              if r.method == "PUT" and r.path.endswith("/error")]
    assert errors == ["3100"]
    assert balances(server, banks) == before
    assert pending_total(server) == 0


async def _pay_transaction_request(payer, request: dict, *, amount: str | None = None,
                                   status: int = 202) -> asyncio.Future:
    """What a payer DFSP does with a transaction request it accepts: tell the requester
    RECEIVED, quote with the request's id, prepare (answered `status`). A future of the
    callback its prepare gets."""
    trq_id = request["transactionRequestId"]
    answer = await payer.send("PUT", f"/transactionRequests/{trq_id}",
                              {"transactionRequestState": "RECEIVED"},
                              resource="transactionRequests",
                              destination=request["payee"]["partyIdInfo"]["fspId"])
    assert answer.status == 200, answer
    transfer_id, quote_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = payer.quote_body(request["payee"]["partyIdInfo"], amount or request["amount"]["amount"],
                            request["amount"]["currency"], transfer_id, quote_id)
    body["transactionRequestId"] = trq_id
    body["amountType"] = "RECEIVE"
    quoted = payer.expect(f"/quotes/{quote_id}")
    answer = await payer.send("POST", "/quotes", body, resource="quotes",
                              destination=request["payee"]["partyIdInfo"]["fspId"])
    assert answer.status == 202, answer
    quote = json.loads((await asyncio.wait_for(quoted, 10)).body)
    fulfilled = payer.expect(f"/transfers/{transfer_id}")
    answer = await payer.send("POST", "/transfers", payer.prepare_body(
        transfer_id, request["payee"]["partyIdInfo"]["fspId"], quote), resource="transfers",
        destination=request["payee"]["partyIdInfo"]["fspId"])
    assert answer.status == status, answer
    if status != 202:
        assert json.loads(answer.body)["errorInformation"]["errorCode"] == "3100"
    return fulfilled


async def test_a_stream_request_to_pay_reaches_an_fspiop_payer_as_a_transaction_request(world):
    """A core request-to-pay to an FSPIOP payer becomes POST /transactionRequests; the
    DFSP's quote and prepare under it approve the request (the transfer it creates pays
    the requester); a REJECTED answer declines it."""
    server, banks, payer, _payee, stream, stream_books, _http, _, _ = world
    payer_id = banks["payerfsp"][0]
    answer = await server.gateway.register_alias(
        payer_id, alias_type="MSISDN", alias_value="+254700000009",
        account_ref="MSISDN/254700000009", owner_national_id="1234567893",
        display_name="Bob Payer")
    assert answer.result is Result.OK
    before = balances(server, banks)
    pushed: list = []
    previous = stream.on_push
    stream.on_push = lambda message: (pushed.append(message), previous(message))
    received = payer.expect("/transactionRequests")
    first = await stream.request_to_pay(RequestToPay(
        request_id="rtp-1", payer=Party(alias_type="MSISDN", alias_value="+254700000009"),
        amount_minor=2_500, currency="KES", expires_at_ns=time.time_ns() + 30 * S,
        payee_account_ref="till-7", purpose="invoice 7"))
    assert first.state == RequestToPayState.OPEN, first
    request = json.loads((await asyncio.wait_for(received, 10)).body)
    assert request["amount"] == {"currency": "KES", "amount": "25"}
    assert request["payer"]["partyIdType"] == "MSISDN"
    assert request["payer"]["partyIdentifier"] == "254700000009"
    check_against_spec("POST", "/transactionRequests",
                       [r for r in payer.received if r.path == "/transactionRequests"][0].headers,
                       [r for r in payer.received if r.path == "/transactionRequests"][0].body)
    # A prepare for another amount does not pay it: refused, nothing reserved.
    await _pay_transaction_request(payer, request, amount="26", status=400)
    assert balances(server, banks) == before and pending_total(server) == 0
    fulfilled = await _pay_transaction_request(payer, request)
    received_put = await asyncio.wait_for(fulfilled, 10)
    transfer_id = received_put.path.rsplit("/", 1)[1]
    put = json.loads(received_put.body)
    assert put["transferState"] == "COMMITTED"
    outcome = await stream_books.outcome((payer_id, transfer_id))
    assert outcome.state == TransferState.COMMITTED and outcome.amount_minor == 2_500
    approved = [m for m in pushed if type(m) is RequestToPayOutcome
                and m.state == RequestToPayState.APPROVED]
    assert approved and approved[0].transfer_id == transfer_id
    after = balances(server, banks)
    assert after["payerfsp"] == before["payerfsp"] - 2_500
    assert after["streambank"] == before["streambank"] + 2_500
    assert pending_total(server) == 0
    # Declined: the DFSP answers REJECTED; the requester learns it, nothing moves.
    received = payer.expect("/transactionRequests")
    await stream.request_to_pay(RequestToPay(
        request_id="rtp-2", payer=Party(alias_type="MSISDN", alias_value="+254700000009"),
        amount_minor=900, currency="KES", expires_at_ns=time.time_ns() + 30 * S))
    request = json.loads((await asyncio.wait_for(received, 10)).body)
    answer = await payer.send("PUT", f"/transactionRequests/{request['transactionRequestId']}",
                              {"transactionRequestState": "REJECTED"},
                              resource="transactionRequests",
                              destination=request["payee"]["partyIdInfo"]["fspId"])
    assert answer.status == 200
    deadline = time.monotonic() + 10
    while not any(type(m) is RequestToPayOutcome and m.request_id == "rtp-2"
                  and m.state == RequestToPayState.DECLINED for m in pushed):
        assert time.monotonic() < deadline, pushed
        await asyncio.sleep(0.02)
    assert balances(server, banks) == after


async def test_an_fspiop_transaction_request_asks_a_stream_payer(world):
    """POST /transactionRequests from an FSPIOP DFSP to a payer on the stream protocol is a
    core request-to-pay: the DFSP hears RECEIVED, then ACCEPTED when the payer approves,
    and the transfer the approval creates reaches it as quote and prepare (REJECTED when
    the payer declines)."""
    server, banks, _payer, payee, stream, stream_books, _http, _, _ = world
    stream_id = banks["streambank"][0]
    notices: list = []
    previous = stream.on_push
    stream.on_push = lambda message: (notices.append(message), previous(message))
    before = balances(server, banks)

    async def ask(amount: str) -> tuple[str, dict]:
        trq_id = str(uuid.uuid4())
        received = payee.expect(f"/transactionRequests/{trq_id}")
        answer = await payee.send("POST", "/transactionRequests", {
            "transactionRequestId": trq_id,
            "payee": {"partyIdInfo": {"partyIdType": "MSISDN", "partyIdentifier": PAYEE_MSISDN,
                                      "fspId": "payeefsp"}},
            "payer": {"partyIdType": "MSISDN", "partyIdentifier": STREAM_MSISDN},
            "amount": {"currency": "KES", "amount": amount},
            "transactionType": {"scenario": "PAYMENT", "initiator": "PAYEE",
                                "initiatorType": "BUSINESS"}},
            resource="transactionRequests", destination=f"ponte-{stream_id}")
        assert answer.status == 202, answer
        state = json.loads((await asyncio.wait_for(received, 10)).body)
        return trq_id, state

    trq_id, state = await ask("12")
    assert state["transactionRequestState"] == "RECEIVED"
    deadline = time.monotonic() + 10
    while not any(type(m) is RequestToPayNotice and m.request_id == trq_id for m in notices):
        assert time.monotonic() < deadline, notices
        await asyncio.sleep(0.02)
    (notice,) = [m for m in notices if type(m) is RequestToPayNotice]
    assert (notice.amount_minor, notice.payee_participant_id) == (1_200, banks["payeefsp"][0])
    accepted = payee.expect(f"/transactionRequests/{trq_id}")
    prepared = payee.expect("/transfers")
    stream.decide_request_to_pay(RequestToPayDecision(
        payee_participant_id=notice.payee_participant_id, request_id=trq_id, approved=True,
        transfer_id="pay-trq-1", expires_at_ns=time.time_ns() + 30 * S))
    assert json.loads((await asyncio.wait_for(accepted, 10)).body)[
        "transactionRequestState"] == "ACCEPTED"
    await asyncio.wait_for(prepared, 10)
    (quote,) = [json.loads(r.body) for r in payee.received
                if r.method == "POST" and r.path == "/quotes"]
    assert quote["transactionRequestId"] == trq_id  # the DFSP's own request, being paid
    outcome = await stream_books.outcome((stream_id, "pay-trq-1"))
    assert outcome.state == TransferState.COMMITTED and outcome.amount_minor == 1_200
    after = balances(server, banks)
    assert after["streambank"] == before["streambank"] - 1_200
    assert after["payeefsp"] == before["payeefsp"] + 1_200
    assert pending_total(server) == 0
    # Declined by the payer: REJECTED, nothing moves.
    trq_id, state = await ask("3")
    assert state["transactionRequestState"] == "RECEIVED"
    while not any(type(m) is RequestToPayNotice and m.request_id == trq_id for m in notices):
        assert time.monotonic() < deadline + 10, notices
        await asyncio.sleep(0.02)
    rejected = payee.expect(f"/transactionRequests/{trq_id}")
    stream.decide_request_to_pay(RequestToPayDecision(
        payee_participant_id=banks["payeefsp"][0], request_id=trq_id, approved=False))
    assert json.loads((await asyncio.wait_for(rejected, 10)).body)[
        "transactionRequestState"] == "REJECTED"
    assert balances(server, banks) == after
    for received in payee.received:
        check_against_spec(received.method, received.path, received.headers, received.body)
