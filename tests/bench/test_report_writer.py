"""The report writer, the soak flatness verdict and the step capacity helper."""

from __future__ import annotations

import json
import math
import random
import re

import msgspec
import pytest

from bench.report import (
    PLOT_FILES,
    REPORT_JSON,
    REPORT_MD,
    CapacityResult,
    FlatnessResult,
    FlatnessTolerances,
    ReportInputError,
    SeriesSample,
    StepOutcome,
    StepSample,
    flatness_verdict,
    flatten_figures,
    format_figure,
    sustainable_rate,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_series(
    seconds: int = 300,
    seed: int = 1,
    rate_per_s: float = 1000.0,
    rss_growth_bytes_per_s: float = 0.0,
    p99_growth_ms_per_s: float = 0.0,
    throughput_decay_per_s: float = 0.0,
) -> list[SeriesSample]:
    """A steady run with noise, optionally with a leak, a creeping p99 or a sagging rate."""
    rng = random.Random(seed)
    series = []
    for t in range(seconds):
        completed = rate_per_s * (1 - throughput_decay_per_s * t) * rng.uniform(0.97, 1.03)
        p50 = rng.uniform(1.8, 2.2)
        p99 = rng.uniform(8.0, 12.0) + p99_growth_ms_per_s * t
        ok = int(completed * 0.98)
        series.append(
            SeriesSample(
                t_s=float(t),
                offered_per_s=rate_per_s,
                completed_per_s=completed,
                latency_p50_ms=p50,
                latency_p90_ms=p50 * 2,
                latency_p99_ms=max(p99, p50 * 2),
                switch_cpu_percent=rng.uniform(60.0, 70.0),
                switch_rss_bytes=int(
                    300 * 2**20 + rng.uniform(-(2**20), 2**20) + rss_growth_bytes_per_s * t
                ),
                outcomes={"OK": ok, "PAYEE_REJECTED": int(completed) - ok},
            )
        )
    return series


def md_table_figures(md: str) -> dict[str, str]:
    rows = {}
    for line in md.splitlines():
        match = re.fullmatch(r"\| `(.+)` \| (.+) \|", line)
        if match:
            key, value = match.groups()
            assert key not in rows, f"{key} quoted twice"
            rows[key.replace("\\|", "|")] = value.replace("\\|", "|")
    return rows


# --- write_report -----------------------------------------------------------------------


def test_report_has_every_file_and_md_quotes_the_json_figures(tmp_path):
    series = synthetic_series(seconds=120)
    summary = {
        "profile": "quick",
        "transport": "stream",
        "seed": 7,
        "completed_total": 118_000,
        "latency_ms": {"p50": 2.0123456789, "p99": 11.5},
        "flat": True,
        "note": "a | pipe",
    }
    files = write_report(tmp_path / "out", series, summary, title="Test run")
    folder = tmp_path / "out"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [REPORT_JSON, REPORT_MD, *PLOT_FILES.values()]
    )
    for name, path in files.plots.items():
        data = (folder / PLOT_FILES[name]).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert path == str(folder / PLOT_FILES[name])

    document = json.loads((folder / REPORT_JSON).read_text())
    assert len(document["series"]) == 120
    assert document["series"][5]["outcomes"] == series[5].outcomes
    # Floats are rounded once, to 6 significant digits, for both files.
    assert document["summary"]["latency_ms"]["p50"] == 2.01235
    assert document["series_figures"]["completed_peak_per_s"] == pytest.approx(
        max(s.completed_per_s for s in series), rel=1e-5
    )
    ok_total = sum(s.outcomes["OK"] for s in series)
    assert document["series_figures"]["outcomes_total"]["OK"] == ok_total

    md = (folder / REPORT_MD).read_text()
    quoted = md_table_figures(md)
    expected = {
        key: format_figure(value)
        for part in ("summary", "series_figures")
        for key, value in flatten_figures(document[part])
    }
    assert quoted == expected
    assert quoted["latency_ms.p50"] == "2.01235"
    assert quoted["note"] == '"a | pipe"'
    for file in PLOT_FILES.values():
        assert f"]({file})" in md


