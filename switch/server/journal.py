"""The switch's event journal: one hash-chained record per sequencer tick, on the ledger's
journal backends (a local file with fdatasync, or PostgreSQL with COPY).

A record has kind `SWITCH_TICK_KIND` (16, an opaque kind for the ledger's journal), the
tick's `now_ns` in its header, and as payload the msgpack array of the tick's core events
(`switch.core.messages.Event`, tagged and array-like, exactly what `SwitchCore.step` was
given). Every event of a tick was decided with the header's `now_ns`. Replay decodes the
records in order and feeds `(now_ns, event)` pairs to `SwitchCore.step`, from the position
of the newest valid snapshot (`ServerSnapshot`, see switch/server/snapshots.py) or from the
first record.

On a file, the journal is a directory of segments (`ledger.journal_segments`): the server
rotates to a new segment at a quiet point once the current one passes
`journal_segment_bytes_max`; segments a retained snapshot covers are archived or deleted
by policy. A journal written before segments (one `switch.journal` file) becomes the first
segment when it is opened.

The file backend's commit (write + fdatasync) runs in a thread so the loop keeps deciding
the next tick meanwhile. This module must never reorder, rewrite or skip a record, and never
retry a failed commit (the journal refuses further work: restart and recover).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import os

from ledger.journal import FileJournal
from ledger.journal_format import GENESIS, JournalPosition, Record
from ledger.journal_segments import SegmentedJournal, list_segments, segment_name
from switch.core import codec

SWITCH_TICK_KIND = 16
JOURNAL_DIRECTORY = "journal"  # in the data directory: the segments
LEGACY_JOURNAL_FILE = "switch.journal"  # before segments: one file, now the first segment


def journal_directory(data_dir: str) -> str:
    """The data directory's journal segments, with a journal written before segments moved
    in as the first segment (it starts at the genesis)."""
    directory = os.path.join(data_dir, JOURNAL_DIRECTORY)
    legacy = os.path.join(data_dir, LEGACY_JOURNAL_FILE)
    if os.path.exists(legacy) and not (os.path.isdir(directory) and list_segments(directory)):
        os.makedirs(directory, exist_ok=True)
        os.replace(legacy, os.path.join(directory, segment_name(GENESIS)))
        for path in (directory, data_dir):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return directory


def decode_tick(record: Record) -> Iterator[tuple[int, object]]:
    """(now_ns, event) pairs of one switch record; other kinds are not ours."""
    if record.kind != SWITCH_TICK_KIND:
        return iter(())
    now_ns = record.now_ns
    return ((now_ns, event) for event in codec.decode_tick(record.payload))


class SwitchJournal:
    """One interface over both backends for the sequencer."""

    def __init__(self, backend, *, threaded_commit: bool) -> None:
        self.backend = backend
        self._threaded = threaded_commit
        self._inline = not threaded_commit and isinstance(backend, FileJournal)
        # One thread of its own: a commit never queues behind other executor work.
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix="ponte-journal")
                          if threaded_commit else None)
        self.records_appended = 0

    @classmethod
    def open_file(cls, directory: str, on_record: Callable[[Record], None], *,
                  start: JournalPosition = GENESIS,
                  threaded_commit: bool = True) -> SwitchJournal:
        """The segments in `directory`, verified and replayed after `start`.
        `threaded_commit`: write + fdatasync in a thread while the loop decides the next
        tick (best when fsync is slow); False: on the loop thread, blocking it for the
        duration (best when fsync is fast and the CPU is busy: no thread hand-offs)."""
        return cls(SegmentedJournal.open_directory(directory, start=start, on_record=on_record),
                   threaded_commit=threaded_commit)

    @classmethod
    async def open_postgres(cls, dsn: str, name: str, on_record: Callable[[Record], None], *,
                            start: JournalPosition = GENESIS,
                            holder: str = "") -> SwitchJournal:
        """The writer of journal `name`, its records after `start` replayed: its lock and
        the next epoch (`holder` says who took it); JournalLocked while another process
        is the writer."""
        from ledger.journal_postgres import PostgresJournal

        backend = await PostgresJournal.open(dsn, name=name, start=start, on_record=on_record,
                                             holder=holder)
        return cls(backend, threaded_commit=False)

    @property
    def position(self) -> JournalPosition:
        """The durable end: what a snapshot taken with nothing buffered covers."""
        return self.backend.position

    @property
    def segmented(self) -> bool:
        return isinstance(self.backend, SegmentedJournal)

    @property
    def segment_bytes(self) -> int:
        """Durable bytes of the segment being written (0 for PostgreSQL)."""
        return self.backend.file_bytes if self.segmented else 0

    def rotate_segment(self) -> str:
        """Seal the segment and go on in a new one: only with nothing buffered."""
        return self.backend.rotate_segment()

    def append_tick(self, now_ns: int, payloads: list[bytes]) -> int:
        """Buffer one tick's record payloads (`codec.encode_tick`); the last record's
        sequence. Durable after commit."""
        sequence = 0
        for payload in payloads:
            sequence = self.backend.append(SWITCH_TICK_KIND, now_ns, payload)
            self.records_appended += 1
        return sequence

    @property
    def appended_sequence(self) -> int:
        return self.backend.appended_position.sequence

    @property
    def durable_sequence(self) -> int:
        return self.backend.durable_sequence

    @property
    def buffered_records(self) -> int:
        return self.backend.buffered_records

    async def commit(self) -> int:
        if self._inline:
            return self.backend.commit()
        if self._threaded:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self.backend.commit)
        return await self.backend.commit()

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        result = self.backend.close()
        if asyncio.iscoroutine(result):
            await result
