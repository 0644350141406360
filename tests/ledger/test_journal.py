"""The file journal: round trip, chain, group commit bounds, torn tails, mid-file damage.

Every test writes a real file in tmp_path and reads it back through the same code start-up
uses. Damage is made with plain byte edits, as a crash or a bad disk would leave it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.journal import FileJournal, read_records
from ledger.journal_format import (
    HASHED_HEADER_BYTES,
    HEADER_BYTES,
    HEADER_PREFIX_STRUCT,
    ZERO_HASH,
    JournalBufferFull,
    JournalCorrupt,
    JournalFailed,
    JournalInvalidAppend,
    JournalLocked,
    JournalMissing,
    JournalPosition,
    RecordKind,
    RecordProblem,
    encode_header,
)
from ledger.journal_limits import RECORD_PAYLOAD_BYTES_MAX

KINDS = [RecordKind.CREATE_ACCOUNTS, RecordKind.CREATE_TRANSFERS, RecordKind.EXPIRE_PENDING,
         16, 200, 255]


def payload_for(index: int) -> bytes:
    # Distinct, varied lengths (including empty) so offsets are never regular.
    return hashlib.sha256(str(index).encode()).digest() * (index % 7) + bytes([index % 251])


def write_journal(path, count: int, *, per_commit: int = 3) -> list[tuple[int, int, bytes]]:
    written = []
    with FileJournal.open(str(path)) as journal:
        for index in range(count):
            kind = KINDS[index % len(KINDS)]
            now_ns = 1_000 + index
            payload = payload_for(index)
            sequence = journal.append(kind, now_ns, payload)
            assert sequence == index + 1
            written.append((kind, now_ns, payload))
            if (index + 1) % per_commit == 0:
                journal.commit()
        journal.commit()
    return written


def record_offsets(path) -> list[int]:
    return [record.offset for record in read_records(str(path))]


def test_round_trip_returns_every_record_in_order(tmp_path):
    path = tmp_path / "journal"
    written = write_journal(path, 20)
    records = list(read_records(str(path)))
    assert [(r.kind, r.now_ns, r.payload) for r in records] == written
    assert [r.sequence for r in records] == list(range(1, 21))
    # Reopening for append continues the sequence and the chain.
    with FileJournal.open(str(path)) as journal:
        assert journal.position.sequence == 20
        assert journal.append(16, 5, b"more") == 21
        assert journal.commit() == 21
    assert [r.sequence for r in read_records(str(path))][-2:] == [20, 21]


def test_each_record_links_the_hash_of_the_one_before(tmp_path):
    path = tmp_path / "journal"
    write_journal(path, 8)
    data = path.read_bytes()
    previous = ZERO_HASH
    for record in read_records(str(path)):
        header = data[record.offset:record.offset + HEADER_BYTES]
        fields = HEADER_PREFIX_STRUCT.unpack_from(header, 0)
        assert fields[-1] == previous
        expected = hashlib.sha256(
            header[:HASHED_HEADER_BYTES] + record.payload
        ).digest()
        assert record.record_hash == expected == header[HASHED_HEADER_BYTES:]
        previous = record.record_hash


def test_append_buffers_and_commit_writes_once(tmp_path):
    path = tmp_path / "journal"
    with FileJournal.open(str(path)) as journal:
        for index in range(5):
            journal.append(RecordKind.CREATE_TRANSFERS, index, b"x" * 100)
        # Nothing reaches the file before commit().
        assert path.stat().st_size == 0
        assert journal.durable_sequence == 0
        assert journal.buffered_records == 5
        assert journal.commit() == 5
        assert path.stat().st_size == 5 * (HEADER_BYTES + 100)
        assert journal.buffered_records == 0
        # An empty commit is a no-op that still answers the durable sequence.
        assert journal.commit() == 5


def test_close_without_commit_loses_only_the_uncommitted(tmp_path):
    path = tmp_path / "journal"
    with FileJournal.open(str(path)) as journal:
        journal.append(16, 1, b"kept")
        journal.commit()
        journal.append(16, 2, b"lost")
    assert [r.payload for r in read_records(str(path))] == [b"kept"]


@pytest.mark.parametrize("kind, now_ns, payload", [
    (0, 1, b""),
    (4, 1, b""),
    (15, 1, b""),
    (256, 1, b""),
    (-1, 1, b""),
    (16, -1, b""),
    (16, 2**64, b""),
    (16, 1.5, b""),
    (16, 1, bytes(RECORD_PAYLOAD_BYTES_MAX + 1)),
], ids=["kind-0", "kind-4", "kind-15", "kind-256", "kind-negative", "now-negative",
        "now-past-u64", "now-float", "payload-too-large"])
def test_invalid_append_is_refused_and_changes_nothing(tmp_path, kind, now_ns, payload):
    path = tmp_path / "journal"
    with FileJournal.open(str(path)) as journal:
        journal.append(16, 1, b"first")
        before = (journal.appended_position, journal.buffered_records,
                  journal.buffered_bytes)
        with pytest.raises(JournalInvalidAppend):
            journal.append(kind, now_ns, payload)
        assert (journal.appended_position, journal.buffered_records,
                journal.buffered_bytes) == before
        assert journal.commit() == 1
    assert [r.payload for r in read_records(str(path))] == [b"first"]


def test_buffer_bound_refuses_until_commit(tmp_path):
    path = tmp_path / "journal"
    with FileJournal.open(str(path), commit_records_max=3,
                          commit_bytes_max=3 * (HEADER_BYTES + 10)) as journal:
        for index in range(3):
            journal.append(16, index, bytes(10))
        before = journal.appended_position
        with pytest.raises(JournalBufferFull):
            journal.append(16, 9, bytes(10))
        assert journal.appended_position == before
        assert journal.buffered_records == 3
        assert journal.commit() == 3
        assert journal.append(16, 9, bytes(10)) == 4
        # The byte bound refuses a record that would overflow it on its own terms.
        with pytest.raises(JournalBufferFull):
            journal.append(16, 9, bytes(3 * 10 + 2 * HEADER_BYTES))
        assert journal.commit() == 4
    assert len(list(read_records(str(path)))) == 4


def test_mutable_payload_is_copied_at_append(tmp_path):
    path = tmp_path / "journal"
    payload = bytearray(b"original")
    with FileJournal.open(str(path)) as journal:
        journal.append(16, 1, payload)
        payload[:] = b"reused!!"
        journal.commit()
    assert next(read_records(str(path))).payload == b"original"


def test_second_writer_is_locked_out(tmp_path):
    path = tmp_path / "journal"
    with FileJournal.open(str(path)):
        with pytest.raises(JournalLocked):
            FileJournal.open(str(path))
    FileJournal.open(str(path)).close()  # released on close


def test_missing_journal_without_create(tmp_path):
    with pytest.raises(JournalMissing):
        FileJournal.open(str(tmp_path / "absent"), create=False)


def test_failed_write_poisons_the_journal(tmp_path):
    path = tmp_path / "journal"
    journal = FileJournal.open(str(path))
    journal.append(16, 1, b"a")
    journal.commit()
    journal.append(16, 2, b"b")
    # A real OS error (EBADF) stands in for a failing disk: the kernel refuses the write.
    os.close(journal._fd)
    with pytest.raises(JournalFailed):
        journal.commit()
    assert journal.failed
    with pytest.raises(JournalFailed):
        journal.append(16, 3, b"c")
    with pytest.raises(JournalFailed):
        journal.commit()
    journal._closed = True  # the descriptor is already gone
    assert [r.payload for r in read_records(str(path))] == [b"a"]


def test_commit_on_another_thread_while_appending(tmp_path):
    path = tmp_path / "journal"
    stop = threading.Event()
    durable = []
    with FileJournal.open(str(path), commit_records_max=64) as journal:

        def committer():
            while not stop.is_set():
                durable.append(journal.commit())

        thread = threading.Thread(target=committer)
        thread.start()
        appended = 0
        while appended < 2_000:
            if journal.room_for(40):
                journal.append(16, appended, appended.to_bytes(40, "little"))
                appended += 1
        stop.set()
        thread.join()
        assert journal.commit() == 2_000
    assert durable == sorted(durable)
    records = list(read_records(str(path)))
    assert [int.from_bytes(r.payload, "little") for r in records] == list(range(2_000))


def test_records_after_a_sequence(tmp_path):
    path = tmp_path / "journal"
    written = write_journal(path, 12)
    with FileJournal.open(str(path)) as journal:
        tail = list(journal.records(after_sequence=9))
    assert [r.sequence for r in tail] == [10, 11, 12]
    assert [r.payload for r in tail] == [payload for _, _, payload in written[9:]]


# -- torn tails -------------------------------------------------------------------------------


def cut_points(path) -> list[tuple[str, int]]:
    """Truncation points inside the last record: header and payload, every boundary."""
    offsets = record_offsets(path)
    last = offsets[-1]
    size = path.stat().st_size
    points = [("1 byte of header", last + 1), ("half a header", last + HEADER_BYTES // 2),
              ("header minus 1", last + HEADER_BYTES - 1), ("header only", last + HEADER_BYTES),
              ("header + 1", last + HEADER_BYTES + 1), ("payload minus 1", size - 1)]
    return [(name, point) for name, point in points if last < point < size]


def test_torn_last_record_is_dropped_with_a_warning_at_every_cut(tmp_path, caplog):
    original = tmp_path / "original"
    write_journal(original, 10)
    data = original.read_bytes()
    last_offset = record_offsets(original)[-1]
    cuts = cut_points(original)
    assert len(cuts) >= 5
    for name, point in cuts:
        path = tmp_path / f"cut-{point}"
        path.write_bytes(data[:point])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="ponte.ledger.journal"):
            with FileJournal.open(str(path)) as journal:
                assert journal.position.sequence == 9, name
                assert journal.position.offset == last_offset, name
        assert path.stat().st_size == last_offset, f"{name}: torn bytes not truncated"
        messages = [r.getMessage() for r in caplog.records]
        assert any("journal_torn_tail_dropped" in m and "sequence=10" in m
                   and f"offset={last_offset}" in m for m in messages), (name, messages)
        # The writer continues the chain from the last good record.
        with FileJournal.open(str(path)) as journal:
            assert journal.append(16, 1, b"after") == 10
            journal.commit()
        assert [r.sequence for r in read_records(str(path))][-1] == 10


@pytest.mark.parametrize("tail", [bytes(4096), b"PJNL" + bytes(200), os.urandom(300)],
                         ids=["zeros", "magic-then-zeros", "noise"])
def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path, tail):
    path = tmp_path / "journal"
    write_journal(path, 6)
    size = path.stat().st_size
    with open(path, "ab") as file:
        file.write(tail)
    with FileJournal.open(str(path)) as journal:
        assert journal.position.sequence == 6
    assert path.stat().st_size == size


def test_bad_checksum_of_the_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "journal"
    write_journal(path, 6)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with FileJournal.open(str(path)) as journal:
        assert journal.position.sequence == 5


def test_read_only_reader_stops_at_torn_tail_without_truncating(tmp_path, caplog):
    path = tmp_path / "journal"
    write_journal(path, 6)
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with caplog.at_level(logging.WARNING, logger="ponte.ledger.journal"):
        assert [r.sequence for r in read_records(str(path))] == [1, 2, 3, 4, 5]
    assert path.stat().st_size == len(data) - 3
    assert any("truncated=false" in r.getMessage() for r in caplog.records)


# -- damage in the middle -----------------------------------------------------------------------


def assert_start_up_refused(path, problem, sequence, offset):
    before = path.read_bytes()
    with pytest.raises(JournalCorrupt) as raised:
        FileJournal.open(str(path))
    error = raised.value
    assert error.problem == problem
    assert error.sequence == sequence
    assert error.offset == offset
    assert f"sequence={sequence}" in str(error) and f"offset={offset}" in str(error)
    assert path.read_bytes() == before, "a refused start-up must not change the file"
    # The read-only path refuses the same way.
    with pytest.raises(JournalCorrupt):
        list(read_records(str(path)))


@pytest.mark.parametrize("where", ["payload", "checksum", "previous-hash", "length"])
def test_corrupted_byte_in_the_middle_stops_start_up(tmp_path, where):
    path = tmp_path / "journal"
    write_journal(path, 12)
    offsets = record_offsets(path)
    target = 6  # sequence 6, well before the end
    offset = offsets[target - 1]
    byte = {"payload": offset + HEADER_BYTES, "checksum": offset + HASHED_HEADER_BYTES + 3,
            "previous-hash": offset + 40, "length": offset + 24}[where]
    data = bytearray(path.read_bytes())
    data[byte] ^= 0x01
    path.write_bytes(bytes(data))
    problem = (RecordProblem.BAD_HEADER_CHECKSUM if where in ("previous-hash", "length")
               else RecordProblem.BAD_CHECKSUM)
    assert_start_up_refused(path, problem, target, offset)


def test_swapped_pair_of_records_stops_start_up(tmp_path):
    path = tmp_path / "journal"
    write_journal(path, 12)
    offsets = record_offsets(path) + [path.stat().st_size]
    data = path.read_bytes()
    first = data[offsets[4]:offsets[5]]  # sequence 5
    second = data[offsets[5]:offsets[6]]  # sequence 6
    swapped = data[:offsets[4]] + second + first + data[offsets[6]:]
    assert len(swapped) == len(data)
    path.write_bytes(swapped)
    assert_start_up_refused(path, RecordProblem.SEQUENCE_OUT_OF_ORDER, 5, offsets[4])


def test_swapped_last_two_records_is_not_mistaken_for_a_torn_tail(tmp_path):
    path = tmp_path / "journal"
    write_journal(path, 6)
    offsets = record_offsets(path) + [path.stat().st_size]
    data = path.read_bytes()
    swapped = data[:offsets[4]] + data[offsets[5]:] + data[offsets[4]:offsets[5]]
    path.write_bytes(swapped)
    assert_start_up_refused(path, RecordProblem.SEQUENCE_OUT_OF_ORDER, 5, offsets[4])


def test_rewritten_record_with_a_fresh_checksum_breaks_the_chain(tmp_path):
    """A forger who recomputes a record's own checksum still breaks the next link."""
    path = tmp_path / "journal"
    write_journal(path, 8)
    records = list(read_records(str(path)))
    victim = records[3]  # sequence 4
    data = path.read_bytes()
    previous_hash = records[2].record_hash
    forged_payload = b"forged" + victim.payload[6:]
    forged = encode_header(victim.kind, victim.sequence, victim.now_ns, forged_payload,
                           previous_hash) + forged_payload
    end = victim.offset + HEADER_BYTES + len(victim.payload)
    path.write_bytes(data[:victim.offset] + forged + data[end:])
    assert_start_up_refused(path, RecordProblem.BROKEN_CHAIN, 5, records[4].offset)


