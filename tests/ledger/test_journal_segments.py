"""The segmented file journal: one hash chain across rotating files; sealed segments
archived (lzma) or deleted once a snapshot covers them; damage named by segment."""

from __future__ import annotations

import lzma
import os

import pytest

from ledger.journal_format import GENESIS, JournalCorrupt, JournalPosition, RecordProblem
from ledger.journal_segments import (
    SegmentedJournal,
    archive_segments,
    list_segments,
    read_directory,
    segments_bytes,
)

KIND = 16


def write(journal, count: int, start: int) -> None:
    for index in range(start, start + count):
        journal.append(KIND, 1_000 + index, f"payload-{index}".encode())
    journal.commit()


def build(directory, segments: int = 4, per_segment: int = 5) -> list[JournalPosition]:
    """A journal of `segments` segments; the durable end after each one."""
    journal = SegmentedJournal.open_directory(str(directory))
    ends = []
    for index in range(segments):
        write(journal, per_segment, index * per_segment + 1)
        ends.append(journal.position)
        if index < segments - 1:
            journal.rotate_segment()
    journal.close()
    return ends


def payloads(directory, start=GENESIS) -> list[bytes]:
    return [record.payload for record in read_directory(str(directory), start=start)]


def test_records_chain_across_segments_and_reopen_from_genesis(tmp_path):
    build(tmp_path)
    assert len(list_segments(str(tmp_path))) == 4
    seen = []
    journal = SegmentedJournal.open_directory(str(tmp_path), on_record=seen.append)
    assert [r.sequence for r in seen] == list(range(1, 21))
    assert journal.durable_sequence == 20
    write(journal, 2, 21)  # appends go on in the newest segment
    journal.close()
    assert payloads(tmp_path)[-1] == b"payload-22"


@pytest.mark.parametrize("which", [1, 3])  # inside a sealed segment; inside the newest
def test_reopen_from_a_start_replays_only_what_follows(tmp_path, which):
    ends = build(tmp_path)
    start = ends[which - 1] if which < 3 else ends[2]
    if which == 1:
        start = JournalPosition(sequence=ends[0].sequence, record_hash=ends[0].record_hash)
    seen = []
    journal = SegmentedJournal.open_directory(str(tmp_path), start=start, on_record=seen.append)
    assert [r.sequence for r in seen] == list(range(start.sequence + 1, 21))
    journal.close()


def test_a_start_that_is_not_on_the_chain_is_refused(tmp_path):
    ends = build(tmp_path)
    wrong = JournalPosition(sequence=ends[0].sequence, record_hash=b"\x01" * 32)
    with pytest.raises(JournalCorrupt) as caught:
        SegmentedJournal.open_directory(str(tmp_path), start=wrong)
    assert caught.value.problem is RecordProblem.BROKEN_CHAIN


def test_archived_segments_are_compressed_and_still_read(tmp_path):
    ends = build(tmp_path)
    done = archive_segments(str(tmp_path), ends[1].sequence, policy="compress")
    assert len(done) == 2  # the two oldest: every record at or before the snapshot
    names = sorted(os.listdir(tmp_path))
    assert sum(name.endswith(".xz") for name in names) == 2
    assert payloads(tmp_path) == [f"payload-{i}".encode() for i in range(1, 21)]
    journal = SegmentedJournal.open_directory(
        str(tmp_path), start=JournalPosition(sequence=ends[1].sequence,
                                             record_hash=ends[1].record_hash))
    assert journal.durable_sequence == 20
    journal.close()


def test_deleted_segments_leave_replay_from_the_snapshot_only(tmp_path):
    ends = build(tmp_path)
    archive_segments(str(tmp_path), ends[1].sequence, policy="delete")
    with pytest.raises(JournalCorrupt) as caught:
        SegmentedJournal.open_directory(str(tmp_path))  # from genesis: records are gone
    assert "restore archived segments" in str(caught.value.detail)
    journal = SegmentedJournal.open_directory(
        str(tmp_path), start=JournalPosition(sequence=ends[1].sequence,
                                             record_hash=ends[1].record_hash))
    journal.close()


def test_the_newest_segment_is_never_archived(tmp_path):
    ends = build(tmp_path)
    archive_segments(str(tmp_path), ends[-1].sequence, policy="compress")
    newest = list_segments(str(tmp_path))[-1]
    assert not newest.archived


def test_a_damaged_sealed_segment_is_named(tmp_path):
    build(tmp_path)
    segment = list_segments(str(tmp_path))[1]
    data = bytearray(open(segment.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(segment.path, "wb").write(bytes(data))
    with pytest.raises(JournalCorrupt) as caught:
        SegmentedJournal.open_directory(str(tmp_path))
    assert segment.name in str(caught.value)


def test_a_damaged_archived_segment_is_named(tmp_path):
    ends = build(tmp_path)
    archive_segments(str(tmp_path), ends[1].sequence, policy="compress")
    segment = list_segments(str(tmp_path))[0]
    assert segment.archived
    data = bytearray(open(segment.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(segment.path, "wb").write(bytes(data))
    with pytest.raises(JournalCorrupt) as caught:
        list(read_directory(str(tmp_path)))
    assert segment.name in str(caught.value)


def test_a_renamed_segment_breaks_the_chain(tmp_path):
    build(tmp_path)
    segment = list_segments(str(tmp_path))[2]
    forged = segment.path.replace(segment.base.record_hash.hex(), "ab" * 32)
    os.rename(segment.path, forged)
    with pytest.raises(JournalCorrupt) as caught:
        SegmentedJournal.open_directory(str(tmp_path))
    assert caught.value.problem is RecordProblem.BROKEN_CHAIN


def test_a_torn_tail_is_dropped_in_the_newest_segment_only(tmp_path):
    build(tmp_path)
    newest = list_segments(str(tmp_path))[-1]
    with open(newest.path, "ab") as file:
        file.write(b"\x00" * 40)  # a half-written record header
    journal = SegmentedJournal.open_directory(str(tmp_path))
    assert journal.durable_sequence == 20
    journal.close()
    sealed = list_segments(str(tmp_path))[1]
    with open(sealed.path, "ab") as file:
        file.write(b"\x00" * 40)
    with pytest.raises(JournalCorrupt) as caught:
        SegmentedJournal.open_directory(str(tmp_path))
    assert sealed.name in str(caught.value)


def test_rotation_refuses_with_records_buffered(tmp_path):
    journal = SegmentedJournal.open_directory(str(tmp_path))
    journal.append(KIND, 1, b"x")
    with pytest.raises(AssertionError):
        journal.rotate_segment()
    journal.close()


def test_an_archive_interrupted_before_the_rename_leaves_the_original(tmp_path):
    ends = build(tmp_path)
    segment = list_segments(str(tmp_path))[0]
    with lzma.open(segment.path + ".xz.tmp", "wb") as out:
        out.write(b"partial")
    assert payloads(tmp_path)[0] == b"payload-1"
    archive_segments(str(tmp_path), ends[1].sequence, policy="compress")
    assert payloads(tmp_path) == [f"payload-{i}".encode() for i in range(1, 21)]


def test_the_size_of_segments_one_of_which_was_archived_since_it_was_listed(tmp_path):
    build(tmp_path)
    segments = list_segments(str(tmp_path))
    whole = sum(os.path.getsize(segment.path) for segment in segments)
    assert segments_bytes(segments) == whole
    os.unlink(segments[0].path)  # what a snapshot child's archive does meanwhile
    assert segments_bytes(segments) == sum(
        os.path.getsize(segment.path) for segment in segments[1:])
