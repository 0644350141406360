"""The directory's vocabulary: alias types, result codes, records, requests and answers.

Numbers here are a wire and storage format: never renumber a member, add new ones at the end
of their enum. Nothing in this module may hold or print a raw national ID: records carry the
owner's identity token (an HMAC), answers carry neither the token nor other aliases of the
owner.
"""

from __future__ import annotations

from enum import IntEnum

import msgspec


class AliasType(IntEnum):
    MSISDN = 1
    EMAIL = 2
    NATIONAL_ID = 3
    HANDLE = 4
    RANDOM = 5
    ACCOUNT = 6


class OwnerKind(IntEnum):
    PERSON = 1
    BUSINESS = 2


class AliasStatus(IntEnum):
    ACTIVE = 1
    # Set by the operator; a suspended alias answers ALIAS_NOT_FOUND to payers.
    SUSPENDED = 2


class DirectoryResult(IntEnum):
    """Outcome of a directory operation, declared in the order the checks run.

    Field checks come first and the answer names the field (`Rejection.field`); each field
    runs them top to bottom (empty, too long, country, malformed, checksum). Then the checks
    against stored state, then the anti-enumeration charge, then claims and the mapper.
    One exception, for privacy: a registration checks the caps before ALIAS_TAKEN (see
    `rules.admit_batch`), and directory writes pass the anti-enumeration gate before the
    store is asked.
    """

    OK = 0
    # --- one field at a time ---
    FIELD_TYPE_UNKNOWN = 1  # an enum-valued field (alias_type, owner_kind, ...) is no member
    FIELD_EMPTY = 2
    FIELD_TOO_LONG = 3
    FIELD_COUNTRY_UNKNOWN = 4  # a national ID for a country the scheme has no format for
    FIELD_MALFORMED = 5
    FIELD_CHECKSUM_INVALID = 6
    RANDOM_KEY_CHOSEN_BY_CLIENT = 7  # RANDOM keys are issued by the directory
    # --- between fields ---
    NATIONAL_ID_NOT_OWNERS = 8  # a NATIONAL_ID alias must be the owner's own ID
    # --- stored state ---
    ALIAS_EXISTS = 9  # the same registration again: nothing changes, callers treat it as OK
    ALIAS_TAKEN = 10  # held for another account, owner or participant: open a claim
    ALIAS_NOT_FOUND = 11  # also: not held by the caller, whoever else may hold it
    # Retired: it told a caller that another participant holds an alias. Never answered
    # now (ALIAS_NOT_FOUND instead); the number stays taken.
    ALIAS_HELD_BY_OTHER_PARTICIPANT = 12
    ALIAS_CHANGED = 13  # moved or vanished since it was read (a concurrent write, a claim)
    CLAIM_PENDING = 14  # the alias has a live claim: the holder must answer it first
    OWNER_CAP_REACHED = 15
    ACCOUNT_CAP_REACHED = 16
    # --- anti-enumeration ---
    RATE_LIMITED = 17
    # --- claims ---
    CLAIM_NOT_ALLOWED_FOR_TYPE = 18  # RANDOM keys are not portable; ownership: MSISDN/EMAIL
    CLAIM_ALREADY_HELD = 19  # the claimer already holds the alias
    CLAIM_OWNER_MISMATCH = 20  # portability is for the same owner only
    CLAIM_OWNER_SAME = 21  # an ownership claim by the current owner: use portability
    CLAIM_ALREADY_OPEN = 22
    CLAIM_NOT_FOUND = 23
    CLAIM_NOT_PARTY = 24  # the actor is not the side of the claim allowed to do this
    CLAIM_STATE_INVALID = 25  # the event is not allowed in the claim's current state
    # --- G2P mapper ---
    MAPPER_LINK_STALE = 26  # an older link than the one held: the latest link wins
    MAPPER_ID_NOT_LINKED = 27
    MAPPER_NOT_HOLDER = 28  # unlink by a participant that does not hold the link


class ClaimType(IntEnum):
    PORTABILITY = 1  # same owner, new participant
    OWNERSHIP = 2  # the phone number or e-mail now belongs to someone else


class ClaimState(IntEnum):
    OPEN = 1
    WAITING_RESOLUTION = 2
    CONFIRMED = 3
    COMPLETED = 4
    CANCELLED = 5


CLAIM_STATES_LIVE = (ClaimState.OPEN, ClaimState.WAITING_RESOLUTION, ClaimState.CONFIRMED)


class ClaimAction(IntEnum):
    ACKNOWLEDGE = 1  # donor has seen the claim and is asking its customer
    CONFIRM = 2  # donor releases the alias
    CANCEL = 3  # donor (before confirmation) or claimer (before completion) withdraws
    COMPLETE = 4  # claimer takes the alias over


class ClaimCancelReason(IntEnum):
    NONE = 0
    CLAIMER_CANCELLED = 1
    DONOR_CANCELLED = 2
    RESOLUTION_TIMEOUT = 3  # portability: the donor did not answer in the window
    COMPLETION_TIMEOUT = 4  # the claimer did not complete in the window after confirmation
    ALIAS_CHANGED = 5


