"""Pure-Python twin of the ledger core: the ledger's specification written as code.

Its kernel implements `ledger.api.LedgerApi` check by check in `CreateAccountResult` /
`CreateTransferResult` order and is the answer wherever `api.py` is silent; the Cython core
(`ledger/_core.pyx`) must match it result for result, byte for byte in `snapshot()`. Lookups,
history, snapshots and the invariant checks are `ledger/common.py`'s, shared with the
compiled twin, over the kernel API this class implements at the end. It is written to be
read, not to be fast. It must never do I/O, read the clock, or raise for a business outcome
(only ValueError/TypeError for a malformed call, AssertionError for a bug).

State (all bounded by `LedgerConfig`):
- accounts: a dict id -> `_Account` plus creation order (accounts are never evicted);
- the retained ring: the most recent `transfers_retained_max` transfer records and failed
  ids (`_Retained`), oldest evicted first, indexed by id;
- the pending pool: open pending transfers by id (an open pending transfer stays here even
  after the ring evicts its record, so its id can still be posted, voided and deduplicated),
  with a min-heap on (deadline, timestamp) for `expire_pending`;
- the history ring: `history_retained_max` balance rows of accounts created with HISTORY;
- an undo log, only while a linked chain is open, to roll the chain back.

Its snapshot is the format of `ledger/formats.py`, byte for byte what the compiled twin writes
for the same state.
"""

from __future__ import annotations

import heapq
import struct

from ledger.common import LedgerCommon
from ledger.config import LedgerConfig
from ledger.formats import (
    ACCOUNT_STRUCT,
    HISTORY_STRUCT,
    RECORD_BYTES,
    RETAINED_STRUCT,
    TRANSFER_STRUCT,
)
from ledger.limits import BATCH_EVENTS_MAX, U64_MAX
from ledger.types import (
    ACCOUNT_FLAGS_KNOWN,
    NS_PER_MS,
    TRANSFER_FLAGS_KNOWN,
    TRANSFER_RESULTS_POISONING_ID,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    PendingStatus,
    RetainedKind,
    TransferFlags,
)

_A = AccountFlags
_T = TransferFlags
_AR = CreateAccountResult
_TR = CreateTransferResult

_PHASE_FLAGS = int(_T.PENDING | _T.POST_PENDING_TRANSFER | _T.VOID_PENDING_TRANSFER)
_POST_OR_VOID = int(_T.POST_PENDING_TRANSFER | _T.VOID_PENDING_TRANSFER)
_BALANCING = int(_T.BALANCING_DEBIT | _T.BALANCING_CREDIT)
_CLOSING = int(_T.CLOSING_DEBIT | _T.CLOSING_CREDIT)
_LIMIT_FLAGS = int(_A.DEBITS_MUST_NOT_EXCEED_CREDITS | _A.CREDITS_MUST_NOT_EXCEED_DEBITS)


_POISONING = frozenset(int(result) for result in TRANSFER_RESULTS_POISONING_ID)


class _Account:
    """An account's mutable state. Field names follow `ledger.types.Account`."""

    __slots__ = (
        "id", "debits_pending", "debits_posted", "credits_pending", "credits_posted",
        "user_data_64", "timestamp", "user_data_32", "ledger", "code", "flags",
    )

    def __init__(self, id_, debits_pending, debits_posted, credits_pending, credits_posted,
                 user_data_64, timestamp, user_data_32, ledger, code, flags):
        self.id = id_
        self.debits_pending = debits_pending
        self.debits_posted = debits_posted
        self.credits_pending = credits_pending
        self.credits_posted = credits_posted
        self.user_data_64 = user_data_64
        self.timestamp = timestamp
        self.user_data_32 = user_data_32
        self.ledger = ledger
        self.code = code
        self.flags = flags

    def pack(self) -> bytes:
        return ACCOUNT_STRUCT.pack(
            self.id, self.debits_pending, self.debits_posted, self.credits_pending,
            self.credits_posted, self.user_data_64, self.timestamp, self.user_data_32,
            self.ledger, 0, self.code, self.flags,
        )


