"""Every message of the switch core: what participants send and receive, the events the core
consumes and the commands it returns.

Three groups, all frozen kw-only msgspec Structs with `forbid_unknown_fields`:

- Wire messages (string tags, field names on the wire): what a participant sends
  (`Inbound`: transfer, return, payee answer, status query, request-to-pay and its decision,
  resolve) and receives (`Outbound`: credit request, transfer outcome, request-to-pay notice
  and outcome, resolve answer, error). Connectors decode them with the decoders in
  `switch/core/codec.py`, so the constraints in the types (`Meta`) are checked there.
- Events (`Event`, integer tags, array-like: they are journaled): a wire message plus what
  the shell adds — the authenticated sender and, for a transfer, the payee the directory
  resolved — and the operator's admin events and timer firings.
- Commands (`Command`): what the shell must do — send, arm or cancel a timer, refund a
  lookup token, answer from its store, answer the operator.

Money is integer minor units, never a float. Never renumber a tag or reorder a field of an
array-like Struct (the journal depends on it); new fields go at the end with a default.
This module must never import anything that does I/O.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Union

import msgspec
from msgspec import Meta

from switch.core import limits
from switch.directory.types import AliasType as DirectoryAliasType
from switch.core.results import (
    ParticipantStatus,
    RequestToPayState,
    Result,
    SettlementModel,
    TransferState,
)

# -- constrained scalar types ------------------------------------------------------------

# The one grammar of every id (transfer, return, request-to-pay, operator request): ASCII
# letters and digits, then also `.`, `_`, `:` and `-`; 1 to ID_LENGTH_MAX characters. Ids
# end up in HTTP paths, logs and snapshots, so nothing else is allowed anywhere. `(?!\n)`:
# msgspec matches with Python's `re.search`, whose `$` also matches before a final newline
# (the lookahead is a no-op in ECMA-262, where JSON Schema readers of the pattern run it).
_ID_BODY = r"[A-Za-z0-9][A-Za-z0-9._:\-]*"
ID_PATTERN = rf"^{_ID_BODY}$(?!\n)"
Id = Annotated[str, Meta(min_length=1, max_length=limits.ID_LENGTH_MAX, pattern=ID_PATTERN)]
# An id or nothing: the transfer a request-to-pay decision names (only an approval names one).
IdOrEmpty = Annotated[
    str, Meta(max_length=limits.ID_LENGTH_MAX, pattern=rf"^(?:{_ID_BODY})?$(?!\n)")
]
# The same grammar as a whole-string match (no anchors to evaluate): 144 against 164 ns a
# check (timeit, 13-character id).
_id_fullmatch = re.compile(_ID_BODY).fullmatch


def id_valid(text: str) -> bool:
    """Whether `text` is an `Id`: for checks outside a decoder (the core's own re-check of
    events built by hand, HTTP path segments), so they can never disagree with the type."""
    return len(text) <= limits.ID_LENGTH_MAX and _id_fullmatch(text) is not None


# A participant's callback URL (HTTP callbacks), wherever it is set: console, CLI, onboarding.
CALLBACK_URL_PATTERN = r"^(https?://[^\s]+)?$(?!\n)"
CallbackUrl = Annotated[
    str, Meta(max_length=limits.CALLBACK_URL_LENGTH_MAX, pattern=CALLBACK_URL_PATTERN)
]
_callback_url_match = re.compile(CALLBACK_URL_PATTERN).match


def callback_url_valid(url: str) -> bool:
    """Whether `url` is a `CallbackUrl` (empty: none), for checks outside a decoder."""
    return len(url) <= limits.CALLBACK_URL_LENGTH_MAX and _callback_url_match(url) is not None


AmountMinor = Annotated[int, Meta(ge=1, le=limits.AMOUNT_MINOR_MAX)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$(?!\n)")]
ParticipantId = Annotated[int, Meta(ge=1, le=limits.PARTICIPANT_ID_MAX)]
TimeNs = Annotated[int, Meta(ge=0, le=limits.TIME_NS_MAX)]  # int64: good until 2262
Reference = Annotated[str, Meta(max_length=limits.REFERENCE_LENGTH_MAX)]
Text = Annotated[str, Meta(max_length=limits.TEXT_LENGTH_MAX)]
# The directory owns the alias types; on the wire they travel by name ("MSISDN", ...).
AliasType = StrEnum("AliasType", {member.name: member.name for member in DirectoryAliasType})
AliasType.__doc__ = "An alias type by name: the members of switch.directory.types.AliasType."
AliasType.__module__ = __name__
ALIAS_TYPE_NUMBERS: dict[str, int] = {member.name: int(member) for member in DirectoryAliasType}
ALIAS_TYPE_NAMES: dict[int, str] = {number: name for name, number in ALIAS_TYPE_NUMBERS.items()}
AliasValue = Annotated[str, Meta(max_length=limits.REFERENCE_LENGTH_MAX)]
NationalId = Annotated[str, Meta(min_length=1, max_length=limits.NATIONAL_ID_LENGTH_MAX)]
# Conditional transfers (Interledger's crypto-condition, as FSPIOP uses it): a condition is
# the SHA-256 of a 32-byte fulfilment, both base64url without padding (43 characters). A
# transfer with a condition commits only on an acceptance carrying its preimage.
_B64URL_256 = r"[A-Za-z0-9_-]{43}"
ConditionOrEmpty = Annotated[str, Meta(max_length=43, pattern=rf"^(?:{_B64URL_256})?$(?!\n)")]


class RequestType(StrEnum):
    """Which request a `Refused` answers: the refused message's wire tag."""

    TRANSFER = "transfer"
    RETURN = "return"
    PAYEE_ANSWER = "payee_answer"
    STATUS_QUERY = "status_query"
    REQUEST_TO_PAY = "request_to_pay"
    REQUEST_TO_PAY_DECISION = "request_to_pay_decision"

