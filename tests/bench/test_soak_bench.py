"""`ponte bench soak` against a real switch and real payee simulators (a few seconds), the
per-second series it is built from, and its refusals of bad input (typed, nothing written).
"""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from click.testing import CliRunner

from bench.cli import bench
from connectors.sim.population import decode_profile, load_profile
from bench.run_report import SecondSeries, default_report_dir, finish_run
from bench.sampler import ResourceSample
from bench.soak_bench import soak_profile

TINY_PROFILE = """
name = "tiny"
duration_s = 30
people = 400
merchants = 20
billers = 4
currency = "KES"
currency_exponent = 2
g2p_payer_participant_id = "bank_a"

[rate]
kind = "flat"
rate_per_s = 40.0

[[participants]]
participant_id = "bank_a"
kind = "bank"
people_share = 0.3
business_share = 0.5

[[participants]]
participant_id = "wallet_a"
kind = "wallet"
people_share = 0.7
business_share = 0.5

[[use_cases]]
use_case = "P2P"
share = 0.6
median_major = 1000.0
sigma = 1.0
cap_major = 250000

[[use_cases]]
use_case = "MERCHANT"
share = 0.3
median_major = 300.0
sigma = 1.0
cap_major = 250000

[[use_cases]]
use_case = "BILL"
share = 0.08
median_major = 1500.0
sigma = 0.9
cap_major = 250000

[[use_cases]]
use_case = "G2P"
share = 0.02
median_major = 2000.0
sigma = 0.35
cap_major = 20000
"""


@pytest.fixture
def tiny_profile_path(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_PROFILE)
    decode_profile(TINY_PROFILE)  # the fixture itself must be a valid profile
    return str(path)


