-- The PostgreSQL journal partitioned by sequence, so old records can be archived and
-- detached (ledger/journal_postgres.py, ledger/journal_archive.py, docs/operations.md
-- "PostgreSQL journal: partitions and archive").
--
-- `ledger_journal` becomes a table partitioned by RANGE (sequence): same columns, same
-- primary key, same fencing trigger and NOTIFY (0005). A partition holds one range of
-- sequences for every journal name (several journals share the table). Its size is
-- `ledger_journal_settings.journal_partition_records` (records, i.e. group-committed ticks),
-- read when a partition is made; changing it affects later partitions only.
--
-- The rows already there are kept: the old table becomes the first partition, covering
-- 1 .. its highest sequence. Partitions are never made by this file otherwise: the journal's
-- writer makes the next one (`ledger_journal_cover`) well before it is needed, in a short
-- transaction of its own, and again before any COPY that would reach past the ones it has
-- seen, so an insert never lacks a partition and no DEFAULT partition exists.

LOCK TABLE ledger_journal IN ACCESS EXCLUSIVE MODE;

ALTER TABLE ledger_journal RENAME TO ledger_journal_before_partitions;
ALTER INDEX ledger_journal_pkey RENAME TO ledger_journal_before_partitions_pkey;
DROP TRIGGER ledger_journal_fence ON ledger_journal_before_partitions;

-- Column for column the table of 0001 + 0005, its constraints named as PostgreSQL named
-- them there: a partition must carry its parent's CHECK constraints under the same names.
CREATE TABLE ledger_journal (
    journal_name text NOT NULL
        CONSTRAINT ledger_journal_journal_name_check
        CHECK (length(journal_name) BETWEEN 1 AND 64),
    sequence bigint NOT NULL CONSTRAINT ledger_journal_sequence_check CHECK (sequence >= 1),
    kind smallint NOT NULL CONSTRAINT ledger_journal_kind_check CHECK (kind BETWEEN 1 AND 255),
    header bytea NOT NULL
        CONSTRAINT ledger_journal_header_check CHECK (octet_length(header) = 96),
    payload bytea NOT NULL,
    epoch bigint NOT NULL CONSTRAINT ledger_journal_epoch_check CHECK (epoch >= 0),
    CONSTRAINT ledger_journal_pkey PRIMARY KEY (journal_name, sequence)
) PARTITION BY RANGE (sequence);

ALTER TABLE ledger_journal ALTER COLUMN payload SET STORAGE EXTERNAL;

-- 0005's fence, plus one way in for `ponte journal restore`: a session that says so
-- (SET LOCAL ponte.journal_restore = 'on') may put back records of epoch 0 — archived
-- records carry no epoch, and no writer ever writes epoch 0 (each takes an epoch >= 1), so
-- a fenced writer cannot pass through here. Restored rows notify nobody: no standby waits
-- for records older than the ones it has.
CREATE OR REPLACE FUNCTION ledger_journal_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_epoch bigint;
BEGIN
    IF NEW.epoch = 0 AND current_setting('ponte.journal_restore', true) = 'on' THEN
        RETURN NEW;
    END IF;
    SELECT epoch INTO current_epoch FROM journal_epochs
        WHERE journal_name = NEW.journal_name FOR SHARE;
    IF current_epoch IS NULL OR NEW.epoch <> current_epoch THEN
        RAISE EXCEPTION 'journal % is fenced: record % has epoch % but the journal is at epoch %',
            NEW.journal_name, NEW.sequence, NEW.epoch, coalesce(current_epoch::text, 'none')
            USING ERRCODE = 'PNF01';
    END IF;
    PERFORM pg_notify('ponte_journal', NEW.journal_name);
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_journal_fence BEFORE INSERT ON ledger_journal
    FOR EACH ROW EXECUTE FUNCTION ledger_journal_fence();

-- One row: the size of partitions made from now on.
CREATE TABLE ledger_journal_settings (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    journal_partition_records bigint NOT NULL
        CHECK (journal_partition_records BETWEEN 16 AND 1099511627776)
);
INSERT INTO ledger_journal_settings (journal_partition_records) VALUES (1000000);

-- The partitions and the sequences each one takes: [first_sequence, end_sequence).
CREATE VIEW ledger_journal_partitions AS
SELECT child.relname::text AS partition_name,
       bounds[1]::bigint AS first_sequence,
       bounds[2]::bigint AS end_sequence,
       link.inhdetachpending AS detach_pending
FROM pg_inherits AS link
JOIN pg_class AS child ON child.oid = link.inhrelid
CROSS JOIN LATERAL regexp_match(pg_get_expr(child.relpartbound, child.oid),
                                'FROM \(''?(-?\d+)''?\) TO \(''?(-?\d+)''?\)') AS bounds
WHERE link.inhparent = 'ledger_journal'::regclass AND bounds IS NOT NULL;

