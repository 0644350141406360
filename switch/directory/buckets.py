"""Anti-enumeration token buckets: the arithmetic, and the in-process backend.

Every resolve charges two buckets, the payer end user's and the payer participant's. The
rule that keeps the buckets from becoming an oracle: a request is admitted or refused by
the balance *before* the lookup, the same way whatever the answer will be; only then is the
cost taken, small for a hit and large for a miss, and the balance may go below zero (a run
of misses then waits longer). A completed payment refunds a little.

Balances are integers scaled by TOKEN_SCALE (a refill of r tokens per minute is exactly r
scaled units per millisecond) so the Redis Lua twin (`switch/store/redis_buckets.py`)
computes bit-for-bit the same numbers; time is `now_ms`, passed in, never read here.
A bucket that has refilled to capacity is the same as no bucket: both backends drop it.
"""

from __future__ import annotations

from typing import NamedTuple

from switch.directory import limits
from switch.directory.config import BucketPolicy

SCALE = limits.TOKEN_SCALE

# Which bucket refused a request (names the request field that is rate limited).
LIMITED_NONE = 0
LIMITED_USER = 1
LIMITED_PARTICIPANT = 2


class Charge(NamedTuple):
    admitted: bool
    retry_after_ms: int
    limited_by: int  # LIMITED_*


ADMITTED = Charge(True, 0, LIMITED_NONE)

# What an admitted request costs (the `cost` of `charge_pair`). False and True, as a
# resolve passes "found", are a miss and a hit. The numbers are the flags of the Redis twin.
COST_MISS = 0
COST_HIT = 1
COST_NONE = 2  # admitted or refused on the balance like a lookup, nothing taken
COST_HIT_AFTER = 3  # a hit's cost for an answer given after a COST_NONE admission: never refused
COSTS = (COST_MISS, COST_HIT, COST_NONE, COST_HIT_AFTER)


def refill(
    state: tuple[int, int] | None, policy: BucketPolicy, now_ms: int
) -> tuple[int, int]:
    """(scaled tokens, updated_ms) after refilling up to now. A clock that went backwards
    (another process wrote a later time) refills nothing and keeps the later time."""
    capacity = policy.capacity_tokens * SCALE
    if state is None:
        return capacity, now_ms
    tokens, updated_ms = state
    if now_ms > updated_ms:
        tokens = min(capacity, tokens + (now_ms - updated_ms) * policy.refill_tokens_per_minute)
        updated_ms = now_ms
    return tokens, updated_ms


def wait_ms(tokens: int, policy: BucketPolicy) -> int:
    """Milliseconds until a bucket at `tokens` admits again (0 if it admits now)."""
    need = policy.hit_cost_tokens * SCALE - tokens
    if need <= 0:
        return 0
    rate = policy.refill_tokens_per_minute
    return (need + rate - 1) // rate


def charge_pair(
    user: tuple[int, int] | None,
    participant: tuple[int, int] | None,
    user_policy: BucketPolicy,
    participant_policy: BucketPolicy,
    cost: int,
    now_ms: int,
) -> tuple[Charge, tuple[int, int] | None, tuple[int, int] | None]:
    """Charge one request (`cost`: COST_*; a resolve passes found=True/False) to both
    buckets. Returns the decision and the new states; a refused request leaves both states
    as they were (refill is a function of time, so not writing it back changes nothing)."""
    assert cost in COSTS
    user_tokens, user_ms = refill(user, user_policy, now_ms)
    participant_tokens, participant_ms = refill(participant, participant_policy, now_ms)
    if cost != COST_HIT_AFTER and (
            user_tokens < user_policy.hit_cost_tokens * SCALE
            or participant_tokens < participant_policy.hit_cost_tokens * SCALE):
        user_wait = wait_ms(user_tokens, user_policy)
        participant_wait = wait_ms(participant_tokens, participant_policy)
        limited_by = LIMITED_USER if user_wait >= participant_wait else LIMITED_PARTICIPANT
        return Charge(False, max(user_wait, participant_wait), limited_by), user, participant
    if cost == COST_NONE:
        return ADMITTED, user, participant  # nothing taken: the states need no write
    if cost == COST_MISS:
        user_cost = user_policy.miss_cost_tokens * SCALE
        participant_cost = participant_policy.miss_cost_tokens * SCALE
    else:
        user_cost = user_policy.hit_cost_tokens * SCALE
        participant_cost = participant_policy.hit_cost_tokens * SCALE
    return (
        ADMITTED,
        (user_tokens - user_cost, user_ms),
        (participant_tokens - participant_cost, participant_ms),
    )


