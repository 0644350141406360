"""Recovery: snapshot + replay rebuilds the same ledger as a full replay; DurableLedger keeps
ledger and journal in step; damage and forgery stop start-up; a SIGKILLed writer loses
nothing it acknowledged. Runs against both ledger twins where the ledger matters.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from journal_child import BATCH_INTERVAL_NS, MixedWorkload, setup_batches
from ledger.config import LedgerConfig
from ledger.journal import FileJournal, read_records
from ledger.journal_find import find_transfer
from ledger.journal_format import (
    HEADER_BYTES,
    JournalBufferFull,
    JournalCorrupt,
    JournalInvalidAppend,
    RecordKind,
    RecordProblem,
)
from ledger.journal_payload import decode_batch, encode_batch
from ledger.recovery import (
    DurableLedger,
    apply_record,
    ReplayDiverged,
    SnapshotMismatch,
    recover,
)
from ledger.snapshot import FileSnapshotStore, SnapshotError
from ledger.types import CreateTransferResult, Transfer, pack_transfers

CHILD = os.path.join(os.path.dirname(__file__), "journal_child.py")


def run_workload(durable: DurableLedger, batches: int, batch_size: int = 200, *,
                 seed: int = 7, snapshot_store=None, snapshot_every: int = 0,
                 now_ns: int = BATCH_INTERVAL_NS, id_base: int = 1_000_000) -> int:
    """Drive the mixed workload through `durable`, committing every batch."""
    if durable.journal.appended_position.sequence == 0:
        accounts, funding = setup_batches()
        assert durable.create_accounts(accounts, now_ns) == []
        assert durable.create_transfers(funding, now_ns) == []
        durable.commit()
    workload = MixedWorkload(seed, id_base)
    for index in range(batches):
        now_ns += BATCH_INTERVAL_NS
        durable.expire_pending(now_ns)
        durable.create_transfers(workload.batch(batch_size), now_ns)
        durable.commit()
        if snapshot_every and (index + 1) % snapshot_every == 0:
            durable.snapshot(snapshot_store)
    return now_ns


def fresh(tmp_path, ledger_cls, config=None, **options):
    recovered = recover(str(tmp_path / "journal"), str(tmp_path / "snapshots"),
                        config=config, ledger_class=ledger_cls, **options)
    return recovered


def test_snapshot_plus_replay_equals_full_replay(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    store = FileSnapshotStore(str(tmp_path / "snapshots"))
    run_workload(recovered.durable, 30, snapshot_store=store, snapshot_every=8)
    live_digest = recovered.ledger.digest()
    last_sequence = recovered.journal.position.sequence
    recovered.journal.close()
    assert store.sequences()[0] < last_sequence  # records exist after the newest snapshot

    from_snapshot = fresh(tmp_path, ledger_cls)
    assert from_snapshot.snapshot_sequence == store.sequences()[0]
    assert from_snapshot.records_replayed == last_sequence - from_snapshot.snapshot_sequence
    assert from_snapshot.ledger.digest() == live_digest
    from_snapshot.journal.close()

    bounded = fresh(tmp_path, ledger_cls, verify_from_genesis=False)
    assert bounded.ledger.digest() == live_digest
    bounded.journal.close()

    full = recover(str(tmp_path / "journal"), None, ledger_class=ledger_cls)
    assert full.snapshot_sequence == 0
    assert full.records_replayed == last_sequence
    assert full.ledger.digest() == live_digest
    full.journal.close()


def test_recovered_ledger_continues_exactly_like_the_live_one(tmp_path, ledger_cls):
    live = fresh(tmp_path, ledger_cls)
    now_ns = run_workload(live.durable, 10)
    live.journal.close()
    recovered = fresh(tmp_path, ledger_cls)
    # The same next batch gets the same answers from the recovered ledger as from a ledger
    # that never stopped (rebuilt here by replaying into a second fresh instance).
    twin = ledger_cls()
    for record in read_records(str(tmp_path / "journal")):
        apply_record(twin, record)
    batch = MixedWorkload(99, 5_000_000).batch(300)
    next_now = now_ns + BATCH_INTERVAL_NS
    assert (recovered.durable.create_transfers(batch, next_now)
            == twin.create_transfers(batch, next_now))
    recovered.durable.commit()
    assert recovered.ledger.digest() == twin.digest()
    recovered.journal.close()


def test_expire_pending_is_journalled_and_replayed(tmp_path, ledger_cls):
    live = fresh(tmp_path, ledger_cls)
    durable = live.durable
    accounts, funding = setup_batches()
    durable.create_accounts(accounts, 1_000)
    durable.create_transfers(funding, 1_000)
    pending = Transfer(id=77, debit_account_id=2, credit_account_id=3, amount_minor=5,
                       ledger=1, code=1, flags=2, timeout_ms=1)
    assert durable.create_transfers(pack_transfers([pending]), 2_000) == []
    assert durable.expire_pending(10_000_000) == [77]
    assert durable.expire_pending(20_000_000) == []  # nothing expired: nothing journalled
    durable.commit()
    kinds = [record.kind for record in live.journal.records()]
    assert kinds == [RecordKind.CREATE_ACCOUNTS, RecordKind.CREATE_TRANSFERS,
                     RecordKind.CREATE_TRANSFERS, RecordKind.EXPIRE_PENDING]
    digest = live.ledger.digest()
    live.journal.close()
    again = fresh(tmp_path, ledger_cls)
    assert again.ledger.digest() == digest
    assert again.ledger.pending_count == 0
    again.journal.close()


def test_a_full_group_commit_buffer_refuses_before_the_ledger_changes(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls, commit_records_max=2)
    durable = recovered.durable
    accounts, funding = setup_batches()
    durable.create_accounts(accounts, 1_000)
    durable.create_transfers(funding, 1_000)
    digest = recovered.ledger.digest()
    batch = MixedWorkload(3).batch(50)
    with pytest.raises(JournalBufferFull):
        durable.create_transfers(batch, 2_000)
    assert recovered.ledger.digest() == digest
    assert recovered.journal.buffered_records == 2
    durable.commit()
    assert durable.create_transfers(batch, 2_000) is not None
    durable.commit()
    recovered.journal.close()


def test_bad_input_changes_neither_ledger_nor_journal(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    durable = recovered.durable
    accounts, funding = setup_batches()
    durable.create_accounts(accounts, 1_000)
    durable.commit()
    digest = recovered.ledger.digest()
    position = recovered.journal.appended_position
    with pytest.raises(ValueError):
        durable.create_transfers(funding[:-1], 2_000)  # not a multiple of 72 bytes
    with pytest.raises(JournalInvalidAppend):
        durable.create_transfers(funding, -5)
    with pytest.raises(JournalInvalidAppend):
        durable.create_transfers(funding, 2**64)
    assert recovered.ledger.digest() == digest
    assert recovered.journal.appended_position == position
    recovered.journal.close()


def test_snapshot_refused_while_records_are_not_durable(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    durable = recovered.durable
    accounts, _ = setup_batches()
    durable.create_accounts(accounts, 1_000)
    store = FileSnapshotStore(str(tmp_path / "snapshots"))
    with pytest.raises(SnapshotError):
        durable.snapshot(store)
    assert store.sequences() == []
    durable.commit()
    durable.snapshot(store)
    assert store.sequences() == [1]
    recovered.journal.close()


def test_damaged_newest_snapshot_falls_back_to_an_older_one(tmp_path, ledger_cls, caplog):
    recovered = fresh(tmp_path, ledger_cls)
    store = FileSnapshotStore(str(tmp_path / "snapshots"))
    run_workload(recovered.durable, 12, snapshot_store=store, snapshot_every=4)
    digest = recovered.ledger.digest()
    recovered.journal.close()
    newest, older = store.sequences()[:2]
    path = tmp_path / "snapshots" / f"snapshot-{newest:020d}.psnap"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="ponte.ledger.snapshot"):
        again = fresh(tmp_path, ledger_cls)
    assert again.snapshot_sequence == older
    assert again.ledger.digest() == digest
    assert any("snapshot_skipped" in r.getMessage() for r in caplog.records)
    again.journal.close()


def test_snapshot_from_another_journal_is_refused(tmp_path, ledger_cls):
    first = recover(str(tmp_path / "a"), str(tmp_path / "snaps-a"), ledger_class=ledger_cls)
    run_workload(first.durable, 4, seed=1)
    first.durable.snapshot(FileSnapshotStore(str(tmp_path / "snaps-a")))
    first.journal.close()
    second = recover(str(tmp_path / "b"), None, ledger_class=ledger_cls)
    run_workload(second.durable, 6, seed=2)
    second.journal.close()
    with pytest.raises(SnapshotMismatch):
        recover(str(tmp_path / "b"), str(tmp_path / "snaps-a"), ledger_class=ledger_cls)
    with pytest.raises(JournalCorrupt) as raised:
        recover(str(tmp_path / "b"), str(tmp_path / "snaps-a"), ledger_class=ledger_cls,
                verify_from_genesis=False)
    # Verified from the snapshot's position, the record it names is checked first.
    assert raised.value.sequence == FileSnapshotStore(str(tmp_path / "snaps-a")).sequences()[0]
    assert "does not match this journal" in str(raised.value)


def test_journal_shorter_than_its_snapshot_is_refused(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    store = FileSnapshotStore(str(tmp_path / "snapshots"))
    run_workload(recovered.durable, 6, snapshot_store=store, snapshot_every=6)
    recovered.journal.close()
    records = list(read_records(str(tmp_path / "journal")))
    with open(tmp_path / "journal", "r+b") as file:
        file.truncate(records[3].offset)  # a clean cut: records 4.. are gone
    with pytest.raises(JournalCorrupt) as raised:
        fresh(tmp_path, ledger_cls)
    assert raised.value.problem == RecordProblem.MISSING_RECORDS


def rewrite_journal(path, change) -> None:
    """Re-encode every record (re-chaining them) after `change(record) -> payload`: a
    forgery whose checksums and chain are all valid."""
    records = list(read_records(str(path)))
    os.unlink(path)
    with FileJournal.open(str(path)) as journal:
        for record in records:
            journal.append(record.kind, record.now_ns, change(record))
        journal.commit()


def test_forged_but_well_chained_record_is_caught_by_replay(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    run_workload(recovered.durable, 6)
    recovered.journal.close()
    target = [r.sequence for r in read_records(str(tmp_path / "journal"))
              if r.kind == RecordKind.CREATE_TRANSFERS][4]

    def change(record):
        if record.sequence != target:
            return record.payload
        batch = decode_batch(record.payload)
        events = bytearray(batch.events)
        failed = {index for index, _ in batch.failures}
        index = next(i for i in range(batch.events_count) if i not in failed)
        # Re-point an accepted event's debit account at one that does not exist: a
        # forger's edit that changes what the ledger answers.
        start = index * 72 + 8
        events[start:start + 8] = (999_999).to_bytes(8, "little")
        return encode_batch(events, batch.timestamp_base, batch.failures)

    rewrite_journal(tmp_path / "journal", change)
    # Checksums and chain are all valid (the forger re-chained everything after the edit);
    # only the recorded answers give it away.
    assert len(list(read_records(str(tmp_path / "journal")))) > target
    with pytest.raises(ReplayDiverged) as raised:
        recover(str(tmp_path / "journal"), None, ledger_class=ledger_cls)
    assert raised.value.sequence == target


def test_lost_results_trailer_is_caught_by_replay(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    run_workload(recovered.durable, 3)
    recovered.journal.close()

    target = [r.sequence for r in read_records(str(tmp_path / "journal"))
              if r.kind == RecordKind.CREATE_TRANSFERS][2]

    def change(record):
        if record.sequence != target:
            return record.payload
        batch = decode_batch(record.payload)
        assert batch.failures, "the mixed workload always has refusals"
        return encode_batch(batch.events, batch.timestamp_base, [])

    rewrite_journal(tmp_path / "journal", change)
    with pytest.raises(ReplayDiverged) as raised:
        recover(str(tmp_path / "journal"), None, ledger_class=ledger_cls)
    assert raised.value.sequence == target


def test_find_transfer_answers_for_ids_the_ledger_forgot(tmp_path, ledger_cls):
    config = LedgerConfig(transfers_retained_max=300, pending_max=200)
    recovered = fresh(tmp_path, ledger_cls, config=config)
    durable = recovered.durable
    accounts, funding = setup_batches()
    durable.create_accounts(accounts, 1_000)
    durable.create_transfers(funding, 1_000)
    old = Transfer(id=42, debit_account_id=12, credit_account_id=14, amount_minor=9,
                   ledger=1, code=1, user_data_64=1234)
    refused = Transfer(id=43, debit_account_id=12, credit_account_id=999, amount_minor=9,
                       ledger=1, code=1)
    failures = durable.create_transfers(pack_transfers([old, refused]), 5_000)
    assert failures == [(1, CreateTransferResult.CREDIT_ACCOUNT_NOT_FOUND)]
    (recorded,) = durable.lookup_transfers([42])
    # A retry while the ledger still remembers 42 answers EXISTS and is journalled too.
    assert durable.create_transfers(pack_transfers([old]), 6_000) == [
        (0, CreateTransferResult.EXISTS)]
    run_workload(durable, 10, batch_size=100)  # pushes 42 out of the retained window
    durable.commit()
    assert durable.lookup_transfers([42, 43]) == []

    found = find_transfer(recovered.journal, 42)
    assert found is not None
    assert found.result == CreateTransferResult.OK  # the original, not the newer EXISTS
    assert found.transfer == recorded
    assert found.sequence == 3 and found.index == 0
    missing = find_transfer(recovered.journal, 43)
    assert missing.result == CreateTransferResult.CREDIT_ACCOUNT_NOT_FOUND
    assert find_transfer(recovered.journal, 8_888_888_888) is None
    with pytest.raises(ValueError):
        find_transfer(recovered.journal, 0)
    recovered.journal.close()


def test_find_transfer_detects_a_record_changed_after_start_up(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    run_workload(recovered.durable, 3, batch_size=20)
    target = next(r for r in recovered.journal.records() if r.sequence == 4)
    batch = decode_batch(target.payload)
    transfer_id = int.from_bytes(batch.events[:8], "little")
    with open(tmp_path / "journal", "r+b") as file:
        file.seek(target.offset + HEADER_BYTES + 24 + 30)  # inside event 0, not its id
        file.write(b"\xee")
    with pytest.raises(JournalCorrupt):
        find_transfer(recovered.journal, transfer_id)
    recovered.journal.close()


def test_opaque_switch_records_pass_through_recovery(tmp_path, ledger_cls):
    recovered = fresh(tmp_path, ledger_cls)
    accounts, _ = setup_batches()
    recovered.durable.create_accounts(accounts, 1_000)
    recovered.journal.append(16, 2_000, b"switch event")
    recovered.durable.commit()
    recovered.journal.close()
    seen = []
    again = fresh(tmp_path, ledger_cls, on_opaque_record=seen.append)
    assert [(r.kind, r.payload) for r in seen] == [(16, b"switch event")]
    assert again.ledger.account_count == 20
    again.journal.close()


# -- kill -9 ------------------------------------------------------------------------------------


def run_child_until_killed(tmp_path, seed: int, id_base: int, acks_before_kill: int,
                          implementation: str):
    """Start the child, wait for some acknowledgements, SIGKILL it mid-run."""
    # LIBC_FATAL_STDERR_: glibc otherwise writes a heap-corruption abort to the tty, and
    # faulthandler names the Python line, so a crashing child explains itself here.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LIBC_FATAL_STDERR_": "1",
           "PONTE_PURE_PYTHON": "1" if implementation == "pure" else "0"}
    child = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", CHILD, str(tmp_path / "journal"),
         str(tmp_path / "snapshots"), str(seed), str(id_base), "400"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=os.path.dirname(CHILD),
    )
    acks = []
    deadline = time.monotonic() + 30
    try:
        while len(acks) < acks_before_kill:
            line = child.stdout.readline()
            if not line:
                child.wait(timeout=10)
                raise AssertionError(f"child ended early (exit status {child.returncode}) "
                                     f"after {len(acks)} acks: {child.stderr.read()[-3000:]}")
            assert time.monotonic() < deadline, "child too slow"
            kind, sequence, batch_hash, ok_id = line.split()
            assert kind == "ACK"
            acks.append((int(sequence), batch_hash, int(ok_id)))
        # Let it run on a little so the kill lands in the middle of work, then kill.
        time.sleep(0.01 * (seed % 7))
        child.send_signal(signal.SIGKILL)
        # Acknowledgements already written before the kill also count.
        remaining, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, "the child must not have finished by itself"
    for line in remaining.splitlines():
        kind, sequence, batch_hash, ok_id = line.split()
        acks.append((int(sequence), batch_hash, int(ok_id)))
    return acks


def test_every_acknowledged_batch_survives_kill_minus_nine(tmp_path, ledger_cls):
    implementation = ledger_cls.implementation  # the child loads the same twin
    acks = run_child_until_killed(tmp_path, seed=11, id_base=10_000_000, acks_before_kill=30,
                                  implementation=implementation)
    # Restarted, the child recovers (snapshot + replay) and carries on; killed again.
    acks += run_child_until_killed(tmp_path, seed=12, id_base=20_000_000, acks_before_kill=40,
                                   implementation=implementation)
    recovered = recover(str(tmp_path / "journal"), str(tmp_path / "snapshots"),
                        ledger_class=ledger_cls)
    try:
        recovered.ledger.check_invariants()
        records = {record.sequence: record for record in recovered.journal.records()}
        assert recovered.position.sequence >= max(sequence for sequence, _, _ in acks)
        for sequence, batch_hash, ok_id in acks:
            record = records[sequence]
            assert record.kind == RecordKind.CREATE_TRANSFERS
            events = decode_batch(record.payload).events
            assert hashlib.sha256(events).hexdigest() == batch_hash, sequence
            if ok_id:
                assert recovered.ledger.lookup_transfers([ok_id]), ok_id
        # The snapshots the child took along the way were used and agree with the journal.
        assert recovered.snapshot_sequence > 0
    finally:
        recovered.journal.close()
    full = recover(str(tmp_path / "journal"), None, ledger_class=ledger_cls)
    full.journal.close()
    assert full.ledger.digest() == recovered.ledger.digest()