def test_plots_decode_and_seconds_without_completions_are_gaps(tmp_path):
    from matplotlib.image import imread

    series = synthetic_series(seconds=60)
    series[30] = msgspec.structs.replace(
        series[30],
        completed_per_s=0.0,
        latency_p50_ms=None,
        latency_p90_ms=None,
        latency_p99_ms=None,
        outcomes={},
    )
    write_report(tmp_path, series, {"run": "gap"})
    for file in PLOT_FILES.values():
        pixels = imread(tmp_path / file)
        height, width = pixels.shape[:2]
        assert width >= 800
        assert height >= 400
        assert pixels.std() > 0.01  # not a blank image
    document = json.loads((tmp_path / REPORT_JSON).read_text())
    assert document["series"][30]["latency_p99_ms"] is None
    assert document["series_figures"]["samples"] == 60


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: [], "empty"),
        (lambda s: [s[1], s[0], *s[2:]], "does not increase"),
        (
            lambda s: [msgspec.structs.replace(s[0], latency_p99_ms=1.0), *s[1:]],
            "p50 <= p90 <= p99",
        ),
        (lambda s: [msgspec.structs.replace(s[0], offered_per_s=-1.0), *s[1:]], "offered_per_s"),
        (lambda s: [msgspec.structs.replace(s[0], completed_per_s=math.inf), *s[1:]], "non-finite"),
        (lambda s: [msgspec.structs.replace(s[0], outcomes={"not a name": 1}), *s[1:]], "outcomes"),
    ],
)
def test_bad_series_is_a_typed_error_and_writes_nothing(tmp_path, mutate, message):
    folder = tmp_path / "report"
    with pytest.raises(ReportInputError, match=re.escape(message)):
        write_report(folder, mutate(synthetic_series(seconds=10)), {"run": "bad"})
    assert not folder.exists()


def test_bad_summary_leaves_an_existing_folder_as_it_was(tmp_path):
    (tmp_path / "keep.txt").write_text("previous run")
    before = sorted(p.name for p in tmp_path.iterdir())
    bad_summaries = ({"p99_ms": math.nan}, {"when": object()}, {1: "not a str"}, ["a", "list"])
    for summary in bad_summaries:
        with pytest.raises(ReportInputError):
            write_report(tmp_path, synthetic_series(seconds=10), summary)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (tmp_path / "keep.txt").read_text() == "previous run"


def test_series_may_be_given_as_plain_dicts(tmp_path):
    rows = [msgspec.to_builtins(s) for s in synthetic_series(seconds=5)]
    write_report(tmp_path, rows, {})
    document = json.loads((tmp_path / REPORT_JSON).read_text())
    assert document["series"] == rows


def test_a_list_of_runs_is_a_table_not_a_json_blob(tmp_path):
    """`ponte bench e2e` reports one entry per run: report.md shows them as a table (one
    column per run, one row per figure, nested figures dotted), never as JSON text."""
    summary = {"report_dir": "r", "results": [
        {"transport": "stream", "p50_ms": 1.5, "results": {"COMMITTED": 10, "REJECTED": 1}},
        {"transport": "http", "p50_ms": 2.0, "detail": {"seconds": 2.0, "reconciled": True}},
    ]}
    write_report(tmp_path, synthetic_series(seconds=5), summary)
    md = (tmp_path / REPORT_MD).read_text()
    assert "{" not in md  # no JSON object anywhere
    assert "| figure | `results[0]` | `results[1]` |" in md
    assert '| `transport` | "stream" | "http" |' in md
    assert "| `p50_ms` | 1.5 | 2.0 |" in md
    assert "| `results.COMMITTED` | 10 |  |" in md
    assert "| `detail.reconciled` |  | true |" in md
    assert md_table_figures(md)["report_dir"] == '"r"'


def _plotted(name, series):
    from bench.report import plot_figure

    (ax, *_) = plot_figure(name, series).axes
    return ax


def test_every_latency_percentile_in_the_legend_is_drawn():
    ax = _plotted("latency", synthetic_series(seconds=30))
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["p50", "p90", "p99"]
    for line in ax.get_lines():
        assert any(math.isfinite(y) for y in line.get_ydata()), line.get_label()


def test_a_percentile_never_measured_is_not_in_the_legend():
    series = [msgspec.structs.replace(s, latency_p90_ms=None)
              for s in synthetic_series(seconds=30)]
    ax = _plotted("latency", series)
    assert ax.get_legend_handles_labels()[1] == ["p50", "p99"]


