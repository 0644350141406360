"""Ledger behaviour, scenario by scenario, on both twins: linked chains, two-phase
transfers, expiry, balancing, closing, idempotency and retention, history, bad calls."""

from __future__ import annotations

import pytest

from ledger.config import LedgerConfig
from ledger.limits import BATCH_EVENTS_MAX, U64_MAX
from ledger.types import (
    RECORD_BYTES,
    Account,
    AccountBalance,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    PendingStatus,
    TransferFlags,
    pack_transfers,
)
from ledger_helpers import Books, state_without_clock

TR = CreateTransferResult
AR = CreateAccountResult
AF = AccountFlags
TF = TransferFlags
MS = 1_000_000


def funded(ledger_cls, config=None, limited=True) -> Books:
    """Accounts 1..3 (1 and 2 with debits_must_not_exceed_credits if `limited`), and a
    funding account 9; 1 and 2 hold 100 each."""
    books = Books(ledger_cls, config)
    flags = AF.DEBITS_MUST_NOT_EXCEED_CREDITS if limited else 0
    books.open(1, 2, flags=flags)
    books.open(3, 9)
    books.ok(books.transfer(debit_account_id=9, credit_account_id=1, amount_minor=100),
             books.transfer(debit_account_id=9, credit_account_id=2, amount_minor=100))
    return books


# ------------------------------------------------------------------------ linked chains

def test_linked_chain_all_succeed(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=1, amount_minor=10, flags=TF.LINKED),
             books.transfer(id=2, debit_account_id=2, credit_account_id=3, amount_minor=5))
    assert books.balances(1) == (0, 10, 0, 100)
    assert books.balances(3) == (0, 0, 0, 5)


def test_linked_chain_rolls_back_everything(ledger_cls):
    books = funded(ledger_cls)
    _setup = books.ok(books.transfer(id=50, amount_minor=10, flags=TF.PENDING))
    before = state_without_clock(books.ledger)
    failures = books.transfers(
        books.transfer(id=1, amount_minor=10, flags=TF.LINKED),
        books.transfer(id=2, pending_id=50, amount_minor=0,
                       flags=TF.POST_PENDING_TRANSFER | TF.LINKED),
        books.transfer(id=3, amount_minor=1, flags=TF.PENDING | TF.CLOSING_CREDIT | TF.LINKED,
                       timeout_ms=5),
        books.transfer(id=4, debit_account_id=3, credit_account_id=9, amount_minor=1_000,
                       flags=TF.BALANCING_DEBIT | TF.LINKED),
        books.transfer(id=5, credit_account_id=3, amount_minor=1_000),  # exceeds credits
        books.transfer(id=6, amount_minor=1),  # a new chain-free event still runs
    )
    assert failures == [(0, TR.LINKED_EVENT_FAILED), (1, TR.LINKED_EVENT_FAILED),
                        (2, TR.LINKED_EVENT_FAILED), (3, TR.LINKED_EVENT_FAILED),
                        (4, TR.EXCEEDS_CREDITS)]
    assert books.ledger.pending_status(50) == PendingStatus.PENDING
    assert books.ledger.lookup_transfers([1, 2, 3, 4]) == []
    assert not books.account(2).flags & AF.CLOSED
    # The failing id is remembered as failed; the rolled-back ids are free again.
    assert books.transfers(books.transfer(id=5)) == [(0, TR.ID_ALREADY_FAILED)]
    books.ok(books.transfer(id=1, amount_minor=1))
    assert [t.id for t in books.ledger.lookup_transfers([6, 1])] == [6, 1]
    books.ledger.check_invariants()
    assert before != state_without_clock(books.ledger)


def test_chain_failure_stops_evaluating_the_rest_of_the_chain(ledger_cls):
    books = funded(ledger_cls)
    failures = books.transfers(
        books.transfer(id=1, amount_minor=0, flags=TF.LINKED),
        books.transfer(id=2, debit_account_id=777, flags=TF.LINKED),  # not evaluated
        books.transfer(id=3),
    )
    assert failures == [(0, TR.AMOUNT_MUST_NOT_BE_ZERO), (1, TR.LINKED_EVENT_FAILED),
                        (2, TR.LINKED_EVENT_FAILED)]
    # Id 2 would have poisoned had it run: it did not.
    books.ok(books.transfer(id=2))


