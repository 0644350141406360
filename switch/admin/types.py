"""The operator API's vocabulary: roles, result codes, and every request and answer body.

Every body is a frozen kw-only msgspec Struct; request bodies forbid unknown fields and carry
their bounds in the type, so a bad request is refused by decoding, before anything runs.
The JSON API and the console exchange exactly these (the OpenAPI document is generated from
them). Money is integer minor units, never a float. `AdminResult` numbers are stable: never
renumber a member; a new check gets a new number where it runs.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta

from connectors.fspiop.wire import FspId, PublicKeyPem
from switch.admin import limits
from switch.core import limits as core_limits
from switch.core.messages import CallbackUrl, Currency, SchemeRules
from switch.g2p.types import TransactionId

# -- constrained scalars --------------------------------------------------------------------

Username = Annotated[
    str, Meta(min_length=1, max_length=limits.USERNAME_LENGTH_MAX, pattern=r"^[a-z][a-z0-9._-]*$(?!\n)")
]
Password = Annotated[
    str, Meta(min_length=limits.PASSWORD_LENGTH_MIN, max_length=limits.PASSWORD_LENGTH_MAX)
]
# A login attempt's password: any length up to the bound (a short one simply fails).
PasswordAttempt = Annotated[str, Meta(max_length=limits.PASSWORD_LENGTH_MAX)]
ParticipantId = Annotated[int, Meta(ge=1, le=core_limits.PARTICIPANT_ID_MAX)]
AmountMinor = Annotated[int, Meta(ge=1, le=core_limits.AMOUNT_MINOR_MAX)]
CapMinor = Annotated[int, Meta(ge=0, le=core_limits.NET_DEBIT_CAP_MINOR_MAX)]
DailyMinor = Annotated[int, Meta(ge=0, le=core_limits.DAILY_TOTAL_MINOR_MAX)]
Name = Annotated[str, Meta(min_length=1, max_length=core_limits.TEXT_LENGTH_MAX)]
Note = Annotated[str, Meta(max_length=limits.PROPOSAL_NOTE_LENGTH_MAX)]
ProposalId = Annotated[str, Meta(pattern=r"^p-[0-9a-f]{16}$(?!\n)")]
# A directory bucket category (switch/directory/config.py `participant_buckets`).
Category = Annotated[str, Meta(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$(?!\n)")]
Fingerprint = Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$(?!\n)")]  # SHA-256 of a DER certificate
LedgerId = Annotated[int, Meta(ge=1, le=core_limits.LEDGER_ID_MAX)]
SettlementModelName = Annotated[str, Meta(pattern=r"^(prefunded_rtgs|deferred_net)$(?!\n)")]

_REQUEST = dict(frozen=True, kw_only=True, forbid_unknown_fields=True)
_ANSWER = dict(frozen=True, kw_only=True)


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    VIEWER = 1  # reads every page and every API resource
    OPERATOR = 2  # + suspend/resume; propose and check liquidity, callback URL, category
    ADMIN = 3  # + propose and check currencies, onboarding, keys, certificates; operators


ROLE_NAMES = {role.name.lower(): role for role in Role}


class AdminResult(IntEnum):
    """One outcome of an operator request, declared in the order the checks run: first the
    request (session, CSRF token, role, body), then the action's own checks."""

    OK = 0
    # -- every request -----------------------------------------------------------------
    NOT_AUTHENTICATED = 1  # no session, or it expired
    CSRF_TOKEN_INVALID = 2  # a state-changing request without the session's token
    ROLE_INSUFFICIENT = 3
    VALIDATION_ERROR = 4  # the body or a parameter broke its type
    # -- login -----------------------------------------------------------------------------
    LOGIN_RATE_LIMITED = 10
    LOGIN_FAILED = 11  # unknown user, wrong password or disabled: one answer for all
    LOGIN_BUSY = 12  # too many logins being hashed at once; nothing was tried (Retry-After)
    # -- operators -------------------------------------------------------------------------
    USER_EXISTS = 20
    USER_NOT_FOUND = 21
    USERS_FULL = 22
    # -- participants ----------------------------------------------------------------------
    PARTICIPANT_NOT_FOUND = 30
    # -- maker-checker ---------------------------------------------------------------------
    PROPOSAL_NOT_FOUND = 40
    PROPOSAL_NOT_PENDING = 41
    PROPOSAL_EXPIRED = 42
    CHECKER_MUST_DIFFER = 43  # the maker may not approve or reject their own proposal
    PROPOSALS_FULL = 44
    # -- transfers -------------------------------------------------------------------------
    TRANSFER_NOT_FOUND = 50
    # -- the switch's answer -----------------------------------------------------------------
    SWITCH_REFUSED = 60  # the core answered with a non-OK `Result` (in `core_result`)
    SWITCH_UNAVAILABLE = 61  # the switch could not take the request (starting, stopping)