def test_outcome_mix_is_plotted_with_success_at_the_bottom():
    series = [msgspec.structs.replace(s, outcomes={"COMMITTED": 90, "REJECTED": 10})
              for s in synthetic_series(seconds=30)]
    ax = _plotted("outcomes", series)
    assert ax.get_legend_handles_labels()[1] == ["COMMITTED", "REJECTED"]
    heights = [path.vertices[:, 1].max() for collection in ax.collections
               for path in collection.get_paths()]
    assert max(heights) == pytest.approx(100)


# --- flatness ---------------------------------------------------------------------------


def test_a_steady_run_is_flat():
    verdict = flatness_verdict(synthetic_series())
    assert verdict.result is FlatnessResult.FLAT
    assert verdict.flat
    assert verdict.failures == []
    assert abs(verdict.rss.change_ratio) < 0.01
    assert verdict.throughput.samples == 270  # 30 s of warm-up left out


def test_rising_memory_is_caught_with_its_figures():
    # +200 KiB/s over 270 s of steady state: ~53 MiB on ~330 MiB, well past 10%.
    verdict = flatness_verdict(synthetic_series(rss_growth_bytes_per_s=200 * 1024))
    assert verdict.result is FlatnessResult.RSS_GREW
    assert not verdict.flat
    assert verdict.failures == [FlatnessResult.RSS_GREW]
    assert verdict.rss.slope_per_s == pytest.approx(200 * 1024, rel=0.05)
    assert verdict.rss.change_ratio > 0.10
    assert verdict.throughput.within_tolerance
    assert verdict.latency_p99.within_tolerance


def test_falling_memory_is_not_a_leak():
    verdict = flatness_verdict(synthetic_series(rss_growth_bytes_per_s=-200 * 1024))
    assert verdict.result is FlatnessResult.FLAT


def test_creeping_p99_and_sagging_throughput_are_reported_in_check_order():
    verdict = flatness_verdict(
        synthetic_series(p99_growth_ms_per_s=0.05, throughput_decay_per_s=0.001)
    )
    assert verdict.failures == [FlatnessResult.THROUGHPUT_DRIFTED, FlatnessResult.P99_ROSE]
    assert verdict.result is FlatnessResult.THROUGHPUT_DRIFTED
    assert verdict.throughput.slope_per_s < 0
    assert verdict.latency_p99.slope_per_s == pytest.approx(0.05, rel=0.1)


def test_warm_up_is_left_out_and_too_short_a_run_is_said_so():
    # The first 20 s ramp up from nothing, as a cold switch does.
    ramp = [
        msgspec.structs.replace(s, completed_per_s=s.completed_per_s * s.t_s / 20)
        if s.t_s < 20
        else s
        for s in synthetic_series()
    ]
    assert flatness_verdict(ramp).result is FlatnessResult.FLAT
    cold = flatness_verdict(ramp, FlatnessTolerances(warmup_s=0.0))
    assert cold.result is FlatnessResult.THROUGHPUT_DRIFTED
    assert cold.throughput.slope_per_s > 0
    short = flatness_verdict(synthetic_series(seconds=50))
    assert short.result is FlatnessResult.TOO_FEW_SAMPLES
    assert short.throughput is None


def test_flatness_members_are_in_check_order():
    assert [m.name for m in FlatnessResult] == [
        "FLAT", "TOO_FEW_SAMPLES", "THROUGHPUT_DRIFTED", "P99_ROSE", "RSS_GREW"
    ]  # fmt: skip
    assert [m.value for m in FlatnessResult] == list(range(len(FlatnessResult)))


# --- step capacity ----------------------------------------------------------------------


def steps_with_cliff(cliff_rate: float, rates=range(500, 5001, 500)) -> list[StepSample]:
    steps = []
    for rate in rates:
        offered = rate * 30
        broke = rate >= cliff_rate
        steps.append(
            StepSample(
                offered_per_s=float(rate),
                offered_count=offered,
                ok_count=offered if not broke else int(offered * 0.999),
                latency_p99_ms=8.0 + rate / 1000 if not broke else 400.0,
            )
        )
    return steps


