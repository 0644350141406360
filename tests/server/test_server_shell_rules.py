"""Rules the deciding shell holds, on a real in-process switch (real core, journal file,
directory, stream connector and SDK): what reaches the journal, who gets which answer,
what a resend is answered, what is written about a person.

Each test here failed on the switch before the shell took these rules over (issue 10
items 2, 6 and 9, and a resend refused by the directory although the transfer had
committed)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.core import codec
from switch.core.messages import (
    AliasRegistration,
    AuditAnchored,
    CreditRequest,
    CurrencyAdded,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    ParticipantDailyLimitSet,
    ParticipantResumed,
    ParticipantSuspended,
    Party,
    SchemeRules,
    SchemeRulesChanged,
    SettlementAborted,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import Result, SettlementModel, TransferState
from switch.testing import onboard, start_test_server

PAYEE_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
NATIONAL_ID = "1985123144"  # ten digits: well formed for the simulators' directory rules


def transfer(transfer_id: str, payee: Party = PAYEE_ALIAS, amount_minor: int = 100):
    return TransferRequest(transfer_id=transfer_id, payee=payee, amount_minor=amount_minor,
                           currency="KES", expires_at_ns=time.time_ns() + 30 * 10**9,
                           payer_user_ref="u1")


async def register(client: StreamClient, alias: Party, owner: str = "1234567890") -> None:
    answer = await client.register_aliases([AliasRegistration(
        alias_type=alias.alias_type, alias_value=alias.alias_value, account_ref="acc-1",
        owner_national_id=owner, display_name="Jane Doe")])
    assert answer.registered == 1, answer


# -- issue 10 item 2: nothing refused reaches the journal in a form replay cannot read -----

def _invalid_admin_events() -> list:
    """One operator event per type and broken field, built without validation (as a
    hand-written admin client would)."""
    replace = msgspec.structs.replace
    rules = SchemeRules()
    valid = [
        CurrencyAdded(request_id="c1", currency="USD", ledger_id=840,
                      settlement_model=SettlementModel.PREFUNDED_RTGS, rules=rules),
        SchemeRulesChanged(request_id="r1", currency="KES", rules=rules),
        ParticipantAdded(request_id="p1", participant_id=77, name="bank_z"),
        ParticipantAccountOpened(request_id="o1", participant_id=1, currency="KES"),
        ParticipantSuspended(request_id="s1", participant_id=1),
        ParticipantResumed(request_id="u1", participant_id=1),
        ParticipantDailyLimitSet(request_id="d1", participant_id=1, currency="KES",
                                 daily_total_max_minor=5),
        FundsDeposited(request_id="f1", participant_id=1, currency="KES", amount_minor=5),
        FundsWithdrawn(request_id="w1", participant_id=1, currency="KES", amount_minor=5),
        NetDebitCapSet(request_id="n1", participant_id=1, currency="KES", cap_minor=5),
        AuditAnchored(request_id="a1", audit_seq=1, audit_hash="ab" * 32),
        SettlementScheduleSet(request_id="ss1", currency="KES", interval_s=3600,
                              cutoffs_s=(61_200,), utc_offset_s=-10_800),
        SettlementWindowClosed(request_id="sc1", currency="KES", window_id=1),
        SettlementConfirmed(request_id="sf1", window_id=1, rtgs_reference="RTGS-1"),
        SettlementAborted(request_id="sa1", window_id=1, reason="down"),
    ]
    broken = []
    for event in valid:
        broken.append(replace(event, request_id="has a space"))
        broken.append(replace(event, request_id="x" * 65))
        fields = event.__struct_fields__
        if "currency" in fields:
            broken.append(replace(event, request_id="lc-" + event.request_id, currency="kes"))
        if "amount_minor" in fields:
            broken.append(replace(event, request_id="zero-" + event.request_id, amount_minor=0))
        if "participant_id" in fields:
            broken.append(replace(event, request_id="pid-" + event.request_id, participant_id=0))
        if "name" in fields:
            broken.append(replace(event, request_id="long-" + event.request_id, name="n" * 141))
        if "cap_minor" in fields:
            broken.append(replace(event, request_id="neg-" + event.request_id, cap_minor=-1))
        if "audit_hash" in fields:
            broken.append(replace(event, request_id="hash-" + event.request_id,
                                  audit_hash="ab" * 32 + "\n"))
            broken.append(replace(event, request_id="seq-" + event.request_id, audit_seq=0))
        if "window_id" in fields:
            broken.append(replace(event, request_id="wid-" + event.request_id, window_id=-1))
        if "rtgs_reference" in fields:
            broken.append(replace(event, request_id="ref-" + event.request_id,
                                  rtgs_reference="two words"))
        if "cutoffs_s" in fields:
            broken.append(replace(event, request_id="cut-" + event.request_id,
                                  cutoffs_s=(86_400,)))
            broken.append(replace(event, request_id="off-" + event.request_id,
                                  utc_offset_s=15 * 3600))
        if "rules" in fields:
            broken.append(replace(event, request_id="fee-" + event.request_id,
                                  rules=replace(rules, fee_bps=10**9)))
    return broken


INVALID_ADMIN_EVENTS = _invalid_admin_events()


def test_every_operator_event_type_has_invalid_cases():
    from switch.core.messages import AdminEvent

    covered = {type(event) for event in INVALID_ADMIN_EVENTS}
    assert covered == set(AdminEvent.__args__)
    for event in INVALID_ADMIN_EVENTS:
        with pytest.raises(msgspec.ValidationError):
            codec.validated(event)


async def test_refused_operator_requests_are_not_journaled_and_the_switch_restarts(tmp_path):
    server = await start_test_server(str(tmp_path))
    try:
        await onboard(server, ["bank_a"])
        for event in INVALID_ADMIN_EVENTS:
            answer = await server.gateway.admin(event)
            assert answer.result is Result.VALIDATION_ERROR, (event, answer)
    finally:
        await server.stop(drain_s=0)
    # Every record of the journal decodes, so a new process starts and has everything.
    again = await start_test_server(str(tmp_path))
    try:
        assert again.core.participant_id_by_name("bank_a") is not None
        assert again.replayed_events > 0
    finally:
        await again.stop(drain_s=0)


async def test_invalid_participant_messages_are_refused_at_the_door_and_never_journaled(
        tmp_path):
    """Each participant message type with a broken field, sent as a raw stream frame: the
    connector's decoder (the same types the journal decoder uses) refuses it."""
    from connectors.stream.protocol import (
        FrameReader,
        Hello,
        append_frame,
        server_frame_decoder,
    )

    server = await start_test_server(str(tmp_path))
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        reader, writer = await asyncio.open_connection("127.0.0.1", server.stream_port)
        out = bytearray()
        append_frame(out, Hello(version=1, api_key=participants["bank_a"][1]))
        far = time.time_ns() + 30 * 10**9
        broken = [
            {"type": "transfer", "transfer_id": "a/b", "payee": PAYEE_ALIAS,
             "amount_minor": 1, "currency": "KES", "expires_at_ns": far},
            {"type": "transfer", "transfer_id": "t1", "payee": PAYEE_ALIAS,
             "amount_minor": 0, "currency": "KES", "expires_at_ns": far},
            {"type": "transfer", "transfer_id": "t2", "payee": PAYEE_ALIAS,
             "amount_minor": 1, "currency": "kes", "expires_at_ns": far},
            {"type": "transfer", "transfer_id": "t3", "amount_minor": 1, "currency": "KES",
             "payee": {"alias_type": "PHONE", "alias_value": "1"}, "expires_at_ns": far},
            {"type": "return", "transfer_id": "r 1", "amount_minor": 1, "expires_at_ns": far,
             "original": {"payer_participant_id": 2, "transfer_id": "x"}},
            {"type": "payee_answer", "payer_participant_id": 0, "transfer_id": "x",
             "accepted": True},
            {"type": "status_query", "payer_participant_id": 2, "transfer_id": "x\ny"},
            {"type": "request_to_pay", "request_id": "q\u00e9", "payer": PAYEE_ALIAS,
             "amount_minor": 1, "currency": "KES", "expires_at_ns": far},
            {"type": "request_to_pay_decision", "payee_participant_id": 2,
             "request_id": "", "approved": False},
            {"type": "resolve", "alias": {"alias_type": "MSISDN", "alias_value": ""}},
        ]
        for corr, message in enumerate(broken, 1):
            append_frame(out, {"type": "request", "corr": corr, "message": message})
        writer.write(out)
        await writer.drain()
        frames = FrameReader()
        answers = {}
        deadline = time.monotonic() + 5
        while len(answers) < len(broken) and time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(65536), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
            assert data, f"connection closed after {answers}"
            frames.feed(data)
            while (frame := frames.next_frame()) is not None:
                decoded = server_frame_decoder.decode(frame)
                if hasattr(decoded, "corr"):
                    answers[decoded.corr] = decoded.message
        assert {corr: answer.result for corr, answer in answers.items()} == {
            corr: Result.VALIDATION_ERROR for corr in range(1, len(broken) + 1)}
        writer.close()
    finally:
        await server.stop(drain_s=0)
    again = await start_test_server(str(tmp_path))
    await again.stop(drain_s=0)


