"""The PostgreSQL directory store (asyncpg): the source of truth in production.

Schema: `migrations/0002_directory.sql`. Implements `switch.directory.ports.DirectoryStore`
with the same pure rules as the embedded store; this module only reads, locks and writes.

Concurrency. A single-alias write takes the table's ROW EXCLUSIVE lock (what an INSERT takes
anyway) and transaction-level advisory locks on the alias, the owner and the account it
touches, in ascending key order so two writers never wait on each other in a cycle; the
counts it then reads for the caps cannot change under it. A batch (bulk import) takes SHARE
ROW EXCLUSIVE instead: one lock instead of thousands of advisory locks (the shared lock
table holds only a few thousand), at the price of running alone among writers. Readers are
never blocked.

Fresh bulk load (`load_fresh_rows`): one COPY into the empty table with the primary key and
indexes dropped, then the primary key first (it is also the uniqueness check, so a bad
load fails before the other indexes are spent on; rows sent in key order make its sort
nearly free), then the narrow bigint indexes, then the cap check (candidates counted in
this process while PostgreSQL sorts, exact check through the new indexes); all in one
transaction, so a failed load leaves nothing behind.
It must never receive or store a raw national ID: owners arrive as identity tokens.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from operator import itemgetter
from typing import Iterable, Sequence

import asyncpg

from switch.directory import claims as claim_rules
from switch.directory import rules
from switch.directory.config import DirectoryConfig
from switch.directory.identity import account_key, alias_lock_key, owner_key
from switch.directory.types import (
    CLAIM_STATES_LIVE,
    AliasRecord,
    Claim,
    DirectoryResult,
    MapperLink,
    OwnerKind,
)
from switch.store.embedded import (
    ALIAS_COLUMNS,
    CLAIM_COLUMNS,
    alias_from_row,
    claim_from_row,
    claim_row,
)
from switch.store.migrate import migrate

R = DirectoryResult
TABLE = "directory_aliases"
# Column order of `copy_row` tuples, for COPY.
COPY_COLUMNS = (
    "created_ns", "updated_ns", "owner_key", "account_key", "alias_type", "owner_kind",
    "status", "alias_key", "participant_id", "account_ref", "display_initials", "owner_token",
)
_ALIAS_TYPE_COLUMN = COPY_COLUMNS.index("alias_type")
_ALIAS_KEY_COLUMN = COPY_COLUMNS.index("alias_key")
_OWNER_KEY_COLUMN = COPY_COLUMNS.index("owner_key")
_ACCOUNT_KEY_COLUMN = COPY_COLUMNS.index("account_key")
# A batch larger than this locks the table for writers instead of taking advisory locks.
_ADVISORY_BATCH_MAX = 16
_COPY_BATCH_MIN = 32
_UNIQUE_RETRIES_MAX = 3
_LIVE_STATES = [int(state) for state in CLAIM_STATES_LIVE]
# Session memory for a fresh load's index builds (this transaction only).
LOAD_MAINTENANCE_WORK_MEM = "1GB"


def copy_row(record: AliasRecord) -> tuple:
    return (
        record.created_ns, record.updated_ns, owner_key(record.owner_token),
        account_key(record.participant_id, record.account_ref), int(record.alias_type),
        int(record.owner_kind), int(record.status), record.alias_key, record.participant_id,
        record.account_ref, record.display_initials, record.owner_token,
    )


def _primary_key_order(row: tuple) -> tuple:
    return row[_ALIAS_TYPE_COLUMN], row[_ALIAS_KEY_COLUMN]


def _cap_candidates(rows: Sequence[tuple], config: DirectoryConfig) -> tuple[list, list]:
    """Owner and account keys with more rows than the smallest cap allows: only those can
    break a cap. Counter counts in C, ~0.4 us a row per column: cheaper than the same
    GROUP BY in PostgreSQL, and it runs while PostgreSQL builds the primary key."""
    person_max = config.aliases_per_person_max
    account_max = config.aliases_per_account_max
    owners = Counter(map(itemgetter(_OWNER_KEY_COLUMN), rows))
    accounts = Counter(map(itemgetter(_ACCOUNT_KEY_COLUMN), rows))
    return ([key for key, count in owners.items() if count > person_max],
            [key for key, count in accounts.items() if count > account_max])


class _Refused(Exception):
    """Rolls a transaction back with a result code."""

    def __init__(self, result: DirectoryResult) -> None:
        super().__init__(result.name)
        self.result = result


class PostgresDirectoryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 8, apply_migrations: bool = True,
        timeout_s: float = 10.0,
    ) -> PostgresDirectoryStore:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         timeout=timeout_s, command_timeout=600)
        if apply_migrations:
            async with pool.acquire() as connection:
                await migrate(connection)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # --- locking ------------------------------------------------------------------------

    @staticmethod
    async def _lock(connection, keys: Iterable[int]) -> None:
        await connection.execute(f"LOCK TABLE {TABLE} IN ROW EXCLUSIVE MODE")
        await connection.execute(
            "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k", sorted(set(keys))
        )

    @staticmethod
    async def _get(connection, alias_type: int, alias_key: str) -> AliasRecord | None:
        row = await connection.fetchrow(
            f"SELECT {ALIAS_COLUMNS} FROM {TABLE} WHERE alias_type = $1 AND alias_key = $2",
            int(alias_type), alias_key,
        )
        return None if row is None else alias_from_row(row)

    @staticmethod
    async def _owner_count(connection, token: bytes) -> int:
        return await connection.fetchval(
            f"SELECT count(*) FROM {TABLE} WHERE owner_key = $1 AND owner_token = $2",
            owner_key(token), token,
        )

    @staticmethod
    async def _account_count(connection, participant_id: str, account_ref: str) -> int:
        return await connection.fetchval(
            f"SELECT count(*) FROM {TABLE} WHERE account_key = $1 AND participant_id = $2 "
            f"AND account_ref = $3",
            account_key(participant_id, account_ref), participant_id, account_ref,
        )

    @staticmethod
    async def _live_claim(connection, alias_type: int, alias_key: str) -> bool:
        return await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM directory_claims WHERE alias_type = $1 "
            "AND alias_key = $2 AND state = ANY($3::smallint[]))",
            int(alias_type), alias_key, _LIVE_STATES,
        )

    # --- aliases ------------------------------------------------------------------------

    async def get_alias(self, alias_type: int, alias_key: str) -> AliasRecord | None:
        async with self.pool.acquire() as connection:
            return await self._get(connection, alias_type, alias_key)

    async def get_aliases(self, keys):
        if not keys:
            return {}
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {ALIAS_COLUMNS} FROM {TABLE} a JOIN unnest($1::smallint[], $2::text[]) "
                f"AS k(t, v) ON a.alias_type = k.t AND a.alias_key = k.v",
                [int(t) for t, _ in keys], [v for _, v in keys],
            )
        found = {}
        for row in rows:
            record = alias_from_row(row)
            found[(int(record.alias_type), record.alias_key)] = record
        return found

    async def insert_aliases(self, records: list[AliasRecord], config: DirectoryConfig):
        for attempt in range(_UNIQUE_RETRIES_MAX):
            try:
                async with self.pool.acquire() as connection, connection.transaction():
                    return await self._insert_aliases(connection, records, config)
            except asyncpg.UniqueViolationError:
                # Only reachable if a writer bypassed the locks; the retry reads its row.
                if attempt == _UNIQUE_RETRIES_MAX - 1:
                    raise
        raise AssertionError("unreachable")

    async def _insert_aliases(self, connection, records, config):
        if len(records) <= _ADVISORY_BATCH_MAX:
            keys = []
            for record in records:
                keys.append(alias_lock_key(record.alias_type, record.alias_key))
                keys.append(owner_key(record.owner_token))
                keys.append(account_key(record.participant_id, record.account_ref))
            await self._lock(connection, keys)
        else:
            await connection.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
        rows = await connection.fetch(
            f"SELECT {ALIAS_COLUMNS} FROM {TABLE} a JOIN unnest($1::smallint[], $2::text[]) "
            f"AS k(t, v) ON a.alias_type = k.t AND a.alias_key = k.v",
            [int(r.alias_type) for r in records], [r.alias_key for r in records],
        )
        existing = {}
        for row in rows:
            held = alias_from_row(row)
            existing[(int(held.alias_type), held.alias_key)] = held
        tokens = {r.owner_token for r in records}
        owner_counts = dict.fromkeys(tokens, 0)
        for row in await connection.fetch(
            f"SELECT owner_token, count(*) FROM {TABLE} WHERE owner_key = ANY($1::bigint[]) "
            f"GROUP BY owner_token", [owner_key(t) for t in tokens],
        ):
            if bytes(row[0]) in owner_counts:
                owner_counts[bytes(row[0])] = row[1]
        accounts = {(r.participant_id, r.account_ref) for r in records}
        account_counts = dict.fromkeys(accounts, 0)
        for row in await connection.fetch(
            f"SELECT participant_id, account_ref, count(*) FROM {TABLE} "
            f"WHERE account_key = ANY($1::bigint[]) GROUP BY participant_id, account_ref",
            [account_key(*a) for a in accounts],
        ):
            if (row[0], row[1]) in account_counts:
                account_counts[(row[0], row[1])] = row[2]
        results = rules.admit_batch(records, existing, owner_counts, account_counts, config)
        admitted = [copy_row(r) for r, result in zip(records, results) if result is R.OK]
        if len(admitted) >= _COPY_BATCH_MIN:
            await connection.copy_records_to_table(TABLE, records=admitted, columns=COPY_COLUMNS)
        elif admitted:
            await connection.executemany(
                f"INSERT INTO {TABLE} ({', '.join(COPY_COLUMNS)}) VALUES "
                f"({', '.join(f'${i}' for i in range(1, len(COPY_COLUMNS) + 1))})",
                admitted,
            )
        return results

    async def update_alias(self, new: AliasRecord, expected: AliasRecord,
                           config: DirectoryConfig) -> DirectoryResult:
        async with self.pool.acquire() as connection, connection.transaction():
            await self._lock(connection, [
                alias_lock_key(expected.alias_type, expected.alias_key),
                account_key(new.participant_id, new.account_ref),
            ])
            current = await self._get(connection, expected.alias_type, expected.alias_key)
            if current != expected:
                return R.ALIAS_CHANGED
            if await self._live_claim(connection, expected.alias_type, expected.alias_key):
                return R.CLAIM_PENDING
            account_changes = new.account_ref != expected.account_ref
            account_count = (await self._account_count(connection, new.participant_id,
                                                       new.account_ref)
                             if account_changes else 0)
            result = rules.move_outcome(0, account_count, new.owner_kind, False,
                                        account_changes, config)
            if result is R.OK:
                await self._replace_alias(connection, new)
            return result

    @staticmethod
    async def _replace_alias(connection, record: AliasRecord) -> None:
        await connection.execute(
            f"UPDATE {TABLE} SET participant_id = $3, account_ref = $4, owner_token = $5, "
            f"owner_kind = $6, display_initials = $7, status = $8, updated_ns = $9, "
            f"owner_key = $10, account_key = $11 WHERE alias_type = $1 AND alias_key = $2",
            int(record.alias_type), record.alias_key, record.participant_id,
            record.account_ref, record.owner_token, int(record.owner_kind),
            record.display_initials, int(record.status), record.updated_ns,
            owner_key(record.owner_token), account_key(record.participant_id, record.account_ref),
        )

    async def delete_alias(self, alias_type: int, alias_key: str,
                           participant_id: str) -> DirectoryResult:
        async with self.pool.acquire() as connection, connection.transaction():
            await self._lock(connection, [alias_lock_key(alias_type, alias_key)])
            current = await self._get(connection, alias_type, alias_key)
            if current is None or current.participant_id != participant_id:
                return R.ALIAS_NOT_FOUND  # whoever else may hold it (see the port)
            if await self._live_claim(connection, alias_type, alias_key):
                return R.CLAIM_PENDING
            await connection.execute(
                f"DELETE FROM {TABLE} WHERE alias_type = $1 AND alias_key = $2",
                int(alias_type), alias_key,
            )
            return R.OK

    async def count_owner_aliases(self, owner_token: bytes) -> int:
        async with self.pool.acquire() as connection:
            return await self._owner_count(connection, owner_token)

    async def count_account_aliases(self, participant_id: str, account_ref: str) -> int:
        async with self.pool.acquire() as connection:
            return await self._account_count(connection, participant_id, account_ref)

    async def alias_count(self) -> int:
        async with self.pool.acquire() as connection:
            return await connection.fetchval(f"SELECT count(*) FROM {TABLE}")

    async def load_fresh(self, chunks: Iterable[list[AliasRecord]], config: DirectoryConfig,
                         on_chunk=None) -> DirectoryResult:
        rows = []
        for chunk in chunks:
            rows.extend(copy_row(record) for record in chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
        rows.sort(key=_primary_key_order)
        return await self.load_fresh_rows(rows, config)

    async def load_fresh_rows(
        self, rows: Sequence[tuple], config: DirectoryConfig, on_phase=None,
    ) -> DirectoryResult:
        """Load `copy_row` tuples into the empty alias table in one transaction (see the
        module docstring). Rows in primary-key order (alias_type, alias_key) make the
        primary key build several times faster: its sort finds the input already sorted.
        `rows` is read twice (by COPY, and to count aliases per owner and per account
        while PostgreSQL builds the primary key), so it must be a sequence.
        `on_phase(name)` is called as each phase starts: "copy", "primary_key", "indexes",
        "caps"."""
        def phase(name: str) -> None:
            if on_phase is not None:
                on_phase(name)

        async with self.pool.acquire() as connection:
            try:
                async with connection.transaction():
                    await connection.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
                    if await connection.fetchval(f"SELECT EXISTS (SELECT 1 FROM {TABLE})"):
                        raise ValueError("load_fresh needs an empty alias table")
                    primary_key = await connection.fetchval(
                        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conrelid = $1::regclass AND contype = 'p'", TABLE,
                    )
                    indexes = await connection.fetch(
                        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1 "
                        "AND schemaname = current_schema() AND indexname <> $2 "
                        "ORDER BY indexname", TABLE, f"{TABLE}_pkey",
                    )
                    await connection.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {TABLE}_pkey")
                    for index in indexes:
                        await connection.execute(f'DROP INDEX "{index["indexname"]}"')
                    phase("copy")
                    await connection.copy_records_to_table(TABLE, records=rows,
                                                           columns=COPY_COLUMNS)
                    await connection.execute(
                        f"SET LOCAL maintenance_work_mem = '{LOAD_MAINTENANCE_WORK_MEM}'"
                    )
                    phase("primary_key")
                    # The primary key first: it is the uniqueness check, so a bad load fails
                    # before the other indexes are built. While PostgreSQL sorts, this
                    # process counts aliases per owner and account key (the CPU is idle).
                    build = asyncio.ensure_future(connection.execute(
                        f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey {primary_key}"
                    ))
                    await asyncio.sleep(0)  # let the statement leave before counting
                    owners, accounts = _cap_candidates(rows, config)
                    try:
                        await build
                    except asyncpg.UniqueViolationError:
                        raise _Refused(R.ALIAS_TAKEN) from None
                    phase("indexes")
                    for index in indexes:
                        await connection.execute(index["indexdef"])
                    phase("caps")
                    violation = await self._cap_violation(connection, owners, accounts, config)
                    if violation is not R.OK:
                        raise _Refused(violation)
                    await connection.execute(f"ANALYZE {TABLE}")
            except _Refused as refused:
                return refused.result
        return R.OK

    @staticmethod
    async def _cap_violation(connection, owners: list[int], accounts: list[int],
                             config: DirectoryConfig) -> DirectoryResult:
        """Exact cap check of the candidate keys (over a person's cap by 64-bit key): the
        indexes just built find their rows, and the full token or account decides."""
        if owners and await connection.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE owner_key = ANY($4::bigint[]) "
            f"GROUP BY owner_token HAVING count(*) > "
            f"CASE WHEN max(owner_kind) = $1::smallint THEN $2::bigint ELSE $3::bigint END)",
            int(OwnerKind.BUSINESS), config.aliases_per_business_max,
            config.aliases_per_person_max, owners,
        ):
            return R.OWNER_CAP_REACHED
        if accounts and await connection.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {TABLE} WHERE account_key = ANY($2::bigint[]) "
            f"GROUP BY participant_id, account_ref HAVING count(*) > $1::bigint)",
            config.aliases_per_account_max, accounts,
        ):
            return R.ACCOUNT_CAP_REACHED
        return R.OK

    # --- claims -------------------------------------------------------------------------

    async def insert_claim(self, claim: Claim) -> DirectoryResult:
        async with self.pool.acquire() as connection:
            try:
                await connection.execute(
                    f"INSERT INTO directory_claims ({CLAIM_COLUMNS}) VALUES "
                    f"({', '.join(f'${i}' for i in range(1, 19))})", *claim_row(claim),
                )
            except asyncpg.UniqueViolationError:
                return R.CLAIM_ALREADY_OPEN
        return R.OK

    async def get_claim(self, claim_id: str) -> Claim | None:
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                f"SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE claim_id = $1", claim_id
            )
        return None if row is None else claim_from_row(row)

    @staticmethod
    async def _save_claim(connection, claim: Claim, prior: Claim) -> bool:
        status = await connection.execute(
            "UPDATE directory_claims SET state = $1, cancel_reason = $2, "
            "completion_deadline_ns = $3, updated_ns = $4 "
            "WHERE claim_id = $5 AND state = $6 AND updated_ns = $7",
            int(claim.state), int(claim.cancel_reason), claim.completion_deadline_ns,
            claim.updated_ns, claim.claim_id, int(prior.state), prior.updated_ns,
        )
        return status == "UPDATE 1"

    async def save_claim(self, claim: Claim, prior: Claim) -> bool:
        async with self.pool.acquire() as connection:
            return await self._save_claim(connection, claim, prior)

    async def complete_claim(self, claim: Claim, prior: Claim, now_ns: int,
                             config: DirectoryConfig) -> DirectoryResult:
        async with self.pool.acquire() as connection:
            try:
                async with connection.transaction():
                    await self._lock(connection, [
                        alias_lock_key(claim.alias_type, claim.alias_key),
                        owner_key(claim.claimer_owner_token),
                        account_key(claim.claimer_participant_id, claim.claimer_account_ref),
                    ])
                    alias = await self._get(connection, claim.alias_type, claim.alias_key)
                    if not claim_rules.alias_unchanged(claim, alias):
                        raise _Refused(R.ALIAS_CHANGED)
                    result = rules.move_outcome(
                        await self._owner_count(connection, claim.claimer_owner_token),
                        await self._account_count(connection, claim.claimer_participant_id,
                                                  claim.claimer_account_ref),
                        claim.claimer_owner_kind, claim.claimer_owner_token != alias.owner_token,
                        True, config,
                    )
                    if result is not R.OK:
                        raise _Refused(result)
                    if not await self._save_claim(connection, claim, prior):
                        raise _Refused(R.CLAIM_STATE_INVALID)
                    await self._replace_alias(
                        connection, claim_rules.alias_after_completion(claim, alias, now_ns)
                    )
            except _Refused as refused:
                return refused.result
        return R.OK

    async def due_claims(self, now_ns: int, limit: int) -> list[Claim]:
        # The state lists are written out to match the partial indexes' predicates
        # (1, 2 = open, waiting_resolution; 3 = confirmed), so the planner can use them.
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"(SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE state IN (1, 2) "
                f"AND resolution_deadline_ns <= $1 LIMIT $2) UNION ALL "
                f"(SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE state = 3 "
                f"AND completion_deadline_ns <= $1 LIMIT $2)", now_ns, limit,
            )
        return [claim_from_row(row) for row in rows[:limit]]

    async def participant_claims(self, participant_id: str, limit: int) -> list[Claim]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                f"SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE donor_participant_id = $1 "
                f"UNION SELECT {CLAIM_COLUMNS} FROM directory_claims "
                f"WHERE claimer_participant_id = $1 ORDER BY opened_ns LIMIT $2",
                participant_id, limit,
            )
        return [claim_from_row(row) for row in rows]

    # --- mapper -------------------------------------------------------------------------

    async def get_mapper_link(self, id_token: bytes) -> MapperLink | None:
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(
                "SELECT participant_id, account_ref, linked_ns FROM directory_mapper_links "
                "WHERE id_token = $1", id_token,
            )
        if row is None:
            return None
        return MapperLink(id_token=id_token, participant_id=row[0], account_ref=row[1],
                          linked_ns=row[2])

    async def get_mapper_links(self, id_tokens: list[bytes]) -> dict[bytes, MapperLink]:
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT id_token, participant_id, account_ref, linked_ns FROM "
                "directory_mapper_links WHERE id_token = ANY($1::bytea[])", id_tokens)
        return {bytes(row[0]): MapperLink(id_token=bytes(row[0]), participant_id=row[1],
                                          account_ref=row[2], linked_ns=row[3])
                for row in rows}

    async def put_mapper_link(self, link: MapperLink, expected: MapperLink | None) -> bool:
        async with self.pool.acquire() as connection:
            if expected is None:
                status = await connection.execute(
                    "INSERT INTO directory_mapper_links VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (id_token) DO NOTHING",
                    link.id_token, link.participant_id, link.account_ref, link.linked_ns,
                )
                return status == "INSERT 0 1"
            status = await connection.execute(
                "UPDATE directory_mapper_links SET participant_id = $2, account_ref = $3, "
                "linked_ns = $4 WHERE id_token = $1 AND participant_id = $5 AND account_ref = $6 "
                "AND linked_ns = $7",
                link.id_token, link.participant_id, link.account_ref, link.linked_ns,
                expected.participant_id, expected.account_ref, expected.linked_ns,
            )
            return status == "UPDATE 1"

    async def delete_mapper_link(self, id_token: bytes, participant_id: str) -> bool:
        async with self.pool.acquire() as connection:
            status = await connection.execute(
                "DELETE FROM directory_mapper_links WHERE id_token = $1 AND participant_id = $2",
                id_token, participant_id,
            )
        return status == "DELETE 1"
