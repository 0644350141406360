"""Large files beside a live journal — snapshots, archived segments — written and removed a
step at a time, so the journal's own fdatasync never queues behind hundreds of megabytes.

On ext4 (data=ordered) a journal fdatasync commits the filesystem's journal, which first
writes out the data of every file with blocks allocated in that transaction; on a `discard`
mount the blocks an unlink frees are discarded at that commit too. A 300 MB snapshot
written with a sync every 8 MiB, or an old one removed at once, put up to that much work
ahead of the switch's next fdatasync: payment p99 28-32 ms while a snapshot was written and
38-42 ms in the half second after the old one was removed, against ~9 ms otherwise
(payments at 1,000/s, `ponte bench recovery`'s snapshots under load). Steps of 1 MiB each
synced, and removal by truncation in steps (under a name no reader lists, so a crash midway
leaves nothing that looks like a damaged snapshot or segment), bound what any commit holds.
"""

from __future__ import annotations

import os
import time

STEP_BYTES = 1 << 20
REMOVE_STEP_BYTES = 4 << 20
REMOVE_PAUSE_S = 0.002  # between steps: the journal's commits go in between
REMOVING_SUFFIX = ".removing"


def write_all(fd: int, data, *, sync_every: int = 0, unsynced: int = 0) -> int:
    """Write all of `data`; with `sync_every`, fdatasync each time that many bytes are
    unsynced. Returns the bytes written since the last sync (carry it to the next call)."""
    view = memoryview(data)
    if sync_every and unsynced >= sync_every:
        os.fdatasync(fd)
        unsynced = 0
    while view:
        room = sync_every - unsynced if sync_every else len(view)
        written = os.write(fd, view[:room])
        view = view[written:]
        unsynced += written
        if sync_every and unsynced >= sync_every:
            os.fdatasync(fd)
            unsynced = 0
    return unsynced


def remove_gradually(path: str) -> None:
    """Unlink `path` after truncating it `REMOVE_STEP_BYTES` at a time. It is first renamed
    to a dot-name ending `.removing` (no listing matches it): a crash midway leaves only
    that, which `remove_leftovers` clears."""
    directory, name = os.path.split(path)
    removing = os.path.join(directory, f".{name}{REMOVING_SUFFIX}")
    os.replace(path, removing)
    _truncate_and_unlink(removing)


def remove_leftovers(directory: str) -> None:
    """Finish removals a crash interrupted."""
    for name in os.listdir(directory):
        if name.startswith(".") and name.endswith(REMOVING_SUFFIX):
            _truncate_and_unlink(os.path.join(directory, name))


def _truncate_and_unlink(path: str) -> None:
    """Tolerates a file already gone: a snapshot child of a killed switch may still be
    removing it while the next start finishes the same removal."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        size = os.fstat(fd).st_size
        while size > 0:
            size = max(0, size - REMOVE_STEP_BYTES)
            os.ftruncate(fd, size)
            os.fdatasync(fd)
            time.sleep(REMOVE_PAUSE_S)
    finally:
        os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
