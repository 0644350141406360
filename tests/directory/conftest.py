"""Fixtures for the directory tests: the same tests on every backend.

`store` is the embedded SQLite store and the PostgreSQL store; `shared` is the in-process
cache and buckets, and the Redis ones. `directory` combines both, so a test taking it runs
four times. Services are real (see tests/conftest.py): nothing is mocked.
"""

from __future__ import annotations

import pytest
import redis.asyncio as redis_async

from directory_helpers import SECRET
from switch.directory.buckets import LocalBuckets
from switch.directory.cache import LocalAliasCache
from switch.directory.config import DirectoryConfig, Secret
from switch.directory.service import Directory
from switch.store.embedded import EmbeddedDirectoryStore
from switch.store.postgres_directory import PostgresDirectoryStore
from switch.store.redis_buckets import RedisBuckets
from switch.store.redis_cache import RedisAliasCache


@pytest.fixture
def config() -> DirectoryConfig:
    return DirectoryConfig()


@pytest.fixture
def secret() -> Secret:
    return Secret(SECRET)


@pytest.fixture(params=["embedded", "postgres"])
def store_dsn(request) -> str | None:
    """None for the embedded store, else a fresh PostgreSQL database. A plain fixture:
    `postgres_dsn` creates the database with asyncio.run, outside the test's loop."""
    if request.param == "embedded":
        return None
    return request.getfixturevalue("postgres_dsn")


@pytest.fixture
async def store(store_dsn):
    if store_dsn is None:
        store = EmbeddedDirectoryStore(":memory:")
    else:
        store = await PostgresDirectoryStore.connect(store_dsn, max_size=4)
    yield store
    await store.close()


@pytest.fixture(params=["local", "redis"])
async def shared(request):
    """(cache, buckets): in-process, or Redis under this test's key prefix."""
    if request.param == "local":
        yield LocalAliasCache(1024), LocalBuckets(1024)
        return
    url = request.getfixturevalue("redis_url")
    prefix = request.getfixturevalue("redis_prefix")
    client = redis_async.Redis.from_url(url)
    yield RedisAliasCache(client, prefix), RedisBuckets(client, prefix)
    await client.aclose()


@pytest.fixture
async def directory(store, shared, config, secret) -> Directory:
    cache, buckets = shared
    counter = iter(range(1, 1 << 30))

    def random_bytes(n: int) -> bytes:  # deterministic: tests replay exactly
        return next(counter).to_bytes(n, "big")

    return Directory(store=store, cache=cache, buckets=buckets, config=config, secret=secret,
                     random_bytes=random_bytes)
