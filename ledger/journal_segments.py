"""A file journal in segments: one hash chain across a directory of files, so the journal can
rotate, and old segments that a snapshot covers can be compressed or deleted.

A segment is an ordinary journal file (`ledger.journal.FileJournal`) whose first record
follows the last record of the segment before it. Its name says which record that is:

    seg-<base sequence, 20 digits>-<base record hash, 64 hex>.journal   (writable, or sealed)
    seg-<...>-<...>.journal.xz                                          (archived: lzma)

so each segment can be verified on its own (its first record must chain to the hash in its
name) and the names must chain too (a segment's base is the previous segment's last
record). The first segment's base is the genesis (sequence 0, zero hash). Only the newest
segment is ever written; sealed segments never change, except by being archived (compressed
to `.xz`, then the original removed) or deleted when a retained snapshot covers them.

Opening (`SegmentedJournal.open`) verifies from a start position (a snapshot's, or the
genesis) to the end, across segments, and hands every record after it to `on_record`; a
torn tail is dropped only in the newest segment (anywhere else it is damage: the journal
refuses to start, naming the segment). `verify_directory` checks a whole directory offline
(`ponte journal verify`). It must never rewrite a sealed segment's records.
"""

from __future__ import annotations

import io
import logging
import lzma
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterator

from ledger.journal_files import STEP_BYTES, remove_gradually, remove_leftovers, write_all
from ledger.journal import FileJournal, read_records
from ledger.journal_format import (
    GENESIS,
    JournalCorrupt,
    JournalPosition,
    Record,
    RecordProblem,
    RecordScanner,
)
from ledger.journal_limits import COMMIT_BYTES_MAX_DEFAULT, COMMIT_RECORDS_MAX_DEFAULT

logger = logging.getLogger("ponte.ledger.journal")

SEGMENT_NAME = re.compile(r"^seg-(\d{20})-([0-9a-f]{64})\.journal(\.xz)?$")
ARCHIVE_SUFFIX = ".xz"


@dataclass(frozen=True)
class Segment:
    """One segment file: where it is and the record its first record follows."""

    path: str
    base: JournalPosition  # sequence and hash only (offsets belong to the previous file)
    archived: bool

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def segment_name(base: JournalPosition) -> str:
    return f"seg-{base.sequence:020d}-{base.record_hash.hex()}.journal"


def list_segments(directory: str) -> list[Segment]:
    """Every segment in `directory`, oldest first (by base sequence). An archived and an
    unarchived copy of one segment (a crash during archiving) count once, unarchived."""
    found: dict[int, Segment] = {}
    for name in os.listdir(directory):
        match = SEGMENT_NAME.match(name)
        if match is None:
            continue
        base = JournalPosition(sequence=int(match.group(1)),
                               record_hash=bytes.fromhex(match.group(2)))
        segment = Segment(os.path.join(directory, name), base, archived=bool(match.group(3)))
        earlier = found.get(base.sequence)
        if earlier is None or (earlier.archived and not segment.archived):
            found[base.sequence] = segment
    return [found[sequence] for sequence in sorted(found)]


def _read_archived(segment: Segment, after_sequence: int) -> Iterator[Record]:
    """Verified records of an archived (lzma) segment, decompressed whole in memory (a
    segment is at most `journal_segment_bytes_max`)."""
    try:
        with lzma.open(segment.path, "rb") as file:
            data = file.read()
    except (lzma.LZMAError, EOFError) as error:
        raise JournalCorrupt(RecordProblem.BAD_CHECKSUM, segment.base.sequence + 1, None,
                             f"archived segment {segment.name} cannot be read: {error}") from None
    scanner = RecordScanner(io.BytesIO(data), len(data),
                            JournalPosition(sequence=segment.base.sequence,
                                            record_hash=segment.base.record_hash),
                            lambda offset: None, anchored=False)
    for record in scanner:
        if record.sequence > after_sequence:
            yield record
    if scanner.torn is not None:
        raise JournalCorrupt(scanner.torn.problem, scanner.torn.sequence, scanner.torn.offset,
                             f"archived segment {segment.name} is damaged")