def test_exists_fails_a_chain(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=1))
    failures = books.transfers(books.transfer(id=1, flags=TF.LINKED), books.transfer(id=2))
    assert failures == [(0, TR.EXISTS_WITH_DIFFERENT_FLAGS), (1, TR.LINKED_EVENT_FAILED)]
    failures = books.transfers(books.transfer(id=2, flags=TF.LINKED), books.transfer(id=1))
    assert failures == [(0, TR.LINKED_EVENT_FAILED), (1, TR.EXISTS)]
    assert books.ledger.lookup_transfers([2]) == []


def test_chain_rollback_restores_evicted_retained_ids(ledger_cls):
    books = funded(ledger_cls, LedgerConfig(transfers_retained_max=4, pending_max=4))
    books.ok(books.transfer(id=1), books.transfer(id=2))
    # The ring holds the two funding transfers and 1, 2; a chain evicts them, then fails.
    failures = books.transfers(books.transfer(id=3, flags=TF.LINKED),
                               books.transfer(id=4, flags=TF.LINKED),
                               books.transfer(id=5, amount_minor=0))
    assert failures[-1] == (2, TR.AMOUNT_MUST_NOT_BE_ZERO)
    assert [t.id for t in books.ledger.lookup_transfers([1, 2, 3, 4])] == [1, 2]
    assert books.transfers(books.transfer(id=1)) == [(0, TR.EXISTS)]


def test_linked_accounts_roll_back(ledger_cls):
    books = Books(ledger_cls)
    failures = books.accounts(Account(id=1, ledger=1, code=1, flags=AF.LINKED),
                              Account(id=2, ledger=1, code=0),
                              Account(id=3, ledger=1, code=1))
    assert failures == [(0, AR.LINKED_EVENT_FAILED), (1, AR.CODE_MUST_NOT_BE_ZERO)]
    assert [a.id for a in books.ledger.lookup_accounts([1, 2, 3])] == [3]
    assert books.ledger.account_count == 1


# ------------------------------------------------------------------------ two-phase

def test_post_full_amount(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, amount_minor=40, flags=TF.PENDING))
    assert books.balances(1) == (40, 0, 0, 100)
    assert books.balances(2) == (0, 0, 40, 100)
    books.ok(books.transfer(id=11, pending_id=10, debit_account_id=0, credit_account_id=0,
                            amount_minor=0, ledger=0, code=0,
                            flags=TF.POST_PENDING_TRANSFER))
    assert books.balances(1) == (0, 40, 0, 100)
    assert books.balances(2) == (0, 0, 0, 140)
    assert books.ledger.pending_status(10) == PendingStatus.POSTED
    (post,) = books.ledger.lookup_transfers([11])
    assert (post.debit_account_id, post.credit_account_id, post.amount_minor, post.ledger,
            post.code) == (1, 2, 40, 1, 1)
    # Retrying the post with resolved or zero fields is EXISTS either way.
    assert books.transfers(books.transfer(id=11, pending_id=10, amount_minor=40,
                                          flags=TF.POST_PENDING_TRANSFER)) == [(0, TR.EXISTS)]
    assert books.transfers(books.transfer(id=11, pending_id=10, amount_minor=0,
                                          debit_account_id=0, credit_account_id=0, ledger=0,
                                          code=0, flags=TF.POST_PENDING_TRANSFER)) == [
        (0, TR.EXISTS)]
    assert books.ledger.pending_count == 0


def test_post_partial_amount_releases_the_rest(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, amount_minor=40, flags=TF.PENDING))
    books.ok(books.transfer(id=11, pending_id=10, amount_minor=15,
                            flags=TF.POST_PENDING_TRANSFER))
    assert books.balances(1) == (0, 15, 0, 100)
    assert books.balances(2) == (0, 0, 0, 115)
    # A retry asking the full amount (0) differs from the partial post recorded.
    assert books.transfers(books.transfer(id=11, pending_id=10, amount_minor=0,
                                          flags=TF.POST_PENDING_TRANSFER)) == [
        (0, TR.EXISTS_WITH_DIFFERENT_AMOUNT)]


