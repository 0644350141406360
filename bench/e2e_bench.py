"""`ponte bench e2e`: end-to-end throughput and latency with real processes on this box.

For each offered rate: a switch process (durable hash-chained file journal, fdatasync per
group commit; embedded directory), the quick population's two banks and two wallets in one
simulator process speaking the stream protocol through the SDK's pipelined StreamClient,
payments offered at exactly `offered_per_s` (evenly spaced, on-us payments left out),
answered at once by the payees. Latency is the payer's: from handing the transfer to the
SDK to receiving its final outcome (so it includes two durable commits). The switch's RSS
and CPU are sampled with bench/sampler.py; each run's books are reconciled with the switch's
ledger and the run fails loudly if they differ. The HTTP transport is bench/e2e_http.py
(`run_http`), owned by the HTTP connector.

    --json   {"results": [{"transport", "offered_per_s", "transfers_per_s", "p50_ms",
              "p90_ms", "p99_ms", "success_rate", "peak_rss_bytes", "host_freezes",
              "host_freeze_count", "host_freeze_ms_total"}, ...]}

`host_freezes` (stream runs): the moments the whole machine was paused by its host (a
virtual machine stopped: every process, so the payments in flight wait with it;
`bench.sampler.HostFreezes`), each {"at_s" from the traffic's start, "ms"}.

It must never measure anything but public surfaces (stream in, stream out, /admin positions).
"""

from __future__ import annotations

import json
import os
import tempfile
import time

import click
import msgspec

from connectors.sim.population import load_profile
from bench.sampler import HostFreezes, ResourceSampler
from connectors.sim.books import BooksReport, reconcile
from switch.launcher import (
    SimProcess,
    SwitchProcess,
    free_port,
    join_mobilemoney_wallet,
    onboard_population,
    sim_server_config,
)

PROFILE = "quick"
LEDGER_ID = 404
FUNDING_MINOR = 10**15  # AMOUNT_MINOR_MAX: one deposit
OFFERED_DEFAULT = (10_000, 25_000)
OFFERED_QUICK = (2_000, 10_000)
SECONDS_DEFAULT = 20.0
SECONDS_QUICK = 5.0
# The switch's tables for a bench run: the core keeps a final transfer until its expiry has
# passed, so expiries of 15 s at 25,000/s keep ~375,000 transfers retained for idempotency
# (~1.3 KB each); in flight stays far below its bound. Memory is flat once they are full.
EXPIRY_S = 15.0
BENCH_CORE = {"transfers_retained_max": 1 << 19, "in_flight_max": 1 << 16}
BENCH_LEDGER = {"pending_max": 1 << 18, "transfers_retained_max": 1 << 19}


class BooksDoNotReconcile(AssertionError):
    pass


def run_stream(*, offered_per_s: float, seconds: float, seed: int = 1,
               data_dir: str | None = None, series: list | None = None,
               switch_config: dict | None = None, during=None,
               mobilemoney_wallet: bool = False) -> dict:
    """One stream run; the `--json` result dict. Appends per-second samples to `series`.
    `switch_config`: more ServerConfig fields (e.g. a PostgreSQL journal). `during(switch)`,
    when given, is called once traffic starts (the settlement bench closes windows
    meanwhile; it must return at once). `mobilemoney_wallet`: the population's first wallet
    joins through the GSMA Mobile Money API (the simulator's wallet, as in the demo) and
    pays and is paid only through it; its books are reconciled like everyone's."""
    profile = load_profile(PROFILE)
    with tempfile.TemporaryDirectory(prefix="ponte-bench-e2e-", dir=data_dir) as work_dir:
        extra = dict(switch_config or {})
        if mobilemoney_wallet:
            hub_port = free_port()
            extra.update(mobilemoney_enabled=True, mobilemoney={"port": hub_port})
        config = sim_server_config(work_dir, core=BENCH_CORE, ledger=BENCH_LEDGER, **extra)
        switch = SwitchProcess(config)
        sims = None
        sampler = None
        host = None
        try:
            switch.start()
            names = [(p.participant_id, p.kind.value) for p in profile.participants]
            credentials = onboard_population(switch, names, profile.currency, LEDGER_ID,
                                             FUNDING_MINOR)
            joined = {"name": None, "sim": {}}
            if mobilemoney_wallet:
                joined = join_mobilemoney_wallet(
                    switch, [name for name, kind in names if kind == "wallet"], credentials,
                    hub_port)
            sims = SimProcess({
                "port": switch.stream_port,
                "participants": [{"name": name, "api_key": c["api_key"],
                                  "opening_position_minor": FUNDING_MINOR,
                                  **(joined["sim"] if name == joined["name"] else {})}
                                 for name, c in credentials.items()],
                "profile": PROFILE, "seed": seed, "tps": offered_per_s, "seconds": seconds,
                "options": {"expiry_s": EXPIRY_S, "seed": seed},
            }, work_dir).start()
            sims.wait_for("ready", 300)
            if during is not None:
                during(switch)
            sampler = ResourceSampler(switch.pid, interval_s=0.5)
            sampler.start()
            host = HostFreezes()  # pauses of the whole machine, not the switch's doing
            host.start()
            traffic_started_ns = time.time_ns()
            final = None
            while True:
                record = sims.next_record(seconds + 120)
                if record is None:
                    break
                if record["type"] == "stats" and series is not None:
                    latest = sampler.latest()
                    series.append({
                        "t_s": float(len(series)),
                        "offered_per_s": float(offered_per_s),
                        "completed_per_s": float(record["interval_per_s"]),
                        "latency_p50_ms": record["p50_ms"] or None,
                        "latency_p90_ms": record["p90_ms"] or None,
                        "latency_p99_ms": record["p99_ms"] or None,
                        "switch_cpu_percent": latest.cpu_percent if latest else 0.0,
                        "switch_rss_bytes": latest.rss_bytes if latest else 0,
                        "outcomes": record["outcomes"],
                    })
                elif record["type"] == "final":
                    final = record
            sims.wait(60)
            sampler.stop()
            host.stop()  # the traffic's pauses only, not the reconciliation's
            if final is None:
                raise RuntimeError(f"the simulator gave no final report:\n{sims.stderr_tail()}")
            positions = switch.positions()
            differences = []
            for books in final["books"]:
                report = msgspec.convert(books, BooksReport)
                differences.extend(reconcile(
                    report, positions[report.participant_id]["accounts"][report.currency]))
            if differences:
                raise BooksDoNotReconcile(str(differences))
        finally:
            if sampler is not None:
                sampler.stop()
            if host is not None:
                host.stop()
            if sims is not None:
                sims.stop()
            switch.stop()
        peak_rss = max((sample.rss_bytes for sample in sampler.samples()), default=0)
        freezes = host.freezes()
        done = final["done"]
        committed = final["results"].get("COMMITTED", 0)
        return {
            "transport": "stream",
            "offered_per_s": final["offered_per_s"],
            "transfers_per_s": final["completed_per_s"],
            "p50_ms": final["p50_ms"],
            "p90_ms": final["p90_ms"],
            "p99_ms": final["p99_ms"],
            "success_rate": round(committed / done, 6) if done else 0.0,
            "peak_rss_bytes": peak_rss,
            "transfers": done,
            "results": final["results"],
            "books_reconciled": True,
            # The machine paused by its host (a VM): every process stopped, the latencies
            # of the payments in flight include it (bench.sampler.HostFreezes).
            "host_freezes": [{"at_s": round((f.started_ns - traffic_started_ns) / 1e9, 2),
                              "ms": round(f.ms)} for f in freezes],
            # The same as figures report.md shows (it leaves lists of objects to report.json).
            "host_freeze_count": len(freezes),
            "host_freeze_ms_total": round(sum(f.ms for f in freezes)),
            **({"mobilemoney_wallet": _wallet_books(final["books"], joined["name"])}
               if mobilemoney_wallet else {}),
        }


