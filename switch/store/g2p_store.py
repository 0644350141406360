"""G2P batch stores: SQLite (embedded, the default) and PostgreSQL (migration 0016_g2p.sql),
one `switch.g2p.ports.G2PStore` API.

Batches, their rows (one per beneficiary: reference, payee as an identity token or a
financial address, amount, status, reason, the attempt whose transfer id was submitted),
the mapper transactions kept for txn/status and the outbox of mapper notices. Rows are read
in pages of bounded size, never all at once: a batch holds up to 1,000,000 of them.

SQLite work runs on one dedicated thread (a commit waits for fsync, and a batch of 10,000
rows takes milliseconds: the switch's loop must not wait for it). It must never store a
raw national ID: a row names its beneficiary by the directory's identity token.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import msgspec

from switch.g2p.ports import ROW_ADDED, ROW_DUPLICATE, ROW_EXISTS
from switch.g2p.types import (
    REASON_NAMES,
    BatchCounts,
    BatchRecord,
    BatchState,
    NewRow,
    PayeeKind,
    PendingRow,
    RowReason,
    RowStatus,
    RowView,
)
from switch.store.embedded import execute_rows, open_sqlite, select_by_keys, write_transaction

# A stored row's content, by (batch, reference): what a resent row is compared with.
_STORED_ROW_COLUMNS = ("g2p_rows.reference_id, g2p_rows.payee_kind, g2p_rows.payee_key, "
                       "g2p_rows.amount_minor")

# Rows are found by payee through an index on (batch, run of rows, short key): a run is
# `_RUN_ROWS` consecutive rows, the short key an identity token's first 8 hex characters
# (32 random bits; the full key is compared after) or a financial address whole. Tokens are
# random, so an index on the key alone took each 10,000-row message's inserts all over a
# million-row index: every commit wrote most of its pages again. The whole 64-character token
# cost 22 s and 5.9 GB to add a million rows, the short key alone 11 s and 1.4 GB, and while a
# batch was uploaded the journal's commits waited behind those writes (live p99 x9,
# docs/g2p.md). Under a run, a message's inserts land in one or two runs' few pages; a lookup
# probes each run of the programme's batches (60 for a million rows). One expression for the
# index and the query (SQLite uses the index only for the same one).
_TOKEN_SHORT_CHARS = 8


def _payee_short_sql(table: str) -> str:
    return (f"(CASE {table}payee_kind WHEN {int(PayeeKind.NATIONAL_ID)} THEN "
            f"substr({table}payee_key, 1, {_TOKEN_SHORT_CHARS}) ELSE {table}payee_key END)")


_RUN_SHIFT = 14
_RUN_ROWS = 1 << _RUN_SHIFT


def _payee_index_sql(table: str) -> str:
    return f"{table}batch_id, ({table}row_no >> {_RUN_SHIFT}), {_payee_short_sql(table)}"


_PAYEE_SHORT = _payee_short_sql("r.")
# Pages of WAL before a checkpoint (SQLite's default is 1,000): fewer checkpoints copy the
# index's pages back into the database less often while a batch is uploaded.
_WAL_AUTOCHECKPOINT_PAGES = 20_000


def _payee_short(payee_key: str) -> str:
    """The index's short key of a stored payee key (`_PAYEE_SHORT`): a financial address
    always holds an "@", an identity token never does."""
    return payee_key if "@" in payee_key else payee_key[:_TOKEN_SHORT_CHARS]


_SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS g2p_batches (
    batch_id INTEGER PRIMARY KEY,
    programme_id INTEGER NOT NULL,
    transaction_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    state INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    rows_total INTEGER NOT NULL DEFAULT 0,
    amount_total_minor INTEGER NOT NULL DEFAULT 0,
    UNIQUE (programme_id, transaction_id)
);
CREATE TABLE IF NOT EXISTS g2p_rows (
    batch_id INTEGER NOT NULL,
    row_no INTEGER NOT NULL,
    reference_id TEXT NOT NULL,
    payee_kind INTEGER NOT NULL,
    payee_key TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    status INTEGER NOT NULL DEFAULT 0,
    reason INTEGER NOT NULL DEFAULT 0,
    result INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0,
    payee_participant_id INTEGER NOT NULL DEFAULT 0,
    payee_account_ref TEXT NOT NULL DEFAULT '',
    expires_at_ns INTEGER NOT NULL DEFAULT 0,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (batch_id, row_no),
    UNIQUE (batch_id, reference_id)
);
DROP INDEX IF EXISTS g2p_rows_payee;
DROP INDEX IF EXISTS g2p_rows_payee_short;
CREATE INDEX IF NOT EXISTS g2p_rows_payee_run ON g2p_rows ({_payee_index_sql("")});
CREATE INDEX IF NOT EXISTS g2p_rows_status ON g2p_rows (batch_id, status, row_no);
CREATE TABLE IF NOT EXISTS g2p_mapper_txns (
    participant_id INTEGER NOT NULL,
    transaction_id TEXT NOT NULL,
    action TEXT NOT NULL,
    body BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    PRIMARY KEY (participant_id, transaction_id, action)
);
CREATE TABLE IF NOT EXISTS g2p_notices (
    notice_id INTEGER PRIMARY KEY,
    participant_id INTEGER NOT NULL,
    body BLOB NOT NULL,
    created_ns INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0
);
"""

