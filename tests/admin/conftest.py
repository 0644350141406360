"""Fixtures for the admin tests: the real service over the real core, on both admin stores.

`world` runs a test twice, on the embedded SQLite store and on PostgreSQL (a fresh database
per test, migrated with the project's migrations); `embedded_world` only on SQLite, for the
HTTP tests that do not depend on the store.
"""

from __future__ import annotations

import pytest

from admin_helpers import Clock, World
from switch.store.admin_embedded import EmbeddedAdminStore


@pytest.fixture(params=["embedded", "postgres"])
def store_dsn(request) -> str | None:
    if request.param == "embedded":
        return None
    return request.getfixturevalue("postgres_dsn")


async def _open_store(dsn: str | None):
    if dsn is None:
        return EmbeddedAdminStore(":memory:")
    from switch.store.admin_postgres import PostgresAdminStore
    from switch.store.migrate import migrate_dsn

    await migrate_dsn(dsn)
    return await PostgresAdminStore.connect(dsn)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def world(store_dsn, clock):
    store = await _open_store(store_dsn)
    world = World(store, clock)
    await world.setup()
    yield world
    await store.close()


@pytest.fixture
async def embedded_world(clock):
    store = EmbeddedAdminStore(":memory:")
    world = World(store, clock)
    await world.setup()
    yield world
    await store.close()