def _wallet_books(books: list[dict], name: str) -> dict:
    """What the wallet on the Mobile Money API paid and was paid (from its own books)."""
    report = next(msgspec.convert(entry, BooksReport) for entry in books
                  if entry["name"] == name)
    return {"name": name, "committed_out": report.committed_out,
            "committed_in": report.committed_in}


@click.command("e2e")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--quick", is_flag=True, help="Short runs at lower rates (under a minute).")
@click.option("--transport", type=click.Choice(["stream", "http", "all"]), default="stream",
              show_default=True)
@click.option("--offered", default=None,
              help="Comma-separated offered rates per second (stream).")
@click.option("--seconds", type=float, default=None, help="Seconds of traffic per rate.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--report-dir", "--report", "report_dir", default=None,
              help="Report folder [reports/e2e-<time>/].")
@click.option("--mobilemoney-wallet", is_flag=True,
              help="Stream runs: one of the wallets joins through the GSMA Mobile Money API "
                   "(the simulator's wallet, as in the demo).")
def e2e_command(as_json, quick, transport, offered, seconds, seed, report_dir,
                mobilemoney_wallet) -> None:
    """End-to-end: switch + simulated participants as processes, durable journal."""
    rates = OFFERED_QUICK if quick else OFFERED_DEFAULT
    if offered:
        rates = tuple(float(value) for value in offered.split(","))
    seconds = seconds or (SECONDS_QUICK if quick else SECONDS_DEFAULT)
    results = []
    series: list = []
    if transport in ("stream", "all"):
        for rate in rates:
            result = run_stream(offered_per_s=rate, seconds=seconds, seed=seed, series=series,
                                mobilemoney_wallet=mobilemoney_wallet)
            results.append(result)
            if not as_json:
                click.echo(_line(result))
    if transport in ("http", "all"):
        from bench.e2e_http import run_http

        result = run_http(seconds=seconds, quick=quick, seed=seed, series=series)
        results.append(result)
        if not as_json:
            click.echo(_line(result))
    # Every run writes its report folder; --json prints the summary exactly as report.json
    # holds it (bench/run_report.py). Each run appends its seconds to one series.
    from bench.run_report import default_report_dir, finish_run

    folder = report_dir or default_report_dir("e2e")
    written, _files = finish_run(folder, series, {"results": results},
                                 title="Ponte end-to-end bench")
    if as_json:
        click.echo(json.dumps(written))
    click.echo(f"report: {os.path.abspath(folder)}", err=True)


def _line(result: dict) -> str:
    return (f"{result['transport']:>6}  offered {result['offered_per_s']:>9,.0f}/s  "
            f"done {result['transfers_per_s']:>9,.0f}/s  p50 {result['p50_ms']:7.2f} ms  "
            f"p99 {result['p99_ms']:7.2f} ms  success {result['success_rate'] * 100:6.2f}%  "
            f"switch peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB"
            + (f"  machine paused by its host {len(result['host_freezes'])}x: "
               + ", ".join(f"{f['ms']} ms at {f['at_s']} s" for f in result["host_freezes"])
               if result.get("host_freezes") else "")
            + (f"  ({result['mobilemoney_wallet']['name']} on the Mobile Money API: paid "
               f"{result['mobilemoney_wallet']['committed_out']:,}, paid to "
               f"{result['mobilemoney_wallet']['committed_in']:,})"
               if "mobilemoney_wallet" in result else ""))