def _sealed_records(segment: Segment, after_sequence: int = 0) -> Iterator[Record]:
    """Every record of a sealed segment, verified from its base; damage anywhere (a torn
    tail included: sealed segments are never torn) raises naming the segment."""
    try:
        yield from _sealed_records_unnamed(segment, after_sequence)
    except JournalCorrupt as error:
        if segment.name in error.detail:
            raise
        raise JournalCorrupt(error.problem, error.sequence, error.offset,
                             f"segment {segment.name}: {error.detail}") from None


def _sealed_records_unnamed(segment: Segment, after_sequence: int) -> Iterator[Record]:
    if segment.archived:
        yield from _read_archived(segment, after_sequence)
        return
    torn: list = []
    yield from read_records(segment.path, base=segment.base, after_sequence=after_sequence,
                            torn=torn)
    if torn:
        raise JournalCorrupt(torn[0].problem, torn[0].sequence, torn[0].offset,
                             f"sealed segment {segment.name} ends in the middle of a record")


def _check_start(record: Record, start: JournalPosition, segment: Segment) -> None:
    if record.sequence == start.sequence and record.record_hash != start.record_hash:
        raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, start.sequence, record.offset,
                             f"the start position is not record {start.sequence} of "
                             f"segment {segment.name}")


def _follows(segment: Segment, end: JournalPosition) -> None:
    if segment.base.sequence != end.sequence or segment.base.record_hash != end.record_hash:
        raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, segment.base.sequence + 1, None,
                             f"segment {segment.name} does not follow record {end.sequence}")


def _from(segments: list[Segment], start: JournalPosition) -> int:
    """The index of the segment holding the record after `start`."""
    first = 0
    for index, segment in enumerate(segments):
        if segment.base.sequence <= start.sequence:
            first = index
    if not segments or segments[first].base.sequence > start.sequence:
        oldest = segments[0].name if segments else "none"
        raise JournalCorrupt(RecordProblem.MISSING_RECORDS, start.sequence + 1, None,
                             f"no segment holds the records after {start.sequence} (the "
                             f"oldest is {oldest}): restore archived segments")
    base = segments[first].base
    if base.sequence == start.sequence and base.record_hash != start.record_hash:
        raise JournalCorrupt(RecordProblem.BROKEN_CHAIN, start.sequence, None,
                             f"the start position is not the base of {segments[first].name}")
    return first


class SegmentedJournal(FileJournal):
    """A `FileJournal` writing the newest segment of a directory; `rotate_segment()` seals it
    and starts the next. Everything else (append, commit, positions) is FileJournal's."""

    directory: str

    @classmethod
    def open_directory(
        cls,
        directory: str,
        *,
        start: JournalPosition = GENESIS,
        on_record: Callable[[Record], None] | None = None,
        commit_records_max: int = COMMIT_RECORDS_MAX_DEFAULT,
        commit_bytes_max: int = COMMIT_BYTES_MAX_DEFAULT,
    ) -> "SegmentedJournal":
        """Open the directory's journal for appending, after verifying every record after
        `start` (a durable position, such as a snapshot's) and handing each to `on_record`.
        Raises JournalCorrupt naming the segment for damage, a broken chain between
        segments, or segments missing after `start` (archived ones are read)."""
        os.makedirs(directory, exist_ok=True)
        segments = list_segments(directory)
        options = dict(on_record=on_record, commit_records_max=commit_records_max,
                       commit_bytes_max=commit_bytes_max)
        if not segments:
            journal = cls.open(os.path.join(directory, segment_name(GENESIS)), base=GENESIS,
                               **options)
            journal.directory = directory
            return journal
        first = _from(segments, start)
        end = segments[first].base
        for segment in segments[first:]:
            _follows(segment, end)
            if segment is segments[-1]:
                if segment.archived:
                    raise JournalCorrupt(RecordProblem.MISSING_RECORDS, end.sequence + 1, None,
                                         f"the newest segment {segment.name} is archived: "
                                         f"restore it (docs/operations.md)")
                if end.sequence < start.sequence:
                    # The start is inside the newest segment: its offsets are this file's.
                    journal = cls.open(segment.path, start=start, **options)
                    journal._base = segment.base
                else:
                    journal = cls.open(segment.path, base=segment.base, **options)
                journal.directory = directory
                return journal
            for record in _sealed_records(segment):
                _check_start(record, start, segment)
                if record.sequence > start.sequence and on_record is not None:
                    on_record(record)
                end = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
        raise AssertionError("unreachable: the newest segment returns")

    @property
    def segment_base(self) -> JournalPosition:
        return self._base if self._base is not None else GENESIS

    def rotate_segment(self) -> str:
        """Seal the current segment and continue in a new one after the durable end (only
        with nothing buffered: see FileJournal.rotate). Returns the new segment's path."""
        path = os.path.join(self.directory, segment_name(self.position))
        self.rotate(path)
        logger.info("journal_segment_rotated path=%s base_sequence=%d",
                    path, self.segment_base.sequence)
        return path


