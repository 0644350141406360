"""A deterministic mixed ledger workload for the journal and recovery tests, and the child
process of the kill -9 test.

As a module: `MixedWorkload(seed)` yields packed batches that exercise every journalled
path (single-phase, pending with timeouts, post, void, linked chains, duplicates and
refusals), and `setup_batches()` opens and funds the accounts.

As a script: `python journal_child.py JOURNAL SNAPSHOTS SEED ID_BASE BATCH_SIZE` recovers
the ledger from the journal (empty on first start), then applies batches through
DurableLedger forever, printing `ACK <sequence> <sha256 of the batch> <an OK transfer id
or 0>` only after the commit() covering the batch returned. The parent kills it with SIGKILL.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections import deque

from ledger.types import (
    Account,
    AccountFlags,
    Transfer,
    TransferFlags,
    pack_accounts,
    pack_transfers,
)

FUNDING_ACCOUNT_ID = 1
LIMITED_ACCOUNT_IDS = range(2, 12)  # DEBITS_MUST_NOT_EXCEED_CREDITS: refusals happen
FREE_ACCOUNT_IDS = range(12, 21)
HISTORY_ACCOUNT_ID = 13
ACCOUNT_IDS = range(1, 21)
UNKNOWN_ACCOUNT_ID = 999_999
FUNDING_AMOUNT_MINOR = 20_000
BATCH_INTERVAL_NS = 1_000_000  # the clock moves 1 ms per batch: timeouts of 1-4 ms expire


def setup_batches(first_id: int = 1) -> tuple[bytes, bytes]:
    """(accounts, funding transfers): 20 accounts, the limited ones funded."""
    accounts = []
    for account_id in ACCOUNT_IDS:
        flags = 0
        if account_id in LIMITED_ACCOUNT_IDS:
            flags |= AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
        if account_id == HISTORY_ACCOUNT_ID:
            flags |= AccountFlags.HISTORY
        accounts.append(Account(id=account_id, ledger=1, code=1, flags=int(flags)))
    funding = [
        Transfer(id=first_id + index, debit_account_id=FUNDING_ACCOUNT_ID,
                 credit_account_id=account_id, amount_minor=FUNDING_AMOUNT_MINOR, ledger=1,
                 code=1)
        for index, account_id in enumerate(LIMITED_ACCOUNT_IDS)
    ]
    return bytes(pack_accounts(accounts)), bytes(pack_transfers(funding))


class MixedWorkload:
    """Batches of mixed transfers; the same seed and id_base give the same bytes."""

    def __init__(self, seed: int, id_base: int = 1_000_000) -> None:
        self.rng = random.Random(seed)
        self.next_id = id_base
        self.open_pending: deque[tuple[int, int]] = deque(maxlen=4_096)
        self.previous: Transfer | None = None

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _pair(self) -> tuple[int, int]:
        debit = self.rng.choice((*LIMITED_ACCOUNT_IDS, *FREE_ACCOUNT_IDS))
        credit = self.rng.choice([a for a in ACCOUNT_IDS if a != debit])
        return debit, credit

    def batch(self, size: int) -> bytes:
        rng = self.rng
        events: list[Transfer] = []
        while len(events) < size:
            roll = rng.random()
            debit, credit = self._pair()
            amount = rng.randint(1, 3_000)
            if roll < 0.50:
                event = Transfer(id=self._id(), debit_account_id=debit,
                                 credit_account_id=credit, amount_minor=amount, ledger=1,
                                 code=1)
            elif roll < 0.65:
                event = Transfer(id=self._id(), debit_account_id=debit,
                                 credit_account_id=credit, amount_minor=amount, ledger=1,
                                 code=1, flags=int(TransferFlags.PENDING),
                                 timeout_ms=rng.randint(1, 4))
                self.open_pending.append((event.id, amount))
            elif roll < 0.71 and self.open_pending:
                pending_id, pending_amount = self.open_pending.popleft()
                event = Transfer(id=self._id(), pending_id=pending_id,
                                 amount_minor=rng.choice((0, max(1, pending_amount // 2))),
                                 flags=int(TransferFlags.POST_PENDING_TRANSFER))
            elif roll < 0.74 and self.open_pending:
                pending_id, _ = self.open_pending.popleft()
                event = Transfer(id=self._id(), pending_id=pending_id,
                                 flags=int(TransferFlags.VOID_PENDING_TRANSFER))
            elif roll < 0.86 and len(events) + 2 <= size:
                # A linked pair; the second leg sometimes names an unknown account, so the
                # whole chain is rolled back.
                second_credit = UNKNOWN_ACCOUNT_ID if rng.random() < 0.3 else debit
                events.append(Transfer(id=self._id(), debit_account_id=debit,
                                       credit_account_id=credit, amount_minor=amount,
                                       ledger=1, code=1, flags=int(TransferFlags.LINKED)))
                event = Transfer(id=self._id(), debit_account_id=credit,
                                 credit_account_id=second_credit, amount_minor=1, ledger=1,
                                 code=1)
            elif roll < 0.93 and self.previous is not None:
                event = self.previous  # a retry: EXISTS (or the original's failure)
            else:
                event = Transfer(id=self._id(), debit_account_id=debit,
                                 credit_account_id=UNKNOWN_ACCOUNT_ID, amount_minor=amount,
                                 ledger=1, code=1)
            events.append(event)
            self.previous = event
        return bytes(pack_transfers(events))


def first_ok_id(batch: bytes, failures) -> int:
    failed = {index for index, _ in failures}
    for index in range(len(batch) // 72):
        if index not in failed:
            return int.from_bytes(batch[index * 72:index * 72 + 8], "little")
    return 0


def run_child(journal_path: str, snapshot_directory: str, seed: int, id_base: int,
              batch_size: int) -> None:
    from ledger.recovery import recover

    recovered = recover(journal_path, snapshot_directory)
    durable = recovered.durable
    now_ns = max(durable.ledger.last_timestamp, 1) + BATCH_INTERVAL_NS
    if recovered.position.sequence == 0:
        accounts, funding = setup_batches()
        assert durable.create_accounts(accounts, now_ns) == []
        assert durable.create_transfers(funding, now_ns) == []
        durable.commit()
    workload = MixedWorkload(seed, id_base)
    out = sys.stdout
    batches = 0
    while True:
        now_ns += BATCH_INTERVAL_NS
        durable.expire_pending(now_ns)
        batch = workload.batch(batch_size)
        failures = durable.create_transfers(batch, now_ns)
        sequence = durable.commit()
        # Acknowledge only now: the batch is durable.
        out.write(f"ACK {sequence} {hashlib.sha256(batch).hexdigest()} "
                  f"{first_ok_id(batch, failures)}\n")
        out.flush()
        batches += 1
        if batches % 25 == 0:
            durable.snapshot(_store(snapshot_directory))


def _store(directory: str):
    from ledger.snapshot import FileSnapshotStore

    return FileSnapshotStore(directory)


if __name__ == "__main__":
    journal_arg, snapshots_arg, seed_arg, id_base_arg, batch_size_arg = sys.argv[1:6]
    run_child(journal_arg, snapshots_arg, int(seed_arg), int(id_base_arg),
              int(batch_size_arg))
