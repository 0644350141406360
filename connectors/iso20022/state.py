"""What the ISO 20022 connector remembers, and keeps across a restart: its own small store,
a log of records on the switch's backends (`StateLog`: `<data_dir>/iso20022/state.log`, or
the `iso20022_state` table when the switch keeps its journal or stores in PostgreSQL).

What a bank would notice if the switch forgot it after a restart:
- the parties, remittance and references a payer bank's pacs.008 carried (`Passthrough`)
  until the transfer's outcome has gone out: the payee bank's pacs.008 (re-sent after a
  restart) would say NOTPROVIDED, the payer's pacs.002 would quote the wrong MsgId;
- the references the switch wrote for what it sent (the MsgId of a pacs.008, pacs.004 or
  pain.013; the reference of a transfer id longer than ISO's 35 characters), which the
  banks' answers, returns and recalls name; and which credit was a return (pacs.004);
- recalls forwarded and waiting for the payee bank's camt.029;
- the BizMsgIdr window (a resend is acknowledged, not taken again);
- the camt.052 report entries not yet reported, and each report's sequence number (a
  report's BizMsgIdr is derived from it: a restarted count would repeat ids the bank
  already applied).

The store is an append-only log of msgpack records, each framed with its length and CRC32
(a torn tail after a crash is cut off at the first frame that does not check), several
appends per write (group commit, one write at a time). Memory is the truth while running;
the log replays into it at start. When the log has grown past
twice what is live (and STATE_COMPACT_BYTES_MIN), it is rewritten from memory (a temporary
file, fsync, rename). Everything is bounded like the memory it mirrors (limits.py), and
pruned when no longer needed: passthroughs and credit kinds when the outcome has gone out
(or after STATE_KEPT_AGE_MS_MAX), recalls when answered, report entries when reported,
references and BizMsgIdrs past their bounds (oldest first).

Ordering, which makes a crash at any point harmless (connector.py follows it):
- `sync()` returns once every record appended before it is on disk;
- a bank's message is submitted only after what it left here is synced (its passthrough;
  and, with it, every reference appended earlier, such as the MsgId of the credit it
  answers);
- its BizMsgIdr is recorded only after the journal made the message durable (else a crash
  in between would acknowledge a resend of a message that was never taken);
- a recall is forwarded only after it is synced.

It must never hold a raw national ID (the parties are forwarded without a person's
identification, inbound.py) and never block the loop.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from collections import OrderedDict
from typing import Protocol, Union

import msgspec

from connectors.iso20022 import limits
from connectors.iso20022.inbound import OriginalRefs, Passthrough
from switch.core.messages import TransferOutcome

log = logging.getLogger("ponte.iso20022")

_FRAME = struct.Struct("<II")  # payload length, CRC32 of the payload


# -- records ---------------------------------------------------------------------------
# One per change, array_like: never renumber a field, new fields get defaults.


class Seen(msgspec.Struct, tag=1, array_like=True):
    participant_id: int
    biz_msg_id: str
    digest: bytes


class Kept(msgspec.Struct, tag=2, array_like=True):
    """A passthrough under (participant, id), or ("rtp", participant, id) for a pain.013."""

    request_to_pay: bool
    participant_id: int
    id: str
    passthrough: Passthrough
    at_ns: int


class Forgot(msgspec.Struct, tag=3, array_like=True):
    request_to_pay: bool
    participant_id: int
    id: str


class Sent(msgspec.Struct, tag=4, array_like=True):
    """A reference the switch wrote (a MsgId, a long id's reference) -> what it names."""

    reference: str
    participant_id: int
    id: str


class Credit(msgspec.Struct, tag=5, array_like=True):
    """A credit sent to a payee bank: "pacs.008" or "pacs.004"; "" when it is final."""

    payer_participant_id: int
    transfer_id: str
    kind: str
    at_ns: int = 0


class RecallOpened(msgspec.Struct, tag=6, array_like=True):
    biz_msg_id: str  # of the camt.056 the switch forwarded
    requester_id: int
    payee_id: int
    case_id: str
    refs: OriginalRefs


class RecallClosed(msgspec.Struct, tag=7, array_like=True):
    biz_msg_id: str


class ReportEntry(msgspec.Struct, tag=8, array_like=True):
    participant_id: int
    outcome: TransferOutcome


class ReportSent(msgspec.Struct, tag=9, array_like=True):
    participant_id: int
    currency: str
    sequence: int


Record = Union[Seen, Kept, Forgot, Sent, Credit, RecallOpened, RecallClosed, ReportEntry,
               ReportSent]
_DECODER = msgspec.msgpack.Decoder(Record)


class Bounded(OrderedDict):
    """A dict that forgets its oldest entries past `size_max`."""

    def __init__(self, size_max: int) -> None:
        super().__init__()
        self.size_max = size_max

    def put(self, key, value) -> None:
        self[key] = value
        if len(self) > self.size_max:
            self.popitem(last=False)


class RecallCase(msgspec.Struct):
    requester_id: int
    payee_id: int
    case_id: str
    refs: OriginalRefs


class StateUnavailable(Exception):
    """The store could not be written: nothing that depends on it may be taken."""


# -- where the records go -----------------------------------------------------------------


class StateLog(Protocol):
    """Where the store's framed records go, as bytes: the switch's backends implement it
    (switch/store/iso20022_state.py: a file in the data directory, or PostgreSQL when the
    switch keeps its journal or stores there, so a standby that takes over has it). Each
    call is durable when it returns; calls never overlap."""

    async def read(self) -> bytes:
        """Everything appended since the last rewrite, in order."""

    async def cut(self, valid: bytes) -> None:
        """Keep exactly `valid`, a prefix of what `read` gave (a torn tail is dropped)."""

    async def append(self, data: bytes) -> None: ...

    async def rewrite(self, data: bytes) -> None:
        """Replace everything with `data`, atomically."""

    async def close(self) -> None: ...


def _frames(data: bytes, record_bytes_max: int = limits.STATE_RECORD_BYTES_MAX
            ) -> tuple[list[bytes], int]:
    """The payloads of every whole frame, and where the last whole frame ends: a frame
    past its bound, cut short or failing its CRC ends the log there."""
    payloads = []
    offset = 0
    while offset + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, offset)
        end = offset + _FRAME.size + length
        if length > record_bytes_max or end > len(data):
            break
        payload = data[offset + _FRAME.size:end]
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        offset = end
    return payloads, offset


