"""The PostgreSQL journal for real: migrate, append, COPY-commit, verify, tamper, recover.

Each test gets a fresh database from the `postgres_dsn` fixture and applies the shipped
migrations exactly as `ponte db migrate` does.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest

from journal_child import BATCH_INTERVAL_NS, MixedWorkload, setup_batches
from ledger.journal_format import (
    JournalBufferFull,
    JournalCorrupt,
    JournalFailed,
    JournalInvalidAppend,
    JournalLocked,
    JournalMissing,
    RecordKind,
    RecordProblem,
)
from ledger.journal_postgres import PostgresJournal, PostgresSnapshotStore
from ledger.recovery import recover_postgres
from ledger.types import CreateTransferResult, Transfer, pack_transfers
from switch.store.migrate import migrate_dsn

pytestmark = pytest.mark.postgres


@pytest.fixture
async def migrated(postgres_dsn):
    applied = await migrate_dsn(postgres_dsn)
    assert 1 in applied
    return postgres_dsn


async def write_records(dsn, count: int, *, name: str = "ledger", per_commit: int = 4):
    journal = await PostgresJournal.open(dsn, name=name)
    written = []
    for index in range(count):
        payload = bytes([index % 256]) * (index * 13 % 200)
        kind = (RecordKind.CREATE_TRANSFERS, 16, 255)[index % 3]
        journal.append(kind, 5_000 + index, payload)
        written.append((kind, 5_000 + index, payload))
        if (index + 1) % per_commit == 0:
            await journal.commit()
    assert await journal.commit() == count
    await journal.close()
    return written


async def read_all(dsn, name: str = "ledger"):
    seen = []
    journal = await PostgresJournal.open(dsn, name=name, on_record=seen.append)
    await journal.close()
    return seen


async def sql(dsn, statement: str, *args):
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.execute(statement, *args)
    finally:
        await connection.close()


def test_ponte_db_migrate_creates_the_journal_tables(postgres_dsn):
    command = [sys.executable, "-m", "switch.cli", "db", "migrate", "--postgres-dsn",
               postgres_dsn]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "0001" in result.stdout

    async def tables():
        connection = await asyncpg.connect(postgres_dsn)
        try:
            return {row["tablename"] for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        finally:
            await connection.close()

    assert {"ledger_journal", "ledger_snapshot"} <= asyncio.run(tables())


async def test_unmigrated_database_is_a_typed_error(postgres_dsn):
    with pytest.raises(JournalMissing):
        await PostgresJournal.open(postgres_dsn)


async def test_round_trip_and_reopen_continues_the_chain(migrated):
    written = await write_records(migrated, 11)
    records = await read_all(migrated)
    assert [(r.kind, r.now_ns, r.payload) for r in records] == written
    assert [r.sequence for r in records] == list(range(1, 12))
    journal = await PostgresJournal.open(migrated)
    assert journal.position.sequence == 11
    assert journal.position.record_hash == records[-1].record_hash
    assert journal.append(16, 1, b"next") == 12
    assert await journal.commit() == 12
    assert [r.sequence async for r in journal.records(after_sequence=10)] == [11, 12]
    await journal.close()


async def test_nothing_is_visible_before_commit(migrated):
    journal = await PostgresJournal.open(migrated)
    journal.append(16, 1, b"a")
    journal.append(16, 2, b"b")
    connection = await asyncpg.connect(migrated)
    try:
        assert await connection.fetchval("SELECT count(*) FROM ledger_journal") == 0
        assert await journal.commit() == 2
        assert await connection.fetchval("SELECT count(*) FROM ledger_journal") == 2
    finally:
        await connection.close()
        await journal.close()


async def test_journals_with_different_names_are_independent(migrated):
    await write_records(migrated, 3, name="ledger-usd")
    await write_records(migrated, 5, name="switch-events")
    assert len(await read_all(migrated, "ledger-usd")) == 3
    assert len(await read_all(migrated, "switch-events")) == 5


async def test_bad_append_and_full_buffer_change_nothing(migrated):
    journal = await PostgresJournal.open(migrated, commit_records_max=2)
    journal.append(16, 1, b"one")
    before = (journal.appended_position, journal.buffered_records)
    with pytest.raises(JournalInvalidAppend):
        journal.append(7, 1, b"")
    with pytest.raises(JournalInvalidAppend):
        journal.append(16, -1, b"")
    journal.append(16, 2, b"two")
    with pytest.raises(JournalBufferFull):
        journal.append(16, 3, b"three")
    assert journal.buffered_records == 2
    assert before[0].sequence == 1
    assert await journal.commit() == 2
    await journal.close()
    assert [r.payload for r in await read_all(migrated)] == [b"one", b"two"]


async def test_second_writer_is_locked_out(migrated):
    journal = await PostgresJournal.open(migrated)
    with pytest.raises(JournalLocked):
        await PostgresJournal.open(migrated)
    await journal.close()
    again = await PostgresJournal.open(migrated)  # the lock went with the session
    await again.close()


@pytest.mark.parametrize("tamper, problem, sequence", [
    ("UPDATE ledger_journal SET payload = overlay(payload placing '\\xff'::bytea from 3) "
     "WHERE sequence = 5", RecordProblem.BAD_CHECKSUM, 5),
    ("UPDATE ledger_journal SET header = overlay(header placing '\\x00'::bytea from 30) "
     "WHERE sequence = 4", RecordProblem.BAD_HEADER_CHECKSUM, 4),
    ("DELETE FROM ledger_journal WHERE sequence = 6", RecordProblem.SEQUENCE_OUT_OF_ORDER, 6),
    ("UPDATE ledger_journal SET kind = 16 WHERE sequence = 7 AND kind <> 16",
     RecordProblem.COLUMN_MISMATCH, 7),
    # Swap the contents of two rows (a reordering that keeps the primary keys).
    ("UPDATE ledger_journal AS target SET header = source.header, "
     "payload = source.payload FROM ledger_journal AS source "
     "WHERE (target.sequence, source.sequence) IN ((3, 8), (8, 3))",
     RecordProblem.SEQUENCE_OUT_OF_ORDER, 3),
])
async def test_a_tampered_row_stops_start_up_naming_its_sequence(migrated, tamper, problem,
                                                                 sequence):
    await write_records(migrated, 10)  # row 7 has kind CREATE_TRANSFERS (index 6)
    await sql(migrated, tamper)
    with pytest.raises(JournalCorrupt) as raised:
        await PostgresJournal.open(migrated)
    assert raised.value.problem == problem
    assert raised.value.sequence == sequence
    assert f"sequence={sequence}" in str(raised.value)


async def run_durable(durable, batches: int, now_ns: int = BATCH_INTERVAL_NS, *,
                      seed: int = 5, store=None, snapshot_every: int = 0) -> int:
    if durable.journal.appended_position.sequence == 0:
        accounts, funding = setup_batches()
        assert durable.create_accounts(accounts, now_ns) == []
        assert durable.create_transfers(funding, now_ns) == []
        await durable.commit()
    workload = MixedWorkload(seed)
    for index in range(batches):
        now_ns += BATCH_INTERVAL_NS
        durable.expire_pending(now_ns)
        durable.create_transfers(workload.batch(150), now_ns)
        await durable.commit()
        if snapshot_every and (index + 1) % snapshot_every == 0:
            await durable.snapshot(store)
    return now_ns


async def test_recover_with_snapshot_equals_full_replay(migrated, ledger_cls):
    recovered = await recover_postgres(migrated, ledger_class=ledger_cls)
    store = PostgresSnapshotStore(migrated)
    await run_durable(recovered.durable, 14, store=store, snapshot_every=5)
    digest = recovered.ledger.digest()
    last = recovered.journal.position.sequence
    await recovered.journal.close()

    again = await recover_postgres(migrated, ledger_class=ledger_cls)
    assert 0 < again.snapshot_sequence < last
    assert again.records_replayed == last - again.snapshot_sequence
    assert again.ledger.digest() == digest
    await again.journal.close()

    bounded = await recover_postgres(migrated, ledger_class=ledger_cls,
                                     verify_from_genesis=False)
    assert bounded.ledger.digest() == digest
    await bounded.journal.close()

    await sql(migrated, "DELETE FROM ledger_snapshot")
    full = await recover_postgres(migrated, ledger_class=ledger_cls)
    assert full.snapshot_sequence == 0 and full.records_replayed == last
    assert full.ledger.digest() == digest
    await full.journal.close()


async def test_recover_detects_a_tampered_row(migrated, ledger_cls):
    recovered = await recover_postgres(migrated, ledger_class=ledger_cls)
    await run_durable(recovered.durable, 5)
    await recovered.journal.close()
    await sql(migrated, "UPDATE ledger_journal SET payload = overlay(payload placing "
                        "'\\x07'::bytea from 40) WHERE sequence = 4")
    with pytest.raises(JournalCorrupt) as raised:
        await recover_postgres(migrated, ledger_class=ledger_cls)
    assert raised.value.sequence == 4
    assert raised.value.problem == RecordProblem.BAD_CHECKSUM


async def test_damaged_snapshot_row_is_skipped(migrated, ledger_cls):
    recovered = await recover_postgres(migrated, ledger_class=ledger_cls)
    store = PostgresSnapshotStore(migrated)
    await run_durable(recovered.durable, 6, store=store, snapshot_every=3)
    digest = recovered.ledger.digest()
    await recovered.journal.close()
    await sql(migrated, "UPDATE ledger_snapshot SET state = overlay(state placing "
                        "'\\x01'::bytea from 50) WHERE sequence = (SELECT max(sequence) "
                        "FROM ledger_snapshot)")
    again = await recover_postgres(migrated, ledger_class=ledger_cls)
    assert again.ledger.digest() == digest
    await again.journal.close()


async def test_find_transfer_in_postgres(migrated, ledger_cls):
    from ledger.config import LedgerConfig
    from ledger.journal_find import find_transfer

    config = LedgerConfig(transfers_retained_max=200, pending_max=100)
    recovered = await recover_postgres(migrated, ledger_class=ledger_cls, config=config)
    durable = recovered.durable
    accounts, funding = setup_batches()
    durable.create_accounts(accounts, 1_000)
    durable.create_transfers(funding, 1_000)
    original = Transfer(id=4242, debit_account_id=12, credit_account_id=15, amount_minor=3,
                        ledger=1, code=1)
    durable.create_transfers(pack_transfers([original]), 2_000)
    (recorded,) = durable.lookup_transfers([4242])
    await durable.commit()
    await run_durable(durable, 6, now_ns=3_000)
    assert durable.lookup_transfers([4242]) == []
    found = await find_transfer(recovered.journal, 4242)
    assert found.transfer == recorded
    assert found.result == CreateTransferResult.OK
    assert found.sequence == 3
    assert await find_transfer(recovered.journal, 77_777_777_777) is None
    await recovered.journal.close()


async def test_a_failed_commit_poisons_the_journal(migrated):
    journal = await PostgresJournal.open(migrated)
    journal.append(16, 1, b"a")
    await journal.commit()
    # Another session inserts the next sequence first: a real COPY failure (duplicate key).
    await sql(migrated, "INSERT INTO ledger_journal (journal_name, sequence, kind, header, "
                        "payload, epoch) VALUES ('ledger', 2, 16, $1, '', 1)", bytes(96))
    journal.append(16, 2, b"b")
    with pytest.raises(JournalFailed):
        await journal.commit()
    assert journal.failed
    with pytest.raises(JournalFailed):
        journal.append(16, 3, b"c")
    await journal.close()
    # The foreign row is not on the chain: start-up refuses it, naming sequence 2.
    with pytest.raises(JournalCorrupt) as raised:
        await PostgresJournal.open(migrated)
    assert raised.value.sequence == 2
