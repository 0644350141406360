"""The ledger's journal and snapshots in PostgreSQL, through asyncpg.

Same records, same chain, same verification as the file journal (`ledger/journal_format.py`);
only the medium differs. `append()` buffers and hashes (no I/O); `await commit()` sends all
buffered records with one binary COPY, which PostgreSQL commits as one transaction, and
returns the last durable sequence. A transaction is atomic, so there is no torn tail here:
every verification failure is corruption and stops start-up with the sequence that failed.

The schema is `switch/store/migrations/0001_ledger_journal.sql` (0005, fencing; 0022,
partitions), applied by `ponte db migrate`; this module never alters a table. The table is
partitioned by sequence: the writer makes sure the partitions ahead of it exist (the
database's `ledger_journal_cover`) at open, again in the background once the partition it
writes is half full (a short connection and transaction of its own, off the commit path),
and before any COPY that would reach past what it has seen covered — so a commit never
fails for want of a partition. One writer per journal name, held with a session advisory
lock. Each writer that opens a journal takes the next epoch (`journal_epochs`) and writes
it into every record; the database refuses a record of any other epoch (a trigger, in the
committing transaction), so a writer that lost its lock to another can never commit again
(`JournalFenced`). It must never update or delete a journal row (archiving old partitions
is `ledger/journal_archive.py`'s, an operator's command).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from contextlib import aclosing
from typing import AsyncIterator, Callable

import msgspec

from ledger.journal_find import FoundTransfer, event_index_at, found_in_record, pick
from ledger.journal_format import (
    GENESIS,
    HEADER_BYTES,
    HeaderFields,
    JournalBufferFull,
    JournalCorrupt,
    JournalEnds,
    JournalError,
    JournalFailed,
    JournalFenced,
    JournalLocked,
    JournalMissing,
    JournalPosition,
    Record,
    RecordKind,
    RecordProblem,
    checksum_matches,
    encode_header,
    parse_header,
    validate_append,
)
from ledger.journal_payload import decode_batch
from ledger.journal_limits import (
    COMMIT_BYTES_MAX_DEFAULT,
    COMMIT_RECORDS_MAX_DEFAULT,
    COMMIT_RECORDS_MAX_LIMIT,
    JOURNAL_NAME_BYTES_MAX,
    PARTITION_UPKEEP_RETRY_S,
    POSTGRES_CONNECT_TIMEOUT_S,
    POSTGRES_FETCH_ROWS_MAX,
    POSTGRES_FIND_WINDOW_RECORDS_MAX,
    POSTGRES_KEEPALIVE_COUNT,
    POSTGRES_KEEPALIVE_IDLE_S,
    POSTGRES_KEEPALIVE_INTERVAL_S,
    POSTGRES_STATEMENT_TIMEOUT_S,
    SNAPSHOTS_RETAINED_MAX,
)
from ledger.limits import U64_MAX
from ledger.snapshot import Snapshot, SnapshotError, state_hash

logger = logging.getLogger("ponte.ledger.journal")

JOURNAL_COLUMNS = ("journal_name", "sequence", "kind", "header", "payload", "epoch")
# The SQLSTATE the fencing trigger raises (switch/store/migrations/0005_journal_epochs.sql).
FENCED_SQLSTATE = "PNF01"
# What PostgreSQL answers for a row no partition takes ("no partition of relation ... found
# for row"): the whole statement is refused, nothing of it written.
NO_PARTITION_SQLSTATE = "23514"
LOCK_KEY_PREFIX = "ponte.journal:"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name.encode()) <= JOURNAL_NAME_BYTES_MAX:
        raise ValueError(f"journal name must be 1..{JOURNAL_NAME_BYTES_MAX} bytes: {name!r}")


async def _connect(dsn: str):
    import asyncpg  # imported here so `import ledger` never pulls in a database driver

    # Server-side keepalives: a vanished client machine ends the session (and releases its
    # advisory lock) in seconds, not after the kernel's two-hour default.
    return await asyncpg.connect(dsn, timeout=POSTGRES_CONNECT_TIMEOUT_S,
                                 command_timeout=POSTGRES_STATEMENT_TIMEOUT_S,
                                 server_settings={
                                     "tcp_keepalives_idle": str(POSTGRES_KEEPALIVE_IDLE_S),
                                     "tcp_keepalives_interval":
                                         str(POSTGRES_KEEPALIVE_INTERVAL_S),
                                     "tcp_keepalives_count": str(POSTGRES_KEEPALIVE_COUNT),
                                 })


async def _require_schema(connection) -> None:
    found = await connection.fetchval(
        "SELECT to_regclass('ledger_journal') IS NOT NULL "
        "AND to_regclass('ledger_snapshot') IS NOT NULL"
    )
    if not found:
        raise JournalMissing("tables ledger_journal/ledger_snapshot missing: run `ponte db "
                             "migrate`")
    if not await connection.fetchval("SELECT to_regclass('journal_epochs') IS NOT NULL"):
        raise JournalMissing("table journal_epochs missing: run `ponte db migrate`")
    if not await connection.fetchval(
            "SELECT to_regclass('ledger_journal_settings') IS NOT NULL"):
        raise JournalMissing("the journal is not partitioned yet (migration 0022): run "
                             "`ponte db migrate`")


async def partition_records(connection) -> int:
    """Records per journal partition made from now on (the database's setting)."""
    return await connection.fetchval(
        "SELECT journal_partition_records FROM ledger_journal_settings")


async def cover_partitions(connection, first_sequence: int, last_sequence: int) -> int:
    """Make sure sequences first..last have partitions (in one short transaction of the
    database's own function, serialised with every other caller); the end (exclusive) of
    the run of partitions from `first_sequence`, always > last_sequence."""
    assert 1 <= first_sequence <= last_sequence
    return await connection.fetchval("SELECT ledger_journal_cover($1, $2)",
                                     first_sequence, last_sequence)


def _missing_partition(error: BaseException) -> bool:
    return (getattr(error, "sqlstate", None) == NO_PARTITION_SQLSTATE
            and "no partition" in str(error))


async def try_writer_lock(connection, name: str) -> bool:
    """Take the journal's writer lock for this session, if no other session holds it."""
    return await connection.fetchval(
        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))", LOCK_KEY_PREFIX + name)


