"""The gateway and the sequencer on a real in-process switch: API keys, back-pressure,
draining, and the rule that nothing is revealed before it is durable."""

from __future__ import annotations

import asyncio
import time

import pytest

from switch.core.messages import (
    CreditRequest,
    ErrorAnswer,
    Party,
    PayeeAnswer,
    Refused,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
)
from switch.core.results import Result, TransferState
from switch.server.journal import decode_tick
from switch.app import CREDENTIALS_FILE
from switch.testing import onboard, start_test_server

ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")


class RecordingSink:
    def __init__(self, on_deliver=None) -> None:
        self.messages: list = []
        self.flushes = 0
        self.on_deliver = on_deliver

    def deliver(self, message) -> None:
        self.messages.append(message)
        if self.on_deliver is not None:
            self.on_deliver(message)

    def flush(self) -> None:
        self.flushes += 1


def transfer(transfer_id: str) -> TransferRequest:
    return TransferRequest(transfer_id=transfer_id, payee=ALIAS, amount_minor=100,
                           currency="KES", expires_at_ns=time.time_ns() + 30 * 10**9,
                           payer_user_ref="u1")


@pytest.fixture
async def world(tmp_path):
    server = await start_test_server(str(tmp_path))
    participants = await onboard(server, ["bank_a", "bank_b"])
    payee_id = participants["bank_b"][0]
    answer = await server.gateway.register_alias(
        payee_id, alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
        owner_national_id="1234567890", display_name="Jane Doe")
    assert answer.result is Result.OK
    yield server, participants
    await server.stop(drain_s=0)


async def until(condition, timeout_s: float = 5.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def durable_transfer_ids(server) -> set[str]:
    found = set()
    for record in server.journal.backend.records():
        for _now_ns, event in decode_tick(record):
            if type(event) is TransferRequested:
                found.add(event.request.transfer_id)
    return found


async def test_api_keys_are_checked_and_stored_hashed(world, tmp_path):
    server, participants = world
    payer_id, api_key = participants["bank_a"]
    gateway = server.gateway
    assert gateway.authenticate(api_key) == payer_id
    assert gateway.authenticate(api_key[:-1] + ("A" if api_key[-1] != "A" else "B")) is None
    assert gateway.authenticate("") is None
    assert gateway.authenticate("x" * 1000) is None
    stored = (tmp_path / CREDENTIALS_FILE).read_bytes()
    assert api_key.encode() not in stored
    assert api_key.split("_", 2)[2].encode() not in stored  # ponte_<key id>_<secret>


async def test_a_full_inbound_queue_answers_server_busy_and_records_nothing(tmp_path):
    server = await start_test_server(str(tmp_path), inbound_queue_max=2)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        payer_id = participants["bank_a"][0]
        gateway = server.gateway
        retained = server.core.transfers_retained
        # No await between the calls: the sequencer cannot drain in between.
        results = [gateway.submit(payer_id, transfer(f"b-{i}")) for i in range(3)]
        assert results == [Result.OK, Result.OK, Result.SERVER_BUSY]
        await until(lambda: gateway.inbound_depth == 0)
        status = await gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                            transfer_id="b-2"))
        assert type(status) is Refused and status.result is Result.TRANSFER_NOT_FOUND
        assert server.core.transfers_retained == retained  # both unroutable: refused, unrecorded
    finally:
        await server.stop(drain_s=0)


async def test_messages_are_released_only_once_durable(world):
    server, participants = world
    payer_id = participants["bank_a"][0]
    payee_id = participants["bank_b"][0]
    gateway = server.gateway
    checked = []

    def check(message) -> None:
        if type(message) is CreditRequest:
            # At the moment of release, the transfer's event is in a durable record.
            checked.append(message.transfer_id in durable_transfer_ids(server))

    payee = RecordingSink(check)
    payer = RecordingSink()
    gateway.attach(payee_id, payee)
    gateway.attach(payer_id, payer)
    for i in range(5):
        assert gateway.submit(payer_id, transfer(f"d-{i}")) is Result.OK
    await until(lambda: len(checked) == 5)
    assert checked == [True] * 5
    for message in list(payee.messages):
        gateway.submit(payee_id, PayeeAnswer(payer_participant_id=payer_id,
                                             transfer_id=message.transfer_id, accepted=True))
    await until(lambda: len(payer.messages) == 5)
    assert all(type(m) is TransferOutcome and m.state is TransferState.COMMITTED
               for m in payer.messages)
    assert payee.flushes >= 1


