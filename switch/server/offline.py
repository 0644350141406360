"""The switch's durable state read offline, for operators and auditors: the journal's
segments (or PostgreSQL rows, with their archived segment files) verified end to end, the
snapshots checked against the chain, and a core rebuilt from the newest usable snapshot plus
the journal after it — without a running switch and without writing anything.

Both journals go through one `Replay`: records in chain order, snapshots checked against
the hashes of the records they name, the core rebuilt and its ledger's invariants checked.

`ponte journal verify` and `ponte journal inspect` (switch/server/cli.py) and `ponte admin
verify-audit` use it. It must never open a journal for writing or change a file or a row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import msgspec

import ledger as ledger_package
from ledger.journal_format import GENESIS, JournalCorrupt, JournalPosition, Record
from ledger.journal import read_records
from ledger.journal_segments import list_segments, read_directory
from ledger.snapshot import FileSnapshotStore, Snapshot
from switch.core import SwitchCore
from switch.core.results import ProtocolError
from switch.server.config import ServerConfig
from switch.server.journal import JOURNAL_DIRECTORY, LEGACY_JOURNAL_FILE, decode_tick
from switch.server.shell import OutcomeArchive
from switch.server.snapshots import SNAPSHOT_DIRECTORY, decode_server_snapshot


@dataclass
class SnapshotCheck:
    path: str  # a file path, or postgresql:switch_snapshot/<journal>/<sequence> (a row)
    sequence: int
    problem: str = ""  # "" when it decodes, chains to the journal and its state decodes


@dataclass
class OfflineState:
    head: JournalPosition
    records: int  # records read and verified
    segments: int
    archived_segments: int
    core: SwitchCore | None
    snapshots: list[SnapshotCheck] = field(default_factory=list)
    rebuilt_from: int = 0  # the snapshot sequence the core was rebuilt from (0: genesis)
    anchor: str = "genesis"  # what the first record read follows


def file_records(data_dir: str, start: JournalPosition = GENESIS):
    """Every verified record of the data directory's journal after `start`, read-only (a
    journal from before segments, one `switch.journal` file, is read where it is)."""
    directory = os.path.join(data_dir, JOURNAL_DIRECTORY)
    legacy = os.path.join(data_dir, LEGACY_JOURNAL_FILE)
    if not (os.path.isdir(directory) and list_segments(directory)) and os.path.exists(legacy):
        return read_records(legacy, start=start) if start.sequence == 0 else iter(())
    return read_directory(directory, start=start)


class Replay:
    """Records in chain order after `base` (the position the first one follows) into a
    core rebuilt from the newest candidate snapshot at or after `base` whose state decodes
    (or a fresh core when `base` is the genesis and none does); then `finish` checks every
    snapshot against the hashes the chain gave and the ledger's invariants.

    `snapshots`: (where, Snapshot or the reason it is not one), newest first. `trusted`:
    sequences whose record hash is already known to match (checked against the journal
    before the replay): the rebuild prefers those, so an off-chain snapshot is not used."""

    def __init__(self, config: ServerConfig, snapshots: list[tuple[str, Snapshot | str]],
                 base: JournalPosition, *, trusted: set[int] | None = None) -> None:
        self.base = base
        self.checks: list[SnapshotCheck] = []
        self.usable: list[tuple[str, Snapshot]] = []
        for where, snapshot in snapshots:
            if isinstance(snapshot, str):
                self.checks.append(SnapshotCheck(where, -1, snapshot))
            else:
                self.usable.append((where, snapshot))
        self._hashes = {snapshot.position.sequence: None for _, snapshot in self.usable}
        if base.sequence in self._hashes:
            self._hashes[base.sequence] = base.record_hash
        self._state_problems: dict[str, str] = {}
        self.head = base
        self.records = 0
        self.rebuilt_from = 0
        self.core: SwitchCore | None = None
        self.archive: OutcomeArchive | None = None  # the core's outcome archive
        self._step = None
        for where, snapshot in self.usable:  # newest first: the newest that rebuilds wins
            if snapshot.position.sequence < base.sequence:
                continue  # the records after it are not all readable
            if trusted is not None and snapshot.position.sequence not in trusted:
                continue
            try:
                self.core, self.archive = _core_from(config, snapshot)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as error:
                self._state_problems[where] = f"state does not decode: {error}"
                continue
            self.rebuilt_from = snapshot.position.sequence
            break
        if self.core is None and base.sequence == 0:
            self.core, self.archive = _fresh_core(config)
        if self.core is not None:
            self._step = self.core.step

    def feed(self, record: Record) -> None:
        self.records += 1
        self.head = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
        if record.sequence in self._hashes:
            self._hashes[record.sequence] = record.record_hash
        if self._step is not None and record.sequence > self.rebuilt_from:
            _apply(self._step, record)

    def finish(self) -> list[SnapshotCheck]:
        """Every snapshot's verdict, newest first; raises AssertionError when the rebuilt
        ledger's invariants do not hold."""
        checks = list(self.checks)
        for where, snapshot in self.usable:
            sequence = snapshot.position.sequence
            check = SnapshotCheck(where, sequence)
            if sequence < self.base.sequence:
                check.problem = (f"covers record {sequence}, before the first one read "
                                 f"({self.base.sequence + 1}): cannot be re-verified")
            elif sequence > self.head.sequence:
                check.problem = f"covers record {sequence}, beyond the journal's end"
            elif sequence > 0 and self._hashes.get(sequence) != snapshot.position.record_hash:
                check.problem = "its journal record hash is not the journal's (off the chain)"
            elif where in self._state_problems:
                check.problem = self._state_problems[where]
            else:
                try:
                    decode_server_snapshot(snapshot.state)
                except (msgspec.DecodeError, ValueError) as error:
                    check.problem = f"state does not decode: {error}"
            checks.append(check)
        if self.core is not None:
            self.core.check_invariants()
        return sorted(checks, key=lambda c: c.sequence, reverse=True)


