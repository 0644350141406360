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


async def pay_until_refused(payer, prefix: str, count: int) -> list:
    outcomes = []
    for index in range(count):
        outcome = await asyncio.wait_for(payer.submit_transfer(short(f"{prefix}{index}")), 10)
        outcomes.append(outcome)
        if type(outcome) is Refused:
            break
        await asyncio.sleep(0.15)  # the writer tries (and fails) in between
    return outcomes


async def registered_clients(server, participants):
    payer, payee = await clients(server, participants)
    answer = await payee.register_aliases([AliasRegistration(
        alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="acc-1",
        owner_national_id="1234567890", display_name="Jane Doe")])
    assert answer.registered == 1
    return payer, payee


async def test_a_history_store_that_cannot_keep_up_bounds_memory_by_refusing_new_work(tmp_path):
    """The history store refuses writes (read-only: a full disk, lost permissions) but
    reads: outcomes wait in memory, and past HISTORY_UNCONFIRMED_FACTOR x
    outcomes_archived_max new transfers are refused SERVER_BUSY — memory stays bounded,
    nothing is lost, status queries are still answered. Writable again, the backlog drains
    and the switch takes new work."""
    from switch.server import limits

    server = await start_test_server(str(tmp_path), **TINY)
    payer = payee = None
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        payer, payee = await registered_clients(server, participants)
        store = server.history.store

        def query_only(on: bool) -> None:
            store._executor.submit(store._db.execute,
                                   f"PRAGMA query_only = {'ON' if on else 'OFF'}").result()

        query_only(True)
        bound = limits.HISTORY_UNCONFIRMED_FACTOR * TINY["outcomes_archived_max"]
        outcomes = await pay_until_refused(payer, "b", 40)
        refused = outcomes[-1]
        assert type(refused) is Refused and refused.result is Result.SERVER_BUSY, outcomes
        assert all(o.state is TransferState.COMMITTED for o in outcomes[:-1])
        assert len(outcomes) > bound  # it took what it could first
        assert server.shell.archive.unconfirmed <= bound + server.core.config.in_flight_max
        assert server.history.failures > 0
        assert server.durability()["history"]["refusing_new_work"] is True
        payer_id = participants["bank_a"][0]
        status = await server.gateway.status(payer_id, StatusQuery(
            payer_participant_id=payer_id, transfer_id="b0"))
        assert type(status) is TransferOutcome and status.state is TransferState.COMMITTED

        query_only(False)
        await server.history.flush()
        assert server.shell.archive.unconfirmed == 0
        again = await asyncio.wait_for(payer.submit_transfer(short("after")), 10)
        assert type(again) is TransferOutcome and again.state is TransferState.COMMITTED
        assert server.durability()["history"]["refusing_new_work"] is False
    finally:
        for client in (payer, payee):
            if client is not None:
                await client.close()
        await server.stop(drain_s=0)


async def test_a_history_store_that_cannot_be_read_refuses_unknown_ids_and_never_stops(
        tmp_path):
    """The history store is gone (reads fail): a new transfer id might be a resend of one
    only the history holds, so it is refused SERVICE_UNAVAILABLE — never taken for a new
    transfer, and the sequencer goes on (found: the failed read stopped the switch). Back,
    and payments flow again."""
    from switch.store.history import EmbeddedHistoryStore

    server = await start_test_server(str(tmp_path), **TINY)
    payer = payee = None
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        payer, payee = await registered_clients(server, participants)
        before = short("before")
        first = await asyncio.wait_for(payer.submit_transfer(before), 10)
        assert first.state is TransferState.COMMITTED
        gone = server.history.store
        await gone.close()
        refused = await asyncio.wait_for(payer.submit_transfer(short("during")), 10)
        assert type(refused) is Refused and refused.result is Result.SERVICE_UNAVAILABLE
        assert not server.failed and server.sequencer.history_read_failures >= 1
        held = await asyncio.wait_for(payer.submit_transfer(before), 10)  # the core holds it
        assert type(held) is TransferOutcome and held.state is TransferState.COMMITTED
        payer_id = participants["bank_a"][0]
        unknown = await server.gateway.status(payer_id, StatusQuery(
            payer_participant_id=payer_id, transfer_id="never-sent"))
        assert unknown.result is Result.SERVICE_UNAVAILABLE, unknown

        back = EmbeddedHistoryStore(str(tmp_path / "history.sqlite3"))
        server.history.store = server.sequencer.history = back
        await asyncio.sleep(1.2)  # past HISTORY_RETRY_S
        again = await asyncio.wait_for(payer.submit_transfer(short("after")), 10)
        assert type(again) is TransferOutcome and again.state is TransferState.COMMITTED
        await back.close()
        server.history.store = server.sequencer.history = gone  # the server closes its own
    finally:
        for client in (payer, payee):
            if client is not None:
                await client.close()
        await server.stop(drain_s=0)