async def test_draining_refuses_new_work_but_finishes_what_is_in_flight(world):
    server, participants = world
    payer_id = participants["bank_a"][0]
    payee_id = participants["bank_b"][0]
    gateway = server.gateway
    payee = RecordingSink()
    gateway.attach(payee_id, payee)
    gateway.submit(payer_id, transfer("in-flight"))
    await until(lambda: payee.messages)
    gateway.drain()
    assert gateway.submit(payer_id, transfer("late")) is Result.SERVICE_UNAVAILABLE
    assert gateway.submit(payee_id, PayeeAnswer(
        payer_participant_id=payer_id, transfer_id="in-flight", accepted=True)) is Result.OK
    await until(lambda: server.core.in_flight_count == 0)
    outcome = await gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                         transfer_id="in-flight"))
    assert outcome.state is TransferState.COMMITTED


async def test_unknown_alias_is_refused_party_not_found(world):
    server, participants = world
    payer_id = participants["bank_a"][0]
    sink = RecordingSink()
    server.gateway.attach(payer_id, sink)
    request = TransferRequest(transfer_id="nobody", payee=Party(alias_type="MSISDN",
                                                                alias_value="+254799999999"),
                              amount_minor=100, currency="KES",
                              expires_at_ns=time.time_ns() + 10**10, payer_user_ref="u1")
    server.gateway.submit(payer_id, request)
    await until(lambda: sink.messages)
    (refused,) = sink.messages
    assert type(refused) is Refused and refused.result is Result.PARTY_NOT_FOUND
    assert refused.id == "nobody"
    answer = await server.gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                               transfer_id="nobody"))
    assert answer.result is Result.TRANSFER_NOT_FOUND


async def test_a_stranger_cannot_read_a_transfers_status(world):
    server, participants = world
    payer_id = participants["bank_a"][0]
    payee_id = participants["bank_b"][0]
    stranger = (await onboard(server, ["bank_c"]))["bank_c"][0]
    gateway = server.gateway
    sink = RecordingSink()
    gateway.attach(payee_id, sink)
    gateway.submit(payer_id, transfer("private"))
    await until(lambda: sink.messages)
    query = StatusQuery(payer_participant_id=payer_id, transfer_id="private")
    assert (await gateway.status(payee_id, query)).state is TransferState.FORWARDED
    answer = await gateway.status(stranger, query)
    assert type(answer) is Refused and answer.result is Result.TRANSFER_NOT_FOUND
    assert type(await gateway.status(payer_id, query)) is TransferOutcome


async def test_closed_gateway_answers_service_unavailable(world):
    server, participants = world
    payer_id = participants["bank_a"][0]
    server.gateway.close()
    assert server.gateway.submit(payer_id, transfer("x")) is Result.SERVICE_UNAVAILABLE
    answer = await server.gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                               transfer_id="x"))
    assert type(answer) is ErrorAnswer and answer.result is Result.SERVICE_UNAVAILABLE


async def test_outcomes_beyond_the_cores_window_are_answered_from_the_archive(tmp_path):
    server = await start_test_server(
        str(tmp_path), core={"transfers_retained_max": 40, "in_flight_max": 10})
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        payer_id = participants["bank_a"][0]
        payee_id = participants["bank_b"][0]
        gateway = server.gateway
        await gateway.register_alias(
            payee_id, alias_type="MSISDN", alias_value=ALIAS.alias_value,
            account_ref="acc-1", owner_national_id="1234567890", display_name="Jane Doe")

        class Answerer:
            def deliver(self, message) -> None:
                if type(message) is CreditRequest:
                    gateway.submit(payee_id, PayeeAnswer(
                        payer_participant_id=payer_id, transfer_id=message.transfer_id,
                        accepted=True))

            def flush(self) -> None:
                pass

        gateway.attach(payee_id, Answerer())
        payer = RecordingSink()
        gateway.attach(payer_id, payer)
        for batch in range(6):
            for i in range(10):
                request = TransferRequest(
                    transfer_id=f"old-{batch}-{i}", payee=ALIAS, amount_minor=10,
                    currency="KES", expires_at_ns=time.time_ns() + 200_000_000,
                    payer_user_ref="u1")
                assert gateway.submit(payer_id, request) is Result.OK
            await until(lambda: len(payer.messages) == 10 * (batch + 1))
            await asyncio.sleep(0.25)  # their expiry passes: the core may drop them
        assert server.core.transfer_outcome(payer_id, "old-0-0") is None  # dropped
        answer = await gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                            transfer_id="old-0-0"))
        assert type(answer) is TransferOutcome
        assert answer.state is TransferState.COMMITTED and answer.amount_minor == 10
        stranger = (await onboard(server, ["bank_c"]))["bank_c"][0]
        hidden = await gateway.status(stranger, StatusQuery(payer_participant_id=payer_id,
                                                            transfer_id="old-0-0"))
        assert type(hidden) is Refused and hidden.result is Result.TRANSFER_NOT_FOUND
    finally:
        await server.stop(drain_s=0)


