"""Issue 10 items 2 and 4 with real processes: hostile input is refused, and a kill -9 then
restart on the same data directory still works.

An operator sends requests the switch refuses through its one operator surface (the
console's JSON API: proposals and approvals, plus the read-only status port), and a
participant sends transfer and request ids with '/', spaces, newlines, non-ASCII and too
many characters, over the stream SDK, over hand-written stream frames (what a client without
the SDK's checks can send) and over the HTTP connector; a request-to-pay approval names the
id of the payer's earlier RETURN. Each gets a typed refusal. Then the switch process is
killed with SIGKILL and started again: it must come up (a refused request journaled in a
form replay cannot read would stop it for good), with the same balances, answer a status
query for an earlier transfer as before and commit a new payment.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import quote

import msgspec
import pytest

from connectors.sdk import Decision, InvalidRequest
from connectors.sdk.stream_client import StreamClient
from connectors.stream.limits import PROTOCOL_VERSION
from connectors.stream.protocol import (
    Hello,
    ProtocolErrorFrame,
    Push,
    Reply,
    Request,
    Welcome,
    frame,
    server_frame_decoder,
)
from switch.admin.client import OperatorApiError
from switch.core.messages import (
    AliasRegistration,
    ErrorAnswer,
    Party,
    PayeeAnswer,
    Refused,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    ReturnRequest,
    StatusQuery,
    TransferOutcome,
    TransferRef,
    TransferRequest,
)
from switch.core.results import RequestToPayState, Result, TransferState
from switch.launcher import AdminError, free_port

pytestmark = pytest.mark.slow

FUNDING_MINOR = 10**9
WALLET_ALIAS = Party(alias_type="MSISDN", alias_value="+254711000001")
# Ids outside the one id grammar (ASCII letters and digits, then '.', '_', ':', '-').
HOSTILE_IDS = ["a/b", "../etc", "a b", "a\nb", "t-1\n", "caf\u00e9", "-lead", "x" * 65,
               "y" * 300]
WAIT_S = 20.0


def expires_ns() -> int:
    return time.time_ns() + 60 * 10**9


async def until(found, what: str):
    """Wait for a pushed message: `found()` returns it (or None while it has not arrived)."""
    deadline = time.monotonic() + WAIT_S
    while (value := found()) is None:
        assert time.monotonic() < deadline, f"no {what} within {WAIT_S}s"
        await asyncio.sleep(0.01)
    return value


def accept(credit_request) -> Decision:
    return Decision(True)


def pushed(messages: list, kind: type, **fields):
    """The first message of `kind` in `messages` whose fields equal `fields`, else None."""
    for message in messages:
        if type(message) is kind and all(getattr(message, k) == v for k, v in fields.items()):
            return message
    return None


class RawStream:
    """A participant writing stream frames by hand: msgspec Structs are not validated when
    built, so this sends exactly what a client without the SDK's checks could send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.corr = 0
        self.pushes: list = []

    @classmethod
    async def connect(cls, port: int, api_key: str) -> RawStream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        raw = cls(reader, writer)
        writer.write(frame(Hello(version=PROTOCOL_VERSION, api_key=api_key)))
        assert type(await raw.read()) is Welcome
        return raw

    async def read(self):
        head = await asyncio.wait_for(self.reader.readexactly(4), WAIT_S)
        body = await asyncio.wait_for(self.reader.readexactly(int.from_bytes(head, "big")),
                                      WAIT_S)
        answer = server_frame_decoder.decode(body)
        assert type(answer) is not ProtocolErrorFrame, answer  # the connection must stay
        return answer

    async def ask(self, message):
        """Send one request; the reply on its corr (pushes meanwhile are kept)."""
        self.corr += 1
        self.writer.write(frame(Request(corr=self.corr, message=message)))
        while True:
            answer = await self.read()
            if type(answer) is Reply and answer.corr == self.corr:
                return answer.message
            if type(answer) is Push:
                self.pushes.append(answer.message)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def http(port: int, method: str, target: bytes, api_key: str, body=None
               ) -> tuple[int, bytes]:
    """One request to the HTTP connector with the path bytes exactly as given; (status,
    body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: 127.0.0.1",
            b"Connection: close", f"X-Api-Key: {api_key}".encode()]
    if body is not None:
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(payload)]
    writer.write(b"\r\n".join(head) + b"\r\n\r\n" + payload)
    try:
        answer_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
        lines = answer_head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next((int(line.split(":", 1)[1]) for line in lines
                       if line.lower().startswith("content-length:")), 0)
        answer = await asyncio.wait_for(reader.readexactly(length), WAIT_S)
    finally:
        writer.close()
    return status, answer


def error_name(answer: bytes) -> str:
    """The Result name of a typed HTTP error body ({"result", "name", "detail"})."""
    body = json.loads(answer)
    assert body["name"] in Result.__members__, body
    assert Result[body["name"]] == body["result"], body
    return body["name"]


# -- the operator ------------------------------------------------------------------------


def refuse_hostile_operator_requests(switch, bank_id: int) -> None:
    """Requests the switch refuses, through every operator door there is: each answered
    with a typed refusal, none recorded as a proposal."""
    maker, checker = switch.operators()
    proposals = maker.get("/api/admin/proposals")
    fund = {"kind": "fund", "participant_id": bank_id, "currency": "KES", "amount_minor": 100}
    onboard = {"kind": "onboard", "name": "bank_c", "participant_kind": "bank",
               "currencies": ["KES"]}
    hostile = [
        ({**fund, "amount_minor": 0}, "amount_minor"),
        ({**fund, "amount_minor": 2**64}, "amount_minor"),
        ({**fund, "currency": "kes"}, "currency"),
        ({**fund, "currency": "KES\n"}, "currency"),
        ({**fund, "kind": "defund", "amount_minor": -1}, "amount_minor"),
        ({**fund, "request_id": "req 1"}, "request_id"),  # ids are the switch's, not theirs
        ({**onboard, "name": "n" * 141}, "name"),
        ({**onboard, "name": ""}, "name"),
        ({**onboard, "currencies": ["kes"]}, "currencies"),
        ({"kind": "settlement_confirm", "window_id": 1, "rtgs_reference": "ref 1"},
         "rtgs_reference"),
        ({"kind": "callback_url", "participant_id": bank_id,
          "callback_url": "http://bank a/cb"}, "callback_url"),
        ({"kind": "category", "participant_id": bank_id, "category": "A B"}, "category"),
    ]
    for body, field in hostile:
        with pytest.raises(OperatorApiError) as refused:
            maker.propose(body)
        assert (refused.value.status, refused.value.result) == (400, "VALIDATION_ERROR"), body
        assert field in refused.value.detail, (body, refused.value.detail)
    for proposal_id in ("p-0123 456789abcdef", "p-0123456789abcde\n"):
        with pytest.raises(OperatorApiError) as refused:
            checker.decide(quote(proposal_id, safe=""), True)
        assert (refused.value.status, refused.value.result) == (404, "PROPOSAL_NOT_FOUND")
    # The token port of old changes nothing, token or not.
    with pytest.raises(AdminError) as refused:
        switch.post("/admin/funds", {"participant_id": bank_id, "currency": "kes",
                                     "amount_minor": 0, "request_id": "req 1"})
    assert refused.value.status == 405
    assert json.loads(refused.value.body)["name"] == "VALIDATION_ERROR"
    assert maker.get("/api/admin/proposals") == proposals  # nothing recorded


def defund_more_than_funded(switch, bank_id: int) -> None:
    """A request of the right shape that the core refuses when it is carried out: journaled
    as the core saw it, failed, and nothing moved."""
    maker, checker = switch.operators()
    before = switch.positions()
    proposal = maker.propose({"kind": "defund", "participant_id": bank_id, "currency": "KES",
                              "amount_minor": 10**15})
    view = checker.decide(proposal["proposal_id"], True)
    assert view["state"] == "failed", view
    assert view["core_result"] == Result.ADMIN_FUNDS_INSUFFICIENT, view
    assert switch.positions() == before


# -- the participants --------------------------------------------------------------------


def hostile_messages(bad: str, bank_id: int) -> list[tuple[object, str]]:
    """(message naming `bad` where an id belongs, the field the refusal must name)."""
    expiry = expires_ns()
    messages = [
        (TransferRequest(transfer_id=bad, payee=Party(alias_type="MSISDN",
                                                      alias_value="+254711000002"),
                         amount_minor=10, currency="KES", expires_at_ns=expiry),
         "$.message.transfer_id"),
        (ReturnRequest(transfer_id=bad, original=TransferRef(payer_participant_id=bank_id,
                                                             transfer_id="good-1"),
                       amount_minor=10, expires_at_ns=expiry), "$.message.transfer_id"),
        (ReturnRequest(transfer_id="ret-2", original=TransferRef(payer_participant_id=bank_id,
                                                                 transfer_id=bad),
                       amount_minor=10, expires_at_ns=expiry),
         "$.message.original.transfer_id"),
        (PayeeAnswer(payer_participant_id=bank_id, transfer_id=bad, accepted=True),
         "$.message.transfer_id"),
        (StatusQuery(payer_participant_id=bank_id, transfer_id=bad), "$.message.transfer_id"),
        (RequestToPay(request_id=bad, payer=Party(alias_type="MSISDN",
                                                  alias_value="+254711000002"),
                      amount_minor=10, currency="KES", expires_at_ns=expiry),
         "$.message.request_id"),
        (RequestToPayDecision(payee_participant_id=bank_id, request_id=bad, approved=False),
         "$.message.request_id"),
    ]
    if bad:  # an empty transfer id is the decoder's for a decline: see the empty approval
        messages.append((RequestToPayDecision(
            payee_participant_id=bank_id, request_id="rtp-1", approved=True, transfer_id=bad,
            expires_at_ns=expiry), "$.message.transfer_id"))
    return messages


async def refuse_hostile_http(port: int, wallet_key: str, bank_id: int) -> None:
    """The same ids over the HTTP connector, in bodies and in paths."""
    expiry = expires_ns()
    for bad in HOSTILE_IDS:
        bodies = [
            ("POST", b"/transfers", {"transfer_id": bad, "payee": {
                "alias_type": "MSISDN", "alias_value": "+254711000002"}, "amount_minor": 10,
                "currency": "KES", "expires_at_ns": expiry}, "$.transfer_id"),
            ("POST", b"/returns", {"transfer_id": bad, "original": {
                "payer_participant_id": bank_id, "transfer_id": "good-1"}, "amount_minor": 10,
                "expires_at_ns": expiry}, "$.transfer_id"),
            ("POST", b"/requests-to-pay", {"request_id": bad, "payer": {
                "alias_type": "MSISDN", "alias_value": "+254711000002"}, "amount_minor": 10,
                "currency": "KES", "expires_at_ns": expiry}, "$.request_id"),
            ("PUT", f"/requests-to-pay/{bank_id}/rtp-1".encode(), {
                "approved": True, "transfer_id": bad, "expires_at_ns": expiry},
             "$.transfer_id"),
        ]
        for method, target, body, field in bodies:
            status, answer = await http(port, method, target, wallet_key, body)
            assert (status, error_name(answer)) == (400, "VALIDATION_ERROR"), (target, bad)
            assert field in json.loads(answer)["detail"], (target, bad)
        segment = quote(bad, safe="").encode()
        for method, target, body in (
                ("GET", b"/transfers/%d/" % bank_id + segment, None),
                ("PUT", b"/transfers/%d/" % bank_id + segment, {"accepted": True}),
                ("PUT", b"/requests-to-pay/%d/" % bank_id + segment, {"approved": False})):
            status, answer = await http(port, method, target, wallet_key, body)
            assert (status, error_name(answer)) == (400, "ID_INVALID"), (target, bad)
    # Unencoded: a '/' makes another path; raw UTF-8 bytes are not an id either.
    status, answer = await http(port, "GET", b"/transfers/%d/a/b" % bank_id, wallet_key)
    assert status == 404
    error_name(answer)
    status, answer = await http(port, "GET", b"/transfers/%d/caf\xc3\xa9" % bank_id,
                                wallet_key)
    assert 400 <= status < 500
    error_name(answer)


async def before_the_crash(switch, bank: dict, wallet: dict) -> dict:
    """Valid traffic (a payment, its partial return, a request-to-pay approved), hostile
    input around it; the outcomes to ask for again after the restart."""
    bank_id = bank["participant_id"]
    wallet_id = wallet["participant_id"]
    http_port = switch.config["http"]["port"]
    bank_pushes: list = []
    wallet_pushes: list = []
    wallet_client = await StreamClient.connect(
        "127.0.0.1", switch.stream_port, api_key=wallet["api_key"], on_credit_request=accept,
        on_push=wallet_pushes.append)
    bank_client = await StreamClient.connect(
        "127.0.0.1", switch.stream_port, api_key=bank["api_key"], on_credit_request=accept,
        on_push=bank_pushes.append)
    registered = await wallet_client.register_aliases([AliasRegistration(
        alias_type="MSISDN", alias_value=WALLET_ALIAS.alias_value, account_ref="acc-w-1",
        owner_national_id="1234567890", display_name="Jane Doe")])
    assert registered.registered == 1

    paid = await bank_client.transfer(TransferRequest(
        transfer_id="good-1", payee=WALLET_ALIAS, amount_minor=1000, currency="KES",
        expires_at_ns=expires_ns(), payer_account_ref="acc-b-1", payer_user_ref="u1"),
        timeout_s=WAIT_S)
    assert (paid.state, paid.result) == (TransferState.COMMITTED, Result.OK), paid
    returned = await wallet_client.transfer(ReturnRequest(
        transfer_id="ret-1", original=TransferRef(payer_participant_id=bank_id,
                                                  transfer_id="good-1"),
        amount_minor=50, expires_at_ns=expires_ns(), reason="refund"), timeout_s=WAIT_S)
    assert (returned.state, returned.result) == (TransferState.COMMITTED, Result.OK), returned
    opened = await asyncio.wait_for(bank_client.request_to_pay(RequestToPay(
        request_id="rtp-1", payer=WALLET_ALIAS, amount_minor=700, currency="KES",
        expires_at_ns=expires_ns(), payee_account_ref="acc-b-1")), WAIT_S)
    assert opened.state is RequestToPayState.OPEN, opened
    await until(lambda: pushed(wallet_pushes, RequestToPayNotice, request_id="rtp-1"),
                "request-to-pay notice")

    # The SDK refuses every hostile id before writing a byte.
    for bad in HOSTILE_IDS:
        for send, message in (
                (bank_client.submit_transfer, TransferRequest(
                    transfer_id=bad, payee=WALLET_ALIAS, amount_minor=10, currency="KES",
                    expires_at_ns=expires_ns())),
                (wallet_client.decide_request_to_pay, RequestToPayDecision(
                    payee_participant_id=bank_id, request_id="rtp-1", approved=True,
                    transfer_id=bad, expires_at_ns=expires_ns())),
                (bank_client.request_to_pay, RequestToPay(
                    request_id=bad, payer=WALLET_ALIAS, amount_minor=10, currency="KES",
                    expires_at_ns=expires_ns()))):
            with pytest.raises(InvalidRequest) as refused:
                send(message)
            assert refused.value.result is Result.VALIDATION_ERROR
        with pytest.raises(InvalidRequest):
            await bank_client.status(bank_id, bad)

    # Without the SDK: each frame answered VALIDATION_ERROR naming the field, and the
    # connection stays open.
    raw = await RawStream.connect(switch.stream_port, wallet["api_key"])
    for bad in HOSTILE_IDS + [""]:
        for message, field in hostile_messages(bad, bank_id):
            answer = await raw.ask(message)
            assert type(answer) is ErrorAnswer, (bad, message, answer)
            assert answer.result is Result.VALIDATION_ERROR, (bad, message)
            assert field in answer.detail, (bad, answer.detail)
    for message in (TransferRequest(transfer_id="t-zero", payee=WALLET_ALIAS, amount_minor=0,
                                    currency="KES", expires_at_ns=expires_ns()),
                    TransferRequest(transfer_id="t-lower", payee=WALLET_ALIAS,
                                    amount_minor=10, currency="kes",
                                    expires_at_ns=expires_ns())):
        answer = await raw.ask(message)
        assert (type(answer), answer.result) == (ErrorAnswer, Result.VALIDATION_ERROR)
    assert await raw.ask(StatusQuery(payer_participant_id=bank_id, transfer_id="good-1")
                         ) == paid
    await raw.close()

    await refuse_hostile_http(http_port, wallet["api_key"], bank_id)

    # Approvals naming an id the payer used already (its return), over the stream and over
    # HTTP, and one naming no transfer: refused, and the request stays open.
    wallet_client.decide_request_to_pay(RequestToPayDecision(
        payee_participant_id=bank_id, request_id="rtp-1", approved=True, transfer_id="ret-1",
        expires_at_ns=expires_ns()))
    await until(lambda: pushed(wallet_pushes, Refused, id="ret-1"), "refusal (stream)")
    status, answer = await http(http_port, "PUT", f"/requests-to-pay/{bank_id}/rtp-1".encode(),
                                wallet["api_key"], {"approved": True, "transfer_id": "ret-1",
                                                    "expires_at_ns": expires_ns()})
    assert status == 202, answer
    await until(lambda: [m for m in wallet_pushes if type(m) is Refused
                         and m.id == "ret-1"][1:] or None, "refusal (HTTP)")
    wallet_client.decide_request_to_pay(RequestToPayDecision(
        payee_participant_id=bank_id, request_id="rtp-1", approved=True, transfer_id="",
        expires_at_ns=expires_ns()))
    empty = await until(lambda: pushed(wallet_pushes, Refused, id="rtp-1"),
                        "refusal (empty transfer id)")
    assert empty.result is Result.ID_INVALID, empty
    for refused in (m for m in wallet_pushes if type(m) is Refused and m.id == "ret-1"):
        assert refused.request_type == "transfer", refused
        assert refused.scope_participant_id == wallet_id, refused
        assert refused.result is Result.EXISTS_WITH_DIFFERENT_BODY, refused
    assert await wallet_client.status(wallet_id, "ret-1") == returned  # the return stands

    wallet_client.decide_request_to_pay(RequestToPayDecision(
        payee_participant_id=bank_id, request_id="rtp-1", approved=True,
        transfer_id="rtp-pay-1", expires_at_ns=expires_ns()))
    approved = await until(lambda: pushed(bank_pushes, RequestToPayOutcome, request_id="rtp-1",
                                          state=RequestToPayState.APPROVED), "approval")
    assert approved.transfer_id == "rtp-pay-1"
    rtp_paid = await until(lambda: pushed(wallet_pushes, TransferOutcome,
                                          transfer_id="rtp-pay-1",
                                          state=TransferState.COMMITTED), "payment of rtp-1")
    assert rtp_paid.amount_minor == 700

    outcomes = {
        (bank_id, "good-1"): await bank_client.status(bank_id, "good-1"),
        (wallet_id, "ret-1"): await wallet_client.status(wallet_id, "ret-1"),
        (wallet_id, "rtp-pay-1"): await wallet_client.status(wallet_id, "rtp-pay-1"),
    }
    assert outcomes[(bank_id, "good-1")] == paid
    assert outcomes[(wallet_id, "rtp-pay-1")].state is TransferState.COMMITTED
    await bank_client.close()
    await wallet_client.close()
    return outcomes


async def after_the_restart(switch, bank: dict, wallet: dict, outcomes: dict) -> TransferOutcome:
    """Earlier outcomes answered as before (stream and HTTP), hostile paths still refused,
    and a new payment commits; its outcome."""
    bank_id = bank["participant_id"]
    http_port = switch.config["http"]["port"]
    wallet_client = await StreamClient.connect(
        "127.0.0.1", switch.stream_port, api_key=wallet["api_key"],
        on_credit_request=accept)
    bank_client = await StreamClient.connect("127.0.0.1", switch.stream_port,
                                             api_key=bank["api_key"])
    for (payer_id, transfer_id), outcome in outcomes.items():
        client = bank_client if payer_id == bank_id else wallet_client
        assert await client.status(payer_id, transfer_id) == outcome, transfer_id
        status, answer = await http(http_port, "GET",
                                    f"/transfers/{payer_id}/{transfer_id}".encode(),
                                    bank["api_key"] if client is bank_client
                                    else wallet["api_key"])
        assert status == 200, answer
        assert msgspec.json.decode(answer, type=TransferOutcome) == outcome
    for bad in HOSTILE_IDS:
        status, answer = await http(http_port, "GET", b"/transfers/%d/" % bank_id
                                    + quote(bad, safe="").encode(), bank["api_key"])
        assert (status, error_name(answer)) == (400, "ID_INVALID"), bad
    after = await bank_client.transfer(TransferRequest(
        transfer_id="after-1", payee=WALLET_ALIAS, amount_minor=1234, currency="KES",
        expires_at_ns=expires_ns(), payer_user_ref="u1"), timeout_s=WAIT_S)
    await bank_client.close()
    await wallet_client.close()
    return after


def test_hostile_input_is_refused_and_a_sigkill_restart_keeps_the_books(rig):
    switch = rig.switch(http_enabled=True, http={"port": free_port()},
                        snapshot_every_events=8)
    switch.add_currency("KES", 404)
    bank = switch.onboard_participant("bank_a", "bank", ["KES"], funding_minor=FUNDING_MINOR)
    wallet = switch.onboard_participant("wallet_a", "wallet", ["KES"],
                                        funding_minor=FUNDING_MINOR)
    bank_id = bank["participant_id"]
    wallet_id = wallet["participant_id"]

    refuse_hostile_operator_requests(switch, bank_id)
    outcomes = asyncio.run(before_the_crash(switch, bank, wallet))
    defund_more_than_funded(switch, bank_id)

    deadline = time.monotonic() + WAIT_S
    while True:  # quiet: nothing in flight, no snapshot being written
        health = switch.get("/health")
        if health["in_flight"] == 0 and health["snapshot"]["taken"] >= 1 and not (
                health["snapshot"]["writing"]):
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    positions = switch.positions()
    proposals = switch.operators()[0].get("/api/admin/proposals")
    assert positions[bank_id]["accounts"]["KES"]["debits_posted"] == 1000
    assert positions[wallet_id]["accounts"]["KES"]["debits_posted"] == 50 + 700

    switch.kill()
    switch.start()  # same data directory and ports: the newest snapshot, then the journal
    health = switch.wait_role("primary")  # started, and accepting
    assert health["status"] == "ok", health
    assert health["recovered_from_sequence"] > 0, health
    assert switch.positions() == positions
    assert switch.operators()[0].get("/api/admin/proposals") == proposals

    after = asyncio.run(after_the_restart(switch, bank, wallet, outcomes))
    assert (after.state, after.result) == (TransferState.COMMITTED, Result.OK), after
    moved = switch.positions()
    for participant_id, side in ((bank_id, "debits_posted"), (wallet_id, "credits_posted")):
        assert (moved[participant_id]["accounts"]["KES"][side]
                - positions[participant_id]["accounts"]["KES"][side]) == 1234
