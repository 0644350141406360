"""Bench reports: a run's per-second series and summary -> report.json, report.md and plots;
plus the two verdicts capacity planners ask for: did a soak stay flat, and what is the
highest rate a step run sustained.

`write_report` checks everything it is given before it creates or writes anything, so bad
input gets a `ReportInputError` and leaves the disk as it was. report.md quotes exactly the
figures written to report.json (both are rendered from the same rounded values). This
module must never start, stop or talk to the system under test; drivers do that and hand
their measurements in.
"""

from __future__ import annotations

import enum
import io
import math
import statistics
from pathlib import Path
from typing import Annotated, Any, Iterable, Mapping, Sequence

import msgspec

from bench import limits

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOT_FILES = {
    "throughput": "throughput.png",
    "latency": "latency.png",
    "resources": "resources.png",
    "outcomes": "outcomes.png",
}
# Figures are rounded to this many significant digits once, before both files are rendered.
FIGURE_SIGNIFICANT_DIGITS = 6

NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
OutcomeName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")]


class ReportInputError(ValueError):
    """A series, summary or step list that cannot make an honest report; nothing was written."""


class SeriesSample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One second of a run. Latencies are None for a second in which nothing completed."""

    t_s: NonNegative
    offered_per_s: NonNegative
    completed_per_s: NonNegative
    latency_p50_ms: NonNegative | None = None
    latency_p90_ms: NonNegative | None = None
    latency_p99_ms: NonNegative | None = None
    switch_cpu_percent: NonNegative = 0.0
    switch_rss_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    # Transfers that completed in this second, by result code name (e.g. "OK",
    # "PAYEE_REJECTED", "TIMEOUT").
    outcomes: dict[OutcomeName, Annotated[int, msgspec.Meta(ge=0)]] = {}


class ReportFiles(msgspec.Struct, frozen=True, kw_only=True):
    folder: str
    report_json: str
    report_md: str
    plots: dict[str, str]


# --- checking and figures ---------------------------------------------------------------


def to_series(samples: Iterable[SeriesSample | Mapping[str, Any]]) -> list[SeriesSample]:
    """Samples as `SeriesSample`s, checked: bounds, time strictly increasing, p50<=p90<=p99."""
    # A SeriesSample built in code skipped the Meta bounds (msgspec checks them only when
    # converting), so instances go through builtins and are checked like dicts.
    raw = [msgspec.to_builtins(s) if isinstance(s, SeriesSample) else s for s in samples]
    try:
        series = msgspec.convert(raw, list[SeriesSample])
    except msgspec.ValidationError as error:
        raise ReportInputError(f"series: {error}") from None
    if not series:
        raise ReportInputError("series is empty")
    if len(series) > limits.SERIES_SAMPLES_MAX:
        raise ReportInputError(f"series has more than {limits.SERIES_SAMPLES_MAX} samples")
    for i, (a, b) in enumerate(zip(series, series[1:]), start=1):
        if not b.t_s > a.t_s:
            raise ReportInputError(f"series[{i}].t_s does not increase ({a.t_s} -> {b.t_s})")
    names: set[str] = set()
    for i, s in enumerate(series):
        for x in (s.offered_per_s, s.completed_per_s, s.switch_cpu_percent):
            if not math.isfinite(x):
                raise ReportInputError(f"series[{i}] holds a non-finite figure")
        lat = [s.latency_p50_ms, s.latency_p90_ms, s.latency_p99_ms]
        if any(x is not None and not math.isfinite(x) for x in lat):
            raise ReportInputError(f"series[{i}] holds a non-finite latency")
        present = [x for x in lat if x is not None]
        if present != sorted(present):
            raise ReportInputError(f"series[{i}] latency percentiles are not p50 <= p90 <= p99")
        names.update(s.outcomes)
    if len(names) > limits.OUTCOME_NAMES_MAX:
        raise ReportInputError(f"more than {limits.OUTCOME_NAMES_MAX} outcome names")
    return series


def round_figure(value: Any) -> Any:
    """The one rounding both report files use: floats to FIGURE_SIGNIFICANT_DIGITS."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ReportInputError(f"figure {value!r} is not finite")
        return float(f"{value:.{FIGURE_SIGNIFICANT_DIGITS}g}")
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ReportInputError(f"summary key {k!r} is not a string")
            out[k] = round_figure(v)
        return out
    if isinstance(value, (list, tuple)):
        return [round_figure(v) for v in value]
    raise ReportInputError(f"figure of type {type(value).__name__} cannot go in a report")


