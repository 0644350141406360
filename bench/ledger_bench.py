"""`ponte bench ledger`: ledger throughput and memory, in memory and durable.

Modes: "memory-compiled" (the Cython core), "memory-pure" (the reference twin), "file" and
"postgres" (the compiled ledger behind the journal, from `bench/ledger_durable.py`).
Workloads from `bench/ledger_workloads.py`: uniform over 10,000 accounts, and hot (10 hot
accounts); batch sizes 8,189, 100 and 1. Every case runs in a fresh subprocess, so its
peak RSS is its own; its throughput is the median of several runs on fresh ledgers, and
the input is generated before any clock starts. `--flat-memory` pushes 10,000,000
transfers through the compiled core and samples RSS as it goes.

`--json` prints one object: `{"results": [{"mode": "memory-compiled" | "memory-pure" |
"file" | "postgres", "workload": "uniform" | "hot", "batch_size": N, "transfers": N,
"transfers_per_s": X, "peak_rss_bytes": N, ...}, ...], "notes": [...]}`. Extra keys per
mode: the runs behind the median, `bytes_per_account` / `bytes_per_retained_transfer`
(memory modes), `ratio_vs_pure` (memory-compiled), commits and durable latency (file,
postgres); a case that could not run carries `"error"` instead of figures.

This module drives ledgers only through their public API (and the durable module through
its two functions); it must never time input generation or reach into a ledger's state.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import click

from bench.ledger_workloads import (
    ACCOUNTS_DEFAULT,
    HOT_ACCOUNTS_DEFAULT,
    WORKLOADS,
    load_accounts,
    make_transfer_batches,
    pregenerate,
)
from ledger.limits import BATCH_EVENTS_MAX
from ledger.types import RECORD_BYTES

MODES = ("memory-compiled", "memory-pure", "file", "postgres")
BATCH_SIZES = (BATCH_EVENTS_MAX, 100, 1)
SEED = 42
NOW_NS_START = 1_000_000_000
RUNS_DEFAULT = 3
RUNS_MAX = 25
CASE_TIMEOUT_S = 900
FLAT_MEMORY_TRANSFERS = 10_000_000
FLAT_MEMORY_SAMPLE_EVERY = 1_000_000
POSTGRES_ADMIN_DSN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"

# Transfers per case: 1,000,000 where it runs in seconds; fewer for batch size 1 (one
# Python call per transfer) and for the pure twin (~8 µs per transfer), as the output says.
TRANSFERS_FULL = {
    "memory-compiled": {BATCH_EVENTS_MAX: 1_000_000, 100: 1_000_000, 1: 200_000},
    "memory-pure": {BATCH_EVENTS_MAX: 100_000, 100: 100_000, 1: 50_000},
    "file": {BATCH_EVENTS_MAX: 1_000_000, 100: 1_000_000, 1: 50_000},
    "postgres": {BATCH_EVENTS_MAX: 1_000_000, 100: 1_000_000, 1: 50_000},
}
TRANSFERS_QUICK = {
    "memory-compiled": {BATCH_EVENTS_MAX: 200_000, 100: 200_000, 1: 50_000},
    "memory-pure": {BATCH_EVENTS_MAX: 20_000, 100: 20_000, 1: 10_000},
    "file": {BATCH_EVENTS_MAX: 100_000, 100: 50_000, 1: 5_000},
    "postgres": {BATCH_EVENTS_MAX: 100_000, 100: 50_000, 1: 5_000},
}
assert set(TRANSFERS_FULL) == set(TRANSFERS_QUICK) == set(MODES)
assert 1 <= RUNS_DEFAULT <= RUNS_MAX


def _rss_bytes() -> int:
    """Resident set size now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def _ledger_class(mode: str):
    import ledger

    if mode == "memory-pure":
        return ledger.PureLedger
    if ledger.CompiledLedger is None:
        raise RuntimeError(f"compiled ledger not built: {ledger.COMPILED_IMPORT_ERROR}")
    return ledger.CompiledLedger


# ------------------------------------------------------------------ one case (in a child)

