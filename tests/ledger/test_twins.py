"""The two twins agree: the compiled core is the one loaded, snapshots cross-load with the
same digest, and a differential property test feeds both the same random calls (bad
inputs included, bounds small enough to force eviction and PENDING_TRANSFERS_FULL) and
requires identical results, totals, lookups and snapshot bytes."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ledger
from ledger.api import LedgerKernel
from ledger.common import LedgerCommon
from ledger.config import LedgerConfig
from ledger.limits import U64_MAX
from ledger.reference import Ledger as PureLedger
from ledger.types import (
    ACCOUNT_STRUCT,
    TRANSFER_STRUCT,
    AccountFlags,
    TransferFlags,
    pack_transfers,
)
from ledger_helpers import LEDGER_HYPOTHESIS, Books, compiled_ledger_cls

TF = TransferFlags
AF = AccountFlags
MS = 1_000_000


def test_compiled_is_loaded():
    built = importlib.util.find_spec("ledger._core") is not None
    if os.environ.get("PONTE_PURE_PYTHON") == "1":
        assert ledger.IMPLEMENTATION == "pure"
        assert ledger.Ledger is PureLedger
        return
    if not built:
        compiled_ledger_cls()  # fails under CI, skips elsewhere, saying why
    assert ledger.COMPILED_IMPORT_ERROR is None
    assert ledger.IMPLEMENTATION == "compiled"
    assert ledger.Ledger is ledger.CompiledLedger
    assert ledger.Ledger.implementation == "compiled"
    assert PureLedger.implementation == "pure"


SHARED_OPERATIONS = ("lookup_accounts", "lookup_transfers", "pending_status",
                     "get_account_history", "check_invariants", "snapshot", "from_snapshot",
                     "digest")


def test_each_twin_is_a_kernel_and_the_one_shared_implementation(ledger_cls):
    """The cold operations are written once: neither kernel overrides them, and each
    provides the whole kernel API they use."""
    assert issubclass(ledger_cls, LedgerCommon)
    for name in SHARED_OPERATIONS:
        defined_by = next(klass for klass in ledger_cls.__mro__ if name in vars(klass))
        assert defined_by is LedgerCommon, name
    kernel_api = [name for name, value in vars(LedgerKernel).items()
                  if name.startswith("_") and not name.startswith("__") and callable(value)]
    assert "_export_state" in kernel_api
    for name in kernel_api:
        assert callable(getattr(ledger_cls, name, None)), name


def test_compiled_ledger_instances_carry_no_dict():
    """The shared half is a slotted mixin: the compiled Ledger stays a plain extension
    object, so attribute lookups on the hot path go straight to the type."""
    compiled = compiled_ledger_cls()
    assert not hasattr(compiled(), "__dict__")


def _scenario(books: Books) -> None:
    """A little of everything: limits, pending with and without timeout, a post, a void, a
    closing transfer, history, a failed id, a rolled-back chain."""
    books.open(1, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.HISTORY)
    books.open(2, 3, 9)
    books.ok(books.transfer(id=1, debit_account_id=9, credit_account_id=1, amount_minor=500))
    books.ok(books.transfer(id=2, amount_minor=50, flags=TF.PENDING, timeout_ms=5),
             books.transfer(id=3, amount_minor=60, flags=TF.PENDING),
             books.transfer(id=4, debit_account_id=2, credit_account_id=3, amount_minor=7,
                            flags=TF.PENDING | TF.CLOSING_CREDIT, timeout_ms=50))
    books.ok(books.transfer(id=5, pending_id=3, amount_minor=20,
                            flags=TF.POST_PENDING_TRANSFER))
    books.transfers(books.transfer(id=6, debit_account_id=404),
                    books.transfer(id=7, flags=TF.LINKED),
                    books.transfer(id=8, amount_minor=10_000))


@pytest.mark.parametrize("direction", ["compiled->pure", "pure->compiled"])
def test_snapshot_cross_loads_with_identical_digest(direction):
    compiled = compiled_ledger_cls()
    source_cls, target_cls = ((compiled, PureLedger) if direction == "compiled->pure"
                              else (PureLedger, compiled))
    config = LedgerConfig(transfers_retained_max=6, pending_max=4, history_retained_max=3)
    source = Books(source_cls, config)
    _scenario(source)
    data = source.ledger.snapshot()
    target = target_cls.from_snapshot(data)
    assert target.implementation != source.ledger.implementation
    assert target.snapshot() == data
    assert target.digest() == source.ledger.digest()
    assert target.config == config
    # Both continue identically, including expiry and history.
    batch = pack_transfers([source.transfer(id=9, amount_minor=1),
                            source.transfer(id=2, amount_minor=50, flags=TF.PENDING,
                                            timeout_ms=5)])
    assert target.create_transfers(batch, 2_000) == source.ledger.create_transfers(batch,
                                                                                   2_000)
    assert target.expire_pending(10 * MS) == source.ledger.expire_pending(10 * MS) == [2]
    assert target.get_account_history(1, 10) == source.ledger.get_account_history(1, 10)
    assert target.digest() == source.ledger.digest()


def test_snapshot_round_trip_and_bad_snapshots(ledger_cls):
    books = Books(ledger_cls)
    _scenario(books)
    data = books.ledger.snapshot()
    again = ledger_cls.from_snapshot(data)
    assert again.snapshot() == data
    assert again.lookup_transfers([1, 2, 3, 4, 5]) == books.ledger.lookup_transfers(
        [1, 2, 3, 4, 5])
    assert again.last_timestamp == books.ledger.last_timestamp
    with pytest.raises(ValueError):
        ledger_cls.from_snapshot(data[:-1])
    with pytest.raises(ValueError):
        ledger_cls.from_snapshot(b"NOTALEDG" + data[8:])
    with pytest.raises(ValueError):
        ledger_cls.from_snapshot(data, LedgerConfig(accounts_max=1))


# ----------------------------------------------------------------------- differential test

SMALL = LedgerConfig(accounts_max=6, transfers_retained_max=7, pending_max=3,
                     history_retained_max=5)
# Bounds never reached: the compiled core's arrays grow batch by batch instead.
ROOMY = LedgerConfig(accounts_max=1_000, transfers_retained_max=1_000, pending_max=1_000,
                     history_retained_max=1_000)
TRANSFER_IDS = st.integers(1, 24)
ACCOUNT_IDS = st.sampled_from([1, 1, 2, 2, 3, 3, 5, 5, 4, 6])
AMOUNTS = st.one_of(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40),
                    st.sampled_from([0, 2**63, U64_MAX]))
TIMEOUTS_MS = st.sampled_from([0, 1, 2, 5, 50])
# (field index in TRANSFER_STRUCT order, bad values): one corruption a few times in ten.
CORRUPTIONS = [
    (0, [0, U64_MAX]), (1, [0, U64_MAX, 99]), (2, [0, U64_MAX, 99]), (3, [0, U64_MAX]),
    (4, [0, 7, U64_MAX]), (5, [1]), (6, [1]), (7, [1]), (8, [3, 2**32 - 1]), (9, [0, 2]),
    (10, [0, 2]), (11, [1 << 9, 6, 12, 2 | 16, 4 | 64, 64]),
]


@st.composite
def transfer_records(draw):
    """Mostly well-formed transfers of every kind over a few accounts and ids (so EXISTS,
    limits, posts of posted transfers and expiry all happen), some with one bad field."""
    kind = draw(st.sampled_from(["single", "single", "pending", "post", "void",
                                 "balancing", "closing", "two-phase", "two-phase"]))
    debit = draw(ACCOUNT_IDS)
    credit = draw(ACCOUNT_IDS.filter(lambda c: c != debit))
    fields = [draw(TRANSFER_IDS), debit, credit, draw(AMOUNTS), 0, draw(st.integers(0, 1)),
              0, draw(st.integers(0, 1)), 0, 1, 1, 0]
    if kind == "pending":
        fields[11] = TF.PENDING
        fields[8] = draw(TIMEOUTS_MS)
    elif kind in ("post", "void"):
        fields[11] = TF.POST_PENDING_TRANSFER if kind == "post" else TF.VOID_PENDING_TRANSFER
        fields[4] = draw(TRANSFER_IDS)
        if draw(st.booleans()):
            fields[1] = fields[2] = fields[9] = fields[10] = 0  # take the pending's
        fields[3] = draw(st.one_of(st.just(0), AMOUNTS))
    elif kind == "balancing":
        fields[11] = draw(st.sampled_from([TF.BALANCING_DEBIT, TF.BALANCING_CREDIT,
                                           TF.BALANCING_DEBIT | TF.BALANCING_CREDIT]))
        fields[3] = draw(st.one_of(st.just(0), AMOUNTS))
        if draw(st.booleans()):
            fields[11] |= TF.PENDING
    elif kind == "closing":
        fields[11] = TF.PENDING | draw(st.sampled_from([TF.CLOSING_DEBIT, TF.CLOSING_CREDIT]))
        fields[8] = draw(TIMEOUTS_MS)
    if draw(st.integers(0, 4)) == 0:
        fields[11] |= TF.LINKED
    if kind == "two-phase":
        # A pending transfer and, in the same batch, a post or void of it (maybe partial,
        # maybe with the pending's fields left 0, maybe after its deadline).
        fields[11] = TF.PENDING | (fields[11] & TF.LINKED)
        fields[8] = draw(TIMEOUTS_MS)
        resolve = draw(transfer_records_resolving(fields[0]))
    else:
        resolve = b""
    if draw(st.integers(0, 6)) == 0:
        index, bad_values = draw(st.sampled_from(CORRUPTIONS))
        fields[index] = draw(st.sampled_from(bad_values))
    return TRANSFER_STRUCT.pack(*fields) + resolve


@st.composite
def transfer_records_resolving(draw, pending_id):
    fields = [draw(TRANSFER_IDS), 0, 0, draw(st.one_of(st.just(0), AMOUNTS)), pending_id,
              draw(st.integers(0, 1)), 0, 0, 0, 0, 0,
              draw(st.sampled_from([TF.POST_PENDING_TRANSFER, TF.VOID_PENDING_TRANSFER]))]
    if draw(st.integers(0, 4)) == 0:
        fields[11] |= TF.LINKED
    if draw(st.integers(0, 6)) == 0:
        index, bad_values = draw(st.sampled_from(CORRUPTIONS))
        fields[index] = draw(st.sampled_from(bad_values))
    return TRANSFER_STRUCT.pack(*fields)


@st.composite
def account_records(draw):
    flags = sum(set(draw(st.lists(st.sampled_from([1, 2, 4, 8, 16, 32]), max_size=2))))
    return ACCOUNT_STRUCT.pack(
        draw(st.one_of(st.integers(1, 7), st.sampled_from([0, U64_MAX]))), 0, 0, 0, draw(st.sampled_from([0, 0, 0, 0, 1])), 0,
        0, draw(st.integers(0, 1)), draw(st.sampled_from([1, 1, 1, 2, 0])),
        draw(st.sampled_from([0, 0, 0, 0, 0, 1])), 1, flags,
    )


OPERATIONS = st.one_of(
    st.tuples(st.just("accounts"), st.lists(account_records(), min_size=0, max_size=5),
              st.integers(0, 3 * MS)),
    st.tuples(st.just("transfers"), st.lists(transfer_records(), min_size=0, max_size=12),
              st.integers(0, 3 * MS)),
    st.tuples(st.just("transfers"), st.lists(transfer_records(), min_size=1, max_size=12),
              st.integers(0, 3 * MS)),
    st.tuples(st.just("expire"), st.just([]), st.integers(0, 60 * MS)),
    # Restart from a snapshot, each twin from the other's (as recovery would).
    st.tuples(st.just("reload"), st.just([]), st.just(0)),
    # Resend an earlier batch, maybe with one field of one record changed: retries
    # (EXISTS*, ID_ALREADY_FAILED, ALREADY_POSTED/VOIDED, EXPIRED).
    st.tuples(st.just("retry"),
              st.tuples(st.integers(0, 50), st.integers(0, 30),
                        st.sampled_from([None, 0, 1, 2, 3, 4, 5, 7, 8, 9, 10])),
              st.integers(0, 3 * MS)),
    st.tuples(st.just("single"), st.lists(transfer_records().map(lambda r: r[:72]),
                                          min_size=1, max_size=1),
              st.integers(0, 3 * MS)),
)

# Accounts every run starts from (limits, history, a second ledger), so transfers can
# succeed; random account batches then add or collide.
SEED_ACCOUNTS = b"".join([
    ACCOUNT_STRUCT.pack(1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0),
    ACCOUNT_STRUCT.pack(5, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0),
    ACCOUNT_STRUCT.pack(2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, AF.DEBITS_MUST_NOT_EXCEED_CREDITS),
    ACCOUNT_STRUCT.pack(3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1,
                        AF.CREDITS_MUST_NOT_EXCEED_DEBITS | AF.HISTORY),
    ACCOUNT_STRUCT.pack(4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0),
])


# Funding (ids far from the random ones): account 2 gets credits, account 3 debits.
SEED_TRANSFERS = b"".join([
    TRANSFER_STRUCT.pack(1_000, 1, 2, 500, 0, 0, 0, 0, 0, 1, 1, 0),
    TRANSFER_STRUCT.pack(1_001, 3, 1, 500, 0, 0, 0, 0, 0, 1, 1, 0),
])


def _same_state(pure, compiled) -> None:
    assert compiled.totals() == pure.totals()
    assert compiled.last_timestamp == pure.last_timestamp
    assert compiled.pending_count == pure.pending_count
    assert compiled.account_count == pure.account_count
    assert compiled.snapshot() == pure.snapshot()


@LEDGER_HYPOTHESIS
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=30),
       config=st.sampled_from([SMALL, SMALL, ROOMY]))
def test_differential_random_batches(operations, config):
    compiled_cls = compiled_ledger_cls()
    pure, compiled = PureLedger(config), compiled_cls(config)
    assert pure.create_accounts(SEED_ACCOUNTS, 1) == compiled.create_accounts(SEED_ACCOUNTS,
                                                                              1) == []
    assert pure.create_transfers(SEED_TRANSFERS, 2) == compiled.create_transfers(
        SEED_TRANSFERS, 2) == []
    now_ns = 1_000
    sent: list[bytes] = []
    for kind, records, step_ns in operations:
        now_ns += step_ns
        if kind == "retry":
            if not sent:
                continue
            which, record, field = records
            kind, batch = "transfers", bytearray(sent[which % len(sent)])
            if field is not None:
                offset = (record % (len(batch) // 72)) * 72
                values = list(TRANSFER_STRUCT.unpack_from(batch, offset))
                values[field] = {0: 40, 1: 2, 2: 5, 3: 7, 4: 9, 5: 3, 7: 3, 8: 2, 9: 2,
                                 10: 2}[field] if values[field] == 0 else values[field] ^ 1
                TRANSFER_STRUCT.pack_into(batch, offset, *values)
            batch = bytes(batch)
        else:
            batch = b"".join(records)
        if kind == "transfers" and batch:
            sent.append(batch)
        if kind == "accounts":
            assert compiled.create_accounts(batch, now_ns) == pure.create_accounts(batch,
                                                                                   now_ns)
        elif kind == "transfers":
            assert compiled.create_transfers(batch, now_ns) == pure.create_transfers(batch,
                                                                                     now_ns)
        elif kind == "single":
            fields = TRANSFER_STRUCT.unpack(batch)
            if fields[6] != 0:  # create_transfer has no timestamp argument
                continue
            args = fields[:6] + fields[7:] + (now_ns,)
            assert compiled.create_transfer(*args) == pure.create_transfer(*args)
        elif kind == "reload":
            pure, compiled = (PureLedger.from_snapshot(compiled.snapshot()),
                              compiled_cls.from_snapshot(pure.snapshot()))
        else:
            assert compiled.expire_pending(now_ns) == pure.expire_pending(now_ns)
        _same_state(pure, compiled)
        pure.check_invariants()
        compiled.check_invariants()
    every_id = list(range(0, 14)) + [U64_MAX]
    assert compiled.lookup_transfers(every_id) == pure.lookup_transfers(every_id)
    assert compiled.lookup_accounts(every_id) == pure.lookup_accounts(every_id)
    assert [compiled.pending_status(i) for i in every_id] == [
        pure.pending_status(i) for i in every_id]
    assert compiled.get_account_history(3, 10) == pure.get_account_history(3, 10)
    assert compiled.digest() == pure.digest()


def test_ring_churn_keeps_exactly_the_window():
    """Thousands of evictions through the compiled core's hash tables (backward-shift
    deletion) leave exactly the newest ids findable, and the twins agree byte for byte."""
    from bench.ledger_workloads import load_accounts, make_transfer_batches

    compiled_cls = compiled_ledger_cls()
    config = LedgerConfig(transfers_retained_max=1_000, accounts_max=100)
    twins = [PureLedger(config), compiled_cls(config)]
    for twin in twins:
        load_accounts(twin, 100)
    for batch in make_transfer_batches("uniform", 997, 20_000, seed=3, accounts=100):
        assert [twin.create_transfers(batch, 5_000) for twin in twins] == [[], []]
    for twin in twins:
        assert [t.id for t in twin.lookup_transfers(range(19_001, 20_001))] == list(
            range(19_001, 20_001))
        assert twin.lookup_transfers(range(1, 19_001)) == []
        twin.check_invariants()
    assert twins[0].snapshot() == twins[1].snapshot()
