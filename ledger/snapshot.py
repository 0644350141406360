"""Ledger snapshots on local files: the whole ledger state at one journal position, written
atomically, so recovery replays only the records after it.

A snapshot file is a 112-byte header and the bytes of `ledger.snapshot()` (the state, laid
out in `ledger/formats.py`):

    offset size field
         0    4 magic b"PSNP"
         4    2 format version (u16, 1)
         6    2 reserved, zero
         8    8 journal sequence it covers (u64): the state after applying records 1..n
        16    8 journal byte offset just after record n (where replay starts reading)
        24    8 journal byte offset where record n starts (re-verified before trusting 16)
        32   32 hash of journal record n (the chain link recovery checks)
        64    8 state length in bytes (u64)
        72   32 SHA-256 of the state bytes
       104    4 CRC-32 of bytes 0..103
       108    4 reserved, zero

It is written to a temporary name, fsynced, renamed into place, and the directory fsynced:
a crash leaves either the old set of snapshots or the new one, never half a file under a
snapshot's name. A damaged snapshot is skipped with a warning in favour of an older one.
This module must never describe a journal position that is not durable yet: the caller
commits first (DurableLedger.snapshot enforces it).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import zlib

import msgspec

from ledger.journal_files import STEP_BYTES, remove_gradually, remove_leftovers, write_all
from ledger.journal_format import JournalPosition
from ledger.journal_limits import SNAPSHOT_BYTES_MAX, SNAPSHOTS_RETAINED_MAX

logger = logging.getLogger("ponte.ledger.snapshot")

SNAPSHOT_MAGIC = b"PSNP"
SNAPSHOT_VERSION = 1
SNAPSHOT_HEADER_STRUCT = struct.Struct("<4sHHQQQ32sQ32s")
SNAPSHOT_CRC_STRUCT = struct.Struct("<II")
SNAPSHOT_HEADER_BYTES = SNAPSHOT_HEADER_STRUCT.size + SNAPSHOT_CRC_STRUCT.size
SNAPSHOT_NAME = re.compile(r"^snapshot-(\d{20})\.psnap$")

assert SNAPSHOT_HEADER_STRUCT.size == 104
assert SNAPSHOT_HEADER_BYTES == 112


class SnapshotError(Exception):
    """A snapshot could not be written or does not fit the journal it claims to cover."""


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    position: JournalPosition
    state: bytes
    state_hash: bytes
    source: str  # file path, or "postgresql:<journal name>"


def state_hash(state: bytes) -> bytes:
    return hashlib.sha256(state).digest()


def encode_snapshot_header(position: JournalPosition, state: bytes) -> bytes:
    header = SNAPSHOT_HEADER_STRUCT.pack(
        SNAPSHOT_MAGIC, SNAPSHOT_VERSION, 0, position.sequence, position.offset,
        position.record_offset, position.record_hash, len(state), state_hash(state),
    )
    return header + SNAPSHOT_CRC_STRUCT.pack(zlib.crc32(header), 0)


def decode_snapshot(data: bytes, source: str) -> Snapshot | str:
    """The snapshot in `data`, or the reason it is not a valid one."""
    if len(data) < SNAPSHOT_HEADER_BYTES:
        return "shorter than its header"
    (magic, version, reserved, sequence, offset, record_offset, record_hash, state_bytes,
     expected_hash) = SNAPSHOT_HEADER_STRUCT.unpack_from(data, 0)
    crc, reserved_2 = SNAPSHOT_CRC_STRUCT.unpack_from(data, SNAPSHOT_HEADER_STRUCT.size)
    if magic != SNAPSHOT_MAGIC:
        return "bad magic"
    if version != SNAPSHOT_VERSION or reserved != 0 or reserved_2 != 0:
        return f"unknown version={version}"
    if crc != zlib.crc32(data[:SNAPSHOT_HEADER_STRUCT.size]):
        return "bad header checksum"
    if state_bytes > SNAPSHOT_BYTES_MAX or len(data) != SNAPSHOT_HEADER_BYTES + state_bytes:
        return f"length {len(data)} does not match state_bytes={state_bytes}"
    state = data[SNAPSHOT_HEADER_BYTES:]
    if state_hash(state) != expected_hash:
        return "state hash mismatch"
    return Snapshot(
        position=JournalPosition(sequence=sequence, record_hash=record_hash, offset=offset,
                                 record_offset=record_offset),
        state=state, state_hash=expected_hash, source=source,
    )


class FileSnapshotStore:
    """Snapshots of one ledger in one directory, newest kept, older ones pruned."""

    def __init__(self, directory: str, *, retained_max: int = SNAPSHOTS_RETAINED_MAX) -> None:
        assert retained_max >= 1
        self.directory = directory
        self.retained_max = retained_max
        os.makedirs(directory, exist_ok=True)
        remove_leftovers(directory)

    def _paths_newest_first(self) -> list[tuple[int, str]]:
        found = []
        for name in os.listdir(self.directory):
            match = SNAPSHOT_NAME.match(name)
            if match is not None:
                found.append((int(match.group(1)), os.path.join(self.directory, name)))
        found.sort(reverse=True)
        return found

    def write(self, state: bytes, position: JournalPosition) -> str:
        """Store `state` as covering journal `position` (durable); return its path."""
        if position.sequence < 0 or len(position.record_hash) != 32:
            raise SnapshotError(f"invalid journal position {position}")
        if len(state) > SNAPSHOT_BYTES_MAX:
            raise SnapshotError(f"state of {len(state)} bytes exceeds {SNAPSHOT_BYTES_MAX}")
        name = f"snapshot-{position.sequence:020d}.psnap"
        path = os.path.join(self.directory, name)
        temporary = os.path.join(self.directory, f".{name}.{os.getpid()}.tmp")
        header = encode_snapshot_header(position, state)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            unsynced = write_all(fd, header)
            write_all(fd, state, sync_every=STEP_BYTES, unsynced=unsynced)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(temporary)
            raise
        os.close(fd)
        os.replace(temporary, path)
        directory_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory_fd)
        finally:
            os.close(directory_fd)
        logger.info("snapshot_written path=%s sequence=%d state_bytes=%d",
                    path, position.sequence, len(state))
        self._prune()
        return path

    def _prune(self) -> None:
        for _, path in self._paths_newest_first()[self.retained_max:]:
            remove_gradually(path)

    def load_newest(self) -> Snapshot | None:
        """The newest snapshot that verifies; damaged ones are skipped with a warning."""
        for _, path in self._paths_newest_first():
            with open(path, "rb") as file:
                data = file.read()
            snapshot = decode_snapshot(data, path)
            if isinstance(snapshot, Snapshot):
                return snapshot
            logger.warning("snapshot_skipped path=%s reason=%r", path, snapshot)
        return None

    def snapshots(self):
        """(path, Snapshot or the reason it is not valid) for every snapshot file, newest
        first: recovery tries them in turn and says loudly which it skipped."""
        for _, path in self._paths_newest_first():
            with open(path, "rb") as file:
                data = file.read()
            yield path, decode_snapshot(data, path)

    def sequences(self) -> list[int]:
        return [sequence for sequence, _ in self._paths_newest_first()]
