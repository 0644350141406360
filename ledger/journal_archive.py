"""Old partitions of the PostgreSQL journal out to segment files, and back.

`archive_partitions` writes every partition that the oldest retained server snapshot of
each journal in it covers (table `switch_snapshot`) as hash-chained segment files — the
file journal's own format and names (`ledger.journal_segments`), lzma-compressed, one
directory per journal name — reads them back to verify them, records them in
`ledger_journal_archive`, and only then detaches the partition (and drops it with
`delete`). Partitions go oldest first and the first one that cannot go stops the run, so
what stays in the table is always the tail of every journal's chain.

`postgres_records` reads one journal's chain for an auditor: from the genesis through the
archived files (when given) and on through the table, or from the table's first row, which
must follow the last archived record (`ledger_journal_archive`) or a snapshot — the anchor.
`restore_archive` puts archived records back (`ponte journal restore`).

It must never detach or drop a partition before its records are durable in files that
were read back and chained, and never change a row that stays in the table.
"""

from __future__ import annotations

import lzma
import os
import re
from dataclasses import dataclass, field
from collections.abc import AsyncIterator, Callable, Iterator

from ledger.journal_format import (
    GENESIS,
    HEADER_BYTES,
    HeaderFields,
    JournalCorrupt,
    JournalError,
    JournalPosition,
    Record,
    RecordProblem,
    encode_header,
    parse_header,
)
from ledger.journal_limits import (
    ARCHIVE_DETACH_TIMEOUT_S,
    ARCHIVE_RENAME_LOCK_TIMEOUT_MS,
    ARCHIVE_SEGMENT_BYTES_MAX,
    COMMIT_RECORDS_MAX_LIMIT,
    POSTGRES_FETCH_ROWS_MAX,
    POSTGRES_STATEMENT_TIMEOUT_S,
)
from ledger.journal_postgres import (
    JOURNAL_COLUMNS,
    _check_name,
    _connect,
    _require_schema,
    cover_partitions,
    verify_row,
)
from ledger.journal_segments import (
    ARCHIVE_SUFFIX,
    Segment,
    _sealed_records,
    list_segments,
    read_directory,
    segment_name,
)
from ledger.snapshot import Snapshot, decode_snapshot

DETACHED_PREFIX = "ledger_journal_detached_"
LOCK_TIMEOUT_SQLSTATE = "55P03"
_SAFE_DIRECTORY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
_HEX_PREFIX = "hex-"


class ArchiveRefused(JournalError):
    """Nothing was archived (or nothing more): the reason names the partition and journal."""


# -- where a journal's segments go -----------------------------------------------------------

def journal_directory_name(name: str) -> str:
    """The directory (inside an archive) of journal `name`'s segments: the name itself when
    it is a plain file name, else `hex-` and its UTF-8 bytes in hex (names may hold `/`)."""
    _check_name(name)
    if _SAFE_DIRECTORY.match(name) and not name.startswith(_HEX_PREFIX):
        return name
    return _HEX_PREFIX + name.encode().hex()


def journal_name_of(directory_name: str) -> str | None:
    """The journal whose segments a directory of an archive holds (None: not one)."""
    if directory_name.startswith(_HEX_PREFIX):
        try:
            return bytes.fromhex(directory_name[len(_HEX_PREFIX):]).decode()
        except (ValueError, UnicodeDecodeError):
            return None
    return directory_name if _SAFE_DIRECTORY.match(directory_name) else None


def archive_journals(archive_dir: str) -> list[str]:
    """The journals an archive directory holds segments of."""
    names = []
    for entry in sorted(os.listdir(archive_dir)):
        path = os.path.join(archive_dir, entry)
        name = journal_name_of(entry)
        if name is not None and os.path.isdir(path) and list_segments(path):
            names.append(name)
    return names


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- partitions and what covers them ---------------------------------------------------------

@dataclass(frozen=True)
class JournalRows:
    """One journal's rows in one partition."""

    first_sequence: int
    last_sequence: int
    count: int


@dataclass
class Partition:
    name: str
    first_sequence: int  # the range it takes: [first_sequence, end_sequence)
    end_sequence: int
    detach_pending: bool
    journals: dict[str, JournalRows] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(rows.count for rows in self.journals.values())


