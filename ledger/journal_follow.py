"""Following a PostgreSQL journal that another process writes: a hot standby's reader.

`PostgresFollower.open` verifies and hands over (`on_record`) every record after `start`,
exactly as the writer's own start-up would; `follow()` then keeps doing so for each new
record — woken by the journal's NOTIFY (channel `ponte_journal`, sent by the database when a
commit adds records) and, as the fallback, every `poll_interval_s` — and on every wake-up
tries to take the journal's writer lock. It returns once the lock is taken, which happens
only when the writer's session has ended (its process or machine is gone). `promote()`
then takes the next epoch (so the database refuses anything the old writer might still
send), reads every record up to the end, and turns the follower's own connection into the
journal's writer (`PostgresJournal`).

Reads are bounded (`FOLLOW_FETCH_ROWS_MAX` rows per round trip) and every row is verified on
the chain like a start-up read. It never writes a journal row; the only rows it writes are
its own progress (`journal_standbys`) and, when promoted, the epoch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from ledger.journal_format import GENESIS, JournalEnds, JournalError, JournalPosition, Record
from ledger.journal_limits import (
    COMMIT_BYTES_MAX_DEFAULT,
    COMMIT_RECORDS_MAX_DEFAULT,
    FOLLOW_FETCH_ROWS_MAX,
    FOLLOW_POLL_INTERVAL_S_DEFAULT,
    FOLLOW_POLL_INTERVAL_S_MAX,
    FOLLOW_PROGRESS_INTERVAL_S,
)
from ledger.journal_postgres import (
    LOCK_KEY_PREFIX,
    PostgresJournal,
    _check_name,
    _connect,
    _require_schema,
    _verified_records,
    check_start,
    take_epoch,
    try_writer_lock,
    verify_row,
)

logger = logging.getLogger("ponte.ledger.follow")

NOTIFY_CHANNEL = "ponte_journal"


class FollowerClosed(JournalError):
    """The follower was closed (or its connection lost) before it could take over."""


class PostgresFollower(JournalEnds):
    """A reader of one named journal that can become its writer; see the module docstring.
    `position` is the last record handed over; `head_sequence` the newest record the last
    look at the journal saw; `epoch` the epoch of the last record handed over."""

    def __init__(self, connection, name: str, end: JournalPosition,
                 on_record: Callable[[Record], None] | None, *, poll_interval_s: float,
                 standby: str) -> None:
        assert 0 < poll_interval_s <= FOLLOW_POLL_INTERVAL_S_MAX
        self.connection = connection
        self.dsn: str | None = None  # handed to the writer it becomes (partition upkeep)
        self.name = name
        self.on_record = on_record
        self.poll_interval_s = poll_interval_s
        self.standby = standby[:256] or "standby"
        self._durable = end
        self._appended = end
        self._failed = None
        self.head_sequence = end.sequence
        self.epoch = 0
        self.last_now_ns = 0  # the clock value of the last record handed over
        self.records_followed = 0
        self.caught_up_at = time.monotonic()  # when the follower last had every record
        self._wake = asyncio.Event()
        self._closed = False
        self._locked = False
        self._progress_at = 0.0

    @classmethod
    async def open(cls, dsn: str, *, name: str, on_record: Callable[[Record], None] | None,
                   start: JournalPosition = GENESIS,
                   poll_interval_s: float = FOLLOW_POLL_INTERVAL_S_DEFAULT,
                   standby: str = "") -> PostgresFollower:
        _check_name(name)
        connection = await _connect(dsn)
        try:
            await _require_schema(connection)
            follower = cls(connection, name, start, on_record,
                           poll_interval_s=poll_interval_s, standby=standby)
            follower.dsn = dsn
            # Listen first: a record committed while the first read runs still wakes us.
            await connection.add_listener(NOTIFY_CHANNEL, follower._notified)
            end = start
            async for record in _verified_records(connection, name, start):
                end = follower._hand_over(record, end)
            await check_start(connection, name, start, end)
            follower._durable = follower._appended = end
            await follower.catch_up()
            follower.epoch = await connection.fetchval(
                "SELECT epoch FROM journal_epochs WHERE journal_name = $1", name) or 0
        except BaseException:
            await connection.close()
            raise
        return follower

    # -- following -----------------------------------------------------------------------

    def _notified(self, _connection, _pid, _channel, payload: str) -> None:
        if payload == self.name:
            self._wake.set()

    def _hand_over(self, record: Record, end: JournalPosition) -> JournalPosition:
        if self.on_record is not None:
            self.on_record(record)
        self.records_followed += 1
        self.last_now_ns = record.now_ns
        return JournalPosition(sequence=record.sequence, record_hash=record.record_hash)

    @property
    def lag_records(self) -> int:
        return max(0, self.head_sequence - self._durable.sequence)

    @property
    def lag_seconds(self) -> float:
        """How long the follower has been behind the journal's head (0 when caught up)."""
        if not self.lag_records:
            return 0.0
        return time.monotonic() - self.caught_up_at

    async def catch_up(self) -> int:
        """Hand over every record committed after `position`; how many. Bounded reads."""
        handed = 0
        while True:
            rows = await self.connection.fetch(
                "SELECT sequence, kind, header, payload, epoch FROM ledger_journal "
                "WHERE journal_name = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
                self.name, self._durable.sequence, FOLLOW_FETCH_ROWS_MAX)
            end = self._durable
            for row in rows:
                record, end = verify_row(row, end)
                self._hand_over(record, end)
                self.epoch = max(self.epoch, row["epoch"])
                self._durable = self._appended = end
                handed += 1
            self.head_sequence = max(self.head_sequence, end.sequence)
            if len(rows) < FOLLOW_FETCH_ROWS_MAX:
                self.caught_up_at = time.monotonic()
                return handed
            await asyncio.sleep(0)  # a long catch-up leaves the loop room (health, signals)

    async def _look(self) -> bool:
        """One look at the journal: its head (for the lag), and the writer lock."""
        row = await self.connection.fetchrow(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS locked, "
            "(SELECT max(sequence) FROM ledger_journal WHERE journal_name = $2) AS head, "
            "(SELECT epoch FROM journal_epochs WHERE journal_name = $2) AS epoch",
            LOCK_KEY_PREFIX + self.name, self.name)
        self.head_sequence = max(self.head_sequence, row["head"] or 0)
        self.epoch = max(self.epoch, row["epoch"] or 0)
        return bool(row["locked"])

    async def _record_progress(self) -> None:
        now = time.monotonic()
        if now - self._progress_at < FOLLOW_PROGRESS_INTERVAL_S:
            return
        self._progress_at = now
        await self.connection.execute(
            "INSERT INTO journal_standbys (journal_name, standby, applied_sequence) "
            "VALUES ($1, $2, $3) ON CONFLICT (journal_name, standby) DO UPDATE SET "
            "applied_sequence = EXCLUDED.applied_sequence, seen_at = now()",
            self.name, self.standby, self._durable.sequence)

    async def follow(self) -> None:
        """Follow the journal until its writer lock is ours (the writer is gone)."""
        while not self._closed:
            self._wake.clear()
            await self.catch_up()
            if await self._look():
                self._locked = True
                return
            await self._record_progress()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            except asyncio.TimeoutError:
                pass
        raise FollowerClosed(f"journal name={self.name}: follower closed")

    async def try_take_over(self) -> bool:
        """Take the writer lock now if it is free (for a follower asked to promote)."""
        if not self._locked:
            self._locked = await try_writer_lock(self.connection, self.name)
        return self._locked

    async def promote(self, *, holder: str = "",
                      commit_records_max: int = COMMIT_RECORDS_MAX_DEFAULT,
                      commit_bytes_max: int = COMMIT_BYTES_MAX_DEFAULT) -> PostgresJournal:
        """Become the writer (the lock is held): take the next epoch, read the last records,
        and hand the connection to a `PostgresJournal` (this follower is spent)."""
        assert self._locked, "follow() or try_take_over() first"
        connection = self.connection
        epoch = await take_epoch(connection, self.name, holder)
        await self.catch_up()
        await connection.remove_listener(NOTIFY_CHANNEL, self._notified)
        await connection.execute(
            "DELETE FROM journal_standbys WHERE journal_name = $1 AND standby = $2",
            self.name, self.standby)
        self._closed = True
        self.connection = None
        logger.info("journal_promoted journal=%s epoch=%d sequence=%d", self.name, epoch,
                    self._durable.sequence)
        journal = PostgresJournal(connection, self.name, self._durable,
                                  commit_records_max=commit_records_max,
                                  commit_bytes_max=commit_bytes_max, epoch=epoch,
                                  dsn=self.dsn)
        await journal.ensure_partitions()  # the partitions ahead, before its first commit
        return journal

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        connection, self.connection = self.connection, None
        if connection is not None:
            await connection.close()  # releases the lock, if it was taken