def _frame(record, record_bytes_max: int = limits.STATE_RECORD_BYTES_MAX) -> bytes:
    payload = msgspec.msgpack.encode(record)
    assert len(payload) <= record_bytes_max, len(payload)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


# -- the state -----------------------------------------------------------------------------


class RecordLog:
    """Framed records onto a `StateLog`, several appends per write (group commit, one write
    at a time), rewritten from `live()` when the log has grown past twice what is live (and
    `compact_bytes_min()`). The connector's store and its outbox each have one."""

    def __init__(self, file: StateLog | None, name: str, live, compact_bytes_min,
                 prune=None, on_synced=None,
                 record_bytes_max: int = limits.STATE_RECORD_BYTES_MAX) -> None:
        self.file = file
        self.name = name
        self.record_bytes_max = record_bytes_max
        self._live = live  # () -> iterable of the frames of what is live
        self._compact_bytes_min = compact_bytes_min  # () -> int (read at each write)
        self._prune = prune  # (now_ns) -> None, before a rewrite
        self.on_synced = on_synced  # () -> None, after each write
        self.loaded = False
        self._pending: list[bytes] = []
        self.appended = 0  # records appended since start
        self.synced = 0  # of which on disk
        self._writing: asyncio.Future | None = None
        self._failed: BaseException | None = None
        self.log_bytes = 0
        self.live_bytes = 0  # the log's size after the last rewrite (or load)
        self.records_written = 0
        self.rewrites = 0

    async def load(self) -> list[bytes]:
        """The payloads of every whole record (a torn tail is cut off)."""
        if self.file is None:
            self.loaded = True
            return []
        data = await self.file.read()
        payloads, whole = _frames(data, self.record_bytes_max)
        if whole != len(data):  # a crash during a write: cut the torn tail off
            log.warning("iso20022.%s_tail_cut bytes=%d", self.name, len(data) - whole)
            await self.file.cut(data[:whole])
        self.log_bytes = self.live_bytes = whole
        self.loaded = True
        return payloads

    def append(self, frame: bytes) -> None:
        if self.file is None:
            self.appended += 1
            self.synced = self.appended
            return
        self._pending.append(frame)
        self.appended += 1

    def kick(self) -> None:
        """Start writing what is pending (if nothing is being written)."""
        if self._pending and self._writing is None and self._failed is None \
                and self.loaded:
            self._start_write()

    async def sync(self) -> None:
        """Return once every record appended so far is on disk; StateUnavailable if the
        log cannot be written."""
        if self.file is None:
            return
        target = self.appended
        while self.synced < target:
            if self._failed is not None:
                raise StateUnavailable(str(self._failed))
            if self._writing is None:
                self._start_write()
            # A task that records its result before it ends (never a done-callback, which
            # runs only after this await could already have looped).
            await asyncio.shield(self._writing)

    async def close(self) -> None:
        if self.file is None:
            return
        try:
            await self.sync()
        except StateUnavailable:
            pass  # logged when it failed
        await self.file.close()

    def _start_write(self) -> None:
        assert self._writing is None
        upto = self.appended
        if self.log_bytes > max(2 * self.live_bytes, self._compact_bytes_min()):
            # Everything pending is in memory already: the rewrite carries it.
            self._pending.clear()
            if self._prune is not None:
                self._prune(time.time_ns())
            data = b"".join(self._live())
            write, rewrite = self.file.rewrite, True
        else:
            data = b"".join(self._pending)
            self._pending.clear()
            write, rewrite = self.file.append, False
        self._writing = asyncio.ensure_future(self._write(write, data, upto, rewrite))

    async def _write(self, write, data: bytes, upto: int, rewrite: bool) -> None:
        try:
            await write(data)
        except BaseException as error:  # noqa: BLE001 - every later sync raises it
            self._failed = error
            self._writing = None
            log.error("iso20022.%s_write_failed error=%r", self.name, error)
            return
        self._writing = None
        self.synced = upto
        self.records_written = upto
        if rewrite:
            self.rewrites += 1
            self.log_bytes = self.live_bytes = len(data)
        else:
            self.log_bytes += len(data)
        if self._pending:
            self._start_write()
        if self.on_synced is not None:
            self.on_synced()