async def list_partitions(connection) -> list[Partition]:
    """Every partition of the journal table, oldest range first, with its rows per journal."""
    found = []
    for row in await connection.fetch(
            "SELECT partition_name, first_sequence, end_sequence, detach_pending "
            "FROM ledger_journal_partitions ORDER BY first_sequence"):
        partition = Partition(row["partition_name"], row["first_sequence"],
                              row["end_sequence"], row["detach_pending"])
        for rows in await connection.fetch(
                f'SELECT journal_name, min(sequence) AS first, max(sequence) AS last, '
                f'count(*) AS count FROM "{partition.name}" GROUP BY journal_name '
                f'ORDER BY journal_name'):
            partition.journals[rows["journal_name"]] = JournalRows(
                rows["first"], rows["last"], rows["count"])
        found.append(partition)
    return found


@dataclass(frozen=True)
class SnapshotRow:
    """A `switch_snapshot` row: decoded, or the reason it is not a valid snapshot."""

    journal_name: str
    sequence: int
    snapshot: Snapshot | None
    problem: str

    @property
    def source(self) -> str:
        return f"postgresql:switch_snapshot/{self.journal_name}/{self.sequence}"


async def snapshot_rows(connection, name: str | None = None) -> list[SnapshotRow]:
    """Every server snapshot row (of journal `name`, or all), newest first per journal,
    decoded with the file store's code; a row whose header names another sequence than
    its key is not a valid snapshot either."""
    if await connection.fetchval("SELECT to_regclass('switch_snapshot') IS NULL"):
        return []
    rows = await connection.fetch(
        "SELECT journal_name, sequence, data FROM switch_snapshot "
        "WHERE $1::text IS NULL OR journal_name = $1 ORDER BY journal_name, sequence DESC",
        name)
    found = []
    for row in rows:
        source = f"postgresql:switch_snapshot/{row['journal_name']}/{row['sequence']}"
        decoded = decode_snapshot(bytes(row["data"]), source)
        if isinstance(decoded, str):
            found.append(SnapshotRow(row["journal_name"], row["sequence"], None, decoded))
        elif decoded.position.sequence != row["sequence"]:
            found.append(SnapshotRow(row["journal_name"], row["sequence"], None,
                                     f"its header covers record {decoded.position.sequence}"))
        else:
            found.append(SnapshotRow(row["journal_name"], row["sequence"], decoded, ""))
    return found


async def _record_hash_at(connection, name: str, sequence: int) -> bytes | None:
    """The hash of record `sequence` of journal `name`: the table's row, or the manifest's
    last record of an archived segment; None when neither holds it."""
    if sequence == 0:
        return GENESIS.record_hash
    header = await connection.fetchval(
        "SELECT header FROM ledger_journal WHERE journal_name = $1 AND sequence = $2",
        name, sequence)
    if header is not None:
        return bytes(header[HEADER_BYTES - 32:])
    last_hash = await connection.fetchval(
        "SELECT last_hash FROM ledger_journal_archive WHERE journal_name = $1 "
        "AND last_sequence = $2", name, sequence)
    return bytes(last_hash) if last_hash is not None else None


async def covered_sequences(connection) -> tuple[dict[str, int], list[str]]:
    """Per journal name, the record its oldest retained usable snapshot covers (every
    retained snapshot must stay usable, so nothing past the oldest may go), and warnings
    for snapshot rows that cannot count (damaged, or off the journal's chain)."""
    covered: dict[str, int] = {}
    warnings = []
    for row in await snapshot_rows(connection):
        if row.snapshot is None:
            warnings.append(f"snapshot {row.source} is not usable: {row.problem}")
            continue
        expected = await _record_hash_at(connection, row.journal_name, row.sequence)
        if expected is None or expected != row.snapshot.position.record_hash:
            warnings.append(f"snapshot {row.source} is not on journal "
                            f"{row.journal_name!r}'s chain" + (
                                " (its record is not in the table)" if expected is None
                                else ""))
            continue
        covered[row.journal_name] = min(covered.get(row.journal_name, row.sequence),
                                        row.sequence)
    return covered, warnings