async def test_one_participants_status_flood_is_bounded_and_others_are_answered(tmp_path):
    """Issue 18 item 6 (the gateway's part): a participant may have only
    `status_per_participant_max` status queries waiting; the rest are SERVER_BUSY at once,
    and another participant's queries are still taken."""
    server = await start_test_server(str(tmp_path), status_per_participant_max=8)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        flooder, other = participants["bank_a"][0], participants["bank_b"][0]
        query = StatusQuery(payer_participant_id=flooder, transfer_id="nothing")
        flood = [asyncio.ensure_future(server.gateway.status(flooder, query))
                 for _ in range(200)]
        calm = asyncio.ensure_future(server.gateway.status(other, StatusQuery(
            payer_participant_id=other, transfer_id="nothing")))
        answers = await asyncio.gather(*flood)
        busy = [a for a in answers if type(a) is ErrorAnswer and a.result is Result.SERVER_BUSY]
        found = [a for a in answers if type(a) is Refused]
        assert len(found) == 8 and len(busy) == 192
        assert (await calm).result is Result.TRANSFER_NOT_FOUND
        # Once answered, the participant's allowance is back.
        again = await server.gateway.status(flooder, query)
        assert again.result is Result.TRANSFER_NOT_FOUND
    finally:
        await server.stop(drain_s=0)


async def test_a_participants_status_queries_are_paced_and_others_are_not_held_back(tmp_path):
    """Issue 18 item 6: bounding waiting queries alone does not stop a flood (a flooder
    sends more as fast as answers come back). Past `status_rate_per_participant` a second
    (a burst of one second's worth) a query waits for its turn before it is queued; every
    one is still answered, and another participant's query is answered while the
    flooder's paced ones are still waiting."""
    server = await start_test_server(str(tmp_path), status_per_participant_max=256,
                                     status_rate_per_participant=20.0)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        flooder, other = participants["bank_a"][0], participants["bank_b"][0]
        query = StatusQuery(payer_participant_id=flooder, transfer_id="nothing")
        flood = [asyncio.ensure_future(server.gateway.status(flooder, query))
                 for _ in range(40)]  # 20 in the burst, 20 paced over the next second
        calm = await server.gateway.status(other, StatusQuery(
            payer_participant_id=other, transfer_id="nothing"))
        assert calm.result is Result.TRANSFER_NOT_FOUND
        waiting = sum(not future.done() for future in flood)
        assert waiting >= 10  # the other's answer did not wait behind the flooder's turns
        answers = await asyncio.gather(*flood)
        assert [a.result for a in answers] == [Result.TRANSFER_NOT_FOUND] * 40
    finally:
        await server.stop(drain_s=0)


def test_status_pacing_turns_follow_the_rate_with_a_one_second_burst():
    """The pacing arithmetic (GCRA): a second's worth at once, then one turn per interval;
    unused time carries over up to one second; rate 0 turns pacing off."""
    from switch.server.gateway import Gateway

    gateway = Gateway(core=None, directory=None, credentials=None, inbound_max=16,
                      status_rate_per_participant=10.0)
    turns = [gateway._status_turn(7, 100.0) for _ in range(15)]
    assert turns[:11] == [0.0] * 11  # the burst, and the turn that falls on now
    assert [round(turn, 6) for turn in turns[11:]] == [100.1, 100.2, 100.3, 100.4]
    assert gateway._status_turn(8, 100.0) == 0.0  # another participant has its own turns
    # At 100.5 the queued turns have passed: the next is now, the one after it 0.1 s on.
    assert gateway._status_turn(7, 100.5) == 0.0
    assert round(gateway._status_turn(7, 100.5), 6) == 100.6
    assert Gateway(core=None, directory=None, credentials=None, inbound_max=16,
                   status_rate_per_participant=0.0)._status_interval_s == 0.0
