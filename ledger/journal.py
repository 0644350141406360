"""The ledger's durable command log on a local file: append-only, hash-chained, group-committed.

`FileJournal` is the embedded default backend. `append()` only buffers (bounded) and hashes;
`commit()` writes everything buffered with one `pwritev` and one `fdatasync`, and returns the
last durable sequence number. Nothing appended may be revealed to anyone before the
`commit()` covering it returns. One thread appends; `commit()` may run on another thread
(the server's group commit does) while the next batch is appended.

Opening verifies the whole chain (or from a trusted position such as a snapshot), drops a
torn tail with a warning and truncates it, and refuses to start on damage in the middle.
The payload is opaque bytes, so the switch uses this same class for its own event records.

It must never rewrite or reorder a durable record, and never retry a failed fsync.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import logging
import mmap
import os
import threading
from typing import Callable, Iterator

from ledger.journal_format import (
    GENESIS,
    HEADER_BYTES,
    JournalCorrupt,
    JournalBufferFull,
    JournalEnds,
    JournalError,
    JournalFailed,
    JournalInvalidAppend,
    JournalLocked,
    JournalMissing,
    JournalPosition,
    Record,
    RecordKind,
    RecordProblem,
    RecordScanner,
    TornTail,
    encode_header,
    parse_header,
    validate_append,
    valid_record_after,
)
from ledger.journal_limits import (
    COMMIT_BYTES_MAX_DEFAULT,
    COMMIT_RECORDS_MAX_DEFAULT,
    COMMIT_RECORDS_MAX_LIMIT,
    FIND_CHECKPOINT_BYTES,
)

logger = logging.getLogger("ponte.ledger.journal")

__all__ = [
    "FileJournal",
    "JournalBufferFull",
    "JournalCorrupt",
    "JournalError",
    "JournalFailed",
    "JournalInvalidAppend",
    "JournalLocked",
    "JournalMissing",
    "JournalPosition",
    "Record",
    "RecordKind",
    "RecordProblem",
    "TornTail",
    "read_records",
]


def _probe_file(path: str):
    """A damage probe over a read-only map of the file (used only when something is wrong)."""

    def probe(start: int) -> int | None:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if start >= size:
                return None
            with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as data:
                return valid_record_after(data, start)

    return probe


def _fsync_directory(path: str) -> None:
    # A newly created file's directory entry is only durable once the directory is synced.
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_records(path: str, *, start: JournalPosition = GENESIS, after_sequence: int = 0,
                 end_offset: int | None = None, base: JournalPosition | None = None,
                 torn: list | None = None) -> Iterator[Record]:
    """Verified records of a journal file after `after_sequence`, read-only.

    Verification starts at `start` (a position known good, such as a snapshot's) and stops
    at `end_offset` (default: the file's size). `base` instead: the file is a segment whose
    first record follows `base` (the previous segment's last). A torn tail ends the
    iteration with a warning and is left in place (only the writer truncates); when `torn`
    is given, the TornTail is appended to it for the caller to judge.
    """
    with open(path, "rb", buffering=1 << 20) as file:
        file_bytes = os.fstat(file.fileno()).st_size
        if end_offset is not None:
            file_bytes = min(file_bytes, end_offset)
        scanner = _scanner(file, file_bytes, start, base, path)
        for record in scanner:
            if record.sequence > after_sequence:
                yield record
        if scanner.torn is not None:
            _log_torn(path, scanner.torn, truncated=False)
            if torn is not None:
                torn.append(scanner.torn)


def segment_start(base: JournalPosition) -> JournalPosition:
    """Where reading a segment whose first record follows `base` begins (offset 0)."""
    return JournalPosition(sequence=base.sequence, record_hash=base.record_hash, offset=0,
                           record_offset=0)


def _scanner(file, file_bytes: int, start: JournalPosition, base: JournalPosition | None,
             path: str) -> RecordScanner:
    if base is not None:
        return RecordScanner(file, file_bytes, segment_start(base), _probe_file(path),
                             anchored=False)
    return RecordScanner(file, file_bytes, start, _probe_file(path))


def _log_torn(path: str, torn: TornTail, *, truncated: bool) -> None:
    logger.warning(
        "journal_torn_tail_dropped path=%s sequence=%d offset=%d bytes_dropped=%d "
        "problem=%s truncated=%s",
        path, torn.sequence, torn.offset, torn.bytes_dropped, torn.problem.name,
        str(truncated).lower(),
    )


class FileJournal(JournalEnds):
    """The writer of one journal file. Open with `FileJournal.open(path)`."""

    def __init__(self, path: str, fd: int, end: JournalPosition, *, commit_records_max: int,
                 commit_bytes_max: int, checkpoints: list[JournalPosition]) -> None:
        assert 1 <= commit_records_max <= COMMIT_RECORDS_MAX_LIMIT
        assert commit_bytes_max >= HEADER_BYTES
        self.path = path
        self.commit_records_max = commit_records_max
        self.commit_bytes_max = commit_bytes_max
        self._fd = fd
        # Chain state of the appender (buffered records included).
        self._appended = end
        # Chain state on disk.
        self._durable = end
        # Buffered records as (header, payload) pairs; guarded by _buffer_lock because a
        # commit on another thread takes them while the appender adds more.
        self._buffer: list[bytes] = []
        self._buffered_records = 0
        self._buffered_bytes = 0
        self._buffer_lock = threading.Lock()
        # One commit at a time; it owns the file offset it writes at.
        self._commit_lock = threading.Lock()
        self._failed: BaseException | None = None
        self._closed = False
        # Record starts remembered every FIND_CHECKPOINT_BYTES, so find_transfer can walk
        # from a nearby verified position instead of the start of the file.
        self._checkpoints = checkpoints
        self._pending_checkpoints: list[JournalPosition] = []
        self._base: JournalPosition | None = None  # a segment's: the record before its first

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str,
        *,
        start: JournalPosition = GENESIS,
        on_record: Callable[[Record], None] | None = None,
        commit_records_max: int = COMMIT_RECORDS_MAX_DEFAULT,
        commit_bytes_max: int = COMMIT_BYTES_MAX_DEFAULT,
        create: bool = True,
        base: JournalPosition | None = None,
    ) -> "FileJournal":
        """Open (creating if allowed) the journal for appending after verifying it.

        Every record after `start` is verified and handed to `on_record` in order (recovery
        replays through it). A torn tail is logged and truncated; damage in the middle raises
        JournalCorrupt and leaves the file untouched. Another writer holding the file raises
        JournalLocked. `base`: the file is a segment whose first record follows `base` (see
        `ledger.journal_segments`), instead of a journal starting at genesis.
        """
        if not 1 <= commit_records_max <= COMMIT_RECORDS_MAX_LIMIT:
            raise ValueError(f"commit_records_max must be 1..{COMMIT_RECORDS_MAX_LIMIT}")
        if commit_bytes_max < HEADER_BYTES:
            raise ValueError("commit_bytes_max is smaller than one record header")
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        existed = os.path.exists(path)
        try:
            fd = os.open(path, flags, 0o640)
        except FileNotFoundError as error:
            raise JournalMissing(f"no journal at path={path}") from error
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise JournalLocked(f"journal path={path} has another writer") from error
                raise
            if not existed:
                _fsync_directory(path)
            if base is not None:
                start = segment_start(base)
            checkpoints = [GENESIS] if start.sequence == 0 else [start]
            with open(path, "rb", buffering=1 << 20) as file:
                file_bytes = os.fstat(file.fileno()).st_size
                scanner = _scanner(file, file_bytes, start, base, path)
                before = start
                for record in scanner:
                    if record.offset >= checkpoints[-1].offset + FIND_CHECKPOINT_BYTES:
                        checkpoints.append(before)
                    before = scanner.end
                    if on_record is not None:
                        on_record(record)
            end = scanner.end
            if scanner.torn is not None:
                # The torn bytes were never acknowledged (commit() had not returned), so
                # dropping them loses nothing anyone was told about.
                os.ftruncate(fd, end.offset)
                os.fsync(fd)
                _log_torn(path, scanner.torn, truncated=True)
        except BaseException:
            os.close(fd)
            raise
        journal = cls(path, fd, end, commit_records_max=commit_records_max,
                      commit_bytes_max=commit_bytes_max, checkpoints=checkpoints)
        journal._base = base
        return journal

    # -- writing ---------------------------------------------------------------------------

    def room_for(self, payload_bytes: int) -> bool:
        """Whether append() of a payload this large would be accepted now."""
        return (
            self._buffered_records + 1 <= self.commit_records_max
            and self._buffered_bytes + HEADER_BYTES + payload_bytes <= self.commit_bytes_max
        )

    def check_writable(self) -> None:
        if self._closed:
            raise JournalError(f"journal path={self.path} is closed")
        if self._failed is not None:
            raise JournalFailed(f"journal path={self.path} failed earlier: {self._failed}")

    def append(self, kind: int, now_ns: int, payload) -> int:
        """Buffer one record; return its sequence number (durable only after commit()).

        Raises JournalInvalidAppend for a kind/clock/payload the format cannot hold and
        JournalBufferFull past the group-commit bound; in both cases nothing is buffered.
        """
        self.check_writable()
        # bytes() of a bytes object is the object itself: no copy on the hot path. Any
        # mutable buffer is copied, because the caller may reuse it before commit().
        payload = payload if type(payload) is bytes else bytes(payload)
        validate_append(kind, now_ns, len(payload))
        if not self.room_for(len(payload)):
            raise JournalBufferFull(
                f"buffered_records={self._buffered_records} buffered_bytes="
                f"{self._buffered_bytes}: commit() before appending more"
            )
        appended = self._appended
        sequence = appended.sequence + 1
        header = encode_header(kind, sequence, now_ns, payload, appended.record_hash)
        record_hash = header[HEADER_BYTES - 32:]
        record_bytes = HEADER_BYTES + len(payload)
        with self._buffer_lock:
            self._buffer.append(header)
            self._buffer.append(payload)
            self._buffered_records += 1
            self._buffered_bytes += record_bytes
            last_checkpoint = (
                self._pending_checkpoints[-1] if self._pending_checkpoints
                else self._checkpoints[-1]
            )
            if appended.offset >= last_checkpoint.offset + FIND_CHECKPOINT_BYTES:
                self._pending_checkpoints.append(appended)
        self._appended = JournalPosition(
            sequence=sequence, record_hash=record_hash, offset=appended.offset + record_bytes,
            record_offset=appended.offset,
        )
        return sequence

    def commit(self) -> int:
        """Write every buffered record in one write and one fdatasync; return the last
        durable sequence number. Safe to call from another thread than append()'s."""
        with self._commit_lock:
            self.check_writable()
            with self._buffer_lock:
                buffers = self._buffer
                records = self._buffered_records
                total_bytes = self._buffered_bytes
                checkpoints = self._pending_checkpoints
                if records == 0:
                    return self._durable.sequence
                self._buffer = []
                self._buffered_records = 0
                self._buffered_bytes = 0
                self._pending_checkpoints = []
                # The appender's position after exactly these records: the new durable end.
                end = self._durable_end_after(buffers, records, total_bytes)
            try:
                self._commit_write(buffers, total_bytes)
                os.fdatasync(self._fd)
            except OSError as error:
                self._failed = error
                logger.error("journal_commit_failed path=%s errno=%s error=%s",
                             self.path, error.errno, error)
                raise JournalFailed(f"commit failed for path={self.path}: {error}") from error
            self._durable = end
            self._checkpoints.extend(checkpoints)
            return end.sequence

    def _durable_end_after(self, buffers: list[bytes], records: int,
                           total_bytes: int) -> JournalPosition:
        last_header = buffers[-2]
        fields = parse_header(last_header)
        assert not isinstance(fields, RecordProblem)
        assert fields.sequence == self._durable.sequence + records
        end_offset = self._durable.offset + total_bytes
        return JournalPosition(
            sequence=fields.sequence, record_hash=fields.record_hash, offset=end_offset,
            record_offset=end_offset - HEADER_BYTES - fields.payload_bytes,
        )

    def _commit_write(self, buffers: list[bytes], total_bytes: int) -> None:
        offset = self._durable.offset
        written = os.pwritev(self._fd, buffers, offset)
        if written == total_bytes:
            return
        # A short write of a regular file is rare (signals, quotas): finish it plainly.
        remaining = b"".join(buffers)[written:]
        offset += written
        while remaining:
            count = os.pwrite(self._fd, remaining, offset)
            if count == 0:
                raise OSError(errno.EIO, "pwrite wrote nothing")
            remaining = remaining[count:]
            offset += count

    # -- state -----------------------------------------------------------------------------

    @property
    def buffered_records(self) -> int:
        return self._buffered_records

    @property
    def buffered_bytes(self) -> int:
        return self._buffered_bytes

    def checkpoint_before(self, offset: int) -> JournalPosition:
        """The latest remembered verified position at or before `offset`."""
        offsets = [checkpoint.offset for checkpoint in self._checkpoints]
        index = bisect.bisect_right(offsets, offset) - 1
        assert index >= 0
        return self._checkpoints[index]

    def records(self, after_sequence: int = 0) -> Iterator[Record]:
        """Verified durable records of this file after `after_sequence`, oldest first."""
        start = self._checkpoints[0]
        if after_sequence > 0:
            for checkpoint in self._checkpoints:
                if checkpoint.sequence <= after_sequence:
                    start = checkpoint
        base = self._base if start == self._checkpoints[0] else None
        # Stop at the durable end: a commit running on another thread may be writing past it.
        yield from read_records(self.path, start=start, after_sequence=after_sequence,
                                end_offset=self._durable.offset, base=base)

    def rotate(self, path: str) -> None:
        """Go on in a new segment file at `path`, whose first record follows the durable end.
        Only with nothing buffered and no commit running (the caller quiesces appends:
        nothing appended may straddle two files). The new file's directory entry is made
        durable before any record is written to it."""
        self.check_writable()
        with self._commit_lock, self._buffer_lock:
            assert self._buffered_records == 0, "rotate with records buffered"
            assert self._appended == self._durable
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _fsync_directory(path)
            except BaseException:
                os.close(fd)
                raise
            os.close(self._fd)
            self._fd = fd
            self.path = path
            self._base = self._durable
            start = segment_start(self._durable)
            self._durable = self._appended = start
            self._checkpoints = [start]
            self._pending_checkpoints = []

    @property
    def file_bytes(self) -> int:
        """Bytes of this file that are durable."""
        return self._durable.offset

    def close(self) -> None:
        """Close without committing: buffered records are dropped, as a crash would."""
        if self._closed:
            return
        self._closed = True
        os.close(self._fd)

    def __enter__(self) -> "FileJournal":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