_BATCH_COLUMNS = ("batch_id, programme_id, transaction_id, currency, state, created_ns, "
                  "updated_ns, rows_total, amount_total_minor")
_PENDING_COLUMNS = ("row_no, payee_kind, payee_key, amount_minor, attempt, status, "
                    "payee_participant_id, payee_account_ref, expires_at_ns")
_VIEW_COLUMNS = ("row_no, reference_id, payee_kind, payee_key, amount_minor, status, reason, "
                 "result, attempt, payee_participant_id, updated_ns")
# Every run of every batch of the programme, each probed through the index (`CROSS JOIN`:
# the runs first).
_ROWS_BY_PAYEE = (
    "WITH RECURSIVE runs(batch_id, transaction_id, run, last) AS ("
    f"SELECT batch_id, transaction_id, 0, rows_total >> {_RUN_SHIFT} FROM g2p_batches "
    "WHERE programme_id = ?1 UNION ALL "
    "SELECT batch_id, transaction_id, run + 1, last FROM runs WHERE run < last) "
    "SELECT runs.transaction_id, "
    + ", ".join("r." + column.strip() for column in _VIEW_COLUMNS.split(","))
    + " FROM runs CROSS JOIN g2p_rows r WHERE r.batch_id = runs.batch_id AND "
    f"(r.row_no >> {_RUN_SHIFT}) = runs.run AND {_PAYEE_SHORT} = ?2 AND r.payee_key = ?3 "
    "ORDER BY r.batch_id, r.row_no LIMIT ?4")


_PENDING_ROWS = msgspec.json.Decoder(list[PendingRow])


def _batch(row) -> BatchRecord:
    return BatchRecord(batch_id=row[0], programme_id=row[1], transaction_id=row[2],
                       currency=row[3], state=BatchState(row[4]), created_ns=row[5],
                       updated_ns=row[6], rows_total=row[7], amount_total_minor=int(row[8]))


def shown_payee(payee_kind: int, payee_key: str, provider: str = "nid") -> str:
    """The payee as reports show it: a financial address as given, a national ID only as
    its identity token."""
    if payee_kind == PayeeKind.NATIONAL_ID:
        return f"token:{payee_key}@{provider}"
    return payee_key


def _view(row) -> RowView:
    return RowView(row_no=row[0], reference_id=row[1], payee=shown_payee(row[2], row[3]),
                   amount_minor=row[4], status=RowStatus(row[5]), reason=RowReason(row[6]),
                   result=row[7], attempt=row[8], payee_participant_id=row[9],
                   updated_ns=row[10])


def _counts(rows) -> BatchCounts:
    counts = BatchCounts()
    for status, reason, number, amount_minor in rows:
        amount_minor = int(amount_minor or 0)
        if status == RowStatus.PENDING:
            counts.pending += number
        elif status == RowStatus.SUBMITTED:
            counts.submitted += number
        elif status == RowStatus.PAID:
            counts.paid += number
            counts.paid_minor += amount_minor
        elif status == RowStatus.FAILED:
            counts.failed += number
            counts.failed_minor += amount_minor
            name = REASON_NAMES[RowReason(reason)]
            counts.by_reason[name] = counts.by_reason.get(name, 0) + number
        else:
            counts.cancelled += number
    return counts


