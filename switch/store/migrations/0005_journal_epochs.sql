-- Fencing for the PostgreSQL journal (ledger/journal_postgres.py, docs/operations.md
-- "Primary and standby").
--
-- Every writer of a journal takes the journal's advisory lock and then a new epoch: one
-- row per journal in journal_epochs, bumped (+1) by each writer that opens it. Every record
-- it writes carries that epoch in `ledger_journal.epoch`, and the trigger below refuses,
-- inside PostgreSQL and in the inserting transaction, any record whose epoch is not the
-- journal's current one. So a writer that lost its lock (its session ended, a standby took
-- the lock and a new epoch) cannot commit another record, whatever its own code believes:
-- the COPY fails with SQLSTATE PNF01 and nothing of it is written.
--
-- The trigger reads the epoch row FOR SHARE: a takeover's UPDATE of the row waits for a
-- commit in progress (whose records the new writer then reads), and a commit that starts
-- after the takeover sees the new epoch. Records written before this migration keep epoch
-- 0; epochs never decrease along a journal (checked by the readers).
--
-- The same trigger notifies channel `ponte_journal` (payload: the journal name) when the
-- transaction commits, which wakes standbys following the journal (LISTEN); they poll as
-- well, so a lost notification only delays them.

CREATE TABLE journal_epochs (
    journal_name text PRIMARY KEY CHECK (length(journal_name) BETWEEN 1 AND 64),
    epoch bigint NOT NULL CHECK (epoch >= 1),
    -- Who took this epoch (host:pid) and when: for the operator and for a refusal message.
    holder text NOT NULL DEFAULT '' CHECK (length(holder) <= 256),
    taken_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE ledger_journal ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
-- New rows must say their epoch: no default hides a writer that does not know it.
ALTER TABLE ledger_journal ALTER COLUMN epoch DROP DEFAULT;

CREATE FUNCTION ledger_journal_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    current_epoch bigint;
BEGIN
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

-- A standby's progress, written by the standby (about once a second), so the primary's
-- console and /health can show how far behind each standby is.
CREATE TABLE journal_standbys (
    journal_name text NOT NULL CHECK (length(journal_name) BETWEEN 1 AND 64),
    standby text NOT NULL CHECK (length(standby) BETWEEN 1 AND 256),
    applied_sequence bigint NOT NULL CHECK (applied_sequence >= 0),
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journal_name, standby)
);

-- A digest of the switch's secrets (API key pepper and directory secret), written by the
-- first primary: a standby or a new primary whose secrets differ refuses to start, since
-- after a takeover every API key and identity token would stop matching.
CREATE TABLE switch_secrets_check (
    journal_name text PRIMARY KEY CHECK (length(journal_name) BETWEEN 1 AND 64),
    secrets_digest bytea NOT NULL CHECK (octet_length(secrets_digest) = 32)
);