def verify_file_journal(config: ServerConfig) -> OfflineState:
    """Read the whole file journal (archived segments included); check every snapshot
    against it; rebuild the core from the newest snapshot that checks and replay the rest.
    Raises JournalCorrupt naming the segment for damage."""
    data_dir = config.data_dir
    directory = os.path.join(data_dir, JOURNAL_DIRECTORY)
    segments = list_segments(directory) if os.path.isdir(directory) else []
    store = FileSnapshotStore(os.path.join(data_dir, SNAPSHOT_DIRECTORY))
    # Where the oldest available segment starts: the journal's verified prefix begins there.
    oldest = segments[0].base if segments else GENESIS
    replay = Replay(config, list(store.snapshots()), oldest)
    for record in file_records(data_dir, start=oldest):
        replay.feed(record)
    checks = replay.finish()
    return OfflineState(head=replay.head, records=replay.records, segments=len(segments),
                        archived_segments=sum(s.archived for s in segments), core=replay.core,
                        snapshots=checks, rebuilt_from=replay.rebuilt_from,
                        anchor="genesis" if oldest.sequence == 0
                        else f"segment {segments[0].name}")


async def verify_postgres_journal(config: ServerConfig, *,
                                  archive_dir: str | None = None) -> OfflineState:
    """The same for a PostgreSQL journal (`config.journal_name`): the chain from the
    genesis through `archive_dir`'s segments (when given) and on through the table — or,
    without them, from the table's first row, anchored on the last archived record or a
    snapshot (`ledger.journal_archive.postgres_records`) — every `switch_snapshot` row
    checked against it, the core rebuilt from the newest usable one. One read-only
    repeatable-read transaction: an archive detaching partitions meanwhile changes nothing
    of what is read."""
    from ledger.journal_archive import ChainSource, postgres_records, snapshot_rows
    from ledger.journal_postgres import _connect, _require_schema

    name = config.journal_name
    connection = await _connect(config.postgres_dsn.reveal())
    try:
        await _require_schema(connection)
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            rows = await snapshot_rows(connection, name)
            snapshots = [(row.source, row.snapshot if row.snapshot is not None
                          else row.problem) for row in rows]
            source = ChainSource()
            records = postgres_records(connection, name, archive_dir=archive_dir,
                                       source=source, snapshots=rows)
            first = await anext(records, None)
            # Snapshots whose record the table (or the archive's anchor) shows with their
            # hash: the rebuild picks among those; the full read below confirms the chain.
            trusted = await _snapshots_on_table(connection, name, rows, source)
            replay = Replay(config, snapshots, source.base, trusted=trusted)
            if first is not None:
                replay.feed(first)
                async for record in records:
                    replay.feed(record)
    finally:
        await connection.close()
    checks = replay.finish()
    return OfflineState(head=replay.head, records=replay.records,
                        segments=source.archived_segments,
                        archived_segments=source.archived_segments, core=replay.core,
                        snapshots=checks, rebuilt_from=replay.rebuilt_from,
                        anchor=source.anchor)


async def _snapshots_on_table(connection, name: str, rows, source) -> set[int]:
    from ledger.journal_format import HEADER_BYTES

    wanted = [row.sequence for row in rows if row.snapshot is not None]
    found = {record["sequence"]: bytes(record["header"][HEADER_BYTES - 32:])
             for record in await connection.fetch(
                 "SELECT sequence, header FROM ledger_journal WHERE journal_name = $1 "
                 "AND sequence = ANY($2::bigint[])", name, wanted)}
    found[source.base.sequence] = source.base.record_hash
    return {row.sequence for row in rows if row.snapshot is not None
            and found.get(row.sequence) == row.snapshot.position.record_hash}


async def postgres_journal_records(config: ServerConfig, *, archive_dir: str | None = None):
    """Every verified record of the PostgreSQL journal (archived segments first when
    `archive_dir` is given), for `ponte journal inspect`."""
    from ledger.journal_archive import postgres_records
    from ledger.journal_postgres import _connect, _require_schema

    connection = await _connect(config.postgres_dsn.reveal())
    try:
        await _require_schema(connection)
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            async for record in postgres_records(connection, config.journal_name,
                                                 archive_dir=archive_dir):
                yield record
    finally:
        await connection.close()


def _fresh_core(config: ServerConfig):
    archive = OutcomeArchive(config.outcomes_archived_max, config.core)
    core = SwitchCore(config.core, ledger_package.Ledger(config.ledger), observer=archive.observe)
    archive.bind(core)
    return core, archive


def _core_from(config: ServerConfig, snapshot):
    saved = decode_server_snapshot(snapshot.state)
    archive = OutcomeArchive(config.outcomes_archived_max, config.core).restore(saved.archive)
    core, _ = SwitchCore.from_snapshot(config.core, ledger_package.Ledger, saved.core,
                                       observer=archive.observe)
    archive.bind(core)
    return core, archive


def _apply(step, record: Record) -> None:
    for now_ns, event in decode_tick(record):
        try:
            step(event, now_ns)
        except ProtocolError:
            pass


__all__ = ["JournalCorrupt", "OfflineState", "Replay", "SnapshotCheck", "file_records",
           "postgres_journal_records", "verify_file_journal", "verify_postgres_journal"]