class NoticeKind(IntEnum):
    CLAIM_OPENED = 1  # to the donor
    CLAIM_CONFIRMED = 2  # to the claimer (and the donor, when the window confirmed it)
    CLAIM_CANCELLED = 3  # to both sides
    CLAIM_COMPLETED = 4  # to both sides
    MAPPER_MOVED_OUT = 5  # to the participant that held a G2P link before


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """A typed refusal. `field` names the request field at fault; the value is never echoed."""

    result: DirectoryResult
    field: str = ""
    retry_after_ms: int = 0


class AliasRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One stored alias. `alias_key` is the normalised value, except for NATIONAL_ID where it
    is the hex identity token (the raw ID is never stored). Only the initials of the display
    name are kept; the masked name is derived from them."""

    alias_type: AliasType
    alias_key: str
    participant_id: str
    account_ref: str
    owner_token: bytes
    owner_kind: OwnerKind
    display_initials: str
    status: AliasStatus
    created_ns: int
    updated_ns: int


class RegisterAlias(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Register an alias for an account. Fields are loosely typed on purpose: the directory
    checks them itself so that every bad value gets a result code naming the field."""

    alias_type: int
    alias_value: str = ""  # must stay empty for RANDOM: the directory issues the key
    participant_id: str
    account_ref: str
    owner_national_id: str
    owner_kind: int = OwnerKind.PERSON
    display_name: str


class UpdateAlias(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Point an alias at another account of the same owner, or change the display name.
    Empty strings mean "unchanged"."""

    alias_type: int
    alias_value: str
    participant_id: str
    account_ref: str = ""
    display_name: str = ""


class ResolveRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alias_type: int
    alias_value: str
    payer_participant_id: str
    payer_user_id: str
    # The payer resolved this alias a moment ago and now pays it: that resolve paid for the
    # lookup, so this one is admitted or refused on the buckets like any other but costs
    # nothing (the server sets it, once per resolve; see docs/directory.md).
    prepaid: bool = False


class RegisteredAlias(msgspec.Struct, frozen=True, kw_only=True):
    """Answer to a registration. `alias_value` is the normalised value (the issued key for
    RANDOM) and empty for NATIONAL_ID, whose value the caller already knows."""

    alias_type: AliasType
    alias_value: str
    participant_id: str
    account_ref: str
    display_name_masked: str
    created_ns: int


class ResolvedAlias(msgspec.Struct, frozen=True, kw_only=True):
    """What a payer may learn: where to send the money and a masked name to show. Never the
    owner token or other aliases of the owner."""

    alias_type: AliasType
    participant_id: str
    account_ref: str
    display_name_masked: str


class OpenClaim(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    claim_type: int
    alias_type: int
    alias_value: str
    claimer_participant_id: str
    claimer_account_ref: str
    claimer_owner_national_id: str
    claimer_owner_kind: int = OwnerKind.PERSON
    claimer_display_name: str


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    claim_id: str
    claim_type: ClaimType
    alias_type: AliasType
    alias_key: str
    donor_participant_id: str
    # The donor's account and owner when the claim opened; completion checks nothing moved.
    donor_account_ref: str
    donor_owner_token: bytes
    claimer_participant_id: str
    claimer_account_ref: str
    claimer_owner_token: bytes
    claimer_owner_kind: OwnerKind
    claimer_display_initials: str
    state: ClaimState
    cancel_reason: ClaimCancelReason
    opened_ns: int
    resolution_deadline_ns: int
    completion_deadline_ns: int  # 0 until confirmed
    updated_ns: int


class ClaimView(msgspec.Struct, frozen=True, kw_only=True):
    """A claim as shown to one of its two participants: no owner tokens."""

    claim_id: str
    claim_type: ClaimType
    alias_type: AliasType
    donor_participant_id: str
    claimer_participant_id: str
    state: ClaimState
    cancel_reason: ClaimCancelReason
    opened_ns: int
    resolution_deadline_ns: int
    completion_deadline_ns: int


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """Something a participant must be told. The server delivers it; the directory returns
    it so that the decision and the message come from one place."""

    kind: NoticeKind
    participant_id: str
    claim_id: str = ""
    alias_type: int = 0
    fa: str = ""  # G2P financial address the notice is about (moved-out notices)


class MapperLink(msgspec.Struct, frozen=True, kw_only=True):
    """G2P mapper record: identity token -> preferred disbursement account."""

    id_token: bytes
    participant_id: str
    account_ref: str
    linked_ns: int


class MapperLinkRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """G2P Connect `link_request` item, narrowed: `id` is the beneficiary's national ID,
    the financial address is the caller's account reference."""

    id: str
    participant_id: str
    account_ref: str
    timestamp_ns: int = 0  # the request's own time; 0 means "now"


class AccountProviderInfo(msgspec.Struct, frozen=True, kw_only=True):
    code: str  # the participant id
    name: str = ""


class MapperResolution(msgspec.Struct, frozen=True, kw_only=True):
    """G2P Connect `resolve_response` item, narrowed to what is needed to pay."""

    fa: str  # "<account_ref>@<participant_id>"
    account_provider_info: AccountProviderInfo
    account_ref: str
    status_reason_code: str = "succ.fa.active"


class ImportSummary(msgspec.Struct, kw_only=True):
    rows: int = 0
    registered: int = 0
    existing: int = 0
    rejected: int = 0
    # (row number counted from 1, rejection); at most IMPORT_REJECTIONS_KEPT_MAX kept.
    rejections: list[tuple[int, Rejection]] = msgspec.field(default_factory=list)
