-- The alias directory (switch/directory): aliases, claims and G2P mapper links.
-- Owners appear only as identity tokens: HMAC-SHA256 of the normalised national ID under the
-- scheme secret. No column may ever hold a raw national ID; a NATIONAL_ID alias is stored
-- under the hex of its token.

CREATE TABLE directory_aliases (
    -- Fixed-width columns first, so the row has no alignment padding between them.
    created_ns       bigint   NOT NULL,
    updated_ns       bigint   NOT NULL,
    -- First 8 bytes of owner_token: a narrow index for the per-owner cap (the full token is
    -- compared as well, so a prefix collision only costs reading one more row).
    owner_key        bigint   NOT NULL,
    -- 64-bit digest of (participant_id, account_ref): a narrow index for the per-account cap.
    account_key      bigint   NOT NULL,
    alias_type       smallint NOT NULL,
    owner_kind       smallint NOT NULL,
    status           smallint NOT NULL,
    -- Byte order: the primary key is built and probed without locale rules (several
    -- times faster to sort than a linguistic collation, and aliases are not prose).
    alias_key        text     COLLATE "C" NOT NULL,
    participant_id   text     NOT NULL,
    account_ref      text     NOT NULL,
    display_initials text     NOT NULL,
    owner_token      bytea    NOT NULL CHECK (octet_length(owner_token) = 32),
    CONSTRAINT directory_aliases_pkey PRIMARY KEY (alias_type, alias_key)
);
CREATE INDEX directory_aliases_owner ON directory_aliases (owner_key);
CREATE INDEX directory_aliases_account ON directory_aliases (account_key);

CREATE TABLE directory_claims (
    claim_id                 text     PRIMARY KEY,
    claim_type               smallint NOT NULL,
    alias_type               smallint NOT NULL,
    alias_key                text     NOT NULL,
    donor_participant_id     text     NOT NULL,
    donor_account_ref        text     NOT NULL,
    donor_owner_token        bytea    NOT NULL,
    claimer_participant_id   text     NOT NULL,
    claimer_account_ref      text     NOT NULL,
    claimer_owner_token      bytea    NOT NULL,
    claimer_owner_kind       smallint NOT NULL,
    claimer_display_initials text     NOT NULL,
    state                    smallint NOT NULL,
    cancel_reason            smallint NOT NULL,
    opened_ns                bigint   NOT NULL,
    resolution_deadline_ns   bigint   NOT NULL,
    completion_deadline_ns   bigint   NOT NULL,
    updated_ns               bigint   NOT NULL
);
-- At most one live claim (open, waiting_resolution, confirmed) per alias.
CREATE UNIQUE INDEX directory_claims_live ON directory_claims (alias_type, alias_key)
    WHERE state IN (1, 2, 3);
CREATE INDEX directory_claims_due_resolution ON directory_claims (resolution_deadline_ns)
    WHERE state IN (1, 2);
CREATE INDEX directory_claims_due_completion ON directory_claims (completion_deadline_ns)
    WHERE state = 3;
CREATE INDEX directory_claims_donor ON directory_claims (donor_participant_id);
CREATE INDEX directory_claims_claimer ON directory_claims (claimer_participant_id);

CREATE TABLE directory_mapper_links (
    id_token       bytea  PRIMARY KEY CHECK (octet_length(id_token) = 32),
    participant_id text   NOT NULL,
    account_ref    text   NOT NULL,
    linked_ns      bigint NOT NULL
);
