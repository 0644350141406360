"""ledger/journal_files.py: large files written and removed a step at a time, and a removal a crash
interrupted finished at the next start, never left looking like a snapshot or segment."""

from __future__ import annotations

import os

import pytest

from ledger import journal_files as files
from ledger.journal_files import remove_gradually, remove_leftovers, write_all
from ledger.journal_format import JournalPosition
from ledger.snapshot import FileSnapshotStore


@pytest.fixture
def syncs(monkeypatch):
    """Every fdatasync with the file's size at that moment."""
    seen = []
    real = os.fdatasync

    def counting(fd):
        seen.append(os.fstat(fd).st_size)
        real(fd)

    monkeypatch.setattr(files.os, "fdatasync", counting)
    return seen


def test_write_all_syncs_each_step_and_carries_the_unsynced_bytes(tmp_path, syncs):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        carry = write_all(fd, b"h" * 10)  # no sync asked: all 10 bytes unsynced
        assert carry == 10 and syncs == []
        carry = write_all(fd, b"x" * 45, sync_every=16, unsynced=carry)
        # 10 carried + 6 = the first 16, then every 16 bytes; 7 left over.
        assert syncs == [16, 32, 48] and carry == 7
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"h" * 10 + b"x" * 45


def test_write_all_syncs_first_when_the_carry_is_already_a_step(tmp_path, syncs):
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, b"a" * 20)
        assert write_all(fd, b"b" * 3, sync_every=16, unsynced=20) == 3
    finally:
        os.close(fd)
    assert syncs == [20]


def test_remove_gradually_truncates_in_steps_then_unlinks(tmp_path, monkeypatch, syncs):
    monkeypatch.setattr(files, "REMOVE_STEP_BYTES", 1000)
    monkeypatch.setattr(files, "REMOVE_PAUSE_S", 0.0)
    path = tmp_path / "seg-big.journal"
    path.write_bytes(b"z" * 3500)
    remove_gradually(str(path))
    assert syncs == [2500, 1500, 500, 0]
    assert os.listdir(tmp_path) == []


def test_a_removal_cut_by_a_crash_leaves_a_name_no_listing_matches_and_is_finished(
        tmp_path, monkeypatch):
    directory = tmp_path / "snapshots"
    store = FileSnapshotStore(str(directory), retained_max=1)
    position = JournalPosition(sequence=7, record_hash=b"\x01" * 32)
    path = store.write(b"state", position)

    def crash(fd, size):
        raise KeyboardInterrupt  # the process dies midway through the removal

    monkeypatch.setattr(files.os, "ftruncate", crash)
    with pytest.raises(KeyboardInterrupt):
        remove_gradually(path)
    monkeypatch.undo()
    leftover = [name for name in os.listdir(directory)]
    assert leftover == [".snapshot-00000000000000000007.psnap.removing"]
    assert store.sequences() == []  # nothing that looks like a (damaged) snapshot
    FileSnapshotStore(str(directory))  # the next start finishes the removal
    assert os.listdir(directory) == []
    remove_leftovers(str(directory))  # and again: nothing to do


def test_pruning_snapshots_goes_through_the_gradual_removal(tmp_path, monkeypatch):
    removed = []
    real = files._truncate_and_unlink
    monkeypatch.setattr(files, "_truncate_and_unlink",
                        lambda path: (removed.append(os.path.basename(path)), real(path)))
    store = FileSnapshotStore(str(tmp_path), retained_max=1)
    for sequence in (1, 2):
        store.write(b"state", JournalPosition(sequence=sequence, record_hash=b"\x02" * 32))
    assert removed == [".snapshot-00000000000000000001.psnap.removing"]
    assert store.sequences() == [2]



def test_a_removal_someone_else_finished_is_no_error(tmp_path):
    path = tmp_path / ".snapshot-1.psnap.removing"
    path.write_bytes(b"x" * 10)
    files._truncate_and_unlink(str(path))
    files._truncate_and_unlink(str(path))  # gone already: the other remover won
    remove_leftovers(str(tmp_path))
    assert os.listdir(tmp_path) == []