async def _heads(connection) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT journal_name, max(sequence) AS head FROM ledger_journal GROUP BY journal_name")
    return {row["journal_name"]: row["head"] for row in rows}


async def _archived_end(connection, name: str) -> JournalPosition | None:
    """The last archived record of journal `name` (the manifest's), if any."""
    row = await connection.fetchrow(
        "SELECT last_sequence, last_hash FROM ledger_journal_archive WHERE journal_name = $1 "
        "ORDER BY last_sequence DESC LIMIT 1", name)
    if row is None:
        return None
    return JournalPosition(sequence=row["last_sequence"], record_hash=bytes(row["last_hash"]))


def why_not_archivable(partition: Partition, covered: dict[str, int],
                       heads: dict[str, int]) -> str:
    """"" when `partition` may go: each journal with rows in it has a usable snapshot
    covering all of them and records after it (the newest record of a journal always stays,
    so the table keeps every journal's tail and a writer never loses its partition)."""
    for name, rows in sorted(partition.journals.items()):
        if rows.count != rows.last_sequence - rows.first_sequence + 1:
            return (f"journal {name!r} has {rows.count} rows for sequences "
                    f"{rows.first_sequence}..{rows.last_sequence}: records are missing")
        if name not in covered:
            return f"journal {name!r} has no usable snapshot in switch_snapshot"
        if covered[name] < rows.last_sequence:
            return (f"journal {name!r}'s records up to {rows.last_sequence} are here but its "
                    f"oldest retained snapshot covers {covered[name]}")
        if heads.get(name, 0) <= rows.last_sequence:
            return f"it holds journal {name!r}'s newest record ({rows.last_sequence})"
    return ""


# -- archiving -------------------------------------------------------------------------------

@dataclass
class ArchivedSegment:
    journal_name: str
    path: str
    base: JournalPosition
    last: JournalPosition
    records: int


@dataclass
class ArchiveReport:
    archived: list[str] = field(default_factory=list)  # partitions detached
    dropped: list[str] = field(default_factory=list)  # of which dropped (or earlier kept)
    kept: list[str] = field(default_factory=list)  # detached and kept as plain tables
    segments: list[ArchivedSegment] = field(default_factory=list)
    stopped_at: str = ""  # why the next partition stays
    warnings: list[str] = field(default_factory=list)


Progress = Callable[[str, int, int], None]  # (partition, records done, records in it)


