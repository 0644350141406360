"""G2P mapper rules: the latest link wins and the previous holder is told."""

from __future__ import annotations

from switch.directory import mapper
from switch.directory.types import DirectoryResult, MapperLink, NoticeKind, Rejection

TOKEN = b"\x01" * 32


def test_first_link_has_no_notice():
    link, notices = mapper.link(None, TOKEN, "bank-a", "acc-1", 10)
    assert link == MapperLink(id_token=TOKEN, participant_id="bank-a", account_ref="acc-1",
                              linked_ns=10)
    assert notices == []


def test_a_later_link_elsewhere_moves_out_the_previous_participant():
    first, _ = mapper.link(None, TOKEN, "bank-a", "acc-1", 10)
    second, notices = mapper.link(first, TOKEN, "wallet-b", "w-9", 20)
    assert second.participant_id == "wallet-b"
    assert [(n.kind, n.participant_id, n.fa) for n in notices] == [
        (NoticeKind.MAPPER_MOVED_OUT, "bank-a", "acc-1@bank-a")]
    same_place, notices = mapper.link(second, TOKEN, "wallet-b", "w-10", 30)
    assert same_place.account_ref == "w-10" and notices == []


def test_an_older_link_loses():
    first, _ = mapper.link(None, TOKEN, "bank-a", "acc-1", 20)
    stale, notices = mapper.link(first, TOKEN, "wallet-b", "w-9", 19)
    assert stale == Rejection(result=DirectoryResult.MAPPER_LINK_STALE, field="timestamp_ns")
    assert notices == []


def test_resolution_and_unlink():
    assert mapper.resolution(None).result is DirectoryResult.MAPPER_ID_NOT_LINKED
    link, _ = mapper.link(None, TOKEN, "bank-a", "acc-1", 10)
    answer = mapper.resolution(link)
    assert answer.fa == "acc-1@bank-a"
    assert answer.account_provider_info.code == "bank-a"
    assert mapper.unlink(link, "bank-b").result is DirectoryResult.MAPPER_NOT_HOLDER
    assert mapper.unlink(link, "bank-a") is None
