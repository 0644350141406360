"""The claims state machine: moving an alias to another participant or another owner.

Portability: the same owner moves an alias to an account at another participant.
Ownership: a phone number or e-mail now belongs to someone else, who claims it.

    OPEN --ack--> WAITING_RESOLUTION --confirm--> CONFIRMED --complete--> COMPLETED
      \\________________\\__ cancel (donor or claimer) __\\__ cancel (claimer) __> CANCELLED

Timeouts (checked before every event, and by `expire`): when the resolution window ends
without an answer from the donor, a portability claim is cancelled (the owner did not
confirm the move) and an ownership claim is confirmed (the holder did not defend the
alias); a confirmed claim the claimer does not complete within the completion window is
cancelled. RANDOM keys are never claimable; ownership claims are only for MSISDN and EMAIL.

Pure functions of (claim, event, now_ns): no clock reads, no I/O. They return the claim to
persist, an optional rejection and the notices to deliver; the alias itself moves only when
the store applies a COMPLETED claim.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from switch.directory.config import DirectoryConfig
from switch.directory.types import (
    AliasRecord,
    AliasStatus,
    AliasType,
    Claim,
    ClaimAction,
    ClaimCancelReason,
    ClaimState,
    ClaimType,
    ClaimView,
    DirectoryResult,
    Notice,
    NoticeKind,
    OwnerKind,
    Rejection,
)

R = DirectoryResult
NS_PER_MS = 1_000_000
_replace = msgspec.structs.replace

PORTABLE_TYPES = frozenset({AliasType.MSISDN, AliasType.EMAIL, AliasType.NATIONAL_ID})
OWNERSHIP_TYPES = frozenset({AliasType.MSISDN, AliasType.EMAIL})
_ALLOWED = {ClaimType.PORTABILITY: PORTABLE_TYPES, ClaimType.OWNERSHIP: OWNERSHIP_TYPES}


class ClaimStep(NamedTuple):
    claim: Claim  # the claim to persist (may have changed even when the event was refused)
    rejection: Rejection | None
    notices: list[Notice]


def _notice(kind: NoticeKind, participant_id: str, claim: Claim) -> Notice:
    return Notice(kind=kind, participant_id=participant_id, claim_id=claim.claim_id,
                  alias_type=int(claim.alias_type))


def _both(kind: NoticeKind, claim: Claim) -> list[Notice]:
    notices = [_notice(kind, claim.claimer_participant_id, claim)]
    if claim.donor_participant_id != claim.claimer_participant_id:
        notices.append(_notice(kind, claim.donor_participant_id, claim))
    return notices


def open_claim(
    *,
    claim_id: str,
    claim_type: ClaimType,
    alias: AliasRecord | None,
    claimer_participant_id: str,
    claimer_account_ref: str,
    claimer_owner_token: bytes,
    claimer_owner_kind: OwnerKind,
    claimer_display_initials: str,
    now_ns: int,
    config: DirectoryConfig,
) -> tuple[Claim | Rejection, list[Notice]]:
    """Open a claim on `alias` (as stored now). The donor is told at once."""
    if alias is None or alias.status is not AliasStatus.ACTIVE:
        return Rejection(result=R.ALIAS_NOT_FOUND, field="alias_value"), []
    if alias.alias_type not in _ALLOWED[claim_type]:
        return Rejection(result=R.CLAIM_NOT_ALLOWED_FOR_TYPE, field="claim_type"), []
    same_owner = alias.owner_token == claimer_owner_token
    if same_owner and alias.participant_id == claimer_participant_id:
        return Rejection(result=R.CLAIM_ALREADY_HELD, field="claimer_participant_id"), []
    if claim_type is ClaimType.PORTABILITY and not same_owner:
        return Rejection(result=R.CLAIM_OWNER_MISMATCH, field="claimer_owner_national_id"), []
    if claim_type is ClaimType.OWNERSHIP and same_owner:
        return Rejection(result=R.CLAIM_OWNER_SAME, field="claimer_owner_national_id"), []
    claim = Claim(
        claim_id=claim_id,
        claim_type=claim_type,
        alias_type=alias.alias_type,
        alias_key=alias.alias_key,
        donor_participant_id=alias.participant_id,
        donor_account_ref=alias.account_ref,
        donor_owner_token=alias.owner_token,
        claimer_participant_id=claimer_participant_id,
        claimer_account_ref=claimer_account_ref,
        claimer_owner_token=claimer_owner_token,
        claimer_owner_kind=claimer_owner_kind,
        claimer_display_initials=claimer_display_initials,
        state=ClaimState.OPEN,
        cancel_reason=ClaimCancelReason.NONE,
        opened_ns=now_ns,
        resolution_deadline_ns=now_ns + config.claim_resolution_window_ms * NS_PER_MS,
        completion_deadline_ns=0,
        updated_ns=now_ns,
    )
    return claim, [_notice(NoticeKind.CLAIM_OPENED, alias.participant_id, claim)]


def expire(claim: Claim, now_ns: int, config: DirectoryConfig) -> tuple[Claim, list[Notice]]:
    """Apply the windows that ended at or before `now_ns`."""
    notices: list[Notice] = []
    if claim.state in (ClaimState.OPEN, ClaimState.WAITING_RESOLUTION) and (
        now_ns >= claim.resolution_deadline_ns
    ):
        if claim.claim_type is ClaimType.PORTABILITY:
            claim = _replace(
                claim, state=ClaimState.CANCELLED,
                cancel_reason=ClaimCancelReason.RESOLUTION_TIMEOUT, updated_ns=now_ns,
            )
            return claim, _both(NoticeKind.CLAIM_CANCELLED, claim)
        claim = _replace(
            claim,
            state=ClaimState.CONFIRMED,
            completion_deadline_ns=(
                claim.resolution_deadline_ns + config.claim_completion_window_ms * NS_PER_MS
            ),
            updated_ns=now_ns,
        )
        notices.extend(_both(NoticeKind.CLAIM_CONFIRMED, claim))
    if claim.state is ClaimState.CONFIRMED and now_ns >= claim.completion_deadline_ns:
        claim = _replace(
            claim, state=ClaimState.CANCELLED,
            cancel_reason=ClaimCancelReason.COMPLETION_TIMEOUT, updated_ns=now_ns,
        )
        notices.extend(_both(NoticeKind.CLAIM_CANCELLED, claim))
    return claim, notices


def step(
    claim: Claim,
    action: ClaimAction,
    actor_participant_id: str,
    now_ns: int,
    config: DirectoryConfig,
) -> ClaimStep:
    """Apply one participant's action to a claim, after the windows that already ended."""
    claim, notices = expire(claim, now_ns, config)
    is_donor = actor_participant_id == claim.donor_participant_id
    is_claimer = actor_participant_id == claim.claimer_participant_id
    state = claim.state

    def refuse(result: DirectoryResult, field: str) -> ClaimStep:
        return ClaimStep(claim, Rejection(result=result, field=field), notices)

    if action is ClaimAction.ACKNOWLEDGE or action is ClaimAction.CONFIRM:
        if not is_donor:
            return refuse(R.CLAIM_NOT_PARTY, "participant_id")
        if state not in (ClaimState.OPEN, ClaimState.WAITING_RESOLUTION):
            return refuse(R.CLAIM_STATE_INVALID, "claim_id")
        if action is ClaimAction.ACKNOWLEDGE:
            if state is not ClaimState.OPEN:
                return refuse(R.CLAIM_STATE_INVALID, "claim_id")
            claim = _replace(claim, state=ClaimState.WAITING_RESOLUTION, updated_ns=now_ns)
            return ClaimStep(claim, None, notices)
        claim = _replace(
            claim, state=ClaimState.CONFIRMED, updated_ns=now_ns,
            completion_deadline_ns=now_ns + config.claim_completion_window_ms * NS_PER_MS,
        )
        notices.append(_notice(NoticeKind.CLAIM_CONFIRMED, claim.claimer_participant_id, claim))
        return ClaimStep(claim, None, notices)

    if action is ClaimAction.CANCEL:
        if is_claimer and state in (ClaimState.OPEN, ClaimState.WAITING_RESOLUTION,
                                    ClaimState.CONFIRMED):
            reason = ClaimCancelReason.CLAIMER_CANCELLED
        elif is_donor and state in (ClaimState.OPEN, ClaimState.WAITING_RESOLUTION):
            reason = ClaimCancelReason.DONOR_CANCELLED
        elif not (is_donor or is_claimer):
            return refuse(R.CLAIM_NOT_PARTY, "participant_id")
        else:
            return refuse(R.CLAIM_STATE_INVALID, "claim_id")
        claim = _replace(claim, state=ClaimState.CANCELLED, cancel_reason=reason,
                         updated_ns=now_ns)
        notices.extend(_both(NoticeKind.CLAIM_CANCELLED, claim))
        return ClaimStep(claim, None, notices)

    assert action is ClaimAction.COMPLETE
    if not is_claimer:
        return refuse(R.CLAIM_NOT_PARTY, "participant_id")
    if state is not ClaimState.CONFIRMED:
        return refuse(R.CLAIM_STATE_INVALID, "claim_id")
    claim = _replace(claim, state=ClaimState.COMPLETED, updated_ns=now_ns)
    notices.extend(_both(NoticeKind.CLAIM_COMPLETED, claim))
    return ClaimStep(claim, None, notices)


