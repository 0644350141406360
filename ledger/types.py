"""The ledger's vocabulary: records, flags, result codes and the packed batch layout.

Both implementations (`ledger/_core.pyx` and `ledger/reference.py`) speak exactly this. The
numbers here are a wire and journal format: never renumber a result code or a flag, never
reorder a packed field. New result codes go at the end of their enum.

Amounts are unsigned 64-bit integers of minor units; ids are unsigned 64-bit integers where
0 and 2**64-1 are reserved. A transfer or account travels through the hot path as a packed
72-byte little-endian record (`TRANSFER_STRUCT`, `ACCOUNT_STRUCT`, declared with every other
byte layout in `ledger/formats.py` and re-exported here), never as a Python object; the
functions at the end convert between those records and the Structs above them.

The compiled core takes its C constants from the enums here: `ledger/gen_constants.py`
renders them into `ledger/_constants.pxi` at build time, so they are declared only here.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import Iterable

import msgspec

from ledger.formats import (  # re-exported: the batch layout is part of the vocabulary
    ACCOUNT_STRUCT,
    HISTORY_STRUCT,
    RECORD_BYTES,
    TRANSFER_STRUCT,
)
from ledger.limits import BATCH_EVENTS_MAX, U64_MAX

# A pending transfer's deadline is its timestamp + timeout_ms * NS_PER_MS.
NS_PER_MS = 1_000_000


class AccountFlags(IntFlag):
    NONE = 0
    LINKED = 1 << 0
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1
    CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2
    HISTORY = 1 << 3
    CLOSED = 1 << 4


ACCOUNT_FLAGS_KNOWN = int(
    AccountFlags.LINKED
    | AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    | AccountFlags.HISTORY
    | AccountFlags.CLOSED
)


class TransferFlags(IntFlag):
    NONE = 0
    LINKED = 1 << 0
    PENDING = 1 << 1
    POST_PENDING_TRANSFER = 1 << 2
    VOID_PENDING_TRANSFER = 1 << 3
    BALANCING_DEBIT = 1 << 4
    BALANCING_CREDIT = 1 << 5
    CLOSING_DEBIT = 1 << 6
    CLOSING_CREDIT = 1 << 7


TRANSFER_FLAGS_KNOWN = (1 << 8) - 1


class CreateAccountResult(IntEnum):
    """Outcome of one event of `create_accounts`, declared in the order the checks run."""

    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    TIMESTAMP_MUST_BE_ZERO = 3
    RESERVED_FIELD = 4
    RESERVED_FLAG = 5
    ID_MUST_NOT_BE_ZERO = 6
    ID_MUST_NOT_BE_INT_MAX = 7
    EXISTS_WITH_DIFFERENT_FLAGS = 8
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = 9
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = 10
    EXISTS_WITH_DIFFERENT_LEDGER = 11
    EXISTS_WITH_DIFFERENT_CODE = 12
    EXISTS = 13
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 14
    DEBITS_PENDING_MUST_BE_ZERO = 15
    DEBITS_POSTED_MUST_BE_ZERO = 16
    CREDITS_PENDING_MUST_BE_ZERO = 17
    CREDITS_POSTED_MUST_BE_ZERO = 18
    LEDGER_MUST_NOT_BE_ZERO = 19
    CODE_MUST_NOT_BE_ZERO = 20
    ACCOUNTS_FULL = 21


class CreateTransferResult(IntEnum):
    """Outcome of one event of `create_transfers`, declared in the order the checks run.

    After the id and flag checks the table splits in two paths: a post/void of a pending
    transfer runs the `PENDING_*` checks; every other transfer runs the account checks. Both
    then run the balance checks. `EXISTS*` compare against the transfer already
    recorded under the same id; `ID_ALREADY_FAILED` answers an id whose earlier attempt
    failed for a reason that depended on ledger state (so a retry cannot succeed by luck).
    """

    OK = 0
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    TIMESTAMP_MUST_BE_ZERO = 3
    RESERVED_FLAG = 4
    ID_MUST_NOT_BE_ZERO = 5
    ID_MUST_NOT_BE_INT_MAX = 6
    EXISTS_WITH_DIFFERENT_FLAGS = 7
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = 8
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = 9
    EXISTS_WITH_DIFFERENT_AMOUNT = 10
    EXISTS_WITH_DIFFERENT_PENDING_ID = 11
    EXISTS_WITH_DIFFERENT_USER_DATA_64 = 12
    EXISTS_WITH_DIFFERENT_USER_DATA_32 = 13
    EXISTS_WITH_DIFFERENT_TIMEOUT = 14
    EXISTS_WITH_DIFFERENT_LEDGER = 15
    EXISTS_WITH_DIFFERENT_CODE = 16
    EXISTS = 17
    ID_ALREADY_FAILED = 18
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 19
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 20
    # post / void path: a transfer with POST_PENDING_TRANSFER or VOID_PENDING_TRANSFER
    PENDING_ID_MUST_NOT_BE_ZERO = 21
    PENDING_ID_MUST_NOT_BE_INT_MAX = 22
    PENDING_ID_MUST_BE_DIFFERENT = 23
    PENDING_TRANSFER_NOT_FOUND = 24
    PENDING_TRANSFER_NOT_PENDING = 25
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 26
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 27
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 28
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = 29
    EXCEEDS_PENDING_TRANSFER_AMOUNT = 30
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 31
    PENDING_TRANSFER_ALREADY_POSTED = 32
    PENDING_TRANSFER_ALREADY_VOIDED = 33
    PENDING_TRANSFER_EXPIRED = 34
    # single-phase and pending path: every other transfer
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 35
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 36
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 37
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 38
    ACCOUNTS_MUST_BE_DIFFERENT = 39
    PENDING_ID_MUST_BE_ZERO = 40
    AMOUNT_MUST_NOT_BE_ZERO = 41
    LEDGER_MUST_NOT_BE_ZERO = 42
    CODE_MUST_NOT_BE_ZERO = 43
    CLOSING_TRANSFER_MUST_BE_PENDING = 44
    DEBIT_ACCOUNT_NOT_FOUND = 45
    CREDIT_ACCOUNT_NOT_FOUND = 46
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 47
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 48
    DEBIT_ACCOUNT_ALREADY_CLOSED = 49
    CREDIT_ACCOUNT_ALREADY_CLOSED = 50
    OVERFLOWS_TIMEOUT = 51
    # balance checks, both paths
    OVERFLOWS_DEBITS_PENDING = 52
    OVERFLOWS_CREDITS_PENDING = 53
    OVERFLOWS_DEBITS_POSTED = 54
    OVERFLOWS_CREDITS_POSTED = 55
    OVERFLOWS_DEBITS = 56
    OVERFLOWS_CREDITS = 57
    EXCEEDS_CREDITS = 58
    EXCEEDS_DEBITS = 59
    PENDING_TRANSFERS_FULL = 60


# Results that depend on ledger state: an id that failed with one of them answers
# ID_ALREADY_FAILED ever after (while retained), so a retry cannot succeed by luck.
# Input-validation failures (and EXISTS*, LINKED_*) do not poison the id.
TRANSFER_RESULTS_POISONING_ID = frozenset({
    CreateTransferResult.PENDING_TRANSFER_NOT_FOUND,
    CreateTransferResult.PENDING_TRANSFER_NOT_PENDING,
    CreateTransferResult.EXCEEDS_PENDING_TRANSFER_AMOUNT,
    CreateTransferResult.PENDING_TRANSFER_ALREADY_POSTED,
    CreateTransferResult.PENDING_TRANSFER_ALREADY_VOIDED,
    CreateTransferResult.PENDING_TRANSFER_EXPIRED,
    CreateTransferResult.DEBIT_ACCOUNT_NOT_FOUND,
    CreateTransferResult.CREDIT_ACCOUNT_NOT_FOUND,
    CreateTransferResult.DEBIT_ACCOUNT_ALREADY_CLOSED,
    CreateTransferResult.CREDIT_ACCOUNT_ALREADY_CLOSED,
    CreateTransferResult.OVERFLOWS_TIMEOUT,
    CreateTransferResult.OVERFLOWS_DEBITS_PENDING,
    CreateTransferResult.OVERFLOWS_CREDITS_PENDING,
    CreateTransferResult.OVERFLOWS_DEBITS_POSTED,
    CreateTransferResult.OVERFLOWS_CREDITS_POSTED,
    CreateTransferResult.OVERFLOWS_DEBITS,
    CreateTransferResult.OVERFLOWS_CREDITS,
    CreateTransferResult.EXCEEDS_CREDITS,
    CreateTransferResult.EXCEEDS_DEBITS,
    CreateTransferResult.PENDING_TRANSFERS_FULL,
})


class PendingStatus(IntEnum):
    """Where a two-phase transfer stands. `NONE` for a single-phase transfer or an unknown id."""

    NONE = 0
    PENDING = 1
    POSTED = 2
    VOIDED = 3
    EXPIRED = 4


class RetainedKind(IntEnum):
    """What one slot of the retained ring holds (a snapshot field, `RETAINED_STRUCT`)."""

    TRANSFER = 0  # a recorded transfer
    FAILED = 1  # an id whose attempt failed with a result in TRANSFER_RESULTS_POISONING_ID


class Account(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    ledger: int
    code: int
    flags: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    timestamp: int = 0


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount_minor: int = 0
    pending_id: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    timeout_ms: int = 0
    ledger: int = 0
    code: int = 0
    flags: int = 0
    timestamp: int = 0


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """An account's balances right after one transfer touched it (accounts with HISTORY)."""

    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


