"""The durable transfer history: status queries, resends and returns of transfers the core
and the memory archive have long dropped are answered from the history store after any
number of restarts — on SQLite (embedded) and on PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import (
    AliasRegistration,
    Party,
    Refused,
    ReturnRequest,
    StatusQuery,
    TransferOutcome,
    TransferRef,
    TransferRequest,
)
from switch.core.results import Result, TransferState
from switch.testing import onboard, start_test_server

PAYEE_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
# The core keeps 8 transfers and memory 2 more: everything older lives in the history only.
TINY = {"core": {"transfers_retained_max": 8, "in_flight_max": 4},
        "outcomes_archived_max": 2, "snapshots_enabled": False}


async def clients(server, participants):
    port = server.stream_port
    payee = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_b"][1],
                                       on_credit_request=lambda cr: Decision(True))
    payer = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_a"][1],
                                       on_credit_request=lambda cr: Decision(True))  # returns
    return payer, payee


def short(transfer_id: str, amount_minor: int = 100) -> TransferRequest:
    return TransferRequest(transfer_id=transfer_id, payee=PAYEE_ALIAS, amount_minor=amount_minor,
                           currency="KES", expires_at_ns=time.time_ns() + 10**9)


async def first_life(server, participants) -> TransferRequest:
    payer, payee = await clients(server, participants)
    try:
        answer = await payee.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="acc-1",
            owner_national_id="1234567890", display_name="Jane Doe")])
        assert answer.registered == 1
        old = short("old", 1_000)
        assert (await asyncio.wait_for(payer.submit_transfer(old), 10)).state is (
            TransferState.COMMITTED)
        for round_ in range(4):  # push "old" out of the core and out of memory
            await asyncio.sleep(1.1)  # past the earlier ones' expiry: the core may drop them
            for index in range(6):
                outcome = await asyncio.wait_for(
                    payer.submit_transfer(short(f"f{round_}-{index}")), 10)
                assert outcome.state is TransferState.COMMITTED, outcome
        await server.history.flush()
        payer_id = participants["bank_a"][0]
        # A tick after the confirmation: memory forgets what the history holds now.
        await server.gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                          transfer_id="f3-5"))
        assert server.core.transfer_record(payer_id, "old") is None
        assert server.shell.archive.final(payer_id, "old") is None
        return old
    finally:
        await payer.close()
        await payee.close()


async def check_answers_from_history(server, participants, old: TransferRequest,
                                     life: int) -> None:
    payer_id, payee_id = participants["bank_a"][0], participants["bank_b"][0]
    status = await server.gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                               transfer_id="old"))
    assert type(status) is TransferOutcome and status.state is TransferState.COMMITTED
    payee_view = await server.gateway.status(payee_id, StatusQuery(
        payer_participant_id=payer_id, transfer_id="old"))
    assert type(payee_view) is TransferOutcome  # the payee was sent it: it may read it
    payer, payee = await clients(server, participants)
    try:
        same = await asyncio.wait_for(payer.submit_transfer(old), 10)
        assert type(same) is TransferOutcome and same.state is TransferState.COMMITTED
        changed = TransferRequest(transfer_id="old", payee=PAYEE_ALIAS, amount_minor=999,
                                  currency="KES", expires_at_ns=time.time_ns() + 30 * 10**9)
        refused = await asyncio.wait_for(payer.submit_transfer(changed), 10)
        assert type(refused) is Refused
        assert refused.result is Result.EXISTS_WITH_DIFFERENT_AMOUNT
        first = await asyncio.wait_for(payee.submit_transfer(ReturnRequest(
            transfer_id=f"ret-{time.time_ns()}", original=TransferRef(
                payer_participant_id=payer_id, transfer_id="old"),
            amount_minor=300, expires_at_ns=time.time_ns() + 30 * 10**9)), 10)
        assert type(first) is TransferOutcome and first.state is TransferState.COMMITTED, (life, first)
        too_much = await asyncio.wait_for(payee.submit_transfer(ReturnRequest(
            transfer_id=f"ret2-{time.time_ns()}", original=TransferRef(
                payer_participant_id=payer_id, transfer_id="old"),
            amount_minor=1_000 - 300 * life + 1, expires_at_ns=time.time_ns() + 30 * 10**9)), 10)
        # 1,000 paid, 300 returned in each life so far: one unit more than what is left.
        assert too_much.result is Result.RETURN_EXCEEDS_ORIGINAL, too_much
    finally:
        await payer.close()
        await payee.close()


async def run_three_lives(data_dir: str, **backends) -> None:
    server = await start_test_server(data_dir, **TINY, **backends)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        old = await first_life(server, participants)
    finally:
        await server.stop(drain_s=0)
    for life in (1, 2):  # after any number of restarts; returns add up across them
        server = await start_test_server(data_dir, **TINY, **backends)
        try:
            await check_answers_from_history(server, participants, old, life)
        finally:
            await server.stop(drain_s=0)


async def test_old_transfers_are_answered_from_the_embedded_history(tmp_path):
    await run_three_lives(str(tmp_path))


@pytest.mark.postgres
async def test_old_transfers_are_answered_from_the_postgres_history(tmp_path, postgres_dsn):
    await run_three_lives(str(tmp_path), journal="postgres", store="postgres",
                          postgres_dsn=postgres_dsn)


async def test_a_return_outside_the_schemes_window_is_refused(tmp_path):
    from switch.core.messages import SchemeRules
    from switch.core.results import Result

    server = await start_test_server(str(tmp_path), snapshots_enabled=False)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"],
                                     rules=SchemeRules(return_window_days=1))
        payer, payee = await clients(server, participants)
        try:
            await payee.register_aliases([AliasRegistration(
                alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="a",
                owner_national_id="1234567890", display_name="Jane Doe")])
            original = await asyncio.wait_for(payer.submit_transfer(short("o")), 10)
            assert original.state is TransferState.COMMITTED
            # Two days later (the core's clock is the server's: move the record instead).
            record = server.core.transfer_record(participants["bank_a"][0], "o")
            record.decided_at_ns -= 2 * 86_400 * 10**9
            late = await asyncio.wait_for(payee.submit_transfer(ReturnRequest(
                transfer_id="late", original=TransferRef(
                    payer_participant_id=participants["bank_a"][0], transfer_id="o"),
                amount_minor=10, expires_at_ns=time.time_ns() + 30 * 10**9)), 10)
            assert late.state is TransferState.REJECTED
            assert late.result is Result.RETURN_WINDOW_CLOSED
        finally:
            await payer.close()
            await payee.close()
    finally:
        await server.stop(drain_s=0)


async def test_flushes_at_once_store_each_row_once_and_confirm_it_once(tmp_path):
    """The writer's own flush and another (stop, a test, a takeover) at the same moment:
    every queued row reaches the store and is confirmed exactly once — none dropped from
    the pending list unstored, none confirmed twice (found as an occasional assertion)."""
    from switch.core.config import CoreConfig
    from switch.server.history import HistoryWriter
    from switch.server.shell import OutcomeArchive
    from switch.store.history import EmbeddedHistoryStore

    store = EmbeddedHistoryStore(str(tmp_path / "history.db"))
    archive = OutcomeArchive(4, CoreConfig(), durable=True)
    keys = [(1, f"t{index}") for index in range(40)]
    for index, key in enumerate(keys):
        archive._archive(key, b"final-%d" % index, 1_000 + index)
    writer = HistoryWriter(store, archive, retention_days=400)
    try:
        await asyncio.gather(writer.flush(), writer.flush(), writer.flush())
        assert archive._written == archive._archived == len(keys)
        assert writer.rows_written == len(keys) and writer.backlog == 0
        stored = await store.get_many(keys)
        assert stored == {key: b"final-%d" % index for index, key in enumerate(keys)}
    finally:
        await store.close()