def test_void_releases_everything(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, amount_minor=40, flags=TF.PENDING))
    books.ok(books.transfer(id=11, pending_id=10, amount_minor=40,
                            flags=TF.VOID_PENDING_TRANSFER))
    assert books.balances(1) == (0, 0, 0, 100)
    assert books.ledger.pending_status(10) == PendingStatus.VOIDED
    assert books.transfers(books.transfer(pending_id=10, amount_minor=0,
                                          flags=TF.POST_PENDING_TRANSFER)) == [
        (0, TR.PENDING_TRANSFER_ALREADY_VOIDED)]


def test_pending_counts_against_the_limit_at_once(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, amount_minor=80, flags=TF.PENDING))
    assert books.transfers(books.transfer(amount_minor=21)) == [(0, TR.EXCEEDS_CREDITS)]
    books.ok(books.transfer(amount_minor=20))


def test_expiry_by_expire_pending(ledger_cls):
    books = funded(ledger_cls)
    start = books.now_ns
    books.ok(books.transfer(id=10, amount_minor=30, flags=TF.PENDING, timeout_ms=5),
             books.transfer(id=11, amount_minor=20, flags=TF.PENDING, timeout_ms=1),
             books.transfer(id=12, amount_minor=10, flags=TF.PENDING))  # never expires
    timestamp_10 = books.ledger.lookup_transfers([10])[0].timestamp
    assert books.ledger.expire_pending(start) == []
    # A post after the deadline fails but the transfer stays pending until expired.
    late = start + 3 * MS
    assert books.transfers(books.transfer(id=20, pending_id=11, amount_minor=0,
                                          flags=TF.POST_PENDING_TRANSFER), now_ns=late) == [
        (0, TR.PENDING_TRANSFER_EXPIRED)]
    assert books.ledger.pending_status(11) == PendingStatus.PENDING
    assert books.ledger.expire_pending(timestamp_10 + 5 * MS) == [11, 10]
    assert books.ledger.pending_status(10) == PendingStatus.EXPIRED
    assert books.ledger.pending_status(12) == PendingStatus.PENDING
    assert books.balances(1) == (10, 0, 0, 100)
    assert books.transfers(books.transfer(pending_id=10, amount_minor=0,
                                          flags=TF.VOID_PENDING_TRANSFER)) == [
        (0, TR.PENDING_TRANSFER_EXPIRED)]
    assert books.ledger.expire_pending(U64_MAX - 10) == []
    books.ledger.check_invariants()


def test_expire_pending_consumes_timestamps(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, flags=TF.PENDING, timeout_ms=1),
             books.transfer(id=11, flags=TF.PENDING, timeout_ms=1))
    last = books.ledger.last_timestamp
    assert books.ledger.expire_pending(last + 10 * MS) == [10, 11]
    assert books.ledger.last_timestamp == last + 10 * MS + 1


# ------------------------------------------------------------------------ balancing / closing

def test_balancing_debit_takes_what_is_there(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, amount_minor=30, flags=TF.PENDING))
    books.ok(books.transfer(id=11, debit_account_id=1, credit_account_id=3, amount_minor=0,
                            flags=TF.BALANCING_DEBIT))
    assert books.ledger.lookup_transfers([11])[0].amount_minor == 70
    assert books.balances(1) == (30, 70, 0, 100)
    # Idempotency compares the input bound, not the reduced amount.
    retry = books.transfer(id=11, debit_account_id=1, credit_account_id=3, amount_minor=0,
                           flags=TF.BALANCING_DEBIT)
    assert books.transfers(retry) == [(0, TR.EXISTS)]
    books.ok(books.transfer(id=12, debit_account_id=1, credit_account_id=3, amount_minor=5,
                            flags=TF.BALANCING_DEBIT))
    assert books.ledger.lookup_transfers([12])[0].amount_minor == 0


