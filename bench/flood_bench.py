"""`ponte bench flood`: one participant floods status queries; do another's payments notice?

Issue 18.6: 3,000 pipelined status queries on one connection once slowed another
participant's payments to a 931 ms maximum. The switch now holds a flood back instead of
refusing it: a connection with 64 awaited queries is not read until answers free room
(TCP back-pressure), and each participant's queries are paced at
`status_rate_per_participant` (docs/stream-protocol.md, "Flow control"). This bench shows
what that buys, with real processes (`--status-rate 0` turns the pacing off to compare):

- a switch process (`switch.launcher.SwitchProcess`, durable file journal);
- the *victim*: bank_a and bank_b paying each other by alias at a fixed rate, every payment's
  latency measured (this process);
- the *flooder*: bank_c in its own process, keeping `--pipelined` status queries
  outstanding on one connection, as fast as the switch answers (or refuses) them.

Phases alternate — baseline (flooder idle), flood — `--runs` times, each `--seconds` long,
the first second of each phase dropped. Printed: the victim's p50/p99/max per phase, the
medians over runs, the ratio of flood p99 to baseline p99 (same command, same switch), and
the flooder's answered and SERVER_BUSY rates.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time

import click

from bench.recovery_bench import (
    ALIASES,
    CURRENCY,
    FUNDING_MINOR,
    LEDGER_ID,
    _clients,
    _load,
    _register,
)
from switch.launcher import SwitchProcess, sim_server_config

RATE = 2_000.0
SECONDS = 15.0
SECONDS_QUICK = 5.0
RUNS = 3
RUNS_QUICK = 2
PIPELINED = 3_000
WARMUP_S = 1.0


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- the flooder (its own process) ----------------------------------------------------------


async def _flood(port: int, api_key: str, payer_id: int, pipelined: int, seconds: float
                 ) -> dict:
    from connectors.sdk.stream_client import StreamClient

    client = await StreamClient.connect("127.0.0.1", port, api_key=api_key)
    counts = {"answered": 0, "server_busy": 0, "other": 0}
    window = asyncio.Semaphore(pipelined)
    deadline = time.monotonic() + seconds

    async def one(index: int) -> None:
        try:
            answer = await client.status(payer_id, f"flood-{index}")
            result = getattr(getattr(answer, "result", None), "name", "")
            counts["server_busy" if result == "SERVER_BUSY" else "answered"] += 1
        except Exception:  # noqa: BLE001 - counted, the flood goes on
            counts["other"] += 1
        finally:
            window.release()

    tasks = set()
    index = 0
    try:
        while time.monotonic() < deadline:
            await window.acquire()
            task = asyncio.ensure_future(one(index))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            index += 1
        if tasks:
            await asyncio.wait(tasks, timeout=10)
    finally:
        await client.close()
    return {**counts, "sent": index, "seconds": seconds}


def _flooder_main(port: int, api_key: str, payer_id: int, pipelined: int, seconds: float,
                  out) -> None:
    import uvloop

    out.put(uvloop.run(_flood(port, api_key, payer_id, pipelined, seconds)))


# -- the victim (this process) --------------------------------------------------------------


async def _victim(port: int, keys: dict[str, str], rate: float, seconds: float,
                  tag: str) -> list[float]:
    """Payments at exactly `rate` for `seconds` (recovery_bench's paced load): latencies
    (ms) after the warm-up."""
    samples = await _load(port, keys, rate, seconds, tag)
    # The warm-up is counted by schedule (the payments due in its first second), not by
    # measured submission times, whose jitter would move one payment in or out of it.
    return [latency_ns / 1e6 for _, latency_ns in samples[int(rate * WARMUP_S):]]


async def _register_aliases(port: int, keys: dict[str, str]) -> None:
    clients = await _clients(port, keys)
    try:
        await _register(clients)
    finally:
        for client in clients.values():
            await client.close()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far (Linux)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _phase(port: int, keys: dict[str, str], rate: float, seconds: float, tag: str,
           flooder: dict | None, switch_pid: int) -> dict:
    process = out = None
    cpu_before, started = _cpu_s(switch_pid), time.monotonic()
    if flooder is not None:
        context = multiprocessing.get_context("spawn")
        out = context.Queue()
        process = context.Process(target=_flooder_main, args=(
            port, flooder["api_key"], flooder["participant_id"], flooder["pipelined"],
            seconds + 0.5, out), daemon=True)
        process.start()
        time.sleep(0.5)  # its connection up and the flood running before the victim starts
    try:
        import uvloop

        latencies = uvloop.run(_victim(port, keys, rate, seconds, tag))
        switch_cpu = (_cpu_s(switch_pid) - cpu_before) / (time.monotonic() - started)
    finally:
        flood = None
        if process is not None:
            flood = out.get(timeout=60)
            process.join(10)
    phase = {"payments": len(latencies), "p50_ms": round(_percentile(latencies, 0.50), 2),
             "p99_ms": round(_percentile(latencies, 0.99), 2),
             "max_ms": round(max(latencies), 2),
             "switch_cpu_share": round(switch_cpu, 3)}  # CPU seconds per second, the phase
    if flood is not None:
        phase["flood"] = {"queries_sent": flood["sent"],
                          "answered_per_s": round(flood["answered"] / flood["seconds"]),
                          "server_busy_per_s": round(flood["server_busy"] / flood["seconds"]),
                          "errors": flood["other"]}
    return phase


def run_flood(*, quick: bool, rate: float, seconds: float | None, runs: int | None,
              pipelined: int, status_rate: float | None = None, data_dir: str | None = None,
              console=None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    seconds = seconds or (SECONDS_QUICK if quick else SECONDS)
    runs = runs or (RUNS_QUICK if quick else RUNS)
    root = tempfile.mkdtemp(prefix="ponte-bench-flood-", dir=data_dir)
    extra = {} if status_rate is None else {"status_rate_per_participant": status_rate}
    switch = SwitchProcess(sim_server_config(os.path.join(root, "switch"),
                                             snapshots_enabled=False, **extra))
    switch.start()
    try:
        switch.add_currency(CURRENCY, LEDGER_ID, "prefunded_rtgs")
        created = {name: switch.onboard_participant(name, "bank", [CURRENCY],
                                                    funding_minor=FUNDING_MINOR)
                   for name in (*ALIASES, "bank_c")}
        keys = {name: created[name]["api_key"] for name in ALIASES}
        flooder = {"api_key": created["bank_c"]["api_key"], "pipelined": pipelined,
                   "participant_id": created["bank_c"]["participant_id"]}
        asyncio.run(_register_aliases(switch.stream_port, keys))
        phases: dict[str, list[dict]] = {"baseline": [], "flood": []}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task(f"{runs} x (baseline, flood) at {rate:,.0f}/s",
                                     total=2 * runs)
            for run in range(runs):
                for name in ("baseline", "flood"):
                    phases[name].append(_phase(
                        switch.stream_port, keys, rate, seconds, f"{name[0]}{run}",
                        flooder if name == "flood" else None, switch.pid))
                    progress.advance(task)
    finally:
        code = switch.stop()
        log_tail = switch.log_tail() if code != 0 else ""
        shutil.rmtree(root, ignore_errors=True)
    if code != 0:
        raise RuntimeError(f"the switch exited with {code}: {log_tail}")

    def median(name: str, field: str) -> float:
        return round(statistics.median(p[field] for p in phases[name]), 2)

    result = {"rate_per_s": rate, "seconds_per_phase": seconds, "runs": runs,
              "data_dir": data_dir or tempfile.gettempdir(),
              "pipelined_queries": pipelined, "status_rate_per_participant": status_rate,
              "phases": phases}
    for name in phases:
        result[name] = {field: median(name, field)
                        for field in ("p50_ms", "p99_ms", "max_ms", "switch_cpu_share")}
        p99s = [p["p99_ms"] for p in phases[name]]
        result[name]["p99_range_ms"] = [min(p99s), max(p99s)]
    # The noise is what the baseline runs spread over (the journal's fsync stalls on a
    # shared disk move a phase's p99 by several times): the flood's median p99 is within
    # noise when no higher than the slowest baseline run.
    result["flood_p99_within_baseline_range"] = (
        result["flood"]["p99_ms"] <= result["baseline"]["p99_range_ms"][1])
    result["flood"]["answered_per_s"] = statistics.median(
        p["flood"]["answered_per_s"] for p in phases["flood"])
    result["flood"]["server_busy_per_s"] = statistics.median(
        p["flood"]["server_busy_per_s"] for p in phases["flood"])
    result["p99_ratio_flood_vs_baseline"] = round(
        result["flood"]["p99_ms"] / result["baseline"]["p99_ms"], 3)
    return result


@click.command("flood")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
@click.option("--quick", is_flag=True,
              help=f"{RUNS_QUICK} runs of {SECONDS_QUICK:.0f} s phases (under a minute).")
@click.option("--rate", type=click.FloatRange(min=10.0), default=RATE, show_default=True,
              help="The victim's payments per second.")
@click.option("--seconds", type=click.FloatRange(min=2.0), default=None,
              help=f"Seconds per phase [{SECONDS:.0f}; quick {SECONDS_QUICK:.0f}].")
@click.option("--runs", type=click.IntRange(1, 20), default=None,
              help=f"(baseline, flood) pairs [{RUNS}; quick {RUNS_QUICK}].")
@click.option("--pipelined", type=click.IntRange(1, 100_000), default=PIPELINED,
              show_default=True, help="Status queries the flooder keeps outstanding.")
@click.option("--status-rate", type=click.FloatRange(min=0.0), default=None,
              help="The switch's `status_rate_per_participant` [its default]; 0 turns the "
                   "pacing off, to see what it buys.")
@click.option("--data-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Where the switch's journal goes [the system's temp dir]. A tmpfs "
                   "(/dev/shm) takes the disk's fsync stalls out of the comparison, leaving "
                   "what the flood costs in CPU and queueing.")
def flood_command(as_json, quick, rate, seconds, runs, pipelined, status_rate,
                  data_dir) -> None:
    """One participant floods status queries on one connection while two others pay each
    other at a fixed rate: their p99 with and without the flood (issue 18.6)."""
    from rich.console import Console

    console = Console(stderr=True)
    result = run_flood(quick=quick, rate=rate, seconds=seconds, runs=runs,
                       pipelined=pipelined, status_rate=status_rate, data_dir=data_dir,
                       console=console)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    base, flood = result["baseline"], result["flood"]
    console.print(f"victim at {rate:,.0f} payments/s, medians of {result['runs']} runs: "
                  f"p99 {base['p99_ms']} ms without the flood, {flood['p99_ms']} ms with it "
                  f"(ratio {result['p99_ratio_flood_vs_baseline']}); max {base['max_ms']} vs "
                  f"{flood['max_ms']} ms")
    console.print(f"the switch's CPU (seconds per second): {base['switch_cpu_share']} "
                  f"without the flood, {flood['switch_cpu_share']} with it")
    console.print(f"p99 range over runs: {base['p99_range_ms']} ms without, "
                  f"{flood['p99_range_ms']} ms with; flood median within the baseline's "
                  f"range: {result['flood_p99_within_baseline_range']}")
    console.print(f"flooder ({pipelined:,} queries outstanding): {flood['answered_per_s']:,}"
                  f" answered/s, {flood['server_busy_per_s']:,} SERVER_BUSY/s")
