"""Fencing and following of the PostgreSQL journal, for real: epochs taken by each writer and
checked by the database, a follower that hands over every record as it is committed and
takes over when the writer's session ends.

Each test gets a fresh database (`postgres_dsn`) with the shipped migrations applied.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from ledger.journal_follow import PostgresFollower
from ledger.journal_format import JournalFailed, JournalFenced, JournalLocked
from ledger.journal_postgres import FENCED_SQLSTATE, PostgresJournal
from switch.store.migrate import migrate_dsn

pytestmark = pytest.mark.postgres


@pytest.fixture
async def migrated(postgres_dsn):
    await migrate_dsn(postgres_dsn)
    return postgres_dsn


async def read_all(dsn, name: str = "ledger"):
    seen = []
    journal = await PostgresJournal.open(dsn, name=name, on_record=seen.append)
    await journal.close()
    return seen


async def epochs(dsn, name: str = "ledger") -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT epoch FROM ledger_journal WHERE journal_name = $1 "
                                      "ORDER BY sequence", name)
        return [row["epoch"] for row in rows]
    finally:
        await connection.close()


async def test_every_writer_takes_the_next_epoch_and_writes_it_into_its_records(migrated):
    first = await PostgresJournal.open(migrated, holder="host-a:1")
    assert first.epoch == 1
    first.append(16, 1, b"a")
    await first.commit()
    with pytest.raises(JournalLocked, match="epoch 1, host-a:1"):
        await PostgresJournal.open(migrated)
    await first.close()
    second = await PostgresJournal.open(migrated, holder="host-b:2")
    assert second.epoch == 2
    second.append(16, 2, b"b")
    await second.commit()
    await second.close()
    assert await epochs(migrated) == [1, 2]
    assert [record.payload for record in await read_all(migrated)] == [b"a", b"b"]


async def test_a_writer_whose_epoch_was_taken_cannot_commit(migrated):
    writer = await PostgresJournal.open(migrated)
    writer.append(16, 1, b"acknowledged")
    await writer.commit()
    # Another writer takes the journal (what a standby's promotion does after the lock).
    connection = await asyncpg.connect(migrated)
    try:
        taken = await connection.fetchval(
            "UPDATE journal_epochs SET epoch = epoch + 1 WHERE journal_name = 'ledger' "
            "RETURNING epoch")
        assert taken == 2
        writer.append(16, 2, b"after the takeover")
        with pytest.raises(JournalFenced, match="another writer took the journal"):
            await writer.commit()
        assert writer.failed
        with pytest.raises(JournalFailed):
            writer.append(16, 3, b"never")
        # The check is the database's own: a row of the old epoch written by hand is
        # refused as well, whatever the client.
        with pytest.raises(asyncpg.PostgresError) as raised:
            await connection.execute(
                "INSERT INTO ledger_journal (journal_name, sequence, kind, header, payload, "
                "epoch) VALUES ('ledger', 2, 16, $1, '', 1)", bytes(96))
        assert raised.value.sqlstate == FENCED_SQLSTATE
        assert await connection.fetchval("SELECT count(*) FROM ledger_journal") == 1
    finally:
        await connection.close()
        await writer.close()
    assert [record.payload for record in await read_all(migrated)] == [b"acknowledged"]


async def test_a_takeover_waits_for_a_commit_under_way_and_refuses_any_after(migrated):
    """The trigger reads the epoch row FOR SHARE: a takeover's bump waits for a commit of
    the old epoch that is under way (the new writer then reads its records), and a commit
    of the old epoch that meets an uncommitted bump waits for it and is then refused."""
    writer = await PostgresJournal.open(migrated)  # epoch 1
    old, new = await asyncpg.connect(migrated), await asyncpg.connect(migrated)
    insert = ("INSERT INTO ledger_journal (journal_name, sequence, kind, header, payload, "
              "epoch) VALUES ('ledger', $1, 16, $2, '', 1)")
    bump = "UPDATE journal_epochs SET epoch = epoch + 1 WHERE journal_name = 'ledger'"
    try:
        # A commit of epoch 1 under way, then the takeover: the bump waits for it.
        under_way = old.transaction()
        await under_way.start()
        await old.execute(insert, 1, bytes(96))
        bumping = asyncio.ensure_future(new.execute(bump))
        await asyncio.sleep(0.3)
        assert not bumping.done()
        await under_way.commit()
        await asyncio.wait_for(bumping, 10)
        # The takeover under way (uncommitted), then a commit of epoch 1: refused.
        takeover = new.transaction()
        await takeover.start()
        await new.execute(bump)
        late = asyncio.ensure_future(old.execute(insert, 2, bytes(96)))
        await asyncio.sleep(0.3)
        assert not late.done()
        await takeover.commit()
        with pytest.raises(asyncpg.PostgresError) as raised:
            await asyncio.wait_for(late, 10)
        assert raised.value.sqlstate == FENCED_SQLSTATE
        assert await new.fetchval("SELECT count(*) FROM ledger_journal") == 1
    finally:
        await old.close()
        await new.close()
        await writer.close()


async def test_a_follower_hands_over_each_commit_and_takes_over_when_the_writer_dies(
        migrated):
    writer = await PostgresJournal.open(migrated, holder="primary")
    writer.append(16, 1, b"one")
    await writer.commit()
    followed = []
    follower = await PostgresFollower.open(migrated, name="ledger", on_record=followed.append,
                                           poll_interval_s=0.05, standby="standby-1")
    assert [record.payload for record in followed] == [b"one"]
    following = asyncio.ensure_future(follower.follow())
    for index in range(2, 6):
        writer.append(16, index, b"rec%d" % index)
        await writer.commit()
    for _ in range(200):
        if len(followed) == 5:
            break
        await asyncio.sleep(0.02)
    assert [record.sequence for record in followed] == [1, 2, 3, 4, 5]
    assert not following.done()  # the writer lives: no takeover
    assert follower.lag_records == 0
    # The writer's session ends (its process or machine is gone): the lock is released.
    killer = await asyncpg.connect(migrated)
    try:
        await killer.execute("SELECT pg_terminate_backend($1)",
                             writer.connection.get_server_pid())
    finally:
        await killer.close()
    await asyncio.wait_for(following, 10)
    promoted = await follower.promote(holder="standby-1")
    assert promoted.epoch == 2
    assert promoted.durable_sequence == 5
    promoted.append(16, 6, b"six")
    assert await promoted.commit() == 6
    # The dead writer cannot commit anything (its session is gone, and its epoch too).
    writer.append(16, 6, b"stale")
    with pytest.raises(JournalFailed):
        await writer.commit()
    await writer.close()
    await promoted.close()
    assert [record.payload for record in await read_all(migrated)] == [
        b"one", b"rec2", b"rec3", b"rec4", b"rec5", b"six"]
    assert await epochs(migrated) == [1, 1, 1, 1, 1, 2]


async def test_a_follower_records_its_progress_for_the_primary(migrated):
    writer = await PostgresJournal.open(migrated)
    writer.append(16, 1, b"a")
    await writer.commit()
    follower = await PostgresFollower.open(migrated, name="ledger", on_record=None,
                                           poll_interval_s=0.05, standby="standby-x")
    following = asyncio.ensure_future(follower.follow())
    connection = await asyncpg.connect(migrated)
    try:
        row = None
        for _ in range(100):
            row = await connection.fetchrow("SELECT applied_sequence FROM journal_standbys "
                                            "WHERE standby = 'standby-x'")
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None and row["applied_sequence"] == 1
    finally:
        await connection.close()
        following.cancel()
        await follower.close()
        await writer.close()
