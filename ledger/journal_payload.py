"""Payloads of the ledger's own journal records (kinds 1..3): the input batch plus what the
ledger answered, so replay can prove it rebuilt the same thing.

CREATE_ACCOUNTS / CREATE_TRANSFERS payload:

    offset size field
         0    2 payload version (u16, 1)
         2    2 reserved, zero
         4    4 events (u32)
         8    4 failures (u32)
        12    4 reserved, zero
        16    8 timestamp_base (u64): the timestamp the ledger gave event 0
        24  72n the packed input events, exactly as passed to the ledger
         .   8k failures as (index u32, result u32), index order (the ledger's return value)

EXPIRE_PENDING payload: the same 24-byte prefix (events = expired count, failures = 0)
followed by the expired transfer ids (u64 each) in the order expire_pending returned them.

Only bytes here: no file, no clock, no ledger calls. A payload that does not parse is a
writer bug or tampering the checksum missed, and raises PayloadInvalid.
"""

from __future__ import annotations

import struct
from bisect import bisect_left

import msgspec

from ledger.limits import BATCH_EVENTS_MAX
from ledger.types import RECORD_BYTES

PAYLOAD_VERSION = 1
PREFIX_STRUCT = struct.Struct("<HHIIIQ")
PREFIX_BYTES = PREFIX_STRUCT.size
FAILURE_BYTES = 8
EXPIRED_ID_BYTES = 8

assert PREFIX_BYTES == 24
assert PREFIX_BYTES % 8 == 0  # keeps the packed events 8-byte aligned within the payload


class PayloadInvalid(ValueError):
    """A ledger record's payload does not match its own layout."""


class BatchPayload(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    events_count: int
    timestamp_base: int
    events: memoryview
    failures: list[tuple[int, int]]


def batch_payload_bytes_max(batch_bytes: int) -> int:
    """Upper bound of the payload for a batch of this many bytes (every event failing)."""
    return PREFIX_BYTES + batch_bytes + (batch_bytes // RECORD_BYTES) * FAILURE_BYTES


def encode_batch(batch, timestamp_base: int, failures) -> bytes:
    """One payload for a create_* batch and the ledger's failures list."""
    events = memoryview(batch).cast("B")
    assert events.nbytes % RECORD_BYTES == 0
    events_count = events.nbytes // RECORD_BYTES
    prefix = PREFIX_STRUCT.pack(PAYLOAD_VERSION, 0, events_count, len(failures), 0,
                                timestamp_base)
    if not failures:
        return b"".join((prefix, events))
    flat = []
    for index, result in failures:
        flat.append(index)
        flat.append(int(result))
    trailer = struct.pack(f"<{len(flat)}I", *flat)
    return b"".join((prefix, events, trailer))


def _prefix(payload) -> tuple[int, int, int]:
    if len(payload) < PREFIX_BYTES:
        raise PayloadInvalid(f"payload of {len(payload)} bytes is shorter than its prefix")
    version, reserved, count, failures_count, reserved_2, timestamp_base = (
        PREFIX_STRUCT.unpack_from(payload, 0)
    )
    if version != PAYLOAD_VERSION or reserved != 0 or reserved_2 != 0:
        raise PayloadInvalid(f"payload version={version} reserved={reserved},{reserved_2}")
    return count, failures_count, timestamp_base


def decode_batch(payload) -> BatchPayload:
    events_count, failures_count, timestamp_base = _prefix(payload)
    if events_count > BATCH_EVENTS_MAX or failures_count > events_count:
        raise PayloadInvalid(f"events={events_count} failures={failures_count}")
    events_end = PREFIX_BYTES + events_count * RECORD_BYTES
    if len(payload) != events_end + failures_count * FAILURE_BYTES:
        raise PayloadInvalid(
            f"payload of {len(payload)} bytes does not hold events={events_count} "
            f"failures={failures_count}"
        )
    view = memoryview(payload)
    flat = struct.unpack_from(f"<{2 * failures_count}I", payload, events_end)
    failures = list(zip(flat[0::2], flat[1::2]))
    return BatchPayload(events_count=events_count, timestamp_base=timestamp_base,
                        events=view[PREFIX_BYTES:events_end], failures=failures)


def failure_of(failures: list[tuple[int, int]], index: int) -> int:
    """The recorded result of event `index` (0 = OK) from a sorted failures list."""
    position = bisect_left(failures, (index, -1))
    if position < len(failures) and failures[position][0] == index:
        return failures[position][1]
    return 0


def encode_expired(timestamp_base: int, expired_ids) -> bytes:
    prefix = PREFIX_STRUCT.pack(PAYLOAD_VERSION, 0, len(expired_ids), 0, 0, timestamp_base)
    return prefix + struct.pack(f"<{len(expired_ids)}Q", *expired_ids)


def decode_expired(payload) -> tuple[int, list[int]]:
    count, failures_count, timestamp_base = _prefix(payload)
    if failures_count != 0 or len(payload) != PREFIX_BYTES + count * EXPIRED_ID_BYTES:
        raise PayloadInvalid(f"expire payload of {len(payload)} bytes, count={count}")
    return timestamp_base, list(struct.unpack_from(f"<{count}Q", payload, PREFIX_BYTES))
