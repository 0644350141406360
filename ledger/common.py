"""What the two ledger twins share above their kernels, written once: lookups, account
history, snapshots and the invariant checks.

A twin is a kernel plus `LedgerCommon`. The kernel holds the state and every operation that
changes it — batches, the single-transfer path, expiry (`ledger/_core.pyx` in C,
`ledger/reference.py` in Python). It hands records to this class in the packed layouts of
`ledger/formats.py`, so checking an id, turning records into `ledger.types` Structs and
laying out a snapshot happen here once and cannot differ between the twins. Nothing here
runs per event of a batch. This module must never touch a kernel's state except through the
kernel API below (`ledger.api.LedgerKernel`), do I/O or read the clock.

Kernel API (underscored: only this class calls it; ids are already known to be storable):
    _account_record(id) -> bytes | None      the account, ACCOUNT_STRUCT
    _transfer_record(id) -> bytes | None     the retained slot of `id` (a transfer or a
                                             failed id), else its open pending transfer,
                                             RETAINED_STRUCT
    _history_records(account_id, limit) -> bytes
                                             up to `limit` HISTORY_STRUCT rows of the
                                             account, newest first
    _state_counts() -> (accounts, retained, pending, history)
    _export_state(header) -> bytes           `header`, then the four snapshot sections
    _load_state(last_timestamp, accounts, retained, pending, history)
                                             the sections of a snapshot, into a new kernel
    _open_pending_minor() -> int             the sum of open pending amounts
    _check_kernel() -> None                  AssertionError if the kernel's own structures
                                             disagree or an account is beyond its limit
plus the public `totals()`, `last_timestamp` and `config`.
"""

from __future__ import annotations

import hashlib
import operator
from typing import Sequence

from ledger.config import LedgerConfig
from ledger.formats import (
    HISTORY_STRUCT,
    RETAINED_KIND_FIELD,
    RETAINED_STATUS_FIELD,
    RETAINED_STRUCT,
    pack_state_header,
    parse_state_header,
    split_state,
    state_config,
)
from ledger.limits import U64_MAX
from ledger.types import (
    Account,
    AccountBalance,
    AccountFlags,
    PendingStatus,
    RetainedKind,
    Transfer,
    unpack_account,
    unpack_balance,
    unpack_transfer,
)


def is_stored_id(value) -> bool:
    """Whether a lookup may find `value`: an int in [1, 2**64-2] (0 and 2**64-1 are never
    stored). Anything else is simply not found, never coerced: 1.0 is not id 1."""
    return isinstance(value, int) and 0 < value < U64_MAX


class LedgerCommon:
    """The operations both twins share, over their kernel. See `ledger/api.py`."""

    __slots__ = ()

    # --------------------------------------------------------------------------- lookups

    def lookup_accounts(self, ids: Sequence[int]) -> list[Account]:
        found = []
        for id_ in ids:
            if is_stored_id(id_):
                record = self._account_record(id_)
                if record is not None:
                    found.append(unpack_account(record))
        return found

    def lookup_transfers(self, ids: Sequence[int]) -> list[Transfer]:
        found = []
        for id_ in ids:
            if is_stored_id(id_):
                record = self._transfer_record(id_)
                if (record is not None and RETAINED_STRUCT.unpack(record)[RETAINED_KIND_FIELD]
                        == RetainedKind.TRANSFER):
                    found.append(unpack_transfer(record))
        return found

    def pending_status(self, transfer_id: int) -> PendingStatus:
        """An open pending transfer answers PENDING from its retained slot or, once the
        ring evicted that, from the pending pool (the kernel keeps both in step)."""
        if not is_stored_id(transfer_id):
            return PendingStatus.NONE
        record = self._transfer_record(transfer_id)
        if record is None:
            return PendingStatus.NONE
        fields = RETAINED_STRUCT.unpack(record)
        if fields[RETAINED_KIND_FIELD] != RetainedKind.TRANSFER:
            return PendingStatus.NONE
        return PendingStatus(fields[RETAINED_STATUS_FIELD])

    def get_account_history(self, account_id: int, limit: int) -> list[AccountBalance]:
        limit = operator.index(limit)  # TypeError for a float or str: a caller bug
        if not is_stored_id(account_id) or limit <= 0:
            return []
        record = self._account_record(account_id)
        if record is None or not unpack_account(record).flags & AccountFlags.HISTORY:
            return []
        rows = self._history_records(account_id,
                                     min(limit, self.config.history_retained_max))
        assert len(rows) % HISTORY_STRUCT.size == 0
        newest_first = [unpack_balance(rows, offset)
                        for offset in range(0, len(rows), HISTORY_STRUCT.size)]
        newest_first.reverse()
        return newest_first

    # -------------------------------------------------------------------------- checking

    def check_invariants(self) -> None:
        """Raise AssertionError if the books do not balance or a limit is exceeded.

        Raises explicitly (not `assert`) so it still checks under `python -O`.
        """
        debits_pending, debits_posted, credits_pending, credits_posted = self.totals()
        if debits_pending != credits_pending:
            raise AssertionError(f"debits_pending {debits_pending} != credits_pending "
                                 f"{credits_pending}")
        if debits_posted != credits_posted:
            raise AssertionError(f"debits_posted {debits_posted} != credits_posted "
                                 f"{credits_posted}")
        open_minor = self._open_pending_minor()
        if open_minor != debits_pending:
            raise AssertionError(f"open pending amounts {open_minor} != debits_pending "
                                 f"{debits_pending}")
        self._check_kernel()

    # ------------------------------------------------------------------------- snapshots

    def snapshot(self) -> bytes:
        """The whole state in the format of `ledger/formats.py`."""
        account_count, retained_count, pending_count, history_count = self._state_counts()
        return self._export_state(pack_state_header(
            self.last_timestamp, self.config, account_count, retained_count, pending_count,
            history_count))

    @classmethod
    def from_snapshot(cls, data, config: LedgerConfig | None = None):
        """A new ledger holding the state of `data` (from either twin). ValueError if `data`
        is not one whole snapshot or its state does not fit `config` (None: its own)."""
        view = memoryview(data).cast("B")
        header = parse_state_header(view)
        ledger = cls(state_config(header, config))
        accounts, retained, pending, history = split_state(view, header)
        ledger._load_state(header.last_timestamp, accounts, retained, pending, history)
        return ledger

    def digest(self) -> bytes:
        return hashlib.sha256(self.snapshot()).digest()
