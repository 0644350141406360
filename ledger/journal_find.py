"""Answers for transfers the ledger no longer retains in memory, read from the journal.

The ledger keeps only the most recent `transfers_retained_max` transfers; an older id is
found by searching the journal newest-first for a CREATE_TRANSFERS record holding it as an
event's id. Each record carries the ledger's answer, so the hit says whether the transfer
was created (OK) or refused and which timestamp it was given.

Cost on the file journal: `mmap.rfind` of the 8-byte id over the journal, newest bytes
first, at memory speed (a few GB/s when cached); a hit is mapped to its record by walking
headers from the nearest checkpoint (one per 4 MiB) and the record's checksum is verified.
A never-seen id therefore costs one pass over the whole file. The PostgreSQL journal
(`PostgresJournal.find_transfer`) searches server-side in windows of records.

It never changes the journal and never guesses: only an id at an event's id position, in a
record whose checksum verifies, counts.
"""

from __future__ import annotations

import mmap
import os
import struct

import msgspec

from ledger.journal_format import (
    HEADER_BYTES,
    HeaderFields,
    JournalCorrupt,
    RecordKind,
    RecordProblem,
    checksum_matches,
    parse_header,
)
from ledger.journal_payload import PREFIX_BYTES, decode_batch, failure_of
from ledger.limits import U64_MAX
from ledger.types import RECORD_BYTES, CreateTransferResult, Transfer, unpack_transfer

ID_STRUCT = struct.Struct("<Q")


class FoundTransfer(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer as submitted in journal record `sequence` at `index`, with the timestamp
    the ledger gave it and its result. Post/void fields left zero by the submitter stay zero
    (the ledger resolved them from the pending transfer)."""

    sequence: int
    index: int
    now_ns: int
    transfer: Transfer
    result: CreateTransferResult


def found_in_record(sequence: int, now_ns: int, payload, index: int) -> FoundTransfer:
    batch = decode_batch(payload)
    assert 0 <= index < batch.events_count
    submitted = unpack_transfer(batch.events, index * RECORD_BYTES)
    transfer = msgspec.structs.replace(submitted, timestamp=batch.timestamp_base + index)
    return FoundTransfer(
        sequence=sequence, index=index, now_ns=now_ns, transfer=transfer,
        result=CreateTransferResult(failure_of(batch.failures, index)),
    )


def event_index_at(payload_offset: int, events_count: int) -> int | None:
    """Index of the event whose id starts at this payload offset, else None."""
    relative = payload_offset - PREFIX_BYTES
    if relative < 0 or relative % RECORD_BYTES != 0:
        return None
    index = relative // RECORD_BYTES
    return index if index < events_count else None


def pick(newest_failed: FoundTransfer | None, found: FoundTransfer):
    """Newest-first search policy: the first OK hit is the transfer (an id is created at
    most once); otherwise the newest refused attempt answers."""
    if found.result == CreateTransferResult.OK:
        return found, True
    return (newest_failed if newest_failed is not None else found), False


def find_transfer_in_file(journal, transfer_id: int) -> FoundTransfer | None:
    """Search a FileJournal's durable records newest-first for `transfer_id`."""
    if not 0 < transfer_id < U64_MAX:
        raise ValueError(f"transfer_id={transfer_id!r} is not a valid id")
    end_offset = journal.position.offset
    if end_offset == 0:
        return None
    needle = ID_STRUCT.pack(transfer_id)
    newest_failed: FoundTransfer | None = None
    with open(journal.path, "rb") as file:
        size = min(os.fstat(file.fileno()).st_size, end_offset)
        with mmap.mmap(file.fileno(), size, access=mmap.ACCESS_READ) as data:
            search_end = size
            while True:
                hit = data.rfind(needle, 0, search_end)
                if hit < 0:
                    return newest_failed
                record_offset, fields = _record_containing(journal, data, hit)
                # Everything in this record at or after the hit is done; earlier bytes of
                # the same record may still hold the id (a post/void naming it, say).
                search_end = hit + len(needle) - 1
                if fields.kind != RecordKind.CREATE_TRANSFERS:
                    continue
                payload_start = record_offset + HEADER_BYTES
                payload = data[payload_start:payload_start + fields.payload_bytes]
                events_count = decode_batch(payload).events_count
                index = event_index_at(hit - payload_start, events_count)
                if index is None:
                    continue
                if not checksum_matches(data[record_offset:payload_start], payload):
                    raise JournalCorrupt(RecordProblem.BAD_CHECKSUM, fields.sequence,
                                         record_offset, "changed after start-up")
                found = found_in_record(fields.sequence, fields.now_ns, payload, index)
                newest_failed, done = pick(newest_failed, found)
                if done:
                    return newest_failed


def _record_containing(journal, data, offset: int) -> tuple[int, HeaderFields]:
    """(start, header) of the record whose bytes include `offset`, walking forward from the
    nearest checkpoint the journal verified."""
    position = journal.checkpoint_before(offset).offset
    while True:
        fields = parse_header(data[position:position + HEADER_BYTES])
        if not isinstance(fields, HeaderFields):
            raise JournalCorrupt(fields, 0, position, "header changed after start-up")
        end = position + HEADER_BYTES + fields.payload_bytes
        if offset < end:
            return position, fields
        position = end


def find_transfer(journal, transfer_id: int):
    """`transfer_id` as recorded in `journal`, newest first, or None.

    FileJournal: answers directly. PostgresJournal: returns an awaitable of the answer.
    """
    from ledger.journal import FileJournal

    if isinstance(journal, FileJournal):
        return find_transfer_in_file(journal, transfer_id)
    return journal.find_transfer(transfer_id)
