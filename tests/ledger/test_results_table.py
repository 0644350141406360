"""Table tests: every CreateAccountResult and CreateTransferResult member, in declaration
order, produced by an input built for exactly it, on both twins. A failure must change
nothing but the clock (and, for results that poison ids, remember the id as failed)."""

from __future__ import annotations

import pytest

from ledger.config import LedgerConfig
from ledger.limits import U64_MAX
from ledger.types import (
    ACCOUNT_STRUCT,
    TRANSFER_RESULTS_POISONING_ID,
    Account,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    PendingStatus,
    TransferFlags,
)
from ledger_helpers import Books, state_without_clock

AR = CreateAccountResult
TR = CreateTransferResult
AF = AccountFlags
TF = TransferFlags

PLAIN_A, PLAIN_B, PLAIN_C = 1, 2, 3
DEBIT_LIMITED = 10  # DEBITS_MUST_NOT_EXCEED_CREDITS, no credits
CREDIT_LIMITED = 11  # CREDITS_MUST_NOT_EXCEED_DEBITS, no debits
OTHER_LEDGER = 20
CLOSED = 30


def standard_books(ledger_cls, config=None) -> Books:
    books = Books(ledger_cls, config)
    books.open(PLAIN_A, PLAIN_B, PLAIN_C)
    books.open(DEBIT_LIMITED, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    books.open(CREDIT_LIMITED, flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    books.open(OTHER_LEDGER, ledger_id=2)
    books.open(CLOSED, flags=AF.CLOSED)
    return books


# Each case: (config or None, setup(books), final batch builder(books)) -> the final batch
# must fail with exactly the listed failures. The member under test is the last entry.

def _t(books, **fields):
    return books.transfer(**fields)


def _setup_pending(books, id_=500, amount=10, **fields):
    books.ok(books.transfer(id=id_, amount_minor=amount, flags=TF.PENDING, **fields))


TRANSFER_CASES = {
    TR.OK: (None, None, lambda b: [_t(b)], []),
    TR.LINKED_EVENT_FAILED: (
        None, None,
        lambda b: [_t(b, flags=TF.LINKED), _t(b, amount_minor=0)],
        [(0, TR.LINKED_EVENT_FAILED), (1, TR.AMOUNT_MUST_NOT_BE_ZERO)],
    ),
    TR.LINKED_EVENT_CHAIN_OPEN: (
        None, None,
        lambda b: [_t(b, flags=TF.LINKED), _t(b, flags=TF.LINKED)],
        [(0, TR.LINKED_EVENT_FAILED), (1, TR.LINKED_EVENT_CHAIN_OPEN)],
    ),
    TR.TIMESTAMP_MUST_BE_ZERO: (None, None, lambda b: [_t(b, timestamp=5)], None),
    TR.RESERVED_FLAG: (None, None, lambda b: [_t(b, flags=1 << 8)], None),
    TR.ID_MUST_NOT_BE_ZERO: (None, None, lambda b: [_t(b, id=0)], None),
    TR.ID_MUST_NOT_BE_INT_MAX: (None, None, lambda b: [_t(b, id=U64_MAX)], None),
    TR.EXISTS_WITH_DIFFERENT_FLAGS: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, flags=TF.PENDING)], None),
    TR.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, debit_account_id=3)],
        None),
    TR.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, credit_account_id=3)],
        None),
    TR.EXISTS_WITH_DIFFERENT_AMOUNT: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, amount_minor=2)], None),
    TR.EXISTS_WITH_DIFFERENT_PENDING_ID: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, pending_id=7)], None),
    TR.EXISTS_WITH_DIFFERENT_USER_DATA_64: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, user_data_64=7)], None),
    TR.EXISTS_WITH_DIFFERENT_USER_DATA_32: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, user_data_32=7)], None),
    TR.EXISTS_WITH_DIFFERENT_TIMEOUT: (
        None, lambda b: _setup_pending(b, id_=100, timeout_ms=10),
        lambda b: [_t(b, id=100, amount_minor=10, flags=TF.PENDING, timeout_ms=20)], None),
    TR.EXISTS_WITH_DIFFERENT_LEDGER: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, ledger=2)], None),
    TR.EXISTS_WITH_DIFFERENT_CODE: (
        None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100, code=2)], None),
    TR.EXISTS: (None, lambda b: b.ok(_t(b, id=100)), lambda b: [_t(b, id=100)], None),
    TR.ID_ALREADY_FAILED: (
        None,
        lambda b: b.transfers(_t(b, id=100, debit_account_id=999)),
        lambda b: [_t(b, id=100)], None),
    TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE: (
        None, None, lambda b: [_t(b, flags=TF.PENDING | TF.POST_PENDING_TRANSFER)], None),
    TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER: (
        None, None, lambda b: [_t(b, timeout_ms=5)], None),
    TR.PENDING_ID_MUST_NOT_BE_ZERO: (
        None, None, lambda b: [_t(b, flags=TF.POST_PENDING_TRANSFER)], None),
    TR.PENDING_ID_MUST_NOT_BE_INT_MAX: (
        None, None, lambda b: [_t(b, pending_id=U64_MAX, flags=TF.POST_PENDING_TRANSFER)],
        None),
    TR.PENDING_ID_MUST_BE_DIFFERENT: (
        None, None,
        lambda b: [_t(b, id=77, pending_id=77, flags=TF.POST_PENDING_TRANSFER)], None),
    TR.PENDING_TRANSFER_NOT_FOUND: (
        None, None, lambda b: [_t(b, pending_id=12345, flags=TF.POST_PENDING_TRANSFER)],
        None),
    TR.PENDING_TRANSFER_NOT_PENDING: (
        None, lambda b: b.ok(_t(b, id=500)),
        lambda b: [_t(b, pending_id=500, flags=TF.POST_PENDING_TRANSFER)], None),
    TR.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID: (
        None, _setup_pending,
        lambda b: [_t(b, pending_id=500, debit_account_id=3, flags=TF.POST_PENDING_TRANSFER)],
        None),
    TR.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID: (
        None, _setup_pending,
        lambda b: [_t(b, pending_id=500, credit_account_id=3,
                      flags=TF.POST_PENDING_TRANSFER)], None),
    TR.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER: (
        None, _setup_pending,
        lambda b: [_t(b, pending_id=500, ledger=2, flags=TF.POST_PENDING_TRANSFER)], None),
    TR.PENDING_TRANSFER_HAS_DIFFERENT_CODE: (
        None, _setup_pending,
        lambda b: [_t(b, pending_id=500, code=2, flags=TF.POST_PENDING_TRANSFER)], None),
    TR.EXCEEDS_PENDING_TRANSFER_AMOUNT: (
        None, _setup_pending,
        lambda b: [_t(b, pending_id=500, amount_minor=11, flags=TF.POST_PENDING_TRANSFER)],
        None),
    TR.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT: (
        None, _setup_pending,
        lambda b: [_t(b, pending_id=500, amount_minor=5, flags=TF.VOID_PENDING_TRANSFER)],
        None),
    TR.PENDING_TRANSFER_ALREADY_POSTED: (
        None,
        lambda b: (_setup_pending(b),
                   b.ok(_t(b, pending_id=500, amount_minor=0, flags=TF.POST_PENDING_TRANSFER))),
        lambda b: [_t(b, pending_id=500, amount_minor=0, flags=TF.POST_PENDING_TRANSFER)],
        None),
    TR.PENDING_TRANSFER_ALREADY_VOIDED: (
        None,
        lambda b: (_setup_pending(b),
                   b.ok(_t(b, pending_id=500, amount_minor=0, flags=TF.VOID_PENDING_TRANSFER))),
        lambda b: [_t(b, pending_id=500, amount_minor=0, flags=TF.POST_PENDING_TRANSFER)],
        None),
    TR.PENDING_TRANSFER_EXPIRED: (
        None, lambda b: _setup_pending(b, timeout_ms=1),
        lambda b: (setattr(b, "now_ns", b.now_ns + 2_000_000),
                   [_t(b, pending_id=500, amount_minor=0,
                       flags=TF.POST_PENDING_TRANSFER)])[1],
        None),
    TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO: (
        None, None, lambda b: [_t(b, debit_account_id=0)], None),
    TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX: (
        None, None, lambda b: [_t(b, debit_account_id=U64_MAX)], None),
    TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO: (
        None, None, lambda b: [_t(b, credit_account_id=0)], None),
    TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX: (
        None, None, lambda b: [_t(b, credit_account_id=U64_MAX)], None),
    TR.ACCOUNTS_MUST_BE_DIFFERENT: (None, None, lambda b: [_t(b, credit_account_id=1)], None),
    TR.PENDING_ID_MUST_BE_ZERO: (None, None, lambda b: [_t(b, pending_id=5)], None),
    TR.AMOUNT_MUST_NOT_BE_ZERO: (None, None, lambda b: [_t(b, amount_minor=0)], None),
    TR.LEDGER_MUST_NOT_BE_ZERO: (None, None, lambda b: [_t(b, ledger=0)], None),
    TR.CODE_MUST_NOT_BE_ZERO: (None, None, lambda b: [_t(b, code=0)], None),
    TR.CLOSING_TRANSFER_MUST_BE_PENDING: (
        None, None, lambda b: [_t(b, flags=TF.CLOSING_DEBIT)], None),
    TR.DEBIT_ACCOUNT_NOT_FOUND: (None, None, lambda b: [_t(b, debit_account_id=999)], None),
    TR.CREDIT_ACCOUNT_NOT_FOUND: (None, None, lambda b: [_t(b, credit_account_id=999)], None),
    TR.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER: (
        None, None, lambda b: [_t(b, credit_account_id=OTHER_LEDGER)], None),
    TR.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS: (
        None, None, lambda b: [_t(b, ledger=2)], None),
    TR.DEBIT_ACCOUNT_ALREADY_CLOSED: (
        None, None, lambda b: [_t(b, debit_account_id=CLOSED)], None),
    TR.CREDIT_ACCOUNT_ALREADY_CLOSED: (
        None, None, lambda b: [_t(b, credit_account_id=CLOSED)], None),
    TR.OVERFLOWS_TIMEOUT: (
        None, None,
        lambda b: (setattr(b, "now_ns", U64_MAX - 10),
                   [_t(b, flags=TF.PENDING, timeout_ms=1)])[1],
        None),
    TR.OVERFLOWS_DEBITS_PENDING: (
        None, lambda b: _setup_pending(b, amount=U64_MAX),
        lambda b: [_t(b, credit_account_id=3, flags=TF.PENDING)], None),
    TR.OVERFLOWS_CREDITS_PENDING: (
        None, lambda b: _setup_pending(b, amount=U64_MAX),
        lambda b: [_t(b, debit_account_id=3, flags=TF.PENDING)], None),
    TR.OVERFLOWS_DEBITS_POSTED: (
        None, lambda b: b.ok(_t(b, amount_minor=U64_MAX)),
        lambda b: [_t(b, credit_account_id=3)], None),
    TR.OVERFLOWS_CREDITS_POSTED: (
        None, lambda b: b.ok(_t(b, amount_minor=U64_MAX)),
        lambda b: [_t(b, debit_account_id=3)], None),
    TR.OVERFLOWS_DEBITS: (
        None, lambda b: _setup_pending(b, amount=2**63),
        lambda b: [_t(b, credit_account_id=3, amount_minor=2**63)], None),
    TR.OVERFLOWS_CREDITS: (
        None, lambda b: _setup_pending(b, amount=2**63),
        lambda b: [_t(b, debit_account_id=3, amount_minor=2**63)], None),
    TR.EXCEEDS_CREDITS: (None, None, lambda b: [_t(b, debit_account_id=DEBIT_LIMITED)], None),
    TR.EXCEEDS_DEBITS: (None, None, lambda b: [_t(b, credit_account_id=CREDIT_LIMITED)], None),
    TR.PENDING_TRANSFERS_FULL: (
        LedgerConfig(pending_max=1), lambda b: _setup_pending(b),
        lambda b: [_t(b, flags=TF.PENDING)], None),
}


