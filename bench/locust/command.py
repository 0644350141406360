"""`ponte bench locust`: start a rig, run locust headless against it (one process, or a
master and `--workers` workers), stop everything, and write a report folder: locust's own
CSV files and HTML page, plus report.json/report.md/plots built from locust's per-second
history of the transfer step and the switch's CPU and memory.

Latency percentiles in the series are locust's "current" percentiles (a window of the last
seconds, locust's own definition); the summary's per-step figures are locust's whole-run
figures from its stats CSV. Locust paces users closed-loop (`--user-rate` payments per
second per user at most), so the offered rate is users x user rate only while the switch
keeps up; `ponte bench step` is the open-loop capacity search.

It must never leave a locust, switch or simulator process running.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import click

from bench.locust import limits
from connectors.sim.population import ProfileError, load_profile
from bench.run_report import default_report_dir, finish_run

LOCUSTFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "locustfile.py")
USER_CLASSES = {"stream": "StreamPayer", "http": "HttpPayer"}
TRANSFER_NAMES = {"stream": ("STREAM", "transfer"), "http": ("E2E", "transfer")}
WORKERS_MAX = limits.SLOTS_MAX
LOCUST_EXTRA_S = 60.0  # beyond --seconds: start-up, spawn and shutdown of locust itself


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None  # locust writes "N/A" for a window with no requests
    return value


def read_stats(path: str) -> dict:
    """locust's <prefix>_stats.csv as {"TYPE name": figures} (the whole run)."""
    result = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            key = f"{row['Type']} {row['Name']}".strip()
            result[key] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "requests_per_s": _number(row["Requests/s"]),
                "average_ms": _number(row["Average Response Time"]),
                "median_ms": _number(row["Median Response Time"]),
                "p90_ms": _number(row["90%"]),
                "p99_ms": _number(row["99%"]),
                "max_ms": _number(row["Max Response Time"]),
                "average_response_bytes": _number(row["Average Content Size"]),
            }
    return result


def history_series(path: str, request_type: str, name: str, offered_per_s: float,
                   resources=(), resource_offset_s: float = 0.0,
                   started_unix_s: float = 0.0) -> list[dict]:
    """One SeriesSample (as a dict) per second of locust's full history for one request
    name: completed from the growth of its total count, latency from its window
    percentiles, the switch's CPU and RSS from the sampler."""
    rows = []
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if row["Type"] == request_type and row["Name"] == name:
                rows.append(row)
    by_second: dict[int, dict] = {}
    for row in rows:
        by_second[int(row["Timestamp"])] = row  # the last row of a second wins
    ordered = sorted(by_second.items())
    resources = sorted(resources, key=lambda r: r.t_s)
    series = []
    previous_total = previous_failures = 0
    cursor = 0
    latest = resources[0] if resources else None
    for timestamp, row in ordered:
        total = int(row["Total Request Count"])
        failures = int(row["Total Failure Count"])
        done = max(0, total - previous_total)
        failed = max(0, failures - previous_failures)
        previous_total, previous_failures = total, failures
        t_s = float(timestamp - int(started_unix_s)) if started_unix_s else float(timestamp)
        while cursor < len(resources) and resources[cursor].t_s + resource_offset_s <= t_s + 1:
            latest = resources[cursor]
            cursor += 1
        p50, p90, p99 = (_number(row["50%"]), _number(row["90%"]), _number(row["99%"]))
        if done == 0:
            p50 = p90 = p99 = None
        outcomes = {}
        if done - failed:
            outcomes["OK"] = done - failed
        if failed:
            outcomes["FAILED"] = failed
        series.append({
            "t_s": t_s, "offered_per_s": offered_per_s, "completed_per_s": float(done),
            "latency_p50_ms": p50, "latency_p90_ms": p90, "latency_p99_ms": p99,
            "switch_cpu_percent": latest.cpu_percent if latest else 0.0,
            "switch_rss_bytes": latest.rss_bytes if latest else 0,
            "outcomes": outcomes,
        })
    # Seconds before the first user started may predate the run's zero.
    return [s for s in series if s["t_s"] >= 0.0]