class _Retained:
    """One entry of the retained ring: a recorded transfer, or an id whose attempt failed.

    `amount_bound_minor` keeps what idempotency needs beyond the record: for a balancing
    transfer the input's upper bound (the record carries the reduced amount); for a
    post/void the pending amount that an input amount of 0 resolves to; else the amount.
    """

    __slots__ = (
        "id", "debit_account_id", "credit_account_id", "amount_minor", "pending_id",
        "user_data_64", "timestamp", "user_data_32", "timeout_ms", "ledger", "code", "flags",
        "amount_bound_minor", "kind", "status", "failed_result",
    )

    def __init__(self, id_, debit_account_id=0, credit_account_id=0, amount_minor=0,
                 pending_id=0, user_data_64=0, timestamp=0, user_data_32=0, timeout_ms=0,
                 ledger=0, code=0, flags=0, amount_bound_minor=0, kind=RetainedKind.TRANSFER,
                 status=PendingStatus.NONE, failed_result=0):
        self.id = id_
        self.debit_account_id = debit_account_id
        self.credit_account_id = credit_account_id
        self.amount_minor = amount_minor
        self.pending_id = pending_id
        self.user_data_64 = user_data_64
        self.timestamp = timestamp
        self.user_data_32 = user_data_32
        self.timeout_ms = timeout_ms
        self.ledger = ledger
        self.code = code
        self.flags = flags
        self.amount_bound_minor = amount_bound_minor
        self.kind = kind
        self.status = status
        self.failed_result = failed_result

    @property
    def deadline_ns(self) -> int:
        """When an open pending transfer expires; only meaningful when timeout_ms > 0."""
        return self.timestamp + self.timeout_ms * NS_PER_MS

    def pack(self) -> bytes:
        return RETAINED_STRUCT.pack(
            self.id, self.debit_account_id, self.credit_account_id, self.amount_minor,
            self.pending_id, self.user_data_64, self.timestamp, self.user_data_32,
            self.timeout_ms, self.ledger, self.code, self.flags, self.amount_bound_minor,
            self.kind, int(self.status), self.failed_result,
        )


def _batch_view(batch) -> memoryview:
    """The batch as bytes, or ValueError for a malformed buffer (a caller bug)."""
    try:
        view = memoryview(batch).cast("B")
    except TypeError as error:  # not C-contiguous, or not a buffer at all
        raise ValueError(f"batch must be a contiguous buffer: {error}") from None
    if len(view) % RECORD_BYTES != 0:
        raise ValueError(f"batch length {len(view)} is not a multiple of {RECORD_BYTES}")
    if len(view) // RECORD_BYTES > BATCH_EVENTS_MAX:
        raise ValueError(
            f"batch of {len(view) // RECORD_BYTES} events exceeds {BATCH_EVENTS_MAX}"
        )
    return view