class _SegmentWriter:
    """Writes one journal's records of one partition as segment files, cut every
    ARCHIVE_SEGMENT_BYTES_MAX bytes; each file is fsynced under a temporary name, renamed,
    and read back (every record verified on the chain) before it counts."""

    def __init__(self, directory: str, name: str, base: JournalPosition,
                 segment_bytes_max: int) -> None:
        self.directory = directory
        self.name = name
        self.segment_bytes_max = segment_bytes_max
        self.written: list[ArchivedSegment] = []
        self._base = base
        self._end = base
        self._file = None
        self._temporary = ""
        self._bytes = 0
        self._records = 0

    def add(self, record_header: bytes, payload: bytes, position: JournalPosition) -> None:
        size = len(record_header) + len(payload)
        if self._file is not None and self._bytes + size > self.segment_bytes_max:
            self._seal()
        if self._file is None:
            final = os.path.join(self.directory, segment_name(self._end) + ARCHIVE_SUFFIX)
            self._temporary = os.path.join(self.directory,
                                           f".{os.path.basename(final)}.{os.getpid()}.tmp")
            self._base = self._end
            self._file = lzma.open(self._temporary, "wb", preset=1)
            self._bytes = 0
            self._records = 0
        self._file.write(record_header)
        self._file.write(payload)
        self._bytes += size
        self._records += 1
        self._end = position

    def _seal(self) -> None:
        file, self._file = self._file, None
        file.close()
        with open(self._temporary, "rb") as written:
            os.fsync(written.fileno())
        final = os.path.join(self.directory, segment_name(self._base) + ARCHIVE_SUFFIX)
        os.replace(self._temporary, final)
        _fsync_directory(self.directory)
        _read_back(final, self._base, self._end, self._records)
        self.written.append(ArchivedSegment(self.name, final, self._base, self._end,
                                            self._records))

    def finish(self) -> list[ArchivedSegment]:
        if self._file is not None:
            self._seal()
        return self.written

    def abandon(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            if os.path.exists(self._temporary):
                os.unlink(self._temporary)


def _read_back(path: str, base: JournalPosition, last: JournalPosition, records: int) -> None:
    segment = Segment(path, base, archived=True)
    count = 0
    end = base
    for record in _sealed_records(segment):
        count += 1
        end = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
    if count != records or end.sequence != last.sequence or end.record_hash != last.record_hash:
        raise JournalCorrupt(RecordProblem.MISSING_RECORDS, end.sequence + 1, None,
                             f"archived segment {segment.name} read back {count} records "
                             f"ending at {end.sequence}, written {records} ending at "
                             f"{last.sequence}")


async def _archive_journal_rows(connection, partition: Partition, name: str,
                                base: JournalPosition, directory: str, segment_bytes_max: int,
                                progress: Progress | None, done: int) -> list[ArchivedSegment]:
    rows_of = partition.journals[name]
    writer = _SegmentWriter(directory, name, base, segment_bytes_max)
    expected = base
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            cursor = connection.cursor(
                f'SELECT sequence, kind, header, payload FROM "{partition.name}" '
                f'WHERE journal_name = $1 ORDER BY sequence', name,
                prefetch=POSTGRES_FETCH_ROWS_MAX)
            async for row in cursor:
                try:
                    _record, expected = verify_row(row, expected)
                except JournalCorrupt as error:
                    raise JournalCorrupt(error.problem, error.sequence, None,
                                         f"journal {name!r} in partition {partition.name}: "
                                         f"{error.detail}") from None
                writer.add(bytes(row["header"]), bytes(row["payload"]), expected)
                done += 1
                if progress is not None and done % 256 == 0:
                    progress(partition.name, done, partition.records)
        segments = writer.finish()
    except BaseException:
        writer.abandon()
        raise
    if expected.sequence != rows_of.last_sequence:
        raise JournalCorrupt(RecordProblem.MISSING_RECORDS, expected.sequence + 1, None,
                             f"journal {name!r} in partition {partition.name}")
    # The chain goes on in the table: the next record must follow this one.
    following = await connection.fetchval(
        "SELECT header FROM ledger_journal WHERE journal_name = $1 AND sequence = $2",
        name, expected.sequence + 1)
    fields = parse_header(bytes(following)) if following is not None else None
    if not isinstance(fields, HeaderFields) or fields.previous_hash != expected.record_hash:
        raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, expected.sequence + 1, None,
                             f"journal {name!r}: the record after partition {partition.name} "
                             f"does not follow its last one")
    return segments


async def _finalize_pending(connection, report: ArchiveReport) -> None:
    """A detach that a crash interrupted (DETACH ... CONCURRENTLY is two transactions)."""
    for row in await connection.fetch(
            "SELECT partition_name FROM ledger_journal_partitions WHERE detach_pending"):
        await connection.execute(
            f'ALTER TABLE ledger_journal DETACH PARTITION "{row["partition_name"]}" FINALIZE')
        report.warnings.append(f"finished the interrupted detach of {row['partition_name']}")


async def archive_partitions(dsn: str, archive_dir: str, *, delete: bool = False,
                             progress: Progress | None = None,
                             segment_bytes_max: int = ARCHIVE_SEGMENT_BYTES_MAX
                             ) -> ArchiveReport:
    """Archive every partition that can go, oldest first (see the module docstring).
    Raises ArchiveRefused when not one can (naming why), JournalCorrupt when a chain does
    not verify (nothing of that partition is detached)."""
    os.makedirs(archive_dir, exist_ok=True)
    report = ArchiveReport()
    connection = await _connect(dsn)
    try:
        await _require_schema(connection)
        await _finalize_pending(connection, report)
        if delete:
            await _drop_kept(connection, archive_dir, report)
        covered, warnings = await covered_sequences(connection)
        report.warnings.extend(warnings)
        heads = await _heads(connection)
        for partition in await list_partitions(connection):
            if not partition.journals:
                continue  # empty (made ahead, or a gap): nothing to keep, nothing in the way
            reason = why_not_archivable(partition, covered, heads)
            if reason:
                report.stopped_at = (f"partition {partition.name} (sequences "
                                     f"{partition.first_sequence}.."
                                     f"{partition.end_sequence - 1}) stays: {reason}")
                break
            await _archive_partition(connection, partition, archive_dir, delete, progress,
                                     segment_bytes_max, report)
    finally:
        await connection.close()
    if not report.archived and not report.dropped:
        raise ArchiveRefused("nothing to archive: " + (report.stopped_at or
                                                       "the journal table has no records"))
    return report


