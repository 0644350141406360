"""Registration rules that need stored state: uniqueness and the caps per owner and account.

The stores call these inside their write transaction, with the rows and counts they read
under lock, so the decision is made in one place for every backend. Pure functions.
"""

from __future__ import annotations

from switch.directory.config import DirectoryConfig
from switch.directory.types import AliasRecord, DirectoryResult, OwnerKind

R = DirectoryResult


def owner_cap(config: DirectoryConfig, owner_kind: OwnerKind) -> int:
    if owner_kind is OwnerKind.BUSINESS:
        return config.aliases_per_business_max
    return config.aliases_per_person_max


def same_registration(existing: AliasRecord, new: AliasRecord) -> bool:
    return (
        existing.participant_id == new.participant_id
        and existing.account_ref == new.account_ref
        and existing.owner_token == new.owner_token
    )


def admit_batch(
    records: list[AliasRecord],
    existing: dict[tuple[int, str], AliasRecord],
    owner_counts: dict[bytes, int],
    account_counts: dict[tuple[str, str], int],
    config: DirectoryConfig,
) -> list[DirectoryResult]:
    """Decide every registration of a batch in order, as if each were applied before the
    next: `existing` holds the stored aliases with the batch's keys, the counts hold the
    stored aliases per owner token and per (participant, account). Counts are updated in
    place with the admitted records.

    The caps are decided before whether someone else holds the alias, so ALIAS_TAKEN is
    only ever answered where the registration would otherwise have been written: an owner
    at its cap (an identity the caller chose) gets OWNER_CAP_REACHED whatever the alias, and
    cannot use the refusal to tell held aliases from free ones without writing anything."""
    results = []
    taken = dict(existing)
    for record in records:
        key = (int(record.alias_type), record.alias_key)
        held = taken.get(key)
        if held is not None and same_registration(held, record):
            results.append(R.ALIAS_EXISTS)
            continue
        owner_count = owner_counts.get(record.owner_token, 0)
        if owner_count >= owner_cap(config, record.owner_kind):
            results.append(R.OWNER_CAP_REACHED)
            continue
        account = (record.participant_id, record.account_ref)
        account_count = account_counts.get(account, 0)
        if account_count >= config.aliases_per_account_max:
            results.append(R.ACCOUNT_CAP_REACHED)
            continue
        if held is not None:
            results.append(R.ALIAS_TAKEN)
            continue
        taken[key] = record
        owner_counts[record.owner_token] = owner_count + 1
        account_counts[account] = account_count + 1
        results.append(R.OK)
    return results


def move_outcome(
    owner_count: int, account_count: int, owner_kind: OwnerKind, owner_changes: bool,
    account_changes: bool, config: DirectoryConfig,
) -> DirectoryResult:
    """Caps for an alias moving to another account (update) or owner (claim completion):
    the counts are those of the destination, not including the alias itself."""
    if owner_changes and owner_count >= owner_cap(config, owner_kind):
        return R.OWNER_CAP_REACHED
    if account_changes and account_count >= config.aliases_per_account_max:
        return R.ACCOUNT_CAP_REACHED
    return R.OK