def _timed_run(ledger_cls, batches: list[bytes],
               rss_samples: list[int] | None = None) -> tuple[object, float, int]:
    """A fresh ledger with the workload accounts, then the batches on the clock. With
    `rss_samples`, RSS is appended before the ledger, after the accounts (both off the
    clock) and after the batches."""
    if rss_samples is not None:
        rss_samples.append(_rss_bytes())
    ledger = ledger_cls()
    load_accounts(ledger, ACCOUNTS_DEFAULT, now_ns=NOW_NS_START)
    if rss_samples is not None:
        rss_samples.append(_rss_bytes())
    create_transfers = ledger.create_transfers
    failed_batches = 0
    now_ns = NOW_NS_START
    started = time.perf_counter()
    for batch in batches:
        now_ns += 1_000
        if create_transfers(batch, now_ns):
            failed_batches += 1
    seconds = time.perf_counter() - started
    if rss_samples is not None:
        rss_samples.append(_rss_bytes())
    return ledger, seconds, failed_batches


def run_memory(mode: str, workload: str, batch_size: int, transfers: int, seed: int,
               runs: int, paired_pure_transfers: int = 0) -> dict:
    """In-memory throughput: median of `runs` fresh ledgers over the same input.

    With `paired_pure_transfers`, each compiled run is followed at once by a pure run over
    the first batches (that many transfers): on a shared machine both then see the same
    load, so the median of the per-pair ratios is a fair "x times the pure twin"."""
    ledger_cls = _ledger_class(mode)
    batches = pregenerate(workload, batch_size, transfers, seed)
    pure_batches = batches[:-(-paired_pure_transfers // batch_size)]
    pure_count = sum(len(batch) // RECORD_BYTES for batch in pure_batches)
    rates = []
    ratios = []
    failures = 0
    memory = {}
    for run in range(runs):
        rss_samples: list[int] = []
        ledger, seconds, failed = _timed_run(ledger_cls, batches,
                                             rss_samples if run == 0 else None)
        failures += failed
        rates.append(transfers / seconds)
        if run == 0:  # the first run starts from a process that held no ledger yet
            rss_before_ledger, rss_after_accounts, rss_after_transfers = rss_samples
            retained = min(transfers, ledger.config.transfers_retained_max)
            memory = {
                "bytes_per_account": round(
                    (rss_after_accounts - rss_before_ledger) / ACCOUNTS_DEFAULT, 1),
                "bytes_per_retained_transfer": round(
                    (rss_after_transfers - rss_after_accounts) / retained, 1),
                "retained_transfers": retained,
            }
        ledger.check_invariants()  # outside the clock; proves the run did what it said
        assert ledger.totals()[1] > 0
        del ledger
        if pure_batches:
            pure, pure_seconds, failed = _timed_run(_ledger_class("memory-pure"),
                                                    pure_batches)
            failures += failed
            ratios.append(rates[-1] / (pure_count / pure_seconds))
            del pure
    result = {
        "mode": mode,
        "workload": workload,
        "batch_size": batch_size,
        "transfers": transfers,
        "transfers_per_s": round(statistics.median(rates)),
        "peak_rss_bytes": _peak_rss_bytes(),
        "runs": runs,
        "transfers_per_s_runs": [round(rate) for rate in rates],
        "ns_per_transfer": round(1e9 / statistics.median(rates), 1),
        "failed_batches": failures,
        "accounts": ACCOUNTS_DEFAULT,
        "accounts_transferring": ACCOUNTS_DEFAULT if workload == "uniform"
        else HOT_ACCOUNTS_DEFAULT,
        **memory,
    }
    if ratios:
        result["ratio_vs_pure"] = round(statistics.median(ratios), 1)
        result["ratio_vs_pure_runs"] = [round(ratio, 1) for ratio in ratios]
        result["ratio_vs_pure_pure_transfers"] = pure_count
    if batch_size == 1:
        result["single_call_transfers_per_s"] = _single_call_rate(ledger_cls, batches, runs)
    return result


def _single_call_rate(ledger_cls, batches: list[bytes], runs: int) -> int:
    """The switch core's path: `create_transfer(...)` with arguments, no packing."""
    from ledger.types import TRANSFER_STRUCT

    arguments = []
    for batch in batches:
        fields = TRANSFER_STRUCT.unpack(batch)
        arguments.append(fields[:6] + fields[7:])
    rates = []
    for _ in range(runs):
        ledger = ledger_cls()
        load_accounts(ledger, ACCOUNTS_DEFAULT, now_ns=NOW_NS_START)
        create_transfer = ledger.create_transfer
        now_ns = NOW_NS_START
        started = time.perf_counter()
        for args in arguments:
            now_ns += 1_000
            create_transfer(*args, now_ns)
        rates.append(len(arguments) / (time.perf_counter() - started))
        ledger.check_invariants()
    return round(statistics.median(rates))


def run_durable(mode: str, workload: str, batch_size: int, transfers: int, seed: int,
                runs: int, postgres_dsn: str | None) -> dict:
    """File or PostgreSQL journal: the journal engineer's functions, median of `runs`."""
    from bench import ledger_durable

    results = []
    for _ in range(runs):
        if mode == "file":
            results.append(ledger_durable.run_file(workload, batch_size, transfers, seed))
        else:
            assert postgres_dsn, "postgres mode needs a DSN"
            results.append(ledger_durable.run_postgres(workload, batch_size, transfers, seed,
                                                       postgres_dsn))
    results.sort(key=lambda result: result["transfers_per_s"])
    median = dict(results[len(results) // 2])
    median["runs"] = runs
    median["transfers_per_s_runs"] = [result["transfers_per_s"] for result in results]
    median["peak_rss_bytes"] = _peak_rss_bytes()
    return median


def run_flat_memory(transfers: int, sample_every: int, seed: int) -> dict:
    """Push `transfers` through one compiled ledger (uniform, batch 8,189) and sample RSS.
    Input is generated batch by batch (not held), so only the ledger can grow; only the
    ledger calls are timed."""
    ledger_cls = _ledger_class("memory-compiled")
    ledger = ledger_cls()
    load_accounts(ledger, ACCOUNTS_DEFAULT, now_ns=NOW_NS_START)
    samples = [{"transfers": 0, "rss_bytes": _rss_bytes()}]
    retained_max = ledger.config.transfers_retained_max
    next_sample = sample_every
    done = 0
    ledger_seconds = 0.0
    now_ns = NOW_NS_START
    failed_batches = 0
    for batch in make_transfer_batches("uniform", BATCH_EVENTS_MAX, transfers, seed):
        now_ns += 1_000
        started = time.perf_counter()
        if ledger.create_transfers(batch, now_ns):
            failed_batches += 1
        ledger_seconds += time.perf_counter() - started
        done += len(batch) // RECORD_BYTES
        if done >= next_sample or done == transfers:
            samples.append({"transfers": done, "rss_bytes": _rss_bytes()})
            next_sample += sample_every
    ledger.check_invariants()
    # Flat = after the retained window is full, RSS stays put (allocator noise aside).
    after_full = [s["rss_bytes"] for s in samples if s["transfers"] >= retained_max]
    growth = (max(after_full) - min(after_full)) if after_full else 0
    middle = samples[len(samples) // 2]
    return {
        "mode": "flat-memory",
        "workload": "uniform",
        "batch_size": BATCH_EVENTS_MAX,
        "transfers": transfers,
        "transfers_per_s": round(transfers / ledger_seconds),
        "peak_rss_bytes": _peak_rss_bytes(),
        "rss_start_bytes": samples[0]["rss_bytes"],
        "rss_middle_bytes": middle["rss_bytes"],
        "rss_middle_at_transfers": middle["transfers"],
        "rss_end_bytes": samples[-1]["rss_bytes"],
        "rss_growth_after_window_full_bytes": growth,
        "transfers_retained_max": retained_max,
        "failed_batches": failed_batches,
        "samples": samples,
    }


def _child_main(spec: dict) -> dict:
    kind = spec["kind"]
    if kind == "flat-memory":
        return run_flat_memory(spec["transfers"], spec["sample_every"], spec["seed"])
    if spec["mode"].startswith("memory-"):
        return run_memory(spec["mode"], spec["workload"], spec["batch_size"],
                          spec["transfers"], spec["seed"], spec["runs"],
                          spec.get("paired_pure_transfers", 0))
    return run_durable(spec["mode"], spec["workload"], spec["batch_size"], spec["transfers"],
                       spec["seed"], spec["runs"], spec.get("postgres_dsn"))


# ------------------------------------------------------------------ orchestration

@dataclass(frozen=True, kw_only=True)
class Case:
    mode: str
    workload: str
    batch_size: int
    transfers: int

    def label(self) -> str:
        return f"{self.mode} {self.workload} batch={self.batch_size} n={self.transfers:,}"


def plan_cases(modes: tuple[str, ...], quick: bool) -> list[Case]:
    sizes = TRANSFERS_QUICK if quick else TRANSFERS_FULL
    return [Case(mode=mode, workload=workload, batch_size=batch_size,
                 transfers=sizes[mode][batch_size])
            for mode in modes for workload in WORKLOADS for batch_size in BATCH_SIZES]


def run_in_child(spec: dict) -> dict:
    """Run one case in a fresh interpreter; its last stdout line is the result JSON."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.ledger_bench", json.dumps(spec)],
        capture_output=True, text=True, timeout=CASE_TIMEOUT_S, check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        error = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {completed.returncode}: {error}"}
    return json.loads(lines[-1])


class _ScratchDatabase:
    """A database of its own for the postgres mode, dropped afterwards."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"ponte_bench_{uuid.uuid4().hex[:12]}"
        base, _, _ = admin_dsn.rpartition("/")
        self.dsn = f"{base}/{self.name}"

    def _admin(self, sql: str) -> None:
        import asyncio

        import asyncpg

        async def run() -> None:
            connection = await asyncpg.connect(self.admin_dsn, timeout=10)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        asyncio.run(run())

    def __enter__(self) -> _ScratchDatabase:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(self, *exc) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _notes(cases: list[Case], quick: bool) -> list[str]:
    notes = ["throughput is the median of the runs; input generation is not timed",
             "ratio_vs_pure: median over runs of compiled / pure measured back to back in "
             "one process (pure over the first batches, as many transfers as memory-pure "
             "uses), so both see the same machine load",
             "every case runs in a fresh subprocess: peak_rss_bytes is that case's own"]
    sizes = TRANSFERS_QUICK if quick else TRANSFERS_FULL
    for mode in sorted({case.mode for case in cases}):
        counts = sizes[mode]
        if len(set(counts.values())) > 1 or counts[BATCH_EVENTS_MAX] != 1_000_000:
            notes.append(f"{mode}: fewer transfers than 1,000,000 where shown "
                         f"(batch 8189: {counts[BATCH_EVENTS_MAX]:,}, batch 100: "
                         f"{counts[100]:,}, batch 1: {counts[1]:,})")
    return notes


def _mb(value) -> str:
    return f"{value / 1e6:,.1f}" if isinstance(value, (int, float)) else "-"


def _print_table(results: list[dict], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="ponte bench ledger")
    for column in ("mode", "workload", "batch", "transfers", "transfers/s", "runs",
                   "peak RSS MB", "B/account", "B/retained transfer", "vs pure"):
        table.add_column(column, justify="left" if column in ("mode", "workload") else "right")
    for r in results:
        if "error" in r:
            table.add_row(r.get("mode", "?"), r.get("workload", "?"),
                          str(r.get("batch_size", "?")), "-", f"[red]{r['error']}[/red]",
                          "-", "-", "-", "-", "-")
            continue
        table.add_row(
            r["mode"], r["workload"], f"{r['batch_size']:,}", f"{r['transfers']:,}",
            f"{r['transfers_per_s']:,}", str(r.get("runs", 1)), _mb(r["peak_rss_bytes"]),
            str(r.get("bytes_per_account", "-")), str(r.get("bytes_per_retained_transfer", "-")),
            f"{r['ratio_vs_pure']}x" if "ratio_vs_pure" in r else "-",
        )
    console = Console(width=max(Console().width, 132))  # the table needs ~130 columns
    console.print(table)
    for r in results:
        if "single_call_transfers_per_s" in r:
            console.print(f"{r['mode']} {r['workload']}: create_transfer() single call "
                          f"{r['single_call_transfers_per_s']:,}/s")
    for note in notes:
        console.print(f"[dim]note: {note}[/dim]")


def _print_flat(result: dict) -> None:
    from rich.console import Console

    console = Console(width=max(Console().width, 132))
    if "error" in result:
        console.print(f"[red]flat-memory: {result['error']}[/red]")
        return
    console.print(f"flat memory: {result['transfers']:,} transfers through the compiled core "
                  f"at {result['transfers_per_s']:,}/s")
    for sample in result["samples"]:
        console.print(f"  after {sample['transfers']:>12,} transfers: RSS "
                      f"{_mb(sample['rss_bytes'])} MB")
    console.print(f"  start {_mb(result['rss_start_bytes'])} MB, middle "
                  f"{_mb(result['rss_middle_bytes'])} MB, end {_mb(result['rss_end_bytes'])} MB;"
                  f" growth once the {result['transfers_retained_max']:,}-transfer window "
                  f"was full: {_mb(result['rss_growth_after_window_full_bytes'])} MB")


@click.command("ledger")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, nothing else.")
@click.option("--quick", is_flag=True, help="A reduced set that finishes in under a minute.")
@click.option("--flat-memory", is_flag=True,
              help="Instead: 10,000,000 transfers through the compiled core, RSS sampled.")
@click.option("--modes", default=",".join(MODES), show_default=True,
              help="Comma-separated subset of: " + ", ".join(MODES))
@click.option("--runs", type=click.IntRange(1, RUNS_MAX), default=None,
              help=f"Runs per case (median reported). Default {RUNS_DEFAULT}.")
@click.option("--postgres-dsn", envvar="PONTE_BENCH_POSTGRES_DSN",
              default=POSTGRES_ADMIN_DSN_DEFAULT, show_default=True,
              help="Server for the postgres mode; a scratch database is created and dropped.")
@click.option("--seed", type=int, default=SEED, show_default=True)
def ledger_command(as_json: bool, quick: bool, flat_memory: bool, modes: str,
                   runs: int | None, postgres_dsn: str, seed: int) -> None:
    """Ledger throughput and memory: compiled vs pure in memory, file and PostgreSQL."""
    if flat_memory:
        spec = {"kind": "flat-memory", "transfers": FLAT_MEMORY_TRANSFERS,
                "sample_every": FLAT_MEMORY_SAMPLE_EVERY, "seed": seed}
        if not as_json:
            click.echo("running 10,000,000 transfers through the compiled core...", err=True)
        result = run_in_child(spec)
        if as_json:
            click.echo(json.dumps({"results": [result]}))
        else:
            _print_flat(result)
        sys.exit(1 if "error" in result else 0)

    chosen = tuple(mode.strip() for mode in modes.split(",") if mode.strip())
    unknown = [mode for mode in chosen if mode not in MODES]
    if unknown:
        raise click.BadParameter(f"unknown mode(s) {unknown}; choose from {MODES}",
                                 param_hint="--modes")
    runs = runs or RUNS_DEFAULT
    cases = plan_cases(chosen, quick)
    results = _run_cases(cases, runs, seed, postgres_dsn, show_progress=not as_json,
                         quick=quick)
    notes = _notes(cases, quick)
    if as_json:
        click.echo(json.dumps({"results": results, "notes": notes}))
    else:
        _print_table(results, notes)
    if any("error" in result for result in results):
        sys.exit(1)


def _run_cases(cases: list[Case], runs: int, seed: int, postgres_dsn: str,
               show_progress: bool, quick: bool) -> list[dict]:
    from contextlib import ExitStack

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    paired = (TRANSFERS_QUICK if quick else TRANSFERS_FULL)["memory-pure"]
    results = []
    with ExitStack() as stack:
        scratch_dsn = None
        if any(case.mode == "postgres" for case in cases):
            try:
                scratch_dsn = stack.enter_context(_ScratchDatabase(postgres_dsn)).dsn
            except Exception as error:  # noqa: BLE001 - reported per case below
                scratch_error = f"PostgreSQL unavailable: {type(error).__name__}: {error}"
        progress = stack.enter_context(Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                                                                      "{task.total}"),
            TimeElapsedColumn(), disable=not show_progress, transient=True,
        ))
        task = progress.add_task("ledger bench", total=len(cases))
        for case in cases:
            progress.update(task, description=case.label())
            base = {"mode": case.mode, "workload": case.workload,
                    "batch_size": case.batch_size}
            if case.mode == "postgres" and scratch_dsn is None:
                results.append({**base, "error": scratch_error})
            else:
                spec = {"kind": "case", "mode": case.mode, "workload": case.workload,
                        "batch_size": case.batch_size, "transfers": case.transfers,
                        "seed": seed, "runs": runs, "postgres_dsn": scratch_dsn,
                        "paired_pure_transfers": paired.get(case.batch_size, 0)
                        if case.mode == "memory-compiled" else 0}
                result = run_in_child(spec)
                results.append({**base, **result} if "error" in result else result)
            progress.advance(task)
    return results


if __name__ == "__main__":  # a child: python -m bench.ledger_bench '<spec json>'
    print(json.dumps(_child_main(json.loads(sys.argv[1]))))