# -- issue 10 item 6: every push reaches the connection that asked ---------------------

async def test_each_connection_of_a_participant_gets_the_outcomes_of_its_own_transfers(
        tmp_path):
    server = await start_test_server(str(tmp_path))
    clients = []
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        port = server.stream_port
        payee = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_b"][1],
                                           on_credit_request=lambda cr: Decision(True))
        clients.append(payee)
        await register(payee, PAYEE_ALIAS)
        payers = [await StreamClient.connect("127.0.0.1", port,
                                             api_key=participants["bank_a"][1])
                  for _ in range(3)]
        clients += payers
        futures = [payer.submit_transfer(transfer(f"c{index}-{n}"))
                   for index, payer in enumerate(payers) for n in range(25)]
        done, pending = await asyncio.wait(futures, timeout=15)
        assert not pending, f"{len(pending)} of {len(futures)} outcomes never arrived"
        assert all(f.result().state is TransferState.COMMITTED for f in done)
    finally:
        for client in clients:
            await client.close()
        await server.stop(drain_s=0)


# -- a resend is answered from what was recorded, whatever the directory says now -----

async def test_a_resend_after_the_alias_was_deleted_gets_the_recorded_outcome(tmp_path):
    server = await start_test_server(str(tmp_path))
    clients = []
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        port = server.stream_port
        payee = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_b"][1],
                                           on_credit_request=lambda cr: Decision(True))
        payer = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_a"][1])
        clients += [payee, payer]
        await register(payee, PAYEE_ALIAS)
        request = transfer("once")
        first = await asyncio.wait_for(payer.submit_transfer(request), 10)
        assert first.state is TransferState.COMMITTED
        answer = await server.gateway.delete_alias(
            participants["bank_b"][0], alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value)
        assert answer.result is Result.OK
        # The payer never saw the outcome (say) and resends: the payment happened, and the
        # answer must say so — not PARTY_NOT_FOUND, which reads as "not paid".
        again = await asyncio.wait_for(payer.submit_transfer(request), 10)
        assert type(again) is TransferOutcome, again
        assert again.state is TransferState.COMMITTED
    finally:
        for client in clients:
            await client.close()
        await server.stop(drain_s=0)


