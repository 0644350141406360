"""The switch's heap in transparent huge pages, so a snapshot's fork copies a 512th of the
page tables.

fork() copies the parent's page tables and takes a reference on every mapped page: with
4 KiB pages that was the whole pause of a snapshot (~14 ms for the ~700 MB heap of full
tables), every payment in flight waiting it out. The same heap in 2 MiB pages forks in
~2.4 ms (measured on that heap, same process, before and after). Python maps its
allocator's arenas itself and the kernel's usual THP mode is `madvise`, so the switch asks:
every anonymous writable mapping is collapsed into huge pages (`MADV_COLLAPSE`, Linux 6.1+:
it works whatever the THP mode but `never`, and leaves the mappings unmarked, so later page
faults never stall on a huge page's compaction). It runs once the listeners are open (after
a start with a recovered heap, or a takeover), in a background thread, one huge page per
call with a pause between: the calls release the GIL, and the sequencer's page faults wait
on at most one huge page's copy. It does not run again after each snapshot: collapsing a
heap that traffic writes at 10,000/s took the payment p99 from ~30 ms to 45-500 ms
(whole ranges per call, or per page with 1-10 ms pauses; `ponte bench e2e`). So the pages
a child shared and the parent then wrote are split back into 4 KiB ones, and later forks
grow slower again, up to the old pause at worst. Where the kernel refuses, nothing
changes, and /health says so (`snapshot.huge_pages.supported`).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import threading
import time

log = logging.getLogger("ponte.server.huge_pages")

HUGE_PAGE_BYTES = 2 << 20
MADV_COLLAPSE = 25
COLLAPSE_PAUSE_S = 0.001  # between two huge pages collapsed: the sequencer runs meanwhile


def _madvise():
    libc = ctypes.CDLL(None, use_errno=True)  # CDLL: the GIL is released during each call
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise


def anonymous_ranges(maps_text: str) -> list[tuple[int, int]]:
    """The 2 MiB-aligned part of every anonymous (or [heap]) writable mapping in a
    /proc/<pid>/maps text that holds at least one huge page."""
    ranges = []
    for line in maps_text.splitlines():
        fields = line.split()
        if len(fields) < 5 or not fields[1].startswith("rw"):
            continue
        if len(fields) >= 6 and fields[5] != "[heap]":  # files, stacks, vdso: not ours
            continue
        low, high = (int(value, 16) for value in fields[0].split("-"))
        low = (low + HUGE_PAGE_BYTES - 1) & ~(HUGE_PAGE_BYTES - 1)
        high &= ~(HUGE_PAGE_BYTES - 1)
        if high - low >= HUGE_PAGE_BYTES:
            ranges.append((low, high))
    return ranges


def anon_huge_bytes() -> int:
    """This process's anonymous memory held in huge pages."""
    try:
        with open("/proc/self/smaps_rollup") as file:
            for line in file:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class HugePages:
    """Collapses the heap into huge pages, one background run at a time."""

    def __init__(self) -> None:
        self.supported: bool | None = None  # None: not tried yet
        self.runs = 0
        self.last_run_s = 0.0
        self.anon_huge_bytes = 0  # after the last run (reading it walks the page tables)
        self._thread: threading.Thread | None = None

    def collapse_soon(self) -> None:
        """Start a run in the background unless one is going or the kernel refused."""
        if self.supported is False or (self._thread is not None and self._thread.is_alive()):
            return
        self._thread = threading.Thread(target=self.collapse, name="huge-pages", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def collapse(self) -> int:
        """One run, in the calling thread: the bytes collapsed into huge pages."""
        started = time.perf_counter()
        try:
            with open("/proc/self/maps") as file:
                ranges = anonymous_ranges(file.read())
            madvise = _madvise()
        except (OSError, AttributeError):
            self.supported = False
            return 0
        collapsed = refused = steps = 0
        for low, high in ranges:
            # One huge page per call, with a pause between: one call over a whole range
            # held the mapping lock while it scanned, and the sequencer's page faults and
            # the allocator's mmap/munmap waited behind it (p99 ~500 ms at 10,000/s).
            for address in range(low, high, HUGE_PAGE_BYTES):
                steps += 1
                if madvise(address, HUGE_PAGE_BYTES, MADV_COLLAPSE) == 0:
                    collapsed += HUGE_PAGE_BYTES
                else:  # EAGAIN, ENOMEM, unmapped meanwhile: the next run tries again
                    refused += ctypes.get_errno() == errno.EINVAL
                time.sleep(COLLAPSE_PAUSE_S)
        if steps and not collapsed and refused == steps:
            self._refused()
            return 0
        self.supported = True
        self.runs += 1
        self.last_run_s = time.perf_counter() - started
        self.anon_huge_bytes = anon_huge_bytes()
        log.info("huge_pages_collapsed ranges=%d bytes=%d anon_huge_bytes=%d seconds=%.3f",
                 len(ranges), collapsed, self.anon_huge_bytes, self.last_run_s)
        return collapsed

    def _refused(self) -> None:
        self.supported = False
        log.warning("huge_pages_unsupported: the kernel refused MADV_COLLAPSE "
                    "(THP disabled, or Linux before 6.1); snapshots fork with 4 KiB page tables")

    def report(self) -> dict:
        return {"supported": self.supported, "runs": self.runs,
                "last_run_s": round(self.last_run_s, 3), "anon_huge_bytes": self.anon_huge_bytes}
