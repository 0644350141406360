-- The ISO 20022 connector's store (connectors/iso20022/state.py): what banks rely on after a
-- restart (forwarded parties, references the switch wrote, open recalls, the BizMsgIdr
-- window, camt.052 sequences), as groups of CRC-framed records appended in order and
-- rewritten from memory when they grow. A standby that takes over reads them back.
CREATE TABLE IF NOT EXISTS iso20022_state (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    records bytea NOT NULL
);
