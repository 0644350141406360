-- G2P disbursement (switch/g2p, switch/store/g2p_store.py): a programme is a participant
-- of kind 'government'; its batches, their rows (beneficiaries by identity token or
-- financial address, never by raw national ID), the mapper transactions kept for
-- txn/status and the outbox of mapper notices.

ALTER TABLE participant_credentials DROP CONSTRAINT IF EXISTS participant_credentials_kind_check;
ALTER TABLE participant_credentials ADD CONSTRAINT participant_credentials_kind_check
    CHECK (kind IN ('bank', 'wallet', 'government'));

CREATE TABLE g2p_batches (
    batch_id bigserial PRIMARY KEY,
    programme_id integer NOT NULL CHECK (programme_id >= 1),
    transaction_id text NOT NULL CHECK (length(transaction_id) BETWEEN 1 AND 99),
    currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    state smallint NOT NULL CHECK (state BETWEEN 1 AND 5),
    created_ns bigint NOT NULL,
    updated_ns bigint NOT NULL,
    rows_total integer NOT NULL DEFAULT 0 CHECK (rows_total BETWEEN 0 AND 1000000),
    amount_total_minor numeric(30) NOT NULL DEFAULT 0,
    UNIQUE (programme_id, transaction_id)
);

CREATE TABLE g2p_rows (
    batch_id bigint NOT NULL REFERENCES g2p_batches (batch_id),
    row_no integer NOT NULL CHECK (row_no >= 1),
    reference_id text NOT NULL,
    payee_kind smallint NOT NULL CHECK (payee_kind IN (1, 2)),
    payee_key text NOT NULL,
    amount_minor bigint NOT NULL CHECK (amount_minor >= 1),
    status smallint NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 4),
    reason smallint NOT NULL DEFAULT 0,
    result integer NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0,
    payee_participant_id integer NOT NULL DEFAULT 0,
    payee_account_ref text NOT NULL DEFAULT '',
    expires_at_ns bigint NOT NULL DEFAULT 0,
    updated_ns bigint NOT NULL,
    PRIMARY KEY (batch_id, row_no),
    UNIQUE (batch_id, reference_id)
);
CREATE INDEX g2p_rows_payee ON g2p_rows (payee_key);
CREATE INDEX g2p_rows_status ON g2p_rows (batch_id, status, row_no);

CREATE TABLE g2p_mapper_txns (
    participant_id integer NOT NULL,
    transaction_id text NOT NULL,
    action text NOT NULL,
    body bytea NOT NULL,
    created_ns bigint NOT NULL,
    PRIMARY KEY (participant_id, transaction_id, action)
);

CREATE TABLE g2p_notices (
    notice_id bigserial PRIMARY KEY,
    participant_id integer NOT NULL,
    body bytea NOT NULL,
    created_ns bigint NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    done smallint NOT NULL DEFAULT 0
);