async def _archive_partition(connection, partition: Partition, archive_dir: str, delete: bool,
                             progress: Progress | None, segment_bytes_max: int,
                             report: ArchiveReport) -> None:
    segments: list[ArchivedSegment] = []
    done = 0
    for name in sorted(partition.journals):
        rows = partition.journals[name]
        if rows.first_sequence == 1:
            base = GENESIS
        else:
            archived = await _archived_end(connection, name)
            if archived is None or archived.sequence != rows.first_sequence - 1:
                raise JournalCorrupt(
                    RecordProblem.MISSING_RECORDS, rows.first_sequence, None,
                    f"journal {name!r}'s records before {rows.first_sequence} are neither in "
                    f"the table nor archived (ledger_journal_archive): partition "
                    f"{partition.name} cannot be chained to them")
            base = archived
        directory = os.path.join(archive_dir, journal_directory_name(name))
        os.makedirs(directory, exist_ok=True)
        segments += await _archive_journal_rows(connection, partition, name, base, directory,
                                                segment_bytes_max, progress, done)
        done += rows.count
    if progress is not None:
        progress(partition.name, done, partition.records)
    # Renamed while still attached (in the transaction that records its segments), so a
    # crash anywhere after leaves a table whose name says what it is: an attached one is
    # archived again by the next run, a detached one dropped by `--delete`.
    kept_name = partition.name
    if not kept_name.startswith(DETACHED_PREFIX):
        kept_name = await _free_detached_name(connection, partition)
    try:
        await _record_and_rename(connection, partition, segments, kept_name)
    except Exception as error:
        if getattr(error, "sqlstate", None) != LOCK_TIMEOUT_SQLSTATE:
            raise
        raise ArchiveRefused(f"partition {partition.name} is in use by another session "
                             f"(a long read of old records?): nothing detached, try again "
                             f"later") from None
    # CONCURRENTLY: commits go on meanwhile (it waits for readers of the partition instead
    # of locking the table); it cannot run inside a transaction.
    await connection.execute(
        f'ALTER TABLE ledger_journal DETACH PARTITION "{kept_name}" CONCURRENTLY',
        timeout=ARCHIVE_DETACH_TIMEOUT_S)
    report.archived.append(partition.name)
    report.segments += segments
    if delete:
        await connection.execute(f'DROP TABLE "{kept_name}"')
        report.dropped.append(kept_name)
    else:
        report.kept.append(kept_name)


async def _record_and_rename(connection, partition: Partition,
                             segments: list[ArchivedSegment], kept_name: str) -> None:
    async with connection.transaction():
        # The rename locks the partition (never the table): wait for its readers only so
        # long, rather than queue every later reader of it behind a long one.
        await connection.execute(
            f"SET LOCAL lock_timeout = '{ARCHIVE_RENAME_LOCK_TIMEOUT_MS}ms'")
        for segment in segments:
            await connection.execute(
                "INSERT INTO ledger_journal_archive (journal_name, first_sequence, "
                "last_sequence, base_hash, last_hash, segment_name, partition_name) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (journal_name, "
                "first_sequence) DO UPDATE SET last_sequence = EXCLUDED.last_sequence, "
                "base_hash = EXCLUDED.base_hash, last_hash = EXCLUDED.last_hash, "
                "segment_name = EXCLUDED.segment_name, "
                "partition_name = EXCLUDED.partition_name, archived_at = now()",
                segment.journal_name, segment.base.sequence + 1, segment.last.sequence,
                segment.base.record_hash, segment.last.record_hash,
                os.path.basename(segment.path), kept_name)
        if kept_name != partition.name:
            await connection.execute(
                f'ALTER TABLE "{partition.name}" RENAME TO "{kept_name}"')


