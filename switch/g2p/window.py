"""The engine's window: how many batch rows may be in flight at once.

A row in flight sits in some queue — the switch's inbound queue, a tick, the payee's
connection, the journal's next commit — and a live payment waits in the same queues. More
rows in flight than the switch and the payees need to stay busy add no throughput, only
waiting, for the batch and for everyone else. So the window follows the time rows take from
submission to their final outcome (their round trip), as TCP Vegas does:

- every `CONTROL_INTERVAL_S`, with at least `CONTROL_SAMPLES_MIN` paid rows, the interval's
  mean round trip is compared with the base: the lowest interval mean of the last
  `BASE_INTERVALS` intervals (so a payee that became slower for good becomes the base);
- above `base * QUEUE_FACTOR + QUEUE_SLACK_S`, a queue is building: the window shrinks by a
  fifth;
- otherwise, if the engine used at least three quarters of it, it grows by an eighth;
- a row whose payee did not answer in time halves it (at most once every
  `EXPIRY_CUT_INTERVAL_S`): slow payees are sent fewer rows at once instead of having them
  expire.

It stays within [`minimum`, `maximum`] (`WINDOW_ROWS_MIN`, `in_flight_rows_max`) and starts at
the minimum. It reads no clock: callers pass monotonic seconds, so tests drive it.
"""

from __future__ import annotations

from collections import deque

CONTROL_INTERVAL_S = 0.1
CONTROL_SAMPLES_MIN = 16
BASE_INTERVALS = 50  # 5 s of intervals
QUEUE_FACTOR = 1.25
QUEUE_SLACK_S = 0.001
SHRINK_DIVISOR = 5
GROW_DIVISOR = 8
EXPIRY_CUT_INTERVAL_S = 1.0


class Window:
    __slots__ = ("minimum", "maximum", "size", "expiry_cuts", "_interval_started",
                 "_rtt_sum", "_rtt_count", "_used_max", "_means", "_cut_at")

    def __init__(self, minimum: int, maximum: int, now: float) -> None:
        assert 1 <= maximum
        self.minimum = min(minimum, maximum)
        self.maximum = maximum
        self.size = self.minimum
        self.expiry_cuts = 0
        self._interval_started = now
        self._rtt_sum = 0.0
        self._rtt_count = 0
        self._used_max = 0
        self._means: deque[float] = deque(maxlen=BASE_INTERVALS)
        self._cut_at = float("-inf")

    def used(self, in_flight: int) -> None:
        """The engine has `in_flight` rows out now (after a submission step)."""
        if in_flight > self._used_max:
            self._used_max = in_flight

    def paid(self, round_trip_s: float, now: float) -> None:
        """A row came back paid `round_trip_s` after it was submitted."""
        self._rtt_sum += round_trip_s
        self._rtt_count += 1
        if now - self._interval_started >= CONTROL_INTERVAL_S:
            self._control(now)

    def expired(self, now: float) -> None:
        """A row's payee did not answer before its transfer expired."""
        if now - self._cut_at >= EXPIRY_CUT_INTERVAL_S:
            self._cut_at = now
            self.size = max(self.minimum, self.size // 2)
            self.expiry_cuts += 1

    def _control(self, now: float) -> None:
        count = self._rtt_count
        if count >= CONTROL_SAMPLES_MIN:
            mean = self._rtt_sum / count
            self._means.append(mean)
            base = min(self._means)
            if mean > base * QUEUE_FACTOR + QUEUE_SLACK_S:
                self.size = max(self.minimum, self.size - max(1, self.size // SHRINK_DIVISOR))
            elif self._used_max * 4 >= self.size * 3:
                self.size = min(self.maximum, self.size + max(1, self.size // GROW_DIVISOR))
        self._interval_started = now
        self._rtt_sum = 0.0
        self._rtt_count = 0
        self._used_max = 0


__all__ = ["Window"]
