"""The switch core's configuration: the bounds of its tables, read once into a frozen Struct.

Scheme rules (limits, fees, payee timeout) must never be here: they are admin events,
journaled and replayed, so that a replay decides exactly what the live core decided.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from switch.core import limits


class CoreConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Memory is roughly transfers_retained_max * ~1 KB (the request, its record and the
    outcome are kept for idempotent answers) + requests_to_pay_retained_max * ~1 KB."""

    # Final transfers kept for idempotent resends and status queries. A final transfer is
    # dropped only when the table is full AND (see finals_kept_until_expiry) its expiry has
    # passed, so a resend of it is refused as expired instead of creating a second
    # transfer. Older ones: ConsultStore.
    transfers_retained_max: Annotated[int, Meta(ge=1, le=limits.TABLE_MAX_CEILING)] = (
        limits.TRANSFERS_RETAINED_MAX_DEFAULT
    )
    # True: the table is the only memory of a final transfer before its expiry, so it may
    # not drop one earlier (the table then bounds rate x expiry). False: something outside
    # the core answers resends, status queries and returns of the transfers it dropped
    # (the server's outcome archive and durable history, which see every final first), so
    # the table only holds what is in flight and the most recent finals. The server sets it
    # from `history_enabled`.
    finals_kept_until_expiry: bool = True
    # Transfers reserved and waiting for the payee. Beyond it new transfers get SERVER_BUSY.
    # The ledger's pending_max must be at least twice this (payment leg + fee leg).
    in_flight_max: Annotated[int, Meta(ge=1, le=limits.TABLE_MAX_CEILING)] = (
        limits.IN_FLIGHT_MAX_DEFAULT
    )
    requests_to_pay_retained_max: Annotated[int, Meta(ge=1, le=limits.TABLE_MAX_CEILING)] = (
        limits.REQUESTS_TO_PAY_RETAINED_MAX_DEFAULT
    )
    admin_requests_retained_max: Annotated[int, Meta(ge=1, le=limits.TABLE_MAX_CEILING)] = (
        limits.ADMIN_REQUESTS_RETAINED_MAX_DEFAULT
    )
    # How far ahead a payer may set a transfer's (or a payee a request-to-pay's) expiry.
    expiry_ms_max: Annotated[int, Meta(ge=1, le=limits.EXPIRY_MS_MAX_CEILING)] = (
        limits.EXPIRY_MS_MAX_DEFAULT
    )
    # Run ledger.check_invariants() after every step (O(accounts)); tests and the simulator.
    debug_checks: bool = False
