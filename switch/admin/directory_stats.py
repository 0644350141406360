"""Directory panel counts read straight from the directory's tables (read-only SQL).

Aliases by type and by participant and the number of live claims come from the tables of
migration 0002_directory.sql (PostgreSQL) or the embedded SQLite file; resolve counts and
rate-limit rejections are counters of the server, not rows. These queries scan the alias
table's indexes: the console caches their answer (`CACHE_S`) so a busy panel costs one
scan per interval. It must never write to the directory's tables.
"""

from __future__ import annotations

import sqlite3
import time

from switch.directory.types import CLAIM_STATES_LIVE, AliasType

CACHE_S = 5.0
_LIVE = ",".join(str(int(state)) for state in CLAIM_STATES_LIVE)
_TYPE_NAMES = {int(member): member.name for member in AliasType}

BY_TYPE = "SELECT alias_type, count(*) FROM directory_aliases GROUP BY alias_type"
BY_PARTICIPANT = "SELECT participant_id, count(*) FROM directory_aliases GROUP BY participant_id"
OPEN_CLAIMS = f"SELECT count(*) FROM directory_claims WHERE state IN ({_LIVE})"

Counts = tuple[dict[str, int], dict[str, int], int]


def _shape(by_type_rows, by_participant_rows, open_claims: int) -> Counts:
    by_type = {_TYPE_NAMES.get(int(kind), str(kind)): int(count) for kind, count in by_type_rows}
    by_participant = {str(pid): int(count) for pid, count in by_participant_rows}
    return by_type, by_participant, int(open_claims)


def sqlite_counts(path: str) -> Counts:
    """Counts from the embedded directory file (a read-only connection of our own)."""
    if path == ":memory:":
        return {}, {}, 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "directory_aliases" not in tables:
            return {}, {}, 0
        return _shape(db.execute(BY_TYPE).fetchall(), db.execute(BY_PARTICIPANT).fetchall(),
                      db.execute(OPEN_CLAIMS).fetchone()[0])
    finally:
        db.close()


async def postgres_counts(pool) -> Counts:
    """Counts from the PostgreSQL directory tables through an asyncpg pool or connection."""
    return _shape(await pool.fetch(BY_TYPE), await pool.fetch(BY_PARTICIPANT),
                  await pool.fetchval(OPEN_CLAIMS))


class CachedCounts:
    """Keeps one answer for `CACHE_S` seconds."""

    def __init__(self, fetch, cache_s: float = CACHE_S):
        self._fetch = fetch
        self._cache_s = cache_s
        self._at = -1e18
        self._value: Counts = ({}, {}, 0)

    async def get(self) -> Counts:
        now = time.monotonic()
        if now - self._at >= self._cache_s:
            value = self._fetch()
            if hasattr(value, "__await__"):
                value = await value
            self._value = value
            self._at = now
        return self._value