def cancel_alias_changed(claim: Claim, now_ns: int) -> tuple[Claim, list[Notice]]:
    """The alias moved or vanished under a live claim: the claim cannot complete."""
    assert claim.state in (ClaimState.OPEN, ClaimState.WAITING_RESOLUTION, ClaimState.CONFIRMED)
    claim = _replace(claim, state=ClaimState.CANCELLED,
                     cancel_reason=ClaimCancelReason.ALIAS_CHANGED, updated_ns=now_ns)
    return claim, _both(NoticeKind.CLAIM_CANCELLED, claim)


def alias_after_completion(claim: Claim, alias: AliasRecord, now_ns: int) -> AliasRecord:
    """The alias record once a completed claim is applied: the claimer's account, and for an
    ownership claim the claimer's identity and name."""
    assert claim.state is ClaimState.COMPLETED
    return _replace(
        alias,
        participant_id=claim.claimer_participant_id,
        account_ref=claim.claimer_account_ref,
        owner_token=claim.claimer_owner_token,
        owner_kind=claim.claimer_owner_kind,
        display_initials=claim.claimer_display_initials,
        updated_ns=now_ns,
    )


def alias_unchanged(claim: Claim, alias: AliasRecord | None) -> bool:
    return (
        alias is not None
        and alias.status is AliasStatus.ACTIVE
        and alias.participant_id == claim.donor_participant_id
        and alias.account_ref == claim.donor_account_ref
        and alias.owner_token == claim.donor_owner_token
    )


def view(claim: Claim) -> ClaimView:
    return ClaimView(
        claim_id=claim.claim_id, claim_type=claim.claim_type, alias_type=claim.alias_type,
        donor_participant_id=claim.donor_participant_id,
        claimer_participant_id=claim.claimer_participant_id, state=claim.state,
        cancel_reason=claim.cancel_reason, opened_ns=claim.opened_ns,
        resolution_deadline_ns=claim.resolution_deadline_ns,
        completion_deadline_ns=claim.completion_deadline_ns,
    )