_WIRE = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True)
_EVENT = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, array_like=True)


# -- wire: shared pieces -----------------------------------------------------------------


class Party(msgspec.Struct, **_WIRE, gc=False):
    """An alias as the payer's customer typed it (MSISDN, EMAIL, NATIONAL_ID, HANDLE, RANDOM,
    ACCOUNT); the directory owns the alias types and their normalisation."""

    alias_type: AliasType
    alias_value: Annotated[str, Meta(min_length=1, max_length=limits.REFERENCE_LENGTH_MAX)]


class AliasRegistration(msgspec.Struct, **_WIRE):
    """Bind an alias to one of the sender's accounts (HTTP `POST /aliases`, the stream's
    RegisterAliases, the SDKs). The directory checks each field and names the one at fault.
    RANDOM keys are issued by the directory: send an empty alias_value and read the key
    from the answer."""

    alias_type: AliasType
    alias_value: AliasValue = ""
    account_ref: Annotated[str, Meta(min_length=1, max_length=limits.REFERENCE_LENGTH_MAX)]
    owner_national_id: NationalId
    display_name: Annotated[str, Meta(min_length=1, max_length=limits.TEXT_LENGTH_MAX)]
    owner_kind: Annotated[int, Meta(ge=1, le=2)] = 1  # 1 person, 2 business


class TransferRef(msgspec.Struct, **_WIRE):
    """Names a transfer switch-wide: transfer ids are scoped per payer participant."""

    payer_participant_id: ParticipantId
    transfer_id: Id


# -- wire: participant -> switch -----------------------------------------------------------


class ResolveRequest(msgspec.Struct, tag="resolve", **_WIRE):
    """Lookup of an alias before a transfer; answered by the directory, not the core."""

    alias: Party
    payer_user_ref: Reference = ""


class TransferRequest(msgspec.Struct, tag="transfer", **_WIRE, gc=False):
    """A push credit transfer. `transfer_id` is the payer participant's idempotency key.
    `expires_at_ns` (UTC, ns since the epoch) is mandatory: past it the switch will not
    commit, and a resend after it cannot create a second transfer."""

    transfer_id: Id
    payee: Party | None  # None only when the core builds it from a request-to-pay
    amount_minor: AmountMinor
    currency: Currency
    expires_at_ns: TimeNs
    end_to_end_id: Reference = ""
    purpose: Text = ""
    payer_account_ref: Reference = ""  # where a return of this transfer is credited
    payer_user_ref: Reference = ""  # opaque payer end-user id (anti-enumeration refunds)
    # Set by connectors of conditional dialects (FSPIOP): the payee's acceptance must carry
    # the fulfilment hashing to it, and `dialect_sha256` is the SHA-256 (base64url) of the
    # request as the payer wrote it in its own dialect, so a resend under the same id with
    # any other body is a modified request (EXISTS_WITH_DIFFERENT_BODY).
    condition: ConditionOrEmpty = ""
    dialect_sha256: ConditionOrEmpty = ""
    # No request_to_pay_id: only the switch links a transfer to a request-to-pay (the one an
    # approval creates); a participant sending the field is refused at decode.