async def take_epoch(connection, name: str, holder: str) -> int:
    """The journal's next epoch, taken for this writer (which holds the writer lock). From
    the moment this commits, the database refuses records of any earlier epoch."""
    return await connection.fetchval(
        "INSERT INTO journal_epochs (journal_name, epoch, holder) VALUES ($1, 1, $2) "
        "ON CONFLICT (journal_name) DO UPDATE SET epoch = journal_epochs.epoch + 1, "
        "holder = EXCLUDED.holder, taken_at = now() RETURNING epoch", name, holder[:256])


class JournalWriter(msgspec.Struct, frozen=True, kw_only=True):
    """The journal's current epoch and who took it (host:pid), and when (Unix seconds)."""

    epoch: int
    holder: str
    taken_at_s: float


async def journal_writer(connection, name: str) -> JournalWriter | None:
    row = await connection.fetchrow(
        "SELECT epoch, holder, extract(epoch FROM taken_at)::float8 AS taken_at_s "
        "FROM journal_epochs WHERE journal_name = $1", name)
    if row is None:
        return None
    return JournalWriter(epoch=row["epoch"], holder=row["holder"],
                         taken_at_s=row["taken_at_s"])


async def check_start(connection, name: str, start: JournalPosition,
                      end: JournalPosition) -> None:
    """When nothing was read after a non-genesis start position, it must still exist in
    the journal and match (else it belongs to another journal or history)."""
    if start.sequence > 0 and end.sequence == start.sequence:
        stored = await connection.fetchval(
            "SELECT header FROM ledger_journal WHERE journal_name = $1 "
            "AND sequence = $2", name, start.sequence,
        )
        if stored is None or bytes(stored[HEADER_BYTES - 32:]) != start.record_hash:
            raise JournalCorrupt(
                RecordProblem.MISSING_RECORDS if stored is None
                else RecordProblem.BROKEN_CHAIN, start.sequence, None,
                "the start position is not in the journal",
            )


