"""The entry log: every committed transfer, appended to a file of the settlement window it
belongs to, so that statements and reconciliations can stream a window's entries however
many there are.

`EntryLog` is one of the core's observers (the server chains it after the outcome archive):
at each COMMITTED transition it reads the transfer's record, the window open now and the
ledger's timestamp of the commit from the core, and appends a fixed header and the
transfer's ids to that window's buffer; a buffer goes to `<dir>/<window id>.entries` when
it passes `ENTRY_BUFFER_BYTES_MAX`, when the currency's next window starts, and before a
statement reads it (`flush`). Beside each file, `<window id>.index` says how many of its
bytes are whole entries and the ledger timestamp of the last.

The log is a function of the journal, kept across restarts so that a recovery from a
snapshot (which replays only the journal after it) finds the entries before it: ledger
timestamps only grow and a replay gives every commit the timestamp it had, so at a
recovery an entry whose timestamp is at or below its file's last is already there and is
not written again, and once the replay is over (`recovered`) whatever a file holds past the
ledger's last timestamp was never made durable and is cut off. Files of windows the core
no longer retains are deleted.

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
INDEX_SUFFIX = ".index"
KIND_PAYMENT = 1
KIND_RETURN = 2
_COMMITTED = TransferState.COMMITTED
# seq, ledger timestamp, decided_at_ns, kind, payer, payee, amount_minor, fee_minor,
# id length, e2e length
_HEADER = struct.Struct("<QQqBIIQQBH")
HEADER_BYTES = _HEADER.size
_INDEX = struct.Struct("<QQ")  # bytes of whole entries, the last one's ledger timestamp


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
    ledger_timestamp: int = 0  # the ledger's timestamp of the commit (replays give the same)


def encode_entry(entry: Entry) -> bytes:
    transfer_id = entry.transfer_id.encode("ascii")  # the Id grammar is ASCII
    end_to_end_id = entry.end_to_end_id.encode("utf-8", "surrogatepass")
    return _HEADER.pack(entry.seq, entry.ledger_timestamp, entry.at_ns, entry.kind,
                        entry.payer_participant_id, entry.payee_participant_id,
                        entry.amount_minor, entry.fee_minor, len(transfer_id),
                        len(end_to_end_id)) + transfer_id + end_to_end_id


class _WindowFile:
    __slots__ = ("window_id", "path", "buffer", "written", "last_timestamp",
                 "buffered_timestamp")

    def __init__(self, window_id: int, path: str, written: int = 0,
                 last_timestamp: int = 0) -> None:
        self.window_id = window_id
        self.path = path
        self.buffer = bytearray()
        self.written = written  # bytes of whole entries in the file
        self.last_timestamp = last_timestamp  # the last entry's, in the file or buffered
        self.buffered_timestamp = last_timestamp


class EntryLog:
    """See the module docstring. `observe` is the core's observer; `bind(core)` before a
    recovery, `recovered()` once its replay is over."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.core = None
        self._current: dict[str, _WindowFile] = {}  # currency -> the window being written
        self._files: dict[int, _WindowFile] = {}  # window id -> its file, written or not
        self.entries_total = 0

    def path(self, window_id: int) -> str:
        return os.path.join(self.directory, f"{window_id}{SUFFIX}")

    def _index_path(self, window_id: int) -> str:
        return os.path.join(self.directory, f"{window_id}{INDEX_SUFFIX}")

    # -- recovery --------------------------------------------------------------------

    def bind(self, core) -> EntryLog:
        """A recovery starts on `core` (again, if an earlier attempt failed): what the
        files hold is read from their indexes; nothing buffered survives."""
        self.core = core
        self._current.clear()
        self._files.clear()
        for path in glob.glob(os.path.join(self.directory, "*" + SUFFIX)):
            name = os.path.basename(path)[:-len(SUFFIX)]
            if not name.isdigit():
                continue
            window_id = int(name)
            written, last_timestamp = self._read_index(window_id, path)
            with open(path, "r+b") as file:  # a crash between a write and its index
                file.truncate(written)
            self._files[window_id] = _WindowFile(window_id, path, written, last_timestamp)
        return self

    def _read_index(self, window_id: int, path: str) -> tuple[int, int]:
        try:
            with open(self._index_path(window_id), "rb") as file:
                written, last_timestamp = _INDEX.unpack(file.read(_INDEX.size))
            if written <= os.path.getsize(path):
                return written, last_timestamp
        except (OSError, struct.error):
            pass
        return _scan(path, None)  # no usable index: the whole entries it holds

    def recovered(self) -> None:
        """The replay is over: cut what a file holds past the ledger's last timestamp (it
        was written before a crash and never made durable), and forget windows the core
        does not hold."""
        self.flush()
        last = self.core.ledger.last_timestamp
        for window_id, window_file in list(self._files.items()):
            if self.core.settlement_window(window_id) is None:
                self._forget(window_id)
            elif window_file.last_timestamp > last:
                written, kept = _scan(window_file.path, last)
                with open(window_file.path, "r+b") as file:
                    file.truncate(written)
                window_file.written = written
                window_file.last_timestamp = window_file.buffered_timestamp = kept
                self._write_index(window_file)
                log.info("event=entry_log_cut window_id=%d bytes=%d", window_id, written)

    def _forget(self, window_id: int) -> None:
        self._files.pop(window_id, None)
        for path in (self.path(window_id), self._index_path(window_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

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
        timestamp = core.ledger.last_timestamp  # the commit's post (or post fee) leg
        if timestamp <= current.buffered_timestamp:
            return  # a replay over what the file holds already
        event = record.event
        if type(event) is TransferRequested:
            kind, end_to_end_id = KIND_PAYMENT, event.request.end_to_end_id
        else:
            kind, end_to_end_id = KIND_RETURN, ""
        tid = transfer_id.encode("ascii")
        e2e = end_to_end_id.encode("utf-8", "surrogatepass")
        buffer = current.buffer
        buffer += _HEADER.pack(record.seq, timestamp, now_ns, kind, payer_participant_id,
                               record.payee_participant_id, record.amount_minor,
                               record.fee_minor, len(tid), len(e2e))
        buffer += tid
        buffer += e2e
        current.buffered_timestamp = timestamp
        self.entries_total += 1
        if len(buffer) >= limits.ENTRY_BUFFER_BYTES_MAX:
            self._write(current)

    # Final states only: the core does not call it for the others (switch/core/machine.py).
    observe.finals_only = True

    def _start(self, currency: str, window_id: int) -> _WindowFile:
        """The currency's next window receives its first entry: finish the previous file
        and forget the files of windows the core no longer retains."""
        previous = self._current.get(currency)
        if previous is not None:
            self._write(previous)
        for old in [w for w in self._files if self.core.settlement_window(w) is None]:
            self._forget(old)
        current = self._files.get(window_id)
        if current is None:
            current = self._files[window_id] = _WindowFile(window_id, self.path(window_id))
        self._current[currency] = current
        return current

    def _write(self, window_file: _WindowFile) -> None:
        if not window_file.buffer:
            return
        with open(window_file.path, "ab") as file:
            file.write(window_file.buffer)
        window_file.written += len(window_file.buffer)
        window_file.last_timestamp = window_file.buffered_timestamp
        window_file.buffer.clear()
        self._write_index(window_file)

    def _write_index(self, window_file: _WindowFile) -> None:
        path = self._index_path(window_file.window_id)
        with open(path + ".tmp", "wb") as file:
            file.write(_INDEX.pack(window_file.written, window_file.last_timestamp))
        os.replace(path + ".tmp", path)

    def flush(self) -> None:
        """Write every buffer (before a statement reads the files)."""
        for window_file in self._current.values():
            self._write(window_file)

    def before_snapshot(self) -> list[str]:
        """A snapshot is about to be taken: write every buffer now (page cache, cheap) and
        name the files that must reach the disk before the snapshot does. A recovery from
        that snapshot replays only the journal after it, so the entries before it must be
        durable first: the snapshot's writer fsyncs these paths (`durable_paths`), then
        writes the snapshot. Without it a power cut could keep the snapshot and lose the
        entries it covers, and statements would silently miss them."""
        self.flush()
        paths = []
        for window_file in self._current.values():
            if os.path.exists(window_file.path):
                paths.append(window_file.path)
                paths.append(self._index_path(window_file.window_id))
        return paths

    def size(self, window_id: int) -> int:
        """Bytes of `window_id`'s entries on disk (after `flush`): a reader reads only up to
        this, so entries appended while it reads are not half-read."""
        window_file = self._files.get(window_id)
        return 0 if window_file is None else window_file.written

    def close(self) -> None:
        self.flush()


def _scan(path: str, through_timestamp: int | None) -> tuple[int, int]:
    """(bytes, last ledger timestamp) of the whole entries at the start of a file, up to the
    last whose timestamp is at most `through_timestamp` (None: all of them)."""
    written = last = 0
    for offset, timestamp in _offsets(path):
        if through_timestamp is not None and timestamp > through_timestamp:
            break
        written, last = offset, timestamp
    return written, last


def _offsets(path: str) -> Iterator[tuple[int, int]]:
    """(end offset, ledger timestamp) of each whole entry of a file."""
    unpack_from = _HEADER.unpack_from
    size = HEADER_BYTES
    base = 0
    with open(path, "rb") as file:
        pending = b""
        while chunk := file.read(limits.ENTRY_READ_CHUNK_BYTES):
            data = pending + chunk if pending else chunk
            offset = 0
            length = len(data)
            while offset + size <= length:
                fields = unpack_from(data, offset)
                end = offset + size + fields[8] + fields[9]
                if end > length:
                    break
                yield base + end, fields[1]
                offset = end
            base += offset
            pending = data[offset:]


def read_entries(path: str, participant_id: int | None, end_offset: int) -> Iterator[Entry]:
    """The entries of one window's file up to `end_offset`, in commit order; only those
    `participant_id` paid or received when it is given. One read chunk in memory."""
    for raw in read_raw(path, participant_id, end_offset):
        yield Entry(*raw)


def read_raw(path: str, participant_id: int | None, end_offset: int) -> Iterator[tuple]:
    """`read_entries` as plain tuples in Entry's field order, without the ledger timestamp
    (statements read millions)."""
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
                (seq, _timestamp, at_ns, kind, payer, payee, amount, fee, id_length,
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
