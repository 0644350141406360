"""Ledger benchmark workloads: deterministic packed account and transfer batches.

Shared by `ponte bench ledger` (memory modes), `bench/ledger_durable.py` (file and
PostgreSQL journal modes) and the pytest-benchmark cases, so every mode measures the same
input. Generation is slow Python work: callers pre-generate the buffers (`pregenerate`)
before starting the clock. This module must never touch a ledger's internals or the clock;
it only builds input bytes (and `load_accounts` feeds them through the public API).

Workloads (ledger 1, code 1, single-phase, amounts 1..1000 minor units):
- "uniform": debit and credit accounts drawn uniformly from `accounts` accounts;
- "hot": debit and credit accounts drawn from the first `hot_accounts` accounts only (a
  switch has few, very busy accounts: participant positions and hub accounts).
Accounts carry no limit flags, so no funding batch is needed and every transfer succeeds;
the ledger still runs every check (lookups, overflow, idempotency, retention) per transfer.
"""

from __future__ import annotations

import random
from typing import Iterator, Literal

from ledger.limits import BATCH_EVENTS_MAX
from ledger.types import ACCOUNT_STRUCT, RECORD_BYTES, TRANSFER_STRUCT

Workload = Literal["uniform", "hot"]
WORKLOADS: tuple[str, ...] = ("uniform", "hot")

LEDGER_ID = 1
ACCOUNT_CODE = 1
TRANSFER_CODE = 1
AMOUNT_MINOR_MIN = 1
AMOUNT_MINOR_MAX = 1000
ACCOUNTS_DEFAULT = 10_000
HOT_ACCOUNTS_DEFAULT = 10

assert TRANSFER_STRUCT.size == RECORD_BYTES
assert ACCOUNT_STRUCT.size == RECORD_BYTES


def make_accounts(count: int, first_id: int = 1) -> bytes:
    """`count` packed accounts with ids first_id.. (ledger 1, code 1, no flags).

    The buffer may hold more than one batch: feed it with `split_batches` (or use
    `load_accounts`).
    """
    assert count >= 1
    buffer = bytearray(RECORD_BYTES * count)
    pack_into = ACCOUNT_STRUCT.pack_into
    for index in range(count):
        pack_into(buffer, index * RECORD_BYTES,
                  first_id + index, 0, 0, 0, 0, 0, 0, 0, LEDGER_ID, 0, ACCOUNT_CODE, 0)
    return bytes(buffer)


def split_batches(buffer, batch_size: int = BATCH_EVENTS_MAX) -> Iterator[memoryview]:
    """Zero-copy views of at most `batch_size` records each."""
    assert 1 <= batch_size <= BATCH_EVENTS_MAX
    view = memoryview(buffer).cast("B")
    assert len(view) % RECORD_BYTES == 0
    step = batch_size * RECORD_BYTES
    for offset in range(0, len(view), step):
        yield view[offset:offset + step]


def load_accounts(ledger, count: int, now_ns: int = 1) -> None:
    """Create `count` workload accounts in `ledger`; AssertionError if any fails."""
    for batch in split_batches(make_accounts(count)):
        failures = ledger.create_accounts(batch, now_ns)
        assert not failures, f"creating workload accounts failed: {failures[:5]}"


def make_transfer_batches(
    workload: Workload,
    batch_size: int,
    transfers: int,
    seed: int,
    accounts: int = ACCOUNTS_DEFAULT,
    hot_accounts: int = HOT_ACCOUNTS_DEFAULT,
    first_id: int = 1,
) -> Iterator[bytes]:
    """Packed batches of `batch_size` transfers (the last may be shorter), `transfers` in
    all, with ids first_id.. in order. Same arguments, same bytes."""
    assert workload in WORKLOADS, f"unknown workload {workload!r}"
    assert 1 <= batch_size <= BATCH_EVENTS_MAX
    assert transfers >= 0
    assert 2 <= hot_accounts <= accounts
    span = accounts if workload == "uniform" else hot_accounts
    rng = random.Random(f"{workload}:{seed}")
    randrange = rng.randrange
    pack_into = TRANSFER_STRUCT.pack_into
    next_id = first_id
    remaining = transfers
    while remaining > 0:
        size = min(batch_size, remaining)
        buffer = bytearray(RECORD_BYTES * size)
        for index in range(size):
            debit = randrange(span)
            # A different credit account, uniformly among the other span - 1.
            credit = (debit + 1 + randrange(span - 1)) % span
            pack_into(buffer, index * RECORD_BYTES,
                      next_id, debit + 1, credit + 1,
                      randrange(AMOUNT_MINOR_MIN, AMOUNT_MINOR_MAX + 1),
                      0, 0, 0, 0, 0, LEDGER_ID, TRANSFER_CODE, 0)
            next_id += 1
        remaining -= size
        yield bytes(buffer)


def pregenerate(
    workload: Workload, batch_size: int, transfers: int, seed: int, **kwargs
) -> list[bytes]:
    """All batches in memory, so generating them is not part of a measured time."""
    return list(make_transfer_batches(workload, batch_size, transfers, seed, **kwargs))