class ReturnRequest(msgspec.Struct, tag="return", **_WIRE):
    """A return (refund) of an earlier committed transfer, sent by its payee: a new transfer
    in the opposite direction; all returns of one transfer add up to at most its amount."""

    transfer_id: Id
    original: TransferRef
    amount_minor: AmountMinor
    expires_at_ns: TimeNs
    reason: Text = ""


class PayeeAnswer(msgspec.Struct, tag="payee_answer", **_WIRE, gc=False):
    """The payee participant's answer to a credit request."""

    payer_participant_id: ParticipantId
    transfer_id: Id
    accepted: bool
    reason: Text = ""
    # The preimage of the transfer's condition (required to accept a conditional transfer;
    # ignored for one without a condition).
    fulfilment: ConditionOrEmpty = ""


class StatusQuery(msgspec.Struct, tag="status_query", **_WIRE):
    """Where does this transfer stand? Either party may ask, at any time (pacs.028)."""

    payer_participant_id: ParticipantId
    transfer_id: Id


class RequestToPay(msgspec.Struct, tag="request_to_pay", **_WIRE, gc=False):
    """The payee asks the payer to pay; the payer approves (it becomes a transfer) or declines."""

    request_id: Id
    payer: Party
    amount_minor: AmountMinor
    currency: Currency
    expires_at_ns: TimeNs
    payee_account_ref: Reference = ""
    end_to_end_id: Reference = ""
    purpose: Text = ""
    # Opaque id of the payee's end user asking (the merchant, the biller): the payer's
    # alias lookup is charged to their anti-enumeration bucket, as a transfer's lookup is
    # charged to its payer_user_ref. Empty: one shared anonymous bucket per participant.
    payee_user_ref: Reference = ""


class RequestToPayDecision(msgspec.Struct, tag="request_to_pay_decision", **_WIRE):
    """The payer's answer to a request-to-pay. Approving names the transfer it becomes."""

    payee_participant_id: ParticipantId
    request_id: Id
    approved: bool
    transfer_id: IdOrEmpty = ""  # a new transfer id, required when approved
    expires_at_ns: TimeNs = 0  # the transfer's expiry, required when approved
    payer_account_ref: Reference = ""
    payer_user_ref: Reference = ""


Inbound = Union[
    ResolveRequest,
    TransferRequest,
    ReturnRequest,
    PayeeAnswer,
    StatusQuery,
    RequestToPay,
    RequestToPayDecision,
]


# -- wire: switch -> participant -----------------------------------------------------------


class ResolveAnswer(msgspec.Struct, tag="resolve_answer", **_WIRE):
    """The directory's answer; `payee_account_ref` is opaque to the payer."""

    alias: Party
    result: Result
    payee_participant_id: int = 0
    payee_account_ref: Reference = ""
    display_name_masked: Text = ""
    retry_after_ms: int = 0  # with LOOKUP_RATE_LIMITED: when the lookup bucket has a token


class CreditRequest(msgspec.Struct, tag="credit_request", **_WIRE, gc=False):
    """Sent to the payee: funds are reserved; answer accept or reject before `expires_at_ns`.
    Credit the customer only on the COMMITTED outcome that follows."""

    payer_participant_id: int
    transfer_id: str
    payee_account_ref: str
    amount_minor: int
    currency: str
    expires_at_ns: int
    payee_alias: Party | None = None
    end_to_end_id: str = ""
    purpose: str = ""
    return_of: TransferRef | None = None
    request_to_pay_id: str = ""
    condition: str = ""  # a conditional transfer: accept with its fulfilment


class TransferOutcome(msgspec.Struct, tag="transfer_outcome", **_WIRE, gc=False):
    """A transfer's state, sent to both parties when it is final and in answer to a resend
    or a status query. `result` is OK unless the transfer was refused or failed."""

    payer_participant_id: int
    transfer_id: str
    state: TransferState
    result: Result
    payee_participant_id: int = 0
    amount_minor: int = 0
    fee_minor: int = 0
    currency: str = ""
    decided_at_ns: int = 0
    reason: str = ""
    fulfilment: str = ""  # COMMITTED conditional transfers: the payee's proof of acceptance