def test_p99_cliff_gives_the_last_rate_before_it():
    verdict = sustainable_rate(steps_with_cliff(3000.0), p99_ms_max=50.0, success_ratio_min=0.99)
    assert verdict.result is CapacityResult.FOUND
    assert verdict.sustainable_rate_per_s == 2500.0
    assert verdict.first_break_index == 5
    assert verdict.steps[5].outcome is StepOutcome.P99_ABOVE_BOUND
    assert [s.outcome for s in verdict.steps[:5]] == [StepOutcome.HELD] * 5


def test_success_below_bound_breaks_even_with_a_good_p99():
    steps = steps_with_cliff(10_000.0)
    steps[3] = msgspec.structs.replace(steps[3], ok_count=steps[3].offered_count // 2)
    verdict = sustainable_rate(steps, p99_ms_max=50.0, success_ratio_min=0.99)
    assert verdict.sustainable_rate_per_s == 1500.0
    assert verdict.steps[3].outcome is StepOutcome.SUCCESS_BELOW_BOUND
    assert verdict.steps[3].success_ratio == 0.5


def test_a_rate_that_holds_again_after_a_break_does_not_count():
    steps = steps_with_cliff(10_000.0)
    steps[2] = msgspec.structs.replace(steps[2], latency_p99_ms=90.0)
    verdict = sustainable_rate(steps, p99_ms_max=50.0, success_ratio_min=0.99)
    assert verdict.sustainable_rate_per_s == 1000.0
    assert verdict.steps[-1].outcome is StepOutcome.HELD


def test_never_broke_and_broke_at_first_step():
    held = sustainable_rate(steps_with_cliff(10_000.0), p99_ms_max=50.0, success_ratio_min=0.99)
    assert held.result is CapacityResult.NEVER_BROKE
    assert held.sustainable_rate_per_s == 5000.0
    assert held.first_break_index is None
    broke = sustainable_rate(steps_with_cliff(0.0), p99_ms_max=50.0, success_ratio_min=0.99)
    assert broke.result is CapacityResult.BROKE_AT_FIRST_STEP
    assert broke.sustainable_rate_per_s is None
    idle = [StepSample(offered_per_s=1.0, offered_count=0, ok_count=0, latency_p99_ms=None)]
    assert sustainable_rate(idle, 50.0, 0.99).steps[0].outcome is StepOutcome.NO_TRAFFIC


def test_step_checks_run_in_declaration_order():
    assert [m.value for m in StepOutcome] == list(range(len(StepOutcome)))
    # Each row fails every check from its own onwards, so only the order picks the answer.
    rows = [
        (StepSample(offered_per_s=1.0, offered_count=0, ok_count=0, latency_p99_ms=None),
         StepOutcome.NO_TRAFFIC),
        (StepSample(offered_per_s=2.0, offered_count=10, ok_count=0, latency_p99_ms=900.0),
         StepOutcome.P99_ABOVE_BOUND),
        (StepSample(offered_per_s=3.0, offered_count=10, ok_count=0, latency_p99_ms=1.0),
         StepOutcome.SUCCESS_BELOW_BOUND),
        (StepSample(offered_per_s=4.0, offered_count=10, ok_count=10, latency_p99_ms=1.0),
         StepOutcome.HELD),
    ]  # fmt: skip
    verdict = sustainable_rate([r[0] for r in rows], p99_ms_max=50.0, success_ratio_min=0.99)
    assert [c.outcome for c in verdict.steps] == [r[1] for r in rows]


@pytest.mark.parametrize(
    ("steps", "p99", "success", "message"),
    [
        ([], 50.0, 0.99, "no steps"),
        (steps_with_cliff(9e9)[::-1], 50.0, 0.99, "does not offer more"),
        (
            [StepSample(offered_per_s=1.0, offered_count=1, ok_count=2, latency_p99_ms=1.0)],
            50.0,
            0.99,
            "more ok",
        ),
        (
            [{"offered_per_s": -5.0, "offered_count": 1, "ok_count": 1, "latency_p99_ms": 1.0}],
            50.0,
            0.99,
            "offered_per_s",
        ),
        (steps_with_cliff(9e9), 0.0, 0.99, "p99_ms_max"),
        (steps_with_cliff(9e9), 50.0, 1.5, "success_ratio_min"),
    ],
)
def test_bad_step_input_is_a_typed_error(steps, p99, success, message):
    with pytest.raises(ReportInputError, match=message):
        sustainable_rate(steps, p99_ms_max=p99, success_ratio_min=success)
