-- The ledger's journal and snapshots in PostgreSQL (ledger/journal_postgres.py).
--
-- One row per journal record. `header` is the record's 96-byte header exactly as the file
-- backend writes it (magic, version, kind, sequence, now_ns, payload length, previous
-- record hash, header CRC, SHA-256 checksum), so both backends verify with the same code;
-- `sequence` and `kind` are copies for indexing and must match the header (checked on
-- read). Rows are only ever inserted, by COPY, one COPY per group commit.
-- `journal_name` lets one database hold several journals (a ledger per currency, the
-- switch's own event journal); each has one writer, held by an advisory lock.

CREATE TABLE ledger_journal (
    journal_name text NOT NULL CHECK (length(journal_name) BETWEEN 1 AND 64),
    sequence bigint NOT NULL CHECK (sequence >= 1),
    kind smallint NOT NULL CHECK (kind BETWEEN 1 AND 255),
    header bytea NOT NULL CHECK (octet_length(header) = 96),
    payload bytea NOT NULL,
    PRIMARY KEY (journal_name, sequence)
);

-- Payloads are packed binary batches (~590 KB at 8,189 transfers): storing them out of
-- line without compression keeps COPY cheap on the server and keeps byte search
-- (find_transfer's position()) from decompressing.
ALTER TABLE ledger_journal ALTER COLUMN payload SET STORAGE EXTERNAL;

-- One row per snapshot: the ledger state after applying records 1..sequence, the hash of
-- record `sequence` (recovery checks the journal still holds it) and the state's SHA-256.
CREATE TABLE ledger_snapshot (
    journal_name text NOT NULL CHECK (length(journal_name) BETWEEN 1 AND 64),
    sequence bigint NOT NULL CHECK (sequence >= 0),
    record_hash bytea NOT NULL CHECK (octet_length(record_hash) = 32),
    state_hash bytea NOT NULL CHECK (octet_length(state_hash) = 32),
    state bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_name, sequence)
);

ALTER TABLE ledger_snapshot ALTER COLUMN state SET STORAGE EXTERNAL;
