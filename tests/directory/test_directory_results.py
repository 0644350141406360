"""The directory's numbers are a wire and storage format: they never move."""

from __future__ import annotations

from switch.directory.types import (
    AliasStatus,
    AliasType,
    ClaimAction,
    ClaimCancelReason,
    ClaimState,
    ClaimType,
    DirectoryResult,
    NoticeKind,
    OwnerKind,
)

# Declaration order is check order (see DirectoryResult's docstring). Appending is fine;
# moving or renumbering a member breaks stored rows and clients.
RESULTS = [
    "OK", "FIELD_TYPE_UNKNOWN", "FIELD_EMPTY", "FIELD_TOO_LONG", "FIELD_COUNTRY_UNKNOWN",
    "FIELD_MALFORMED", "FIELD_CHECKSUM_INVALID", "RANDOM_KEY_CHOSEN_BY_CLIENT",
    "NATIONAL_ID_NOT_OWNERS", "ALIAS_EXISTS", "ALIAS_TAKEN", "ALIAS_NOT_FOUND",
    "ALIAS_HELD_BY_OTHER_PARTICIPANT", "ALIAS_CHANGED", "CLAIM_PENDING", "OWNER_CAP_REACHED",
    "ACCOUNT_CAP_REACHED", "RATE_LIMITED", "CLAIM_NOT_ALLOWED_FOR_TYPE", "CLAIM_ALREADY_HELD",
    "CLAIM_OWNER_MISMATCH", "CLAIM_OWNER_SAME", "CLAIM_ALREADY_OPEN", "CLAIM_NOT_FOUND",
    "CLAIM_NOT_PARTY", "CLAIM_STATE_INVALID", "MAPPER_LINK_STALE", "MAPPER_ID_NOT_LINKED",
    "MAPPER_NOT_HOLDER",
]


def test_every_result_in_declaration_order_with_stable_numbers():
    for number, (member, name) in enumerate(zip(DirectoryResult, RESULTS, strict=True)):
        assert member.name == name
        assert member.value == number


def test_other_enums_keep_their_numbers():
    assert [(m.name, m.value) for m in AliasType] == [
        ("MSISDN", 1), ("EMAIL", 2), ("NATIONAL_ID", 3), ("HANDLE", 4), ("RANDOM", 5),
        ("ACCOUNT", 6)]
    assert [m.value for m in OwnerKind] == [1, 2]
    assert [m.value for m in AliasStatus] == [1, 2]
    assert [m.name for m in ClaimState] == [
        "OPEN", "WAITING_RESOLUTION", "CONFIRMED", "COMPLETED", "CANCELLED"]
    assert [m.value for m in ClaimState] == [1, 2, 3, 4, 5]
    assert [m.value for m in ClaimType] == [1, 2]
    assert [m.value for m in ClaimAction] == [1, 2, 3, 4]
    assert [m.value for m in ClaimCancelReason] == [0, 1, 2, 3, 4, 5]
    assert [m.value for m in NoticeKind] == [1, 2, 3, 4, 5]
