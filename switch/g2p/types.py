"""G2P records, states and configuration: what the engine, its store and the connector share.

Rows never carry a raw national ID: a row addressed by national ID carries the directory's
identity token (hex) from the moment the connector reads it.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Annotated

import msgspec
from msgspec import Meta

from switch.core.results import Result
from switch.g2p import limits


# The one grammar of a batch's (and a mapper message's) transaction_id, at every entrance:
# the G2P API's bodies and paths, the operators' g2p_batch proposals. The spec allows 99
# characters; Ponte allows the id grammar's characters only (they end up in paths and logs).
TRANSACTION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$(?!\n)"
TransactionId = Annotated[str, Meta(min_length=1, max_length=limits.TRANSACTION_ID_LENGTH_MAX,
                                    pattern=TRANSACTION_ID_PATTERN)]
_transaction_id_match = re.compile(TRANSACTION_ID_PATTERN).match


def transaction_id_valid(text: str) -> bool:
    return (1 <= len(text) <= limits.TRANSACTION_ID_LENGTH_MAX
            and _transaction_id_match(text) is not None)


class BatchState(IntEnum):
    """A batch's life cycle (docs/g2p.md). Numbers are stored: never renumber."""

    ACTIVE = 1  # rows are being paid, or all are final and more may come
    PAUSED = 2  # an operator paused it (maker-checker): nothing new is submitted
    PAUSED_FUNDING = 3  # the programme's account could not cover a row: probed again later
    CANCELLED = 4  # an operator cancelled it: rows not yet submitted are never paid
    COMPLETED = 5  # every row is final (a later message under the same id reopens it)


BATCH_STATE_NAMES = {state: state.name.lower() for state in BatchState}
# Which operator action a state allows, and the state it leads to.
BATCH_ACTIONS = {
    "pause": ({BatchState.ACTIVE, BatchState.PAUSED_FUNDING}, BatchState.PAUSED),
    "resume": ({BatchState.PAUSED, BatchState.PAUSED_FUNDING}, BatchState.ACTIVE),
    "cancel": ({BatchState.ACTIVE, BatchState.PAUSED, BatchState.PAUSED_FUNDING},
               BatchState.CANCELLED),
}


class RowStatus(IntEnum):
    """A row's state. Stored: never renumber."""

    PENDING = 0  # not submitted (or sent back after a funding shortfall)
    SUBMITTED = 1  # its transfer (this attempt) was submitted; the outcome is not known
    PAID = 2
    FAILED = 3
    CANCELLED = 4  # the batch was cancelled before the row was submitted


ROW_FINAL = frozenset({RowStatus.PAID, RowStatus.FAILED, RowStatus.CANCELLED})


class RowReason(IntEnum):
    """Why a row was not paid (NONE when it was, or is not final). Stored: never renumber."""

    NONE = 0
    UNMAPPED = 1  # the mapper has no account for the national ID
    PAYEE_REJECTED = 2  # the payee participant said no
    ACCOUNT_CLOSED = 3  # the payee said no because the account is closed
    OUT_OF_FUNDS = 4  # the programme could not cover it (only when the batch is cancelled)
    PAYEE_UNAVAILABLE = 5  # the payee did not answer in time
    PAYEE_BLOCKED = 6  # the payee participant is suspended, or has no account
    INVALID_PAYEE = 7  # the financial address names no participant the switch knows
    CANCELLED = 8
    REFUSED = 9  # the switch refused the transfer for another reason (see the result)


REASON_NAMES = {reason: reason.name.lower() for reason in RowReason}


def reason_for(result: Result, payee_reason: str) -> RowReason:
    """The row reason of a final transfer that did not commit (every Result the core can
    answer a transfer with has one; a table test walks them)."""
    if result is Result.PAYEE_REJECTED:
        lowered = payee_reason.lower()
        if "closed" in lowered:
            return RowReason.ACCOUNT_CLOSED
        return RowReason.PAYEE_REJECTED
    if result is Result.TRANSFER_EXPIRED:
        return RowReason.PAYEE_UNAVAILABLE
    if result in (Result.PAYEE_BLOCKED, Result.PAYEE_CURRENCY_NOT_ENABLED,
                  Result.PAYEE_ACCOUNT_OVERFLOW):
        return RowReason.PAYEE_BLOCKED
    if result in (Result.PAYEE_NOT_FOUND, Result.PAYER_AND_PAYEE_SAME):
        return RowReason.INVALID_PAYEE
    if result in (Result.PAYER_INSUFFICIENT_LIQUIDITY, Result.PAYER_DAILY_LIMIT_EXCEEDED):
        return RowReason.OUT_OF_FUNDS
    if result is Result.G2P_PAYEE_UNMAPPED:
        return RowReason.UNMAPPED
    return RowReason.REFUSED


