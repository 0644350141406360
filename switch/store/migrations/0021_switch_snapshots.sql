-- Server snapshots of a PostgreSQL journal (switch/server/snapshots.py): the core, its
-- ledger and the outcome archive at one durable journal record, shared by the primary and
-- its standbys, so either starts from the newest one and replays only the journal after it.
--
-- `data` is the snapshot exactly as the file store writes it (ledger/snapshot.py: header
-- naming the journal record it covers, its sequence and hash, then the state and its
-- SHA-256), so both stores verify with the same code. Rows are written whole, in one
-- transaction, only after the file is complete; older rows beyond the retention are deleted
-- in the same transaction.
CREATE TABLE IF NOT EXISTS switch_snapshot (
    journal_name text NOT NULL CHECK (length(journal_name) BETWEEN 1 AND 64),
    sequence bigint NOT NULL CHECK (sequence >= 0),
    data bytea NOT NULL,
    written_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_name, sequence)
);

ALTER TABLE switch_snapshot ALTER COLUMN data SET STORAGE EXTERNAL;
