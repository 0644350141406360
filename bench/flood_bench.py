"""`ponte bench flood`: one participant floods status queries; do another's payments notice?

Issue 18.6: 3,000 pipelined status queries on one connection once slowed another
participant's payments to a 931 ms maximum. The switch now bounds queries per connection
and per participant (`status_per_participant_max`, docs/stream-protocol.md). This bench
shows what that buys, with real processes:

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


def _phase(port: int, keys: dict[str, str], rate: float, seconds: float, tag: str,
           flooder: dict | None) -> dict:
    process = out = None
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
    finally:
        flood = None
        if process is not None:
            flood = out.get(timeout=60)
            process.join(10)
    phase = {"payments": len(latencies), "p50_ms": round(_percentile(latencies, 0.50), 2),
             "p99_ms": round(_percentile(latencies, 0.99), 2),
             "max_ms": round(max(latencies), 2)}
    if flood is not None:
        phase["flood"] = {"queries_sent": flood["sent"],
                          "answered_per_s": round(flood["answered"] / flood["seconds"]),
                          "server_busy_per_s": round(flood["server_busy"] / flood["seconds"]),
                          "errors": flood["other"]}
    return phase


def run_flood(*, quick: bool, rate: float, seconds: float | None, runs: int | None,
              pipelined: int, console=None) -> dict:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    seconds = seconds or (SECONDS_QUICK if quick else SECONDS)
    runs = runs or (RUNS_QUICK if quick else RUNS)
    root = tempfile.mkdtemp(prefix="ponte-bench-flood-")
    switch = SwitchProcess(sim_server_config(os.path.join(root, "switch"),
                                             snapshots_enabled=False))
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
                        flooder if name == "flood" else None))
                    progress.advance(task)
    finally:
        code = switch.stop()
    if code != 0:
        raise RuntimeError(f"the switch exited with {code}: {switch.log_tail()}")

    def median(name: str, field: str) -> float:
        return round(statistics.median(p[field] for p in phases[name]), 2)

    result = {"rate_per_s": rate, "seconds_per_phase": seconds, "runs": runs,
              "pipelined_queries": pipelined, "phases": phases}
    for name in phases:
        result[name] = {field: median(name, field) for field in ("p50_ms", "p99_ms", "max_ms")}
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
def flood_command(as_json, quick, rate, seconds, runs, pipelined) -> None:
    """One participant floods status queries on one connection while two others pay each
    other at a fixed rate: their p99 with and without the flood (issue 18.6)."""
    from rich.console import Console

    console = Console(stderr=True)
    result = run_flood(quick=quick, rate=rate, seconds=seconds, runs=runs,
                       pipelined=pipelined, console=console)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    base, flood = result["baseline"], result["flood"]
    console.print(f"victim at {rate:,.0f} payments/s, medians of {result['runs']} runs: "
                  f"p99 {base['p99_ms']} ms without the flood, {flood['p99_ms']} ms with it "
                  f"(ratio {result['p99_ratio_flood_vs_baseline']}); max {base['max_ms']} vs "
                  f"{flood['max_ms']} ms")
    console.print(f"flooder ({pipelined:,} queries outstanding): {flood['answered_per_s']:,}"
                  f" answered/s, {flood['server_busy_per_s']:,} SERVER_BUSY/s")
