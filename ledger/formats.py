"""The byte layouts both ledger twins share, declared once: the packed records a batch
carries and the state snapshot both twins write and load.

These are wire, journal and snapshot formats: never reorder a field or change a size (a new
layout takes a new STATE_VERSION). The compiled core's C structs (`ledger/_core.pxd`) mirror
them field for field and check their sizes against this module when it loads. The durability
layer's own framing (journal records, snapshot files) lives with it, in `journal_format.py`
and `snapshot.py`. This module only describes bytes: it must never import a twin, hold state
or do I/O.

Batch records, 72 bytes little-endian, naturally aligned so the core casts a buffer in place:
    TRANSFER_STRUCT  id, debit_account_id, credit_account_id, amount_minor, pending_id,
                     user_data_64, timestamp (u64); user_data_32, timeout_ms, ledger (u32);
                     code, flags (u16)
    ACCOUNT_STRUCT   id, debits_pending, debits_posted, credits_pending, credits_posted,
                     user_data_64, timestamp (u64); user_data_32, ledger, reserved (u32);
                     code, flags (u16)

State snapshot (`Ledger.snapshot()`; `ledger/snapshot.py` wraps it in a file header and
calls it the state):
    header   STATE_HEADER: magic, version, 0, last_timestamp, the four config bounds,
             then the counts of accounts, retained entries, pending entries, history rows
    accounts ACCOUNT_STRUCT x accounts, in creation order
    retained RETAINED_STRUCT x retained entries, oldest first
    pending  RETAINED_STRUCT x pending entries, by timestamp
    history  HISTORY_STRUCT x rows, oldest first
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ledger.config import LedgerConfig

# 7 x u64, 3 x u32, 2 x u16 = 72 bytes.
TRANSFER_STRUCT = struct.Struct("<7Q3I2H")
ACCOUNT_STRUCT = struct.Struct("<7Q3I2H")
RECORD_BYTES = 72

# One slot of the retained ring: the transfer record, then amount_bound_minor, then kind
# (`ledger.types.RetainedKind`), pending status (`PendingStatus`), the failed result code
# (a FAILED slot), padding.
RETAINED_STRUCT = struct.Struct("<7Q3I2HQBBB5x")
RETAINED_KIND_FIELD = 13
RETAINED_STATUS_FIELD = 14
# One balance row: account_id, timestamp, debits_pending, debits_posted, credits_pending,
# credits_posted.
HISTORY_STRUCT = struct.Struct("<6Q")

STATE_MAGIC = b"PONTELDG"
STATE_VERSION = 1
STATE_HEADER = struct.Struct("<8sIIQ4Q4Q")

assert TRANSFER_STRUCT.size == ACCOUNT_STRUCT.size == RECORD_BYTES
assert RETAINED_STRUCT.size == 88
assert HISTORY_STRUCT.size == 48
assert STATE_HEADER.size == 88


class StateHeader(NamedTuple):
    """The fields of STATE_HEADER, in order."""

    magic: bytes
    version: int
    reserved: int
    last_timestamp: int
    accounts_max: int
    transfers_retained_max: int
    pending_max: int
    history_retained_max: int
    account_count: int
    retained_count: int
    pending_count: int
    history_count: int


def pack_state_header(last_timestamp: int, config: LedgerConfig, account_count: int,
                      retained_count: int, pending_count: int, history_count: int) -> bytes:
    return STATE_HEADER.pack(
        STATE_MAGIC, STATE_VERSION, 0, last_timestamp,
        config.accounts_max, config.transfers_retained_max, config.pending_max,
        config.history_retained_max,
        account_count, retained_count, pending_count, history_count,
    )


def parse_state_header(view) -> StateHeader:
    """The header of a snapshot; ValueError if the data is not one whole snapshot."""
    if len(view) < STATE_HEADER.size:
        raise ValueError("snapshot too short")
    header = StateHeader._make(STATE_HEADER.unpack_from(view, 0))
    if header.magic != STATE_MAGIC:
        raise ValueError("not a ledger snapshot (bad magic)")
    if header.version != STATE_VERSION:
        raise ValueError(f"unsupported ledger snapshot version {header.version}")
    expected = (STATE_HEADER.size + header.account_count * ACCOUNT_STRUCT.size
                + (header.retained_count + header.pending_count) * RETAINED_STRUCT.size
                + header.history_count * HISTORY_STRUCT.size)
    if len(view) != expected:
        raise ValueError(f"snapshot is {len(view)} bytes, its header says {expected}")
    return header


def state_config(header: StateHeader, config: LedgerConfig | None) -> LedgerConfig:
    """The config to load a snapshot with: `config`, or with None the snapshot's own bounds;
    ValueError if the snapshot's state does not fit it."""
    if config is None:
        config = LedgerConfig(
            accounts_max=header.accounts_max,
            transfers_retained_max=header.transfers_retained_max,
            pending_max=header.pending_max, history_retained_max=header.history_retained_max,
        )
    if header.account_count > config.accounts_max:
        raise ValueError(f"snapshot has {header.account_count} accounts > accounts_max")
    if header.retained_count > config.transfers_retained_max:
        raise ValueError(f"snapshot retains {header.retained_count} transfers > "
                         "transfers_retained_max")
    if header.pending_count > config.pending_max:
        raise ValueError(f"snapshot has {header.pending_count} pending > pending_max")
    if header.history_count > config.history_retained_max:
        raise ValueError(f"snapshot has {header.history_count} history rows > "
                         "history_retained_max")
    return config


def split_state(view, header: StateHeader) -> tuple[bytes, bytes, bytes, bytes]:
    """The four sections of a snapshot whose header parsed: accounts, retained, pending,
    history, each a whole number of its records."""
    sizes = (header.account_count * ACCOUNT_STRUCT.size,
             header.retained_count * RETAINED_STRUCT.size,
             header.pending_count * RETAINED_STRUCT.size,
             header.history_count * HISTORY_STRUCT.size)
    sections = []
    offset = STATE_HEADER.size
    for size in sizes:
        sections.append(bytes(view[offset:offset + size]))
        offset += size
    assert offset == len(view), "parse_state_header checked the length"
    return sections[0], sections[1], sections[2], sections[3]