async def _free_detached_name(connection, partition: Partition) -> str:
    """`ledger_journal_detached_<first sequence>`, with a suffix when a table an earlier
    archive of the same range kept (then restored) has it."""
    base = DETACHED_PREFIX + f"{partition.first_sequence:020d}"
    name = base
    for suffix in range(2, 1000):
        if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
            return name
        name = f"{base}_{suffix}"
    raise ArchiveRefused(f"too many kept tables named {base}_*: drop some (--delete)")


async def _drop_kept(connection, archive_dir: str, report: ArchiveReport) -> None:
    """Tables an earlier archive detached and kept: dropped once every segment the manifest
    lists for them reads back whole from `archive_dir`."""
    tables = await connection.fetch(
        "SELECT c.relname AS name FROM pg_class c WHERE c.relkind = 'r' "
        "AND c.relname LIKE $1 AND NOT c.relispartition AND c.relnamespace = "
        "(SELECT relnamespace FROM pg_class WHERE oid = 'ledger_journal'::regclass) "
        "ORDER BY c.relname", DETACHED_PREFIX.replace("_", r"\_") + "%")
    for table in tables:
        manifest = await connection.fetch(
            "SELECT journal_name, first_sequence, last_sequence, base_hash, last_hash, "
            "segment_name FROM ledger_journal_archive WHERE partition_name = $1 "
            "ORDER BY journal_name, first_sequence", table["name"])
        names = {row["journal_name"] for row in await connection.fetch(
            f'SELECT DISTINCT journal_name FROM "{table["name"]}"')}
        if not manifest or names - {row["journal_name"] for row in manifest}:
            report.warnings.append(f"kept table {table['name']} is not fully archived: "
                                   "left in place")
            continue
        for row in manifest:
            path = os.path.join(archive_dir, journal_directory_name(row["journal_name"]),
                                row["segment_name"])
            if not os.path.exists(path):
                raise ArchiveRefused(f"kept table {table['name']}: its archived segment "
                                     f"{path} is not in {archive_dir}; not dropped")
            _read_back(path, JournalPosition(sequence=row["first_sequence"] - 1,
                                             record_hash=bytes(row["base_hash"])),
                       JournalPosition(sequence=row["last_sequence"],
                                       record_hash=bytes(row["last_hash"])),
                       row["last_sequence"] - row["first_sequence"] + 1)
        await connection.execute(f'DROP TABLE "{table["name"]}"')
        report.dropped.append(table["name"])


# -- reading a journal through its archive ----------------------------------------------------

@dataclass
class ChainSource:
    """Where `postgres_records` found the chain: filled in as it reads."""

    anchor: str = ""  # what the first record read follows
    base: JournalPosition = GENESIS  # the position it follows
    table_first_sequence: int = 0  # 0: the table holds no record of the journal
    archived_records: int = 0
    archived_segments: int = 0
    archived_hashes: dict[int, bytes] = field(default_factory=dict)


async def _archive_anchor(connection, name: str, first: int, previous_hash: bytes,
                          snapshots: list[SnapshotRow]) -> str:
    manifest = await connection.fetchrow(
        "SELECT segment_name, last_hash FROM ledger_journal_archive WHERE journal_name = $1 "
        "AND last_sequence = $2 ORDER BY first_sequence DESC LIMIT 1", name, first - 1)
    if manifest is not None:
        if bytes(manifest["last_hash"]) != previous_hash:
            raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, first, None,
                                 f"the table's first record does not follow archived segment "
                                 f"{manifest['segment_name']} (ledger_journal_archive)")
        return f"archived segment {manifest['segment_name']} (ledger_journal_archive)"
    for row in snapshots:
        if (row.snapshot is not None and row.sequence == first - 1
                and row.snapshot.position.record_hash == previous_hash):
            return f"snapshot {row.source}"
    raise JournalCorrupt(RecordProblem.MISSING_RECORDS, first - 1, None,
                         f"the table's records of journal {name!r} start at {first} and "
                         f"nothing anchors them (no archived segment in "
                         f"ledger_journal_archive ends at {first - 1}, no snapshot covers "
                         f"it): give the archive directory")


