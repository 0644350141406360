"""The embedded directory store: one SQLite file through the standard library, no service.

The default for `ponte demo` and single-process deployments (':memory:' in tests). It
implements `switch.directory.ports.DirectoryStore` with the same decisions as the
PostgreSQL store: every write runs in one `BEGIN IMMEDIATE` transaction, which serialises
writers, and the choice itself is made by the pure rules in `switch/directory/`.

Calls are synchronous under an async face: a local SQLite statement takes microseconds, so
handing it to a thread would cost more than it saves; a commit waits for fsync
(synchronous=FULL in WAL mode), which is the price of this being a source of truth.
It must never store a raw national ID: owners arrive here as identity tokens only.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterable, Iterator

from switch.directory import claims as claim_rules
from switch.directory import rules
from switch.directory.config import DirectoryConfig
from switch.directory.types import (
    CLAIM_STATES_LIVE,
    AliasRecord,
    AliasStatus,
    AliasType,
    Claim,
    ClaimCancelReason,
    ClaimState,
    ClaimType,
    DirectoryResult,
    MapperLink,
    OwnerKind,
)

R = DirectoryResult
SCHEMA_VERSION = 1
_LIVE = ",".join(str(int(state)) for state in CLAIM_STATES_LIVE)
SQLITE_BUSY_TIMEOUT_MS = 5000  # the sqlite3.connect default, stated so it cannot drift


def open_sqlite(path: str) -> sqlite3.Connection:
    """A connection for an embedded store (also used by the admin store): autocommit, so
    `write_transaction` owns every transaction; foreign keys on; and for a file, WAL with
    synchronous=FULL so a committed write survives a crash."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA foreign_keys = ON")
    if path != ":memory:":
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    return db


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so writers are
    serialised and a read-then-write decision cannot be raced; any error rolls it back."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# Keys per statement of `select_by_keys`, in powers of two so at most nine statement texts
# exist (sqlite3 caches compiled statements by text; 2 bind variables a key).
KEYS_PER_SELECT_MAX = 256


def select_by_keys(db: sqlite3.Connection, columns: str, table: str, key_columns: tuple[str, str],
                   keys: list[tuple]) -> Iterator[tuple]:
    """The rows of `table` whose two-column primary key (or unique key) is one of `keys`, in
    one statement per 256 keys: a join of a VALUES list with the table, which SQLite answers
    by index searches. One SELECT per key cost ~6 µs a key in Python and SQLite; this ~1.3 µs. The
    chunk is padded to a power of two by repeating its first key (rows come back once per
    match: callers key them by primary key). Values travel only as bound parameters."""
    first, second = key_columns
    if len(keys) == 1:  # the join costs more than it saves for one key
        yield from db.execute(f"SELECT {columns} FROM {table} WHERE {table}.{first} = ? "
                              f"AND {table}.{second} = ?", keys[0])
        return
    for start in range(0, len(keys), KEYS_PER_SELECT_MAX):
        chunk = keys[start:start + KEYS_PER_SELECT_MAX]
        size = 1 << (len(chunk) - 1).bit_length()
        chunk = chunk + [chunk[0]] * (size - len(chunk))
        sql = (f"WITH wanted(k1, k2) AS (VALUES {','.join(['(?, ?)'] * size)}) "
               f"SELECT {columns} FROM wanted JOIN {table} "
               f"ON {table}.{first} = wanted.k1 AND {table}.{second} = wanted.k2")
        yield from db.execute(sql, [value for key in chunk for value in key])


# Rows per statement of `execute_rows`. sqlite3's executemany steps each row with the GIL
# released and takes it back to bind the next: while the event loop is busy, the store's
# thread waits for the loop's switch interval (5 ms) at every row, and interrupts the loop
# as often. Measured with a busy loop: 10,000 rows took 23 s with executemany and 0.1 s as
# multi-row statements.
ROWS_PER_STATEMENT_MAX = 256