def test_balancing_credit_with_an_upper_bound(ledger_cls):
    books = funded(ledger_cls)
    books.open(40, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    books.ok(books.transfer(debit_account_id=40, credit_account_id=3, amount_minor=50,
                            flags=TF.BALANCING_CREDIT))  # 40 has no debits: amount 0
    books.ok(books.transfer(debit_account_id=40, credit_account_id=9, amount_minor=25))
    assert books.transfers(books.transfer(debit_account_id=9, credit_account_id=40,
                                          amount_minor=26)) == [(0, TR.EXCEEDS_DEBITS)]
    books.ok(books.transfer(id=77, debit_account_id=9, credit_account_id=40, amount_minor=10,
                            flags=TF.BALANCING_CREDIT))
    assert books.ledger.lookup_transfers([77])[0].amount_minor == 10
    books.ok(books.transfer(id=78, debit_account_id=9, credit_account_id=40, amount_minor=0,
                            flags=TF.BALANCING_CREDIT))
    assert books.ledger.lookup_transfers([78])[0].amount_minor == 15


def test_closing_transfer_closes_and_void_reopens(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, amount_minor=1, flags=TF.PENDING | TF.CLOSING_DEBIT))
    assert books.account(1).flags & AF.CLOSED
    assert books.transfers(books.transfer()) == [(0, TR.DEBIT_ACCOUNT_ALREADY_CLOSED)]
    books.ok(books.transfer(id=11, pending_id=10, amount_minor=0,
                            flags=TF.VOID_PENDING_TRANSFER))
    assert not books.account(1).flags & AF.CLOSED
    books.ok(books.transfer(id=12, amount_minor=1,
                            flags=TF.PENDING | TF.CLOSING_CREDIT, timeout_ms=1))
    assert books.account(2).flags & AF.CLOSED
    books.ledger.expire_pending(books.ledger.last_timestamp + MS)
    assert not books.account(2).flags & AF.CLOSED
    books.ok(books.transfer(id=13, amount_minor=1, flags=TF.PENDING | TF.CLOSING_CREDIT))
    books.ok(books.transfer(id=14, pending_id=13, amount_minor=0,
                            flags=TF.POST_PENDING_TRANSFER))
    assert books.account(2).flags & AF.CLOSED
    assert books.transfers(books.transfer()) == [(0, TR.CREDIT_ACCOUNT_ALREADY_CLOSED)]


# ------------------------------------------------------------------------ idempotency

def test_id_already_failed_and_window_eviction(ledger_cls):
    books = funded(ledger_cls, LedgerConfig(transfers_retained_max=3, pending_max=2))
    assert books.transfers(books.transfer(id=1, debit_account_id=404)) == [
        (0, TR.DEBIT_ACCOUNT_NOT_FOUND)]
    assert books.transfers(books.transfer(id=1)) == [(0, TR.ID_ALREADY_FAILED)]
    # Validation failures do not poison.
    assert books.transfers(books.transfer(id=2, amount_minor=0)) == [
        (0, TR.AMOUNT_MUST_NOT_BE_ZERO)]
    books.ok(books.transfer(id=2))
    books.ok(books.transfer(id=3), books.transfer(id=4), books.transfer(id=5))
    # Id 1 (failed) and id 2 left the window of 3: forgotten.
    assert books.ledger.lookup_transfers([2, 3, 4, 5]) == books.ledger.lookup_transfers(
        [3, 4, 5])
    books.ok(books.transfer(id=1))
    assert books.transfers(books.transfer(id=5)) == [(0, TR.EXISTS)]


def test_open_pending_survives_ring_eviction(ledger_cls):
    books = funded(ledger_cls, LedgerConfig(transfers_retained_max=2, pending_max=2))
    books.ok(books.transfer(id=10, amount_minor=7, flags=TF.PENDING))
    books.ok(books.transfer(id=11), books.transfer(id=12), books.transfer(id=13))
    assert [t.id for t in books.ledger.lookup_transfers([10])] == [10]
    assert books.transfers(books.transfer(id=10, amount_minor=7, flags=TF.PENDING)) == [
        (0, TR.EXISTS)]
    books.ok(books.transfer(id=14, pending_id=10, amount_minor=0,
                            flags=TF.POST_PENDING_TRANSFER))
    books.ok(books.transfer(id=15), books.transfer(id=16))
    assert books.ledger.pending_status(10) == PendingStatus.NONE  # forgotten once resolved
    books.ledger.check_invariants()


