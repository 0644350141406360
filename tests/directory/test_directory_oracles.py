"""Directory writes are no oracle (issue 10 item 10): a participant that does not hold an
alias learns from a deletion, an update or a registration no more than a resolve would
tell it, and what it does learn is charged to the anti-enumeration buckets like a resolve.
On every backend (see conftest.py)."""

from __future__ import annotations

import pytest

from directory_helpers import NOW_NS, cpf, dump_store, msisdn, registration
from switch.directory.config import BucketPolicy, DirectoryConfig
from switch.directory.service import Directory
from switch.directory.types import (
    AliasType,
    DirectoryResult,
    RegisteredAlias,
    Rejection,
    ResolvedAlias,
    UpdateAlias,
)

R = DirectoryResult
T = AliasType
NOT_FOUND = Rejection(result=R.ALIAS_NOT_FOUND, field="alias_value")
# A participant bucket of 10 tokens that does not refill within a test.
TEN = BucketPolicy(capacity_tokens=10, refill_tokens_per_minute=1, hit_cost_tokens=1,
                   miss_cost_tokens=3, refund_tokens=1)


@pytest.fixture
def config() -> DirectoryConfig:
    return DirectoryConfig(participant_buckets={"T": TEN}, participant_category_default="T")


def small(store, shared, secret, config) -> Directory:
    cache, buckets = shared
    return Directory(store=store, cache=cache, buckets=buckets, config=config, secret=secret)


@pytest.mark.parametrize("alias_type", [T.MSISDN, T.NATIONAL_ID])
async def test_deleting_an_alias_you_do_not_hold_answers_not_found_whoever_holds_it(
        directory, alias_type):
    held = cpf(1) if alias_type is T.NATIONAL_ID else msisdn(1)
    free = cpf(2) if alias_type is T.NATIONAL_ID else msisdn(2)
    await directory.register(registration(alias_type=alias_type, alias_value=held, seed=1),
                             NOW_NS)
    before = await dump_store(directory.store)
    answers = [await directory.delete(alias_type, value, "bank-b", NOW_NS)
               for value in (held, free)]
    assert answers == [NOT_FOUND, NOT_FOUND]
    assert await dump_store(directory.store) == before


async def test_updating_an_alias_you_do_not_hold_answers_not_found_whoever_holds_it(directory):
    await directory.register(registration(seed=1), NOW_NS)
    answers = [await directory.update(UpdateAlias(
        alias_type=T.MSISDN, alias_value=msisdn(seed), participant_id="bank-b",
        account_ref="acc-9"), NOW_NS) for seed in (1, 2)]
    assert answers == [NOT_FOUND, NOT_FOUND]


async def test_an_owner_at_the_cap_cannot_tell_taken_aliases_from_free_ones(directory):
    # Before: ALIAS_TAKEN for a held alias and OWNER_CAP_REACHED for a free one, nothing
    # written either way: a free existence oracle for any alias, national IDs included.
    owner = cpf(40)
    for n in range(5):
        assert isinstance(await directory.register(registration(
            seed=400 + n, owner=owner, participant_id="bank-b", account_ref=f"b{n}"), NOW_NS),
            RegisteredAlias)
    await directory.register(registration(seed=1), NOW_NS)  # held by bank-a
    before = await dump_store(directory.store)
    capped = Rejection(result=R.OWNER_CAP_REACHED, field="owner_national_id")
    for seed in (1, 2):  # taken, free
        answer = await directory.register(registration(
            seed=seed, owner=owner, participant_id="bank-b"), NOW_NS)
        assert answer == capped
    summary = await directory.bulk_import(
        [registration(seed=seed, owner=owner, participant_id="bank-b") for seed in (1, 2)],
        NOW_NS)
    assert [rejection for _, rejection in summary.rejections] == [capped, capped]
    assert await dump_store(directory.store) == before


async def test_deletions_of_aliases_you_do_not_hold_are_charged(store, shared, secret, config):
    directory = small(store, shared, secret, config)
    await directory.register(registration(seed=1), NOW_NS)
    answers = [await directory.delete(T.MSISDN, msisdn(1 + n % 2), "bank-b", NOW_NS)
               for n in range(12)]
    assert answers[:10] == [NOT_FOUND] * 10
    assert [answer.result for answer in answers[10:]] == [R.RATE_LIMITED] * 2
    assert answers[10].field == "participant_id" and answers[10].retry_after_ms > 0
    # The same participant bucket as its resolves: they wait too.
    resolved = await directory.resolve(T.MSISDN, msisdn(1), "bank-b", "fresh-user", NOW_NS)
    assert resolved.result is R.RATE_LIMITED
    # The holder's own deletions are no lookup: never charged, never refused.
    assert await directory.delete(T.MSISDN, msisdn(1), "bank-a", NOW_NS) is None