def verify_row(row, expected: JournalPosition) -> tuple[Record, JournalPosition]:
    """Check one journal row against the chain; the Record and the new chain position."""
    sequence = expected.sequence + 1
    header = row["header"]
    if len(header) != HEADER_BYTES:
        raise JournalCorrupt(RecordProblem.TRUNCATED_HEADER, sequence, None)
    fields = parse_header(header)
    if not isinstance(fields, HeaderFields):
        raise JournalCorrupt(fields, sequence, None, f"row sequence={row['sequence']}")
    payload = row["payload"]
    if len(payload) != fields.payload_bytes:
        raise JournalCorrupt(RecordProblem.TRUNCATED_PAYLOAD, sequence, None,
                             f"row sequence={row['sequence']}")
    if not checksum_matches(header, payload):
        raise JournalCorrupt(RecordProblem.BAD_CHECKSUM, sequence, None,
                             f"row sequence={row['sequence']}")
    if fields.sequence != sequence or row["sequence"] != sequence:
        gap = ""
        if row["sequence"] == fields.sequence > sequence:  # whole records are not there
            gap = (f": records {sequence}..{fields.sequence - 1} are not in the table "
                   f"(archived? start from a snapshot that covers them, or put them back "
                   f"with `ponte journal restore`)")
        raise JournalCorrupt(RecordProblem.SEQUENCE_OUT_OF_ORDER, sequence, None,
                             f"row sequence={row['sequence']} header sequence="
                             f"{fields.sequence}{gap}")
    if row["kind"] != fields.kind:
        raise JournalCorrupt(RecordProblem.COLUMN_MISMATCH, sequence, None,
                             f"kind column={row['kind']} header kind={fields.kind}")
    if fields.previous_hash != expected.record_hash:
        raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, sequence, None)
    record = Record(sequence=sequence, kind=fields.kind, now_ns=fields.now_ns,
                    payload=payload, record_hash=fields.record_hash)
    return record, JournalPosition(sequence=sequence, record_hash=fields.record_hash)