def test_pending_transfers_full_frees_up(ledger_cls):
    books = funded(ledger_cls, LedgerConfig(pending_max=1))
    books.ok(books.transfer(id=10, flags=TF.PENDING))
    assert books.transfers(books.transfer(id=11, flags=TF.PENDING)) == [
        (0, TR.PENDING_TRANSFERS_FULL)]
    books.ok(books.transfer(id=12, pending_id=10, amount_minor=0,
                            flags=TF.VOID_PENDING_TRANSFER))
    books.ok(books.transfer(id=13, flags=TF.PENDING))


def test_single_create_transfer_equals_batch_of_one(ledger_cls):
    books = funded(ledger_cls)
    other = funded(ledger_cls)
    result = books.ledger.create_transfer(1, 1, 2, 5, 0, 7, 8, 0, 1, 1, 0, 5_000)
    assert result == TR.OK and type(result) is TR
    assert other.transfers(other.transfer(id=1, amount_minor=5, user_data_64=7,
                                          user_data_32=8), now_ns=5_000) == []
    assert books.ledger.digest() == other.ledger.digest()
    assert books.ledger.create_transfer(1, 1, 2, 5, 0, 7, 8, 0, 1, 1, 0, 5_000) == TR.EXISTS
    assert books.ledger.create_transfer(2, 1, 2, 1, 0, 0, 0, 0, 1, 1, TF.LINKED, 5_000) == (
        TR.LINKED_EVENT_CHAIN_OPEN)
    assert books.ledger.create_transfer(3, 1, 2, 1_000, 0, 0, 0, 0, 1, 1, 0, 5_000) == (
        TR.EXCEEDS_CREDITS)
    with pytest.raises(ValueError):
        books.ledger.create_transfer(4, 1, 2, 2**64, 0, 0, 0, 0, 1, 1, 0, 5_000)
    with pytest.raises(ValueError):
        books.ledger.create_transfer(4, 1, 2, 1, 0, 0, 0, 0, 1, 1, 1 << 16, 5_000)


@pytest.mark.parametrize("field", range(11))
@pytest.mark.parametrize("bad", [5.7, "5", None, -1, 2**64])
def test_create_transfer_refuses_a_bad_field_and_changes_nothing(ledger_cls, field, bad):
    """A float amount is never truncated to whole minor units, on either twin."""
    books = funded(ledger_cls)
    before = books.ledger.snapshot()
    args = [4, 1, 2, 5, 0, 0, 0, 0, 1, 1, 0]
    args[field] = bad
    with pytest.raises(ValueError):
        books.ledger.create_transfer(*args, 5_000)
    assert books.ledger.snapshot() == before


# ------------------------------------------------------------------------ history

def test_history_rows(ledger_cls):
    books = Books(ledger_cls, LedgerConfig(history_retained_max=4))
    books.open(1, flags=AF.HISTORY)
    books.open(2)
    books.ok(books.transfer(id=1, amount_minor=5), now_ns=10_000)
    books.ok(books.transfer(id=2, amount_minor=6, flags=TF.PENDING), now_ns=20_000)
    books.ok(books.transfer(id=3, pending_id=2, amount_minor=0,
                            flags=TF.VOID_PENDING_TRANSFER), now_ns=30_000)
    assert books.ledger.get_account_history(1, 10) == [
        AccountBalance(timestamp=10_000, debits_pending=0, debits_posted=5,
                       credits_pending=0, credits_posted=0),
        AccountBalance(timestamp=20_000, debits_pending=6, debits_posted=5,
                       credits_pending=0, credits_posted=0),
        AccountBalance(timestamp=30_000, debits_pending=0, debits_posted=5,
                       credits_pending=0, credits_posted=0),
    ]
    assert [row.timestamp for row in books.ledger.get_account_history(1, 2)] == [20_000,
                                                                                 30_000]
    assert books.ledger.get_account_history(2, 10) == []
    assert books.ledger.get_account_history(404, 10) == []
    for n in range(4, 7):
        books.ok(books.transfer(id=n), now_ns=n * 10_000)
    assert [row.timestamp for row in books.ledger.get_account_history(1, 10)] == [
        30_000, 40_000, 50_000, 60_000]