class RequestToPayNotice(msgspec.Struct, tag="request_to_pay_notice", **_WIRE):
    """Sent to the payer: a payee asks to be paid; decide before `expires_at_ns`."""

    payee_participant_id: int
    request_id: str
    payer_account_ref: str
    amount_minor: int
    currency: str
    expires_at_ns: int
    end_to_end_id: str = ""
    purpose: str = ""


class RequestToPayOutcome(msgspec.Struct, tag="request_to_pay_outcome", **_WIRE, gc=False):
    """A request-to-pay's state, sent to the payee (and the payer once it is final)."""

    payee_participant_id: int
    request_id: str
    state: RequestToPayState
    result: Result
    payer_participant_id: int = 0
    transfer_id: str = ""


class Refused(msgspec.Struct, tag="refused", **_WIRE, gc=False):
    """The request was not acted on and nothing was recorded for it; `result` says why.
    A corrected resend under the same id is a new request. For EXISTS_WITH_* the earlier
    request under that id stands, unchanged (ask its status)."""

    request_type: RequestType  # the refused message's tag, e.g. "transfer"
    scope_participant_id: int  # ids are scoped: the payer for transfers, the payee for RTPs
    id: str
    result: Result


def refused_for(message: Inbound, scope_participant_id: int, result: Result) -> Refused | ErrorAnswer:
    """The typed refusal of a message the core never saw (a full queue, a directory miss, a
    connector's own check): `Refused` for a transfer or a request-to-pay (the requests a
    participant tracks by its own id), `ErrorAnswer` otherwise."""
    message_type = type(message)
    if message_type is TransferRequest:
        return Refused(request_type=RequestType.TRANSFER, scope_participant_id=scope_participant_id,
                       id=message.transfer_id, result=result)
    if message_type is RequestToPay:
        return Refused(request_type=RequestType.REQUEST_TO_PAY,
                       scope_participant_id=scope_participant_id, id=message.request_id,
                       result=result)
    return ErrorAnswer(result=result)


class ErrorAnswer(msgspec.Struct, tag="error", **_WIRE):
    """The answer to a message the switch could not act on (malformed, protocol error)."""

    result: Result
    detail: Text = ""


class AliasAnswer(msgspec.Struct, **_WIRE):
    """The answer to an alias registration or deletion. `result` is OK or the reason;
    `directory_result` is the directory's own finer code (switch.directory.types.
    DirectoryResult) and `field` the request field at fault."""

    result: Result
    directory_result: int = 0
    field: str = ""
    alias_type: str = ""
    alias_value: str = ""  # the normalised value (the issued key for RANDOM)
    account_ref: str = ""
    display_name_masked: str = ""
    retry_after_ms: int = 0  # with LOOKUP_RATE_LIMITED: when the lookup buckets admit again


