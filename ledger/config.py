"""Ledger configuration: the bounds that size its memory, read once and frozen.

A ledger sizes its tables from it when it is built, so it must never change afterwards
(the Struct is frozen) and must never hold anything but bounds and the debug switch.
"""

from typing import Annotated

import msgspec

from ledger import limits


class LedgerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Bounds for one ledger instance. The compiled core's memory grows with use up to

    accounts * ~105 B (72 B record + id table) + retained transfers * ~120 B (88 B record
    + id table) + open pending transfers * ~160 B (record, deadline, heap, id table)
    + history rows * 48 B,

    then stays flat (`ponte bench ledger` prints the measured figures; the pure twin needs
    about 10x more).
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
