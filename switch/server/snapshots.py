"""Server snapshots: the core (with its ledger) and the outcome archive at one durable
journal position, written by a forked child while traffic flows, so a restart replays only
the journal after it.

Taking one (`SnapshotWriter.take`): the sequencer first lets every decided tick become
durable and released (the core then equals the journal up to `journal.position`), then
forks. The child owns a copy-on-write image of that instant: it encodes the snapshot,
writes it atomically (temp file, fsync, rename, fsync of the directory), prunes old ones,
and archives the journal segments the oldest retained snapshot covers; on a PostgreSQL
journal it also stores the file in table `switch_snapshot` (its own event loop and
connection: nothing of the upload touches the parent), which the primary and its standbys
share. The parent goes on deciding at once; the fork itself is the only pause (~20 ms per
GB of heap in 4 KiB pages, ~3 ms per GB in huge pages, which switch/server/huge_pages.py
arranges: measured by `ponte bench recovery`).

Each snapshot's header names the journal record it covers (sequence and hash: the hash
chain), and recovery checks it against the journal before trusting it; a snapshot that is
damaged or off the chain is skipped, loudly, for the previous one.

It must never publish a snapshot of a position that is not durable, and the child must
never touch the parent's sockets, journal or event loop (it closes every inherited
descriptor first and leaves with os._exit).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import time

import msgspec

from ledger.journal_format import JournalPosition
from ledger.journal_segments import archive_segments
from ledger.snapshot import FileSnapshotStore, Snapshot, decode_snapshot
from switch.server.huge_pages import HugePages

log = logging.getLogger("ponte.server.snapshots")

SNAPSHOT_DIRECTORY = "snapshots"
SERVER_SNAPSHOT_VERSION = 2  # 2: core and archive inline (Raw), not bin
SNAPSHOTS_RECENT_MAX = 16
_EXIT_OK = 0
_EXIT_FAILED = 1


class ServerSnapshot(msgspec.Struct, array_like=True, frozen=True, kw_only=True):
    """The state bytes of a server snapshot (the ledger's snapshot file frames them). Both
    parts are msgpack of their own, kept inline (Raw): decoding the frame copies nothing,
    where bytes fields copied the core's hundreds of megabytes once more at every start."""

    version: int
    core: msgspec.Raw  # SwitchCore.snapshot(), the ledger inside
    archive: msgspec.Raw  # OutcomeArchive.snapshot()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ServerSnapshot)


def encode_server_snapshot(core, archive, position: JournalPosition) -> bytes:
    return _encoder.encode(ServerSnapshot(version=SERVER_SNAPSHOT_VERSION,
                                          core=msgspec.Raw(core.snapshot(position.sequence)),
                                          archive=msgspec.Raw(archive.snapshot())))


def decode_server_snapshot(state: bytes) -> ServerSnapshot:
    """Raises msgspec errors or ValueError for a state that is not one of ours."""
    snapshot = _decoder.decode(state)
    if snapshot.version != SERVER_SNAPSHOT_VERSION:
        raise ValueError(f"server snapshot version {snapshot.version}")
    return snapshot


class SnapshotTaken(msgspec.Struct, frozen=True, kw_only=True):
    sequence: int
    started_ns: int  # the fork
    finished_ns: int  # the child reaped
    bytes: int
    write_s: float
    fork_ms: float


class SnapshotStatus(msgspec.Struct, kw_only=True):
    """What an operator sees (/health, metrics, console)."""

    sequence: int = 0  # journal record the newest snapshot covers (0: none yet)
    written_ns: int = 0
    bytes: int = 0
    write_s: float = 0.0
    fork_s: float = 0.0
    taken: int = 0
    failed: int = 0
    skipped_at_start: int = 0  # damaged or off-chain snapshots skipped by recovery
    # The last SNAPSHOTS_RECENT_MAX written, oldest first: when each child ran (wall
    # clock, so latencies measured elsewhere can be lined up with it), its size and costs.
    recent: list[SnapshotTaken] = msgspec.field(default_factory=list)


class PostgresSnapshotTable:
    """The server snapshots of one PostgreSQL journal (table `switch_snapshot`, migration
    0021): each row holds a snapshot file's exact bytes, so it verifies with the same code
    as a file. Every call opens a short connection of its own (the snapshot child has no
    other; recovery runs before the switch has pools)."""

    def __init__(self, dsn: str, journal_name: str, *, retained_max: int) -> None:
        self.dsn = dsn
        self.journal_name = journal_name
        self.retained_max = retained_max

    async def put(self, data: bytes, sequence: int) -> None:
        """Store one snapshot file's bytes; delete rows beyond the newest `retained_max`
        in the same transaction."""
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        try:
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO switch_snapshot (journal_name, sequence, data) "
                    "VALUES ($1, $2, $3) ON CONFLICT (journal_name, sequence) DO NOTHING",
                    self.journal_name, sequence, data)
                await connection.execute(
                    "DELETE FROM switch_snapshot WHERE journal_name = $1 AND sequence < "
                    "(SELECT min(sequence) FROM (SELECT sequence FROM switch_snapshot "
                    " WHERE journal_name = $1 ORDER BY sequence DESC LIMIT $2) AS kept)",
                    self.journal_name, self.retained_max)
        finally:
            await connection.close()

    async def sequences(self) -> list[int]:
        """Newest first."""
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        try:
            rows = await connection.fetch(
                "SELECT sequence FROM switch_snapshot WHERE journal_name = $1 "
                "ORDER BY sequence DESC", self.journal_name)
        finally:
            await connection.close()
        return [row["sequence"] for row in rows]

    async def load(self, sequence: int) -> Snapshot | str:
        """The snapshot row of `sequence`, or the reason it is not a valid one."""
        import asyncpg

        connection = await asyncpg.connect(self.dsn)
        try:
            data = await connection.fetchval(
                "SELECT data FROM switch_snapshot WHERE journal_name = $1 AND sequence = $2",
                self.journal_name, sequence)
        finally:
            await connection.close()
        if data is None:
            return "deleted meanwhile"
        snapshot = decode_snapshot(bytes(data), self.source(sequence))
        if isinstance(snapshot, Snapshot) and snapshot.position.sequence != sequence:
            return f"row {sequence} holds the snapshot of record {snapshot.position.sequence}"
        return snapshot

    def source(self, sequence: int) -> str:
        return f"postgresql:switch_snapshot/{self.journal_name}/{sequence}"