def test_deleted_record_in_the_middle_stops_start_up(tmp_path):
    path = tmp_path / "journal"
    write_journal(path, 8)
    offsets = record_offsets(path)
    data = path.read_bytes()
    path.write_bytes(data[:offsets[2]] + data[offsets[3]:])
    assert_start_up_refused(path, RecordProblem.SEQUENCE_OUT_OF_ORDER, 3, offsets[2])


def test_verification_can_start_from_a_known_position(tmp_path):
    path = tmp_path / "journal"
    write_journal(path, 10)
    with FileJournal.open(str(path)) as journal:
        middle = None
        for record in journal.records():
            if record.sequence == 4:
                middle = record
    start = JournalPosition(sequence=4, record_hash=middle.record_hash,
                            offset=middle.offset + HEADER_BYTES + len(middle.payload),
                            record_offset=middle.offset)
    seen = []
    with FileJournal.open(str(path), start=start, on_record=seen.append) as journal:
        assert journal.position.sequence == 10
    assert [r.sequence for r in seen] == [5, 6, 7, 8, 9, 10]
    size = path.stat().st_size
    # A start position that does not describe this journal's record is refused before
    # anything is read after it, and nothing is truncated.
    wrong_positions = {
        RecordProblem.BROKEN_CHAIN: msgspec.structs.replace(start, record_hash=bytes(32)),
        RecordProblem.MISSING_RECORDS: msgspec.structs.replace(start, sequence=5),
        RecordProblem.BAD_MAGIC: msgspec.structs.replace(start,
                                                         record_offset=middle.offset + 8),
    }
    for problem, wrong in wrong_positions.items():
        with pytest.raises(JournalCorrupt) as raised:
            FileJournal.open(str(path), start=wrong)
        assert raised.value.problem == problem
        assert path.stat().st_size == size
    # A position past the end of the file means records are missing.
    beyond = JournalPosition(sequence=40, record_hash=bytes(32), offset=10**9)
    with pytest.raises(JournalCorrupt) as raised:
        FileJournal.open(str(path), start=beyond)
    assert raised.value.problem == RecordProblem.MISSING_RECORDS


@given(st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 2**64 - 1),
                          st.binary(max_size=300)), max_size=25),
       st.integers(1, 7))
def test_any_records_round_trip(tmp_path_factory, entries, per_commit):
    path = tmp_path_factory.mktemp("journal") / "journal"
    with FileJournal.open(str(path)) as journal:
        for index, (kind, now_ns, payload) in enumerate(entries):
            journal.append(kind, now_ns, payload)
            if index % per_commit == 0:
                journal.commit()
        assert journal.commit() == len(entries)
    records = list(read_records(str(path)))
    assert [(r.kind, r.now_ns, r.payload) for r in records] == entries
    # Records sit back to back from offset 0: no padding, no gaps.
    expected_offset = 0
    for record in records:
        assert record.offset == expected_offset
        expected_offset += HEADER_BYTES + len(record.payload)
    assert path.stat().st_size == expected_offset
