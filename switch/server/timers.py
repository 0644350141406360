"""The core's timers: a heap of (deadline_ns, timer_id) and ONE loop.call_at for the earliest.

The core asks for timers with ArmTimer/CancelTimer commands (re-arming replaces). A firing
goes back through the sequencer's queue as a `TimerFired` event, so it is decided, journaled
and released like any other event. Deadlines are UTC nanoseconds (the core's clock); the
wheel turns them into loop time when it schedules. A late or early firing is harmless: the
core ignores stale ones and re-arms early ones.

Cancellation is lazy (the heap entry stays until it surfaces); the heap is rebuilt when
stale entries outnumber live ones, so memory stays bounded by the live timers. This module
must never decide anything about a transfer.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Callable

from switch.server import limits

# Fire a little late rather than early: a firing before the deadline is wasted work (the
# core re-arms it), and the loop's timer resolution is about a millisecond.
_LATE_BY_S = 0.0005
_COMPACT_SLACK = 1024


class TimerWheel:
    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[int], None],
                 timers_max: int = limits.TIMERS_MAX) -> None:
        self._loop = loop
        self._fire = fire
        self.timers_max = timers_max
        self._deadlines: dict[int, int] = {}
        self._heap: list[tuple[int, int]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._scheduled_ns = 0
        self._stopped = False

    def __len__(self) -> int:
        return len(self._deadlines)

    def arm(self, timer_id: int, deadline_ns: int) -> None:
        # The core bounds its timers by in_flight_max + open requests-to-pay.
        assert len(self._deadlines) <= self.timers_max or timer_id in self._deadlines
        self._deadlines[timer_id] = deadline_ns
        heapq.heappush(self._heap, (deadline_ns, timer_id))
        if len(self._heap) > 2 * len(self._deadlines) + _COMPACT_SLACK:
            self._compact()
        if self._handle is None or deadline_ns < self._scheduled_ns:
            self._schedule()

    def cancel(self, timer_id: int) -> None:
        self._deadlines.pop(timer_id, None)

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _compact(self) -> None:
        self._heap = [(deadline, timer_id) for timer_id, deadline in self._deadlines.items()]
        heapq.heapify(self._heap)

    def _schedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._stopped:
            return
        heap = self._heap
        deadlines = self._deadlines
        while heap and deadlines.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # cancelled or re-armed
        if not heap:
            return
        deadline_ns = heap[0][0]
        delay_s = (deadline_ns - time.time_ns()) / 1e9 + _LATE_BY_S
        self._scheduled_ns = deadline_ns
        self._handle = self._loop.call_at(self._loop.time() + max(delay_s, 0.0), self._run)

    def _run(self) -> None:
        self._handle = None
        now_ns = time.time_ns()
        heap = self._heap
        deadlines = self._deadlines
        while heap and heap[0][0] <= now_ns:
            deadline_ns, timer_id = heapq.heappop(heap)
            if deadlines.get(timer_id) == deadline_ns:
                del deadlines[timer_id]
                self._fire(timer_id)
        self._schedule()