def test_transfer_table_covers_every_member_in_order():
    assert list(TRANSFER_CASES) == list(TR)


@pytest.mark.parametrize("member", list(TR), ids=lambda m: m.name)
def test_create_transfer_result(ledger_cls, member):
    config, setup, build, expected = TRANSFER_CASES[member]
    books = standard_books(ledger_cls, config)
    if setup is not None:
        setup(books)
    batch = build(books)
    if expected is None:
        expected = [(len(batch) - 1, member)]
    before = state_without_clock(books.ledger)
    totals_before = books.ledger.totals()
    last_before = books.ledger.last_timestamp
    failures = books.transfers(*batch)
    assert failures == expected
    assert all(type(result) is TR for _, result in failures)
    # Every event consumed its timestamp, failed or not.
    assert books.ledger.last_timestamp == max(books.now_ns, last_before + 1) + len(batch) - 1
    if member == TR.OK:
        assert books.ledger.totals() != totals_before
        assert books.ledger.lookup_transfers([batch[0].id])[0].amount_minor == 1
    elif member in TRANSFER_RESULTS_POISONING_ID:
        assert books.ledger.totals() == totals_before
        failed_id = batch[-1].id
        assert books.ledger.lookup_transfers([failed_id]) == []
        # The id stays failed, even with a body that would now succeed.
        assert books.transfers(_t(books, id=failed_id)) == [(0, TR.ID_ALREADY_FAILED)]
    else:
        assert state_without_clock(books.ledger) == before
    books.ledger.check_invariants()