class SnapshotWriter:
    """Forks snapshot children, one at a time, and reaps them."""

    def __init__(self, data_dir: str, *, retained_max: int, archive_policy: str,
                 journal_directory: str | None,
                 table: PostgresSnapshotTable | None = None,
                 huge_pages: HugePages | None = None) -> None:
        self.directory = os.path.join(data_dir, SNAPSHOT_DIRECTORY)
        os.makedirs(self.directory, exist_ok=True)
        self.retained_max = retained_max
        self.archive_policy = archive_policy
        self.journal_directory = journal_directory  # None: PostgreSQL (no segments)
        self.table = table  # a PostgreSQL journal's shared snapshots
        # The heap in huge pages keeps the fork short (switch/server/huge_pages.py): the
        # server collapses it once its listeners are open.
        self.huge_pages = huge_pages
        self.status = SnapshotStatus()
        self._child: int | None = None
        self._child_position: JournalPosition | None = None
        self._child_started = 0.0
        self._child_started_ns = 0
        self.store = FileSnapshotStore(self.directory, retained_max=retained_max)

    async def candidates(self):
        """(source, Snapshot or the reason it is not valid) newest first, from this
        process's files and, on a PostgreSQL journal, the shared table: recovery tries them
        in turn. A sequence held by both is tried from the file first (no transfer), then
        from the table (the file may be damaged)."""
        local = dict(self.store._paths_newest_first())
        shared = await self.table.sequences() if self.table is not None else []
        for sequence in sorted(set(local) | set(shared), reverse=True):
            if sequence in local:
                path = local[sequence]
                data = await asyncio.to_thread(_read_file, path)
                yield path, decode_snapshot(data, path)
            if sequence in shared:
                yield self.table.source(sequence), await self.table.load(sequence)

    @property
    def busy(self) -> bool:
        """A child is still writing (reaping it if it finished)."""
        self.reap()
        return self._child is not None

    def take(self, core, archive, position: JournalPosition,
             durable_first: list[str] = ()) -> bool:
        """Fork a child that snapshots `core` and `archive` at `position` (durable, and the
        core's state is exactly the journal up to it). `durable_first`: files the child
        fsyncs before it writes the snapshot (the settlement entry log, whose entries the
        snapshot covers). False if a child is still busy."""
        if self.busy:
            return False
        started = time.perf_counter()
        started_ns = time.time_ns()
        pid = os.fork()
        if pid == 0:  # the child: never return into the parent's code
            os._exit(self._child_main(core, archive, position, durable_first))
        self.status.fork_s = time.perf_counter() - started
        self._child = pid
        self._child_position = position
        self._child_started = started
        self._child_started_ns = started_ns
        return True

    def _child_main(self, core, archive, position: JournalPosition,
                    durable_first: list[str] = ()) -> int:
        try:
            _close_inherited_descriptors()
            gc.disable()  # the frozen heap is shared copy-on-write: don't walk it
            _lower_priority()
            _fsync_paths(durable_first)
            state = encode_server_snapshot(core, archive, position)
            path = self.store.write(state, position)
            if self.table is not None:
                # The parent's loop is "running" in this copy of its thread: a fresh one.
                asyncio.events._set_running_loop(None)
                asyncio.run(self.table.put(_read_file(path), position.sequence))
            if self.journal_directory is not None:
                sequences = self.store.sequences()
                if len(sequences) >= self.retained_max:
                    # Only segments every retained snapshot covers: each one must stay usable.
                    archive_segments(self.journal_directory, min(sequences),
                                     policy=self.archive_policy)
            return _EXIT_OK
        except BaseException:  # noqa: BLE001 - the child reports by its exit status
            log.exception("snapshot_child_failed sequence=%d", position.sequence)
            return _EXIT_FAILED

    def reap(self) -> None:
        if self._child is None:
            return
        pid, status = os.waitpid(self._child, os.WNOHANG)
        if pid == 0:
            return
        position = self._child_position
        self._child = None
        if os.waitstatus_to_exitcode(status) == _EXIT_OK:
            self.status.taken += 1
            self.status.sequence = position.sequence
            self.status.written_ns = time.time_ns()
            self.status.write_s = time.perf_counter() - self._child_started
            path = os.path.join(self.directory, f"snapshot-{position.sequence:020d}.psnap")
            self.status.bytes = os.path.getsize(path) if os.path.exists(path) else 0
            recent = self.status.recent
            recent.append(SnapshotTaken(
                sequence=position.sequence, started_ns=self._child_started_ns,
                finished_ns=self.status.written_ns, bytes=self.status.bytes,
                write_s=round(self.status.write_s, 3),
                fork_ms=round(self.status.fork_s * 1e3, 2)))
            del recent[:-SNAPSHOTS_RECENT_MAX]
            log.info("snapshot_taken sequence=%d bytes=%d write_s=%.3f fork_ms=%.1f",
                     position.sequence, self.status.bytes, self.status.write_s,
                     self.status.fork_s * 1000)
        else:
            self.status.failed += 1
            log.error("snapshot_failed sequence=%d exit_status=%s", position.sequence,
                      os.waitstatus_to_exitcode(status))

    def wait(self, timeout_s: float = 600.0) -> None:
        """Block until a running child finishes (shutdown, tests); reap collects it."""
        deadline = time.monotonic() + timeout_s
        while self._child is not None and time.monotonic() < deadline:
            self.reap()
            if self._child is not None:
                time.sleep(0.01)


CHILD_NICENESS = 10


def _lower_priority() -> None:
    """The child runs at a low priority, so on a busy box the sequencer gets the CPU first.
    Not SCHED_IDLE: a starved child holding a filesystem-journal handle in one of its
    writes would hold up the switch's own fdatasync behind it (priority inversion); at
    nice 10 it still gets a share. Its writes go to the disk a step at a time and old files
    are removed by steps (ledger/journal_files.py), so the journal's fdatasync never queues
    behind much of them."""
    os.nice(CHILD_NICENESS)


def _fsync_paths(paths) -> None:
    """Each file's data, then each directory's entries, on the disk."""
    directories = set()
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        directories.add(os.path.dirname(path) or ".")
    for directory in directories:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _close_inherited_descriptors() -> None:
    """Everything but stdin/out/err: sockets, the journal (and its lock), the stores."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    os.closerange(3, soft)
