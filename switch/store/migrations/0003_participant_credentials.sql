-- Participant credentials for the server's gateway (switch/store/credentials.py).
--
-- The switch core knows a participant by id and name (journaled admin events); what only
-- the connectors need lives here: its kind, its callback URL, the hashes of its API keys
-- (HMAC-SHA256 under the server's pepper: the key itself is shown once and never stored)
-- and the SHA-256 fingerprints of TLS client certificates it may connect with.

CREATE TABLE participant_credentials (
    participant_id integer PRIMARY KEY CHECK (participant_id >= 1),
    name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 140),
    kind text NOT NULL CHECK (kind IN ('bank', 'wallet')),
    callback_url text NOT NULL DEFAULT '' CHECK (length(callback_url) <= 2048),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE participant_api_keys (
    key_id text PRIMARY KEY CHECK (length(key_id) BETWEEN 1 AND 64),
    participant_id integer NOT NULL REFERENCES participant_credentials (participant_id),
    key_hash bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

CREATE INDEX participant_api_keys_participant ON participant_api_keys (participant_id);

CREATE TABLE participant_certificates (
    participant_id integer NOT NULL REFERENCES participant_credentials (participant_id),
    fingerprint_sha256 bytea NOT NULL UNIQUE CHECK (octet_length(fingerprint_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (participant_id, fingerprint_sha256)
);
