"""pytest-benchmark cases for the directory (`pytest bench/test_directory_bench.py`).

Normalise + validate one alias of each common type as a payer sends it, a national ID with
its identity token, and one full `Directory.resolve` from a warm in-process cache with
in-process buckets (the coroutine never suspends, so it is driven without an event loop and
the figure is the resolve itself). Input is built once per module, outside the measurement.
"""

from __future__ import annotations

import pytest

from bench.directory_bench import SECRET, bench_config, cache_entries, lookups
from switch.directory.aliases import AliasRules
from switch.directory.buckets import LocalBuckets
from switch.directory.cache import LocalAliasCache
from switch.directory.identity import identity_token
from switch.directory.service import Directory
from switch.directory.types import AliasType, ResolvedAlias
from switch.store.embedded import EmbeddedDirectoryStore

RULES = AliasRules(bench_config())
NOW_NS = 1_700_000_000_000_000_000
CACHED = 100_000


def run_now(coroutine):
    """Drive a coroutine that completes without suspending (in-process backends)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine suspended: a backend did I/O")


@pytest.mark.parametrize(("alias_type", "raw", "canonical"), [
    (AliasType.MSISDN, "+5511987654321", "+5511987654321"),
    (AliasType.MSISDN, "+55 (11) 98765-4321", "+5511987654321"),
    (AliasType.EMAIL, "Maria.Silva@Example.com", "maria.silva@example.com"),
    (AliasType.ACCOUNT, "GB82 WEST 1234 5698 7654 32", "GB82WEST12345698765432"),
    (AliasType.RANDOM, "123e4567-e89b-42d3-a456-426614174000",
     "123e4567-e89b-42d3-a456-426614174000"),
], ids=["msisdn-canonical", "msisdn-spaced", "email", "iban", "random"])
def test_normalise_and_validate(benchmark, alias_type, raw, canonical):
    assert benchmark(RULES.alias_value, alias_type, raw) == canonical


def test_national_id_to_identity_token(benchmark):
    def tokenise(raw: str) -> bytes:
        return identity_token(SECRET, RULES.national_id(raw, "id"))

    assert len(benchmark(tokenise, "529.982.247-25")) == 32


@pytest.fixture(scope="module")
def warm_directory():
    cache = LocalAliasCache(entries_max=2 * CACHED + 2)
    for key, value in cache_entries(CACHED):
        cache.fill_now(key, value, 0)
    store = EmbeddedDirectoryStore(":memory:")
    yield Directory(store=store, cache=cache, buckets=LocalBuckets(), config=bench_config(),
                    secret=SECRET)
    run_now(store.close())


def test_resolve_from_the_local_cache(benchmark, warm_directory):
    work = iter(lookups(CACHED, 2_000_000, seed=5))

    def resolve_one():
        alias, payer, user = next(work)
        return run_now(warm_directory.resolve(1, alias, payer, user, NOW_NS))

    answer = benchmark(resolve_one)
    assert isinstance(answer, ResolvedAlias)
    assert answer.participant_id.startswith("bank-")
    assert warm_directory.cache.misses == 0