async def test_a_full_replay_keeps_memory_bounded_by_outcomes_archived_max(tmp_path):
    """The replay at a restart trims the memory archive as a live tick does: without a
    durable history it holds at most outcomes_archived_max outcomes after replaying a
    journal of many more (it kept every final it replayed, ~900 bytes a transfer, and a
    50M-transfer replay ran out of memory)."""
    options = {**TINY, "history_enabled": False}
    server = await start_test_server(str(tmp_path), **options)
    participants = await onboard(server, ["bank_a", "bank_b"])
    payer, payee = await clients(server, participants)
    try:
        assert (await payee.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="acc-1",
            owner_national_id="1234567890", display_name="Jane Doe")])).registered == 1
        for round_ in range(5):
            await asyncio.sleep(1.1)  # past the earlier ones' expiry: the core may drop them
            for index in range(6):  # the core's table (8) keeps finals until they expire
                outcome = await asyncio.wait_for(
                    payer.submit_transfer(short(f"r{round_}-{index}")), 10)
                assert outcome.state is TransferState.COMMITTED, outcome
    finally:
        await payer.close()
        await payee.close()
        await server.stop()
    server = await start_test_server(str(tmp_path), **options)
    try:
        archive = server.shell.archive
        assert server.replayed_events > 30
        assert archive._archived > TINY["outcomes_archived_max"]  # it archived many...
        assert len(archive._finals) <= TINY["outcomes_archived_max"]  # ...and kept few
        assert len(archive._order) <= TINY["outcomes_archived_max"]
    finally:
        await server.stop()


@pytest.mark.parametrize("wanted", [0, 1, 3, 255, 256, 257, 700])
async def test_the_embedded_history_answers_a_batch_as_one_select_a_key_would(tmp_path, wanted):
    """`get_many` reads keys in padded chunks of VALUES joined with the table: across chunk
    boundaries, with repeated keys and absent ones, it finds exactly the stored rows."""
    from switch.store.history import EmbeddedHistoryStore

    store = EmbeddedHistoryStore(str(tmp_path / "history.db"))
    try:
        rows = [((index % 7 + 1, f"tx-{index}"), f"final-{index}".encode(), index)
                for index in range(0, 1_400, 2)]
        await store.put_many(rows)
        keys = [(index % 7 + 1, f"tx-{index}") for index in range(wanted)]
        keys += keys[:3] + [(9, "tx-0"), (1, "tx-00")]  # repeats; near misses of stored keys
        expected = {key: final for key, final, _ in rows if key in set(keys)}
        assert await store.get_many(keys) == expected
        one_by_one = {key: store._db.execute(
            "SELECT final FROM transfer_history WHERE payer_participant_id = ? "
            "AND transfer_id = ?", key).fetchone() for key in keys}
        assert expected == {key: row[0] for key, row in one_by_one.items() if row is not None}
    finally:
        await store.close()