HTTP_STATUS: dict[AdminResult, int] = {
    AdminResult.OK: 200,
    AdminResult.NOT_AUTHENTICATED: 401,
    AdminResult.CSRF_TOKEN_INVALID: 403,
    AdminResult.ROLE_INSUFFICIENT: 403,
    AdminResult.VALIDATION_ERROR: 400,
    AdminResult.LOGIN_RATE_LIMITED: 429,
    AdminResult.LOGIN_FAILED: 401,
    AdminResult.LOGIN_BUSY: 503,
    AdminResult.USER_EXISTS: 409,
    AdminResult.USER_NOT_FOUND: 404,
    AdminResult.USERS_FULL: 409,
    AdminResult.PARTICIPANT_NOT_FOUND: 404,
    AdminResult.PROPOSAL_NOT_FOUND: 404,
    AdminResult.PROPOSAL_NOT_PENDING: 409,
    AdminResult.PROPOSAL_EXPIRED: 409,
    AdminResult.CHECKER_MUST_DIFFER: 403,
    AdminResult.PROPOSALS_FULL: 409,
    AdminResult.TRANSFER_NOT_FOUND: 404,
    AdminResult.SWITCH_REFUSED: 409,
    AdminResult.SWITCH_UNAVAILABLE: 503,
}
assert set(HTTP_STATUS) == set(AdminResult)


class AdminError(msgspec.Struct, **_ANSWER):
    """The body of every refused request. Nothing was changed when this is the answer."""

    result: str  # AdminResult member name
    code: int  # AdminResult value
    detail: str = ""
    core_result: int = 0  # the switch core's Result when `result` is SWITCH_REFUSED
    retry_after_s: int = 0  # LOGIN_RATE_LIMITED, LOGIN_BUSY: when to try again


class AdminRefusal(Exception):
    """Raised inside the service to refuse a request; the HTTP layer turns it into an
    `AdminError` with the mapped status. Raised before any change is made."""

    def __init__(self, result: AdminResult, detail: str = "", core_result: int = 0,
                 retry_after_s: int = 0):
        super().__init__(f"{result.name}: {detail}" if detail else result.name)
        assert result is not AdminResult.OK
        self.result = result
        self.detail = detail
        self.core_result = core_result
        self.retry_after_s = retry_after_s

    def body(self) -> AdminError:
        return AdminError(result=self.result.name, code=int(self.result), detail=self.detail,
                          core_result=self.core_result, retry_after_s=self.retry_after_s)

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.result]


# -- operators and sessions ----------------------------------------------------------------


class LoginRequest(msgspec.Struct, **_REQUEST):
    username: Annotated[str, Meta(max_length=limits.USERNAME_LENGTH_MAX)]
    password: PasswordAttempt


class SessionView(msgspec.Struct, **_ANSWER):
    """Who is logged in. `csrf_token` must accompany every state-changing request (header
    `X-CSRF-Token` or form field `csrf_token`)."""

    username: str
    role: str
    csrf_token: str
    expires_at_ns: int


class UserCreate(msgspec.Struct, **_REQUEST):
    username: Username
    password: Password
    role: Annotated[str, Meta(pattern=r"^(viewer|operator|admin)$(?!\n)")]


class UserView(msgspec.Struct, **_ANSWER):
    username: str
    role: str
    created_ns: int
    disabled: bool


class User(msgspec.Struct, kw_only=True):
    """A stored operator. The password hash never leaves the store and the login path."""

    username: str
    role: Role
    password_hash: str
    created_ns: int
    disabled: bool = False


