"""The claims state machine, event by event, with the clock passed in."""

from __future__ import annotations

import pytest

from directory_helpers import DAY_NS, NOW_NS, SECRET
from switch.directory import claims
from switch.directory.config import DirectoryConfig, Secret
from switch.directory.identity import identity_token
from switch.directory.types import (
    AliasRecord,
    AliasStatus,
    AliasType,
    ClaimAction,
    ClaimCancelReason,
    ClaimState,
    ClaimType,
    DirectoryResult,
    NoticeKind,
    OwnerKind,
    Rejection,
)

R = DirectoryResult
A = ClaimAction
S = ClaimState
CONFIG = DirectoryConfig()
OWNER = identity_token(Secret(SECRET), "BR:52998224725")
OTHER = identity_token(Secret(SECRET), "BR:11144477735")


def alias(alias_type=AliasType.MSISDN, owner=OWNER, status=AliasStatus.ACTIVE) -> AliasRecord:
    return AliasRecord(
        alias_type=alias_type, alias_key="+5511987654321", participant_id="donor",
        account_ref="acc-d", owner_token=owner, owner_kind=OwnerKind.PERSON,
        display_initials="JD", status=status, created_ns=NOW_NS, updated_ns=NOW_NS,
    )


def opened(claim_type=ClaimType.PORTABILITY, owner=OWNER, record=None):
    claim, notices = claims.open_claim(
        claim_id="c" * 32, claim_type=claim_type, alias=record or alias(),
        claimer_participant_id="claimer", claimer_account_ref="acc-c",
        claimer_owner_token=owner, claimer_owner_kind=OwnerKind.PERSON,
        claimer_display_initials="MS", now_ns=NOW_NS, config=CONFIG,
    )
    return claim, notices


def test_open_notifies_the_donor_and_sets_the_window():
    claim, notices = opened()
    assert claim.state is S.OPEN
    assert claim.resolution_deadline_ns == NOW_NS + 7 * DAY_NS
    assert [(n.kind, n.participant_id) for n in notices] == [(NoticeKind.CLAIM_OPENED, "donor")]


@pytest.mark.parametrize(("claim_type", "alias_type", "owner", "result"), [
    (ClaimType.PORTABILITY, AliasType.RANDOM, OWNER, R.CLAIM_NOT_ALLOWED_FOR_TYPE),
    (ClaimType.OWNERSHIP, AliasType.RANDOM, OTHER, R.CLAIM_NOT_ALLOWED_FOR_TYPE),
    (ClaimType.OWNERSHIP, AliasType.NATIONAL_ID, OTHER, R.CLAIM_NOT_ALLOWED_FOR_TYPE),
    (ClaimType.PORTABILITY, AliasType.ACCOUNT, OWNER, R.CLAIM_NOT_ALLOWED_FOR_TYPE),
    (ClaimType.PORTABILITY, AliasType.MSISDN, OTHER, R.CLAIM_OWNER_MISMATCH),
    (ClaimType.OWNERSHIP, AliasType.EMAIL, OWNER, R.CLAIM_OWNER_SAME),
])
def test_claims_that_may_not_be_opened(claim_type, alias_type, owner, result):
    claim, notices = opened(claim_type, owner, alias(alias_type))
    assert claim == Rejection(result=result, field=claim.field)
    assert claim.result is result
    assert notices == []


def test_claiming_an_alias_you_already_hold_or_that_is_gone():
    claim, _ = claims.open_claim(
        claim_id="c" * 32, claim_type=ClaimType.PORTABILITY, alias=alias(),
        claimer_participant_id="donor", claimer_account_ref="acc-x", claimer_owner_token=OWNER,
        claimer_owner_kind=OwnerKind.PERSON, claimer_display_initials="JD", now_ns=NOW_NS,
        config=CONFIG,
    )
    assert claim.result is R.CLAIM_ALREADY_HELD
    assert opened(record=alias(status=AliasStatus.SUSPENDED))[0].result is R.ALIAS_NOT_FOUND


def test_portability_happy_path():
    claim, _ = opened()
    claim, rejection, _ = claims.step(claim, A.ACKNOWLEDGE, "donor", NOW_NS + 1, CONFIG)
    assert rejection is None and claim.state is S.WAITING_RESOLUTION
    claim, rejection, notices = claims.step(claim, A.CONFIRM, "donor", NOW_NS + 2, CONFIG)
    assert rejection is None and claim.state is S.CONFIRMED
    assert claim.completion_deadline_ns == NOW_NS + 2 + 7 * DAY_NS
    assert [(n.kind, n.participant_id) for n in notices] == [
        (NoticeKind.CLAIM_CONFIRMED, "claimer")]
    claim, rejection, notices = claims.step(claim, A.COMPLETE, "claimer", NOW_NS + 3, CONFIG)
    assert rejection is None and claim.state is S.COMPLETED
    assert {n.participant_id for n in notices} == {"claimer", "donor"}
    moved = claims.alias_after_completion(claim, alias(), NOW_NS + 3)
    assert (moved.participant_id, moved.account_ref, moved.owner_token) == (
        "claimer", "acc-c", OWNER)