async def test_registrations_refused_for_others_aliases_are_charged(store, shared, secret,
                                                                     config):
    directory = small(store, shared, secret, config)
    for n in range(12):  # held by bank-a, each for its own owner
        await directory.register(registration(seed=n), NOW_NS)
    before = await dump_store(directory.store)
    answers = [await directory.register(registration(seed=n, participant_id="bank-b",
                                                     owner=cpf(100 + n)), NOW_NS)
               for n in range(12)]
    taken = Rejection(result=R.ALIAS_TAKEN, field="alias_value")
    assert answers[:10] == [taken] * 10
    assert [answer.result for answer in answers[10:]] == [R.RATE_LIMITED] * 2
    assert await dump_store(directory.store) == before
    # Refused on the balance before the store is asked: a free alias is not written either,
    # so an empty bucket cannot be probed with registrations (OK vs refused).
    free = await directory.register(registration(seed=50, participant_id="bank-b"), NOW_NS)
    assert free.result is R.RATE_LIMITED
    bulk = await directory.bulk_import(
        [registration(seed=51, participant_id="bank-b"),
         registration(seed=3, participant_id="bank-b", owner=cpf(103))], NOW_NS)
    assert [r.result for _, r in bulk.rejections] == [R.RATE_LIMITED, R.RATE_LIMITED]
    assert await dump_store(directory.store) == before
    resolved = await directory.resolve(T.MSISDN, msisdn(1), "bank-b", "fresh-user", NOW_NS)
    assert resolved.result is R.RATE_LIMITED


async def test_a_bulk_load_of_taken_aliases_is_charged_per_refused_row(store, shared, secret,
                                                                       config):
    directory = small(store, shared, secret, config)
    for n in range(30):
        await directory.register(registration(seed=n, account_ref=f"a{n}"), NOW_NS)
    summary = await directory.bulk_import(
        [registration(seed=n, participant_id="bank-b", owner=cpf(100 + n))
         for n in range(30)], NOW_NS)
    assert summary.rejected == 30
    # The batch was admitted on the balance it found, then every refusal was charged:
    # the participant is 20 tokens in debt, and its next lookup waits for them.
    resolved = await directory.resolve(T.MSISDN, msisdn(1), "bank-b", "fresh-user", NOW_NS)
    assert resolved.result is R.RATE_LIMITED
    assert resolved.retry_after_ms == 21 * 60_000  # 1 token per minute, 21 to hit cost


async def test_registering_and_deleting_your_own_aliases_is_never_charged(store, shared, secret,
                                                                          config):
    directory = small(store, shared, secret, config)
    for n in range(30):  # three times the participant bucket
        answer = await directory.register(registration(seed=n, account_ref=f"a{n}"), NOW_NS)
        assert isinstance(answer, RegisteredAlias)
        assert await directory.register(registration(seed=n, account_ref=f"a{n}"),
                                        NOW_NS) == answer  # ALIAS_EXISTS: the same again
    summary = await directory.bulk_import(
        [registration(seed=100 + n, account_ref=f"b{n}") for n in range(30)], NOW_NS)
    assert summary.registered == 30
    for n in range(30):
        assert await directory.delete(T.MSISDN, msisdn(n), "bank-a", NOW_NS) is None
    answer = await directory.resolve(T.MSISDN, msisdn(100), "bank-a", "user", NOW_NS)
    assert isinstance(answer, ResolvedAlias)


async def test_an_operator_import_is_not_charged_to_participants(store, shared, secret,
                                                                 config):
    directory = small(store, shared, secret, config)
    for n in range(12):
        await directory.register(registration(seed=n), NOW_NS)
    summary = await directory.bulk_import(
        [registration(seed=n, participant_id="bank-b", owner=cpf(100 + n))
         for n in range(12)], NOW_NS, charge_buckets=False)
    assert [r.result for _, r in summary.rejections] == [R.ALIAS_TAKEN] * 12
    answer = await directory.resolve(T.MSISDN, msisdn(1), "bank-b", "user", NOW_NS)
    assert isinstance(answer, ResolvedAlias)


async def test_a_prepaid_lookup_is_gated_like_a_resolve_and_costs_nothing(store, shared, secret,
                                                                          config):
    # Issue 18: a transfer to an alias its payer just resolved is routed by resolve_many
    # with prepaid=True: refused exactly when a resolve would be, never charged twice.
    from switch.directory.types import ResolveRequest

    directory = small(store, shared, secret, config)
    await directory.register(registration(seed=1), NOW_NS)

    def lookup(n: int, prepaid: bool) -> ResolveRequest:
        return ResolveRequest(alias_type=T.MSISDN, alias_value=msisdn(1 + n % 2),
                              payer_participant_id="bank-b", payer_user_id=f"user-{n}",
                              prepaid=prepaid)

    answers = await directory.resolve_many([lookup(n, True) for n in range(30)], NOW_NS)
    assert [type(a) for a in answers[::2]] == [ResolvedAlias] * 15
    assert answers[1::2] == [NOT_FOUND] * 15  # prepaid misses cost nothing either
    answers = await directory.resolve_many([lookup(n, False) for n in range(12)], NOW_NS)
    # Charged now: 10 tokens pay hit, miss, hit, miss, hit, miss (1 + 3 each), into debt.
    assert [type(a) for a in answers[0:6:2]] == [ResolvedAlias] * 3
    assert answers[1:6:2] == [NOT_FOUND] * 3
    assert [a.result for a in answers[6:]] == [R.RATE_LIMITED] * 6
    # Empty: the prepaid lookup is refused like the resolve it stands for.
    (refused,) = await directory.resolve_many([lookup(0, True)], NOW_NS)
    assert refused.result is R.RATE_LIMITED and refused.field == "payer_participant_id"
