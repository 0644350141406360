"""The FSPIOP hub's prepare store on the switch's backends: SQLite (embedded default,
`fspiop.sqlite3` in the data directory, WAL with synchronous=FULL, on a thread of its own)
and PostgreSQL (asyncpg, migration 0039). What it keeps and why: connectors/fspiop/store.py
(`PrepareStore`, the API these implement; the composition root hands one to the hub).

A row is (payer participant, transfer id) -> the prepare's bytes, with its expiry for
pruning. The first row under a key stays: a later write under it changes nothing.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from switch.store.embedded import open_sqlite, write_transaction

Key = tuple[int, str]  # (payer participant id, transfer id)
FILE_NAME = "fspiop.sqlite3"

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS fspiop_prepares (
    payer_participant_id INTEGER NOT NULL,
    transfer_id TEXT NOT NULL,
    expires_at_ns INTEGER NOT NULL,
    prepare BLOB NOT NULL,
    PRIMARY KEY (payer_participant_id, transfer_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fspiop_prepares_expiry ON fspiop_prepares (expires_at_ns);
"""


class EmbeddedPrepareStore:
    """SQLite in WAL mode (synchronous=FULL), used from one thread of its own."""

    def __init__(self, path: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ponte-fspiop-store")
        self._db = self._executor.submit(self._open, path).result()

    @staticmethod
    def _open(path: str):
        db = open_sqlite(path)
        db.executescript(_SQLITE_SCHEMA)
        return db

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _write(self, puts, deletes) -> None:
        with write_transaction(self._db) as db:
            db.executemany(
                "INSERT INTO fspiop_prepares VALUES (?, ?, ?, ?) ON CONFLICT "
                "(payer_participant_id, transfer_id) DO NOTHING",
                [(key[0], key[1], expires, prepare) for key, prepare, expires in puts])
            db.executemany("DELETE FROM fspiop_prepares WHERE payer_participant_id = ? "
                           "AND transfer_id = ?", deletes)

    def _get(self, keys: list[Key]) -> dict[Key, bytes]:
        found = {}
        query = ("SELECT prepare FROM fspiop_prepares WHERE payer_participant_id = ? "
                 "AND transfer_id = ?")
        for key in keys:
            row = self._db.execute(query, key).fetchone()
            if row is not None:
                found[key] = row[0]
        return found

    def _prune(self, expired_before_ns: int) -> int:
        with write_transaction(self._db) as db:
            return db.execute("DELETE FROM fspiop_prepares WHERE expires_at_ns < ?",
                              (expired_before_ns,)).rowcount

    async def write(self, puts, deletes) -> None:
        if puts or deletes:
            await self._run(self._write, puts, deletes)

    async def get_many(self, keys: list[Key]) -> dict[Key, bytes]:
        return await self._run(self._get, keys) if keys else {}

    async def prune(self, expired_before_ns: int) -> int:
        return await self._run(self._prune, expired_before_ns)

    async def close(self) -> None:
        await self._run(self._db.close)
        self._executor.shutdown(wait=True)


class PostgresPrepareStore:
    """The `fspiop_prepares` table (migration 0039) through a small asyncpg pool."""

    def __init__(self, pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str) -> PostgresPrepareStore:
        import asyncpg

        return cls(await asyncpg.create_pool(dsn, min_size=1, max_size=2))

    async def write(self, puts, deletes) -> None:
        if not puts and not deletes:
            return
        async with self._pool.acquire() as connection, connection.transaction():
            if puts:
                await connection.execute(
                    "INSERT INTO fspiop_prepares (payer_participant_id, transfer_id, "
                    "expires_at_ns, prepare) SELECT * FROM unnest($1::int[], $2::text[], "
                    "$3::bigint[], $4::bytea[]) ON CONFLICT (payer_participant_id, "
                    "transfer_id) DO NOTHING",
                    [key[0] for key, _p, _e in puts], [key[1] for key, _p, _e in puts],
                    [expires for _k, _p, expires in puts], [prepare for _k, prepare, _e in puts])
            if deletes:
                await connection.execute(
                    "DELETE FROM fspiop_prepares p USING unnest($1::int[], $2::text[]) "
                    "AS k(p, t) WHERE p.payer_participant_id = k.p AND p.transfer_id = k.t",
                    [key[0] for key in deletes], [key[1] for key in deletes])

    async def get_many(self, keys: list[Key]) -> dict[Key, bytes]:
        if not keys:
            return {}
        async with self._pool.acquire() as connection:
            found = await connection.fetch(
                "SELECT p.payer_participant_id, p.transfer_id, p.prepare FROM fspiop_prepares "
                "p JOIN unnest($1::int[], $2::text[]) AS k(p, t) "
                "ON p.payer_participant_id = k.p AND p.transfer_id = k.t",
                [key[0] for key in keys], [key[1] for key in keys])
        return {(row[0], row[1]): bytes(row[2]) for row in found}

    async def prune(self, expired_before_ns: int) -> int:
        async with self._pool.acquire() as connection:
            status = await connection.execute(
                "DELETE FROM fspiop_prepares WHERE expires_at_ns < $1", expired_before_ns)
        return int(status.split()[-1])

    async def close(self) -> None:
        await self._pool.close()


async def open_prepare_store(data_dir: str, postgres_dsn: str = ""
                             ) -> EmbeddedPrepareStore | PostgresPrepareStore:
    """PostgreSQL when the switch keeps its journal or its stores there (migrated already:
    a standby taking over finds the prepares its primary kept), else `fspiop.sqlite3` in
    the data directory."""
    if postgres_dsn:
        return await PostgresPrepareStore.connect(postgres_dsn)
    return EmbeddedPrepareStore(os.path.join(data_dir, FILE_NAME))