def locust_argv(*, transport: str, users: int, spawn_rate: float, seconds: float,
                csv_prefix: str, html_path: str, role: str = "local",
                master_port: int = 0, workers: int = 0) -> list[str]:
    argv = [sys.executable, "-m", "locust", "-f", LOCUSTFILE]
    if role == "worker":
        return argv + ["--worker", "--master-host", "127.0.0.1", "--master-port",
                       str(master_port), USER_CLASSES[transport]]
    argv += ["--headless", "-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds:g}s",
             "--csv", csv_prefix, "--csv-full-history", "--html", html_path, "--only-summary",
             "--stop-timeout", "10"]
    if role == "master":
        argv += ["--master", "--expect-workers", str(workers), "--master-bind-host",
                 "127.0.0.1", "--master-bind-port", str(master_port)]
    return argv + [USER_CLASSES[transport]]


def run_locust(*, profile: str, transport: str, users: int, spawn_rate: float, seconds: float,
               user_rate_per_s: float, workers: int, seed: int, report_dir: str,
               echo=print) -> tuple[dict, object]:
    """Rig + locust (+ workers); the summary as written to report.json, and the files."""
    from bench.locust.rig import Rig
    from bench.sampler import ResourceSampler
    from switch.server.launcher import free_port

    os.makedirs(report_dir, exist_ok=True)
    csv_prefix = os.path.join(report_dir, "locust")
    html_path = os.path.join(report_dir, "locust.html")
    with Rig(profile, seed=seed, slots=max(1, workers), http=transport == "http") as rig:
        environment = dict(os.environ, PONTE_RIG=rig.rig_path,
                           PONTE_USER_RATE=repr(float(user_rate_per_s)))
        log_path = os.path.join(report_dir, "locust.log")
        processes: list[subprocess.Popen] = []
        sampler = ResourceSampler(rig.info.switch_pid, interval_s=1.0)
        started_unix_s = time.time()
        resource_offset_s = 0.0
        with open(log_path, "ab") as log:
            try:
                master_port = free_port() if workers else 0
                role = "master" if workers else "local"
                processes.append(subprocess.Popen(
                    locust_argv(transport=transport, users=users, spawn_rate=spawn_rate,
                                seconds=seconds, csv_prefix=csv_prefix, html_path=html_path,
                                role=role, master_port=master_port, workers=workers),
                    env=environment, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
                for _ in range(workers):
                    processes.append(subprocess.Popen(
                        locust_argv(transport=transport, users=users, spawn_rate=spawn_rate,
                                    seconds=seconds, csv_prefix=csv_prefix,
                                    html_path=html_path, role="worker",
                                    master_port=master_port),
                        env=environment, stdout=log, stderr=subprocess.STDOUT,
                        start_new_session=True))
                sampler.start()
                echo(f"locust: {users} {USER_CLASSES[transport]} users"
                     f"{f' on {workers} workers' if workers else ''} for {seconds:g} s; "
                     f"log {log_path}")
                code = processes[0].wait(seconds + LOCUST_EXTRA_S)
                for worker in processes[1:]:
                    worker.wait(LOCUST_EXTRA_S)
            finally:
                sampler.stop()
                for process in processes:
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        try:
                            process.wait(10)
                        except subprocess.TimeoutExpired:
                            process.kill()
                            process.wait(10)
        resources = sampler.samples()
    # locust exits 1 when any request failed: that is a result, not a crash, as long as
    # it wrote its statistics.
    stats_path = csv_prefix + "_stats.csv"
    if not os.path.exists(stats_path):
        raise click.ClickException(f"locust exited with {code} and wrote no statistics; "
                                   f"see {log_path}")
    stats = read_stats(stats_path)
    request_type, name = TRANSFER_NAMES[transport]
    series = history_series(csv_prefix + "_stats_history.csv", request_type, name,
                            offered_per_s=users * user_rate_per_s, resources=resources,
                            resource_offset_s=resource_offset_s, started_unix_s=started_unix_s)
    transfer = stats.get(f"{request_type} {name}", {})
    summary = {
        "kind": "locust",
        "transport": transport,
        "profile": profile,
        "seed": seed,
        "users": users,
        "workers": workers,
        "user_rate_per_s": user_rate_per_s,
        "seconds": seconds,
        "locust_exit_code": code,
        "transfers": transfer.get("requests", 0),
        "transfer_failures": transfer.get("failures", 0),
        "transfers_per_s": transfer.get("requests_per_s"),
        "transfer_p50_ms": transfer.get("median_ms"),
        "transfer_p99_ms": transfer.get("p99_ms"),
        "requests": stats,
        "switch_peak_rss_bytes": max((r.rss_bytes for r in resources), default=0),
        "locust_files": {"stats_csv": stats_path, "html": html_path, "log": log_path},
    }
    if not series:
        series = [{"t_s": 0.0, "offered_per_s": users * user_rate_per_s,
                   "completed_per_s": 0.0}]
    title = (f"Ponte locust run: {users} {USER_CLASSES[transport]} users for {seconds:g} s")
    return finish_run(report_dir, series, summary, title)


@click.command("locust")
@click.option("--profile", default="quick", show_default=True,
              help="Population (connectors/sim/profiles name or TOML path) the users pay within.")
@click.option("--transport", type=click.Choice(["stream", "http"]), default="stream",
              show_default=True)
@click.option("--users", type=int, default=20, show_default=True)
@click.option("--spawn-rate", type=float, default=10.0, show_default=True)
@click.option("--seconds", type=float, default=20.0, show_default=True)
@click.option("--user-rate", "user_rate_per_s", type=float, default=1.0, show_default=True,
              help="Payments per second per user at most.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="0: one locust process; N: a master and N workers.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--report-dir", default=None, help="Report folder [reports/locust-<time>/].")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def locust_command(profile, transport, users, spawn_rate, seconds, user_rate_per_s, workers,
                   seed, report_dir, as_json) -> None:
    """Run locust headless against a fresh switch and payee simulators; report folder."""
    if not 1 <= users <= 100_000:
        raise click.UsageError("--users must be in [1, 100000]")
    if not 0 <= workers <= WORKERS_MAX:
        raise click.UsageError(f"--workers must be in [0, {WORKERS_MAX}]")
    if not 0 < seconds <= limits.LOCUST_RUN_SECONDS_MAX:
        raise click.UsageError(f"--seconds must be in (0, {limits.LOCUST_RUN_SECONDS_MAX}]")
    if not 0 < user_rate_per_s <= 1000 or not spawn_rate > 0:
        raise click.UsageError("--user-rate must be in (0, 1000] and --spawn-rate above 0")
    try:
        load_profile(profile)  # a bad profile is refused before anything is created
    except ProfileError as error:
        raise click.UsageError(str(error)) from None
    folder = report_dir or default_report_dir("locust")
    try:
        summary, files = run_locust(
            profile=profile, transport=transport, users=users, spawn_rate=spawn_rate,
            seconds=seconds, user_rate_per_s=user_rate_per_s, workers=workers, seed=seed,
            report_dir=folder, echo=lambda text: click.echo(text, err=True))
    except ProfileError as error:
        raise click.UsageError(str(error)) from None
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for key, row in summary["requests"].items():
            click.echo(f"  {key:<34} {row['requests']:>7} req  {row['failures']:>5} fail  "
                       f"p50 {row['median_ms']} ms  p99 {row['p99_ms']} ms")
    click.echo(f"report: {os.path.abspath(files.folder)}", err=True)
