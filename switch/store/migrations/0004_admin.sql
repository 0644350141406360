-- The operator API's tables (switch/admin, switch/store/admin_postgres.py): operators,
-- sessions, the hash-chained audit log and maker-checker proposals. Participants' callback
-- URLs and API keys live in the server's credential tables (0003). Same columns as the embedded store (switch/store/admin_embedded.py).
-- Passwords are stored only as argon2id hashes and session tokens only as SHA-256 digests.
-- The audit log is append-only: triggers refuse UPDATE and DELETE, and each row is chained
-- to the previous one by record_hash (switch/admin/audit.py), so even a superuser who
-- disables the triggers cannot change a row without `ponte admin verify-audit` naming it.

CREATE TABLE admin_users (
    username      text     PRIMARY KEY CHECK (length(username) BETWEEN 1 AND 32),
    role          smallint NOT NULL CHECK (role BETWEEN 1 AND 3),
    password_hash text     NOT NULL,
    created_ns    bigint   NOT NULL,
    disabled      boolean  NOT NULL DEFAULT false
);

CREATE TABLE admin_sessions (
    token_hash bytea    PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    username   text     NOT NULL REFERENCES admin_users (username),
    role       smallint NOT NULL,
    csrf_token text     NOT NULL,
    created_ns bigint   NOT NULL,
    expires_ns bigint   NOT NULL,
    seen_ns    bigint   NOT NULL,
    client     text     NOT NULL
);
CREATE INDEX admin_sessions_user ON admin_sessions (username, created_ns);

CREATE TABLE admin_audit (
    seq         bigint PRIMARY KEY CHECK (seq >= 1),
    at_ns       bigint NOT NULL,
    actor       text   NOT NULL,
    action      text   NOT NULL,
    target      text   NOT NULL,
    result      text   NOT NULL,
    detail      text   NOT NULL,
    client      text   NOT NULL,
    prev_hash   bytea  NOT NULL CHECK (octet_length(prev_hash) = 32),
    record_hash bytea  NOT NULL CHECK (octet_length(record_hash) = 32)
);
CREATE INDEX admin_audit_actor ON admin_audit (actor, seq);

CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER admin_audit_no_update BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
CREATE TRIGGER admin_audit_no_truncate BEFORE TRUNCATE ON admin_audit
    FOR EACH STATEMENT EXECUTE FUNCTION admin_audit_append_only();

CREATE TABLE admin_proposals (
    proposal_id    text     PRIMARY KEY,
    kind           text     NOT NULL,
    participant_id integer  NOT NULL,
    currency       text     NOT NULL,
    body           text     NOT NULL,
    state          smallint NOT NULL,
    proposed_by    text     NOT NULL,
    proposed_ns    bigint   NOT NULL,
    decided_by     text     NOT NULL,
    decided_ns     bigint   NOT NULL,
    core_result    integer  NOT NULL,
    detail         text     NOT NULL
);
CREATE INDEX admin_proposals_state ON admin_proposals (state, proposed_ns);

