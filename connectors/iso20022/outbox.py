"""The ISO 20022 connector's outbox: every message the switch owes a bank, kept durably from
the moment it is written until the bank acknowledges it, so that a restart (or a standby
taking over) delivers what was owed, in order, and nothing twice.

A message is appended (`add`) when the core releases what it answers, and the transport
POSTs it only once its record is on disk (`RecordLog.synced`, the same group commit as the
connector's store: one write and fdatasync for every message of a tick). The bank's 2xx,
or its refusal (a 4xx, which no resend would change), marks every message of the request
done (`done`): a `Done` record, written with the next group, no waiter. After a crash the
log replays into the lanes (`load`) and those messages go out first, with their first
BizMsgIdr and content, flagged AppHdr/PssblDplct: a bank that had applied one before the
crash sees its BizMsgIdr again and acknowledges it without applying it twice (exactly once
by BizMsgIdr, the transport's contract). A message the core writes again after a restart (a credit re-sent for a transfer
still waiting) is not queued twice while the first is owed.

Bounded like the lanes it mirrors (`DeliveryPolicy.queue_max` messages a bank). The log
lives beside the store (`<data_dir>/iso20022/outbox.log`, or the `iso20022_outbox` table
when the switch keeps its journal or stores in PostgreSQL) and is rewritten from what is
owed when it has grown past twice that and OUTBOX_COMPACT_BYTES_MIN, which is cheap: each
owed message keeps its frame.

It must never interpret a message and never block the loop.
"""

from __future__ import annotations

import logging
from typing import Union

import msgspec

from connectors.iso20022 import limits
from connectors.iso20022.outbound import Written
from connectors.iso20022.state import RecordLog, StateLog, _frame

log = logging.getLogger("ponte.iso20022")


class Queued(msgspec.Struct, tag=1, array_like=True):
    """A message owed to a bank: its place in the bank's lane, id, definition and bytes."""

    participant_id: int
    sequence: int
    biz_msg_id: str
    definition: str
    body: bytes


class Done(msgspec.Struct, tag=2, array_like=True):
    """The bank acknowledged (or refused) every message of its lane up to `sequence`."""

    participant_id: int
    sequence: int


_DECODER = msgspec.msgpack.Decoder(Union[Queued, Done])


class Owed:
    """One message in a lane: its sequence, its record's place in the log (it may be POSTed
    once the log has synced that far) and the message."""

    __slots__ = ("sequence", "index", "written", "frame", "after")

    def __init__(self, sequence: int, index: int, written: Written, frame: bytes) -> None:
        self.sequence = sequence
        self.index = index
        self.written = written
        self.frame = frame
        self.after = 0  # the connector's store: synced this far before it goes


class Outbox:
    """Every bank's owed messages, in order (`lanes`), and the log they are kept in."""

    def __init__(self, file: StateLog | None, on_synced=None) -> None:
        self.lanes: dict[int, dict[int, Owed]] = {}  # participant -> sequence -> owed
        self._ids: dict[int, set[str]] = {}  # participant -> BizMsgIdrs owed
        self._next: dict[int, int] = {}  # participant -> last sequence given
        self.durable = file is not None
        self.log = RecordLog(file, "outbox", self._live,
                             lambda: limits.OUTBOX_COMPACT_BYTES_MIN, None, on_synced,
                             limits.OUTBOX_RECORD_BYTES_MAX)
        self.resent_skipped_total = 0  # messages written again while the first was owed

    # -- start and stop ------------------------------------------------------------------

    async def load(self) -> None:
        """Replay the log: what is still owed, lane by lane, in order."""
        payloads = await self.log.load()
        for payload in payloads:
            record = _DECODER.decode(payload)
            if type(record) is Queued:
                written = Written(record.biz_msg_id, record.definition,
                                  record.participant_id, record.body)
                self._put(record.participant_id, record.sequence, 0, written,
                          _frame(record, limits.OUTBOX_RECORD_BYTES_MAX))
            else:
                self._done(record.participant_id, record.sequence)
        if self.durable:
            log.info("iso20022.outbox_loaded records=%d bytes=%d owed=%d", len(payloads),
                     self.log.log_bytes, self.owed)

    async def close(self) -> None:
        await self.log.close()

    # -- changes --------------------------------------------------------------------------

    def owes(self, participant_id: int, biz_msg_id: str) -> bool:
        ids = self._ids.get(participant_id)
        return ids is not None and biz_msg_id in ids

    def add(self, written: Written) -> Owed | None:
        """Owe `written` to its bank (appended to the log); None when the same BizMsgIdr is
        owed already (written again after a restart: the first goes)."""
        participant_id = written.participant_id
        if self.owes(participant_id, written.biz_msg_id):
            self.resent_skipped_total += 1
            return None
        sequence = self._next.get(participant_id, 0) + 1
        frame = b""
        if self.durable:
            frame = _frame(Queued(participant_id, sequence, written.biz_msg_id,
                                  written.definition, written.body),
                           limits.OUTBOX_RECORD_BYTES_MAX)
        self.log.append(frame)
        return self._put(participant_id, sequence, self.log.appended, written, frame)

    def done(self, participant_id: int, sequence: int) -> None:
        """The bank has every message of its lane up to `sequence`."""
        if self._done(participant_id, sequence) and self.durable:
            self.log.append(_frame(Done(participant_id, sequence)))

    def _put(self, participant_id: int, sequence: int, index: int, written: Written,
             frame: bytes) -> Owed:
        owed = Owed(sequence, index, written, frame)
        lane = self.lanes.get(participant_id)
        if lane is None:
            lane = self.lanes[participant_id] = {}
            self._ids[participant_id] = set()
        lane[sequence] = owed
        self._ids[participant_id].add(written.biz_msg_id)
        if sequence > self._next.get(participant_id, 0):
            self._next[participant_id] = sequence
        return owed

    def _done(self, participant_id: int, sequence: int) -> bool:
        lane = self.lanes.get(participant_id)
        if not lane:
            return False
        ids = self._ids[participant_id]
        removed = False
        while lane:
            first = next(iter(lane))
            if first > sequence:
                break
            ids.discard(lane.pop(first).written.biz_msg_id)
            removed = True
        return removed

    # -- what the log is rewritten from ----------------------------------------------------

    def _live(self):
        for lane in self.lanes.values():
            for owed in lane.values():
                yield owed.frame

    @property
    def owed(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())

