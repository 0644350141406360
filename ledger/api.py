"""The ledger's contract. `ledger/_core.pyx` and `ledger/reference.py` both implement it.

This docstring is the specification both twins are tested against; where it is silent,
`reference.py` is the answer. Each twin is a kernel (`LedgerKernel` below: the state and
everything that changes it) plus `ledger.common.LedgerCommon`, which implements lookups,
history, snapshots, `check_invariants` and `digest` once for both.

Batches
    `create_accounts(batch, now_ns)` and `create_transfers(batch, now_ns)` take a buffer of
    packed 72-byte records (`ledger.types.pack_*`; any object with the buffer protocol whose
    length is a multiple of 72 and at most BATCH_EVENTS_MAX records) and return the
    failures only, as a list of `(index, result)` pairs in index order; an empty list means
    every event was OK. A malformed buffer (wrong length, too many records) is a caller bug
    and raises ValueError; business outcomes never raise. An empty batch returns [] and
    changes nothing (it consumes no timestamp).

Single event
    `create_transfer(id, debit_account_id, credit_account_id, amount_minor, pending_id,
    user_data_64, user_data_32, timeout_ms, ledger, code, flags, now_ns)` is the switch
    core's per-transfer fast path: exactly `create_transfers` with a batch of one (same
    timestamp, same checks; LINKED alone answers LINKED_EVENT_CHAIN_OPEN), returning the
    `CreateTransferResult` (OK on success) instead of a list. A field outside its unsigned
    range raises ValueError.

Timestamps
    The ledger assigns them. For a batch of n events: `base = max(now_ns, last + 1)`, event i
    gets `base + i`, and `last = base + n - 1`. Every event consumes its timestamp, failed or
    not. `expire_pending(now_ns)` consumes one timestamp per expired transfer the same way.
    Replaying the same calls with the same `now_ns` rebuilds the identical state. A `now_ns`
    outside [0, 2**64-1], or one that would push the clock past 2**64-1, raises ValueError
    and changes nothing.

Accounts
    Checks in `CreateAccountResult` order. `timestamp` and the four balances of the input
    must be zero; the reserved u32 must be zero; unknown flag bits → RESERVED_FLAG; both
    `*_must_not_exceed_*` flags → FLAGS_ARE_MUTUALLY_EXCLUSIVE. An id seen before answers
    EXISTS when flags, user_data and ledger/code are identical, else the first differing
    field's EXISTS_WITH_DIFFERENT_* (CLOSED is left out of the flags comparison: closing
    transfers change it after creation). When `accounts_max` accounts exist → ACCOUNTS_FULL.
    Accounts are never evicted. The CLOSED flag at creation is allowed (a closed account).

Transfers (single-phase and pending)
    Flags: at most one of {PENDING, POST_PENDING_TRANSFER, VOID_PENDING_TRANSFER}, and
    POST/VOID exclude BALANCING_* and CLOSING_* (FLAGS_ARE_MUTUALLY_EXCLUSIVE); the two
    BALANCING_* flags may be combined; CLOSING_* without PENDING →
    CLOSING_TRANSFER_MUST_BE_PENDING; unknown bits → RESERVED_FLAG.
    `timeout_ms` is only allowed with PENDING. `amount_minor` must be non-zero unless
    BALANCING_* is set (then it is an upper bound, 0 meaning "no bound"). With
    BALANCING_DEBIT the amount is reduced to what the debit account can still be debited
    under DEBITS_MUST_NOT_EXCEED_CREDITS (credits_posted - debits_posted - debits_pending);
    BALANCING_CREDIT symmetrically (debits_posted - credits_posted - credits_pending of the
    credit account). The reduction applies whatever the account's flags (TigerBeetle's rule),
    saturates at 0 (a balancing transfer may record amount 0), and runs after
    OVERFLOWS_TIMEOUT, before the balance checks; the recorded transfer carries the reduced
    amount.
    Limits: with DEBITS_MUST_NOT_EXCEED_CREDITS on the debit account,
    debits_pending + debits_posted + amount > credits_posted → EXCEEDS_CREDITS; symmetric
    for CREDITS_MUST_NOT_EXCEED_DEBITS on the credit account → EXCEEDS_DEBITS. A pending
    transfer adds to `*_pending`, a single-phase one to `*_posted`. CLOSING_DEBIT/CREDIT
    (pending only) set CLOSED on the debit/credit account when the pending transfer is
    created; voiding or expiring it clears CLOSED again. A transfer touching a CLOSED
    account fails with *_ACCOUNT_ALREADY_CLOSED (a post/void of a pending one does not).
    Overflow: any u64 balance or balance sum (`debits_pending + debits_posted`) that would
    exceed 2**64-1 fails with the matching OVERFLOWS_*; a pending deadline
    (timestamp + timeout_ms * 1e6) beyond 2**64-1 → OVERFLOWS_TIMEOUT.
    When `pending_max` transfers are pending → PENDING_TRANSFERS_FULL.

Post / void
    `pending_id` names an open pending transfer. debit/credit account ids, ledger and code
    may be 0 (= take the pending transfer's) or must equal it. Post: `amount_minor` 0 means
    the full pending amount, otherwise at most the pending amount
    (EXCEEDS_PENDING_TRANSFER_AMOUNT); the posted amount moves from pending to posted and
    the rest is released. Void: amount 0 or exactly the pending amount
    (PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT). A pending transfer whose deadline is at or
    before this event's timestamp answers PENDING_TRANSFER_EXPIRED (it stays pending until
    `expire_pending` voids it). The post/void itself is recorded as a transfer with the
    resolved accounts, ledger, code and amount.

Idempotency
    A recorded transfer id answers EXISTS if every field equals the recorded one (with the
    input's zero fields for a post/void compared after resolving them as above, and the
    balancing amount compared with the original input upper bound), else the first
    differing field in enum order. Ids whose attempt failed with a result that depends on
    ledger state (*_NOT_FOUND, *_ALREADY_CLOSED, PENDING_TRANSFER_NOT_PENDING / ALREADY_* /
    EXPIRED, OVERFLOWS_*, EXCEEDS_*, PENDING_TRANSFERS_FULL) answer ID_ALREADY_FAILED ever
    after; input-validation failures do not poison the id. Both are kept for the most recent
    `transfers_retained_max` ids (one ring: a recorded transfer or a failed id takes one
    slot each, the oldest is evicted first); beyond the window an id is forgotten and
    lookups return nothing (the journal answers for older transfers). An open pending
    transfer is the exception: it stays in the pending pool (bounded by `pending_max`) after
    its ring slot is reused, so it can still be looked up, posted, voided, expired and
    deduplicated; once resolved outside the window it is forgotten.

Linked chains
    Events with LINKED chain to the next; the chain ends at the first event without it. If
    any event of a chain fails, every event of the chain is rolled back: the failing event
    keeps its result and all the others answer LINKED_EVENT_FAILED; no state changes
    (balances, CLOSED flags, pending statuses, retained ids) survive, except that the
    failing event's id is remembered as failed if its result poisons ids
    (`ledger.types.TRANSFER_RESULTS_POISONING_ID`) — unless the rollback brought back a
    recorded transfer with that id (the chain had evicted it from the ring), which then
    answers. Any result but OK fails a chain, EXISTS
    included. Events of a chain after the failing one are not evaluated
    (LINKED_EVENT_FAILED, so they cannot poison ids). A batch whose
    last event has LINKED fails that open chain with LINKED_EVENT_CHAIN_OPEN on the last
    event and LINKED_EVENT_FAILED on the rest of the chain.

Lookups
    `lookup_accounts(ids)` / `lookup_transfers(ids)` return the found records (as
    `ledger.types.Account` / `Transfer`) in the order asked, skipping unknown ids. A value
    that is not an int in [1, 2**64-2] is an unknown id, never coerced (1.0 is not id 1).
    `pending_status(id)` gives a `PendingStatus`. `get_account_history(id, limit)` returns
    up to `limit` most recent `AccountBalance` rows, oldest first, for an account created
    with HISTORY (one global ring of `history_retained_max` rows); a `limit` that is not an
    int raises TypeError. A row is written for
    each account with HISTORY after every change to its balances (a create, post or void
    transfer: debit account first, then credit; an expiry, with the timestamp the expiry
    consumed).

Expiry
    `expire_pending(now_ns)` voids every pending transfer whose deadline <= now_ns, in
    (deadline, timestamp) order, releases its amounts, clears CLOSED it set, marks it
    EXPIRED, and returns the list of expired ids.

State export
    `snapshot() -> bytes` serialises the complete state in one format shared by both twins
    (a snapshot from one loads in the other; layout in `ledger/formats.py`):
    `Ledger.from_snapshot(data, config)`. The snapshot records the four size bounds of the
    config; `config=None` reuses them; a config too small for the state raises ValueError,
    as does data that is not a whole snapshot. `totals()` returns (debits_pending,
    debits_posted, credits_pending, credits_posted) summed over all accounts;
    `check_invariants()` raises AssertionError (even under -O) if pending or posted debits
    and credits differ, if the open pending amounts do not add up to debits_pending, or if
    an account is beyond a *_must_not_exceed_* limit. `digest()` is the SHA-256 of
    `snapshot()`.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ledger.config import LedgerConfig
from ledger.types import (
    Account,
    AccountBalance,
    CreateAccountResult,
    CreateTransferResult,
    PendingStatus,
    Transfer,
)


class LedgerApi(Protocol):
    config: LedgerConfig
    implementation: str  # "compiled" or "pure"

    def create_accounts(self, batch, now_ns: int) -> list[tuple[int, CreateAccountResult]]: ...

    def create_transfers(
        self, batch, now_ns: int
    ) -> list[tuple[int, CreateTransferResult]]: ...

    def create_transfer(
        self, id: int, debit_account_id: int, credit_account_id: int, amount_minor: int,
        pending_id: int, user_data_64: int, user_data_32: int, timeout_ms: int, ledger: int,
        code: int, flags: int, now_ns: int,
    ) -> CreateTransferResult: ...

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]: ...

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]: ...

    def pending_status(self, transfer_id: int) -> PendingStatus: ...

    def get_account_history(self, account_id: int, limit: int) -> list[AccountBalance]: ...

    def expire_pending(self, now_ns: int) -> list[int]: ...

    def totals(self) -> tuple[int, int, int, int]: ...

    def check_invariants(self) -> None: ...

    def snapshot(self) -> bytes: ...

    def digest(self) -> bytes: ...

    @classmethod
    def from_snapshot(cls, data, config: LedgerConfig | None = None) -> "LedgerApi": ...

    @property
    def last_timestamp(self) -> int: ...

    @property
    def account_count(self) -> int: ...

    @property
    def pending_count(self) -> int: ...


class LedgerKernel(Protocol):
    """What each twin's kernel gives `ledger.common.LedgerCommon`, besides the batch API,
    `totals()`, `config` and `last_timestamp`. Records cross in the packed layouts of
    `ledger/formats.py`; ids passed in are ints in [1, 2**64-2]. See ledger/common.py."""

    def _account_record(self, account_id: int) -> bytes | None: ...

    def _transfer_record(self, transfer_id: int) -> bytes | None: ...

    def _history_records(self, account_id: int, limit: int) -> bytes: ...

    def _open_pending_minor(self) -> int: ...

    def _check_kernel(self) -> None: ...

    def _state_counts(self) -> tuple[int, int, int, int]: ...

    def _export_state(self, header: bytes) -> bytes: ...

    def _load_state(self, last_timestamp: int, accounts: bytes, retained: bytes,
                    pending: bytes, history: bytes) -> None: ...
