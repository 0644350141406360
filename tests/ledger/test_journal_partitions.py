"""The PostgreSQL journal partitioned by sequence, for real: migration 0022 keeps the rows
it finds, writers of several journals keep partitions ahead of themselves and never fail for
want of one, and old partitions go out to segment files (`ledger.journal_archive`) only
when snapshots cover them — and come back with `restore_archive`.

Snapshot rows here carry arbitrary state bytes in a real snapshot header (the archive
judges coverage by the header and the chain only); tests/server/test_server_journal_archive.py
does the same with real switches and their own snapshots.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from ledger.journal_archive import (
    ArchiveRefused,
    ChainSource,
    archive_partitions,
    journal_directory_name,
    journal_name_of,
    list_partitions,
    postgres_records,
    restore_archive,
)
from ledger.journal_follow import PostgresFollower
from ledger.journal_format import (
    GENESIS,
    JournalCorrupt,
    JournalPosition,
    RecordProblem,
    encode_header,
)
from ledger.journal_limits import JOURNAL_PARTITION_RECORDS_MAX, JOURNAL_PARTITION_RECORDS_MIN
from ledger.journal_postgres import PostgresJournal
from ledger.journal_segments import list_segments
from ledger.snapshot import encode_snapshot_header
from switch.store import migrate as migrations
from switch.store.migrate import migrate_dsn

pytestmark = pytest.mark.postgres

PARTITION_RECORDS = 20


@pytest.fixture
async def migrated(postgres_dsn):
    await migrate_dsn(postgres_dsn)
    await sql(postgres_dsn, "UPDATE ledger_journal_settings SET journal_partition_records = $1",
              PARTITION_RECORDS)
    return postgres_dsn


async def sql(dsn, statement: str, *args, fetch: bool = False):
    connection = await asyncpg.connect(dsn)
    try:
        if fetch:
            return await connection.fetch(statement, *args)
        return await connection.execute(statement, *args)
    finally:
        await connection.close()


async def partitions(dsn):
    connection = await asyncpg.connect(dsn)
    try:
        return await list_partitions(connection)
    finally:
        await connection.close()


async def write(journal: PostgresJournal, count: int, *, payload: bytes = b"tick",
                keep_up: bool = True) -> dict[int, JournalPosition]:
    """`count` commits of one record each; the position after each. `keep_up`: let a
    background partition upkeep finish before the next commit (no race with it)."""
    positions = {}
    for _ in range(count):
        journal.append(16, 1_000 + journal.position.sequence, payload)
        await journal.commit()
        positions[journal.position.sequence] = journal.position
        if keep_up and journal._upkeep is not None:
            await journal._upkeep
    return positions


async def add_snapshot(dsn, name: str, position: JournalPosition,
                       state: bytes = b"state") -> None:
    await sql(dsn, "INSERT INTO switch_snapshot (journal_name, sequence, data) "
                   "VALUES ($1, $2, $3)", name, position.sequence,
              encode_snapshot_header(position, state) + state)


async def chain(dsn, name: str, archive_dir: str | None = None):
    connection = await asyncpg.connect(dsn)
    source = ChainSource()
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            records = [record async for record in postgres_records(
                connection, name, archive_dir=archive_dir, source=source)]
    finally:
        await connection.close()
    return records, source


# -- migration 0022 ----------------------------------------------------------------------------

async def test_migration_0022_keeps_the_rows_it_finds_and_their_chain(postgres_dsn,
                                                                      monkeypatch):
    everything = migrations.migration_files
    monkeypatch.setattr(migrations, "migration_files",
                        lambda: [m for m in everything() if m[0] < 22])
    await migrate_dsn(postgres_dsn)
    # Rows written before partitions, as the writer of 0005 wrote them (epoch 1).
    await sql(postgres_dsn, "INSERT INTO journal_epochs (journal_name, epoch) VALUES "
                            "('switch', 1), ('other', 1)")
    rows = []
    for name, count in (("switch", 7), ("other", 3)):
        previous = GENESIS.record_hash
        for sequence in range(1, count + 1):
            payload = f"{name}-{sequence}".encode()
            header = encode_header(16, sequence, 10 + sequence, payload, previous)
            previous = header[-32:]
            rows.append((name, sequence, 16, header, payload, 1))
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.copy_records_to_table(
            "ledger_journal", records=rows,
            columns=("journal_name", "sequence", "kind", "header", "payload", "epoch"))
    finally:
        await connection.close()

    monkeypatch.setattr(migrations, "migration_files", everything)
    assert 22 in await migrate_dsn(postgres_dsn)
    (first,) = await partitions(postgres_dsn)
    assert (first.first_sequence, first.end_sequence) == (1, 8)
    assert {name: rows.count for name, rows in first.journals.items()} == {
        "switch": 7, "other": 3}
    seen = []
    journal = await PostgresJournal.open(postgres_dsn, name="switch", on_record=seen.append)
    try:
        assert [record.payload for record in seen] == [
            f"switch-{n}".encode() for n in range(1, 8)]
        assert journal.epoch == 2
        await write(journal, 3)  # on through the new partitions
    finally:
        await journal.close()
    records, source = await chain(postgres_dsn, "switch")
    assert [record.sequence for record in records] == list(range(1, 11))
    assert source.anchor == "genesis"
    # Still fenced: the trigger moved to the partitioned table (and its partitions).
    with pytest.raises(asyncpg.PostgresError) as refused:
        await sql(postgres_dsn, "INSERT INTO ledger_journal (journal_name, sequence, kind, "
                                "header, payload, epoch) VALUES ('switch', 11, 16, $1, '', 1)",
                  bytes(96))
    assert refused.value.sqlstate == "PNF01"


def test_the_partition_size_bounds_match_the_settings_check():
    from importlib import resources

    sql_text = (resources.files("switch.store.migrations") / "0022_journal_partitions.sql"
                ).read_text()
    assert (f"CHECK (journal_partition_records BETWEEN {JOURNAL_PARTITION_RECORDS_MIN} AND "
            f"{JOURNAL_PARTITION_RECORDS_MAX})") in sql_text


# -- partitions ahead of the writers ----------------------------------------------------------

async def test_writers_of_two_journals_keep_partitions_ahead_of_themselves(migrated):
    first = await PostgresJournal.open(migrated, name="switch")
    second = await PostgresJournal.open(migrated, name="ledger-usd")
    try:
        for _ in range(3 * PARTITION_RECORDS):
            for journal in (first, second):
                await write(journal, 1)
                made = await partitions(migrated)
                # The next half partition of records always has somewhere to go.
                assert max(p.end_sequence for p in made) > (
                    journal.position.sequence + PARTITION_RECORDS // 2)
        assert first.partitions_made_late == second.partitions_made_late == 0
    finally:
        await first.close()
        await second.close()
    made = await partitions(migrated)
    # Contiguous ranges shared by both journals, never a DEFAULT partition.
    assert [p.first_sequence for p in made[1:]] == [p.end_sequence for p in made[:-1]]
    assert made[0].first_sequence == 1
    assert set(made[0].journals) == {"switch", "ledger-usd"}
    default = await sql(migrated, "SELECT count(*) FROM pg_partitioned_table t JOIN pg_class c "
                                  "ON c.oid = t.partdefid", fetch=True)
    assert default[0]["count"] == 0
    for name in ("switch", "ledger-usd"):
        records, _ = await chain(migrated, name)
        assert len(records) == 3 * PARTITION_RECORDS


async def test_concurrent_writers_under_traffic_never_lack_a_partition(migrated):
    """Two journals committing as fast as they can, the upkeep racing them: whatever wins,
    every commit succeeds (the writer makes a late partition itself, before its COPY)."""
    writers = [await PostgresJournal.open(migrated, name=name) for name in ("a", "b")]

    async def traffic(journal):
        for index in range(5 * PARTITION_RECORDS):
            for _ in range(1 + index % 3):  # group commits of 1..3 records
                journal.append(16, index, b"x" * (index % 50))
            await journal.commit()
            if index % 7 == 0:
                await asyncio.sleep(0)

    try:
        await asyncio.gather(*(traffic(journal) for journal in writers))
        assert not any(journal.failed for journal in writers)
    finally:
        for journal in writers:
            await journal.close()
    for name, journal in zip(("a", "b"), writers):
        records, _ = await chain(migrated, name)
        assert len(records) == journal.position.sequence > 5 * PARTITION_RECORDS


async def test_a_partition_taken_away_under_a_writer_is_made_again_before_its_copy(migrated):
    journal = await PostgresJournal.open(migrated, name="switch")
    try:
        await write(journal, PARTITION_RECORDS // 2 + 2)  # the next partition is made
        ahead = [p for p in await partitions(migrated) if p.first_sequence > PARTITION_RECORDS]
        assert ahead
        # An operator drops the (empty) partition ahead the writer counts on.
        for partition in ahead:
            await sql(migrated, f'ALTER TABLE ledger_journal DETACH PARTITION "{partition.name}"')
            await sql(migrated, f'DROP TABLE "{partition.name}"')
        stranded = await partitions(migrated)
        assert max(p.end_sequence for p in stranded) <= PARTITION_RECORDS + 1
        await write(journal, PARTITION_RECORDS, keep_up=False)
        assert not journal.failed
        assert journal.partitions_made_late >= 1
    finally:
        await journal.close()
    records, _ = await chain(migrated, "switch")
    assert len(records) == PARTITION_RECORDS // 2 + 2 + PARTITION_RECORDS


async def test_a_promoted_standby_makes_partitions_before_its_first_commit(migrated):
    writer = await PostgresJournal.open(migrated, name="switch")
    await write(writer, PARTITION_RECORDS - 1)
    follower = await PostgresFollower.open(migrated, name="switch", on_record=None,
                                           poll_interval_s=0.05, standby="standby-1")
    await writer.close()
    await asyncio.wait_for(follower.follow(), 10)
    promoted = await follower.promote(holder="standby-1")
    try:
        assert max(p.end_sequence for p in await partitions(migrated)) > PARTITION_RECORDS + 5
        await write(promoted, PARTITION_RECORDS)
        assert promoted.partitions_made_late == 0
    finally:
        await promoted.close()


# -- archive -------------------------------------------------------------------------------

async def three_partitions(dsn, names=("switch",)) -> dict[str, dict[int, JournalPosition]]:
    """Each journal writes 2.5 partitions of records."""
    positions = {}
    for name in names:
        journal = await PostgresJournal.open(dsn, name=name)
        try:
            positions[name] = await write(journal, PARTITION_RECORDS * 5 // 2)
        finally:
            await journal.close()
    return positions


async def test_archive_refuses_what_no_snapshot_covers_and_changes_nothing(migrated, tmp_path):
    positions = await three_partitions(migrated, ("switch", "other"))
    before = [(p.name, p.records) for p in await partitions(migrated)]
    archive_dir = str(tmp_path / "archive")
    # No snapshot at all.
    with pytest.raises(ArchiveRefused, match="'other' has no usable snapshot"):
        await archive_partitions(migrated, archive_dir)
    # A snapshot of one journal only.
    await add_snapshot(migrated, "switch", positions["switch"][45])
    with pytest.raises(ArchiveRefused, match="'other' has no usable snapshot"):
        await archive_partitions(migrated, archive_dir)
    # The other's snapshot covers only part of the first partition.
    await add_snapshot(migrated, "other", positions["other"][10])
    with pytest.raises(ArchiveRefused, match="oldest retained snapshot covers 10"):
        await archive_partitions(migrated, archive_dir)
    # Its newest snapshot covers it, but the oldest retained one does not: still refused.
    await add_snapshot(migrated, "other", positions["other"][30])
    with pytest.raises(ArchiveRefused, match="oldest retained snapshot covers 10"):
        await archive_partitions(migrated, archive_dir)
    # A damaged snapshot does not count (its record hash is not the chain's).
    await sql(migrated, "DELETE FROM switch_snapshot WHERE journal_name = 'other'")
    await add_snapshot(migrated, "other", JournalPosition(sequence=30, record_hash=b"x" * 32))
    with pytest.raises(ArchiveRefused, match="'other' has no usable snapshot"):
        await archive_partitions(migrated, archive_dir)
    assert [(p.name, p.records) for p in await partitions(migrated)] == before
    assert await sql(migrated, "SELECT * FROM ledger_journal_archive", fetch=True) == []


async def test_a_journal_s_newest_record_is_never_archived(migrated, tmp_path):
    journal = await PostgresJournal.open(migrated, name="switch")
    try:
        positions = await write(journal, PARTITION_RECORDS)  # exactly one full partition
    finally:
        await journal.close()
    await add_snapshot(migrated, "switch", positions[PARTITION_RECORDS])
    with pytest.raises(ArchiveRefused, match="holds journal 'switch''s newest record"):
        await archive_partitions(migrated, str(tmp_path))


async def test_archive_writes_chained_segments_then_detaches_and_the_chain_still_reads(
        migrated, tmp_path):
    positions = await three_partitions(migrated, ("switch", "other/usd"))
    await add_snapshot(migrated, "switch", positions["switch"][42])
    await add_snapshot(migrated, "switch", positions["switch"][48])
    await add_snapshot(migrated, "other/usd", positions["other/usd"][41])
    archive_dir = str(tmp_path / "archive")
    report = await archive_partitions(migrated, archive_dir)
    assert report.archived == ["ledger_journal_p00000000000000000001",
                               "ledger_journal_p00000000000000000021"]
    assert report.kept == ["ledger_journal_detached_00000000000000000001",
                           "ledger_journal_detached_00000000000000000021"]
    assert "stays: journal 'other/usd'" in report.stopped_at
    remaining = await partitions(migrated)
    assert remaining[0].first_sequence == 41
    # The segments: the file journal's names, compressed, chained, one directory per name.
    assert journal_directory_name("other/usd").startswith("hex-")
    assert journal_name_of(journal_directory_name("other/usd")) == "other/usd"
    for name in ("switch", "other/usd"):
        segments = list_segments(os.path.join(archive_dir, journal_directory_name(name)))
        assert [s.base.sequence for s in segments] == [0, 20]
        assert all(s.archived and s.name.endswith(".journal.xz") for s in segments)
        assert segments[1].base.record_hash == positions[name][20].record_hash
    # The table alone: anchored on the last archived record.
    records, source = await chain(migrated, "switch")
    assert [r.sequence for r in records] == list(range(41, 51))
    assert "archived segment seg-00000000000000000020-" in source.anchor
    # Through the archive: from the genesis.
    records, source = await chain(migrated, "switch", archive_dir)
    assert [r.sequence for r in records] == list(range(1, 51))
    assert records[-1].record_hash == positions["switch"][50].record_hash
    # A replay from the genesis cannot happen any more, and says why.
    with pytest.raises(JournalCorrupt, match=r"records 1\.\.40 are not in the table"):
        await PostgresJournal.open(migrated, name="switch")
    # The writer goes on; a writer reopening from a snapshot reads only what is left.
    journal = await PostgresJournal.open(migrated, name="switch",
                                         start=positions["switch"][48])
    try:
        await write(journal, 2)
    finally:
        await journal.close()
    # Kept tables go once --delete finds their files whole.
    again = await archive_partitions(migrated, archive_dir, delete=True)
    assert again.dropped == report.kept
    assert again.archived == []


async def test_a_damaged_archived_segment_or_a_missing_anchor_is_named(migrated, tmp_path):
    positions = await three_partitions(migrated)
    await add_snapshot(migrated, "switch", positions["switch"][45])
    archive_dir = str(tmp_path / "archive")
    await archive_partitions(migrated, archive_dir, delete=True)
    segment = list_segments(os.path.join(archive_dir, "switch"))[1]
    data = bytearray(open(segment.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(segment.path, "wb") as file:
        file.write(bytes(data))
    with pytest.raises(JournalCorrupt) as raised:
        await chain(migrated, "switch", archive_dir)
    assert segment.name in str(raised.value)
    # Without the manifest's anchor (and no snapshot at record 40) the table's rows are
    # not trusted: they could be anything.
    await sql(migrated, "DELETE FROM ledger_journal_archive")
    with pytest.raises(JournalCorrupt) as raised:
        await chain(migrated, "switch")
    assert raised.value.problem is RecordProblem.MISSING_RECORDS
    assert "nothing anchors them" in str(raised.value)
    # A snapshot at exactly the record before the table's first anchors them.
    await add_snapshot(migrated, "switch", positions["switch"][40])
    records, source = await chain(migrated, "switch")
    assert source.anchor == "snapshot postgresql:switch_snapshot/switch/40"
    assert records[0].sequence == 41


async def test_restore_puts_archived_records_back_all_or_nothing(migrated, tmp_path):
    positions = await three_partitions(migrated, ("switch", "other"))
    await add_snapshot(migrated, "switch", positions["switch"][45])
    await add_snapshot(migrated, "other", positions["other"][45])
    archive_dir = str(tmp_path / "archive")
    await archive_partitions(migrated, archive_dir, delete=True)
    # A damaged archive restores nothing.
    segment = list_segments(os.path.join(archive_dir, "other"))[1]
    pristine = open(segment.path, "rb").read()
    with open(segment.path, "wb") as file:
        file.write(pristine[:-40])
    with pytest.raises(JournalCorrupt):
        await restore_archive(migrated, archive_dir)
    records, _ = await chain(migrated, "other")
    assert records[0].sequence == 41
    with open(segment.path, "wb") as file:
        file.write(pristine)
    report = await restore_archive(migrated, archive_dir)
    assert report.restored == {"switch": 40, "other": 40}
    for name in ("switch", "other"):
        records, source = await chain(migrated, name)
        assert source.anchor == "genesis"
        assert [r.sequence for r in records] == list(range(1, 51))
    epochs = await sql(migrated, "SELECT DISTINCT epoch FROM ledger_journal WHERE sequence "
                                 "<= 40 ORDER BY epoch", fetch=True)
    assert [row["epoch"] for row in epochs] == [0]  # restored records keep no epoch
    # A full replay from the genesis works again, and the writer goes on after it.
    seen = []
    journal = await PostgresJournal.open(migrated, name="switch", on_record=seen.append)
    try:
        assert len(seen) == 50
        await write(journal, 1)
    finally:
        await journal.close()
    assert (await restore_archive(migrated, archive_dir)).complete == ["other", "switch"]
    # The restore bypass takes epoch 0 only, and only when asked: a fenced writer's rows
    # are still refused.
    with pytest.raises(asyncpg.PostgresError) as refused:
        await sql(migrated, "INSERT INTO ledger_journal (journal_name, sequence, kind, header, "
                            "payload, epoch) VALUES ('switch', 52, 16, $1, '', 0)", bytes(96))
    assert refused.value.sqlstate == "PNF01"