def series_figures(series: Sequence[SeriesSample]) -> dict[str, Any]:
    """Figures every report carries, computed from the series itself (1 sample = 1 second)."""
    p50 = [s.latency_p50_ms for s in series if s.latency_p50_ms is not None]
    p99 = [s.latency_p99_ms for s in series if s.latency_p99_ms is not None]
    outcomes: dict[str, int] = {}
    for s in series:
        for name, count in s.outcomes.items():
            outcomes[name] = outcomes.get(name, 0) + count
    figures: dict[str, Any] = {
        "samples": len(series),
        "span_s": series[-1].t_s - series[0].t_s,
        "offered_mean_per_s": statistics.fmean(s.offered_per_s for s in series),
        "completed_mean_per_s": statistics.fmean(s.completed_per_s for s in series),
        "completed_peak_per_s": max(s.completed_per_s for s in series),
        "latency_p50_ms_median": statistics.median(p50) if p50 else None,
        "latency_p99_ms_median": statistics.median(p99) if p99 else None,
        "latency_p99_ms_max": max(p99) if p99 else None,
        "switch_cpu_percent_mean": statistics.fmean(s.switch_cpu_percent for s in series),
        "switch_cpu_percent_max": max(s.switch_cpu_percent for s in series),
        "switch_rss_bytes_max": max(s.switch_rss_bytes for s in series),
        "switch_rss_bytes_last": series[-1].switch_rss_bytes,
        "outcomes_total": dict(sorted(outcomes.items())),
    }
    return figures