def test_soak_runs_for_real_and_prints_what_report_json_holds(tiny_profile_path, tmp_path):
    folder = tmp_path / "soak-report"
    result = CliRunner().invoke(bench, [
        "soak", "--profile", tiny_profile_path, "--seconds", "6", "--rate", "60",
        "--transport", "stream", "--warmup-s", "1", "--samples-min", "3",
        "--report-dir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((folder / "report.json").read_text())
    # The --json figures are the report's figures, to the digit.
    assert printed == written["summary"]
    assert printed["report_dir"] == str(folder)
    for name in ("report.md", "throughput.png", "latency.png", "resources.png",
                 "outcomes.png"):
        assert (folder / name).stat().st_size > 0, name
    assert printed["kind"] == "soak" and printed["transport"] == "stream"
    assert printed["offered_total"] > 100
    assert printed["completed_total"] == printed["offered_total"]
    assert printed["committed_total"] == printed["outcomes_total"].get("OK", 0)
    assert printed["success_ratio"] > 0.95
    assert printed["status_checked"] > 0
    assert printed["status_mismatches"] == 0
    assert printed["switch_peak_rss_bytes"] > 0
    assert printed["flatness"]["result"] in ("FLAT", "THROUGHPUT_DRIFTED", "P99_ROSE",
                                             "RSS_GREW")
    series = written["series"]
    assert len(series) == 6
    assert [s["t_s"] for s in series] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert sum(s["offered_per_s"] for s in series) <= printed["offered_total"]
    assert all(s["switch_rss_bytes"] > 0 for s in series)
    assert written["series_figures"]["outcomes_total"].get("OK", 0) > 0


def test_a_run_too_short_for_the_fit_says_so(tmp_path):
    # 3 samples after a 30 s warm-up cannot show a trend: the verdict is not "flat".
    series = SecondSeries(start_s=0.0)
    for second in range(5):
        series.offered(second + 0.1)
        series.completed(second + 0.2, 0.01, "OK")
    from bench.report import flatness_verdict

    verdict = flatness_verdict(series.samples(seconds=5))
    assert verdict.result.name == "TOO_FEW_SAMPLES"
    assert verdict.flat is False


def test_second_series_buckets_percentiles_and_resources():
    series = SecondSeries(start_s=100.0)
    for i in range(100):
        series.offered(100.0 + i / 100)
        series.completed(100.0 + i / 100 + 0.001, (i + 1) / 1000, "OK")  # 1..100 ms
    series.offered(101.5)
    series.completed(101.6, None, "RESOLVE_PARTY_NOT_FOUND")
    series.completed(103.2, 0.5, "PAYEE_REJECTED")
    resources = [ResourceSample(t_s=0.5, cpu_s=0.1, cpu_percent=10.0, rss_bytes=1000),
                 ResourceSample(t_s=1.5, cpu_s=0.3, cpu_percent=20.0, rss_bytes=2000),
                 ResourceSample(t_s=2.5, cpu_s=0.6, cpu_percent=30.0, rss_bytes=3000)]
    samples = series.samples(resources, resource_offset_s=0.0)
    assert [s.t_s for s in samples] == [0.0, 1.0, 2.0, 3.0]
    first = samples[0]
    assert first.offered_per_s == 100 and first.completed_per_s == 100
    # Log-bucketed at 1 % precision: the percentiles of 1..100 ms within 2 %.
    assert first.latency_p50_ms == pytest.approx(50, rel=0.02)
    assert first.latency_p99_ms == pytest.approx(99, rel=0.02)
    assert first.latency_p50_ms <= first.latency_p90_ms <= first.latency_p99_ms
    assert (first.switch_cpu_percent, first.switch_rss_bytes) == (10.0, 1000)
    assert samples[1].outcomes == {"RESOLVE_PARTY_NOT_FOUND": 1}
    assert samples[1].latency_p99_ms is None  # nothing measured that second
    assert samples[2].completed_per_s == 0 and samples[2].switch_rss_bytes == 3000
    assert samples[3].outcomes == {"PAYEE_REJECTED": 1}
    assert series.outcomes_total == {"OK": 100, "RESOLVE_PARTY_NOT_FOUND": 1,
                                     "PAYEE_REJECTED": 1}
    assert series.total.count == 101


def test_finish_run_refuses_a_bad_series_and_writes_nothing(tmp_path):
    from bench.report import ReportInputError

    folder = tmp_path / "never"
    with pytest.raises(ReportInputError):
        finish_run(folder, [{"t_s": 1.0, "offered_per_s": 1.0, "completed_per_s": 1.0},
                            {"t_s": 0.0, "offered_per_s": 1.0, "completed_per_s": 1.0}],
                   {"kind": "soak"}, "bad")
    assert not folder.exists()


def test_default_report_dir_never_reuses_a_folder(tmp_path):
    first = default_report_dir("soak", base=tmp_path)
    assert first.startswith(str(tmp_path / "soak-"))
    (tmp_path / first.rsplit("/", 1)[1]).mkdir()
    second = default_report_dir("soak", base=tmp_path,
                                now=__import__("datetime").datetime.strptime(
                                    first.rsplit("soak-", 1)[1], "%Y%m%d-%H%M%S"))
    assert second != first and second.endswith("-2")


@pytest.mark.parametrize("arguments, message", [
    (["--rate", "-5", "--seconds", "3"], "rate"),
    (["--rate", "0", "--seconds", "3"], "rate"),
    (["--rate", "10", "--seconds", "0"], "seconds"),
    (["--profile", "no-such-profile", "--seconds", "3"], "no-such-profile"),
    (["--profile", "quick", "--seconds", "3"], "--rate"),  # diurnal: no flat rate of its own
    (["--rate", "10", "--seconds", "3", "--samples-min", "1"], "samples_min"),
])
def test_bad_soak_options_are_refused_before_anything_starts(arguments, message, tmp_path):
    folder = tmp_path / "report"
    result = CliRunner().invoke(bench, ["soak", *arguments, "--report-dir", str(folder)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not folder.exists()


def test_soak_profile_keeps_the_population_and_flattens_the_rate():
    quick = load_profile("quick")
    soak = soak_profile(quick, seconds=12.5, rate_per_s=75.0)
    assert soak.rate.rate_per_s == 75.0
    assert soak.duration_s == math.ceil(12.5)
    assert soak.spike is None
    assert soak.arrivals == "even"
    assert (soak.people, soak.participants) == (quick.people, quick.participants)
    assert msgspec.json.decode(msgspec.json.encode(soak), type=type(soak)) == soak


def test_retime_spaces_evenly_renumbers_and_cycles():
    from bench.locust.plan import Payment, retime

    def one_pass():
        for index in (7, 9):
            yield Payment(index=index, offset_s=3.3, payer_participant="bank_a",
                          payer_user_id="p1", alias_type="MSISDN", alias_value="+254700000001",
                          amount_minor=100, currency="KES", payee_participant="wallet_a")

    taken = [p for _, p in zip(range(5), retime(one_pass, 4.0))]
    assert [p.index for p in taken] == [0, 1, 2, 3, 4]  # unique transfer ids across passes
    assert [p.offset_s for p in taken] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert list(retime(lambda: iter(()), 4.0)) == []  # an empty pass ends it, never spins
