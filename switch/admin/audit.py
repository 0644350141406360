"""The audit log's hash chain: how a record is sealed and how the chain is checked.

Pure functions, no I/O: the stores (`switch/store/admin_*.py`) keep the rows, this module
decides what a valid chain is. Record n's hash is SHA-256 over record n-1's hash and a
canonical encoding of every field of record n, so editing, deleting, inserting or reordering
any row breaks the chain at that row. It must never accept a record whose hash it did not
recompute.
"""

from __future__ import annotations

import hashlib
from typing import AsyncIterator, Iterable

import msgspec

from switch.admin import limits
from switch.admin.types import AuditRecord, AuditVerification

GENESIS_HASH = bytes(32)
_encode = msgspec.json.Encoder().encode


def canonical_body(seq: int, at_ns: int, actor: str, action: str, target: str, result: str,
                   detail: str, client: str) -> bytes:
    """A JSON array in a fixed field order: unambiguous (strings are quoted and escaped),
    so no two different records share a body."""
    return _encode([seq, at_ns, actor, action, target, result, detail, client])


def seal(prev_hash: bytes, seq: int, at_ns: int, actor: str, action: str, target: str,
         result: str, detail: str, client: str) -> AuditRecord:
    assert len(prev_hash) == 32
    assert seq >= 1
    assert len(detail.encode()) <= limits.AUDIT_DETAIL_BYTES_MAX
    body = canonical_body(seq, at_ns, actor, action, target, result, detail, client)
    return AuditRecord(
        seq=seq, at_ns=at_ns, actor=actor, action=action, target=target, result=result,
        detail=detail, client=client, prev_hash=prev_hash,
        record_hash=hashlib.sha256(prev_hash + body).digest(),
    )


def detail_text(detail: dict | None) -> str:
    """The detail of a record as compact JSON, cut to the bound (a cut detail still seals;
    it says so)."""
    if not detail:
        return ""
    text = _encode(detail).decode()
    if len(text.encode()) <= limits.AUDIT_DETAIL_BYTES_MAX:
        return text
    return _encode({"truncated": text[: limits.AUDIT_DETAIL_BYTES_MAX // 2]}).decode()


class ChainChecker:
    """Feed records in seq order; stops at the first broken one.

    `anchor` is (seq, hex hash) of a record whose hash was written somewhere the table's
    owner cannot rewrite (the switch's journal, `AuditAnchored`): the chain must reach that
    record with that hash. Without it, removing the newest records, or rewriting the chain
    from some record to the end, would leave a chain that checks out."""

    def __init__(self, anchor: tuple[int, str] | None = None) -> None:
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH
        self.checked = 0
        self.broken: AuditVerification | None = None
        self.anchor = anchor

    def feed(self, record: AuditRecord) -> bool:
        """False (and `broken` set) at the first record that does not belong to the chain."""
        assert self.broken is None
        reason = ""
        if record.seq != self.expected_seq:
            # A gap: the record expected here was deleted (or the rows were renumbered).
            reason = f"expected record {self.expected_seq}, found {record.seq}"
            broken_seq = self.expected_seq
        elif record.prev_hash != self.prev_hash:
            reason = "prev_hash does not match the previous record's hash"
            broken_seq = record.seq
        else:
            again = seal(self.prev_hash, record.seq, record.at_ns, record.actor, record.action,
                         record.target, record.result, record.detail, record.client)
            if again.record_hash != record.record_hash:
                reason = "record_hash does not match the record's contents"
                broken_seq = record.seq
            elif self.anchor is not None and record.seq == self.anchor[0] and (
                    record.record_hash.hex() != self.anchor[1]):
                reason = ("the record differs from the one anchored in the switch's journal: "
                          "the chain was rewritten from here or earlier")
                broken_seq = record.seq
        if reason:
            self.broken = AuditVerification(ok=False, records_checked=self.checked,
                                            first_broken_seq=broken_seq, reason=reason,
                                            anchored_seq=self._anchored_seq())
            return False
        self.checked += 1
        self.expected_seq += 1
        self.prev_hash = record.record_hash
        return True

    def _anchored_seq(self) -> int:
        return 0 if self.anchor is None else self.anchor[0]

    def result(self) -> AuditVerification:
        if self.broken is not None:
            return self.broken
        anchored_seq = self._anchored_seq()
        if self.checked < anchored_seq:
            return AuditVerification(
                ok=False, records_checked=self.checked, first_broken_seq=self.checked + 1,
                anchored_seq=anchored_seq,
                reason=(f"the chain ends at record {self.checked}, but record {anchored_seq} "
                        "was anchored in the switch's journal: records were removed from "
                        "its end"))
        return AuditVerification(ok=True, records_checked=self.checked,
                                 anchored_seq=anchored_seq)


def verify_chain(records: Iterable[AuditRecord],
                 anchor: tuple[int, str] | None = None) -> AuditVerification:
    checker = ChainChecker(anchor)
    for record in records:
        if not checker.feed(record):
            break
    return checker.result()


async def verify_chain_async(records: AsyncIterator[AuditRecord],
                             anchor: tuple[int, str] | None = None) -> AuditVerification:
    checker = ChainChecker(anchor)
    async for record in records:
        if not checker.feed(record):
            break
    return checker.result()
