"""Shared glue between the bench drivers and their report folders: where a run's report
goes, how its per-second series is accumulated while load runs, and how the figures a
command prints with --json are made the very figures written to report.json.

`SecondSeries` turns completions as they happen into one `bench.report.SeriesSample` per
second (offered, completed, p50/p90/p99, outcome mix) in bounded memory: a second's
latencies live in a log-bucketed histogram until the second is over, then only its three
percentiles are kept. `finish_run` writes the folder (report.json, report.md, plots) and
returns the summary exactly as report.json holds it — a command prints that object, so
`--json` and the folder cannot disagree.

It must never start, stop or talk to the system under test.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench import report as report_module
from bench.report import ReportFiles, SeriesSample
from bench.sampler import ResourceSample
from connectors.sim.latency import LatencyHistogram

REPORTS_DIR_DEFAULT = "reports"
REPORT_KINDS = ("e2e", "soak", "step", "locust")
# A second is closed (its percentiles computed, its histogram dropped) once completions
# are being recorded this many seconds after it: completions arrive in time order.
SECONDS_OPEN_MAX = 2


def default_report_dir(kind: str, now: datetime.datetime | None = None,
                       base: str | os.PathLike = REPORTS_DIR_DEFAULT) -> str:
    """reports/<kind>-<UTC timestamp>/, with a counter appended if that folder exists."""
    assert kind in REPORT_KINDS, kind
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stem = Path(base) / f"{kind}-{now.strftime('%Y%m%d-%H%M%S')}"
    candidate = stem
    counter = 1
    while candidate.exists():
        counter += 1
        candidate = Path(f"{stem}-{counter}")
    return str(candidate)


class _Second:
    __slots__ = ("offered", "completed", "histogram", "outcomes", "p50_ms", "p90_ms",
                 "p99_ms")

    def __init__(self) -> None:
        self.offered = 0
        self.completed = 0
        self.histogram: LatencyHistogram | None = LatencyHistogram()
        self.outcomes: dict[str, int] = {}
        self.p50_ms: float | None = None
        self.p90_ms: float | None = None
        self.p99_ms: float | None = None

    def close(self) -> None:
        histogram = self.histogram
        if histogram is None:
            return
        if histogram.count:
            self.p50_ms = histogram.quantile(0.50) * 1000.0
            self.p90_ms = histogram.quantile(0.90) * 1000.0
            self.p99_ms = histogram.quantile(0.99) * 1000.0
        self.histogram = None


class SecondSeries:
    """Per-second figures of one run. Times are seconds on the caller's monotonic clock;
    `start_s` is the run's second zero. Not thread-safe: call it from the driver's loop."""

    def __init__(self, start_s: float) -> None:
        self.start_s = start_s
        self._seconds: list[_Second] = []
        self._closed_upto = 0  # seconds [0, _closed_upto) are closed
        self.total = LatencyHistogram()
        self.outcomes_total: dict[str, int] = {}
        self.offered_total = 0
        self.completed_total = 0

    def _second(self, now_s: float) -> _Second:
        index = int(now_s - self.start_s) if now_s > self.start_s else 0
        seconds = self._seconds
        while len(seconds) <= index:
            seconds.append(_Second())
        # Completions arrive in time order: seconds well behind `index` are over.
        while self._closed_upto < index - SECONDS_OPEN_MAX:
            seconds[self._closed_upto].close()
            self._closed_upto += 1
        return seconds[index]

    def offered(self, now_s: float, count: int = 1) -> None:
        self._second(now_s).offered += count
        self.offered_total += count

    def completed(self, now_s: float, latency_s: float | None, outcome: str) -> None:
        """One payment finished with `outcome` (a result code name). `latency_s` None: the
        outcome came without a measured transfer (a failed lookup, a dropped offer)."""
        second = self._second(now_s)
        second.completed += 1
        second.outcomes[outcome] = second.outcomes.get(outcome, 0) + 1
        self.outcomes_total[outcome] = self.outcomes_total.get(outcome, 0) + 1
        self.completed_total += 1
        if latency_s is not None:
            second.histogram.record(latency_s)
            self.total.record(latency_s)

    def samples(self, resources: Sequence[ResourceSample] = (),
                resource_offset_s: float = 0.0, seconds: int | None = None) -> list[SeriesSample]:
        """The series, one sample per second up to `seconds` (default: every second seen).
        Resource samples (t_s on the sampler's clock, which started `resource_offset_s`
        after `start_s`) are matched to the second they end in."""
        count = len(self._seconds) if seconds is None else seconds
        while len(self._seconds) < count:
            self._seconds.append(_Second())
        ordered = sorted(resources, key=lambda r: r.t_s)
        result = []
        cursor = 0
        latest: ResourceSample | None = ordered[0] if ordered else None
        for index in range(count):
            second = self._seconds[index]
            second.close()
            while cursor < len(ordered) and ordered[cursor].t_s + resource_offset_s <= index + 1:
                latest = ordered[cursor]
                cursor += 1
            result.append(SeriesSample(
                t_s=float(index),
                offered_per_s=float(second.offered),
                completed_per_s=float(second.completed),
                latency_p50_ms=second.p50_ms,
                latency_p90_ms=second.p90_ms,
                latency_p99_ms=second.p99_ms,
                switch_cpu_percent=latest.cpu_percent if latest else 0.0,
                switch_rss_bytes=latest.rss_bytes if latest else 0,
                outcomes=dict(sorted(second.outcomes.items())),
            ))
        self._closed_upto = max(self._closed_upto, count)
        return result


def latency_figures(histogram: LatencyHistogram, prefix: str = "latency") -> dict[str, Any]:
    """p50/p90/p99/mean in ms of a whole run (None when nothing was measured)."""
    if not histogram.count:
        return {f"{prefix}_p50_ms": None, f"{prefix}_p90_ms": None,
                f"{prefix}_p99_ms": None, f"{prefix}_mean_ms": None}
    return {
        f"{prefix}_p50_ms": histogram.quantile(0.50) * 1000.0,
        f"{prefix}_p90_ms": histogram.quantile(0.90) * 1000.0,
        f"{prefix}_p99_ms": histogram.quantile(0.99) * 1000.0,
        f"{prefix}_mean_ms": histogram.sum_s / histogram.count * 1000.0,
    }


def finish_run(folder: str | os.PathLike, series: Sequence[SeriesSample | Mapping[str, Any]],
               summary: Mapping[str, Any], title: str) -> tuple[dict[str, Any], ReportFiles]:
    """Write the report folder; return (summary as written to report.json, the files).

    The folder's own path goes into the summary (`report_dir`), so the printed JSON says
    where the plots are and still equals report.json's `summary` exactly."""
    full = dict(summary)
    full["report_dir"] = str(folder)
    files = report_module.write_report(folder, series, full, title=title)
    return report_module.round_figure(full), files