def segments_bytes(segments) -> int:
    """The segments' total size on disk. A snapshot child archives or removes sealed
    segments while the switch reports this (/health): one gone since it was listed counts
    0, where its stat raised and /health answered 500."""
    total = 0
    for segment in segments:
        try:
            total += os.path.getsize(segment.path)
        except FileNotFoundError:
            pass
    return total


def _compress(source_path: str, target_path: str) -> None:
    """xz of one segment, reaching the disk a step at a time (ledger/journal_files.py)."""
    compressor = lzma.LZMACompressor(preset=1)
    fd = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        unsynced = 0
        with open(source_path, "rb") as source:
            while chunk := source.read(1 << 22):
                unsynced = write_all(fd, compressor.compress(chunk), sync_every=STEP_BYTES,
                                     unsynced=unsynced)
        write_all(fd, compressor.flush())
        os.fsync(fd)
    finally:
        os.close(fd)


def archive_segments(directory: str, covered_sequence: int, *, policy: str) -> list[str]:
    """Compress ("compress") or remove ("delete") every sealed segment whose records are all
    at or before `covered_sequence` (a retained snapshot's position); "keep" does nothing.
    Never the newest segment. Each archive is written to a temporary name, fsynced and
    renamed before the original is removed, so a crash leaves one whole copy. Returns the
    names acted on."""
    assert policy in ("compress", "delete", "keep"), policy
    if policy == "keep":
        return []
    remove_leftovers(directory)
    segments = list_segments(directory)
    done = []
    for segment, following in zip(segments, segments[1:]):
        if following.base.sequence > covered_sequence:
            break  # this segment holds records after the snapshot
        if policy == "delete":
            remove_gradually(segment.path)
        elif not segment.archived:
            target = segment.path + ARCHIVE_SUFFIX
            temporary = target + ".tmp"
            _compress(segment.path, temporary)
            os.replace(temporary, target)
            remove_gradually(segment.path)
        else:
            continue
        done.append(segment.name)
    if done:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        logger.info("journal_segments_archived policy=%s count=%d covered_sequence=%d",
                    policy, len(done), covered_sequence)
    return done


def read_directory(directory: str, *, start: JournalPosition = GENESIS
                   ) -> Iterator[Record]:
    """Every verified record after `start` across the directory's segments, read-only
    (sealed, archived and the newest; a torn tail of the newest ends the iteration, as a
    writer would drop it). For auditors and `ponte journal verify|inspect`."""
    segments = list_segments(directory)
    first = _from(segments, start)
    end = segments[first].base
    for segment in segments[first:]:
        _follows(segment, end)
        if segment is segments[-1] and not segment.archived:
            records = read_records(segment.path, base=segment.base)
        else:
            records = _sealed_records(segment)
        for record in records:
            _check_start(record, start, segment)
            end = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
            if record.sequence > start.sequence:
                yield record