def execute_rows(db: sqlite3.Connection, statement: Callable[[str], str], rows: list[tuple],
                 *extra) -> int:
    """Run `statement(values)` for `rows`, up to ROWS_PER_STATEMENT_MAX at a time: `values`
    is the chunk's "(?, ?), (?, ?)" list, bound to the chunk's rows and then to `extra` (the
    parameters that follow the list in the statement). Chunks are powers of two, so at most
    nine statement texts exist (sqlite3 caches compiled statements by text). The rows
    changed (`total_changes`: sqlite3 leaves `rowcount` at -1 for a statement that starts
    with WITH)."""
    if not rows:
        return 0
    placeholder = "(" + ", ".join("?" * len(rows[0])) + ")"
    changes_before = db.total_changes
    start = 0
    while start < len(rows):
        size = min(ROWS_PER_STATEMENT_MAX, 1 << ((len(rows) - start).bit_length() - 1))
        chunk = rows[start:start + size]
        parameters = [value for row in chunk for value in row]
        parameters.extend(extra)
        db.execute(statement(", ".join([placeholder] * size)), parameters)
        start += size
    return db.total_changes - changes_before


# Secondary indexes of the alias table: created with the schema, and rebuilt after a fresh
# bulk load (see `load_fresh`).
ALIAS_INDEX_NAMES = ("directory_aliases_owner", "directory_aliases_account")
ALIAS_INDEXES = (
    "CREATE INDEX IF NOT EXISTS directory_aliases_owner ON directory_aliases (owner_token)",
    "CREATE INDEX IF NOT EXISTS directory_aliases_account "
    "ON directory_aliases (participant_id, account_ref)",
)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS directory_aliases (
    alias_type       INTEGER NOT NULL,
    alias_key        TEXT    NOT NULL,
    participant_id   TEXT    NOT NULL,
    account_ref      TEXT    NOT NULL,
    owner_token      BLOB    NOT NULL,
    owner_kind       INTEGER NOT NULL,
    display_initials TEXT    NOT NULL,
    status           INTEGER NOT NULL,
    created_ns       INTEGER NOT NULL,
    updated_ns       INTEGER NOT NULL,
    PRIMARY KEY (alias_type, alias_key)
) WITHOUT ROWID;
{ALIAS_INDEXES[0]};
{ALIAS_INDEXES[1]};
CREATE TABLE IF NOT EXISTS directory_claims (
    claim_id                 TEXT    PRIMARY KEY,
    claim_type               INTEGER NOT NULL,
    alias_type               INTEGER NOT NULL,
    alias_key                TEXT    NOT NULL,
    donor_participant_id     TEXT    NOT NULL,
    donor_account_ref        TEXT    NOT NULL,
    donor_owner_token        BLOB    NOT NULL,
    claimer_participant_id   TEXT    NOT NULL,
    claimer_account_ref      TEXT    NOT NULL,
    claimer_owner_token      BLOB    NOT NULL,
    claimer_owner_kind       INTEGER NOT NULL,
    claimer_display_initials TEXT    NOT NULL,
    state                    INTEGER NOT NULL,
    cancel_reason            INTEGER NOT NULL,
    opened_ns                INTEGER NOT NULL,
    resolution_deadline_ns   INTEGER NOT NULL,
    completion_deadline_ns   INTEGER NOT NULL,
    updated_ns               INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS directory_claims_live
    ON directory_claims (alias_type, alias_key) WHERE state IN ({_LIVE});
CREATE INDEX IF NOT EXISTS directory_claims_due
    ON directory_claims (resolution_deadline_ns, completion_deadline_ns) WHERE state IN ({_LIVE});
CREATE INDEX IF NOT EXISTS directory_claims_donor ON directory_claims (donor_participant_id);
CREATE INDEX IF NOT EXISTS directory_claims_claimer ON directory_claims (claimer_participant_id);
CREATE TABLE IF NOT EXISTS directory_mapper_links (
    id_token       BLOB    PRIMARY KEY,
    participant_id TEXT    NOT NULL,
    account_ref    TEXT    NOT NULL,
    linked_ns      INTEGER NOT NULL
) WITHOUT ROWID;
"""

ALIAS_COLUMNS = (
    "alias_type, alias_key, participant_id, account_ref, owner_token, owner_kind, "
    "display_initials, status, created_ns, updated_ns"
)
CLAIM_COLUMNS = (
    "claim_id, claim_type, alias_type, alias_key, donor_participant_id, donor_account_ref, "
    "donor_owner_token, claimer_participant_id, claimer_account_ref, claimer_owner_token, "
    "claimer_owner_kind, claimer_display_initials, state, cancel_reason, opened_ns, "
    "resolution_deadline_ns, completion_deadline_ns, updated_ns"
)


def alias_row(record: AliasRecord) -> tuple:
    return (
        int(record.alias_type), record.alias_key, record.participant_id, record.account_ref,
        record.owner_token, int(record.owner_kind), record.display_initials,
        int(record.status), record.created_ns, record.updated_ns,
    )


# The same columns named by table, for a join (`select_by_keys`).
_ALIAS_COLUMNS_QUALIFIED = ", ".join(
    f"directory_aliases.{name}" for name in ALIAS_COLUMNS.split(", "))


def alias_from_row(row) -> AliasRecord:
    return AliasRecord(
        alias_type=AliasType(row[0]), alias_key=row[1], participant_id=row[2],
        account_ref=row[3], owner_token=bytes(row[4]), owner_kind=OwnerKind(row[5]),
        display_initials=row[6], status=AliasStatus(row[7]), created_ns=row[8],
        updated_ns=row[9],
    )


def claim_row(claim: Claim) -> tuple:
    return (
        claim.claim_id, int(claim.claim_type), int(claim.alias_type), claim.alias_key,
        claim.donor_participant_id, claim.donor_account_ref, claim.donor_owner_token,
        claim.claimer_participant_id, claim.claimer_account_ref, claim.claimer_owner_token,
        int(claim.claimer_owner_kind), claim.claimer_display_initials, int(claim.state),
        int(claim.cancel_reason), claim.opened_ns, claim.resolution_deadline_ns,
        claim.completion_deadline_ns, claim.updated_ns,
    )


def claim_from_row(row) -> Claim:
    return Claim(
        claim_id=row[0], claim_type=ClaimType(row[1]), alias_type=AliasType(row[2]),
        alias_key=row[3], donor_participant_id=row[4], donor_account_ref=row[5],
        donor_owner_token=bytes(row[6]), claimer_participant_id=row[7],
        claimer_account_ref=row[8], claimer_owner_token=bytes(row[9]),
        claimer_owner_kind=OwnerKind(row[10]), claimer_display_initials=row[11],
        state=ClaimState(row[12]), cancel_reason=ClaimCancelReason(row[13]),
        opened_ns=row[14], resolution_deadline_ns=row[15], completion_deadline_ns=row[16],
        updated_ns=row[17],
    )


class EmbeddedDirectoryStore:
    """Directory store in one SQLite database file (or ':memory:')."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._db = open_sqlite(path)
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path}: schema version {version} is newer than this code")
        self._db.executescript(SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db)

    def _get(self, db, alias_type: int, alias_key: str) -> AliasRecord | None:
        row = db.execute(
            f"SELECT {ALIAS_COLUMNS} FROM directory_aliases WHERE alias_type = ? AND alias_key = ?",
            (int(alias_type), alias_key),
        ).fetchone()
        return None if row is None else alias_from_row(row)

    def _owner_count(self, db, owner_token: bytes) -> int:
        return db.execute(
            "SELECT count(*) FROM directory_aliases WHERE owner_token = ?", (owner_token,)
        ).fetchone()[0]

    def _account_count(self, db, participant_id: str, account_ref: str) -> int:
        return db.execute(
            "SELECT count(*) FROM directory_aliases WHERE participant_id = ? AND account_ref = ?",
            (participant_id, account_ref),
        ).fetchone()[0]

    def _live_claim(self, db, alias_type: int, alias_key: str) -> bool:
        return db.execute(
            f"SELECT 1 FROM directory_claims WHERE alias_type = ? AND alias_key = ? "
            f"AND state IN ({_LIVE})", (int(alias_type), alias_key),
        ).fetchone() is not None

    # --- aliases ------------------------------------------------------------------------

    async def get_alias(self, alias_type: int, alias_key: str) -> AliasRecord | None:
        return self._get(self._db, alias_type, alias_key)

    async def get_aliases(self, keys):
        return {(row[0], row[1]): alias_from_row(row) for row in select_by_keys(
            self._db, _ALIAS_COLUMNS_QUALIFIED, "directory_aliases", ("alias_type", "alias_key"),
            [(int(alias_type), alias_key) for alias_type, alias_key in keys])}

    async def insert_aliases(self, records: list[AliasRecord], config: DirectoryConfig):
        with self._write() as db:
            existing = {}
            for record in records:
                key = (int(record.alias_type), record.alias_key)
                if key not in existing:
                    held = self._get(db, *key)
                    if held is not None:
                        existing[key] = held
            owner_counts = {
                token: self._owner_count(db, token) for token in {r.owner_token for r in records}
            }
            account_counts = {
                account: self._account_count(db, *account)
                for account in {(r.participant_id, r.account_ref) for r in records}
            }
            results = rules.admit_batch(records, existing, owner_counts, account_counts, config)
            db.executemany(
                f"INSERT INTO directory_aliases ({ALIAS_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [alias_row(r) for r, result in zip(records, results) if result is R.OK],
            )
        return results

    async def update_alias(self, new: AliasRecord, expected: AliasRecord,
                           config: DirectoryConfig) -> DirectoryResult:
        with self._write() as db:
            current = self._get(db, expected.alias_type, expected.alias_key)
            if current != expected:
                return R.ALIAS_CHANGED
            if self._live_claim(db, expected.alias_type, expected.alias_key):
                return R.CLAIM_PENDING
            account_changes = new.account_ref != expected.account_ref
            result = rules.move_outcome(
                0, self._account_count(db, new.participant_id, new.account_ref)
                if account_changes else 0, new.owner_kind, False, account_changes, config,
            )
            if result is not R.OK:
                return result
            self._replace_alias(db, new)
        return R.OK

    def _replace_alias(self, db, record: AliasRecord) -> None:
        db.execute(
            "UPDATE directory_aliases SET participant_id = ?, account_ref = ?, owner_token = ?, "
            "owner_kind = ?, display_initials = ?, status = ?, updated_ns = ? "
            "WHERE alias_type = ? AND alias_key = ?",
            (record.participant_id, record.account_ref, record.owner_token,
             int(record.owner_kind), record.display_initials, int(record.status),
             record.updated_ns, int(record.alias_type), record.alias_key),
        )

    async def delete_alias(self, alias_type: int, alias_key: str,
                           participant_id: str) -> DirectoryResult:
        with self._write() as db:
            current = self._get(db, alias_type, alias_key)
            if current is None or current.participant_id != participant_id:
                return R.ALIAS_NOT_FOUND  # whoever else may hold it (see the port)
            if self._live_claim(db, alias_type, alias_key):
                return R.CLAIM_PENDING
            db.execute("DELETE FROM directory_aliases WHERE alias_type = ? AND alias_key = ?",
                       (int(alias_type), alias_key))
        return R.OK

    async def count_owner_aliases(self, owner_token: bytes) -> int:
        return self._owner_count(self._db, owner_token)

    async def count_account_aliases(self, participant_id: str, account_ref: str) -> int:
        return self._account_count(self._db, participant_id, account_ref)

    async def alias_count(self) -> int:
        return self._db.execute("SELECT count(*) FROM directory_aliases").fetchone()[0]

    async def load_fresh(self, chunks: Iterable[list[AliasRecord]], config: DirectoryConfig,
                         on_chunk=None) -> DirectoryResult:
        """All-or-nothing load into an empty table. The secondary indexes are dropped and
        built once after the rows (one sort instead of a B-tree insert per row); a duplicate
        alias or a cap exceeded anywhere rolls the whole load back."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM directory_aliases LIMIT 1").fetchone() is not None:
                raise ValueError("load_fresh needs an empty alias table")
            for name in ALIAS_INDEX_NAMES:
                db.execute(f"DROP INDEX {name}")
            insert = f"INSERT INTO directory_aliases ({ALIAS_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
            result = R.OK
            for chunk in chunks:
                try:
                    db.executemany(insert, [alias_row(r) for r in chunk])
                except sqlite3.IntegrityError:
                    result = R.ALIAS_TAKEN
                    break
                if on_chunk is not None:
                    on_chunk(len(chunk))
            if result is R.OK:
                for statement in ALIAS_INDEXES:
                    db.execute(statement)
                result = _cap_violation(db, config)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT" if result is R.OK else "ROLLBACK")
        return result

    # --- claims -------------------------------------------------------------------------

    async def insert_claim(self, claim: Claim) -> DirectoryResult:
        try:
            with self._write() as db:
                db.execute(f"INSERT INTO directory_claims ({CLAIM_COLUMNS}) VALUES "
                           f"({','.join('?' * 18)})", claim_row(claim))
        except sqlite3.IntegrityError:
            return R.CLAIM_ALREADY_OPEN
        return R.OK

    async def get_claim(self, claim_id: str) -> Claim | None:
        row = self._db.execute(f"SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE claim_id = ?",
                               (claim_id,)).fetchone()
        return None if row is None else claim_from_row(row)

    def _save_claim(self, db, claim: Claim, prior: Claim) -> bool:
        cursor = db.execute(
            "UPDATE directory_claims SET state = ?, cancel_reason = ?, completion_deadline_ns = ?, "
            "updated_ns = ? WHERE claim_id = ? AND state = ? AND updated_ns = ?",
            (int(claim.state), int(claim.cancel_reason), claim.completion_deadline_ns,
             claim.updated_ns, claim.claim_id, int(prior.state), prior.updated_ns),
        )
        return cursor.rowcount == 1

    async def save_claim(self, claim: Claim, prior: Claim) -> bool:
        with self._write() as db:
            return self._save_claim(db, claim, prior)

    async def complete_claim(self, claim: Claim, prior: Claim, now_ns: int,
                             config: DirectoryConfig) -> DirectoryResult:
        with self._write() as db:
            alias = self._get(db, claim.alias_type, claim.alias_key)
            if not claim_rules.alias_unchanged(claim, alias):
                return R.ALIAS_CHANGED
            owner_changes = claim.claimer_owner_token != alias.owner_token
            result = rules.move_outcome(
                self._owner_count(db, claim.claimer_owner_token),
                self._account_count(db, claim.claimer_participant_id, claim.claimer_account_ref),
                claim.claimer_owner_kind, owner_changes, True, config,
            )
            if result is not R.OK:
                return result
            if not self._save_claim(db, claim, prior):
                return R.CLAIM_STATE_INVALID
            self._replace_alias(db, claim_rules.alias_after_completion(claim, alias, now_ns))
        return R.OK

    async def due_claims(self, now_ns: int, limit: int) -> list[Claim]:
        rows = self._db.execute(
            f"SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE "
            f"(state IN (?, ?) AND resolution_deadline_ns <= ?) OR "
            f"(state = ? AND completion_deadline_ns <= ?) LIMIT ?",
            (int(ClaimState.OPEN), int(ClaimState.WAITING_RESOLUTION), now_ns,
             int(ClaimState.CONFIRMED), now_ns, limit),
        ).fetchall()
        return [claim_from_row(row) for row in rows]

    async def participant_claims(self, participant_id: str, limit: int) -> list[Claim]:
        rows = self._db.execute(
            f"SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE donor_participant_id = ? "
            f"UNION SELECT {CLAIM_COLUMNS} FROM directory_claims WHERE claimer_participant_id = ? "
            f"ORDER BY opened_ns LIMIT ?", (participant_id, participant_id, limit),
        ).fetchall()
        return [claim_from_row(row) for row in rows]

    # --- mapper -------------------------------------------------------------------------

    async def get_mapper_link(self, id_token: bytes) -> MapperLink | None:
        row = self._db.execute(
            "SELECT id_token, participant_id, account_ref, linked_ns FROM directory_mapper_links "
            "WHERE id_token = ?", (id_token,),
        ).fetchone()
        if row is None:
            return None
        return MapperLink(id_token=bytes(row[0]), participant_id=row[1], account_ref=row[2],
                          linked_ns=row[3])

    async def get_mapper_links(self, id_tokens: list[bytes]) -> dict[bytes, MapperLink]:
        found = {}
        step = 500  # SQLite's bound on host parameters is 32,766; stay far below
        for start in range(0, len(id_tokens), step):
            chunk = id_tokens[start:start + step]
            for row in self._db.execute(
                    "SELECT id_token, participant_id, account_ref, linked_ns FROM "
                    "directory_mapper_links WHERE id_token IN "
                    f"({','.join('?' * len(chunk))})", chunk):
                token = bytes(row[0])
                found[token] = MapperLink(id_token=token, participant_id=row[1],
                                          account_ref=row[2], linked_ns=row[3])
        return found

    async def put_mapper_link(self, link: MapperLink, expected: MapperLink | None) -> bool:
        with self._write() as db:
            if expected is None:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO directory_mapper_links VALUES (?, ?, ?, ?)",
                    (link.id_token, link.participant_id, link.account_ref, link.linked_ns),
                )
            else:
                cursor = db.execute(
                    "UPDATE directory_mapper_links SET participant_id = ?, account_ref = ?, "
                    "linked_ns = ? WHERE id_token = ? AND participant_id = ? AND account_ref = ? "
                    "AND linked_ns = ?",
                    (link.participant_id, link.account_ref, link.linked_ns, link.id_token,
                     expected.participant_id, expected.account_ref, expected.linked_ns),
                )
            return cursor.rowcount == 1

    async def delete_mapper_link(self, id_token: bytes, participant_id: str) -> bool:
        with self._write() as db:
            cursor = db.execute(
                "DELETE FROM directory_mapper_links WHERE id_token = ? AND participant_id = ?",
                (id_token, participant_id),
            )
            return cursor.rowcount == 1

    # --- plumbing -----------------------------------------------------------------------

    def dump_text(self) -> str:
        """Every row of every table as SQL text (the privacy test searches it)."""
        return "\n".join(self._db.iterdump())

    async def close(self) -> None:
        self._db.close()


def _cap_violation(db, config: DirectoryConfig) -> DirectoryResult:
    over_owner = db.execute(
        "SELECT 1 FROM directory_aliases GROUP BY owner_token HAVING count(*) > "
        "CASE WHEN max(owner_kind) = ? THEN ? ELSE ? END LIMIT 1",
        (int(OwnerKind.BUSINESS), config.aliases_per_business_max,
         config.aliases_per_person_max),
    ).fetchone()
    if over_owner is not None:
        return R.OWNER_CAP_REACHED
    over_account = db.execute(
        "SELECT 1 FROM directory_aliases GROUP BY participant_id, account_ref "
        "HAVING count(*) > ? LIMIT 1", (config.aliases_per_account_max,),
    ).fetchone()
    return R.OK if over_account is None else R.ACCOUNT_CAP_REACHED