class Session(msgspec.Struct, kw_only=True):
    """A stored session. Only the SHA-256 of the cookie's token is stored."""

    token_hash: bytes
    username: str
    role: Role
    csrf_token: str
    created_ns: int
    expires_ns: int  # absolute end
    seen_ns: int  # last request (idle timeout)
    client: str = ""


# -- participants ------------------------------------------------------------------------


class ParticipantStatusChange(msgspec.Struct, **_REQUEST):
    note: Note = ""


class PositionView(msgspec.Struct, **_ANSWER):
    """A participant's account in one currency. `used_minor / limit_minor` is the share of
    its liquidity in use: the ledger lets debits (posted + reserved) reach credits (funding or
    net debit cap, plus what it received) and no further, in both settlement models."""

    currency: str
    exponent: int  # ISO 4217 minor-unit exponent, for display
    settlement_model: str
    account_id: int
    limit_minor: int  # credits posted
    used_minor: int  # debits posted + debits reserved
    available_minor: int  # limit - used: what it can still send
    reserved_minor: int  # debits reserved for in-flight transfers
    net_debit_cap_minor: int  # deferred net: the cap; prefunded: 0
    daily_used_minor: int
    daily_max_minor: int


class ParticipantView(msgspec.Struct, **_ANSWER):
    participant_id: int
    name: str
    status: str
    currencies: list[str]
    positions: list[PositionView]
    kind: str = ""
    callback_url: str = ""
    api_key_ids: list[str] = []
    category: str = ""  # its directory bucket category (anti-enumeration lookups)


class CategoryView(msgspec.Struct, **_ANSWER):
    """A directory bucket category participants can be put in (maker-checker)."""

    category: str
    capacity_tokens: int
    refill_tokens_per_minute: int
    hit_cost_tokens: int
    miss_cost_tokens: int


class Categories(msgspec.Struct, **_ANSWER):
    categories: list[CategoryView]
    default: str  # what a participant with none assigned gets


class Credential(msgspec.Struct, kw_only=True):
    participant_id: int
    api_key_id: str
    api_key_sha256: bytes
    created_ns: int


# -- maker-checker -------------------------------------------------------------------------


class ProposalState(IntEnum):
    """PENDING -> REJECTED | EXPIRED, or PENDING -> APPROVED -> EXECUTED | FAILED. APPROVED is
    recorded before the switch is asked, so a concurrent reject cannot win after the money
    moved, and an APPROVED proposal found at start is re-submitted (the switch deduplicates
    it by its request id, the proposal id)."""

    PENDING = 1
    APPROVED = 2  # a checker approved it; the switch is being asked
    EXECUTED = 3  # the switch carried it out
    FAILED = 4  # the switch refused it (see core_result)
    REJECTED = 5  # the checker said no
    EXPIRED = 6  # nobody checked it in time


_PROPOSAL = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind")


class CurrencyProposal(msgspec.Struct, tag="currency", **_PROPOSAL):
    """Carry a new currency with its settlement model and scheme rules (limits, fees)."""

    currency: Currency
    ledger_id: LedgerId  # ISO 4217 numeric code
    settlement_model: SettlementModelName = "prefunded_rtgs"
    rules: SchemeRules = SchemeRules()
    note: Note = ""


class OnboardProposal(msgspec.Struct, tag="onboard", **_PROPOSAL):
    """Add a participant: its accounts, connector settings, directory category, opening
    funding (prefunded currencies) or net debit cap (deferred-net ones), and its first API
    key, issued when the proposal is carried out and shown once, to the approving admin."""

    participant_id: Annotated[int, Meta(ge=0, le=core_limits.PARTICIPANT_ID_MAX)] = 0  # 0: next
    name: Name
    participant_kind: Annotated[str, Meta(pattern=r"^(bank|wallet|government)$(?!\n)")] = "bank"
    currencies: Annotated[list[Currency], Meta(max_length=core_limits.CURRENCIES_MAX)] = []
    callback_url: CallbackUrl = ""
    category: Annotated[str, Meta(max_length=16, pattern=r"^[A-Za-z0-9_-]*$(?!\n)")] = ""  # "": default
    funding_minor: Annotated[int, Meta(ge=0, le=core_limits.AMOUNT_MINOR_MAX)] = 0
    net_debit_cap_minor: CapMinor = 0
    note: Note = ""


