"""Shared fixtures: real PostgreSQL and Redis, never mocks.

A test that needs a service it cannot reach fails under CI=true and skips elsewhere, saying
why. Each PostgreSQL test gets a database of its own, dropped afterwards; each Redis test a
key prefix of its own, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

POSTGRES_ADMIN_DSN = os.environ.get(
    "PONTE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PONTE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI") == "true"


def service_missing(what: str, error: BaseException) -> None:
    message = f"{what} is not reachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(message + " — CI requires it", pytrace=False)
    pytest.skip(message + " — skipped outside CI")


def _dsn_for(database: str) -> str:
    base, _, _ = POSTGRES_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture
def postgres_dsn():
    """DSN of a brand-new empty database, dropped after the test."""
    name = f"ponte_test_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # noqa: BLE001 - any failure means the service is unusable
        service_missing("PostgreSQL", error)
    yield _dsn_for(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url():
    """URL of the Redis server; the test must keep its keys under `redis_prefix`."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except Exception as error:  # noqa: BLE001
        service_missing("Redis", error)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix unique to this test; every key under it is deleted afterwards."""
    import redis

    prefix = f"ponte-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
