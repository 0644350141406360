-- The ISO 20022 connector's outbox (connectors/iso20022/outbox.py): every message the switch
-- owes a bank, from the moment it is written until the bank acknowledges it, as groups of
-- CRC-framed records appended in order and rewritten from what is owed when they grow. A
-- standby that takes over reads them back and delivers what its predecessor owed.
CREATE TABLE IF NOT EXISTS iso20022_outbox (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    records bytea NOT NULL
);
