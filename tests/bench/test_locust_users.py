"""The locust users against a real rig: a distributed run (a master and one worker, as
separate locust processes) over the stream protocol, `ponte bench locust` over HTTP, the
reading of locust's CSV files, and refusals of bad input.

Locust monkey-patches whatever imports it, so these tests run it only as processes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess

import pytest
from click.testing import CliRunner

from bench.cli import bench
from bench.locust.command import history_series, locust_argv, read_stats
from bench.locust.rig import Rig, read_rig
from connectors.sim.population import decode_profile
from switch.server.launcher import free_port
from tests.bench.test_soak_bench import TINY_PROFILE

RUN_SECONDS = 5


def _rows(path) -> dict[str, dict]:
    with open(path, newline="") as file:
        return {f"{row['Type']} {row['Name']}".strip(): row for row in csv.DictReader(file)}


def test_a_master_and_one_worker_drive_resolve_transfer_status_over_the_stream(tmp_path):
    profile = decode_profile(TINY_PROFILE)
    with Rig(profile, slots=1, http=False, work_dir=str(tmp_path / "rig")) as rig:
        assert read_rig(rig.rig_path) == rig.info
        assert oct(os.stat(rig.rig_path).st_mode & 0o777) == "0o600"  # it holds API keys
        environment = dict(os.environ, PONTE_RIG=rig.rig_path, PONTE_USER_RATE="5")
        port = free_port()
        prefix = str(tmp_path / "dist")
        common = dict(transport="stream", users=4, spawn_rate=4, seconds=RUN_SECONDS,
                      csv_prefix=prefix, html_path=str(tmp_path / "dist.html"),
                      master_port=port)
        with open(tmp_path / "master.log", "wb") as master_log, \
                open(tmp_path / "worker.log", "wb") as worker_log:
            master = subprocess.Popen(locust_argv(role="master", workers=1, **common),
                                      env=environment, stdout=master_log,
                                      stderr=subprocess.STDOUT)
            worker = subprocess.Popen(locust_argv(role="worker", **common), env=environment,
                                      stdout=worker_log, stderr=subprocess.STDOUT)
            try:
                assert master.wait(RUN_SECONDS + 60) == 0, (tmp_path / "master.log").read_text()
                assert worker.wait(30) == 0, (tmp_path / "worker.log").read_text()
            finally:
                for process in (master, worker):
                    if process.poll() is None:
                        process.kill()
                        process.wait(10)
    master_text = (tmp_path / "master.log").read_text()
    assert "1 workers connected" in master_text
    rows = _rows(prefix + "_stats.csv")
    for name in ("STREAM resolve", "STREAM transfer", "STREAM status"):
        assert int(rows[name]["Request Count"]) > 0, name
        assert int(rows[name]["Failure Count"]) == 0, name
        assert float(rows[name]["Average Content Size"]) > 0, name  # frame bytes reported
    # Every payment's transfer took at least as long as nothing; the switch answered
    # through its durable journal, so not in zero time.
    assert float(rows["STREAM transfer"]["Min Response Time"]) > 0
    assert int(rows["STREAM resolve"]["Request Count"]) >= int(
        rows["STREAM transfer"]["Request Count"])


def test_ponte_bench_locust_over_http_writes_a_report_folder(tmp_path):
    profile_path = tmp_path / "tiny.toml"
    profile_path.write_text(TINY_PROFILE)
    folder = tmp_path / "locust-report"
    result = CliRunner().invoke(bench, [
        "locust", "--profile", str(profile_path), "--transport", "http", "--users", "4",
        "--spawn-rate", "4", "--seconds", str(RUN_SECONDS), "--user-rate", "5",
        "--report-dir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = json.loads((folder / "report.json").read_text())
    assert printed == written["summary"]
    assert printed["transfers"] > 0
    assert printed["transfer_failures"] == 0
    requests = printed["requests"]
    for name in ("GET /aliases/[type]/[value]", "POST /transfers",
                 "GET /transfers/[payer]/[id]", "E2E transfer"):
        assert requests[name]["requests"] > 0, name
        assert requests[name]["failures"] == 0, name
    for name in ("locust.html", "locust_stats.csv", "throughput.png", "report.md"):
        assert (folder / name).stat().st_size > 0, name
    assert sum(s["completed_per_s"] for s in written["series"]) <= printed["transfers"]
    assert printed["switch_peak_rss_bytes"] > 0


def test_read_stats_and_history_series(tmp_path):
    stats = tmp_path / "x_stats.csv"
    stats.write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,"
        "66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
        "STREAM,transfer,10,1,5,6.5,1,30,180,2.5,0.25,5,6,7,8,9,20,25,30,30,30,30\n")
    figures = read_stats(str(stats))["STREAM transfer"]
    assert (figures["requests"], figures["failures"], figures["p99_ms"]) == (10, 1, 30.0)
    history = tmp_path / "x_stats_history.csv"
    header = ("Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,"
              "98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,"
              "Total Median Response Time,Total Average Response Time,Total Min Response Time,"
              "Total Max Response Time,Total Average Content Size\n")
    lines = [
        "1000,4,,Aggregated,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0,0,0,0",
        "1001,4,STREAM,transfer,3,0,5,5,5,5,6,6,7,7,7,7,7,3,0,5,5,1,7,180",
        "1002,4,STREAM,transfer,4,1,5,5,6,6,8,9,9,9,9,9,9,7,1,5,5,1,9,180",
        "1003,4,STREAM,transfer,4,1,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,7,1,5,5,1,9,180",
    ]
    history.write_text(header + "\n".join(lines) + "\n")
    series = history_series(str(history), "STREAM", "transfer", offered_per_s=4.0,
                            started_unix_s=1000.5)
    assert [s["t_s"] for s in series] == [1.0, 2.0, 3.0]
    assert [s["completed_per_s"] for s in series] == [3.0, 4.0, 0.0]
    assert series[1]["outcomes"] == {"OK": 3, "FAILED": 1}
    assert series[1]["latency_p99_ms"] == 9.0
    assert series[2]["latency_p99_ms"] is None


@pytest.mark.parametrize("arguments, message", [
    (["--users", "0"], "--users"),
    (["--workers", "99"], "--workers"),
    (["--seconds", "0"], "--seconds"),
    (["--user-rate", "0"], "--user-rate"),
    (["--profile", "no-such-profile"], "no-such-profile"),
])
def test_bad_locust_options_are_refused_before_anything_starts(arguments, message, tmp_path):
    folder = tmp_path / "report"
    result = CliRunner().invoke(bench, ["locust", *arguments, "--report-dir", str(folder)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not folder.exists()