def flatten_figures(figures: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested figures as (dotted.key, value) rows, in the order given. A list of mappings
    (one entry per run, as `ponte bench e2e` reports) is not a figure but a table of its
    own: see `figure_tables`."""
    rows: list[tuple[str, Any]] = []
    for key, value in figures.items():
        if isinstance(value, Mapping):
            rows.extend(flatten_figures(value, f"{prefix}{key}."))
        elif not _is_table(value):
            rows.append((f"{prefix}{key}", value))
    return rows


def figure_tables(figures: Mapping[str, Any], prefix: str = "") -> list[tuple[str, list]]:
    """(dotted.key, entries) of every list of mappings among the figures, in order."""
    tables: list[tuple[str, list]] = []
    for key, value in figures.items():
        if isinstance(value, Mapping):
            tables.extend(figure_tables(value, f"{prefix}{key}."))
        elif _is_table(value):
            tables.append((f"{prefix}{key}", value))
    return tables


def _is_table(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and bool(value)
            and all(isinstance(entry, Mapping) for entry in value))


def format_figure(value: Any) -> str:
    """How report.md writes a figure: exactly the JSON text of the value in report.json."""
    return msgspec.json.encode(value).decode()


# --- writing ------------------------------------------------------------------------------


def write_report(
    folder: str | Path,
    series: Iterable[SeriesSample | Mapping[str, Any]],
    summary: Mapping[str, Any],
    title: str = "Ponte bench report",
) -> ReportFiles:
    """Write report.json, report.md and the four PNG plots into `folder` (created if needed)."""
    checked = to_series(series)
    if not isinstance(summary, Mapping):
        raise ReportInputError("summary must be a mapping")
    summary_figures = round_figure(summary)
    derived = round_figure(series_figures(checked))
    document = {
        "title": title,
        "summary": summary_figures,
        "series_figures": derived,
        "plots": dict(PLOT_FILES),
        "series": msgspec.to_builtins(checked),
    }
    json_bytes = msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
    md_text = _render_markdown(title, summary_figures, derived)
    # Render the plots to memory first: a plotting failure must not leave half a report.
    pngs = {name: _render_plot(name, checked) for name in PLOT_FILES}

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT_JSON).write_bytes(json_bytes)
    (out / REPORT_MD).write_text(md_text, encoding="utf-8")
    for name, data in pngs.items():
        (out / PLOT_FILES[name]).write_bytes(data)
    return ReportFiles(
        folder=str(out),
        report_json=str(out / REPORT_JSON),
        report_md=str(out / REPORT_MD),
        plots={name: str(out / file) for name, file in PLOT_FILES.items()},
    )


def _render_markdown(title: str, summary: Mapping[str, Any], derived: Mapping[str, Any]) -> str:
    lines = [f"# {title}", ""]
    for heading, figures, source in (
        ("Summary", summary, "summary"),
        ("From the time series", derived, "series_figures"),
    ):
        lines += [f"## {heading}", "", f"Figures from `report.json` → `{source}`.", ""]
        rows = flatten_figures(figures)
        if rows:
            lines += ["| figure | value |", "|---|---|"]
            for key, value in rows:
                lines.append(f"| `{_md_cell(key)}` | {_md_cell(format_figure(value))} |")
            lines.append("")
        for key, entries in figure_tables(figures):
            lines += _render_entries(source, key, entries)
    captions = {
        "throughput": "Throughput: offered vs completed transfers per second",
        "latency": "Latency percentiles (p50, p90, p99) per second",
        "resources": "Switch CPU (% of one core) and resident memory",
        "outcomes": "Outcome mix per second, stacked by result code",
    }
    lines += ["## Plots", ""]
    for name, file in PLOT_FILES.items():
        lines += [f"### {captions[name]}", "", f"![{captions[name]}]({file})", ""]
    return "\n".join(lines)


def _render_entries(source: str, key: str, entries: list) -> list[str]:
    """A list of mappings (one per run) as one table: a column per entry, a row per figure
    (nested figures dotted, in first-seen order); a figure an entry lacks is left blank."""
    columns = [dict(flatten_figures(entry)) for entry in entries]
    names: dict[str, None] = {}
    for column in columns:
        names.update(dict.fromkeys(column))
    headers = " | ".join(f"`{_md_cell(key)}[{index}]`" for index in range(len(entries)))
    lines = [f"### `{_md_cell(key)}`", "",
             f"Figures from `report.json` → `{source}.{key}`, one column per entry.", "",
             f"| figure | {headers} |", "|---|" + "---|" * len(entries)]
    for name in names:
        cells = " | ".join(_md_cell(format_figure(column[name])) if name in column else ""
                           for column in columns)
        lines.append(f"| `{_md_cell(name)}` | {cells} |")
    lines.append("")
    nested = {name: None for entry in entries for name, _ in figure_tables(entry)}
    for name in nested:
        lines += [f"`{_md_cell(key)}[].{_md_cell(name)}` holds entries of its own: see "
                  "`report.json`.", ""]
    return lines


def _md_cell(text: str) -> str:
    # A bare '|' would end the table cell; '\\|' is GitHub's escape for it.
    return text.replace("|", "\\|")


def _render_plot(name: str, series: Sequence[SeriesSample]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(plot_figure(name, series)).print_png(buffer)
    return buffer.getvalue()


def plot_figure(name: str, series: Sequence[SeriesSample]):
    """The matplotlib Figure of one plot (`PLOT_FILES` names). Only what was measured is
    drawn and put in the legend: a percentile no sample has is left out, not drawn empty."""
    # Figure directly, not pyplot: no global state, no display needed, safe to call from a
    # driver's thread.
    from matplotlib.figure import Figure

    t = [s.t_s for s in series]
    nan = math.nan

    def lat(field: str) -> list[float]:
        return [nan if getattr(s, field) is None else getattr(s, field) for s in series]

    if name == "resources":
        fig = Figure(figsize=(10, 6), dpi=100)
        cpu_ax, rss_ax = fig.subplots(2, 1, sharex=True)
        cpu_ax.plot(t, [s.switch_cpu_percent for s in series], color="tab:red", linewidth=1)
        cpu_ax.set_ylabel("switch CPU (%)")
        cpu_ax.set_ylim(bottom=0)
        cpu_ax.set_title("Switch CPU and memory")
        rss_ax.plot(t, [s.switch_rss_bytes / 2**20 for s in series], color="tab:purple")
        rss_ax.set_ylabel("switch RSS (MiB)")
        rss_ax.set_ylim(0, max(s.switch_rss_bytes for s in series) / 2**20 * 1.1 or 1.0)
        rss_ax.set_xlabel("time (s)")
        for ax in (cpu_ax, rss_ax):
            ax.grid(True, alpha=0.3)
    else:
        fig = Figure(figsize=(10, 4.5), dpi=100)
        ax = fig.subplots()
        if name == "throughput":
            ax.plot(t, [s.offered_per_s for s in series], label="offered/s", color="tab:gray")
            ax.plot(t, [s.completed_per_s for s in series], label="completed/s", color="tab:blue")
            ax.set_ylabel("transfers per second")
            ax.set_title("Throughput")
        elif name == "latency":
            for field, label, color in (
                ("latency_p50_ms", "p50", "tab:green"),
                ("latency_p90_ms", "p90", "tab:orange"),
                ("latency_p99_ms", "p99", "tab:red"),
            ):
                values = lat(field)
                if any(not math.isnan(value) for value in values):
                    # A marker per point: a second between gaps is a point, not a line.
                    ax.plot(t, values, label=label, color=color, linewidth=1, marker=".",
                            markersize=3)
            ax.set_ylabel("latency (ms)")
            ax.set_title("Latency percentiles")
        else:
            assert name == "outcomes", name
            names = sorted({n for s in series for n in s.outcomes}, key=_outcome_order)
            if names:
                ax.stackplot(
                    t,
                    [[s.outcomes.get(n, 0) for s in series] for n in names],
                    labels=names,
                    alpha=0.85,
                )
            else:
                ax.text(0.5, 0.5, "no outcomes recorded", ha="center", transform=ax.transAxes)
            ax.set_ylabel("completed per second")
            ax.set_title("Outcome mix")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("time (s)")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


# The outcome names that mean success: drivers name it OK (load drivers) or COMMITTED (the
# simulators, which report the transfer's final state).
SUCCESS_OUTCOMES = ("OK", "COMMITTED")


def _outcome_order(name: str) -> tuple[int, str]:
    # Success at the bottom of the stack, so failures sit on top where the eye finds them.
    return (0 if name in SUCCESS_OUTCOMES else 1, name)


# --- soak: did it stay flat? --------------------------------------------------------------


class FlatnessResult(enum.IntEnum):
    """Verdict of `flatness_verdict`, declared in the order the checks run."""

    FLAT = 0
    TOO_FEW_SAMPLES = 1
    THROUGHPUT_DRIFTED = 2
    P99_ROSE = 3
    RSS_GREW = 4


class FlatnessTolerances(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How much a fitted line may move over the run, as a fraction of the metric's mean.

    Throughput may drift neither up nor down; p99 and RSS may fall but not rise.
    """

    warmup_s: NonNegative = 30.0  # samples before first_t + warmup_s are left out
    samples_min: Annotated[int, msgspec.Meta(ge=3)] = 30
    throughput_drift_ratio_max: NonNegative = 0.05
    p99_rise_ratio_max: NonNegative = 0.25
    rss_rise_ratio_max: NonNegative = 0.10


class Trend(msgspec.Struct, frozen=True, kw_only=True):
    metric: str
    samples: int
    mean: float
    slope_per_s: float
    # slope * span: how far the fitted line moved from the first to the last sample.
    change_over_run: float
    change_ratio: float  # change_over_run / mean (inf when the mean is 0 and it moved)
    tolerance_ratio: float
    within_tolerance: bool


class FlatnessVerdict(msgspec.Struct, frozen=True, kw_only=True):
    result: FlatnessResult
    flat: bool
    failures: list[FlatnessResult]
    span_s: float
    throughput: Trend | None
    latency_p99: Trend | None
    rss: Trend | None


def _trend(
    metric: str, points: list[tuple[float, float]], tolerance: float, two_sided: bool
) -> Trend:
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    slope, _intercept = statistics.linear_regression(xs, ys)
    change = slope * (xs[-1] - xs[0])
    mean = statistics.fmean(ys)
    moved = abs(change) if two_sided else max(0.0, change)
    if mean > 0.0:
        ratio = moved / mean
    else:
        ratio = math.inf if moved > 0.0 else 0.0
    return Trend(
        metric=metric,
        samples=len(points),
        mean=mean,
        slope_per_s=slope,
        change_over_run=change,
        change_ratio=ratio,
        tolerance_ratio=tolerance,
        within_tolerance=ratio <= tolerance,
    )


def flatness_verdict(
    series: Iterable[SeriesSample | Mapping[str, Any]],
    tolerances: FlatnessTolerances = FlatnessTolerances(),
) -> FlatnessVerdict:
    """Least-squares slopes of completed/s, p99 and switch RSS after warm-up, against
    `tolerances`; the result is the first failing check in `FlatnessResult` order."""
    checked = to_series(series)
    start_s = checked[0].t_s + tolerances.warmup_s
    steady = [s for s in checked if s.t_s >= start_s]
    p99_points = [(s.t_s, s.latency_p99_ms) for s in steady if s.latency_p99_ms is not None]
    if len(steady) < tolerances.samples_min or len(p99_points) < tolerances.samples_min:
        return FlatnessVerdict(
            result=FlatnessResult.TOO_FEW_SAMPLES,
            flat=False,
            failures=[FlatnessResult.TOO_FEW_SAMPLES],
            span_s=(steady[-1].t_s - steady[0].t_s) if steady else 0.0,
            throughput=None,
            latency_p99=None,
            rss=None,
        )
    throughput = _trend(
        "completed_per_s",
        [(s.t_s, s.completed_per_s) for s in steady],
        tolerances.throughput_drift_ratio_max,
        two_sided=True,
    )
    p99 = _trend("latency_p99_ms", p99_points, tolerances.p99_rise_ratio_max, two_sided=False)
    rss = _trend(
        "switch_rss_bytes",
        [(s.t_s, float(s.switch_rss_bytes)) for s in steady],
        tolerances.rss_rise_ratio_max,
        two_sided=False,
    )
    failures = [
        code
        for code, trend in (
            (FlatnessResult.THROUGHPUT_DRIFTED, throughput),
            (FlatnessResult.P99_ROSE, p99),
            (FlatnessResult.RSS_GREW, rss),
        )
        if not trend.within_tolerance
    ]
    return FlatnessVerdict(
        result=failures[0] if failures else FlatnessResult.FLAT,
        flat=not failures,
        failures=failures,
        span_s=steady[-1].t_s - steady[0].t_s,
        throughput=throughput,
        latency_p99=p99,
        rss=rss,
    )


# --- step: the highest sustainable rate ---------------------------------------------------


class StepSample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What one step of a step run measured."""

    offered_per_s: NonNegative
    offered_count: Annotated[int, msgspec.Meta(ge=0)]
    ok_count: Annotated[int, msgspec.Meta(ge=0)]
    latency_p99_ms: NonNegative | None  # None when nothing completed


class StepOutcome(enum.IntEnum):
    """How one step fared, declared in the order the checks run."""

    HELD = 0
    NO_TRAFFIC = 1
    P99_ABOVE_BOUND = 2
    SUCCESS_BELOW_BOUND = 3


class CapacityResult(enum.IntEnum):
    FOUND = 0  # some steps held, then one broke: the rate is the last that held
    NEVER_BROKE = 1  # every step held: the capacity is at least the top rate offered
    BROKE_AT_FIRST_STEP = 2  # not even the first rate held: no sustainable rate found


class StepCheck(msgspec.Struct, frozen=True, kw_only=True):
    offered_per_s: float
    success_ratio: float  # ok_count / offered_count: failures and backlog both count
    latency_p99_ms: float | None
    outcome: StepOutcome


class StepVerdict(msgspec.Struct, frozen=True, kw_only=True):
    result: CapacityResult
    sustainable_rate_per_s: float | None
    p99_ms_max: float
    success_ratio_min: float
    first_break_index: int | None
    steps: list[StepCheck]


def sustainable_rate(
    steps: Iterable[StepSample | Mapping[str, Any]],
    p99_ms_max: float,
    success_ratio_min: float,
) -> StepVerdict:
    """The highest offered rate whose p99 stayed <= `p99_ms_max` and whose success ratio
    stayed >= `success_ratio_min`, counting only the steps before the first that broke
    (a rate that holds again after a break is luck, not capacity)."""
    if not (p99_ms_max > 0.0 and math.isfinite(p99_ms_max)):
        raise ReportInputError(f"p99_ms_max must be a positive number, not {p99_ms_max}")
    if not 0.0 <= success_ratio_min <= 1.0:
        raise ReportInputError(f"success_ratio_min must be in [0, 1], not {success_ratio_min}")
    try:
        checked = [
            msgspec.convert(
                msgspec.to_builtins(s) if isinstance(s, StepSample) else s, StepSample
            )
            for s in steps
        ]
    except msgspec.ValidationError as error:
        raise ReportInputError(f"steps: {error}") from None
    if not checked:
        raise ReportInputError("no steps")
    if len(checked) > limits.STEP_RESULTS_MAX:
        raise ReportInputError(f"more than {limits.STEP_RESULTS_MAX} steps")
    for i, (a, b) in enumerate(zip(checked, checked[1:]), start=1):
        if not b.offered_per_s > a.offered_per_s:
            raise ReportInputError(f"steps[{i}] does not offer more than the step before")
    for i, s in enumerate(checked):
        if s.ok_count > s.offered_count:
            raise ReportInputError(f"steps[{i}] has more ok than offered")

    results: list[StepCheck] = []
    for s in checked:
        ratio = s.ok_count / s.offered_count if s.offered_count else 0.0
        if s.offered_count == 0:
            outcome = StepOutcome.NO_TRAFFIC
        elif s.latency_p99_ms is None or s.latency_p99_ms > p99_ms_max:
            outcome = StepOutcome.P99_ABOVE_BOUND
        elif ratio < success_ratio_min:
            outcome = StepOutcome.SUCCESS_BELOW_BOUND
        else:
            outcome = StepOutcome.HELD
        results.append(
            StepCheck(
                offered_per_s=s.offered_per_s,
                success_ratio=ratio,
                latency_p99_ms=s.latency_p99_ms,
                outcome=outcome,
            )
        )
    first_break = next((i for i, r in enumerate(results) if r.outcome != StepOutcome.HELD), None)
    if first_break is None:
        result, rate = CapacityResult.NEVER_BROKE, results[-1].offered_per_s
    elif first_break == 0:
        result, rate = CapacityResult.BROKE_AT_FIRST_STEP, None
    else:
        result, rate = CapacityResult.FOUND, results[first_break - 1].offered_per_s
    return StepVerdict(
        result=result,
        sustainable_rate_per_s=rate,
        p99_ms_max=p99_ms_max,
        success_ratio_min=success_ratio_min,
        first_break_index=first_break,
        steps=results,
    )