def _account_record(**fields) -> bytes:
    """A packed account with every field settable, including the reserved u32."""
    values = dict(id=7, debits_pending=0, debits_posted=0, credits_pending=0,
                  credits_posted=0, user_data_64=0, timestamp=0, user_data_32=0, ledger=1,
                  reserved=0, code=1, flags=0)
    values.update(fields)
    return ACCOUNT_STRUCT.pack(*values.values())


ACCOUNT_CASES = {
    AR.OK: (None, [_account_record()], []),
    AR.LINKED_EVENT_FAILED: (
        None, [_account_record(flags=AF.LINKED), _account_record(id=8, ledger=0)],
        [(0, AR.LINKED_EVENT_FAILED), (1, AR.LEDGER_MUST_NOT_BE_ZERO)]),
    AR.LINKED_EVENT_CHAIN_OPEN: (
        None, [_account_record(flags=AF.LINKED), _account_record(id=8, flags=AF.LINKED)],
        [(0, AR.LINKED_EVENT_FAILED), (1, AR.LINKED_EVENT_CHAIN_OPEN)]),
    AR.TIMESTAMP_MUST_BE_ZERO: (None, [_account_record(timestamp=1)], None),
    AR.RESERVED_FIELD: (None, [_account_record(reserved=1)], None),
    AR.RESERVED_FLAG: (None, [_account_record(flags=1 << 5)], None),
    AR.ID_MUST_NOT_BE_ZERO: (None, [_account_record(id=0)], None),
    AR.ID_MUST_NOT_BE_INT_MAX: (None, [_account_record(id=U64_MAX)], None),
    AR.EXISTS_WITH_DIFFERENT_FLAGS: (None, [_account_record(id=1, flags=AF.HISTORY)], None),
    AR.EXISTS_WITH_DIFFERENT_USER_DATA_64: (None, [_account_record(id=1, user_data_64=1)],
                                            None),
    AR.EXISTS_WITH_DIFFERENT_USER_DATA_32: (None, [_account_record(id=1, user_data_32=1)],
                                            None),
    AR.EXISTS_WITH_DIFFERENT_LEDGER: (None, [_account_record(id=1, ledger=2)], None),
    AR.EXISTS_WITH_DIFFERENT_CODE: (None, [_account_record(id=1, code=2)], None),
    AR.EXISTS: (None, [_account_record(id=1)], None),
    AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE: (
        None, [_account_record(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS
                               | AF.CREDITS_MUST_NOT_EXCEED_DEBITS)], None),
    AR.DEBITS_PENDING_MUST_BE_ZERO: (None, [_account_record(debits_pending=1)], None),
    AR.DEBITS_POSTED_MUST_BE_ZERO: (None, [_account_record(debits_posted=1)], None),
    AR.CREDITS_PENDING_MUST_BE_ZERO: (None, [_account_record(credits_pending=1)], None),
    AR.CREDITS_POSTED_MUST_BE_ZERO: (None, [_account_record(credits_posted=1)], None),
    AR.LEDGER_MUST_NOT_BE_ZERO: (None, [_account_record(ledger=0)], None),
    AR.CODE_MUST_NOT_BE_ZERO: (None, [_account_record(code=0)], None),
    AR.ACCOUNTS_FULL: (LedgerConfig(accounts_max=1), [_account_record()], None),
}


