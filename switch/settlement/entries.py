"""The entry log: every committed transfer, appended to a file of the settlement window it
belongs to, so that statements and reconciliations can stream a window's entries however
many there are.

`EntryLog` is one of the core's observers (the server chains it after the outcome archive):
at each COMMITTED transition it reads the transfer's record and the window open now from the
core, and appends a fixed header and the transfer's ids to that window's buffer; a buffer
goes to `<dir>/<window id>.entries` when it passes `ENTRY_BUFFER_BYTES_MAX`, when the
currency's next window starts, and before a statement reads it (`flush`). The log is a
function of the journal: the directory is emptied when the log is built and refilled by the
replay of the journal at start, so a crash can never leave it ahead of or behind the
journal. Files of windows the core no longer retains are deleted.

`read_entries(path, participant_id, end_offset)` streams one window's entries, in commit
order, without holding more than one read chunk. It must never be called on the event loop
for a large window (statements run it in a thread) and never change the core.
"""

from __future__ import annotations

import glob
import logging
import os
import struct
from typing import Iterator, NamedTuple

from switch.core.messages import TransferRequested
from switch.core.results import TransferState
from switch.settlement import limits

log = logging.getLogger("ponte.settlement")

SUFFIX = ".entries"
KIND_PAYMENT = 1
KIND_RETURN = 2
_COMMITTED = TransferState.COMMITTED
# seq, decided_at_ns, kind, payer, payee, amount_minor, fee_minor, id length, e2e length
_HEADER = struct.Struct("<QqBIIQQBH")
HEADER_BYTES = _HEADER.size


class Entry(NamedTuple):
    """One committed transfer of a window, as the log keeps it."""

    seq: int  # the core's sequence number: its ledger legs are seq << 3 | leg
    at_ns: int  # when it committed (UTC ns)
    kind: int  # KIND_PAYMENT or KIND_RETURN
    payer_participant_id: int
    payee_participant_id: int
    amount_minor: int
    fee_minor: int
    transfer_id: str
    end_to_end_id: str


def encode_entry(entry: Entry) -> bytes:
    transfer_id = entry.transfer_id.encode("ascii")  # the Id grammar is ASCII
    end_to_end_id = entry.end_to_end_id.encode("utf-8", "surrogatepass")
    return _HEADER.pack(entry.seq, entry.at_ns, entry.kind, entry.payer_participant_id,
                        entry.payee_participant_id, entry.amount_minor, entry.fee_minor,
                        len(transfer_id), len(end_to_end_id)) + transfer_id + end_to_end_id


class _WindowFile:
    __slots__ = ("window_id", "path", "buffer", "written")

    def __init__(self, window_id: int, path: str) -> None:
        self.window_id = window_id
        self.path = path
        self.buffer = bytearray()
        self.written = 0  # bytes in the file


class EntryLog:
    """See the module docstring. `observe` is the core's observer; `bind(core)` first."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        for path in glob.glob(os.path.join(directory, "*" + SUFFIX)):
            os.unlink(path)  # rebuilt by the replay of the journal
        self.core = None
        self._current: dict[str, _WindowFile] = {}  # currency -> the window being written
        self._sizes: dict[int, int] = {}  # window id -> bytes in its (finished) file
        self.entries_total = 0

    def bind(self, core) -> EntryLog:
        self.core = core
        return self

    def path(self, window_id: int) -> str:
        return os.path.join(self.directory, f"{window_id}{SUFFIX}")

    # -- writing (the event loop, inside a core step) ----------------------------------

    def observe(self, payer_participant_id: int, transfer_id: str, state: TransferState,
                now_ns: int) -> None:
        if state is not _COMMITTED:
            return
        core = self.core
        record = core.transfer_record(payer_participant_id, transfer_id)
        currency = record.currency
        window_id = core.open_window_id(currency)
        current = self._current.get(currency)
        if current is None or current.window_id != window_id:
            current = self._start(currency, window_id)
        event = record.event
        if type(event) is TransferRequested:
            kind, end_to_end_id = KIND_PAYMENT, event.request.end_to_end_id
        else:
            kind, end_to_end_id = KIND_RETURN, ""
        tid = transfer_id.encode("ascii")
        e2e = end_to_end_id.encode("utf-8", "surrogatepass")
        buffer = current.buffer
        buffer += _HEADER.pack(record.seq, now_ns, kind, payer_participant_id,
                               record.payee_participant_id, record.amount_minor,
                               record.fee_minor, len(tid), len(e2e))
        buffer += tid
        buffer += e2e
        self.entries_total += 1
        if len(buffer) >= limits.ENTRY_BUFFER_BYTES_MAX:
            self._write(current)

    def _start(self, currency: str, window_id: int) -> _WindowFile:
        """The currency's next window receives its first entry: finish the previous file
        and forget the files of windows the core no longer retains."""
        previous = self._current.get(currency)
        if previous is not None:
            self._write(previous)
            self._sizes[previous.window_id] = previous.written
        for old in [w for w in self._sizes if self.core.settlement_window(w) is None]:
            del self._sizes[old]
            try:
                os.unlink(self.path(old))
            except FileNotFoundError:
                pass
        current = self._current[currency] = _WindowFile(window_id, self.path(window_id))
        return current

    def _write(self, window_file: _WindowFile) -> None:
        if not window_file.buffer:
            return
        with open(window_file.path, "ab") as file:
            file.write(window_file.buffer)
        window_file.written += len(window_file.buffer)
        window_file.buffer.clear()

    def flush(self) -> None:
        """Write every buffer (before a statement reads the files)."""
        for window_file in self._current.values():
            self._write(window_file)

    def size(self, window_id: int) -> int:
        """Bytes of `window_id`'s entries on disk (after `flush`): a reader reads only up to
        this, so entries appended while it reads are not half-read."""
        for window_file in self._current.values():
            if window_file.window_id == window_id:
                return window_file.written
        return self._sizes.get(window_id, 0)

    def close(self) -> None:
        self.flush()


def read_entries(path: str, participant_id: int | None, end_offset: int) -> Iterator[Entry]:
    """The entries of one window's file up to `end_offset`, in commit order; only those
    `participant_id` paid or received when it is given. One read chunk in memory."""
    for raw in read_raw(path, participant_id, end_offset):
        yield Entry(*raw)


def read_raw(path: str, participant_id: int | None, end_offset: int) -> Iterator[tuple]:
    """`read_entries` as plain tuples in Entry's field order (statements read millions)."""
    if end_offset <= 0:
        return
    unpack_from = _HEADER.unpack_from
    size = HEADER_BYTES
    with open(path, "rb") as file:
        pending = b""
        remaining = end_offset
        while remaining > 0:
            chunk = file.read(min(limits.ENTRY_READ_CHUNK_BYTES, remaining))
            if not chunk:
                raise ValueError(f"{path}: shorter than {end_offset} bytes")
            remaining -= len(chunk)
            data = pending + chunk if pending else chunk
            offset = 0
            length = len(data)
            while offset + size <= length:
                (seq, at_ns, kind, payer, payee, amount, fee, id_length,
                 e2e_length) = unpack_from(data, offset)
                start = offset + size
                end = start + id_length + e2e_length
                if end > length:
                    break
                if participant_id is None or payer == participant_id or payee == participant_id:
                    yield (seq, at_ns, kind, payer, payee, amount, fee,
                           data[start:start + id_length].decode("ascii"),
                           data[start + id_length:end].decode("utf-8", "surrogatepass")
                           if e2e_length else "")
                offset = end
            pending = data[offset:]
        if pending:
            raise ValueError(f"{path}: a partial entry at its end")