async def postgres_records(connection, name: str, *, archive_dir: str | None = None,
                           source: ChainSource | None = None,
                           snapshots: list[SnapshotRow] | None = None,
                           want_hashes: set[int] = frozenset()) -> AsyncIterator[Record]:
    """Every verified record of journal `name`: through `archive_dir`'s segments of it
    (when given and holding any) from the genesis, then the table. Without archived files
    the table's first row must follow the genesis, the last archived record
    (ledger_journal_archive) or a snapshot at the record before it. Run it inside one
    repeatable-read transaction (a consistent view while an archive detaches partitions).
    `source` receives where the chain was anchored and, for `want_hashes`, the archived
    records' hashes."""
    source = source if source is not None else ChainSource()
    first = await connection.fetchval(
        "SELECT min(sequence) FROM ledger_journal WHERE journal_name = $1", name)
    source.table_first_sequence = first or 0
    directory = (os.path.join(archive_dir, journal_directory_name(name))
                 if archive_dir is not None else None)
    have_archive = directory is not None and os.path.isdir(directory) and bool(
        list_segments(directory))
    base = GENESIS
    if have_archive:
        source.archived_segments = len(list_segments(directory))
        end = GENESIS
        wanted = set(want_hashes) | ({first - 1} if first else set())
        manifest = {row["last_sequence"]: (row["segment_name"], bytes(row["last_hash"]))
                    for row in await connection.fetch(
                        "SELECT last_sequence, segment_name, last_hash FROM "
                        "ledger_journal_archive WHERE journal_name = $1", name)}
        for record in read_directory(directory):
            end = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
            source.archived_records += 1
            if record.sequence in wanted:
                source.archived_hashes[record.sequence] = record.record_hash
            listed = manifest.get(record.sequence)
            if listed is not None and listed[1] != record.record_hash:
                raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, record.sequence, None,
                                     f"archived record {record.sequence} in {directory} is "
                                     f"not the one segment {listed[0]} held "
                                     f"(ledger_journal_archive)")
            if not first or record.sequence < first:
                yield record
        source.archived_hashes[end.sequence] = end.record_hash
        source.anchor = f"genesis, through {source.archived_segments} archived segments"
        if first and first - 1 > end.sequence:
            raise JournalCorrupt(RecordProblem.MISSING_RECORDS, end.sequence + 1, None,
                                 f"the archived segments of journal {name!r} end at "
                                 f"{end.sequence} and the table starts at {first}")
        if first and first > 1:
            base = JournalPosition(sequence=first - 1,
                                   record_hash=source.archived_hashes[first - 1])
        archive_end = end
    else:
        archive_end = GENESIS
        if first and first > 1:
            previous = await connection.fetchval(
                "SELECT header FROM ledger_journal WHERE journal_name = $1 AND sequence = $2",
                name, first)
            fields = parse_header(bytes(previous)) if len(previous) == HEADER_BYTES else None
            if not isinstance(fields, HeaderFields):
                raise JournalCorrupt(fields if isinstance(fields, RecordProblem)
                                     else RecordProblem.TRUNCATED_HEADER, first, None,
                                     "the table's first record")
            base = JournalPosition(sequence=first - 1, record_hash=fields.previous_hash)
            snapshots = snapshots if snapshots is not None else await snapshot_rows(
                connection, name)
            source.anchor = await _archive_anchor(connection, name, first,
                                                  fields.previous_hash, snapshots)
        else:
            source.anchor = "genesis"
    source.base = base
    if not first:
        return
    expected = base
    cursor = connection.cursor(
        "SELECT sequence, kind, header, payload FROM ledger_journal "
        "WHERE journal_name = $1 AND sequence > $2 ORDER BY sequence",
        name, base.sequence, prefetch=POSTGRES_FETCH_ROWS_MAX)
    async for row in cursor:
        record, expected = verify_row(row, expected)
        if record.sequence <= archive_end.sequence:
            if (record.sequence == archive_end.sequence
                    and record.record_hash != archive_end.record_hash):
                raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, record.sequence, None,
                                     f"the table's record {record.sequence} differs from the "
                                     f"archived one")
            continue  # restored rows the archive holds as well: read there already
        yield record