class PostgresJournal(JournalEnds):
    """The writer of one named journal in PostgreSQL. Open with
    `await PostgresJournal.open(dsn, name=...)`; it owns its connection."""

    def __init__(self, connection, name: str, end: JournalPosition, *,
                 commit_records_max: int, commit_bytes_max: int, epoch: int,
                 dsn: str | None = None) -> None:
        assert 1 <= commit_records_max <= COMMIT_RECORDS_MAX_LIMIT
        assert epoch >= 1
        self.connection = connection
        self.name = name
        self.epoch = epoch  # written into every record; the database checks it
        # Partition upkeep: every sequence below `_covered_end` (from the durable end on)
        # has a partition, as far as this writer has seen; past `_durable + _headroom` it
        # asks for more in the background, on a connection of its own to `dsn`.
        self.dsn = dsn
        self._covered_end = 0
        self._headroom = 0
        self._upkeep: asyncio.Future | None = None
        self._upkeep_retry_at = 0.0
        self.partitions_made_late = 0  # COPYs that had to wait for a partition (upkeep late)
        self.commit_records_max = commit_records_max
        self.commit_bytes_max = commit_bytes_max
        self._appended = end
        self._durable = end
        self._rows: list[tuple] = []
        self._buffered_bytes = 0
        self._commit_lock = asyncio.Lock()
        self._failed: BaseException | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        name: str = "ledger",
        start: JournalPosition = GENESIS,
        on_record: Callable[[Record], None] | None = None,
        commit_records_max: int = COMMIT_RECORDS_MAX_DEFAULT,
        commit_bytes_max: int = COMMIT_BYTES_MAX_DEFAULT,
        holder: str = "",
    ) -> "PostgresJournal":
        """Take the writer lock and the next epoch (`holder`, e.g. host:pid, says who took
        it), verify every record after `start` (handing each to `on_record`), and return
        the journal ready to append after the last one."""
        _check_name(name)
        if not 1 <= commit_records_max <= COMMIT_RECORDS_MAX_LIMIT:
            raise ValueError(f"commit_records_max must be 1..{COMMIT_RECORDS_MAX_LIMIT}")
        connection = await _connect(dsn)
        try:
            await _require_schema(connection)
            if not await try_writer_lock(connection, name):
                writer = await journal_writer(connection, name)
                raise JournalLocked(f"journal name={name} has another writer" + (
                    f" (epoch {writer.epoch}, {writer.holder or 'holder unknown'})"
                    if writer is not None else ""))
            # The epoch first: whatever an earlier writer still manages to commit is
            # committed before this returns (the trigger's row lock), so the read below
            # sees it; nothing of it can commit afterwards.
            epoch = await take_epoch(connection, name, holder)
            end = start
            async with aclosing(_verified_records(connection, name, start)) as records:
                async for record in records:
                    end = JournalPosition(sequence=record.sequence,
                                          record_hash=record.record_hash)
                    if on_record is not None:
                        on_record(record)
            await check_start(connection, name, start, end)
            journal = cls(connection, name, end, commit_records_max=commit_records_max,
                          commit_bytes_max=commit_bytes_max, epoch=epoch, dsn=dsn)
            await journal.ensure_partitions()
        except BaseException:
            await connection.close()
            raise
        return journal

    # -- partitions ------------------------------------------------------------------------

    async def ensure_partitions(self) -> int:
        """Before the first commit (open, a standby's promotion): partitions for the next
        half partition of records, on the journal's own connection. The covered end."""
        records = await partition_records(self.connection)
        self._headroom = max(1, records // 2)
        first = self._durable.sequence + 1
        self._covered_end = await cover_partitions(self.connection, first,
                                                   first + self._headroom)
        return self._covered_end

    def _upkeep_due(self) -> bool:
        if self._durable.sequence + self._headroom < self._covered_end:
            return False
        if self._upkeep is not None and not self._upkeep.done():
            return False
        return self.dsn is not None and time.monotonic() >= self._upkeep_retry_at

    async def _upkeep_run(self) -> None:
        """The next partition, made while commits go on: its own connection and
        transaction (ATTACH locks the table only against other DDL, never a COPY)."""
        first = self._durable.sequence + 1
        try:
            connection = await _connect(self.dsn)
            try:
                self._headroom = max(1, await partition_records(connection) // 2)
                end = await cover_partitions(connection, first, first + self._headroom)
            finally:
                await connection.close()
        except Exception as error:  # noqa: BLE001 - retried later; a COPY never waits on it
            self._upkeep_retry_at = time.monotonic() + PARTITION_UPKEEP_RETRY_S
            logger.error("journal_partition_upkeep_failed journal=%s error=%r", self.name,
                         error)
            return
        self._covered_end = max(self._covered_end, end)
        logger.info("journal_partitions_ready journal=%s durable_sequence=%d "
                    "covered_end=%d", self.name, self._durable.sequence, self._covered_end)

    async def _copy_rows(self, rows: list[tuple]) -> None:
        """One COPY of `rows`, with partitions for all of them: made first (on the commit
        path, logged) if the background upkeep has not got there, and made again and the
        COPY repeated once if the database still finds none — then it refused the whole
        COPY and nothing was written (an operator archived a partition this writer had
        counted on)."""
        first, last = rows[0][1], rows[-1][1]
        if last >= self._covered_end:
            self.partitions_made_late += 1
            logger.warning("journal_partition_late journal=%s sequence=%d covered_end=%d",
                           self.name, last, self._covered_end)
            self._covered_end = await cover_partitions(self.connection, first,
                                                       last + self._headroom)
        try:
            await self.connection.copy_records_to_table(
                "ledger_journal", records=rows, columns=JOURNAL_COLUMNS,
                timeout=POSTGRES_STATEMENT_TIMEOUT_S,
            )
        except Exception as error:
            if not _missing_partition(error):
                raise
            logger.warning("journal_partition_missing journal=%s sequence=%d..%d error=%s",
                           self.name, first, last, error)
            self.partitions_made_late += 1
            self._covered_end = await cover_partitions(self.connection, first,
                                                       last + self._headroom)
            await self.connection.copy_records_to_table(
                "ledger_journal", records=rows, columns=JOURNAL_COLUMNS,
                timeout=POSTGRES_STATEMENT_TIMEOUT_S,
            )

    # -- writing ---------------------------------------------------------------------------

    def room_for(self, payload_bytes: int) -> bool:
        return (
            len(self._rows) + 1 <= self.commit_records_max
            and self._buffered_bytes + HEADER_BYTES + payload_bytes <= self.commit_bytes_max
        )

    def check_writable(self) -> None:
        if self._closed:
            raise JournalError(f"journal name={self.name} is closed")
        if self._failed is not None:
            raise JournalFailed(f"journal name={self.name} failed earlier: {self._failed}")

    def append(self, kind: int, now_ns: int, payload) -> int:
        """Buffer one record (no I/O); its sequence number, durable after `await commit()`.

        Not a coroutine, unlike commit(): it never waits, so the ledger's apply-then-append
        stays one synchronous step that cannot interleave with another task's batch.
        """
        self.check_writable()
        payload = payload if type(payload) is bytes else bytes(payload)
        validate_append(kind, now_ns, len(payload))
        if not self.room_for(len(payload)):
            raise JournalBufferFull(
                f"buffered_records={len(self._rows)} buffered_bytes={self._buffered_bytes}: "
                "commit() before appending more"
            )
        sequence = self._appended.sequence + 1
        header = encode_header(kind, sequence, now_ns, payload, self._appended.record_hash)
        self._rows.append((self.name, sequence, kind, header, payload, self.epoch))
        self._buffered_bytes += HEADER_BYTES + len(payload)
        self._appended = JournalPosition(sequence=sequence,
                                         record_hash=header[HEADER_BYTES - 32:])
        return sequence

    async def commit(self) -> int:
        """COPY every buffered record in one transaction; the last durable sequence."""
        async with self._commit_lock:
            self.check_writable()
            rows = self._rows
            if not rows:
                return self._durable.sequence
            self._rows = []
            self._buffered_bytes = 0
            last = rows[-1]
            end = JournalPosition(sequence=last[1], record_hash=last[3][HEADER_BYTES - 32:])
            try:
                await self._copy_rows(rows)
            except BaseException as error:
                # Whether the COPY committed is unknown (a dropped connection after COMMIT
                # looks the same as one before): stop, and let recovery read what is there.
                self._failed = error
                if getattr(error, "sqlstate", None) == FENCED_SQLSTATE:
                    # Certain: the database refused it, and will refuse every later one.
                    logger.critical("journal_fenced journal=%s epoch=%d error=%s",
                                    self.name, self.epoch, error)
                    raise JournalFenced(f"journal={self.name} epoch={self.epoch}: another "
                                        f"writer took the journal: {error}") from error
                logger.error("journal_commit_failed journal=%s error=%r", self.name, error)
                raise JournalFailed(f"commit failed for journal={self.name}: {error!r}") \
                    from error
            self._durable = end
            if self._upkeep_due():
                self._upkeep = asyncio.ensure_future(self._upkeep_run())
            return end.sequence

    # -- state -----------------------------------------------------------------------------

    @property
    def buffered_records(self) -> int:
        return len(self._rows)

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    async def records(self, after_sequence: int = 0) -> AsyncIterator[Record]:
        """Verified durable records after `after_sequence` (the chain is verified from the
        start, since only a verified prefix can vouch for the first hash). Runs in a
        read-only transaction on the journal's connection: iterate it to the end (or wrap
        it in contextlib.aclosing) and never while a commit() is in flight."""
        async with aclosing(_verified_records(self.connection, self.name, GENESIS)) as rows:
            async for record in rows:
                if record.sequence > self._durable.sequence:
                    return
                if record.sequence > after_sequence:
                    yield record

    async def find_transfer(self, transfer_id: int) -> FoundTransfer | None:
        """`transfer_id` as recorded, newest first, searched inside PostgreSQL.

        The server scans payloads of CREATE_TRANSFERS records for the id's 8 bytes in windows
        of POSTGRES_FIND_WINDOW_RECORDS_MAX records, newest window first, over the primary
        key's sequence range; only rows holding the bytes travel to the client, which keeps
        hits at an event's id position in a record whose checksum verifies. Cost: server
        reads of every payload back to the transfer (all of them for an unknown id).
        """
        if not 0 < transfer_id < U64_MAX:
            raise ValueError(f"transfer_id={transfer_id!r} is not a valid id")
        needle = struct.pack("<Q", transfer_id)
        newest_failed: FoundTransfer | None = None
        high = self._durable.sequence
        # Records older than the table's first one were archived (`ponte journal archive`):
        # no window below it can hold anything.
        oldest = await self.connection.fetchval(
            "SELECT min(sequence) FROM ledger_journal WHERE journal_name = $1", self.name) or 1
        while high >= oldest:
            low = max(oldest, high - POSTGRES_FIND_WINDOW_RECORDS_MAX + 1)
            rows = await self.connection.fetch(
                "SELECT sequence, kind, header, payload FROM ledger_journal "
                "WHERE journal_name = $1 AND sequence BETWEEN $2 AND $3 AND kind = $4 "
                "AND position($5::bytea IN payload) > 0 ORDER BY sequence DESC",
                self.name, low, high, int(RecordKind.CREATE_TRANSFERS), needle,
            )
            for row in rows:
                header, payload = row["header"], row["payload"]
                fields = parse_header(header)
                if not isinstance(fields, HeaderFields) or not checksum_matches(header,
                                                                                 payload):
                    raise JournalCorrupt(RecordProblem.BAD_CHECKSUM, row["sequence"], None,
                                         "changed after start-up")
                events_count = decode_batch(payload).events_count
                hit = payload.rfind(needle)
                while hit >= 0:
                    index = event_index_at(hit, events_count)
                    if index is not None:
                        found = found_in_record(row["sequence"], fields.now_ns, payload, index)
                        newest_failed, done = pick(newest_failed, found)
                        if done:
                            return newest_failed
                    hit = payload.rfind(needle, 0, hit + len(needle) - 1)
            high = low - 1
        return newest_failed

    async def close(self) -> None:
        """Close without committing (buffered records are dropped, as a crash would)."""
        if self._closed:
            return
        self._closed = True
        if self._upkeep is not None and not self._upkeep.done():
            self._upkeep.cancel()
            try:
                await self._upkeep
            except asyncio.CancelledError:
                pass
        await self.connection.close()  # ends the session: releases the advisory lock


async def _verified_records(connection, name: str,
                            start: JournalPosition) -> AsyncIterator[Record]:
    expected = start
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        cursor = connection.cursor(
            "SELECT sequence, kind, header, payload FROM ledger_journal "
            "WHERE journal_name = $1 AND sequence > $2 ORDER BY sequence",
            name, start.sequence, prefetch=POSTGRES_FETCH_ROWS_MAX,
        )
        async for row in cursor:
            record, expected = verify_row(row, expected)
            yield record


class PostgresSnapshotStore:
    """Snapshots of one named journal's ledger; each call uses a short connection of its
    own so a snapshot never queues behind (or in front of) a journal commit."""

    def __init__(self, dsn: str, name: str = "ledger", *,
                 retained_max: int = SNAPSHOTS_RETAINED_MAX) -> None:
        _check_name(name)
        assert retained_max >= 1
        self.dsn = dsn
        self.name = name
        self.retained_max = retained_max

    async def write(self, state: bytes, position: JournalPosition) -> int:
        """Store `state` as covering durable journal `position`; return its sequence."""
        if len(position.record_hash) != 32:
            raise SnapshotError(f"invalid journal position {position}")
        connection = await _connect(self.dsn)
        try:
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO ledger_snapshot (journal_name, sequence, record_hash, "
                    "state_hash, state) VALUES ($1, $2, $3, $4, $5) "
                    "ON CONFLICT (journal_name, sequence) DO NOTHING",
                    self.name, position.sequence, position.record_hash, state_hash(state),
                    state,
                )
                await connection.execute(
                    "DELETE FROM ledger_snapshot WHERE journal_name = $1 AND sequence < "
                    "(SELECT min(sequence) FROM (SELECT sequence FROM ledger_snapshot "
                    " WHERE journal_name = $1 ORDER BY sequence DESC LIMIT $2) AS kept)",
                    self.name, self.retained_max,
                )
        finally:
            await connection.close()
        logger.info("snapshot_written journal=%s sequence=%d state_bytes=%d",
                    self.name, position.sequence, len(state))
        return position.sequence

    async def load_newest(self) -> Snapshot | None:
        """The newest snapshot whose state hash verifies; damaged ones are skipped."""
        connection = await _connect(self.dsn)
        try:
            sequences = await connection.fetch(
                "SELECT sequence FROM ledger_snapshot WHERE journal_name = $1 "
                "ORDER BY sequence DESC", self.name,
            )
            for row in sequences:
                found = await connection.fetchrow(
                    "SELECT sequence, record_hash, state_hash, state FROM ledger_snapshot "
                    "WHERE journal_name = $1 AND sequence = $2", self.name, row["sequence"],
                )
                state = found["state"]
                if state_hash(state) != found["state_hash"]:
                    logger.warning("snapshot_skipped journal=%s sequence=%d "
                                   "reason='state hash mismatch'", self.name, found["sequence"])
                    continue
                return Snapshot(
                    position=JournalPosition(sequence=found["sequence"],
                                             record_hash=bytes(found["record_hash"])),
                    state=state, state_hash=bytes(found["state_hash"]),
                    source=f"postgresql:{self.name}",
                )
            return None
        finally:
            await connection.close()