def pack_transfer_into(buffer: bytearray, offset: int, t: Transfer) -> None:
    TRANSFER_STRUCT.pack_into(
        buffer, offset,
        t.id, t.debit_account_id, t.credit_account_id, t.amount_minor, t.pending_id,
        t.user_data_64, t.timestamp, t.user_data_32, t.timeout_ms, t.ledger, t.code, t.flags,
    )


def unpack_transfer(buffer, offset: int = 0) -> Transfer:
    (id_, debit, credit, amount, pending_id, ud64, timestamp, ud32, timeout_ms, ledger, code,
     flags) = TRANSFER_STRUCT.unpack_from(buffer, offset)
    return Transfer(
        id=id_, debit_account_id=debit, credit_account_id=credit, amount_minor=amount,
        pending_id=pending_id, user_data_64=ud64, user_data_32=ud32, timeout_ms=timeout_ms,
        ledger=ledger, code=code, flags=flags, timestamp=timestamp,
    )


def pack_account_into(buffer: bytearray, offset: int, a: Account) -> None:
    ACCOUNT_STRUCT.pack_into(
        buffer, offset,
        a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
        a.user_data_64, a.timestamp, a.user_data_32, a.ledger, 0, a.code, a.flags,
    )


def unpack_account(buffer, offset: int = 0) -> Account:
    (id_, debits_pending, debits_posted, credits_pending, credits_posted, ud64, timestamp,
     ud32, ledger, _reserved, code, flags) = ACCOUNT_STRUCT.unpack_from(buffer, offset)
    return Account(
        id=id_, ledger=ledger, code=code, flags=flags, user_data_64=ud64, user_data_32=ud32,
        debits_pending=debits_pending, debits_posted=debits_posted,
        credits_pending=credits_pending, credits_posted=credits_posted, timestamp=timestamp,
    )