class AccountProposal(msgspec.Struct, tag="account", **_PROPOSAL):
    """Open one more currency account for a participant."""

    participant_id: ParticipantId
    currency: Currency
    note: Note = ""


class CallbackUrlProposal(msgspec.Struct, tag="callback_url", **_PROPOSAL):
    """Where the HTTP connector delivers the participant's callbacks ("" for none)."""

    participant_id: ParticipantId
    callback_url: CallbackUrl
    note: Note = ""


class KeyRotationProposal(msgspec.Struct, tag="rotate_key", **_PROPOSAL):
    """Issue a new API key (shown once, to the approving admin); by default every earlier
    key of the participant stops working at once."""

    participant_id: ParticipantId
    revoke_others: bool = True
    note: Note = ""


class CertificateProposal(msgspec.Struct, tag="certificate", **_PROPOSAL):
    """Accept a TLS client certificate (its SHA-256 fingerprint) as the participant's."""

    participant_id: ParticipantId
    fingerprint_sha256: Fingerprint
    note: Note = ""


class CategoryProposal(msgspec.Struct, tag="category", **_PROPOSAL):
    """Put a participant in a directory bucket category (its anti-enumeration budget)."""

    participant_id: ParticipantId
    category: Category
    note: Note = ""


class FundProposal(msgspec.Struct, tag="fund", **_PROPOSAL):
    """Prefund a participant's settlement account (prefunded RTGS currencies)."""

    participant_id: ParticipantId
    currency: Currency
    amount_minor: AmountMinor
    note: Note = ""


class DefundProposal(msgspec.Struct, tag="defund", **_PROPOSAL):
    """Pay out of a participant's settlement account (prefunded RTGS currencies)."""

    participant_id: ParticipantId
    currency: Currency
    amount_minor: AmountMinor
    note: Note = ""


class NetDebitCapProposal(msgspec.Struct, tag="net_debit_cap", **_PROPOSAL):
    """Set a participant's net debit cap (deferred-net currencies)."""

    participant_id: ParticipantId
    currency: Currency
    cap_minor: CapMinor
    note: Note = ""


class DailyLimitProposal(msgspec.Struct, tag="daily_limit", **_PROPOSAL):
    """Set a participant's own daily total; None restores the scheme's rule."""

    participant_id: ParticipantId
    currency: Currency
    daily_total_max_minor: DailyMinor | None
    note: Note = ""


class G2PBatchProposal(msgspec.Struct, tag="g2p_batch", **_PROPOSAL):
    """Pause, resume or cancel a programme's G2P batch (docs/g2p.md): rows not submitted
    yet wait (pause) or are never paid (cancel); rows in flight finish."""

    participant_id: ParticipantId  # the programme
    transaction_id: TransactionId  # the G2P API's grammar (switch/g2p/types.py)
    action: Literal["pause", "resume", "cancel"]
    note: Note = ""


class MobileMoneyWalletProposal(msgspec.Struct, tag="mobilemoney_wallet", **_PROPOSAL):
    """Put a participant on the GSMA Mobile Money API hub (connectors/mobilemoney), or change
    how it is reached there: its API root for the credits it receives, the transaction type
    and notification it wants, how it authenticates (its API key, or OAuth2 with that key
    as client secret), whether it must send X-Content-Hash. The key Ponte presents to the
    wallet's API is a secret and never part of a proposal (the hub's configuration)."""

    participant_id: ParticipantId
    api_url: CallbackUrl = ""
    credit_type: Annotated[str, Meta(
        pattern=r"^(transfer|inttransfer|merchantpay|disbursement)$(?!\n)")] = "transfer"
    notification: Annotated[str, Meta(pattern=r"^(callback|polling)$(?!\n)")] = "callback"
    account_check: bool = True
    auth: Annotated[str, Meta(pattern=r"^(api_key|oauth2|any)$(?!\n)")] = "any"
    content_hash_required: bool = False
    callback_origins: Annotated[list[CallbackUrl], Meta(max_length=4)] = []
    note: Note = ""


