"""The alias caches: bounded, compact, and unable to resurrect an invalidated entry."""

from __future__ import annotations

import tracemalloc

import pytest
import redis.asyncio as redis_async

from directory_helpers import NOW_NS
from switch.directory.cache import LocalAliasCache, cache_key, decode_entry, encode_entry
from switch.directory.types import AliasRecord, AliasStatus, AliasType, OwnerKind
from switch.store.redis_cache import RedisAliasCache


def record(seed: int) -> AliasRecord:
    return AliasRecord(
        alias_type=AliasType.MSISDN, alias_key=f"+5511{seed:09d}", participant_id="bank-042",
        account_ref=f"{seed // 3:010d}", owner_token=b"\x07" * 32, owner_kind=OwnerKind.PERSON,
        display_initials="JD", status=AliasStatus.ACTIVE, created_ns=NOW_NS, updated_ns=NOW_NS,
    )


def test_entry_round_trip_has_no_owner_token():
    value = encode_entry(record(1))
    assert b"\x07" * 4 not in value
    answer = decode_entry(1, value)
    assert (answer.participant_id, answer.account_ref, answer.display_name_masked) == (
        "bank-042", "0000000000", "J*** D***")


def test_local_cache_is_bounded_and_keeps_recently_used_entries():
    cache = LocalAliasCache(entries_max=100)
    hot = cache_key(1, "+55hot")
    cache.fill_now(hot, b"p\x1fa\x1fJD", cache.fill_token())
    for n in range(1_000):
        cache.fill_now(cache_key(1, f"+55{n}"), b"p\x1fa\x1fJD", cache.fill_token())
        assert cache.get_now(hot) is not None  # used all the time: never evicted
        assert len(cache) <= 100
    assert cache.get_now(cache_key(1, "+550")) is None  # long unused: evicted


def test_local_invalidation_blocks_a_fill_that_read_before_it():
    cache = LocalAliasCache(entries_max=100)
    key = cache_key(1, "+5511987654321")
    token = cache.fill_token()  # a resolve starts reading the store...
    cache.invalidate_now(key)  # ...an update invalidates meanwhile...
    cache.fill_now(key, b"old\x1fa\x1fJD", token)  # ...and the stale fill is dropped.
    assert cache.get_now(key) is None
    cache.fill_now(key, b"new\x1fa\x1fJD", cache.fill_token())
    assert cache.get_now(key) == b"new\x1fa\x1fJD"


def test_a_cached_alias_costs_at_most_200_bytes():
    entries = 200_000
    cache = LocalAliasCache(entries_max=2 * entries + 2)  # no generation turns over
    records = [record(n) for n in range(entries)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for r in records:  # keys and values are made here, so their bytes are counted
        cache.fill_now(cache_key(1, r.alias_key), encode_entry(r), 0)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(cache) == entries
    assert used / entries <= 200, used / entries


@pytest.fixture
async def redis_cache(redis_url, redis_prefix):
    client = redis_async.Redis.from_url(redis_url)
    yield RedisAliasCache(client, redis_prefix, ttl_ms=60_000, tombstone_ms=5_000)
    await client.aclose()


async def test_redis_cache_round_trip_and_tombstone(redis_cache):
    key = cache_key(1, "+5511987654321")
    assert await redis_cache.get(key) is None
    await redis_cache.fill(key, b"p\x1fa\x1fJD", redis_cache.fill_token())
    assert await redis_cache.get_many([key, cache_key(1, "+55x")]) == [b"p\x1fa\x1fJD", None]
    await redis_cache.invalidate(key)
    assert await redis_cache.get(key) is None
    # A fill racing the invalidation finds the tombstone and does nothing.
    await redis_cache.fill(key, b"old\x1fa\x1fJD", redis_cache.fill_token())
    assert await redis_cache.get(key) is None
    ttl_ms = await redis_cache.client.pttl(redis_cache._prefix + key)
    assert 0 < ttl_ms <= 5_000