def _classify(existing: tuple | None, row: NewRow) -> int:
    if existing is None:
        return ROW_ADDED
    if tuple(existing) == (row.payee_kind, row.payee_key, row.amount_minor):
        return ROW_EXISTS
    return ROW_DUPLICATE


class EmbeddedG2PStore:
    """SQLite in WAL mode with synchronous=FULL, on one thread of its own."""

    def __init__(self, path: str = ":memory:") -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ponte-g2p-db")
        self._db = open_sqlite(path)
        self._db.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
        self._db.executescript(_SQLITE_SCHEMA)

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    # -- batches -----------------------------------------------------------------------

    async def open_batch(self, programme_id, transaction_id, currency, now_ns):
        def work():
            with write_transaction(self._db) as db:
                db.execute("INSERT OR IGNORE INTO g2p_batches (programme_id, transaction_id, "
                           "currency, state, created_ns, updated_ns) VALUES (?, ?, ?, ?, ?, ?)",
                           (programme_id, transaction_id, currency, int(BatchState.ACTIVE),
                            now_ns, now_ns))
                return _batch(db.execute(
                    f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE programme_id = ? AND "
                    "transaction_id = ?", (programme_id, transaction_id)).fetchone())
        return await self._run(work)

    async def find_batch(self, programme_id, transaction_id):
        def work():
            row = self._db.execute(
                f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE programme_id = ? AND "
                "transaction_id = ?", (programme_id, transaction_id)).fetchone()
            return None if row is None else _batch(row)
        return await self._run(work)

    async def get_batch(self, batch_id):
        def work():
            row = self._db.execute(f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE batch_id = ?",
                                   (batch_id,)).fetchone()
            return None if row is None else _batch(row)
        return await self._run(work)

    async def list_batches(self, programme_id, limit):
        def work():
            if programme_id is None:
                rows = self._db.execute(f"SELECT {_BATCH_COLUMNS} FROM g2p_batches ORDER BY "
                                        "batch_id DESC LIMIT ?", (limit,))
            else:
                rows = self._db.execute(f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE "
                                        "programme_id = ? ORDER BY batch_id DESC LIMIT ?",
                                        (programme_id, limit))
            return [_batch(row) for row in rows]
        return await self._run(work)

    async def set_state(self, batch_id, state, now_ns):
        def work():
            with write_transaction(self._db) as db:
                db.execute("UPDATE g2p_batches SET state = ?, updated_ns = ? WHERE batch_id = ?",
                           (int(state), now_ns, batch_id))
        await self._run(work)

    # -- rows --------------------------------------------------------------------------

    async def add_rows(self, batch_id, rows, rows_max, now_ns):
        def work():
            with write_transaction(self._db) as db:
                total, amount_total = db.execute(
                    "SELECT rows_total, amount_total_minor FROM g2p_batches WHERE batch_id = ?",
                    (batch_id,)).fetchone()
                codes = []
                fresh = []
                seen: dict[str, NewRow] = {}
                stored = {reference: (kind, key, amount) for reference, kind, key, amount
                          in select_by_keys(db, _STORED_ROW_COLUMNS, "g2p_rows",
                                            ("batch_id", "reference_id"),
                                            [(batch_id, row.reference_id) for row in rows])}
                for row in rows:
                    existing = stored.get(row.reference_id)
                    if existing is None and row.reference_id in seen:
                        earlier = seen[row.reference_id]
                        existing = (earlier.payee_kind, earlier.payee_key, earlier.amount_minor)
                    code = _classify(existing, row)
                    codes.append(code)
                    if code == ROW_ADDED:
                        seen[row.reference_id] = row
                        fresh.append(row)
                if total + len(fresh) > rows_max:
                    raise _TooMany
                execute_rows(
                    db, lambda values: "INSERT INTO g2p_rows (batch_id, row_no, reference_id, "
                    f"payee_kind, payee_key, amount_minor, updated_ns) VALUES {values}",
                    [(batch_id, total + index + 1, row.reference_id, row.payee_kind,
                      row.payee_key, row.amount_minor, now_ns)
                     for index, row in enumerate(fresh)])
                db.execute("UPDATE g2p_batches SET rows_total = ?, amount_total_minor = ?, "
                           "updated_ns = ? WHERE batch_id = ?",
                           (total + len(fresh),
                            amount_total + sum(row.amount_minor for row in fresh), now_ns,
                            batch_id))
                return codes
        try:
            return await self._run(work)
        except _TooMany:
            return None

    async def pending_rows(self, batch_id, after_row_no, limit):
        def work():
            return self._rows(f"SELECT {_PENDING_COLUMNS} FROM g2p_rows WHERE batch_id = ? "
                              "AND status = 0 AND row_no > ? ORDER BY row_no LIMIT ?",
                              (batch_id, after_row_no, limit))
        return await self._run(work)

    async def submitted_rows(self, batch_id, limit):
        def work():
            return self._rows(f"SELECT {_PENDING_COLUMNS} FROM g2p_rows WHERE batch_id = ? "
                              "AND status = 1 ORDER BY row_no LIMIT ?", (batch_id, limit))
        return await self._run(work)

    def _rows(self, query: str, parameters: tuple) -> list[PendingRow]:
        """The rows of `query` (selecting `_PENDING_COLUMNS`) as one JSON array SQLite builds
        in one step, decoded by msgspec: not a step, and a GIL hand-off, per row (see
        `execute_rows`)."""
        (document,) = self._db.execute(
            f"SELECT json_group_array(json_array({_PENDING_COLUMNS})) FROM ({query})",
            parameters).fetchone()
        return _PENDING_ROWS.decode(document)

    async def mark_submitted(self, batch_id, rows, now_ns):
        def work():
            with write_transaction(self._db) as db:
                execute_rows(
                    db, lambda values: "WITH marked(row_no, attempt, payee_id, account_ref, "
                    f"expires_at_ns, batch_id) AS (VALUES {values}) UPDATE g2p_rows SET "
                    "status = 1, attempt = marked.attempt, payee_participant_id = "
                    "marked.payee_id, payee_account_ref = marked.account_ref, expires_at_ns = "
                    "marked.expires_at_ns, updated_ns = ? FROM marked WHERE "
                    "g2p_rows.batch_id = marked.batch_id AND g2p_rows.row_no = marked.row_no "
                    "AND g2p_rows.status = 0",
                    # The batch id in every row, not once after the list: joined on it, SQLite
                    # searches the table per row; as a parameter it scanned every pending row.
                    [(*row, batch_id) for row in rows], now_ns)
        await self._run(work)

    async def record_outcomes(self, outcomes, now_ns):
        def work():
            with write_transaction(self._db) as db:
                execute_rows(
                    db, lambda values: "WITH outcome(batch_id, row_no, attempt, status, "
                    f"reason, result, next_attempt) AS (VALUES {values}) UPDATE g2p_rows SET "
                    "status = outcome.status, reason = outcome.reason, result = outcome.result, "
                    "attempt = outcome.next_attempt, updated_ns = ? FROM outcome WHERE "
                    "g2p_rows.batch_id = outcome.batch_id AND g2p_rows.row_no = outcome.row_no "
                    "AND g2p_rows.status = 1 AND g2p_rows.attempt = outcome.attempt",
                    outcomes, now_ns)
        await self._run(work)

    async def fail_unsubmitted(self, outcomes, now_ns):
        def work():
            with write_transaction(self._db) as db:
                execute_rows(
                    db, lambda values: "WITH failed(batch_id, row_no, reason, result) AS "
                    f"(VALUES {values}) UPDATE g2p_rows SET status = 3, reason = failed.reason, "
                    "result = failed.result, updated_ns = ? FROM failed WHERE "
                    "g2p_rows.batch_id = failed.batch_id AND g2p_rows.row_no = failed.row_no "
                    "AND g2p_rows.status = 0",
                    outcomes, now_ns)
        await self._run(work)

    async def cancel_pending(self, batch_id, now_ns):
        def work():
            with write_transaction(self._db) as db:
                return db.execute(
                    "UPDATE g2p_rows SET status = 4, reason = ?, updated_ns = ? "
                    "WHERE batch_id = ? AND status = 0",
                    (int(RowReason.CANCELLED), now_ns, batch_id)).rowcount
        return await self._run(work)

    async def counts(self, batch_id):
        def work():
            return _counts(self._db.execute(
                "SELECT status, reason, count(*), sum(amount_minor) FROM g2p_rows "
                "WHERE batch_id = ? GROUP BY status, reason", (batch_id,)).fetchall())
        return await self._run(work)

    async def rows_page(self, batch_id, after_row_no, limit):
        def work():
            return [_view(row) for row in self._db.execute(
                f"SELECT {_VIEW_COLUMNS} FROM g2p_rows WHERE batch_id = ? AND row_no > ? "
                "ORDER BY row_no LIMIT ?", (batch_id, after_row_no, limit))]
        return await self._run(work)

    async def rows_by_reference(self, batch_id, references):
        def work():
            found = []
            for reference in references:
                row = self._db.execute(
                    f"SELECT {_VIEW_COLUMNS} FROM g2p_rows WHERE batch_id = ? AND "
                    "reference_id = ?", (batch_id, reference)).fetchone()
                if row is not None:
                    found.append(_view(row))
            return found
        return await self._run(work)

    async def rows_by_payee(self, programme_id, payee_key, limit):
        def work():
            return [(row[0], _view(row[1:])) for row in self._db.execute(_ROWS_BY_PAYEE, (
                programme_id, _payee_short(payee_key), payee_key, limit))]
        return await self._run(work)

    # -- mapper transactions and notices -----------------------------------------------

    async def put_mapper_txn(self, participant_id, transaction_id, action, body, now_ns):
        def work():
            with write_transaction(self._db) as db:
                db.execute("INSERT OR REPLACE INTO g2p_mapper_txns VALUES (?, ?, ?, ?, ?)",
                           (participant_id, transaction_id, action, body, now_ns))
        await self._run(work)

    async def get_mapper_txn(self, participant_id, transaction_id, action):
        def work():
            row = self._db.execute(
                "SELECT body FROM g2p_mapper_txns WHERE participant_id = ? AND "
                "transaction_id = ? AND action = ?",
                (participant_id, transaction_id, action)).fetchone()
            return None if row is None else bytes(row[0])
        return await self._run(work)

    async def add_notices(self, notices, now_ns):
        def work():
            with write_transaction(self._db) as db:
                db.executemany("INSERT INTO g2p_notices (participant_id, body, created_ns) "
                               "VALUES (?, ?, ?)",
                               [(participant_id, body, now_ns) for participant_id, body in notices])
        await self._run(work)

    async def due_notices(self, limit):
        def work():
            return [(row[0], row[1], bytes(row[2]), row[3]) for row in self._db.execute(
                "SELECT notice_id, participant_id, body, attempts FROM g2p_notices "
                "WHERE done = 0 ORDER BY notice_id LIMIT ?", (limit,))]
        return await self._run(work)

    async def notice_attempted(self, notice_id, delivered, give_up):
        def work():
            with write_transaction(self._db) as db:
                db.execute("UPDATE g2p_notices SET attempts = attempts + 1, done = ? "
                           "WHERE notice_id = ?", (1 if delivered or give_up else 0, notice_id))
        await self._run(work)

    async def close(self):
        def work():
            self._db.close()
        await self._run(work)
        self._executor.shutdown(wait=True)