class FspiopParticipantProposal(msgspec.Struct, tag="fspiop_participant", **_PROPOSAL):
    """Put a participant on the FSPIOP hub (connectors/fspiop, docs/fspiop.md), or change
    how it is reached there: its FSP id, the base URL of its FSPIOP API (where the hub
    sends requests and callbacks; "" for a participant of another protocol that only needs
    an FSP id), its JWS public key (PEM) and whether every request must be signed. From
    the next request on: a request signed with the key it replaces is refused."""

    participant_id: ParticipantId
    fsp_id: FspId
    endpoint: CallbackUrl = ""
    public_key_pem: PublicKeyPem = ""
    signature_required: bool = True
    note: Note = ""


ProposalBody = Union[
    FundProposal, DefundProposal, NetDebitCapProposal, DailyLimitProposal, CurrencyProposal,
    OnboardProposal, AccountProposal, CallbackUrlProposal, KeyRotationProposal,
    CertificateProposal, CategoryProposal, G2PBatchProposal, MobileMoneyWalletProposal,
    FspiopParticipantProposal,
]

# The role a proposal kind needs, of its maker and of its checker alike.
PROPOSAL_ROLES: dict[str, Role] = {
    "fund": Role.OPERATOR, "defund": Role.OPERATOR, "net_debit_cap": Role.OPERATOR,
    "daily_limit": Role.OPERATOR, "callback_url": Role.OPERATOR, "category": Role.OPERATOR,
    "currency": Role.ADMIN, "onboard": Role.ADMIN, "account": Role.ADMIN,
    "rotate_key": Role.ADMIN, "certificate": Role.ADMIN, "g2p_batch": Role.OPERATOR,
    "mobilemoney_wallet": Role.ADMIN,
    "fspiop_participant": Role.ADMIN,
}
KEY_ISSUING_KINDS = frozenset({"onboard", "rotate_key"})


def proposal_kind(body: ProposalBody) -> str:
    return type(body).__struct_config__.tag


def proposal_participant_id(body: ProposalBody) -> int:
    """The participant a proposal is about; 0 for a currency."""
    return getattr(body, "participant_id", 0)


def proposal_currency(body: ProposalBody) -> str:
    """The currency a proposal is about; "" when it is not about one."""
    return getattr(body, "currency", "")


assert set(PROPOSAL_ROLES) == {proposal_kind_tag.__struct_config__.tag
                               for proposal_kind_tag in ProposalBody.__args__}


class Decision(msgspec.Struct, **_REQUEST):
    approve: bool
    note: Note = ""


class Proposal(msgspec.Struct, kw_only=True):
    """A stored liquidity change waiting for (or past) its checker."""

    proposal_id: str
    body: ProposalBody
    state: ProposalState
    proposed_by: str
    proposed_ns: int
    decided_by: str = ""
    decided_ns: int = 0
    core_result: int = 0
    detail: str = ""


class ProposalView(msgspec.Struct, **_ANSWER):
    proposal_id: str
    kind: str
    participant_id: int  # 0 for a currency
    currency: str  # "" when the change is not about one currency
    body: ProposalBody
    state: str
    proposed_by: str
    proposed_ns: int
    decided_by: str
    decided_ns: int
    core_result: int
    detail: str
    # Only in the answer to the approval that carried out an onboarding or a key rotation,
    # and only there: the new API key, shown once to the approving admin. Never stored.
    api_key_id: str = ""
    api_key: str = ""


# -- transfers -----------------------------------------------------------------------------


TransferStateName = Annotated[
    str, Meta(pattern=r"^(|received|reserved|forwarded|committed|rejected|expired)$(?!\n)")
]


class TransferQuery(msgspec.Struct, **_REQUEST):
    """Every field narrows the search; empty / 0 means "any". `participant_id` matches the
    payer or the payee; the time range applies to when the switch received the transfer
    (or decided it, when it no longer remembers the receipt)."""

    transfer_id: Annotated[str, Meta(max_length=core_limits.ID_LENGTH_MAX)] = ""
    payer_participant_id: Annotated[int, Meta(ge=0, le=core_limits.PARTICIPANT_ID_MAX)] = 0
    end_to_end_id: Annotated[str, Meta(max_length=core_limits.REFERENCE_LENGTH_MAX)] = ""
    participant_id: Annotated[int, Meta(ge=0, le=core_limits.PARTICIPANT_ID_MAX)] = 0
    state: TransferStateName = ""
    from_ns: Annotated[int, Meta(ge=0, le=core_limits.TIME_NS_MAX)] = 0
    to_ns: Annotated[int, Meta(ge=0, le=core_limits.TIME_NS_MAX)] = 0
    limit: Annotated[int, Meta(ge=1, le=limits.SEARCH_RESULTS_MAX)] = 50
    # Paging: only transfers older than this cursor (the previous page's `next_before_seq`).
    before_seq: Annotated[int, Meta(ge=0, le=core_limits.SEQUENCE_MAX)] = 0