def test_portability_without_an_answer_is_cancelled_when_the_window_ends():
    claim, _ = opened()
    still, notices = claims.expire(claim, NOW_NS + 7 * DAY_NS - 1, CONFIG)
    assert still == claim and notices == []
    claim, notices = claims.expire(claim, NOW_NS + 7 * DAY_NS, CONFIG)
    assert claim.state is S.CANCELLED
    assert claim.cancel_reason is ClaimCancelReason.RESOLUTION_TIMEOUT
    assert {(n.kind, n.participant_id) for n in notices} == {
        (NoticeKind.CLAIM_CANCELLED, "donor"), (NoticeKind.CLAIM_CANCELLED, "claimer")}


def test_ownership_without_an_answer_is_confirmed_then_must_complete_in_time():
    claim, _ = opened(ClaimType.OWNERSHIP, OTHER)
    claim, notices = claims.expire(claim, NOW_NS + 7 * DAY_NS, CONFIG)
    assert claim.state is S.CONFIRMED
    assert claim.completion_deadline_ns == NOW_NS + 14 * DAY_NS
    assert {n.kind for n in notices} == {NoticeKind.CLAIM_CONFIRMED}
    claim, notices = claims.expire(claim, NOW_NS + 14 * DAY_NS, CONFIG)
    assert claim.state is S.CANCELLED
    assert claim.cancel_reason is ClaimCancelReason.COMPLETION_TIMEOUT
    # Very late: both windows pass in one step.
    late, _ = opened(ClaimType.OWNERSHIP, OTHER)
    late, notices = claims.expire(late, NOW_NS + 30 * DAY_NS, CONFIG)
    assert late.state is S.CANCELLED and len(notices) == 4


def test_ownership_completion_takes_the_claimers_identity():
    claim, _ = opened(ClaimType.OWNERSHIP, OTHER)
    claim, _, _ = claims.step(claim, A.CONFIRM, "donor", NOW_NS + 1, CONFIG)
    claim, rejection, _ = claims.step(claim, A.COMPLETE, "claimer", NOW_NS + 2, CONFIG)
    assert rejection is None
    moved = claims.alias_after_completion(claim, alias(), NOW_NS + 2)
    assert moved.owner_token == OTHER and moved.display_initials == "MS"


# (state reached by these actions, action, actor, expected result or new state)
TABLE = [
    ([], A.ACKNOWLEDGE, "claimer", R.CLAIM_NOT_PARTY),
    ([], A.ACKNOWLEDGE, "stranger", R.CLAIM_NOT_PARTY),
    ([], A.CONFIRM, "claimer", R.CLAIM_NOT_PARTY),
    ([], A.COMPLETE, "donor", R.CLAIM_NOT_PARTY),
    ([], A.COMPLETE, "claimer", R.CLAIM_STATE_INVALID),
    ([], A.CANCEL, "stranger", R.CLAIM_NOT_PARTY),
    ([], A.CANCEL, "donor", S.CANCELLED),
    ([], A.CANCEL, "claimer", S.CANCELLED),
    ([], A.CONFIRM, "donor", S.CONFIRMED),
    ([A.ACKNOWLEDGE], A.ACKNOWLEDGE, "donor", R.CLAIM_STATE_INVALID),
    ([A.ACKNOWLEDGE], A.CONFIRM, "donor", S.CONFIRMED),
    ([A.ACKNOWLEDGE], A.CANCEL, "donor", S.CANCELLED),
    ([A.CONFIRM], A.CANCEL, "donor", R.CLAIM_STATE_INVALID),
    ([A.CONFIRM], A.CANCEL, "claimer", S.CANCELLED),
    ([A.CONFIRM], A.CONFIRM, "donor", R.CLAIM_STATE_INVALID),
    ([A.CONFIRM], A.COMPLETE, "claimer", S.COMPLETED),
    ([A.CANCEL], A.CONFIRM, "donor", R.CLAIM_STATE_INVALID),
    ([A.CONFIRM, A.COMPLETE], A.CANCEL, "claimer", R.CLAIM_STATE_INVALID),
]


@pytest.mark.parametrize(("path", "action", "actor", "expected"), TABLE)
def test_transition_table(path, action, actor, expected):
    claim, _ = opened()
    for earlier in path:
        by = "claimer" if earlier is A.COMPLETE else "donor"
        claim, rejection, _ = claims.step(claim, earlier, by, NOW_NS + 1, CONFIG)
        assert rejection is None
    after, rejection, _ = claims.step(claim, action, actor, NOW_NS + 2, CONFIG)
    if isinstance(expected, DirectoryResult):
        assert rejection is not None and rejection.result is expected
        assert after == claim  # a refused event changes nothing
    else:
        assert rejection is None and after.state is expected


def test_an_action_after_the_window_sees_the_timeout_first():
    claim, _ = opened()
    after, rejection, notices = claims.step(claim, A.CONFIRM, "donor", NOW_NS + 8 * DAY_NS,
                                            CONFIG)
    assert rejection.result is R.CLAIM_STATE_INVALID
    assert after.state is S.CANCELLED  # the timeout still has to be stored
    assert {n.kind for n in notices} == {NoticeKind.CLAIM_CANCELLED}
