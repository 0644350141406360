"""The overview's live numbers: transfers/s, success rate, p50/p99 and the outcome mix.

A sampler reads the switch's cumulative counters once a second (`SwitchPort.counters()`:
`finals_total`, `committed_total`, `by_result` {result code or name: count},
`latency_bounds_ms` and `latency_counts`, a histogram with one overflow bucket) and keeps a
bounded ring of samples; rates and quantiles are differences between two samples, so the
payment path only ever increments
integers. It does no I/O; the caller supplies the clock.
"""

from __future__ import annotations

from collections import deque

from switch.admin import limits
from switch.admin.timeline import LATENCY_BOUNDS_MS, quantile_ms
from switch.core.results import Result

NS_PER_S = limits.NS_PER_S
RATE_WINDOW_S = 5  # transfers/s averaged over this many seconds
QUALITY_WINDOW_S = 30  # success rate and latency quantiles over this many seconds


class Sample:
    __slots__ = ("at_ns", "finals", "committed", "by_result", "bounds_ms", "latency")

    def __init__(self, at_ns: int, counters: dict):
        self.at_ns = at_ns
        self.finals = int(counters.get("finals_total", 0))
        self.committed = int(counters.get("committed_total", 0))
        self.by_result = dict(counters.get("by_result", {}))
        self.bounds_ms = tuple(counters.get("latency_bounds_ms", LATENCY_BOUNDS_MS))
        latency = list(counters.get("latency_counts", ()))
        self.latency = latency if len(latency) == len(self.bounds_ms) + 1 else (
            [0] * (len(self.bounds_ms) + 1))


class LiveStats:
    def __init__(self, history_max: int = limits.LIVE_HISTORY_SAMPLES_MAX):
        assert history_max > QUALITY_WINDOW_S
        self._samples: deque[Sample] = deque(maxlen=history_max)

    def sample(self, at_ns: int, counters: dict) -> None:
        if self._samples and at_ns <= self._samples[-1].at_ns:
            return  # the clock did not move: nothing new to say
        self._samples.append(Sample(at_ns, counters))

    def _back(self, seconds: int) -> Sample | None:
        """The newest sample at least `seconds` older than the latest one, else the oldest."""
        if len(self._samples) < 2:
            return None
        latest = self._samples[-1]
        for sample in reversed(self._samples):
            if latest.at_ns - sample.at_ns >= seconds * NS_PER_S:
                return sample
        return self._samples[0]

    def transfers_per_s(self) -> float:
        earlier = self._back(RATE_WINDOW_S)
        if earlier is None:
            return 0.0
        latest = self._samples[-1]
        span_s = (latest.at_ns - earlier.at_ns) / NS_PER_S
        return (latest.finals - earlier.finals) / span_s if span_s > 0 else 0.0

    def success_rate(self) -> float:
        earlier = self._back(QUALITY_WINDOW_S)
        if earlier is None:
            return 1.0
        latest = self._samples[-1]
        finals = latest.finals - earlier.finals
        if finals <= 0:
            return 1.0
        return (latest.committed - earlier.committed) / finals

    def latency_ms(self, q: float) -> float:
        earlier = self._back(QUALITY_WINDOW_S)
        if earlier is None:
            return 0.0
        latest = self._samples[-1]
        if latest.bounds_ms != earlier.bounds_ms:
            return 0.0
        counts = [a - b for a, b in zip(latest.latency, earlier.latency)]
        return quantile_ms(counts, q, latest.bounds_ms)

    def outcomes(self) -> dict[str, int]:
        """Result name -> count since the switch started."""
        if not self._samples:
            return {}
        names = {}
        for code, count in self._samples[-1].by_result.items():
            if isinstance(code, str):
                name = code
            else:
                try:
                    name = Result(int(code)).name
                except ValueError:
                    name = f"code_{code}"
            names[name] = names.get(name, 0) + count
        return dict(sorted(names.items(), key=lambda item: -item[1]))

    def transfers_total(self) -> int:
        return self._samples[-1].finals if self._samples else 0

    def series(self, points_max: int) -> list[tuple[float, float]]:
        """(unix seconds, transfers/s over the second before) for the chart, oldest first."""
        samples = list(self._samples)[-(points_max + 1):]
        points = []
        for before, after in zip(samples, samples[1:]):
            span_s = (after.at_ns - before.at_ns) / NS_PER_S
            points.append((after.at_ns / NS_PER_S, (after.finals - before.finals) / span_s))
        return points