class _TooMany(Exception):
    """Rolls an add_rows transaction back: the batch would pass its maximum."""


class PostgresG2PStore:
    """PostgreSQL (asyncpg), schema migrations/0016_g2p.sql."""

    def __init__(self, pool) -> None:
        self.pool = pool

    @classmethod
    async def connect(cls, dsn: str) -> PostgresG2PStore:
        import asyncpg

        return cls(await asyncpg.create_pool(dsn, min_size=1, max_size=4))

    async def open_batch(self, programme_id, transaction_id, currency, now_ns):
        async with self.pool.acquire() as connection:
            await connection.execute(
                "INSERT INTO g2p_batches (programme_id, transaction_id, currency, state, "
                "created_ns, updated_ns) VALUES ($1, $2, $3, $4, $5, $5) "
                "ON CONFLICT (programme_id, transaction_id) DO NOTHING",
                programme_id, transaction_id, currency, int(BatchState.ACTIVE), now_ns)
            return _batch(await connection.fetchrow(
                f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE programme_id = $1 AND "
                "transaction_id = $2", programme_id, transaction_id))

    async def find_batch(self, programme_id, transaction_id):
        row = await self.pool.fetchrow(
            f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE programme_id = $1 AND "
            "transaction_id = $2", programme_id, transaction_id)
        return None if row is None else _batch(row)

    async def get_batch(self, batch_id):
        row = await self.pool.fetchrow(
            f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE batch_id = $1", batch_id)
        return None if row is None else _batch(row)

    async def list_batches(self, programme_id, limit):
        if programme_id is None:
            rows = await self.pool.fetch(
                f"SELECT {_BATCH_COLUMNS} FROM g2p_batches ORDER BY batch_id DESC LIMIT $1",
                limit)
        else:
            rows = await self.pool.fetch(
                f"SELECT {_BATCH_COLUMNS} FROM g2p_batches WHERE programme_id = $1 "
                "ORDER BY batch_id DESC LIMIT $2", programme_id, limit)
        return [_batch(row) for row in rows]

    async def set_state(self, batch_id, state, now_ns):
        await self.pool.execute(
            "UPDATE g2p_batches SET state = $1, updated_ns = $2 WHERE batch_id = $3",
            int(state), now_ns, batch_id)

    async def add_rows(self, batch_id, rows, rows_max, now_ns):
        async with self.pool.acquire() as connection:
            async with connection.transaction():
                total, amount_total = await connection.fetchrow(
                    "SELECT rows_total, amount_total_minor FROM g2p_batches WHERE batch_id = $1 "
                    "FOR UPDATE", batch_id)
                found = {row[0]: (row[1], row[2], row[3]) for row in await connection.fetch(
                    "SELECT reference_id, payee_kind, payee_key, amount_minor FROM g2p_rows "
                    "WHERE batch_id = $1 AND reference_id = ANY($2::text[])",
                    batch_id, [row.reference_id for row in rows])}
                codes, fresh = [], []
                for row in rows:
                    code = _classify(found.get(row.reference_id), row)
                    codes.append(code)
                    if code == ROW_ADDED:
                        found[row.reference_id] = (row.payee_kind, row.payee_key,
                                                   row.amount_minor)
                        fresh.append(row)
                if total + len(fresh) > rows_max:
                    return None
                await connection.copy_records_to_table(
                    "g2p_rows", columns=("batch_id", "row_no", "reference_id", "payee_kind",
                                         "payee_key", "amount_minor", "updated_ns"),
                    records=[(batch_id, total + index + 1, row.reference_id, row.payee_kind,
                              row.payee_key, row.amount_minor, now_ns)
                             for index, row in enumerate(fresh)])
                await connection.execute(
                    "UPDATE g2p_batches SET rows_total = $1, amount_total_minor = $2, "
                    "updated_ns = $3 WHERE batch_id = $4", total + len(fresh),
                    amount_total + sum(row.amount_minor for row in fresh), now_ns, batch_id)
                return codes

    async def pending_rows(self, batch_id, after_row_no, limit):
        rows = await self.pool.fetch(
            f"SELECT {_PENDING_COLUMNS} FROM g2p_rows WHERE batch_id = $1 AND status = 0 "
            "AND row_no > $2 ORDER BY row_no LIMIT $3", batch_id, after_row_no, limit)
        return [PendingRow(*row) for row in rows]

    async def submitted_rows(self, batch_id, limit):
        rows = await self.pool.fetch(
            f"SELECT {_PENDING_COLUMNS} FROM g2p_rows WHERE batch_id = $1 AND status = 1 "
            "ORDER BY row_no LIMIT $2", batch_id, limit)
        return [PendingRow(*row) for row in rows]

    async def mark_submitted(self, batch_id, rows, now_ns):
        await self.pool.executemany(
            "UPDATE g2p_rows SET status = 1, attempt = $1, payee_participant_id = $2, "
            "payee_account_ref = $3, expires_at_ns = $4, updated_ns = $5 "
            "WHERE batch_id = $6 AND row_no = $7 AND status = 0",
            [(attempt, payee_id, account_ref, expires_at_ns, now_ns, batch_id, row_no)
             for row_no, attempt, payee_id, account_ref, expires_at_ns in rows])

    async def record_outcomes(self, outcomes, now_ns):
        await self.pool.executemany(
            "UPDATE g2p_rows SET status = $1, reason = $2, result = $3, attempt = $4, "
            "updated_ns = $5 WHERE batch_id = $6 AND row_no = $7 AND status = 1 "
            "AND attempt = $8",
            [(status, reason, result, next_attempt, now_ns, batch_id, row_no, attempt)
             for batch_id, row_no, attempt, status, reason, result, next_attempt in outcomes])

    async def fail_unsubmitted(self, outcomes, now_ns):
        await self.pool.executemany(
            "UPDATE g2p_rows SET status = 3, reason = $1, result = $2, updated_ns = $3 "
            "WHERE batch_id = $4 AND row_no = $5 AND status = 0",
            [(reason, result, now_ns, batch_id, row_no)
             for batch_id, row_no, reason, result in outcomes])

    async def cancel_pending(self, batch_id, now_ns):
        status = await self.pool.execute(
            "UPDATE g2p_rows SET status = 4, reason = $1, updated_ns = $2 "
            "WHERE batch_id = $3 AND status = 0", int(RowReason.CANCELLED), now_ns, batch_id)
        return int(status.split()[-1])

    async def counts(self, batch_id):
        return _counts(await self.pool.fetch(
            "SELECT status, reason, count(*)::bigint, sum(amount_minor) FROM g2p_rows "
            "WHERE batch_id = $1 GROUP BY status, reason", batch_id))

    async def rows_page(self, batch_id, after_row_no, limit):
        rows = await self.pool.fetch(
            f"SELECT {_VIEW_COLUMNS} FROM g2p_rows WHERE batch_id = $1 AND row_no > $2 "
            "ORDER BY row_no LIMIT $3", batch_id, after_row_no, limit)
        return [_view(row) for row in rows]

    async def rows_by_reference(self, batch_id, references):
        rows = await self.pool.fetch(
            f"SELECT {_VIEW_COLUMNS} FROM g2p_rows WHERE batch_id = $1 AND "
            "reference_id = ANY($2::text[]) ORDER BY row_no", batch_id, references)
        return [_view(row) for row in rows]

    async def rows_by_payee(self, programme_id, payee_key, limit):
        columns = ", ".join("r." + column.strip() for column in _VIEW_COLUMNS.split(","))
        rows = await self.pool.fetch(
            f"SELECT b.transaction_id, {columns} FROM g2p_rows r JOIN g2p_batches b "
            "ON b.batch_id = r.batch_id WHERE r.payee_key = $1 AND b.programme_id = $2 "
            "ORDER BY r.batch_id, r.row_no LIMIT $3", payee_key, programme_id, limit)
        return [(row[0], _view(tuple(row)[1:])) for row in rows]

    async def put_mapper_txn(self, participant_id, transaction_id, action, body, now_ns):
        await self.pool.execute(
            "INSERT INTO g2p_mapper_txns VALUES ($1, $2, $3, $4, $5) ON CONFLICT "
            "(participant_id, transaction_id, action) DO UPDATE SET body = EXCLUDED.body, "
            "created_ns = EXCLUDED.created_ns",
            participant_id, transaction_id, action, body, now_ns)

    async def get_mapper_txn(self, participant_id, transaction_id, action):
        row = await self.pool.fetchrow(
            "SELECT body FROM g2p_mapper_txns WHERE participant_id = $1 AND "
            "transaction_id = $2 AND action = $3", participant_id, transaction_id, action)
        return None if row is None else bytes(row[0])

    async def add_notices(self, notices, now_ns):
        await self.pool.executemany(
            "INSERT INTO g2p_notices (participant_id, body, created_ns) VALUES ($1, $2, $3)",
            [(participant_id, body, now_ns) for participant_id, body in notices])

    async def due_notices(self, limit):
        rows = await self.pool.fetch(
            "SELECT notice_id, participant_id, body, attempts FROM g2p_notices WHERE done = 0 "
            "ORDER BY notice_id LIMIT $1", limit)
        return [(row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    async def notice_attempted(self, notice_id, delivered, give_up):
        await self.pool.execute(
            "UPDATE g2p_notices SET attempts = attempts + 1, done = $1 WHERE notice_id = $2",
            1 if delivered or give_up else 0, notice_id)

    async def close(self):
        await self.pool.close()


__all__ = ["EmbeddedG2PStore", "PostgresG2PStore", "shown_payee"]
