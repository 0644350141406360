"""G2P mapper rules: national identity -> the account a programme should pay.

Field names follow G2P Connect's mapper API (`id`, `fa`, `account_provider_info`). The
latest link wins: a link older than the one held is refused (so replays and reordering
cannot move money back to an old account), and the participant that held the link before
gets a moved-out notice. Resolving returns only what is needed to pay. Pure functions;
the identity is known here only as its token.
"""

from __future__ import annotations

from switch.directory import limits
from switch.directory.types import (
    AccountProviderInfo,
    DirectoryResult,
    MapperLink,
    MapperResolution,
    Notice,
    NoticeKind,
    Rejection,
)

R = DirectoryResult
_NS_PER_MS = 1_000_000


def financial_address(participant_id: str, account_ref: str) -> str:
    """G2P Connect `fa`: "<account>@<provider>"."""
    return f"{account_ref}@{participant_id}"


def link(
    current: MapperLink | None, id_token: bytes, participant_id: str, account_ref: str,
    linked_ns: int, now_ns: int | None = None,
) -> tuple[MapperLink | Rejection, list[Notice]]:
    # A link stamped ahead of the clock would make every later link stale: the beneficiary
    # locked in at that bank. Only clock skew is allowed (None: the caller has no clock).
    if now_ns is not None and linked_ns > now_ns + limits.MAPPER_LINK_AHEAD_MS_MAX * _NS_PER_MS:
        return Rejection(result=R.FIELD_MALFORMED, field="timestamp_ns"), []
    if current is not None and linked_ns < current.linked_ns:
        return Rejection(result=R.MAPPER_LINK_STALE, field="timestamp_ns"), []
    new = MapperLink(id_token=id_token, participant_id=participant_id,
                     account_ref=account_ref, linked_ns=linked_ns)
    notices = []
    if current is not None and current.participant_id != participant_id:
        notices.append(Notice(
            kind=NoticeKind.MAPPER_MOVED_OUT, participant_id=current.participant_id,
            fa=financial_address(current.participant_id, current.account_ref),
        ))
    return new, notices


def unlink(current: MapperLink | None, participant_id: str) -> Rejection | None:
    if current is None:
        return Rejection(result=R.MAPPER_ID_NOT_LINKED, field="id")
    if current.participant_id != participant_id:
        return Rejection(result=R.MAPPER_NOT_HOLDER, field="participant_id")
    return None


def resolution(current: MapperLink | None) -> MapperResolution | Rejection:
    if current is None:
        return Rejection(result=R.MAPPER_ID_NOT_LINKED, field="id")
    return MapperResolution(
        fa=financial_address(current.participant_id, current.account_ref),
        account_provider_info=AccountProviderInfo(code=current.participant_id),
        account_ref=current.account_ref,
    )