class BulkAliasAnswer(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Counts of a bulk registration; refused rows by position (0-based), never by value."""

    registered: int
    existing: int
    rejected: int
    rejections: list[tuple[int, int, str]] = []  # (row index, directory result, field)


Outbound = Union[
    ResolveAnswer,
    CreditRequest,
    TransferOutcome,
    RequestToPayNotice,
    RequestToPayOutcome,
    Refused,
    ErrorAnswer,
]


# -- wire: settlement, the participant's side (HTTP connector; docs/settlement.md) ---------


class SettlementWindowView(msgspec.Struct, **_WIRE):
    """A settlement window as a participant sees it: only its own net position (- it pays
    in at the RTGS, + it is paid; live while the window is open)."""

    window_id: int
    currency: str
    state: str  # open, pending_settlement, settled, aborted
    opened_at_ns: int
    closed_at_ns: int = 0
    decided_at_ns: int = 0
    net_minor: int = 0
    rtgs_reference: str = ""


class ReconciliationRow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One transfer of the window as the participant booked it (paid or received)."""

    payer_participant_id: ParticipantId
    transfer_id: Id
    amount_minor: AmountMinor


class ReconciliationRequest(msgspec.Struct, frozen=True, kw_only=True,
                            forbid_unknown_fields=True):
    """Every transfer of one window the participant paid or received."""

    transfers: list[ReconciliationRow]  # the service bounds the count (RECONCILIATION_TOO_LARGE)


class ReconciledTransfer(msgspec.Struct, frozen=True, kw_only=True):
    payer_participant_id: int
    transfer_id: str
    amount_minor: int


class AmountMismatch(msgspec.Struct, frozen=True, kw_only=True):
    payer_participant_id: int
    transfer_id: str
    switch_amount_minor: int
    participant_amount_minor: int


class ReconciliationReport(msgspec.Struct, frozen=True, kw_only=True):
    """The differences between a participant's list and the switch's entries of a window.
    Each list is bounded (`truncated` says when one holds fewer than its count)."""

    window_id: int
    participant_id: int
    matched: int
    missing_at_participant_count: int
    missing_at_switch_count: int
    amount_mismatch_count: int
    duplicate_rows_count: int
    missing_at_participant: list[ReconciledTransfer]  # committed, absent from the list
    missing_at_switch: list[ReconciledTransfer]  # listed, not committed in this window
    amount_mismatches: list[AmountMismatch]
    duplicate_rows: list[ReconciledTransfer]
    truncated: bool


# -- events: what the core consumes ------------------------------------------------------


class TransferRequested(msgspec.Struct, tag=1, **_EVENT, gc=False):
    """A payer's transfer, with the payee the shell resolved through the directory."""

    payer_participant_id: int  # the authenticated sender, never taken from the body
    payee_participant_id: int
    payee_account_ref: str
    request: TransferRequest


class ReturnRequested(msgspec.Struct, tag=2, **_EVENT):
    """A return sent by the original payee (who pays it). `original`: the shell adds the
    original from the transfer history when the core no longer holds it (older than its
    retained window), so a return within the scheme's window is decided as if it did."""

    payer_participant_id: int  # the authenticated sender
    request: ReturnRequest
    original: FinalTransfer | None = None


class FinalTransfer(msgspec.Struct, array_like=True, frozen=True, kw_only=True, gc=False):
    """A transfer (or return) in its final state, as the transfer history keeps it once the
    core's retained window has dropped it: the event that created it (without any history
    it carried itself), its outcome, whether the payee was sent it, and how much of it has
    been returned. Enough to answer a status query or a resend, and to decide a return."""

    event: TransferRequested | ReturnRequested
    outcome: TransferOutcome
    forwarded: bool
    returned_minor: int = 0


class PayeeAnswered(msgspec.Struct, tag=3, **_EVENT, gc=False):
    payee_participant_id: int  # the authenticated sender
    answer: PayeeAnswer


class StatusQueried(msgspec.Struct, tag=4, **_EVENT):
    participant_id: int  # the authenticated sender
    query: StatusQuery


class RequestToPayRequested(msgspec.Struct, tag=5, **_EVENT):
    """A payee's request-to-pay, with the payer the shell resolved through the directory."""

    payee_participant_id: int  # the authenticated sender
    payer_participant_id: int
    payer_account_ref: str
    request: RequestToPay


class RequestToPayDecided(msgspec.Struct, tag=6, **_EVENT):
    payer_participant_id: int  # the authenticated sender
    decision: RequestToPayDecision


class TimerFired(msgspec.Struct, tag=7, **_EVENT, gc=False):
    """A timer armed by `ArmTimer` reached its deadline. Stale or early firings are ignored."""

    timer_id: int


class SchemeRules(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The scheme's rules for one currency: limits, fees and the payee's answer time."""

    transfer_max_minor: AmountMinor = limits.AMOUNT_MINOR_MAX
    daily_total_max_minor: Annotated[int, Meta(ge=0, le=limits.DAILY_TOTAL_MINOR_MAX)] = (
        limits.DAILY_TOTAL_MINOR_MAX
    )
    fee_fixed_minor: Annotated[int, Meta(ge=0, le=limits.FEE_FIXED_MINOR_MAX)] = 0
    fee_bps: Annotated[int, Meta(ge=0, le=limits.FEE_BPS_MAX)] = 0
    payee_timeout_ms: Annotated[int, Meta(ge=1, le=limits.PAYEE_TIMEOUT_MS_MAX)] = (
        limits.PAYEE_TIMEOUT_MS_DEFAULT
    )
    # A committed transfer may be returned for this many days after it was decided.
    return_window_days: Annotated[int, Meta(ge=1, le=limits.RETURN_WINDOW_DAYS_MAX)] = (
        limits.RETURN_WINDOW_DAYS_DEFAULT
    )


class CurrencyAdded(msgspec.Struct, tag=20, **_EVENT):
    """Operator: carry a currency, with its settlement model and rules. Creates the hub
    accounts (docs/ledger-accounts.md)."""

    request_id: Id
    currency: Currency
    ledger_id: Annotated[int, Meta(ge=1, le=limits.LEDGER_ID_MAX)]  # ISO 4217 numeric
    settlement_model: SettlementModel
    rules: SchemeRules = SchemeRules()


class SchemeRulesChanged(msgspec.Struct, tag=21, **_EVENT):
    """Operator: new limits, fees or payee timeout for a currency; in-flight transfers keep
    the fee and deadline they were reserved with."""

    request_id: Id
    currency: Currency
    rules: SchemeRules


class ParticipantAdded(msgspec.Struct, tag=22, **_EVENT):
    request_id: Id
    participant_id: ParticipantId
    name: Annotated[str, Meta(min_length=1, max_length=limits.TEXT_LENGTH_MAX)]


class ParticipantAccountOpened(msgspec.Struct, tag=23, **_EVENT):
    """Operator: let a participant send and receive in a currency (creates its account)."""

    request_id: Id
    participant_id: ParticipantId
    currency: Currency


class ParticipantSuspended(msgspec.Struct, tag=24, **_EVENT):
    """Operator: the participant can neither send nor receive; in-flight transfers finish."""

    request_id: Id
    participant_id: ParticipantId


class ParticipantResumed(msgspec.Struct, tag=25, **_EVENT):
    request_id: Id
    participant_id: ParticipantId


class ParticipantDailyLimitSet(msgspec.Struct, tag=26, **_EVENT):
    """Operator: a participant's own daily total in a currency; None restores the scheme's."""

    request_id: Id
    participant_id: ParticipantId
    currency: Currency
    daily_total_max_minor: Annotated[int, Meta(ge=0, le=limits.DAILY_TOTAL_MINOR_MAX)] | None


class FundsDeposited(msgspec.Struct, tag=27, **_EVENT):
    """Operator: prefund a participant's settlement account (prefunded RTGS currencies)."""

    request_id: Id
    participant_id: ParticipantId
    currency: Currency
    amount_minor: AmountMinor


class FundsWithdrawn(msgspec.Struct, tag=28, **_EVENT):
    """Operator: pay out of a participant's settlement account (prefunded RTGS currencies)."""

    request_id: Id
    participant_id: ParticipantId
    currency: Currency
    amount_minor: AmountMinor


class NetDebitCapSet(msgspec.Struct, tag=29, **_EVENT):
    """Operator: set a participant's net debit cap (deferred-net currencies)."""

    request_id: Id
    participant_id: ParticipantId
    currency: Currency
    cap_minor: Annotated[int, Meta(ge=0, le=limits.NET_DEBIT_CAP_MINOR_MAX)]


class AuditAnchored(msgspec.Struct, tag=30, **_EVENT):
    """Operator console: the newest record of its hash-chained audit log (switch/admin/audit.py)
    is `audit_seq` with hash `audit_hash` (hex). Journaled, so a later verification can tell
    a truncated audit table from an intact one; the core keeps the newest anchor and refuses
    one that goes back or names another hash for the same record."""

    request_id: Id
    audit_seq: Annotated[int, Meta(ge=1, le=(1 << 63) - 1)]  # the audit table's bigint
    audit_hash: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$(?!\n)")]


# -- settlement (switch/core/settlement.py, docs/settlement.md): operator events, tags 40-59 --

# A settlement window id: the core numbers windows from 1, across currencies.
WindowId = Annotated[int, Meta(ge=1, le=limits.TIME_NS_MAX)]
# An RTGS reference (the RTGS's message id, or what an operator read from it): ISO 20022's
# Max35Text narrowed to one grammar that is safe in paths, logs and XML.
RtgsReference = Annotated[
    str, Meta(min_length=1, max_length=35, pattern=r"^[A-Za-z0-9][A-Za-z0-9./:_+-]*$(?!\n)")
]
# A cut-off: seconds after local midnight (see SettlementScheduleSet).
CutoffS = Annotated[int, Meta(ge=0, le=limits.SECONDS_PER_DAY - 1)]


class SettlementScheduleSet(msgspec.Struct, tag=40, **_EVENT):
    """Operator: when a currency's settlement windows close on their own. Every
    `interval_s` counted from local midnight (0: none) and at each of `cutoffs_s` (seconds
    after local midnight, strictly increasing); local time is UTC + `utc_offset_s` (a fixed
    offset: a scheme with daylight saving sets its schedule again when the clocks change).
    Both empty: windows close only when an operator closes them."""

    request_id: Id
    currency: Currency
    interval_s: Annotated[int, Meta(ge=0, le=limits.SETTLEMENT_INTERVAL_S_MAX)] = 0
    cutoffs_s: Annotated[tuple[CutoffS, ...], Meta(max_length=limits.SETTLEMENT_CUTOFFS_MAX)] = ()
    utc_offset_s: Annotated[int, Meta(ge=-limits.UTC_OFFSET_S_MAX,
                                      le=limits.UTC_OFFSET_S_MAX)] = 0


class SettlementWindowClosed(msgspec.Struct, tag=41, **_EVENT):
    """Operator: close the currency's open settlement window now (a new one opens in the
    same step). `window_id` names the window the operator saw open (refused if it closed
    meanwhile); 0 closes whichever is open."""

    request_id: Id
    currency: Currency
    window_id: Annotated[int, Meta(ge=0, le=limits.TIME_NS_MAX)] = 0


class SettlementConfirmed(msgspec.Struct, tag=42, **_EVENT):
    """The RTGS settled a window's instructions (an operator's maker-checker confirmation,
    or an accepted pacs.002): its settlement postings are posted."""

    request_id: Id
    window_id: WindowId
    rtgs_reference: RtgsReference


class SettlementAborted(msgspec.Struct, tag=43, **_EVENT):
    """Operator: give up settling a window; its positions roll into the open window."""

    request_id: Id
    window_id: WindowId
    reason: Text = ""


ParticipantEvent = Union[
    TransferRequested,
    ReturnRequested,
    PayeeAnswered,
    StatusQueried,
    RequestToPayRequested,
    RequestToPayDecided,
]
AdminEvent = Union[
    CurrencyAdded,
    SchemeRulesChanged,
    ParticipantAdded,
    ParticipantAccountOpened,
    ParticipantSuspended,
    ParticipantResumed,
    ParticipantDailyLimitSet,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    AuditAnchored,
    SettlementScheduleSet,
    SettlementWindowClosed,
    SettlementConfirmed,
    SettlementAborted,
]
# What the core consumes and the journal holds: participant events, timer firings and
# operator requests (typing flattens the nested unions; the order is the tags' order).
Event = Union[ParticipantEvent, TimerFired, AdminEvent]


# -- commands: what the shell must do ----------------------------------------------------

_COMMAND = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, array_like=True, gc=False)


class Send(msgspec.Struct, tag=1, **_COMMAND):
    """Deliver `message` to a participant. Hold it until the events behind it are durable."""

    participant_id: int
    message: Outbound


class ArmTimer(msgspec.Struct, tag=2, **_COMMAND):
    """Feed `TimerFired(timer_id)` once the clock reaches `deadline_ns` (re-arming replaces)."""

    timer_id: int
    deadline_ns: int


class CancelTimer(msgspec.Struct, tag=3, **_COMMAND):
    timer_id: int


class RefundLookupToken(msgspec.Struct, tag=4, **_COMMAND):
    """A payment to a resolved alias completed: give the payer's lookup token back
    (the anti-enumeration rule: completed payments refund their lookup)."""

    payer_participant_id: int
    payer_user_ref: str
    payee_alias: Party


class ConsultStore(msgspec.Struct, tag=5, **_COMMAND):
    """The core does not hold this transfer (never seen, or older than its retained window).
    The shell answers `participant_id` from its store of sent outcomes; if the store does not
    have it either, it answers `result_if_absent`."""

    participant_id: int
    payer_participant_id: int
    transfer_id: str
    result_if_absent: Result


class AdminAnswer(msgspec.Struct, tag=6, **_COMMAND):
    """The outcome of an operator request."""

    request_id: str
    result: Result
    detail: str = ""


Command = Union[Send, ArmTimer, CancelTimer, RefundLookupToken, ConsultStore, AdminAnswer]


class ParticipantView(msgspec.Struct, frozen=True, kw_only=True):
    """A read-only view of a participant for the shell, the console and the settlement code."""

    participant_id: int
    name: str
    status: ParticipantStatus
    currencies: tuple[str, ...]