# Results that mean "the programme cannot cover it now": the batch pauses, the row waits.
FUNDING_RESULTS = frozenset({Result.PAYER_INSUFFICIENT_LIQUIDITY,
                             Result.PAYER_DAILY_LIMIT_EXCEEDED})
# Results after which the same transfer id may simply be submitted again.
RETRY_RESULTS = frozenset({Result.SERVER_BUSY, Result.SERVICE_UNAVAILABLE})


class PayeeKind(IntEnum):
    NATIONAL_ID = 1  # payee_key: the identity token (hex)
    FINANCIAL_ADDRESS = 2  # payee_key: "<account_ref>@<participant_id>"


def transfer_id(batch_id: int, row_no: int, attempt: int) -> str:
    """The id of a row's transfer: derived from the batch and the row (and the attempt,
    which grows only after a funding refusal that the core recorded), so a resend or a
    restart can never make a second transfer for the same attempt."""
    return f"g2p.{batch_id}.{row_no}.{attempt}"


def parse_transfer_id(text: str) -> tuple[int, int, int] | None:
    if not text.startswith("g2p."):
        return None
    parts = text.split(".")
    if len(parts) != 4 or not all(part.isdigit() for part in parts[1:]):
        return None
    return int(parts[1]), int(parts[2]), int(parts[3])


class NewRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A validated row to add to a batch."""

    reference_id: str
    payee_kind: int
    payee_key: str
    amount_minor: int


class PendingRow(msgspec.Struct, array_like=True, gc=False):
    """A row to submit, as the store hands it over."""

    row_no: int
    payee_kind: int
    payee_key: str
    amount_minor: int
    attempt: int
    status: int
    payee_participant_id: int = 0
    payee_account_ref: str = ""
    expires_at_ns: int = 0


class RowView(msgspec.Struct, frozen=True, kw_only=True):
    """A row as reports and status answers show it (the payee as it was named: a national
    ID only as "token:<hex>@nid")."""

    row_no: int
    reference_id: str
    payee: str
    amount_minor: int
    status: RowStatus
    reason: RowReason
    result: int
    attempt: int
    payee_participant_id: int
    updated_ns: int


class BatchRecord(msgspec.Struct, kw_only=True):
    batch_id: int
    programme_id: int
    transaction_id: str
    currency: str
    state: BatchState
    created_ns: int
    updated_ns: int
    rows_total: int = 0
    amount_total_minor: int = 0


class BatchCounts(msgspec.Struct, kw_only=True):
    """Rows and amounts by status and reason, kept in memory per open batch and rebuilt
    from the store at start."""

    pending: int = 0
    submitted: int = 0
    paid: int = 0
    paid_minor: int = 0
    failed: int = 0
    failed_minor: int = 0
    cancelled: int = 0
    by_reason: dict[str, int] = msgspec.field(default_factory=dict)


class G2PConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[g2p]` of the server's configuration (docs/g2p.md)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8090
    # Rows per second the engine submits at most, over all batches.
    rate_rows_per_s: Annotated[int, Meta(ge=1, le=limits.RATE_ROWS_PER_S_MAX)] = (
        limits.RATE_ROWS_PER_S_DEFAULT)
    in_flight_rows_max: Annotated[int, Meta(ge=1, le=limits.IN_FLIGHT_ROWS_MAX_CEILING)] = (
        limits.IN_FLIGHT_ROWS_MAX_DEFAULT)
    # Live traffic first: no row is submitted while the switch's inbound queue is deeper.
    live_queue_depth_max: Annotated[int, Meta(ge=1, le=1 << 22)] = (
        limits.LIVE_QUEUE_DEPTH_MAX_DEFAULT)
    funding_probe_s: Annotated[float, Meta(ge=0.05, le=3600.0)] = limits.FUNDING_PROBE_S_DEFAULT
    transfer_expiry_ms: Annotated[int, Meta(ge=1_000, le=24 * 3600 * 1000)] = (
        limits.TRANSFER_EXPIRY_MS_DEFAULT)
    # The currency a row names when it names none (G2P amounts are decimal strings read
    # with the currency's ISO 4217 exponent, switch/core/money.py).
    currency: Annotated[str, Meta(pattern=r"^[A-Z]{3}$(?!\n)")] = "KES"
    # The id provider that marks a payee named by national ID: "<national id>@nid".
    national_id_provider: Annotated[str, Meta(pattern=r"^[a-z0-9.-]{1,32}$(?!\n)")] = "nid"
