"""The server's metrics registry, rendered in the Prometheus text format (version 0.0.4).

Names carry the `ponte_` prefix and base units (`_seconds`, `_total`, `_bytes`; money in
`_minor` units). Labels take bounded values only: result names, phases, directions,
participant names and currencies — never a transfer, request or key id.

Hot-path counters are plain attributes and dicts incremented by the sequencer; histograms
bisect into fixed buckets; gauges are callbacks read at scrape time. Nothing here does I/O:
the admin surface serves `render()` at /metrics. Connectors add their own metrics with
`registry.counter(...)`, `registry.gauge(...)`, `registry.histogram(...)`. It must never
put an unbounded value (a transfer, request or key id) in a label.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Callable, Iterable

LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
# Tick latency: fine where a snapshot's cost to traffic is judged ("within a few
# milliseconds" of the latency without one), so a p99 read off the buckets is within ~1 ms.
TICK_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.01,
    0.012, 0.014, 0.016, 0.018, 0.02, 0.025, 0.03, 0.035, 0.04, 0.05, 0.075, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values))
    return "{" + inner + "}"


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class Counter:
    def __init__(self, name: str, help_text: str, label_names: tuple[str, ...] = ()) -> None:
        assert name.startswith("ponte_") and name.endswith("_total"), name
        self.name = name
        self.help = help_text
        self.label_names = label_names
        self.values: dict[tuple, float] = {}

    def inc(self, *label_values, amount: float = 1) -> None:
        assert len(label_values) == len(self.label_names)
        self.values[label_values] = self.values.get(label_values, 0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.values and not self.label_names:
            yield f"{self.name} 0"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Gauge:
    """Read at scrape time from `read()`: a number, or {label values: number}."""

    def __init__(self, name: str, help_text: str, read: Callable[[], object],
                 label_names: tuple[str, ...] = (), kind: str = "gauge") -> None:
        assert name.startswith("ponte_"), name
        assert kind in ("gauge", "counter")
        self.name = name
        self.help = help_text
        self.read = read
        self.label_names = label_names
        self.kind = kind

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        value = self.read()
        if isinstance(value, dict):
            for labels, number in sorted(value.items()):
                labels = labels if isinstance(labels, tuple) else (labels,)
                yield f"{self.name}{_labels(self.label_names, labels)} {_number(number)}"
        else:
            yield f"{self.name} {_number(value)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...],
                 label_names: tuple[str, ...] = ()) -> None:
        assert name.startswith("ponte_"), name
        assert list(buckets) == sorted(buckets)
        self.name = name
        self.help = help_text
        self.buckets = buckets
        self.label_names = label_names
        self._series: dict[tuple, list] = {}

    def series(self, *label_values) -> list:
        """[counts per bucket + overflow, sum, count]: keep it to observe without lookups."""
        found = self._series.get(label_values)
        if found is None:
            found = [[0] * (len(self.buckets) + 1), 0.0, 0]
            self._series[label_values] = found
        return found

    def observe(self, value: float, *label_values) -> None:
        series = self.series(*label_values)
        series[0][bisect_left(self.buckets, value)] += 1
        series[1] += value
        series[2] += 1

    def quantile(self, q: float, *label_values) -> float:
        """An upper-bound estimate from the buckets (for live displays, not reports)."""
        series = self._series.get(label_values)
        if not series or not series[2]:
            return 0.0
        rank = q * series[2]
        seen = 0
        for index, count in enumerate(series[0]):
            seen += count
            if seen >= rank:
                return self.buckets[index] if index < len(self.buckets) else float("inf")
        return float("inf")

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, (counts, total, count) in sorted(self._series.items()):
            cumulative = 0
            names = self.label_names + ("le",)
            for bound, bucket_count in zip(self.buckets, counts):
                cumulative += bucket_count
                yield (f"{self.name}_bucket{_labels(names, labels + (_number(bound),))} "
                       f"{cumulative}")
            yield f"{self.name}_bucket{_labels(names, labels + ('+Inf',))} {count}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {count}"


class MetricsRegistry:
    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

    def _add(self, metric):
        assert metric.name not in self._metrics, f"metric {metric.name} registered twice"
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, label_names: tuple[str, ...] = ()) -> Counter:
        return self._add(Counter(name, help_text, label_names))

    def gauge(self, name: str, help_text: str, read: Callable[[], object],
              label_names: tuple[str, ...] = (), kind: str = "gauge") -> Gauge:
        """A value read at scrape time; kind="counter" for a monotonic count kept
        elsewhere as a plain int (cheaper on a hot path than Counter.inc)."""
        return self._add(Gauge(name, help_text, read, label_names, kind))

    def histogram(self, name: str, help_text: str, buckets: tuple[float, ...],
                  label_names: tuple[str, ...] = ()) -> Histogram:
        return self._add(Histogram(name, help_text, buckets, label_names))

    def get(self, name: str):
        return self._metrics.get(name)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


class NamedCounts:
    """A read view of counts kept under enum keys, as a Counter's `values` would show
    them: {(name, name, ...): count}. For readers (the console); the sequencer bumps the
    underlying dict."""

    def __init__(self, counts: dict[tuple, int]) -> None:
        self._counts = counts

    @property
    def values(self) -> dict[tuple, int]:
        return {tuple(getattr(part, "name", part) for part in key): count
                for key, count in self._counts.items()}


class ServerMetrics:
    """The switch's own metrics, kept where the sequencer can bump them cheaply."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry
        # Bumped per transfer with enum members as keys (cheap); names at scrape time.
        self.finals: dict[tuple, int] = {}
        self.refused: dict[tuple, int] = {}
        # The same counts by name (the shape Counter.values has), for readers.
        self.transfers = NamedCounts(self.finals)
        self.refusals = NamedCounts(self.refused)
        registry.gauge(
            "ponte_transfers_total", "Transfers that reached a final state, by state and result.",
            lambda: {(state.name, result.name): count
                     for (state, result), count in self.finals.items()},
            ("state", "result"), kind="counter")
        registry.gauge(
            "ponte_requests_refused_total",
            "Requests refused without being recorded, by request type and result.",
            lambda: {(request_type, result.name): count
                     for (request_type, result), count in self.refused.items()},
            ("request_type", "result"), kind="counter")
        self.phase_seconds = registry.histogram(
            "ponte_transfer_phase_seconds",
            "Time spent in a phase of a transfer: reserve_to_answer (credit request decided "
            "to payee answer decided), end_to_end (transfer received to outcome released).",
            LATENCY_BUCKETS_S, ("phase",))
        self.reserve_to_answer = self.phase_seconds.series("reserve_to_answer")
        self.end_to_end = self.phase_seconds.series("end_to_end")
        self.commit_seconds = registry.histogram(
            "ponte_journal_commit_seconds", "Duration of one durable journal write (group commit).",
            LATENCY_BUCKETS_S)
        self.commit_lag_seconds = registry.histogram(
            "ponte_journal_commit_lag_seconds",
            "From a tick's decisions to their release after the durable write.",
            LATENCY_BUCKETS_S)
        tick_latency = registry.histogram(
            "ponte_tick_latency_seconds",
            "From a tick's decisions to their release, by whether a snapshot child was "
            "writing meanwhile (the cost of snapshots to traffic: fork, copy-on-write).",
            TICK_LATENCY_BUCKETS_S, ("snapshot",))
        self.tick_latency_idle = tick_latency.series("idle")
        self.tick_latency_writing = tick_latency.series("writing")
        self.tick_events = registry.histogram(
            "ponte_tick_events", "Events decided per sequencer tick.", SIZE_BUCKETS)
        self.journal_records = registry.counter(
            "ponte_journal_records_total", "Journal records made durable.")
        self.journal_bytes = registry.counter(
            "ponte_journal_bytes_total", "Journal payload bytes made durable.")
        self.inbound_refused_total = 0
        registry.gauge("ponte_inbound_refused_total",
                       "Submissions refused with SERVER_BUSY because the inbound queue was full.",
                       lambda: self.inbound_refused_total, kind="counter")

    @staticmethod
    def observe_series(series: list, buckets: tuple[float, ...], value: float) -> None:
        series[0][bisect_left(buckets, value)] += 1
        series[1] += value
        series[2] += 1
