"""A bounded trail of every transfer's state changes, and the counters the live overview reads.

`TransferTrail` is a `SwitchCore` observer (`SwitchCore(config, ledger, observer=trail)`):
the core calls it on every state change with the transfer's key, the new state and `now_ns`.
It keeps the steps of the most recent `transfers_max` transfers (the oldest is forgotten
first) and counts final outcomes by result with an end-to-end latency histogram. The server
may also `note` message events (e.g. when an outcome was released after group commit).

It runs inside `core.step`, on the payment path: each call is a dict lookup and an append,
never I/O, never a log line, never an exception for a transfer it does not know.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Callable

from switch.admin import limits
from switch.core.results import Result, TransferState

NS_PER_MS = 1_000_000

# Latency bucket upper bounds in ms: log-spaced, 0.1 ms .. 60 s (the last bucket is open).
LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(
    round(0.1 * 1.25 ** index, 4) for index in range(0, 60) if 0.1 * 1.25 ** index <= 60_000
)
LATENCY_BOUNDS_NS: tuple[int, ...] = tuple(int(bound * NS_PER_MS) for bound in LATENCY_BOUNDS_MS)
LATENCY_BUCKETS = len(LATENCY_BOUNDS_NS) + 1

_FINAL = {TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED}
_STATE_NAMES = {state: state.name.lower() for state in TransferState}

Step = tuple[int, str, str]  # (at_ns, kind, name)


class TransferTrail:
    """Observer + bounded per-transfer steps + outcome counters. `result_of(payer, id)`
    gives a final transfer's Result (the core's `transfer_outcome`); set by `attach`."""

    def __init__(self, transfers_max: int = limits.TIMELINE_TRANSFERS_MAX):
        assert transfers_max >= 1
        self.transfers_max = transfers_max
        self._steps: dict[tuple[int, str], list[Step]] = {}
        self._result_of: Callable[[int, str], int] | None = None
        self.finals_total = 0
        self.committed_total = 0
        self.by_result: dict[int, int] = {}
        self.latency_counts = [0] * LATENCY_BUCKETS  # end to end: received -> final

    def attach(self, core) -> None:
        """Read final results from `core` (call once the core exists)."""

        def result_of(payer_participant_id: int, transfer_id: str) -> int:
            outcome = core.transfer_outcome(payer_participant_id, transfer_id)
            return int(outcome.result) if outcome is not None else int(Result.OK)

        self._result_of = result_of

    def __call__(self, payer_participant_id: int, transfer_id: str, state: TransferState,
                 now_ns: int) -> None:
        key = (payer_participant_id, transfer_id)
        steps = self._steps.get(key)
        if steps is None:
            steps = []
            self._steps[key] = steps
            if len(self._steps) > self.transfers_max:
                del self._steps[next(iter(self._steps))]
        if len(steps) < limits.TIMELINE_STEPS_MAX:
            steps.append((now_ns, "state", _STATE_NAMES[state]))
        if state in _FINAL:
            self.finals_total += 1
            if state == TransferState.COMMITTED:
                self.committed_total += 1
            result = int(Result.OK) if state == TransferState.COMMITTED else (
                self._result_of(payer_participant_id, transfer_id) if self._result_of else -1)
            self.by_result[result] = self.by_result.get(result, 0) + 1
            latency_ns = now_ns - steps[0][0]
            self.latency_counts[bisect_left(LATENCY_BOUNDS_NS, latency_ns)] += 1

    def note(self, payer_participant_id: int, transfer_id: str, name: str, now_ns: int) -> None:
        """A message event the server saw for a transfer it still remembers."""
        steps = self._steps.get((payer_participant_id, transfer_id))
        if steps is not None and len(steps) < limits.TIMELINE_STEPS_MAX:
            steps.append((now_ns, "message", name))

    def steps(self, payer_participant_id: int, transfer_id: str) -> list[Step]:
        return list(self._steps.get((payer_participant_id, transfer_id), ()))

    def received_ns(self, payer_participant_id: int, transfer_id: str) -> int:
        steps = self._steps.get((payer_participant_id, transfer_id))
        return steps[0][0] if steps else 0

    def counters(self) -> dict:
        return {
            "finals_total": self.finals_total,
            "committed_total": self.committed_total,
            "by_result": dict(self.by_result),
            "latency_bounds_ms": LATENCY_BOUNDS_MS,
            "latency_counts": list(self.latency_counts),
        }

    def __len__(self) -> int:
        return len(self._steps)


def chain(*observers) -> Callable[[int, str, TransferState, int], None]:
    """One observer that calls each of `observers` in turn (the core takes one)."""
    live = [observer for observer in observers if observer is not None]
    if len(live) == 1:
        return live[0]

    def call(payer_participant_id: int, transfer_id: str, state: TransferState,
             now_ns: int) -> None:
        for observer in live:
            observer(payer_participant_id, transfer_id, state, now_ns)

    return call


def quantile_ms(counts: list[int], q: float,
                bounds_ms: tuple[float, ...] = LATENCY_BOUNDS_MS) -> float:
    """The q-quantile of a latency histogram (one count per bound plus an overflow bucket)
    in ms, interpolated linearly within its bucket (as Prometheus' histogram_quantile does:
    the bucket's observations are taken as spread evenly between its bounds), so a p99 in
    the (10, 25] ms bucket reads 11 ms when it lies near the bucket's start, not 25. The
    first bucket starts at 0; the overflow bucket answers the last bound."""
    assert 0 < q < 1
    assert len(counts) == len(bounds_ms) + 1
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            if index == len(bounds_ms):
                return bounds_ms[-1]
            lower = bounds_ms[index - 1] if index else 0.0
            upper = bounds_ms[index]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    return bounds_ms[-1]
