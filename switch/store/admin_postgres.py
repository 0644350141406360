"""The PostgreSQL admin store (asyncpg): operators, sessions, the audit chain and proposals.

Tables come from migration 0004_admin.sql (`ponte db migrate`); same columns as the embedded
store. Each change runs in one transaction with its audit record. The audit record is
chained under a transaction-scoped advisory lock, so several console processes sharing the
database append one after another and never fork the chain. It must never store a password
or a session token, only their hashes.
"""

from __future__ import annotations

from typing import AsyncIterator

import asyncpg

from switch.admin import audit as audit_chain
from switch.admin.ports import AuditEntry
from switch.admin.types import AuditRecord, Proposal, ProposalState, Session, User
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

AUDIT_LOCK_KEY = 0x504F4E5441554454  # "PONTAUDT"
POOL_SIZE_MAX = 4  # operator traffic is light; the pool must not starve the journal's


def _placeholders(count: int) -> str:
    return ", ".join(f"${index}" for index in range(1, count + 1))


class PostgresAdminStore:
    """Admin store over an asyncpg pool. Build with `await PostgresAdminStore.connect(dsn)`."""

    def __init__(self, pool: asyncpg.Pool, owns_pool: bool) -> None:
        self._pool = pool
        self._owns_pool = owns_pool

    @classmethod
    async def connect(cls, dsn: str) -> PostgresAdminStore:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=POOL_SIZE_MAX,
                                         command_timeout=10)
        return cls(pool, owns_pool=True)

    async def _append(self, connection, entry: AuditEntry) -> AuditRecord:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)
        row = await connection.fetchrow(
            "SELECT seq, record_hash FROM admin_audit ORDER BY seq DESC LIMIT 1"
        )
        seq, prev_hash = (0, audit_chain.GENESIS_HASH) if row is None else (
            row[0], bytes(row[1]))
        record = audit_chain.seal(prev_hash, seq + 1, entry.at_ns, entry.actor, entry.action,
                                  entry.target, entry.result, entry.detail, entry.client)
        await connection.execute(
            f"INSERT INTO admin_audit ({AUDIT_COLUMNS}) VALUES ({_placeholders(10)})",
            *audit_row(record),
        )
        return record

    # --- operators ------------------------------------------------------------------------

    async def get_user(self, username: str) -> User | None:
        row = await self._pool.fetchrow(
            f"SELECT {USER_COLUMNS} FROM admin_users WHERE username = $1", username)
        return None if row is None else user_from_row(row)

    async def list_users(self) -> list[User]:
        rows = await self._pool.fetch(f"SELECT {USER_COLUMNS} FROM admin_users ORDER BY username")
        return [user_from_row(row) for row in rows]

    async def count_users(self) -> int:
        return await self._pool.fetchval("SELECT count(*) FROM admin_users")

    async def insert_user(self, user: User, audit: AuditEntry) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                f"INSERT INTO admin_users ({USER_COLUMNS}) VALUES ({_placeholders(5)}) "
                f"ON CONFLICT (username) DO NOTHING", *user_row(user))
            if status != "INSERT 0 1":
                return False
            await self._append(connection, audit)
        return True

    async def set_user_disabled(self, username: str, disabled: bool, audit: AuditEntry) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                "UPDATE admin_users SET disabled = $1 WHERE username = $2", disabled, username)
            if status != "UPDATE 1":
                return False
            if disabled:
                await connection.execute("DELETE FROM admin_sessions WHERE username = $1",
                                         username)
            await self._append(connection, audit)
        return True

    # --- sessions -------------------------------------------------------------------------

    async def insert_session(self, session: Session, sessions_per_user_max: int,
                             audit: AuditEntry) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(
                f"INSERT INTO admin_sessions ({SESSION_COLUMNS}) VALUES ({_placeholders(8)})",
                *session_row(session))
            await connection.execute(
                "DELETE FROM admin_sessions WHERE username = $1 AND token_hash NOT IN ("
                "SELECT token_hash FROM admin_sessions WHERE username = $1 "
                "ORDER BY created_ns DESC LIMIT $2)", session.username, sessions_per_user_max)
            await self._append(connection, audit)

    async def get_session(self, token_hash: bytes) -> Session | None:
        row = await self._pool.fetchrow(
            f"SELECT {SESSION_COLUMNS} FROM admin_sessions WHERE token_hash = $1", token_hash)
        return None if row is None else session_from_row(row)

    async def touch_session(self, token_hash: bytes, seen_ns: int) -> None:
        await self._pool.execute("UPDATE admin_sessions SET seen_ns = $1 WHERE token_hash = $2",
                                 seen_ns, token_hash)

    async def delete_session(self, token_hash: bytes, audit: AuditEntry | None) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                "DELETE FROM admin_sessions WHERE token_hash = $1", token_hash)
            if audit is not None and status == "DELETE 1":
                await self._append(connection, audit)

    async def delete_expired_sessions(self, now_ns: int, idle_ns: int) -> int:
        status = await self._pool.execute(
            "DELETE FROM admin_sessions WHERE expires_ns <= $1 OR seen_ns <= $2",
            now_ns, now_ns - idle_ns)
        return int(status.split()[-1])

    # --- audit ----------------------------------------------------------------------------

    async def append_audit(self, entry: AuditEntry) -> AuditRecord:
        async with self._pool.acquire() as connection, connection.transaction():
            return await self._append(connection, entry)

    async def audit_page(self, before_seq: int | None, limit: int, actor: str = "",
                         action: str = "") -> list[AuditRecord]:
        clauses, params = [], []
        if before_seq is not None:
            params.append(before_seq)
            clauses.append(f"seq < ${len(params)}")
        if actor:
            params.append(actor)
            clauses.append(f"actor = ${len(params)}")
        if action:
            params.append(action)
            clauses.append(f"action = ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {AUDIT_COLUMNS} FROM admin_audit {where} ORDER BY seq DESC "
            f"LIMIT ${len(params)}", *params)
        return [audit_from_row(row) for row in rows]

    async def iter_audit(self, batch: int) -> AsyncIterator[AuditRecord]:
        after = 0
        while True:
            rows = await self._pool.fetch(
                f"SELECT {AUDIT_COLUMNS} FROM admin_audit WHERE seq > $1 ORDER BY seq "
                f"LIMIT $2", after, batch)
            for row in rows:
                yield audit_from_row(row)
            if len(rows) < batch:
                return
            after = rows[-1][0]

    async def audit_head(self) -> tuple[int, bytes]:
        row = await self._pool.fetchrow(
            "SELECT seq, record_hash FROM admin_audit ORDER BY seq DESC LIMIT 1")
        return (0, audit_chain.GENESIS_HASH) if row is None else (row[0], bytes(row[1]))

    # --- maker-checker --------------------------------------------------------------------

    async def insert_proposal(self, proposal: Proposal, pending_max: int,
                              audit: AuditEntry) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
            # The audit lock also serialises the pending-count check between processes.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK_KEY)
            pending = await connection.fetchval(
                "SELECT count(*) FROM admin_proposals WHERE state = $1",
                int(ProposalState.PENDING))
            if pending >= pending_max:
                return False
            await connection.execute(
                f"INSERT INTO admin_proposals ({PROPOSAL_COLUMNS}) VALUES ({_placeholders(12)})",
                *proposal_row(proposal))
            await self._append(connection, audit)
        return True

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        row = await self._pool.fetchrow(
            f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE proposal_id = $1",
            proposal_id)
        return None if row is None else proposal_from_row(row)

    async def list_proposals(self, state: ProposalState | None, limit: int) -> list[Proposal]:
        if state is None:
            rows = await self._pool.fetch(
                f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals ORDER BY proposed_ns DESC "
                f"LIMIT $1", limit)
        else:
            rows = await self._pool.fetch(
                f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE state = $1 "
                f"ORDER BY proposed_ns DESC LIMIT $2", int(state), limit)
        return [proposal_from_row(row) for row in rows]

    async def executed_proposals(self, kinds: tuple[str, ...]) -> list[Proposal]:
        rows = await self._pool.fetch(
            f"SELECT {PROPOSAL_COLUMNS} FROM admin_proposals WHERE state = $1 "
            f"AND kind = ANY($2::text[]) ORDER BY decided_ns, proposal_id",
            int(ProposalState.EXECUTED), list(kinds))
        return [proposal_from_row(row) for row in rows]

    async def decide_proposal(self, proposal: Proposal, expected: ProposalState,
                              audit: AuditEntry) -> bool:
        assert proposal.state != ProposalState.PENDING
        assert proposal.state != expected
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                "UPDATE admin_proposals SET state = $1, decided_by = $2, decided_ns = $3, "
                "core_result = $4, detail = $5 WHERE proposal_id = $6 AND state = $7",
                int(proposal.state), proposal.decided_by, proposal.decided_ns,
                proposal.core_result, proposal.detail, proposal.proposal_id,
                int(expected))
            if status != "UPDATE 1":
                return False
            await self._append(connection, audit)
        return True

    async def close(self) -> None:
        if self._owns_pool:
            await self._pool.close()
