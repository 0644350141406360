"""Anti-enumeration buckets: the arithmetic, and the same behaviour from both backends."""

from __future__ import annotations

import random

import pytest
import redis.asyncio as redis_async

from switch.directory.buckets import (
    COST_HIT,
    COST_HIT_AFTER,
    COST_MISS,
    COST_NONE,
    LIMITED_PARTICIPANT,
    LIMITED_USER,
    SCALE,
    LocalBuckets,
    charge_pair,
    refill,
    refund_one,
)
from switch.directory.config import (
    PARTICIPANT_POLICIES_DEFAULT,
    USER_POLICY_DEFAULT,
    BucketPolicy,
)
from switch.store.redis_buckets import RedisBuckets

USER = USER_POLICY_DEFAULT
BIG = PARTICIPANT_POLICIES_DEFAULT["A"]
T0 = 1_700_000_000_000  # ms


def run(states, found, now_ms, user=USER, participant=BIG):
    decision, states[0], states[1] = charge_pair(states[0], states[1], user, participant,
                                                 found, now_ms)
    return decision


def test_pix_defaults_100_hits_then_wait_30_seconds_per_token():
    states = [None, None]
    for _ in range(100):
        assert run(states, True, T0).admitted
    refused = run(states, True, T0)
    assert not refused.admitted
    assert refused.retry_after_ms == 30_000  # 2 tokens per minute
    assert refused.limited_by == LIMITED_USER
    assert not run(states, True, T0 + 29_999).admitted
    assert run(states, True, T0 + 30_000).admitted


def test_a_miss_costs_twenty():
    states = [None, None]
    for _ in range(5):
        assert run(states, False, T0).admitted
    assert refill(states[0], USER, T0)[0] == 0
    assert not run(states, False, T0).admitted


def test_admission_does_not_depend_on_the_answer():
    # One token left: a hit and a miss are both admitted (so refusal reveals nothing),
    # but the miss leaves the bucket 19 tokens in debt: ten minutes to admit again.
    for found, wait_ms in ((True, 30_000), (False, 600_000)):
        states = [(1 * SCALE, T0), None]
        assert run(states, found, T0).admitted
        refused = run(states, True, T0)
        assert (refused.admitted, refused.retry_after_ms) == (False, wait_ms)


def test_a_gate_only_charge_is_refused_like_a_lookup_and_takes_nothing():
    # A directory write is admitted on the balance a lookup would be, before the store is
    # asked (so a refusal reveals nothing), and costs nothing by itself.
    states = [(1 * SCALE, T0), None]
    assert run(states, COST_NONE, T0).admitted
    assert refill(states[0], USER, T0)[0] == 1 * SCALE
    states = [(1 * SCALE - 1, T0), None]
    refused = run(states, COST_NONE, T0)
    assert (refused.admitted, refused.retry_after_ms) == (False, 1)
    assert states[0] == (1 * SCALE - 1, T0)


def test_a_cost_after_the_answer_is_never_refused_and_may_go_into_debt():
    # The answer of an admitted write that revealed another participant's alias costs a
    # hit, whatever the balance is by then (concurrent writes admitted together all pay).
    states = [(0, T0), (0, T0)]
    for _ in range(3):
        assert run(states, COST_HIT_AFTER, T0).admitted
    assert refill(states[0], USER, T0)[0] == -3 * SCALE
    assert refill(states[1], BIG, T0)[0] == -3 * SCALE
    assert not run(states, COST_NONE, T0).admitted


def test_refund_gives_a_token_back_up_to_capacity():
    state = (5 * SCALE, T0)
    assert refund_one(state, USER, T0) == (6 * SCALE, T0)
    assert refund_one(None, USER, T0) == (100 * SCALE, T0)


def test_refill_is_capped_and_ignores_a_clock_going_back():
    assert refill((0, T0), USER, T0 + 60_000) == (2 * SCALE, T0 + 60_000)
    assert refill((0, T0), USER, T0 + 10**12) == (100 * SCALE, T0 + 10**12)
    assert refill((7, T0), USER, T0 - 5_000) == (7, T0)