def refund_one(
    state: tuple[int, int] | None, policy: BucketPolicy, now_ms: int
) -> tuple[int, int]:
    tokens, updated_ms = refill(state, policy, now_ms)
    capacity = policy.capacity_tokens * SCALE
    return min(capacity, tokens + policy.refund_tokens * SCALE), updated_ms


class LocalBuckets:
    """Buckets in this process's memory, for a single switch process (the embedded demo).

    At most `buckets_max` user buckets: when full, buckets that refilled to capacity are
    dropped (they carry no information), then the oldest-created ones. Dropping a bucket
    forgives its debt, so an attacker would need `buckets_max` distinct user ids at once;
    the participant bucket bounds that.
    """

    shared = False  # keys are (participant, user) in clear: they never leave this process

    def __init__(self, buckets_max: int = limits.LOCAL_BUCKETS_MAX_DEFAULT) -> None:
        assert 1 <= buckets_max <= limits.LOCAL_BUCKETS_MAX
        self.buckets_max = buckets_max
        self._users: dict[bytes | str, tuple[int, int]] = {}
        self._participants: dict[str, tuple[int, int]] = {}

    def charge_now(
        self,
        user_key: bytes | str,
        participant_id: str,
        user_policy: BucketPolicy,
        participant_policy: BucketPolicy,
        cost: int,
        now_ms: int,
    ) -> Charge:
        users = self._users
        participants = self._participants
        decision, user_state, participant_state = charge_pair(
            users.get(user_key), participants.get(participant_id), user_policy,
            participant_policy, cost, now_ms,
        )
        if decision.admitted and cost != COST_NONE:
            if user_key not in users and len(users) >= self.buckets_max:
                self._make_room(user_policy, now_ms)
            users[user_key] = user_state
            participants[participant_id] = participant_state
        return decision

    async def charge(self, user_key, participant_id, user_policy, participant_policy, cost,
                     now_ms) -> Charge:
        return self.charge_now(user_key, participant_id, user_policy, participant_policy,
                               cost, now_ms)

    async def charge_many(self, items, user_policy: BucketPolicy, now_ms: int) -> list[Charge]:
        """items: (user_key, participant_id, participant_policy, cost) per request."""
        return [
            self.charge_now(user_key, participant_id, user_policy, policy, cost, now_ms)
            for user_key, participant_id, policy, cost in items
        ]

    async def refund(self, user_key, participant_id, user_policy, participant_policy,
                     now_ms) -> None:
        self._users[user_key] = refund_one(self._users.get(user_key), user_policy, now_ms)
        self._participants[participant_id] = refund_one(
            self._participants.get(participant_id), participant_policy, now_ms
        )
        if len(self._users) > self.buckets_max:
            self._make_room(user_policy, now_ms)

    async def peek(self, user_key: bytes, participant_id: str, user_policy, participant_policy,
                   now_ms: int) -> tuple[int, int]:
        """Current (user, participant) balances in whole tokens, rounded down (tests, ops)."""
        user_tokens, _ = refill(self._users.get(user_key), user_policy, now_ms)
        participant_tokens, _ = refill(
            self._participants.get(participant_id), participant_policy, now_ms
        )
        return user_tokens // SCALE, participant_tokens // SCALE

    def __len__(self) -> int:
        return len(self._users)

    def _make_room(self, user_policy: BucketPolicy, now_ms: int) -> None:
        users = self._users
        capacity = user_policy.capacity_tokens * SCALE
        for key in [k for k, state in users.items() if refill(state, user_policy, now_ms)[0]
                    >= capacity]:
            del users[key]
        # Sweep to three quarters so that the next sweep is far away (amortised O(1)).
        target = self.buckets_max * 3 // 4
        while len(users) > target:
            del users[next(iter(users))]
