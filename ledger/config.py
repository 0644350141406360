"""Ledger configuration: the bounds that size its memory, read once and frozen."""

from typing import Annotated

import msgspec

from ledger import limits


class LedgerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Bounds for one ledger instance. Memory is roughly

    accounts_max * ~100 B + transfers_retained_max * ~90 B + pending_max * ~40 B
    + history_retained_max * ~48 B.
    """

    accounts_max: Annotated[int, msgspec.Meta(ge=1, le=1 << 28)] = limits.ACCOUNTS_MAX_DEFAULT
    # Most recent transfers kept in memory for idempotency and lookups; older ones are
    # answered from the journal. Failed ids are retained under the same bound.
    transfers_retained_max: Annotated[int, msgspec.Meta(ge=1, le=1 << 28)] = (
        limits.TRANSFERS_RETAINED_MAX_DEFAULT
    )
    # Open two-phase transfers; they are retained until posted, voided or expired.
    pending_max: Annotated[int, msgspec.Meta(ge=1, le=1 << 26)] = limits.PENDING_MAX_DEFAULT
    # Balance snapshots of accounts created with the HISTORY flag (one ring for all).
    history_retained_max: Annotated[int, msgspec.Meta(ge=1, le=1 << 28)] = (
        limits.HISTORY_RETAINED_MAX_DEFAULT
    )
    # Assert sum(debits) == sum(credits) after every batch. Costs O(accounts) per batch.
    debug_checks: bool = False
