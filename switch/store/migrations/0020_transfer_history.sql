-- The durable transfer history (switch/store/history.py): final transfers the core dropped
-- from its retained window, kept for the history's retention.
CREATE TABLE IF NOT EXISTS transfer_history (
    payer_participant_id integer NOT NULL,
    transfer_id text NOT NULL,
    decided_at_ns bigint NOT NULL,
    final bytea NOT NULL,
    PRIMARY KEY (payer_participant_id, transfer_id)
);
CREATE INDEX IF NOT EXISTS transfer_history_decided ON transfer_history (decided_at_ns);