def test_the_participant_bucket_limits_too():
    small = PARTICIPANT_POLICIES_DEFAULT["H"]  # 50 tokens, 2 per minute
    states = [None, None]
    for user in range(50):
        states[0] = None  # a different end user each time
        assert run(states, True, T0, participant=small).admitted
    states[0] = None
    refused = run(states, True, T0, participant=small)
    assert not refused.admitted and refused.limited_by == LIMITED_PARTICIPANT


def test_local_buckets_stay_bounded():
    buckets = LocalBuckets(buckets_max=100)
    for user in range(1_000):
        buckets.charge_now(user.to_bytes(16, "big"), "bank-a", USER, BIG, True, T0)
    assert len(buckets) <= 100


@pytest.fixture(params=["local", "redis"])
async def buckets(request):
    if request.param == "local":
        yield LocalBuckets()
        return
    client = redis_async.Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisBuckets(client, request.getfixturevalue("redis_prefix"))
    await client.aclose()


async def test_backends_match_the_model_step_by_step(buckets):
    """A seeded random walk of charges, refunds and clock steps: every decision and every
    balance from the backend equals the pure model's."""
    rng = random.Random(4)
    user_policy = BucketPolicy(capacity_tokens=10, refill_tokens_per_minute=7,
                               hit_cost_tokens=1, miss_cost_tokens=4, refund_tokens=2)
    participant_policy = BucketPolicy(capacity_tokens=25, refill_tokens_per_minute=3,
                                      hit_cost_tokens=2, miss_cost_tokens=5, refund_tokens=1)
    # As in production, a user's bucket key already includes the participant
    # (`identity.user_bucket_key`); Redis also scopes it under the participant's hash tag.
    model: dict = {}
    now_ms = T0
    for _ in range(300):
        now_ms += rng.choice([0, 0, 1, 999, 8_571, 60_000])
        participant = rng.choice(["bank-a", "bank-b"])
        user = participant.encode().ljust(15, b"-") + bytes([rng.randrange(3)])
        if rng.random() < 0.1:
            await buckets.refund(user, participant, user_policy, participant_policy, now_ms)
            model[user] = refund_one(model.get(user), user_policy, now_ms)
            model[participant] = refund_one(model.get(participant), participant_policy, now_ms)
        else:
            cost = rng.choice([COST_HIT, COST_HIT, COST_MISS, COST_NONE, COST_HIT_AFTER])
            got = await buckets.charge(user, participant, user_policy, participant_policy,
                                       cost, now_ms)
            expected, user_state, participant_state = charge_pair(
                model.get(user), model.get(participant), user_policy, participant_policy,
                cost, now_ms)
            assert got == expected
            if expected.admitted:
                model[user], model[participant] = user_state, participant_state
        balances = await buckets.peek(user, participant, user_policy, participant_policy,
                                      now_ms)
        assert balances == (
            refill(model.get(user), user_policy, now_ms)[0] // SCALE,
            refill(model.get(participant), participant_policy, now_ms)[0] // SCALE,
        )


async def test_charge_many_equals_charging_one_by_one(buckets):
    costs = (COST_HIT, COST_MISS, COST_HIT, COST_NONE, COST_HIT_AFTER)
    items = [(bytes([n % 3]) * 16, "bank-a", BIG, costs[n % 5]) for n in range(150)]
    charges = await buckets.charge_many(items, USER, T0)
    states: dict = {}
    for (user, participant, policy, cost), got in zip(items, charges):
        expected, user_state, participant_state = charge_pair(
            states.get(user), states.get(participant), USER, policy, cost, T0)
        assert got == expected
        if expected.admitted:
            states[user], states[participant] = user_state, participant_state
    assert sum(not charge.admitted for charge in charges) > 0
