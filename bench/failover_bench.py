"""Failover figures for `ponte bench recovery`: standby takeover time after kill -9 of the
primary, and end-to-end throughput with a synchronous PostgreSQL replica against without
one, in the same run.

    takeover_bench(quick=False) -> {"takeover_s": median, "takeover_s_runs": [...],
        "goal_s": 3.0, "offered_per_s", "books_reconciled": True, "lost": 0}
    sync_replica_bench(quick=False) -> {"without_sync_replica": <e2e result>,
        "with_sync_replica": <e2e result>, "throughput_ratio": with / without}

Takeover: a primary switch process on a PostgreSQL journal (a database made for the run on
the shared server, dropped after), a standby process following it, the quick population's
simulators (SDK with both stream addresses) offering payments; after traffic flows the
primary gets SIGKILL, and the time from the kill to the standby's /health saying primary
and accepting (its stream port open) is one sample. The simulators then finish on the new
primary and their books must reconcile with its ledger (else the run fails loudly).

Sync replica: `switch.replica.ReplicaPair` makes a PostgreSQL primary and a streaming
replica of its own (never the shared cluster), and `bench.e2e_bench.run_stream` runs the
same offered load with the journal and stores on that primary: once with
synchronous_standby_names empty (the replica asynchronous), once with it naming the replica
and synchronous_commit = remote_apply. Both runs in one process, one after the other.

    python -m bench.failover_bench takeover|sync-replica [--quick] [--json]

It must never touch a cluster it did not make, and never leave a process or cluster behind.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import uuid

import click
import msgspec

from connectors.sim.books import BooksReport, reconcile
from connectors.sim.population import load_profile
from switch.launcher import SimProcess, SwitchProcess, onboard_population, sim_server_config

PROFILE = "quick"
LEDGER_ID = 404
FUNDING_MINOR = 10**15
TAKEOVER_GOAL_S = 3.0
TAKEOVER_RUNS = 5
TAKEOVER_OFFERED_PER_S = 2_000.0
TAKEOVER_SECONDS = 10.0
SYNC_OFFERED_PER_S = 5_000.0
SYNC_SECONDS = 20.0
QUICK = {"runs": 1, "offered_per_s": 300.0, "seconds": 4.0}
SYNC_QUICK = {"offered_per_s": 500.0, "seconds": 4.0}
ADMIN_DSN = os.environ.get("PONTE_BENCH_POSTGRES_DSN",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
# Secrets every switch of one journal shares (the standby checks them).
BENCH_SECRETS = {"api_key_pepper": "bench-pepper-" + "p" * 24,
                 "directory_secret": "bench-directory-" + "d" * 24,
                 "admin_token": "bench-admin-" + "a" * 20}


class BooksDoNotReconcile(AssertionError):
    pass


def _admin_sql(sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        connection = await asyncpg.connect(ADMIN_DSN, timeout=10)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def _dsn_for(database: str) -> str:
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


def _reconcile(switch: SwitchProcess, final: dict) -> None:
    positions = switch.positions()
    differences = []
    for books in final["books"]:
        report = msgspec.convert(books, BooksReport)
        differences.extend(reconcile(
            report, positions[report.participant_id]["accounts"][report.currency]))
    if differences:
        raise BooksDoNotReconcile(str(differences))


def _takeover_once(work_dir: str, dsn: str, offered_per_s: float, seconds: float) -> float:
    profile = load_profile(PROFILE)
    shared = {"journal": "postgres", "store": "postgres", "postgres_dsn": dsn,
              **BENCH_SECRETS}
    primary = SwitchProcess(sim_server_config(os.path.join(work_dir, "primary"), **shared))
    standby = SwitchProcess(sim_server_config(os.path.join(work_dir, "standby"),
                                              role="standby", **shared))
    sims = None
    try:
        primary.start()
        names = [(p.participant_id, p.kind.value) for p in profile.participants]
        credentials = onboard_population(primary, names, profile.currency, LEDGER_ID,
                                         FUNDING_MINOR)
        standby.start()
        sims = SimProcess({
            "port": primary.stream_port, "fallback_ports": [standby.stream_port],
            "participants": [{"name": name, "api_key": c["api_key"],
                              "opening_position_minor": FUNDING_MINOR}
                             for name, c in credentials.items()],
            "profile": PROFILE, "tps": offered_per_s, "seconds": seconds,
            "stats_interval_s": 0.5, "options": {"expiry_s": 30.0},
        }, work_dir).start()
        sims.wait_for("ready", 300)
        sims.wait_for("stats", 60)
        sims.wait_for("stats", 60)  # traffic flows through the primary
        primary.kill()
        killed = time.monotonic()
        standby.wait_role("primary", 60)
        takeover_s = time.monotonic() - killed
        final = sims.wait_for("final", seconds + 180)
        if final["results"].get("LOST") or final["done"] != final["sent"]:
            raise BooksDoNotReconcile(f"transfers lost across the takeover: {final['results']}")
        _reconcile(standby, final)
        return takeover_s
    finally:
        if sims is not None:
            sims.stop()
        standby.stop()
        primary.stop()


def takeover_bench(*, quick: bool = False, runs: int | None = None,
                   offered_per_s: float | None = None, seconds: float | None = None) -> dict:
    """Standby takeover after kill -9 of the primary, under load; median of `runs`."""
    runs = runs or (QUICK["runs"] if quick else TAKEOVER_RUNS)
    offered_per_s = offered_per_s or (QUICK["offered_per_s"] if quick
                                      else TAKEOVER_OFFERED_PER_S)
    seconds = seconds or (QUICK["seconds"] if quick else TAKEOVER_SECONDS)
    samples = []
    for _ in range(runs):
        database = f"ponte_bench_takeover_{uuid.uuid4().hex[:10]}"
        _admin_sql(f'CREATE DATABASE "{database}"')
        try:
            with tempfile.TemporaryDirectory(prefix="ponte-bench-takeover-") as work_dir:
                samples.append(_takeover_once(work_dir, _dsn_for(database), offered_per_s,
                                              seconds))
        finally:
            _admin_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return {"takeover_s": round(statistics.median(samples), 3),
            "takeover_s_runs": [round(sample, 3) for sample in samples],
            "goal_s": TAKEOVER_GOAL_S, "offered_per_s": offered_per_s,
            "books_reconciled": True, "lost": 0}


def sync_replica_bench(*, quick: bool = False, offered_per_s: float | None = None,
                       seconds: float | None = None) -> dict:
    """e2e throughput on a PostgreSQL journal without, then with, a synchronous replica."""
    from bench.e2e_bench import run_stream
    from switch.replica import ReplicaPair

    offered_per_s = offered_per_s or (SYNC_QUICK["offered_per_s"] if quick
                                      else SYNC_OFFERED_PER_S)
    seconds = seconds or (SYNC_QUICK["seconds"] if quick else SYNC_SECONDS)
    results = {}
    with ReplicaPair("bench") as pair:
        for label, synchronous in (("without_sync_replica", False),
                                   ("with_sync_replica", True)):
            database = f"ponte_{label}"
            dsn = pair.create_database(database)
            pair.synchronous(synchronous, database)
            result = run_stream(offered_per_s=offered_per_s, seconds=seconds,
                                switch_config={"journal": "postgres", "store": "postgres",
                                               "postgres_dsn": dsn})
            result["sync_state"] = pair.sync_state()
            results[label] = result
    without = results["without_sync_replica"]["transfers_per_s"]
    results["throughput_ratio"] = (round(results["with_sync_replica"]["transfers_per_s"]
                                         / without, 4) if without else 0.0)
    return results


@click.group()
def main() -> None:
    """Failover figures (called by `ponte bench recovery`; runnable alone)."""


@main.command("takeover")
@click.option("--quick", is_flag=True, help="One short run at a low rate.")
@click.option("--json", "as_json", is_flag=True)
def takeover_command(quick, as_json) -> None:
    """Standby takeover time after kill -9 of the primary (goal <= 3 s)."""
    result = takeover_bench(quick=quick)
    click.echo(json.dumps(result) if as_json else
               f"takeover {result['takeover_s']:.3f} s (goal {TAKEOVER_GOAL_S} s) "
               f"runs={result['takeover_s_runs']}")


@main.command("sync-replica")
@click.option("--quick", is_flag=True, help="Short runs at a low rate.")
@click.option("--json", "as_json", is_flag=True)
def sync_replica_command(quick, as_json) -> None:
    """e2e throughput with a synchronous PostgreSQL replica vs without."""
    result = sync_replica_bench(quick=quick)
    if as_json:
        click.echo(json.dumps(result))
        return
    for label in ("without_sync_replica", "with_sync_replica"):
        run = result[label]
        click.echo(f"{label}: {run['transfers_per_s']:.0f}/s p50 {run['p50_ms']} ms "
                   f"p99 {run['p99_ms']} ms")
    click.echo(f"ratio {result['throughput_ratio']}")


if __name__ == "__main__":
    main()
