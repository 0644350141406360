-- The FSPIOP hub's signed prepares, kept until their transfer is final so a credit request
-- re-sent after a restart reaches the payee DFSP as the payer wrote it
-- (connectors/fspiop/store.py). Rows are deleted when final, pruned once expired.
CREATE TABLE IF NOT EXISTS fspiop_prepares (
    payer_participant_id integer NOT NULL,
    transfer_id text NOT NULL,
    expires_at_ns bigint NOT NULL,
    prepare bytea NOT NULL,
    PRIMARY KEY (payer_participant_id, transfer_id)
);
CREATE INDEX IF NOT EXISTS fspiop_prepares_expiry ON fspiop_prepares (expires_at_ns);
