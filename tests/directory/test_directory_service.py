"""The Directory on every backend: embedded and PostgreSQL stores, in-process and Redis
caches and buckets (see conftest.py)."""

from __future__ import annotations

import msgspec
import pytest

from directory_helpers import DAY_NS, NOW_NS, cpf, dump_store, msisdn, registration
from switch.directory.types import (
    AliasType,
    ClaimAction,
    ClaimState,
    ClaimType,
    DirectoryResult,
    MapperLinkRequest,
    NoticeKind,
    OpenClaim,
    OwnerKind,
    RegisteredAlias,
    Rejection,
    ResolvedAlias,
    ResolveRequest,
    UpdateAlias,
)

R = DirectoryResult
T = AliasType


async def resolve(directory, alias_type, value, user="payer-1", participant="bank-z",
                  now_ns=NOW_NS):
    return await directory.resolve(alias_type, value, participant, user, now_ns)


@pytest.mark.parametrize(("alias_type", "value", "written"), [
    (T.MSISDN, "+55 11 98765-4321", "+5511987654321"),
    (T.EMAIL, "John.Doe@Example.com", "john.doe@example.com"),
    (T.NATIONAL_ID, cpf(7), "BR:" + cpf(7)),
    (T.HANDLE, "JohnD@wallet", "johnd@wallet"),
    (T.ACCOUNT, "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
])
async def test_register_then_resolve_every_type(directory, alias_type, value, written):
    registered = await directory.register(
        registration(alias_type=alias_type, alias_value=value, seed=7), NOW_NS)
    assert isinstance(registered, RegisteredAlias)
    assert registered.display_name_masked == "J*** D***"
    if alias_type is T.NATIONAL_ID:
        assert registered.alias_value == ""  # never echoed back
    for spelling in (value, written):
        answer = await resolve(directory, alias_type, spelling)
        assert answer == ResolvedAlias(alias_type=alias_type, participant_id="bank-a",
                                       account_ref="acc-1", display_name_masked="J*** D***")
    assert set(msgspec.structs.asdict(answer)) == {
        "alias_type", "participant_id", "account_ref", "display_name_masked"}


async def test_random_keys_are_issued_by_the_directory(directory):
    first = await directory.register(registration(alias_type=T.RANDOM), NOW_NS)
    second = await directory.register(registration(alias_type=T.RANDOM), NOW_NS)
    assert first.alias_value != second.alias_value
    answer = await resolve(directory, T.RANDOM, first.alias_value.upper())
    assert answer.participant_id == "bank-a"


async def test_registering_again_is_idempotent_and_another_holder_is_refused(directory):
    first = await directory.register(registration(), NOW_NS)
    again = await directory.register(registration(), NOW_NS + 5)
    assert again == first
    taken = await directory.register(registration(participant_id="bank-b"), NOW_NS)
    assert taken == Rejection(result=R.ALIAS_TAKEN, field="alias_value")
    other_owner = await directory.register(registration(owner=cpf(99)), NOW_NS)
    assert other_owner.result is R.ALIAS_TAKEN
    assert await directory.store.alias_count() == 1


async def test_person_cap_counts_aliases_across_participants(directory):
    owner = cpf(5)
    for n in range(5):
        answer = await directory.register(registration(
            seed=100 + n, owner=owner, participant_id=f"bank-{n}"), NOW_NS)
        assert isinstance(answer, RegisteredAlias)
    refused = await directory.register(registration(seed=200, owner=owner), NOW_NS)
    assert refused == Rejection(result=R.OWNER_CAP_REACHED, field="owner_national_id")
    assert await directory.store.alias_count() == 5


async def test_business_cap_is_twenty(directory):
    owner = cpf(6)
    for n in range(20):
        answer = await directory.register(registration(
            seed=300 + n, owner=owner, owner_kind=OwnerKind.BUSINESS,
            account_ref=f"acc-{n}"), NOW_NS)
        assert isinstance(answer, RegisteredAlias), answer
    refused = await directory.register(registration(
        seed=400, owner=owner, owner_kind=OwnerKind.BUSINESS), NOW_NS)
    assert refused.result is R.OWNER_CAP_REACHED


async def test_account_cap(store, shared, secret):
    from switch.directory.config import DirectoryConfig
    from switch.directory.service import Directory

    cache, buckets = shared
    directory = Directory(store=store, cache=cache, buckets=buckets, secret=secret,
                          config=DirectoryConfig(aliases_per_account_max=2))
    for n in range(2):
        assert isinstance(await directory.register(registration(seed=n), NOW_NS),
                          RegisteredAlias)
    refused = await directory.register(registration(seed=9), NOW_NS)
    assert refused == Rejection(result=R.ACCOUNT_CAP_REACHED, field="account_ref")
    assert await store.alias_count() == 2


async def test_update_moves_the_alias_and_the_cache_follows(directory):
    await directory.register(registration(), NOW_NS)
    assert (await resolve(directory, T.MSISDN, msisdn(1))).account_ref == "acc-1"  # cached
    updated = await directory.update(UpdateAlias(
        alias_type=T.MSISDN, alias_value=msisdn(1), participant_id="bank-a",
        account_ref="acc-2", display_name="Johanna Doe Smith"), NOW_NS + 1)
    assert updated.account_ref == "acc-2"
    answer = await resolve(directory, T.MSISDN, msisdn(1))
    assert (answer.account_ref, answer.display_name_masked) == ("acc-2", "J*** D*** S***")
    refused = await directory.update(UpdateAlias(
        alias_type=T.MSISDN, alias_value=msisdn(1), participant_id="bank-b",
        account_ref="acc-3"), NOW_NS + 2)
    assert refused == Rejection(result=R.ALIAS_NOT_FOUND, field="alias_value")  # not bank-b's


async def test_delete_by_the_holder_only(directory):
    await directory.register(registration(), NOW_NS)
    await resolve(directory, T.MSISDN, msisdn(1))
    refused = await directory.delete(T.MSISDN, msisdn(1), "bank-b", NOW_NS)
    assert refused.result is R.ALIAS_NOT_FOUND  # as if nobody held it
    assert await directory.delete(T.MSISDN, msisdn(1), "bank-a", NOW_NS) is None
    assert (await resolve(directory, T.MSISDN, msisdn(1))).result is R.ALIAS_NOT_FOUND
    again = await directory.delete(T.MSISDN, msisdn(1), "bank-a", NOW_NS)
    assert again.result is R.ALIAS_NOT_FOUND


async def test_misses_drain_the_user_bucket_and_a_payment_refunds(directory):
    await directory.register(registration(), NOW_NS)
    for n in range(5):
        assert (await resolve(directory, T.MSISDN, msisdn(50 + n))).result is R.ALIAS_NOT_FOUND
    limited = await resolve(directory, T.MSISDN, msisdn(1))
    assert limited == Rejection(result=R.RATE_LIMITED, field="payer_user_id",
                                retry_after_ms=30_000)
    # Other users of the same participant are not affected.
    assert isinstance(await resolve(directory, T.MSISDN, msisdn(1), user="payer-2"),
                      ResolvedAlias)
    assert await directory.refund_lookup("bank-z", "payer-1", NOW_NS) is None
    assert isinstance(await resolve(directory, T.MSISDN, msisdn(1)), ResolvedAlias)
    assert (await resolve(directory, T.MSISDN, msisdn(1))).result is R.RATE_LIMITED
    later = NOW_NS + 30_000 * 1_000_000
    assert isinstance(await resolve(directory, T.MSISDN, msisdn(1), now_ns=later),
                      ResolvedAlias)


async def test_resolve_many_answers_like_resolve(directory):
    for n in range(3):
        await directory.register(registration(seed=n, account_ref=f"acc-{n}"), NOW_NS)
    requests = [
        ResolveRequest(alias_type=T.MSISDN, alias_value=msisdn(n % 5),
                       payer_participant_id="bank-z", payer_user_id=f"u{n % 2}")
        for n in range(12)
    ] + [ResolveRequest(alias_type=42, alias_value="x", payer_participant_id="bank-z",
                        payer_user_id="u0")]
    answers = await directory.resolve_many(requests, NOW_NS)
    assert answers[-1] == Rejection(result=R.FIELD_TYPE_UNKNOWN, field="alias_type")
    assert [getattr(a, "account_ref", None) for a in answers[:5]] == [
        "acc-0", "acc-1", "acc-2", None, None]
    # u0 and u1 each spent 4 hits and 2 misses: 100 - 4 - 40 = 56 tokens left.
    assert sum(isinstance(a, ResolvedAlias) for a in answers) == 8
    assert sum(getattr(a, "result", None) is R.RATE_LIMITED for a in answers) == 0


async def test_portability_claim_end_to_end(directory):
    owner = cpf(11)
    await directory.register(registration(owner=owner, participant_id="donor"), NOW_NS)
    view, notices = await directory.open_claim(OpenClaim(
        claim_type=ClaimType.PORTABILITY, alias_type=T.MSISDN, alias_value=msisdn(1),
        claimer_participant_id="claimer", claimer_account_ref="acc-new",
        claimer_owner_national_id=owner, claimer_display_name="John Doe"), NOW_NS)
    assert view.state is ClaimState.OPEN
    assert [(n.kind, n.participant_id) for n in notices] == [(NoticeKind.CLAIM_OPENED, "donor")]
    assert [c.claim_id for c in await directory.list_claims("donor")] == [view.claim_id]
    # While the claim is open the donor may not delete or move the alias.
    assert (await directory.delete(T.MSISDN, msisdn(1), "donor", NOW_NS)).result is (
        R.CLAIM_PENDING)
    again, _ = await directory.open_claim(OpenClaim(
        claim_type=ClaimType.PORTABILITY, alias_type=T.MSISDN, alias_value=msisdn(1),
        claimer_participant_id="claimer-2", claimer_account_ref="acc-x",
        claimer_owner_national_id=owner, claimer_display_name="John Doe"), NOW_NS)
    assert again.result is R.CLAIM_ALREADY_OPEN
    assert (await resolve(directory, T.MSISDN, msisdn(1))).participant_id == "donor"
    step, _ = await directory.claim_action(view.claim_id, ClaimAction.ACKNOWLEDGE, "donor",
                                           NOW_NS + 1)
    assert step.state is ClaimState.WAITING_RESOLUTION
    step, notices = await directory.claim_action(view.claim_id, ClaimAction.CONFIRM, "donor",
                                                 NOW_NS + 2)
    assert step.state is ClaimState.CONFIRMED
    assert [n.participant_id for n in notices] == ["claimer"]
    step, notices = await directory.claim_action(view.claim_id, ClaimAction.COMPLETE,
                                                 "claimer", NOW_NS + 3)
    assert step.state is ClaimState.COMPLETED
    assert {(n.kind, n.participant_id) for n in notices} == {
        (NoticeKind.CLAIM_COMPLETED, "donor"), (NoticeKind.CLAIM_COMPLETED, "claimer")}
    answer = await resolve(directory, T.MSISDN, msisdn(1))
    assert (answer.participant_id, answer.account_ref) == ("claimer", "acc-new")
    late, _ = await directory.claim_action(view.claim_id, ClaimAction.CANCEL, "claimer",
                                           NOW_NS + 4)
    assert late.result is R.CLAIM_STATE_INVALID


async def test_ownership_claim_confirmed_by_the_window(directory):
    await directory.register(registration(owner=cpf(12), participant_id="donor"), NOW_NS)
    new_owner = cpf(13)
    view, _ = await directory.open_claim(OpenClaim(
        claim_type=ClaimType.OWNERSHIP, alias_type=T.MSISDN, alias_value=msisdn(1),
        claimer_participant_id="claimer", claimer_account_ref="acc-9",
        claimer_owner_national_id=new_owner, claimer_display_name="Maria Souza"), NOW_NS)
    assert await directory.expire_claims(NOW_NS + 7 * DAY_NS - 1) == []
    notices = await directory.expire_claims(NOW_NS + 7 * DAY_NS)
    assert {(n.kind, n.participant_id) for n in notices} == {
        (NoticeKind.CLAIM_CONFIRMED, "donor"), (NoticeKind.CLAIM_CONFIRMED, "claimer")}
    step, _ = await directory.claim_action(view.claim_id, ClaimAction.COMPLETE, "claimer",
                                           NOW_NS + 8 * DAY_NS)
    assert step.state is ClaimState.COMPLETED
    answer = await resolve(directory, T.MSISDN, msisdn(1))
    assert (answer.participant_id, answer.display_name_masked) == ("claimer", "M*** S***")
    # The alias now counts against the new owner.
    assert await directory.store.count_owner_aliases(directory._token(new_owner, "x")) == 1


async def test_claim_completion_respects_the_claimers_cap(directory):
    await directory.register(registration(owner=cpf(14), participant_id="donor"), NOW_NS)
    claimer = cpf(15)
    for n in range(5):
        await directory.register(registration(seed=500 + n, owner=claimer,
                                              participant_id="claimer"), NOW_NS)
    view, _ = await directory.open_claim(OpenClaim(
        claim_type=ClaimType.OWNERSHIP, alias_type=T.MSISDN, alias_value=msisdn(1),
        claimer_participant_id="claimer", claimer_account_ref="acc-1",
        claimer_owner_national_id=claimer, claimer_display_name="M S"), NOW_NS)
    # The donor never answers: the window confirms the claim on the way to completion...
    refused, notices = await directory.claim_action(view.claim_id, ClaimAction.COMPLETE,
                                                    "claimer", NOW_NS + 7 * DAY_NS)
    assert refused == Rejection(result=R.OWNER_CAP_REACHED, field="claimer_owner_national_id")
    # ...and that confirmation is stored and announced even though completion was refused.
    assert {n.kind for n in notices} == {NoticeKind.CLAIM_CONFIRMED}
    assert (await directory.store.get_claim(view.claim_id)).state is ClaimState.CONFIRMED
    assert await directory.expire_claims(NOW_NS + 7 * DAY_NS) == []
    assert (await resolve(directory, T.MSISDN, msisdn(1))).participant_id == "donor"


async def test_random_keys_cannot_be_claimed(directory):
    owner = cpf(16)
    issued = await directory.register(registration(alias_type=T.RANDOM, owner=owner), NOW_NS)
    refused, notices = await directory.open_claim(OpenClaim(
        claim_type=ClaimType.PORTABILITY, alias_type=T.RANDOM, alias_value=issued.alias_value,
        claimer_participant_id="bank-b", claimer_account_ref="acc-2",
        claimer_owner_national_id=owner, claimer_display_name="John Doe"), NOW_NS)
    assert refused == Rejection(result=R.CLAIM_NOT_ALLOWED_FOR_TYPE, field="claim_type")
    assert notices == []


async def test_mapper_latest_link_wins(directory):
    person = cpf(21)
    answer, notices = await directory.mapper_link(MapperLinkRequest(
        id=person, participant_id="bank-a", account_ref="acc-1"), NOW_NS)
    assert answer.fa == "acc-1@bank-a" and notices == []
    answer, notices = await directory.mapper_link(MapperLinkRequest(
        id=person, participant_id="wallet-b", account_ref="w-7"), NOW_NS + 10)
    assert [(n.kind, n.participant_id, n.fa) for n in notices] == [
        (NoticeKind.MAPPER_MOVED_OUT, "bank-a", "acc-1@bank-a")]
    stale, _ = await directory.mapper_link(MapperLinkRequest(
        id=person, participant_id="bank-a", account_ref="acc-1", timestamp_ns=NOW_NS + 5),
        NOW_NS + 20)
    assert stale.result is R.MAPPER_LINK_STALE
    resolved = await directory.mapper_resolve("BR:" + person)
    assert (resolved.fa, resolved.account_provider_info.code) == ("w-7@wallet-b", "wallet-b")
    assert (await directory.mapper_unlink(person, "bank-a")).result is R.MAPPER_NOT_HOLDER
    assert await directory.mapper_unlink(person, "wallet-b") is None
    assert (await directory.mapper_resolve(person)).result is R.MAPPER_ID_NOT_LINKED


async def test_bulk_import_counts_and_lists_refusals_by_row(directory):
    rows = [registration(seed=n, account_ref=f"acc-{n}") for n in range(40)]
    rows[3] = registration(alias_type=T.MSISDN, alias_value="not a phone", seed=3)
    rows[7] = registration(seed=1, account_ref="acc-1")  # the same as row 2: exists
    rows[9] = registration(seed=2, participant_id="bank-b")  # row 3's alias elsewhere: taken
    summary = await directory.bulk_import(rows, NOW_NS)
    assert (summary.rows, summary.registered, summary.existing, summary.rejected) == (
        40, 37, 1, 2)
    assert [(row, r.result, r.field) for row, r in summary.rejections] == [
        (4, R.FIELD_MALFORMED, "alias_value"), (10, R.ALIAS_TAKEN, "alias_value")]
    assert await directory.store.alias_count() == 37


async def test_load_fresh_is_all_or_nothing(store, config):
    from switch.directory.types import AliasRecord, AliasStatus

    def record(n, owner=None):
        return AliasRecord(
            alias_type=T.MSISDN, alias_key=msisdn(n), participant_id="bank-a",
            account_ref=f"acc-{n}", owner_token=owner or n.to_bytes(32, "big"),
            owner_kind=OwnerKind.PERSON, display_initials="JD", status=AliasStatus.ACTIVE,
            created_ns=NOW_NS, updated_ns=NOW_NS)

    before = await dump_store(store)
    duplicate = [[record(n) for n in range(10)], [record(3)]]
    assert await store.load_fresh(duplicate, config) is R.ALIAS_TAKEN
    over_cap = [[record(n, owner=b"\x01" * 32) for n in range(6)]]
    assert await store.load_fresh(over_cap, config) is R.OWNER_CAP_REACHED
    assert await dump_store(store) == before
    assert await store.load_fresh([[record(n) for n in range(10)]], config) is R.OK
    assert await store.alias_count() == 10
    assert (await store.get_alias(T.MSISDN, msisdn(4))).account_ref == "acc-4"
    # The indexes are back: the caps of the normal write path still work.
    assert await store.count_owner_aliases((4).to_bytes(32, "big")) == 1
    with pytest.raises(ValueError):
        await store.load_fresh([[record(99)]], config)