class State:
    """The connector's memory (bounded maps) and, with a `log`, what it writes there.
    Without one (tests of the mapping, the bench's stages) it is memory only."""

    def __init__(self, log: StateLog | None, on_synced=None) -> None:
        self.sent: Bounded = Bounded(limits.REFERENCES_MAX)
        self.passthrough: Bounded = Bounded(limits.PASS_THROUGH_MAX)  # key -> (pt, at_ns)
        self.credits: Bounded = Bounded(limits.PASS_THROUGH_MAX)  # key -> (kind, at_ns)
        self.recalls: Bounded = Bounded(limits.RECALLS_MAX)
        self.seen: dict[int, Bounded] = {}
        self.reports: dict[tuple[int, str], list[TransferOutcome]] = {}
        self.report_sequence: dict[tuple[int, str], int] = {}
        self._file = log
        self.log = RecordLog(log, "state", lambda: map(_frame, self._records()),
                             lambda: limits.STATE_COMPACT_BYTES_MIN, self._prune, on_synced)

    @property
    def durable(self) -> bool:
        return self._file is not None

    @property
    def records_written(self) -> int:
        return self.log.records_written

    @property
    def rewrites(self) -> int:
        return self.log.rewrites

    # -- start and stop ------------------------------------------------------------------

    async def load(self, now_ns: int) -> None:
        """Replay the log into memory (before the connector serves anything)."""
        payloads = await self.log.load()
        apply = self._apply
        for payload in payloads:
            apply(_DECODER.decode(payload))
        self._prune(now_ns)
        if self._file is not None:
            log.info("iso20022.state_loaded records=%d bytes=%d passthroughs=%d "
                     "references=%d recalls=%d", len(payloads), self.log.log_bytes,
                     len(self.passthrough), len(self.sent), len(self.recalls))

    async def close(self) -> None:
        await self.log.close()

    def kick(self) -> None:
        """Start writing what is pending: the records of outbound messages need no waiter
        to reach the disk soon."""
        self.log.kick()

    async def sync(self) -> None:
        """Return once every record appended so far is on disk; StateUnavailable if the
        store cannot be written."""
        await self.log.sync()

    # -- changes: memory now, the log at the next write ---------------------------------

    def _append(self, record) -> None:
        self.log.append(_frame(record))

    def see(self, participant_id: int, biz_msg_id: str, digest: bytes) -> None:
        """A message taken (memory only: `log_seen` once it is durable)."""
        window = self.seen.get(participant_id)
        if window is None:
            window = self.seen[participant_id] = Bounded(
                limits.SEEN_MESSAGES_PER_PARTICIPANT_MAX)
        window.put(biz_msg_id, digest)

    def log_seen(self, participant_id: int, biz_msg_id: str, digest: bytes) -> None:
        if self._file is not None:
            self._append(Seen(participant_id, biz_msg_id, digest))

    def window(self, participant_id: int) -> Bounded | dict:
        return self.seen.get(participant_id) or {}

    def keep(self, key: tuple, passthrough: Passthrough, now_ns: int) -> None:
        self.passthrough.put(key, (passthrough, now_ns))
        if self._file is not None:
            self._append(Kept(len(key) == 3, key[-2], key[-1], passthrough, now_ns))

    def kept(self, key: tuple) -> Passthrough | None:
        found = self.passthrough.get(key)
        return found[0] if found is not None else None

    def forget(self, key: tuple) -> Passthrough | None:
        found = self.passthrough.pop(key, None)
        if found is None:
            return None
        if self._file is not None:
            self._append(Forgot(len(key) == 3, key[-2], key[-1]))
        return found[0]

    def remember_sent(self, reference: str, participant_id: int, id_: str) -> None:
        if self.sent.get(reference) == (participant_id, id_):
            return  # a credit re-sent (after a restart): nothing new
        self.sent.put(reference, (participant_id, id_))
        if self._file is not None:
            self._append(Sent(reference, participant_id, id_))

    def credit(self, key: tuple[int, str], kind: str, now_ns: int) -> None:
        found = self.credits.get(key)
        if found is not None and found[0] == kind:
            return
        self.credits.put(key, (kind, now_ns))
        if self._file is not None:
            self._append(Credit(key[0], key[1], kind, now_ns))

    def credit_kind(self, key: tuple[int, str], final: bool) -> str:
        """"pacs.008" or "pacs.004" for a credit the switch sent; forgotten once final."""
        found = self.credits.pop(key, None) if final else self.credits.get(key)
        if found is None:
            return "pacs.008"
        if final and self._file is not None:
            self._append(Credit(key[0], key[1], ""))
        return found[0]

    def open_recall(self, biz_msg_id: str, case: RecallCase) -> None:
        self.recalls.put(biz_msg_id, case)
        if self._file is not None:
            self._append(RecallOpened(biz_msg_id, case.requester_id, case.payee_id,
                                      case.case_id, case.refs))

    def close_recall(self, biz_msg_id: str) -> None:
        if self.recalls.pop(biz_msg_id, None) is not None and self._file is not None:
            self._append(RecallClosed(biz_msg_id))

    def report_entry(self, participant_id: int, outcome: TransferOutcome) -> bool:
        """Add a settled entry to the next camt.052; False (nothing added) when that report
        is full and must go out first."""
        entries = self.reports.setdefault((participant_id, outcome.currency), [])
        if len(entries) >= limits.REPORT_ENTRIES_MAX:
            return False
        entries.append(outcome)
        if self._file is not None:
            self._append(ReportEntry(participant_id, outcome))
        return True

    def take_report(self, participant_id: int, currency: str
                    ) -> tuple[list[TransferOutcome], int] | None:
        """The entries of the next camt.052 and its sequence number, now counted as sent."""
        entries = self.reports.pop((participant_id, currency), None)
        if not entries:
            return None
        sequence = self.report_sequence.get((participant_id, currency), 0) + 1
        self.report_sequence[(participant_id, currency)] = sequence
        if self._file is not None:
            self._append(ReportSent(participant_id, currency, sequence))
        return entries, sequence

    # -- replay ----------------------------------------------------------------------

    def _apply(self, record) -> None:
        kind = type(record)
        if kind is Seen:
            window = self.seen.get(record.participant_id)
            if window is None:
                window = self.seen[record.participant_id] = Bounded(
                    limits.SEEN_MESSAGES_PER_PARTICIPANT_MAX)
            window.put(record.biz_msg_id, record.digest)
        elif kind is Kept:
            self.passthrough.put(_key(record), (record.passthrough, record.at_ns))
        elif kind is Forgot:
            self.passthrough.pop(_key(record), None)
        elif kind is Sent:
            self.sent.put(record.reference, (record.participant_id, record.id))
        elif kind is Credit:
            key = (record.payer_participant_id, record.transfer_id)
            if record.kind:
                self.credits.put(key, (record.kind, record.at_ns))
            else:
                self.credits.pop(key, None)
        elif kind is RecallOpened:
            self.recalls.put(record.biz_msg_id, RecallCase(
                record.requester_id, record.payee_id, record.case_id, record.refs))
        elif kind is RecallClosed:
            self.recalls.pop(record.biz_msg_id, None)
        elif kind is ReportEntry:
            self.reports.setdefault((record.participant_id, record.outcome.currency),
                                    []).append(record.outcome)
        else:
            assert kind is ReportSent, kind
            key = (record.participant_id, record.currency)
            self.reports.pop(key, None)
            self.report_sequence[key] = record.sequence

    def _prune(self, now_ns: int) -> None:
        """Forget passthroughs and credit kinds older than any transfer can live: their
        outcome went out (its Forgot record may have been lost with a crash)."""
        oldest_ns = now_ns - limits.STATE_KEPT_AGE_MS_MAX * 1_000_000
        for table in (self.passthrough, self.credits):
            for key in [key for key, (_, at_ns) in table.items() if at_ns < oldest_ns]:
                del table[key]

    def _records(self):
        """What is live, as records (a rewrite of the log)."""
        for participant_id, window in self.seen.items():
            for biz_msg_id, digest in window.items():
                yield Seen(participant_id, biz_msg_id, digest)
        for key, (passthrough, at_ns) in self.passthrough.items():
            yield Kept(len(key) == 3, key[-2], key[-1], passthrough, at_ns)
        for reference, (participant_id, id_) in self.sent.items():
            yield Sent(reference, participant_id, id_)
        for (payer, transfer_id), (kind, at_ns) in self.credits.items():
            yield Credit(payer, transfer_id, kind, at_ns)
        for biz_msg_id, case in self.recalls.items():
            yield RecallOpened(biz_msg_id, case.requester_id, case.payee_id, case.case_id,
                               case.refs)
        for (participant_id, currency), sequence in self.report_sequence.items():
            yield ReportSent(participant_id, currency, sequence)
        for (participant_id, _currency), entries in self.reports.items():
            for outcome in entries:
                yield ReportEntry(participant_id, outcome)


def _key(record) -> tuple:
    if record.request_to_pay:
        return ("rtp", record.participant_id, record.id)
    return (record.participant_id, record.id)