@pytest.mark.parametrize("bad", [1.0, 2.0, "1", b"1", None, [1], -1, 0, U64_MAX, 2**64])
def test_lookups_find_nothing_for_what_is_not_an_id(ledger_cls, bad):
    """An id is an int in [1, 2**64-2]; anything else is simply not found, on both twins
    alike: a float equal to an id is not that id, an unhashable value is not an error."""
    books = funded(ledger_cls)
    books.open(5, flags=AF.HISTORY)
    books.ok(books.transfer(id=1, debit_account_id=5, flags=TF.PENDING),
             books.transfer(id=2, debit_account_id=5))
    assert books.ledger.lookup_accounts([bad, 1]) == books.ledger.lookup_accounts([1])
    assert books.ledger.lookup_transfers([bad, 2]) == books.ledger.lookup_transfers([2])
    assert books.ledger.pending_status(bad) == PendingStatus.NONE
    assert books.ledger.get_account_history(bad, 10) == []
    assert len(books.ledger.get_account_history(5, 10)) == 2


@pytest.mark.parametrize("bad", [2.5, "2", None])
def test_history_limit_that_is_not_an_int_is_refused(ledger_cls, bad):
    books = funded(ledger_cls)
    books.open(5, flags=AF.HISTORY)
    books.ok(books.transfer(id=1, debit_account_id=5), books.transfer(id=2, debit_account_id=5))
    with pytest.raises(TypeError):
        books.ledger.get_account_history(5, bad)

# ------------------------------------------------------------------------ bad calls

@pytest.mark.parametrize("batch", [b"\x00" * 71, b"\x00" * (RECORD_BYTES + 1),
                                   bytes(RECORD_BYTES * (BATCH_EVENTS_MAX + 1))])
def test_malformed_batch_raises_and_changes_nothing(ledger_cls, batch):
    books = funded(ledger_cls)
    before = books.ledger.snapshot()
    with pytest.raises(ValueError):
        books.ledger.create_transfers(batch, books.now_ns)
    with pytest.raises(ValueError):
        books.ledger.create_accounts(batch, books.now_ns)
    assert books.ledger.snapshot() == before


def test_bad_clock_raises_and_changes_nothing(ledger_cls):
    books = funded(ledger_cls)
    books.ok(books.transfer(id=10, flags=TF.PENDING, timeout_ms=1))
    before = books.ledger.snapshot()
    batch = pack_transfers([books.transfer(), books.transfer()])
    for now_ns in (-1, 2**64, U64_MAX):
        with pytest.raises(ValueError):
            books.ledger.create_transfers(batch, now_ns)
    with pytest.raises(ValueError):
        books.ledger.expire_pending(-1)
    assert books.ledger.snapshot() == before
    assert books.ledger.create_transfers(b"", books.now_ns) == []
    assert books.ledger.snapshot() == before


def test_batch_accepts_any_buffer(ledger_cls):
    books = funded(ledger_cls)
    batch = pack_transfers([books.transfer(id=1), books.transfer(id=2)])
    assert books.ledger.create_transfers(memoryview(bytes(batch))[RECORD_BYTES:], 5) == []
    assert [t.id for t in books.ledger.lookup_transfers([1, 2])] == [2]
    misaligned = bytearray(1) + pack_transfers([books.transfer(id=3)])
    assert books.ledger.create_transfers(memoryview(misaligned)[1:], 5) == []
    assert [t.id for t in books.ledger.lookup_transfers([3])] == [3]


def test_expiry_writes_history_rows_for_many_transfers(ledger_cls):
    # Regression: the compiled core grew its history ring before batches but not before
    # expire_pending, and wrote past the end when many expiries followed a batch.
    books = Books(ledger_cls, LedgerConfig(history_retained_max=10_000))
    books.open(1, 2, flags=AF.HISTORY)
    books.ok(*(books.transfer(id=n, flags=TF.PENDING, timeout_ms=1) for n in range(1, 101)))
    assert len(books.ledger.expire_pending(books.ledger.last_timestamp + MS)) == 100
    books.ledger.check_invariants()
    rows = books.ledger.get_account_history(1, 1_000)
    assert len(rows) == 200
    assert rows[-1].debits_pending == 0
    assert rows[99].debits_pending == 100
