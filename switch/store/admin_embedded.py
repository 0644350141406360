"""The embedded admin store: operators, sessions, the audit chain and proposals in SQLite.

The default for `ponte demo` and single-process deployments (':memory:' in tests); the
PostgreSQL twin is `admin_postgres.py` with migration 0004_admin.sql, same columns. Every
change is written in one `BEGIN IMMEDIATE` transaction together with the audit record that
describes it, and the audit record is chained to the newest one inside that transaction, so
two writers can never fork the chain. Triggers refuse UPDATE and DELETE on the audit table:
a record is only ever appended. It must never store a password or a session token, only
their hashes.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import AsyncIterator

from switch.admin import audit as audit_chain
from switch.admin.ports import AuditEntry
from switch.admin.types import (
    AuditRecord,
    Proposal,
    ProposalState,
    Session,
    User,
)
from switch.store.admin_rows import (
    AUDIT_COLUMNS,
    PROPOSAL_COLUMNS,
    SESSION_COLUMNS,
    USER_COLUMNS,
    audit_from_row,
    audit_row,
    proposal_from_row,
    proposal_row,
    session_from_row,
    session_row,
    user_from_row,
    user_row,
)
from switch.store.embedded import open_sqlite, write_transaction

SCHEMA_VERSION = 1

# Kept in step with switch/store/migrations/0004_admin.sql (a test compares the columns).
SCHEMA = """
CREATE TABLE IF NOT EXISTS admin_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS admin_users (
    username      TEXT    PRIMARY KEY,
    role          INTEGER NOT NULL CHECK (role BETWEEN 1 AND 3),
    password_hash TEXT    NOT NULL,
    created_ns    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS admin_sessions (
    token_hash BLOB    PRIMARY KEY CHECK (length(token_hash) = 32),
    username   TEXT    NOT NULL REFERENCES admin_users (username),
    role       INTEGER NOT NULL,
    csrf_token TEXT    NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    seen_ns    INTEGER NOT NULL,
    client     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_sessions_user ON admin_sessions (username, created_ns);
CREATE TABLE IF NOT EXISTS admin_audit (
    seq         INTEGER PRIMARY KEY CHECK (seq >= 1),
    at_ns       INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    client      TEXT    NOT NULL,
    prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    record_hash BLOB    NOT NULL CHECK (length(record_hash) = 32)
);
CREATE INDEX IF NOT EXISTS admin_audit_actor ON admin_audit (actor, seq);
CREATE TRIGGER IF NOT EXISTS admin_audit_no_update BEFORE UPDATE ON admin_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS admin_audit_no_delete BEFORE DELETE ON admin_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS admin_proposals (
    proposal_id    TEXT    PRIMARY KEY,
    kind           TEXT    NOT NULL,
    participant_id INTEGER NOT NULL,
    currency       TEXT    NOT NULL,
    body           TEXT    NOT NULL,
    state          INTEGER NOT NULL,
    proposed_by    TEXT    NOT NULL,
    proposed_ns    INTEGER NOT NULL,
    decided_by     TEXT    NOT NULL,
    decided_ns     INTEGER NOT NULL,
    core_result    INTEGER NOT NULL,
    detail         TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS admin_proposals_state ON admin_proposals (state, proposed_ns);
"""


class EmbeddedAdminStore:
    """Admin store in one SQLite database file (or ':memory:')."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = open_sqlite(path)
        self._db.executescript(SCHEMA)
        row = self._db.execute("SELECT max(version) FROM admin_schema").fetchone()
        if row[0] is None:
            self._db.execute("INSERT INTO admin_schema VALUES (?)", (SCHEMA_VERSION,))
        elif row[0] > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: admin schema {row[0]} is newer than this code")

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db)

    def _append(self, db, entry: AuditEntry) -> AuditRecord:
        """Chain `entry` to the newest record; the caller's transaction holds the write lock."""
        row = db.execute(
            "SELECT seq, record_hash FROM admin_audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev_hash = (0, audit_chain.GENESIS_HASH) if row is None else (row[0], bytes(row[1]))
        record = audit_chain.seal(prev_hash, seq + 1, entry.at_ns, entry.actor, entry.action,
                                  entry.target, entry.result, entry.detail, entry.client)
        db.execute(f"INSERT INTO admin_audit ({AUDIT_COLUMNS}) VALUES ({','.join('?' * 10)})",
                   audit_row(record))
        return record

    # --- operators ------------------------------------------------------------------------

    async def get_user(self, username: str) -> User | None:
        row = self._db.execute(f"SELECT {USER_COLUMNS} FROM admin_users WHERE username = ?",
                               (username,)).fetchone()
        return None if row is None else user_from_row(row)

    async def list_users(self) -> list[User]:
        rows = self._db.execute(f"SELECT {USER_COLUMNS} FROM admin_users ORDER BY username")
        return [user_from_row(row) for row in rows.fetchall()]

    async def count_users(self) -> int:
        return self._db.execute("SELECT count(*) FROM admin_users").fetchone()[0]

    async def insert_user(self, user: User, audit: AuditEntry) -> bool:
        with self._write() as db:
            cursor = db.execute(
                f"INSERT OR IGNORE INTO admin_users ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                user_row(user),
            )
            if cursor.rowcount != 1:
                return False
            self._append(db, audit)
        return True

    async def set_user_disabled(self, username: str, disabled: bool, audit: AuditEntry) -> bool:
        with self._write() as db:
            cursor = db.execute("UPDATE admin_users SET disabled = ? WHERE username = ?",
                                (disabled, username))
            if cursor.rowcount != 1:
                return False
            if disabled:
                db.execute("DELETE FROM admin_sessions WHERE username = ?", (username,))
            self._append(db, audit)
        return True

    # --- sessions -------------------------------------------------------------------------

    async def insert_session(self, session: Session, sessions_per_user_max: int,
                             audit: AuditEntry) -> None:
        with self._write() as db:
            db.execute(f"INSERT INTO admin_sessions ({SESSION_COLUMNS}) VALUES "
                       f"({','.join('?' * 8)})", session_row(session))
            # The oldest sessions of this user beyond the bound end now.
            db.execute(
                "DELETE FROM admin_sessions WHERE username = ? AND token_hash NOT IN ("
                "SELECT token_hash FROM admin_sessions WHERE username = ? "
                "ORDER BY created_ns DESC LIMIT ?)",
                (session.username, session.username, sessions_per_user_max),
            )
            self._append(db, audit)

    async def get_session(self, token_hash: bytes) -> Session | None:
        row = self._db.execute(
            f"SELECT {SESSION_COLUMNS} FROM admin_sessions WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return None if row is None else session_from_row(row)

    async def touch_session(self, token_hash: bytes, seen_ns: int) -> None:
        self._db.execute("UPDATE admin_sessions SET seen_ns = ? WHERE token_hash = ?",
                         (seen_ns, token_hash))

    async def delete_session(self, token_hash: bytes, audit: AuditEntry | None) -> None:
        with self._write() as db:
            cursor = db.execute("DELETE FROM admin_sessions WHERE token_hash = ?", (token_hash,))
            if audit is not None and cursor.rowcount == 1:
                self._append(db, audit)

    async def delete_expired_sessions(self, now_ns: int, idle_ns: int) -> int:
        cursor = self._db.execute(
            "DELETE FROM admin_sessions WHERE expires_ns <= ? OR seen_ns <= ?",
            (now_ns, now_ns - idle_ns),
        )
        return cursor.rowcount

    # --- audit ----------------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        with self._write() as db:
            return self._append(db, entry)

    async def audit_page(self, before_seq: int | None, limit: int, actor: str = "",
                         action: str = "") -> list[AuditRecord]:
        clauses, params = [], []
        if before_seq is not None:
            clauses.append("seq < ?")
            params.append(before_seq)
        if actor:
            clauses.append("actor = ?")
            params.append(actor)
        if action:
            clauses.append("action = ?")
            params.append(action)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            f"SELECT {AUDIT_COLUMNS} FROM admin_audit {where} ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [audit_from_row(row) for row in rows]

    async def iter_audit(self, batch: int) -> AsyncIterator[AuditRecord]:
        after = 0
        while True:
            rows = self._db.execute(
                f"SELECT {AUDIT_COLUMNS} FROM admin_audit WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, batch),
            ).fetchall()
            for row in rows:
                yield audit_from_row(row)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def audit_head(self) -> tuple[int, bytes]:
        row = self._db.execute(
            "SELECT seq, record_hash FROM admin_audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (0, audit_chain.GENESIS_HASH) if row is None else (row[0], bytes(row[1]))

    # --- maker-checker --------------------------------------------------------------------

    async def insert_proposal(self, proposal: Proposal, pending_max: int,
                              audit: AuditEntry) -> bool:
        with self._write() as db:
            pending = db.execute("SELECT count(*) FROM admin_proposals WHERE state = ?",
                                 (int(ProposalState.PENDING),)).fetchone()[0]
            if pending >= pending_max:
                return False
            db.execute(f"INSERT INTO admin_proposals ({PROPOSAL_COLUMNS}) VALUES "
                       f"({','.join('?' * 12)})", proposal_row(proposal))
            self._append(db, audit)
        return True

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        row = self._db.execute(
            f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE proposal_id = ?",
            (proposal_id,),
        ).fetchone()
        return None if row is None else proposal_from_row(row)

    async def list_proposals(self, state: ProposalState | None, limit: int) -> list[Proposal]:
        if state is None:
            rows = self._db.execute(
                f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals "
                f"ORDER BY proposed_ns DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE state = ? "
                f"ORDER BY proposed_ns DESC LIMIT ?", (int(state), limit))
        return [proposal_from_row(row) for row in rows.fetchall()]

    async def executed_proposals(self, kinds: tuple[str, ...]) -> list[Proposal]:
        marks = ",".join("?" * len(kinds))
        rows = self._db.execute(
            f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE state = ? AND kind IN "
            f"({marks}) ORDER BY decided_ns, proposal_id", (int(ProposalState.EXECUTED), *kinds))
        return [proposal_from_row(row) for row in rows.fetchall()]

    async def decide_proposal(self, proposal: Proposal, expected: ProposalState,
                              audit: AuditEntry) -> bool:
        assert proposal.state != ProposalState.PENDING
        assert proposal.state != expected
        with self._write() as db:
            cursor = db.execute(
                "UPDATE admin_proposals SET state = ?, decided_by = ?, decided_ns = ?, "
                "core_result = ?, detail = ? WHERE proposal_id = ? AND state = ?",
                (int(proposal.state), proposal.decided_by, proposal.decided_ns,
                 proposal.core_result, proposal.detail, proposal.proposal_id,
                 int(expected)),
            )
            if cursor.rowcount != 1:
                return False
            self._append(db, audit)
        return True

    # --- plumbing -------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """The raw connection (tests tamper with the audit table through it)."""
        return self._db

    async def close(self) -> None:
        self._db.close()
