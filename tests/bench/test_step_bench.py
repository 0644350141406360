"""`ponte bench step` against a real switch over HTTP (a few seconds), the judge that
attributes payments to steps, and the refusals of bad input (typed, nothing written)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.cli import bench
from bench.locust.driver import Finished
from connectors.sim.population import StepRate, load_profile
from bench.step_bench import StepJudge, step_profile
from tests.bench.test_soak_bench import TINY_PROFILE


@pytest.fixture
def tiny_profile_path(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROFILE)
    return str(path)


def test_step_runs_for_real_over_http_and_prints_what_report_json_holds(
        tiny_profile_path, tmp_path):
    folder = tmp_path / "step-report"
    result = CliRunner().invoke(bench, [
        "step", "--profile", tiny_profile_path, "--transport", "http", "--step-s", "2",
        "--steps", "2", "--start-rate", "30", "--increment", "30", "--p99-ms", "1000",
        "--success-min", "0.9", "--report-dir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((folder / "report.json").read_text())
    assert printed == written["summary"]
    assert (folder / "throughput.png").stat().st_size > 0
    assert printed["transport"] == "http"
    assert printed["steps_judged"] == 2
    # A 1 s bound at 30-60 payments/s: both steps hold on any machine that runs the tests.
    assert printed["capacity_result"] == "NEVER_BROKE"
    assert printed["sustainable_rate_per_s"] == 60.0
    steps = printed["steps"]
    assert [s["offered_per_s"] for s in steps] == [30.0, 60.0]
    for step in steps:
        assert step["outcome"] == "HELD"
        assert step["offered_count"] > 0
        assert step["ok_count"] <= step["offered_count"]
        assert step["latency_p99_ms"] is not None and step["latency_p99_ms"] <= 1000
    assert steps[1]["offered_count"] > steps[0]["offered_count"]
    assert printed["sustainable_switch_rate_per_s"] == steps[1]["offered_to_switch_per_s"]
    assert printed["status_mismatches"] == 0


def _finished(offset_s: float, latency_s: float | None, committed: bool = True) -> Finished:
    return Finished(payment_index=0, offset_s=offset_s, offered_s=offset_s,
                    finished_s=offset_s + (latency_s or 0.0), latency_s=latency_s,
                    outcome="OK" if committed else "PAYEE_REJECTED", committed=committed)


def _offer(judge: StepJudge, offsets: list[float]) -> None:
    class P:
        def __init__(self, offset_s):
            self.offset_s = offset_s

    list(judge.count_offers(P(o) for o in offsets))


def test_judge_holds_a_fast_step_and_breaks_on_a_slow_one():
    judge = StepJudge(StepRate(start_rate_per_s=10, increment_per_s=10, step_s=1, steps=3),
                      p99_ms_max=100.0, success_ratio_min=0.9)
    _offer(judge, [0.1 * i for i in range(10)] + [1 + 0.05 * i for i in range(20)])
    for i in range(10):
        judge.finished(_finished(0.1 * i, 0.010))
    assert judge.judge(0) is True
    for i in range(20):
        judge.finished(_finished(1 + 0.05 * i, 0.300))  # 300 ms > the 100 ms bound
    assert judge.judge(1) is False
    verdict = judge.verdict
    assert verdict.result.name == "FOUND"
    assert verdict.sustainable_rate_per_s == 10
    assert [s.outcome.name for s in verdict.steps] == ["HELD", "P99_ABOVE_BOUND"]


def test_judge_counts_still_open_payments_as_slow_and_not_ok():
    judge = StepJudge(StepRate(start_rate_per_s=100, increment_per_s=100, step_s=1, steps=2),
                      p99_ms_max=50.0, success_ratio_min=0.5)
    _offer(judge, [0.01 * i for i in range(100)])
    for i in range(97):
        judge.finished(_finished(0.01 * i, 0.001))
    assert judge.judge(0) is False  # 3 % open: p99 lands on the open ones
    assert judge.lower_bound == [True]
    sample = judge.samples[0]
    assert (sample.offered_count, sample.ok_count) == (100, 97)
    assert sample.latency_p99_ms >= judge.judge_wait_s * 1000 * 0.99
    assert judge.verdict.result.name == "BROKE_AT_FIRST_STEP"
    # Answers arriving after their step was judged change nothing.
    judge.finished(_finished(0.99, 0.001))
    assert judge.samples[0].ok_count == 97 and judge.tallies[0].ok == 97


def test_judge_breaks_on_failures_even_when_fast():
    judge = StepJudge(StepRate(start_rate_per_s=10, increment_per_s=10, step_s=1, steps=2),
                      p99_ms_max=100.0, success_ratio_min=0.99)
    _offer(judge, [0.1 * i for i in range(10)])
    for i in range(10):
        judge.finished(_finished(0.1 * i, 0.001, committed=i != 3))
    assert judge.judge(0) is False
    assert judge.verdict.steps[0].outcome.name == "SUCCESS_BELOW_BOUND"


def test_step_profile_overrides_and_checks():
    profile = step_profile(load_profile("step"), step_s=3, steps=4, start_rate_per_s=50,
                           increment_per_s=25)
    assert profile.rate == StepRate(start_rate_per_s=50, increment_per_s=25, step_s=3, steps=4)
    assert profile.duration_s == 12 and profile.arrivals == "even" and profile.spike is None
    with pytest.raises(ValueError, match="--step-s"):
        step_profile(load_profile("quick"), steps=2, start_rate_per_s=1, increment_per_s=1)
    with pytest.raises(ValueError, match="above"):
        step_profile(load_profile("step"), start_rate_per_s=90_000, increment_per_s=90_000)


@pytest.mark.parametrize("arguments, message", [
    (["--p99-ms", "0"], "--p99-ms"),
    (["--p99-ms", "nan"], "--p99-ms"),
    (["--success-min", "1.5"], "--success-min"),
    (["--steps", "0"], "steps"),
    (["--increment", "-1"], "increment"),
    (["--profile", "quick"], "--step-s"),
    (["--profile", "/no/such/file.toml"], "cannot read"),
])
def test_bad_step_options_are_refused_before_anything_starts(arguments, message, tmp_path):
    folder = tmp_path / "report"
    result = CliRunner().invoke(bench, ["step", *arguments, "--report-dir", str(folder)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not folder.exists()