def test_account_table_covers_every_member_in_order():
    assert list(ACCOUNT_CASES) == list(AR)


@pytest.mark.parametrize("member", list(AR), ids=lambda m: m.name)
def test_create_account_result(ledger_cls, member):
    config, records, expected = ACCOUNT_CASES[member]
    books = Books(ledger_cls, config)
    books.open(1)  # an existing account for the EXISTS* rows
    if expected is None:
        expected = [(len(records) - 1, member)]
    before = state_without_clock(books.ledger)
    failures = books.ledger.create_accounts(b"".join(records), books.now_ns)
    assert failures == expected
    assert all(type(result) is AR for _, result in failures)
    if member == AR.OK:
        assert [a.id for a in books.ledger.lookup_accounts([7])] == [7]
        assert books.ledger.account_count == 2
    else:
        assert state_without_clock(books.ledger) == before
        assert books.ledger.account_count == 1


def test_exists_ignores_closed_set_by_a_closing_transfer(ledger_cls):
    books = standard_books(ledger_cls)
    books.ok(books.transfer(id=1, amount_minor=1, flags=TF.PENDING | TF.CLOSING_DEBIT))
    assert books.account(PLAIN_A).flags & AF.CLOSED
    assert books.accounts(Account(id=PLAIN_A, ledger=1, code=1)) == [(0, AR.EXISTS)]


def test_post_void_status_round_trip(ledger_cls):
    books = standard_books(ledger_cls)
    _setup_pending(books, id_=500)
    assert books.ledger.pending_status(500) == PendingStatus.PENDING
    assert books.ledger.pending_status(404) == PendingStatus.NONE