class Ledger(LedgerCommon):
    """The pure-Python ledger: this kernel and `LedgerCommon`. Contract in `ledger/api.py`."""

    implementation = "pure"

    def __init__(self, config: LedgerConfig | None = None) -> None:
        self.config = config if config is not None else LedgerConfig()
        self._last_timestamp = 0
        self._accounts: dict[int, _Account] = {}
        self._account_order: list[_Account] = []
        capacity = self.config.transfers_retained_max
        self._ring: list[_Retained | None] = [None] * capacity
        self._ring_head = 0  # next slot to write
        self._ring_count = 0
        self._ring_index: dict[int, _Retained] = {}
        self._pending: dict[int, _Retained] = {}
        # (deadline_ns, timestamp, id); entries whose id is no longer pending (or pending
        # under another timestamp) are stale and skipped: cheaper than deleting from a heap.
        self._expiry_heap: list[tuple[int, int, int]] = []
        self._history: list[tuple[int, int, int, int, int, int] | None] = (
            [None] * self.config.history_retained_max
        )
        self._history_head = 0
        self._history_count = 0
        self._undo: list[tuple] | None = None  # open only while a linked chain runs

    # ----------------------------------------------------------------------- properties

    @property
    def last_timestamp(self) -> int:
        return self._last_timestamp

    @property
    def account_count(self) -> int:
        return len(self._account_order)

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    # ------------------------------------------------------------------------ timestamps

    def _timestamps_for(self, now_ns: int, count: int) -> int:
        """Base timestamp for `count` events; ValueError (nothing changed) if out of range."""
        if not isinstance(now_ns, int) or now_ns < 0 or now_ns > U64_MAX:
            raise ValueError(f"now_ns must be an int in [0, 2**64-1], got {now_ns!r}")
        base = max(now_ns, self._last_timestamp + 1)
        if base + count - 1 > U64_MAX:
            raise ValueError("the ledger clock would pass 2**64-1")
        return base

    # -------------------------------------------------------------------------- accounts

    def create_accounts(self, batch, now_ns: int) -> list[tuple[int, CreateAccountResult]]:
        return self._run_batch(batch, now_ns, ACCOUNT_STRUCT, self._create_account, _AR,
                               poisoning=frozenset())

    def _create_account(self, fields, timestamp: int) -> int:
        (id_, debits_pending, debits_posted, credits_pending, credits_posted, user_data_64,
         input_timestamp, user_data_32, ledger, reserved, code, flags) = fields
        if input_timestamp != 0:
            return _AR.TIMESTAMP_MUST_BE_ZERO
        if reserved != 0:
            return _AR.RESERVED_FIELD
        if flags & ~ACCOUNT_FLAGS_KNOWN:
            return _AR.RESERVED_FLAG
        if id_ == 0:
            return _AR.ID_MUST_NOT_BE_ZERO
        if id_ == U64_MAX:
            return _AR.ID_MUST_NOT_BE_INT_MAX
        existing = self._accounts.get(id_)
        if existing is not None:
            # CLOSED is not compared: closing transfers change it after creation, and a
            # retried creation must still answer EXISTS.
            if (existing.flags ^ flags) & ~_A.CLOSED:
                return _AR.EXISTS_WITH_DIFFERENT_FLAGS
            if existing.user_data_64 != user_data_64:
                return _AR.EXISTS_WITH_DIFFERENT_USER_DATA_64
            if existing.user_data_32 != user_data_32:
                return _AR.EXISTS_WITH_DIFFERENT_USER_DATA_32
            if existing.ledger != ledger:
                return _AR.EXISTS_WITH_DIFFERENT_LEDGER
            if existing.code != code:
                return _AR.EXISTS_WITH_DIFFERENT_CODE
            return _AR.EXISTS
        if flags & _LIMIT_FLAGS == _LIMIT_FLAGS:
            return _AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if debits_pending != 0:
            return _AR.DEBITS_PENDING_MUST_BE_ZERO
        if debits_posted != 0:
            return _AR.DEBITS_POSTED_MUST_BE_ZERO
        if credits_pending != 0:
            return _AR.CREDITS_PENDING_MUST_BE_ZERO
        if credits_posted != 0:
            return _AR.CREDITS_POSTED_MUST_BE_ZERO
        if ledger == 0:
            return _AR.LEDGER_MUST_NOT_BE_ZERO
        if code == 0:
            return _AR.CODE_MUST_NOT_BE_ZERO
        if len(self._account_order) >= self.config.accounts_max:
            return _AR.ACCOUNTS_FULL
        account = _Account(id_, 0, 0, 0, 0, user_data_64, timestamp, user_data_32, ledger,
                           code, flags)
        self._accounts[id_] = account
        self._account_order.append(account)
        if self._undo is not None:
            self._undo.append(("account_created",))
        return _AR.OK

    # ------------------------------------------------------------------------- transfers

    def create_transfers(self, batch, now_ns: int) -> list[tuple[int, CreateTransferResult]]:
        return self._run_batch(batch, now_ns, TRANSFER_STRUCT, self._create_transfer, _TR,
                               poisoning=_POISONING)

    def create_transfer(
        self, id: int, debit_account_id: int, credit_account_id: int, amount_minor: int,
        pending_id: int, user_data_64: int, user_data_32: int, timeout_ms: int, ledger: int,
        code: int, flags: int, now_ns: int,
    ) -> CreateTransferResult:
        """One transfer, exactly as `create_transfers` with a batch of one (see api.py)."""
        try:
            batch = TRANSFER_STRUCT.pack(
                id, debit_account_id, credit_account_id, amount_minor, pending_id,
                user_data_64, 0, user_data_32, timeout_ms, ledger, code, flags,
            )
        except struct.error as error:  # a field out of its unsigned range: a caller bug
            raise ValueError(f"transfer field out of range: {error}") from None
        failures = self.create_transfers(batch, now_ns)
        return failures[0][1] if failures else _TR.OK

    def _run_batch(self, batch, now_ns, record_struct, create_one, results_enum, poisoning):
        """Check the buffer and the clock, give the events their timestamps, run them and
        the after-batch upkeep. Shared by accounts and transfers."""
        view = _batch_view(batch)
        count = len(view) // RECORD_BYTES
        if count == 0:
            return []
        base = self._timestamps_for(now_ns, count)
        self._last_timestamp = base + count - 1
        results = self._run_chains(
            count,
            lambda index: record_struct.unpack_from(view, index * RECORD_BYTES),
            create_one,
            base,
            results_enum,
            poisoning,
        )
        self._after_batch()
        return results

    def _run_chains(self, count, unpack, create_one, base, results_enum, poisoning):
        """Run events in order, grouping LINKED events into chains that succeed or fail as
        one. Shared by accounts and transfers (same rules, TigerBeetle's)."""
        ok = results_enum.OK
        linked_failed = results_enum.LINKED_EVENT_FAILED
        chain_open = results_enum.LINKED_EVENT_CHAIN_OPEN
        results: list = []
        chain_start = -1
        chain_broken = False
        for index in range(count):
            fields = unpack(index)
            linked = fields[11] & 1  # LINKED is bit 0 of flags for both record kinds
            if linked and chain_start < 0:
                chain_start = index
                self._undo = []
            if linked and index == count - 1:
                result = chain_open
            elif chain_broken:
                result = linked_failed
            else:
                result = create_one(fields, base + index)
            if result != ok:
                if chain_start >= 0 and not chain_broken:
                    chain_broken = True
                    self._rollback()
                    results.extend((i, linked_failed) for i in range(chain_start, index))
                if result in poisoning:
                    self._remember_failed(fields[0], result)
                results.append((index, results_enum(result)))
            if chain_start >= 0 and (not linked or result == chain_open):
                chain_start = -1
                chain_broken = False
                self._undo = None
        return results

    def _create_transfer(self, fields, timestamp: int) -> int:
        (id_, debit_id, credit_id, amount, pending_id, user_data_64, input_timestamp,
         user_data_32, timeout_ms, ledger, code, flags) = fields
        if input_timestamp != 0:
            return _TR.TIMESTAMP_MUST_BE_ZERO
        if flags & ~TRANSFER_FLAGS_KNOWN:
            return _TR.RESERVED_FLAG
        if id_ == 0:
            return _TR.ID_MUST_NOT_BE_ZERO
        if id_ == U64_MAX:
            return _TR.ID_MUST_NOT_BE_INT_MAX
        existing = self._ring_index.get(id_) or self._pending.get(id_)
        if existing is not None:
            if existing.kind == RetainedKind.FAILED:
                return _TR.ID_ALREADY_FAILED
            return self._transfer_exists(existing, fields)
        phase = flags & _PHASE_FLAGS
        if phase & (phase - 1):
            return _TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if flags & _POST_OR_VOID and flags & (_BALANCING | _CLOSING):
            return _TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if timeout_ms != 0 and not flags & _T.PENDING:
            return _TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if flags & _POST_OR_VOID:
            return self._post_or_void(fields, timestamp)
        return self._create_single_or_pending(fields, timestamp)

    def _transfer_exists(self, existing: _Retained, fields) -> int:
        (id_, debit_id, credit_id, amount, pending_id, user_data_64, _timestamp,
         user_data_32, timeout_ms, ledger, code, flags) = fields
        post_or_void = bool(flags & _POST_OR_VOID)
        if existing.flags != flags:
            return _TR.EXISTS_WITH_DIFFERENT_FLAGS
        if _field_differs(debit_id, existing.debit_account_id, post_or_void):
            return _TR.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID
        if _field_differs(credit_id, existing.credit_account_id, post_or_void):
            return _TR.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID
        if post_or_void:
            # The record holds the posted amount; a post/void amount of 0 means the
            # pending amount, kept in amount_bound_minor.
            if (amount or existing.amount_bound_minor) != existing.amount_minor:
                return _TR.EXISTS_WITH_DIFFERENT_AMOUNT
        elif amount != existing.amount_bound_minor:
            return _TR.EXISTS_WITH_DIFFERENT_AMOUNT
        if pending_id != existing.pending_id:
            return _TR.EXISTS_WITH_DIFFERENT_PENDING_ID
        if user_data_64 != existing.user_data_64:
            return _TR.EXISTS_WITH_DIFFERENT_USER_DATA_64
        if user_data_32 != existing.user_data_32:
            return _TR.EXISTS_WITH_DIFFERENT_USER_DATA_32
        if timeout_ms != existing.timeout_ms:
            return _TR.EXISTS_WITH_DIFFERENT_TIMEOUT
        if _field_differs(ledger, existing.ledger, post_or_void):
            return _TR.EXISTS_WITH_DIFFERENT_LEDGER
        if _field_differs(code, existing.code, post_or_void):
            return _TR.EXISTS_WITH_DIFFERENT_CODE
        return _TR.EXISTS

    def _post_or_void(self, fields, timestamp: int) -> int:
        (id_, debit_id, credit_id, amount, pending_id, user_data_64, _timestamp,
         user_data_32, _timeout_ms, ledger, code, flags) = fields
        if pending_id == 0:
            return _TR.PENDING_ID_MUST_NOT_BE_ZERO
        if pending_id == U64_MAX:
            return _TR.PENDING_ID_MUST_NOT_BE_INT_MAX
        if pending_id == id_:
            return _TR.PENDING_ID_MUST_BE_DIFFERENT
        pending = self._pending.get(pending_id) or self._ring_index.get(pending_id)
        if pending is None or pending.kind == RetainedKind.FAILED:
            return _TR.PENDING_TRANSFER_NOT_FOUND
        if not pending.flags & _T.PENDING:
            return _TR.PENDING_TRANSFER_NOT_PENDING
        if debit_id != 0 and debit_id != pending.debit_account_id:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if credit_id != 0 and credit_id != pending.credit_account_id:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if ledger != 0 and ledger != pending.ledger:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER
        if code != 0 and code != pending.code:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_CODE
        post = bool(flags & _T.POST_PENDING_TRANSFER)
        if post and amount > pending.amount_minor:
            return _TR.EXCEEDS_PENDING_TRANSFER_AMOUNT
        if not post and amount != 0 and amount != pending.amount_minor:
            return _TR.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        if pending.status == PendingStatus.POSTED:
            return _TR.PENDING_TRANSFER_ALREADY_POSTED
        if pending.status == PendingStatus.VOIDED:
            return _TR.PENDING_TRANSFER_ALREADY_VOIDED
        if pending.status == PendingStatus.EXPIRED:
            return _TR.PENDING_TRANSFER_EXPIRED
        assert pending.status == PendingStatus.PENDING, "open pending transfers are PENDING"
        assert pending.id in self._pending, "an open pending transfer is in the pool"
        if pending.timeout_ms != 0 and pending.deadline_ns <= timestamp:
            return _TR.PENDING_TRANSFER_EXPIRED
        debit = self._accounts[pending.debit_account_id]
        credit = self._accounts[pending.credit_account_id]
        posted_amount = (amount or pending.amount_minor) if post else 0
        # Cannot trigger while debits_pending + debits_posted <= 2**64-1 holds (the posted
        # amount comes out of debits_pending), but the checks cost nothing and keep the
        # balance-check order of the enum on both paths.
        if debit.debits_posted + posted_amount > U64_MAX:
            return _TR.OVERFLOWS_DEBITS_POSTED
        if credit.credits_posted + posted_amount > U64_MAX:
            return _TR.OVERFLOWS_CREDITS_POSTED
        # Apply.
        self._save_account(debit)
        self._save_account(credit)
        debit.debits_pending -= pending.amount_minor
        credit.credits_pending -= pending.amount_minor
        debit.debits_posted += posted_amount
        credit.credits_posted += posted_amount
        if not post:
            self._reopen_closed_by(pending, debit, credit)
        self._set_status(pending, PendingStatus.POSTED if post else PendingStatus.VOIDED)
        self._pool_remove(pending)
        record = _Retained(
            id_, pending.debit_account_id, pending.credit_account_id,
            posted_amount if post else pending.amount_minor, pending_id, user_data_64,
            timestamp, user_data_32, 0, pending.ledger, pending.code, flags,
            amount_bound_minor=pending.amount_minor,
        )
        self._ring_push(record)
        self._history_rows(debit, credit, timestamp)
        return _TR.OK

    def _create_single_or_pending(self, fields, timestamp: int) -> int:
        (id_, debit_id, credit_id, amount, pending_id, user_data_64, _timestamp,
         user_data_32, timeout_ms, ledger, code, flags) = fields
        if debit_id == 0:
            return _TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if debit_id == U64_MAX:
            return _TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if credit_id == 0:
            return _TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if credit_id == U64_MAX:
            return _TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX
        if debit_id == credit_id:
            return _TR.ACCOUNTS_MUST_BE_DIFFERENT
        if pending_id != 0:
            return _TR.PENDING_ID_MUST_BE_ZERO
        if amount == 0 and not flags & _BALANCING:
            return _TR.AMOUNT_MUST_NOT_BE_ZERO
        if ledger == 0:
            return _TR.LEDGER_MUST_NOT_BE_ZERO
        if code == 0:
            return _TR.CODE_MUST_NOT_BE_ZERO
        is_pending = bool(flags & _T.PENDING)
        if flags & _CLOSING and not is_pending:
            return _TR.CLOSING_TRANSFER_MUST_BE_PENDING
        debit = self._accounts.get(debit_id)
        if debit is None:
            return _TR.DEBIT_ACCOUNT_NOT_FOUND
        credit = self._accounts.get(credit_id)
        if credit is None:
            return _TR.CREDIT_ACCOUNT_NOT_FOUND
        if debit.ledger != credit.ledger:
            return _TR.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER
        if ledger != debit.ledger:
            return _TR.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS
        if debit.flags & _A.CLOSED:
            return _TR.DEBIT_ACCOUNT_ALREADY_CLOSED
        if credit.flags & _A.CLOSED:
            return _TR.CREDIT_ACCOUNT_ALREADY_CLOSED
        if is_pending and timestamp + timeout_ms * NS_PER_MS > U64_MAX:
            return _TR.OVERFLOWS_TIMEOUT
        effective = amount
        if flags & _BALANCING:
            # The input amount is an upper bound (0: none); take what the account(s) can
            # still bear, saturating at 0 (a balancing transfer may record amount 0).
            if effective == 0:
                effective = U64_MAX
            if flags & _T.BALANCING_DEBIT:
                room = debit.credits_posted - debit.debits_posted - debit.debits_pending
                effective = min(effective, max(room, 0))
            if flags & _T.BALANCING_CREDIT:
                room = credit.debits_posted - credit.credits_posted - credit.credits_pending
                effective = min(effective, max(room, 0))
        if is_pending:
            if debit.debits_pending + effective > U64_MAX:
                return _TR.OVERFLOWS_DEBITS_PENDING
            if credit.credits_pending + effective > U64_MAX:
                return _TR.OVERFLOWS_CREDITS_PENDING
        else:
            if debit.debits_posted + effective > U64_MAX:
                return _TR.OVERFLOWS_DEBITS_POSTED
            if credit.credits_posted + effective > U64_MAX:
                return _TR.OVERFLOWS_CREDITS_POSTED
        debit_total = debit.debits_pending + debit.debits_posted + effective
        credit_total = credit.credits_pending + credit.credits_posted + effective
        if debit_total > U64_MAX:
            return _TR.OVERFLOWS_DEBITS
        if credit_total > U64_MAX:
            return _TR.OVERFLOWS_CREDITS
        if debit.flags & _A.DEBITS_MUST_NOT_EXCEED_CREDITS and debit_total > debit.credits_posted:
            return _TR.EXCEEDS_CREDITS
        if (credit.flags & _A.CREDITS_MUST_NOT_EXCEED_DEBITS
                and credit_total > credit.debits_posted):
            return _TR.EXCEEDS_DEBITS
        if is_pending and len(self._pending) >= self.config.pending_max:
            return _TR.PENDING_TRANSFERS_FULL
        # Apply.
        self._save_account(debit)
        self._save_account(credit)
        if is_pending:
            debit.debits_pending += effective
            credit.credits_pending += effective
            if flags & _T.CLOSING_DEBIT:
                debit.flags |= _A.CLOSED
            if flags & _T.CLOSING_CREDIT:
                credit.flags |= _A.CLOSED
        else:
            debit.debits_posted += effective
            credit.credits_posted += effective
        record = _Retained(
            id_, debit_id, credit_id, effective, 0, user_data_64, timestamp, user_data_32,
            timeout_ms, ledger, code, flags, amount_bound_minor=amount,
            status=PendingStatus.PENDING if is_pending else PendingStatus.NONE,
        )
        self._ring_push(record)
        if is_pending:
            self._pool_add(record)
        self._history_rows(debit, credit, timestamp)
        return _TR.OK

    # ---------------------------------------------------------------- state primitives
    # Every mutation of a transfer goes through one of these so a linked chain can be
    # undone exactly (the undo log is None outside chains).

    def _save_account(self, account: _Account) -> None:
        if self._undo is not None:
            self._undo.append((
                "account", account, account.debits_pending, account.debits_posted,
                account.credits_pending, account.credits_posted, account.flags,
            ))

    def _reopen_closed_by(self, pending: _Retained, debit: _Account, credit: _Account) -> None:
        """A voided or expired closing transfer reopens the account(s) it closed."""
        if pending.flags & _T.CLOSING_DEBIT:
            debit.flags &= ~_A.CLOSED
        if pending.flags & _T.CLOSING_CREDIT:
            credit.flags &= ~_A.CLOSED

    def _set_status(self, entry: _Retained, status: PendingStatus) -> None:
        if self._undo is not None:
            self._undo.append(("status", entry, entry.status))
        entry.status = status

    def _ring_push(self, entry: _Retained) -> None:
        head = self._ring_head
        evicted = self._ring[head]
        if evicted is not None:
            del self._ring_index[evicted.id]
        else:
            self._ring_count += 1
        self._ring[head] = entry
        self._ring_index[entry.id] = entry
        self._ring_head = (head + 1) % len(self._ring)
        if self._undo is not None:
            self._undo.append(("ring_push", evicted))

    def _ring_pop(self, evicted: _Retained | None) -> None:
        head = (self._ring_head - 1) % len(self._ring)
        entry = self._ring[head]
        del self._ring_index[entry.id]
        self._ring[head] = evicted
        if evicted is not None:
            self._ring_index[evicted.id] = evicted
        else:
            self._ring_count -= 1
        self._ring_head = head

    def _remember_failed(self, id_: int, result: int) -> None:
        """An id whose attempt failed for a reason that depends on ledger state."""
        assert self._undo is None, "failed ids are remembered outside chains"
        if id_ in self._ring_index or id_ in self._pending:
            # Only after a rollback: the chain itself evicted this id from the ring before
            # reusing it; the rollback brought the recorded transfer back, and it answers.
            return
        self._ring_push(_Retained(id_, kind=RetainedKind.FAILED, failed_result=result))

    def _pool_add(self, entry: _Retained) -> None:
        self._pending[entry.id] = entry
        if entry.timeout_ms != 0:
            heapq.heappush(self._expiry_heap, (entry.deadline_ns, entry.timestamp, entry.id))
        if self._undo is not None:
            self._undo.append(("pool_add", entry))

    def _pool_remove(self, entry: _Retained) -> None:
        del self._pending[entry.id]  # its heap entry goes stale
        if self._undo is not None:
            self._undo.append(("pool_remove", entry))

    def _history_rows(self, debit: _Account, credit: _Account, timestamp: int) -> None:
        for account in (debit, credit):
            if account.flags & _A.HISTORY:
                head = self._history_head
                previous = self._history[head]
                if previous is None:
                    self._history_count += 1
                self._history[head] = (
                    account.id, timestamp, account.debits_pending, account.debits_posted,
                    account.credits_pending, account.credits_posted,
                )
                self._history_head = (head + 1) % len(self._history)
                if self._undo is not None:
                    self._undo.append(("history", previous))

    def _rollback(self) -> None:
        """Undo everything the open chain did, newest first, and close the undo log."""
        undo, self._undo = self._undo, None
        assert undo is not None
        for entry in reversed(undo):
            kind = entry[0]
            if kind == "account":
                (_, account, account.debits_pending, account.debits_posted,
                 account.credits_pending, account.credits_posted, account.flags) = entry
            elif kind == "account_created":
                account = self._account_order.pop()
                del self._accounts[account.id]
            elif kind == "status":
                entry[1].status = entry[2]
            elif kind == "ring_push":
                self._ring_pop(entry[1])
            elif kind == "pool_add":
                del self._pending[entry[1].id]
            elif kind == "pool_remove":
                restored = entry[1]
                self._pending[restored.id] = restored
                if restored.timeout_ms != 0:
                    # Its heap entry may have been dropped as stale meanwhile; a duplicate
                    # is harmless (stale once the transfer leaves the pool).
                    heapq.heappush(
                        self._expiry_heap,
                        (restored.deadline_ns, restored.timestamp, restored.id),
                    )
            elif kind == "history":
                head = (self._history_head - 1) % len(self._history)
                self._history[head] = entry[1]
                if entry[1] is None:
                    self._history_count -= 1
                self._history_head = head
            else:  # pragma: no cover - a bug
                raise AssertionError(f"unknown undo entry {kind}")

    def _after_batch(self) -> None:
        # Bound the heap: drop stale entries once they outnumber live ones.
        if len(self._expiry_heap) > 2 * len(self._pending) + 64:
            self._expiry_heap = [
                (entry.deadline_ns, entry.timestamp, entry.id)
                for entry in self._pending.values()
                if entry.timeout_ms != 0
            ]
            heapq.heapify(self._expiry_heap)
        if self.config.debug_checks:
            self.check_invariants()

    # ---------------------------------------------------------------------------- expiry

    def expire_pending(self, now_ns: int) -> list[int]:
        if not isinstance(now_ns, int) or now_ns < 0 or now_ns > U64_MAX:
            raise ValueError(f"now_ns must be an int in [0, 2**64-1], got {now_ns!r}")
        expired: list[_Retained] = []
        expired_ids: set[int] = set()
        popped = []
        heap = self._expiry_heap
        while heap and heap[0][0] <= now_ns:
            item = heapq.heappop(heap)
            popped.append(item)
            _deadline, timestamp, id_ = item
            entry = self._pending.get(id_)
            if entry is None or entry.timestamp != timestamp or id_ in expired_ids:
                continue  # stale: posted, voided, or a duplicate left by a rollback
            expired.append(entry)
            expired_ids.add(id_)
        if not expired:
            return []
        try:
            base = self._timestamps_for(now_ns, len(expired))
        except ValueError:
            for item in popped:  # a refused call changes nothing
                heapq.heappush(heap, item)
            raise
        self._last_timestamp = base + len(expired) - 1
        for offset, entry in enumerate(expired):
            debit = self._accounts[entry.debit_account_id]
            credit = self._accounts[entry.credit_account_id]
            debit.debits_pending -= entry.amount_minor
            credit.credits_pending -= entry.amount_minor
            self._reopen_closed_by(entry, debit, credit)
            entry.status = PendingStatus.EXPIRED
            del self._pending[entry.id]
            self._history_rows(debit, credit, base + offset)
        self._after_batch()
        return [entry.id for entry in expired]

    # ---------------------------------------------------------------------- state export

    def totals(self) -> tuple[int, int, int, int]:
        debits_pending = debits_posted = credits_pending = credits_posted = 0
        for account in self._account_order:
            debits_pending += account.debits_pending
            debits_posted += account.debits_posted
            credits_pending += account.credits_pending
            credits_posted += account.credits_posted
        return debits_pending, debits_posted, credits_pending, credits_posted

    # ----------------------------------------------- kernel API (ledger/common.py calls it)

    def _account_record(self, account_id: int) -> bytes | None:
        account = self._accounts.get(account_id)
        return None if account is None else account.pack()

    def _transfer_record(self, transfer_id: int) -> bytes | None:
        entry = self._ring_index.get(transfer_id) or self._pending.get(transfer_id)
        return None if entry is None else entry.pack()

    def _history_records(self, account_id: int, limit: int) -> bytes:
        rows = []
        size = len(self._history)
        for back in range(1, self._history_count + 1):
            row = self._history[(self._history_head - back) % size]
            if row[0] == account_id:
                rows.append(HISTORY_STRUCT.pack(*row))
                if len(rows) == limit:
                    break
        return b"".join(rows)

    def _open_pending_minor(self) -> int:
        return sum(entry.amount_minor for entry in self._pending.values())

    def _check_kernel(self) -> None:
        for account in self._account_order:
            if (account.flags & _A.DEBITS_MUST_NOT_EXCEED_CREDITS and
                    account.debits_pending + account.debits_posted > account.credits_posted):
                raise AssertionError(f"account {account.id} debits exceed credits")
            if (account.flags & _A.CREDITS_MUST_NOT_EXCEED_DEBITS and
                    account.credits_pending + account.credits_posted > account.debits_posted):
                raise AssertionError(f"account {account.id} credits exceed debits")

    def _state_counts(self) -> tuple[int, int, int, int]:
        return (len(self._account_order), self._ring_count, len(self._pending),
                self._history_count)

    def _export_state(self, header: bytes) -> bytes:
        parts = [header]
        parts.extend(account.pack() for account in self._account_order)
        size = len(self._ring)
        start = (self._ring_head - self._ring_count) % size
        parts.extend(self._ring[(start + i) % size].pack() for i in range(self._ring_count))
        parts.extend(entry.pack() for entry in
                     sorted(self._pending.values(), key=lambda entry: entry.timestamp))
        size = len(self._history)
        start = (self._history_head - self._history_count) % size
        parts.extend(HISTORY_STRUCT.pack(*self._history[(start + i) % size])
                     for i in range(self._history_count))
        return b"".join(parts)

    def _load_state(self, last_timestamp: int, accounts: bytes, retained: bytes,
                    pending: bytes, history: bytes) -> None:
        assert self._last_timestamp == 0 and not self._account_order and not self._ring_count
        self._last_timestamp = last_timestamp
        for (id_, debits_pending, debits_posted, credits_pending, credits_posted, ud64,
             timestamp, ud32, ledger_id, _reserved, code, flags
             ) in ACCOUNT_STRUCT.iter_unpack(accounts):
            account = _Account(id_, debits_pending, debits_posted, credits_pending,
                               credits_posted, ud64, timestamp, ud32, ledger_id, code, flags)
            self._accounts[id_] = account
            self._account_order.append(account)
        for fields in RETAINED_STRUCT.iter_unpack(retained):
            entry = _Retained(*fields)
            entry.status = PendingStatus(entry.status)
            self._ring_push(entry)
        for fields in RETAINED_STRUCT.iter_unpack(pending):
            entry = _Retained(*fields)
            entry.status = PendingStatus(entry.status)
            # Share the object with the ring when the ring still holds it, as a live
            # ledger does, so a status change is seen by both.
            in_ring = self._ring_index.get(entry.id)
            self._pool_add(entry if in_ring is None else in_ring)
        for row in HISTORY_STRUCT.iter_unpack(history):
            self._history[self._history_head] = row
            self._history_head = (self._history_head + 1) % len(self._history)
            self._history_count += 1


def _field_differs(given: int, stored: int, zero_inherits: bool) -> bool:
    """Whether a resent field differs from the stored one. With `zero_inherits` (a
    post/void) a zero field takes the pending transfer's value, so zero matches."""
    return given != stored and not (zero_inherits and given == 0)
