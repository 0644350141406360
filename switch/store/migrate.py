"""Numbered SQL migrations for PostgreSQL, applied in order, each exactly once.

Files live in `switch/store/migrations/NNNN_name.sql`. Each runs in its own transaction
together with its row in `ponte_schema_migrations`, under an advisory lock so two processes
starting at once do not race. A file that was applied is never edited: add a new one.
"""

from __future__ import annotations

import re
from importlib import resources

import asyncpg

MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
MIGRATION_LOCK_KEY = 0x504F4E5445  # "PONTE"


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("switch.store.migrations").iterdir():
        match = MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        found.append((int(match.group(1)), match.group(2), entry.read_text()))
    found.sort()
    versions = [version for version, _, _ in found]
    assert len(versions) == len(set(versions)), "two migrations share a number"
    return found


async def migrate(connection: asyncpg.Connection) -> list[int]:
    """Apply every pending migration; return the versions applied now."""
    applied_now = []
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS ponte_schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await connection.fetch("SELECT version FROM ponte_schema_migrations")
        done = {row["version"] for row in rows}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(sql)
                await connection.execute(
                    "INSERT INTO ponte_schema_migrations (version, name) VALUES ($1, $2)",
                    version, name,
                )
            applied_now.append(version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def migrate_dsn(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()