# -- restoring -------------------------------------------------------------------------------

@dataclass
class RestoreReport:
    restored: dict[str, int] = field(default_factory=dict)  # journal -> records put back
    complete: list[str] = field(default_factory=list)  # journals that lacked nothing


def _archived_rows(directory: str, before_sequence: int | None) -> Iterator[tuple]:
    for record in read_directory(directory):
        if before_sequence is not None and record.sequence >= before_sequence:
            return
        yield record


async def restore_archive(dsn: str, archive_dir: str, *, names: list[str] | None = None
                          ) -> RestoreReport:
    """Put archived records back into the table, so the journal reads from the genesis
    again: for each journal of the archive (or `names`), every archived record before the
    table's first one (all of them when it has none), verified on the chain and joined to
    the table's first row, in one transaction per journal (all or nothing). Restored rows
    carry epoch 0 (archived records keep no epoch); partitions are made as needed."""
    report = RestoreReport()
    available = archive_journals(archive_dir)
    if not available:
        raise ArchiveRefused(f"{archive_dir} holds no journal's segments (expected "
                             f"<journal name>/seg-*.journal.xz, as `ponte journal archive` "
                             f"writes them)")
    for name in names or ():
        if name not in available:
            raise ArchiveRefused(f"{archive_dir} holds no segments of journal {name!r}")
    connection = await _connect(dsn)
    try:
        await _require_schema(connection)
        for name in names or available:
            directory = os.path.join(archive_dir, journal_directory_name(name))
            first = await connection.fetchval(
                "SELECT min(sequence) FROM ledger_journal WHERE journal_name = $1", name)
            if first == 1:
                report.complete.append(name)
                continue
            restored = await _restore_journal(connection, name, directory, first)
            report.restored[name] = restored
    finally:
        await connection.close()
    return report


async def _restore_journal(connection, name: str, directory: str, first: int | None) -> int:
    end = GENESIS
    restored = 0
    async with connection.transaction():
        await connection.execute("SET LOCAL ponte.journal_restore = 'on'")
        batch: list[tuple] = []
        covered_end = 0
        for record in _archived_rows(directory, first):
            header = encode_header(record.kind, record.sequence, record.now_ns,
                                   record.payload, end.record_hash)
            assert header[HEADER_BYTES - 32:] == record.record_hash  # read verified it
            batch.append((name, record.sequence, record.kind, header, record.payload, 0))
            end = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
            if len(batch) >= COMMIT_RECORDS_MAX_LIMIT:
                covered_end = await _copy_restored(connection, batch, covered_end)
                restored += len(batch)
                batch = []
        if batch:
            await _copy_restored(connection, batch, covered_end)
            restored += len(batch)
        if first:
            if end.sequence != first - 1:
                raise JournalCorrupt(RecordProblem.MISSING_RECORDS, end.sequence + 1, None,
                                     f"the archive of journal {name!r} ends at {end.sequence}"
                                     f" but the table starts at {first}")
            header = await connection.fetchval(
                "SELECT header FROM ledger_journal WHERE journal_name = $1 AND sequence = $2",
                name, first)
            fields = parse_header(bytes(header))
            if not isinstance(fields, HeaderFields) or fields.previous_hash != end.record_hash:
                raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, first, None,
                                     f"the table's first record of journal {name!r} does "
                                     f"not follow the archive's last one")
    return restored


async def _copy_restored(connection, batch: list[tuple], covered_end: int) -> int:
    """COPY one batch of restored rows, partitions first (inside the restoring
    transaction, so a failed restore leaves no partition behind either)."""
    last = batch[-1][1]
    if last >= covered_end:
        covered_end = await cover_partitions(connection, batch[0][1], last)
    await connection.copy_records_to_table("ledger_journal", records=batch,
                                           columns=JOURNAL_COLUMNS,
                                           timeout=POSTGRES_STATEMENT_TIMEOUT_S)
    return covered_end
