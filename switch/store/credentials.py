"""Participant credential storage: kind, callback URL, API key hashes, client certificate
fingerprints. Embedded (SQLite file) and PostgreSQL (asyncpg, migration 0003) backends with
the same async API; the server loads everything into `switch.server.credentials` at start
and writes through on every change.

It stores only HMAC hashes of API keys (the key is shown once, when issued) and SHA-256
fingerprints of certificates. It must never store or log a key, and never decide who may
do what: that is the gateway's job.
"""

from __future__ import annotations



from switch.server.credentials import (
    CredentialsSnapshot,
    CredentialStore,
    KeyRecord,
    ParticipantRecord,
)
from switch.store.embedded import open_sqlite

__all__ = ["CredentialStore", "EmbeddedCredentialStore", "PostgresCredentialStore"]

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS participant_credentials (
    participant_id INTEGER PRIMARY KEY CHECK (participant_id >= 1),
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('bank', 'wallet', 'government')),
    callback_url TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS participant_api_keys (
    key_id TEXT PRIMARY KEY,
    participant_id INTEGER NOT NULL REFERENCES participant_credentials (participant_id),
    key_hash BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS participant_certificates (
    participant_id INTEGER NOT NULL REFERENCES participant_credentials (participant_id),
    fingerprint_sha256 BLOB NOT NULL UNIQUE CHECK (length(fingerprint_sha256) = 32),
    PRIMARY KEY (participant_id, fingerprint_sha256)
);
"""


def _allow_government_kind(db) -> None:
    """A file made before the `government` kind (G2P programmes) has the older CHECK;
    SQLite cannot alter a constraint, so the table is rebuilt with the current one, rows
    and all, in one transaction (the keys and certificates refer to it by name)."""
    (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'participant_credentials'").fetchone()
    if "government" in sql:
        return
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute(_SQLITE_SCHEMA.split(";")[0].replace(
            "IF NOT EXISTS participant_credentials", "participant_credentials_new"))
        db.execute("INSERT INTO participant_credentials_new SELECT participant_id, name, kind, "
                   "callback_url FROM participant_credentials")
        db.execute("DROP TABLE participant_credentials")
        db.execute("ALTER TABLE participant_credentials_new RENAME TO participant_credentials")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    finally:
        db.execute("PRAGMA foreign_keys = ON")


class EmbeddedCredentialStore:
    """SQLite, in WAL mode with synchronous=FULL: a credential write survives a crash."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = open_sqlite(path)
        self._db.executescript(_SQLITE_SCHEMA)
        _allow_government_kind(self._db)

    async def load(self) -> CredentialsSnapshot:
        db = self._db
        participants = [
            ParticipantRecord(participant_id=row[0], name=row[1], kind=row[2],
                              callback_url=row[3])
            for row in db.execute("SELECT participant_id, name, kind, callback_url FROM "
                                  "participant_credentials ORDER BY participant_id")
        ]
        keys = [
            KeyRecord(key_id=row[0], participant_id=row[1], key_hash=bytes(row[2]),
                      revoked=bool(row[3]))
            for row in db.execute("SELECT key_id, participant_id, key_hash, revoked FROM "
                                  "participant_api_keys")
        ]
        certificates = [
            (row[0], bytes(row[1]))
            for row in db.execute("SELECT participant_id, fingerprint_sha256 FROM "
                                  "participant_certificates")
        ]
        return CredentialsSnapshot(participants=participants, keys=keys,
                                   certificates=certificates)

    async def put_participant(self, record: ParticipantRecord) -> None:
        self._db.execute(
            "INSERT INTO participant_credentials (participant_id, name, kind, callback_url) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (participant_id) DO UPDATE SET "
            "kind = excluded.kind, callback_url = excluded.callback_url",
            (record.participant_id, record.name, record.kind, record.callback_url),
        )

    async def set_callback_url(self, participant_id: int, url: str) -> None:
        self._db.execute("UPDATE participant_credentials SET callback_url = ? "
                         "WHERE participant_id = ?", (url, participant_id))

    async def add_key(self, record: KeyRecord) -> None:
        self._db.execute(
            "INSERT INTO participant_api_keys (key_id, participant_id, key_hash, revoked) "
            "VALUES (?, ?, ?, 0)", (record.key_id, record.participant_id, record.key_hash),
        )

    async def revoke_keys(self, participant_id: int) -> None:
        self._db.execute("UPDATE participant_api_keys SET revoked = 1 WHERE participant_id = ?",
                         (participant_id,))

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO participant_certificates (participant_id, "
            "fingerprint_sha256) VALUES (?, ?)", (participant_id, fingerprint),
        )

    async def close(self) -> None:
        self._db.close()


class PostgresCredentialStore:
    """The same API over the tables of migration 0003 (`ponte db migrate` applies it)."""

    def __init__(self, pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, apply_migrations: bool = True) -> PostgresCredentialStore:
        import asyncpg

        if apply_migrations:
            from switch.store.migrate import migrate_dsn

            await migrate_dsn(dsn)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, timeout=10,
                                         command_timeout=10)
        return cls(pool)

    async def load(self) -> CredentialsSnapshot:
        async with self.pool.acquire() as connection:
            participants = [
                ParticipantRecord(participant_id=row[0], name=row[1], kind=row[2],
                                  callback_url=row[3])
                for row in await connection.fetch(
                    "SELECT participant_id, name, kind, callback_url FROM "
                    "participant_credentials ORDER BY participant_id")
            ]
            keys = [
                KeyRecord(key_id=row[0], participant_id=row[1], key_hash=bytes(row[2]),
                          revoked=row[3] is not None)
                for row in await connection.fetch(
                    "SELECT key_id, participant_id, key_hash, revoked_at FROM "
                    "participant_api_keys")
            ]
            certificates = [
                (row[0], bytes(row[1]))
                for row in await connection.fetch(
                    "SELECT participant_id, fingerprint_sha256 FROM participant_certificates")
            ]
        return CredentialsSnapshot(participants=participants, keys=keys,
                                   certificates=certificates)

    async def put_participant(self, record: ParticipantRecord) -> None:
        await self.pool.execute(
            "INSERT INTO participant_credentials (participant_id, name, kind, callback_url) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (participant_id) DO UPDATE SET "
            "kind = excluded.kind, callback_url = excluded.callback_url",
            record.participant_id, record.name, record.kind, record.callback_url,
        )

    async def set_callback_url(self, participant_id: int, url: str) -> None:
        await self.pool.execute("UPDATE participant_credentials SET callback_url = $1 "
                                "WHERE participant_id = $2", url, participant_id)

    async def add_key(self, record: KeyRecord) -> None:
        await self.pool.execute(
            "INSERT INTO participant_api_keys (key_id, participant_id, key_hash) "
            "VALUES ($1, $2, $3)", record.key_id, record.participant_id, record.key_hash,
        )

    async def revoke_keys(self, participant_id: int) -> None:
        await self.pool.execute(
            "UPDATE participant_api_keys SET revoked_at = now() WHERE participant_id = $1 "
            "AND revoked_at IS NULL", participant_id,
        )

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None:
        await self.pool.execute(
            "INSERT INTO participant_certificates (participant_id, fingerprint_sha256) "
            "VALUES ($1, $2) ON CONFLICT DO NOTHING", participant_id, fingerprint,
        )

    async def close(self) -> None:
        await self.pool.close()