# -- issue 10 item 9: a raw national ID is neither journaled nor forwarded ------------

async def test_a_payment_to_a_national_id_journals_and_forwards_only_the_token(tmp_path):
    server = await start_test_server(str(tmp_path))
    clients = []
    seen: list[CreditRequest] = []

    def accept(credit_request: CreditRequest) -> Decision:
        seen.append(credit_request)
        return Decision(True)

    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        port = server.stream_port
        payee = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_b"][1],
                                           on_credit_request=accept)
        payer = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_a"][1])
        clients += [payee, payer]
        alias = Party(alias_type="NATIONAL_ID", alias_value=NATIONAL_ID)
        await register(payee, alias, owner=NATIONAL_ID)
        request = transfer("nid-1", alias)
        outcome = await asyncio.wait_for(payer.submit_transfer(request), 10)
        assert outcome.state is TransferState.COMMITTED
        # A resend with the raw ID is recognised as the same payment.
        again = await asyncio.wait_for(payer.submit_transfer(request), 10)
        assert type(again) is TransferOutcome, again
        assert again.state is TransferState.COMMITTED
        assert len(seen) == 1
        forwarded = seen[0].payee_alias
        assert forwarded.alias_type == "NATIONAL_ID"
        assert forwarded.alias_value != NATIONAL_ID
        assert len(forwarded.alias_value) == 64  # the identity token, hex
    finally:
        for client in clients:
            await client.close()
        await server.stop(drain_s=0)
    journal = b"".join(path.read_bytes() for path in (tmp_path / "journal").iterdir())
    assert journal and NATIONAL_ID.encode() not in journal


# -- an old transfer's outcome survives a restart (the archive replays with the journal) --

async def test_an_archived_outcome_is_still_answered_after_a_restart(tmp_path):
    small = {"core": {"transfers_retained_max": 8, "in_flight_max": 4}}
    server = await start_test_server(str(tmp_path), **small)
    clients = []
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        port = server.stream_port
        payee = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_b"][1],
                                           on_credit_request=lambda cr: Decision(True))
        payer = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_a"][1])
        clients += [payee, payer]
        await register(payee, PAYEE_ALIAS)
        for transfer_id in ["old"] + [f"filler-{index}" for index in range(7)]:
            short = TransferRequest(transfer_id=transfer_id, payee=PAYEE_ALIAS,
                                    amount_minor=100, currency="KES",
                                    expires_at_ns=time.time_ns() + 10**9)
            outcome = await asyncio.wait_for(payer.submit_transfer(short), 10)
            assert outcome.state is TransferState.COMMITTED
        await asyncio.sleep(1.1)  # past their expiry: the core may drop them for room
        outcome = await asyncio.wait_for(payer.submit_transfer(transfer("new")), 10)
        assert outcome.state is TransferState.COMMITTED  # the core's table of 8 was full
        assert server.core.transfer_record(participants["bank_a"][0], "old") is None
    finally:
        for client in clients:
            await client.close()
        await server.stop(drain_s=0)
    again = await start_test_server(str(tmp_path), **small)
    try:
        answer = await again.gateway.status(participants["bank_a"][0], StatusQuery(
            payer_participant_id=participants["bank_a"][0], transfer_id="old"))
        assert type(answer) is TransferOutcome, answer
        assert answer.state is TransferState.COMMITTED
    finally:
        await again.stop(drain_s=0)