def unpack_balance(buffer, offset: int = 0) -> AccountBalance:
    """One HISTORY_STRUCT row, without its account id."""
    (_account_id, timestamp, debits_pending, debits_posted, credits_pending,
     credits_posted) = HISTORY_STRUCT.unpack_from(buffer, offset)
    return AccountBalance(
        timestamp=timestamp, debits_pending=debits_pending, debits_posted=debits_posted,
        credits_pending=credits_pending, credits_posted=credits_posted,
    )


def pack_transfers(transfers: Iterable[Transfer]) -> bytearray:
    """Pack transfers into one batch buffer for `create_transfers`."""
    items = list(transfers)
    assert len(items) <= BATCH_EVENTS_MAX, "batch too large"
    buffer = bytearray(RECORD_BYTES * len(items))
    for index, transfer in enumerate(items):
        pack_transfer_into(buffer, index * RECORD_BYTES, transfer)
    return buffer


def pack_accounts(accounts: Iterable[Account]) -> bytearray:
    """Pack accounts into one batch buffer for `create_accounts`."""
    items = list(accounts)
    assert len(items) <= BATCH_EVENTS_MAX, "batch too large"
    buffer = bytearray(RECORD_BYTES * len(items))
    for index, account in enumerate(items):
        pack_account_into(buffer, index * RECORD_BYTES, account)
    return buffer


assert U64_MAX == 2**64 - 1
