"""Stop and start a real in-process switch on the same data directory: outcomes, positions
and transfers in flight survive (full journal replay); a damaged journal stops the start."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from ledger.journal_format import JournalCorrupt
from switch.core.messages import (
    CreditRequest,
    Party,
    PayeeAnswer,
    StatusQuery,
    TransferRequest,
)
from switch.core.results import Result, TransferState
from ledger.journal_segments import list_segments
from switch.testing import onboard, start_test_server

ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")


class Sink:
    def __init__(self) -> None:
        self.messages: list = []

    def deliver(self, message) -> None:
        self.messages.append(message)

    def flush(self) -> None:
        pass


async def until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def transfer(transfer_id: str) -> TransferRequest:
    return TransferRequest(transfer_id=transfer_id, payee=ALIAS, amount_minor=250,
                           currency="KES", expires_at_ns=time.time_ns() + 60 * 10**9,
                           payer_user_ref="u1")


async def first_life(data_dir: str):
    server = await start_test_server(data_dir)
    participants = await onboard(server, ["bank_a", "bank_b"])
    payer_id = participants["bank_a"][0]
    payee_id = participants["bank_b"][0]
    await server.gateway.register_alias(
        payee_id, alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
        owner_national_id="1234567890", display_name="Jane Doe")
    payee = Sink()
    server.gateway.attach(payee_id, payee)
    for transfer_id in ("done", "no", "pending"):
        server.gateway.submit(payer_id, transfer(transfer_id))
    await until(lambda: len(payee.messages) == 3)
    for transfer_id, accepted in (("done", True), ("no", False)):
        server.gateway.submit(payee_id, PayeeAnswer(payer_participant_id=payer_id,
                                                    transfer_id=transfer_id, accepted=accepted))
    await until(lambda: server.core.in_flight_count == 1)
    positions = server.positions()
    await server.stop(drain_s=0)  # "pending" stays in flight
    return participants, positions


async def test_restart_resumes_outcomes_positions_and_in_flight(tmp_path):
    data_dir = str(tmp_path)
    participants, positions = await first_life(data_dir)
    payer_id = participants["bank_a"][0]
    payee_id = participants["bank_b"][0]
    server = await start_test_server(data_dir)
    try:
        assert server.replayed_events > 0
        assert server.positions() == positions
        assert server.core.in_flight_count == 1
        gateway = server.gateway
        assert gateway.authenticate(participants["bank_a"][1]) == payer_id  # keys persisted
        states = {}
        for transfer_id in ("done", "no", "pending"):
            outcome = await gateway.status(payer_id, StatusQuery(
                payer_participant_id=payer_id, transfer_id=transfer_id))
            states[transfer_id] = outcome.state
        assert states == {"done": TransferState.COMMITTED, "no": TransferState.REJECTED,
                          "pending": TransferState.FORWARDED}
        # The credit request of the transfer in flight is re-sent when the payee connects.
        payee = Sink()
        gateway.attach(payee_id, payee)
        assert [type(m) for m in payee.messages] == [CreditRequest]
        assert payee.messages[0].transfer_id == "pending"
        gateway.submit(payee_id, PayeeAnswer(payer_participant_id=payer_id,
                                             transfer_id="pending", accepted=True))
        await until(lambda: server.core.in_flight_count == 0)
        final = await gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                           transfer_id="pending"))
        assert final.state is TransferState.COMMITTED and final.result is Result.OK
        assert server.positions()[payee_id]["KES"]["credits_posted"] == 10**12 + 500
    finally:
        await server.stop(drain_s=0)


async def test_a_damaged_journal_refuses_to_start(tmp_path):
    data_dir = str(tmp_path)
    await first_life(data_dir)
    path = list_segments(os.path.join(data_dir, "journal"))[-1].path
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.seek(size // 3)
        byte = file.read(1)
        file.seek(size // 3)
        file.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(JournalCorrupt):
        await start_test_server(data_dir)


async def test_a_torn_tail_is_dropped_and_the_rest_replays(tmp_path):
    data_dir = str(tmp_path)
    _participants, positions = await first_life(data_dir)
    path = list_segments(os.path.join(data_dir, "journal"))[-1].path
    with open(path, "ab") as file:
        file.write(b"PJNL\x01\x00\x10")  # a record that never finished being written
    server = await start_test_server(data_dir)
    try:
        assert server.positions() == positions
    finally:
        await server.stop(drain_s=0)