-- Make sure every sequence in [first_sequence, last_sequence] has a partition; returns the
-- end (exclusive) of the run of partitions from first_sequence on, always > last_sequence.
-- A missing range becomes a partition of journal_partition_records records (less where the
-- next partition starts sooner). Serialised by a transaction-level advisory lock, so
-- writers of several journals (and a standby taking over) can call it at once. The table
-- is created apart and then attached, which locks the parent only SHARE UPDATE EXCLUSIVE:
-- commits in progress go on (CREATE TABLE ... PARTITION OF would lock them out).
CREATE FUNCTION ledger_journal_cover(first_sequence bigint, last_sequence bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    records bigint;
    next_sequence bigint := first_sequence;
    found_end bigint;
    next_start bigint;
    partition_end bigint;
    partition_name text;
    rounds integer := 0;
BEGIN
    IF first_sequence < 1 OR last_sequence < first_sequence THEN
        RAISE EXCEPTION 'ledger_journal_cover: bad range % .. %', first_sequence, last_sequence;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended('ponte.journal.partitions', 0));
    SELECT journal_partition_records INTO STRICT records FROM ledger_journal_settings;
    LOOP
        SELECT max(p.end_sequence) INTO found_end FROM ledger_journal_partitions AS p
            WHERE p.first_sequence <= next_sequence AND next_sequence < p.end_sequence;
        IF found_end IS NOT NULL THEN
            next_sequence := found_end;
        ELSE
            SELECT min(p.first_sequence) INTO next_start FROM ledger_journal_partitions AS p
                WHERE p.first_sequence > next_sequence;
            partition_end := least(next_sequence + records,
                                   coalesce(next_start, next_sequence + records));
            partition_name := 'ledger_journal_p' || lpad(next_sequence::text, 20, '0');
            WHILE to_regclass(partition_name) IS NOT NULL LOOP  -- a table left by hand
                partition_name := partition_name || '_';
            END LOOP;
            EXECUTE format('CREATE TABLE %I (LIKE ledger_journal INCLUDING DEFAULTS '
                           'INCLUDING CONSTRAINTS INCLUDING STORAGE, CONSTRAINT %I '
                           'CHECK (sequence >= %s AND sequence < %s))',
                           partition_name, partition_name || '_range', next_sequence,
                           partition_end);
            EXECUTE format('ALTER TABLE ledger_journal ATTACH PARTITION %I '
                           'FOR VALUES FROM (%s) TO (%s)',
                           partition_name, next_sequence, partition_end);
            next_sequence := partition_end;
        END IF;
        EXIT WHEN next_sequence > last_sequence;
        rounds := rounds + 1;
        IF rounds > 100000 THEN
            RAISE EXCEPTION 'ledger_journal_cover: % .. % needs too many partitions',
                first_sequence, last_sequence;
        END IF;
    END LOOP;
    RETURN next_sequence;
END;
$$;

-- The old rows, kept: the first partition (1 .. the highest sequence any journal reached).
DO $$
DECLARE
    highest bigint;
BEGIN
    SELECT max(sequence) INTO highest FROM ledger_journal_before_partitions;
    IF highest IS NULL THEN
        DROP TABLE ledger_journal_before_partitions;
    ELSE
        ALTER TABLE ledger_journal_before_partitions
            RENAME TO ledger_journal_p00000000000000000001;
        ALTER INDEX ledger_journal_before_partitions_pkey
            RENAME TO ledger_journal_p00000000000000000001_pkey;
        EXECUTE format('ALTER TABLE ledger_journal_p00000000000000000001 ADD CONSTRAINT '
                       'ledger_journal_p00000000000000000001_range '
                       'CHECK (sequence >= 1 AND sequence < %s)', highest + 1);
        EXECUTE format('ALTER TABLE ledger_journal ATTACH PARTITION '
                       'ledger_journal_p00000000000000000001 FOR VALUES FROM (1) TO (%s)',
                       highest + 1);
    END IF;
END;
$$;

-- Archived segments (`ponte journal archive`): per journal, the records each segment file
-- holds and the hashes at both ends, written when its partition is detached. The first
-- record still in the table must follow the last archived one: this is what anchors the
-- table's chain when the archived files are not at hand (`ponte journal verify`).
CREATE TABLE ledger_journal_archive (
    journal_name text NOT NULL CHECK (length(journal_name) BETWEEN 1 AND 64),
    first_sequence bigint NOT NULL CHECK (first_sequence >= 1),
    last_sequence bigint NOT NULL,
    base_hash bytea NOT NULL CHECK (octet_length(base_hash) = 32),
    last_hash bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    segment_name text NOT NULL CHECK (length(segment_name) BETWEEN 1 AND 200),
    partition_name text NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_name, first_sequence),
    CHECK (last_sequence >= first_sequence)
);