class TransferSummary(msgspec.Struct, **_ANSWER):
    payer_participant_id: int
    transfer_id: str
    payee_participant_id: int
    amount_minor: int
    fee_minor: int
    currency: str
    state: str
    result: int
    result_name: str
    end_to_end_id: str
    received_ns: int  # 0 when the switch no longer knows it
    decided_ns: int  # 0 while in flight


class TransferSearch(msgspec.Struct, **_ANSWER):
    transfers: list[TransferSummary]  # newest first
    scanned: int  # retained transfers looked at
    complete: bool  # False: the scan stopped at its bound before the oldest transfer
    # Ask again with `before_seq` set to this for the next (older) page; 0: no more.
    next_before_seq: int = 0


class TimelineStep(msgspec.Struct, **_ANSWER):
    at_ns: int
    kind: str  # "message", "state" or "ledger"
    name: str
    detail: str = ""


class TransferTimeline(msgspec.Struct, **_ANSWER):
    transfer: TransferSummary
    steps: list[TimelineStep]


# -- audit -----------------------------------------------------------------------------------


class AuditRecord(msgspec.Struct, kw_only=True):
    """One operator action or login. `record_hash` = SHA-256(prev_hash || canonical body);
    the first record's prev_hash is 32 zero bytes (switch/admin/audit.py)."""

    seq: int
    at_ns: int
    actor: str
    action: str
    target: str
    result: str  # AdminResult member name
    detail: str  # JSON text, at most AUDIT_DETAIL_BYTES_MAX bytes
    client: str
    prev_hash: bytes
    record_hash: bytes


class AuditRecordView(msgspec.Struct, **_ANSWER):
    seq: int
    at_ns: int
    actor: str
    action: str
    target: str
    result: str
    detail: str
    client: str
    record_hash: str  # hex


class AuditVerification(msgspec.Struct, **_ANSWER):
    ok: bool
    records_checked: int
    first_broken_seq: int = 0  # 0 when ok
    reason: str = ""
    # The record whose hash the switch's journal holds (AuditAnchored); the chain must reach
    # it with that hash. 0: nothing anchored yet (or verified without the switch).
    anchored_seq: int = 0


# -- directory, health, overview -----------------------------------------------------------------


class DirectoryPanel(msgspec.Struct, **_ANSWER):
    aliases_by_type: dict[str, int]
    aliases_by_participant: dict[str, int]
    resolve_total: int
    resolve_found: int
    resolve_rate: float  # found / total, 0 when nothing was resolved
    rate_limited_total: int
    open_claims: int


class Alert(msgspec.Struct, **_ANSWER):
    kind: str  # "near_limit", "callback_failures", "journal_lag", "suspended"
    severity: str  # "warning" or "critical"
    text: str


class StandbyLag(msgspec.Struct, **_ANSWER):
    standby: str  # host:pid of the standby process
    applied_sequence: int
    lag_records: int  # journal records the primary has and the standby had not applied
    seen_s_ago: float  # when it last reported (about once a second)


class Replication(msgspec.Struct, **_ANSWER):
    """This switch's role among the processes of its journal (docs/operations.md)."""

    role: str  # "primary" or "standby"
    epoch: int  # the journal epoch it writes; 0 for the file journal
    standbys: list[StandbyLag] = []


class Overview(msgspec.Struct, **_ANSWER):
    at_ns: int
    transfers_per_s: float
    success_rate: float  # committed / final, over the last window; 1.0 when none
    # End to end, over the last window, interpolated within the server histogram's bucket.
    latency_p50_ms: float
    latency_p99_ms: float
    outcomes: dict[str, int]  # result name -> count since start
    transfers_total: int
    in_flight: int
    alerts: list[Alert]
    replication: Replication | None = None  # None when the switch cannot say (in-process)


class Health(msgspec.Struct, **_ANSWER):
    status: str  # "ok" or "degraded"
    checks: dict[str, str]
