"""`ponte bench g2p`: a programme pays N beneficiaries by national ID while ordinary
traffic runs, with real processes on this box.

Setup (untimed): a switch process (durable file journal, embedded stores, G2P connector),
the quick population's banks and wallets in one simulator process (they answer credit
requests: the payees are simulated), a programme (kind government) funded for the batch,
and N distinct national IDs linked in the mapper to the simulators' customers (written
straight into the directory's mapper table as identity tokens, as a bank's bulk linking
would leave it).

Measured:
1. Ordinary traffic alone at `live_per_s` (stream protocol): its p99 — the unloaded value.
2. The same traffic again while the programme sends the batch (`/disburse/sync/disburse`,
   10,000 rows a message) and the engine pays it: rows/s end to end (first message sent
   to the batch completed, every row durable), the live traffic's p99 during the batch and
   its ratio to the unloaded value, the switch's RSS sampled through the batch (memory
   flat: its growth from a quarter of the batch to the end), and the programme's ledger
   debit checked against the batch's paid total.
3. Report generation: the whole per-row report read page by page, as CSV and as the spec's
   JSON, timed.

    --json  {"results": [{"rows", "rows_per_s", "batch_seconds", "paid", "failed",
             "live_per_s", "live_p99_unloaded_ms", "live_p99_loaded_ms", "live_p99_ratio",
             "report_csv_seconds", "report_json_seconds", "peak_rss_bytes",
             "rss_growth_bytes_after_25pct", "rss_growth_bytes_second_half",
             "ledger_reconciled", "host_freezes"}]}

`host_freezes` lists the moments the whole machine was paused by its host (a virtual
machine stopped: every process, so either p99 may hold one; `bench.sampler.HostFreezes`),
each as {"phase": "unloaded"|"loaded", "at_s", "ms"}.

The live p99 during the batch is the simulators' p99 over their loaded run, which lasts
rows/10,000 + 10 seconds: the batch is most of it at 1,000,000 rows; with --quick it is
about a tenth of it, whose slowest percent still sets the p99.

It must never measure anything but public surfaces (G2P HTTP in, /admin positions,
the simulators' own latency records).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import tempfile
import time
import urllib.request

import click
import msgspec

from bench.sampler import HostFreezes, ResourceSampler
from connectors.sim.population import Population, load_profile
from switch.directory.config import DirectoryConfig, Secret
from switch.directory.identity import identity_token
from switch.directory.aliases import AliasRules
from switch.launcher import (
    SIM_DIRECTORY,
    SimProcess,
    SwitchProcess,
    free_port,
    onboard_population,
    sim_server_config,
)

PROFILE = "quick"
LEDGER_ID = 404
FUNDING_MINOR = 10**15
ROWS_DEFAULT = 1_000_000
ROWS_QUICK = 20_000
LIVE_PER_S_DEFAULT = 2_000.0
LIVE_PER_S_QUICK = 500.0
UNLOADED_S_DEFAULT = 20.0
UNLOADED_S_QUICK = 3.0
MESSAGE_ROWS = 10_000
AMOUNT_MINOR = 100
# The switch's tables at their defaults (core: 262,144 final transfers, ledger: 1,048,576
# legs): memory grows until they are full, then stays flat whatever the batch's size. Only
# the in-flight bound is raised, for the live traffic's and the batch's transfers at once.
BENCH_CORE = {"in_flight_max": 1 << 16}
BENCH_LEDGER = {"pending_max": 1 << 18}
G2P_RATE_ROWS_PER_S = 15_000  # the engine's cap: above the 10,000/s target, below saturation
EXPIRY_S = 15.0


def _national_ids(rows: int) -> list[str]:
    """Distinct ten-digit IDs (the simulators' KE format)."""
    return [f"{3_000_000_000 + n * 7 + 1}" for n in range(rows)]


def _payees(profile, seed: int, credentials: dict) -> list[tuple[int, str]]:
    population = Population.build(profile, seed)
    payees = []
    for participant in profile.participants:
        participant_id = credentials[participant.participant_id]["participant_id"]
        for customer in population.customers(participant.participant_id):
            if customer.kind.value == "person":
                payees.append((participant_id, customer.user_id))
    return payees


def _load_mapper(data_dir: str, national_ids: list[str], payees: list[tuple[int, str]]) -> None:
    """Link every ID to a simulated customer, straight into the switch's directory file
    (the switch is stopped): identity tokens only, as the mapper stores them."""
    with open(os.path.join(data_dir, "secrets.json")) as file:
        secret = Secret(json.load(file)["directory_secret"].encode())
    rules = AliasRules(msgspec.convert(
        {key: SIM_DIRECTORY[key] for key in ("national_id_formats",
                                             "national_id_country_default")},
        DirectoryConfig))
    now_ns = time.time_ns()
    rows = []
    for index, national_id in enumerate(national_ids):
        participant_id, account_ref = payees[index % len(payees)]
        token = identity_token(secret, rules.national_id(national_id, "id"))
        rows.append((token, str(participant_id), account_ref, now_ns))
    db = sqlite3.connect(os.path.join(data_dir, "directory.sqlite3"))
    with db:
        db.executemany("INSERT OR REPLACE INTO directory_mapper_links VALUES (?, ?, ?, ?)", rows)
    db.close()


def _post(port: int, api_key: str, path: str, body: bytes) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                     method="POST", headers={
                                         "Content-Type": "application/json",
                                         "Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _get(port: int, api_key: str, path: str) -> tuple[bytes, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return response.read(), dict(response.headers)


def _message(transaction_id: str, national_ids: list[str], start: int) -> bytes:
    rows = [{"reference_id": f"b{start + n}", "payer_fa": "treasury@gov",
             "payee_fa": f"{national_id}@nid", "amount": "1.00"}
            for n, national_id in enumerate(national_ids)]
    return json.dumps({"header": {"message_id": f"m{start}", "message_ts": "2026-12-04T10:00:00Z",
                                  "action": "disburse", "sender_id": "bench",
                                  "total_count": len(rows)},
                       "message": {"transaction_id": transaction_id,
                                   "disbursements": rows}}).encode()


def _live(switch: SwitchProcess, credentials: dict, work_dir: str, name: str,
          per_s: float, seconds: float, seed: int) -> SimProcess:
    return SimProcess({
        "port": switch.stream_port,
        "participants": [{"name": participant, "api_key": c["api_key"],
                          "opening_position_minor": FUNDING_MINOR}
                         for participant, c in credentials.items()],
        "profile": PROFILE, "seed": seed, "tps": per_s, "seconds": seconds,
        "options": {"expiry_s": EXPIRY_S, "seed": seed},
    }, work_dir, name=name).start()


def _final(sims: SimProcess, timeout_s: float) -> dict:
    while True:
        record = sims.next_record(timeout_s)
        if record is None:
            raise RuntimeError(f"the simulator gave no final report:\n{sims.stderr_tail()}")
        if record["type"] == "final":
            return record


def run(*, rows: int, live_per_s: float, unloaded_s: float, seed: int = 1,
        data_dir: str | None = None, rate_rows_per_s: int = G2P_RATE_ROWS_PER_S,
        live_queue_depth_max: int = 256) -> dict:
    profile = load_profile(PROFILE)
    national_ids = _national_ids(rows)
    with tempfile.TemporaryDirectory(prefix="ponte-bench-g2p-", dir=data_dir) as work_dir:
        g2p_port = free_port()
        config = sim_server_config(work_dir, core=BENCH_CORE, ledger=BENCH_LEDGER,
                                   g2p_enabled=True,
                                   g2p={"port": g2p_port, "rate_rows_per_s": rate_rows_per_s,
                                        "live_queue_depth_max": live_queue_depth_max})
        switch = SwitchProcess(config)
        sims = sampler = host = None
        try:
            switch.start()
            names = [(p.participant_id, p.kind.value) for p in profile.participants]
            credentials = onboard_population(switch, names, profile.currency, LEDGER_ID,
                                             FUNDING_MINOR)
            programme = switch.onboard_participant("programme", "government",
                                                   [profile.currency],
                                                   funding_minor=FUNDING_MINOR)
            switch.stop()
            _load_mapper(work_dir, national_ids, _payees(profile, seed, credentials))
            switch.start()

            # Pauses of the whole machine (a VM its host stopped) inflate either p99; listed.
            host = HostFreezes()
            host.start()
            phases_ns = [("unloaded", time.time_ns())]
            # 1. Ordinary traffic alone.
            sims = _live(switch, credentials, work_dir, "unloaded", live_per_s, unloaded_s,
                         seed)
            sims.wait_for("ready", 300)
            unloaded = _final(sims, unloaded_s + 120)
            sims.wait(60)
            sims = None

            # 2. The same traffic while the batch is paid: the simulated banks and wallets
            # are also the rows' payees, so they run until the batch completes (then stop
            # on SIGINT). (They once ran for the time the target allows: past it every row
            # expired for want of a payee, `payee_unavailable`.)
            deadline_s = 120 + rows / 2_000
            phases_ns.append(("loaded", time.time_ns()))  # its simulators start now
            sims = _live(switch, credentials, work_dir, "loaded", live_per_s, deadline_s + 60,
                         seed + 1)
            sims.wait_for("ready", 300)
            sampler = ResourceSampler(switch.pid, interval_s=0.5)
            sampler.start()
            before = switch.positions()[programme["participant_id"]]["accounts"]["KES"]
            started = time.perf_counter()
            for start in range(0, rows, MESSAGE_ROWS):
                _post(g2p_port, programme["api_key"], "/disburse/sync/disburse",
                      _message("bench-batch", national_ids[start:start + MESSAGE_ROWS], start))
            progress_rss: list[tuple[float, int]] = []
            while True:
                body, _ = _get(g2p_port, programme["api_key"],
                               "/g2p/batches/bench-batch/summary")
                summary = json.loads(body)
                latest = sampler.latest()
                if latest is not None:
                    progress_rss.append((summary["progress"], latest.rss_bytes))
                if summary["state"] == "completed":
                    break
                if time.perf_counter() - started > deadline_s:
                    raise RuntimeError(f"the batch did not complete: {summary}")
                time.sleep(0.5)
            batch_s = time.perf_counter() - started
            sampler.stop()
            sims.process.send_signal(signal.SIGINT)  # the live traffic ends with the batch
            host.stop()  # the two traffic phases' pauses, not the reports'
            loaded = _final(sims, 300)
            sims.wait(60)
            sims = None
            after = switch.positions()[programme["participant_id"]]["accounts"]["KES"]
            debited = after["debits_posted"] - before["debits_posted"]

            # 3. The per-row report, every page, as CSV and as JSON.
            pages = -(-rows // 10_000)
            timed = {}
            for kind in ("csv", "json"):
                report_started = time.perf_counter()
                for page in range(1, pages + 1):
                    _get(g2p_port, programme["api_key"],
                         f"/g2p/batches/bench-batch/rows.{kind}?page={page}")
                timed[kind] = time.perf_counter() - report_started
        finally:
            if sampler is not None:
                sampler.stop()
            if host is not None:
                host.stop()
            if sims is not None:
                sims.stop()
            switch.stop()
        quarter = [rss for progress, rss in progress_rss if progress >= 0.25]
        half = [rss for progress, rss in progress_rss if progress >= 0.5]
        unloaded_p99 = unloaded["p99_ms"]
        loaded_p99 = loaded["p99_ms"]
        return {
            "rows": rows,
            "rows_per_s": round(rows / batch_s, 1),
            "batch_seconds": round(batch_s, 2),
            "paid": summary["paid"],
            "failed": summary["failed"],
            "live_per_s": live_per_s,
            "live_p99_unloaded_ms": unloaded_p99,
            "live_p99_loaded_ms": loaded_p99,
            "live_p99_ratio": round(loaded_p99 / unloaded_p99, 2) if unloaded_p99 else None,
            "report_csv_seconds": round(timed["csv"], 2),
            "report_json_seconds": round(timed["json"], 2),
            "peak_rss_bytes": max((s.rss_bytes for s in sampler.samples()), default=0),
            "rss_growth_bytes_after_25pct": (max(quarter) - quarter[0]) if quarter else 0,
            "rss_growth_bytes_second_half": (max(half) - half[0]) if half else 0,
            "ledger_reconciled": debited == summary["paid_minor"],
            "host_freezes": _freezes_by_phase(host.freezes(), phases_ns),
        }


def _freezes_by_phase(freezes, phases_ns: list[tuple[str, int]]) -> list[dict]:
    """Each pause of the machine with the phase it fell in and its time from that phase's
    start (bench.sampler.HostFreezes)."""
    listed = []
    for freeze in freezes:
        name, start_ns = phases_ns[0]
        for phase, phase_start_ns in phases_ns:
            if freeze.started_ns >= phase_start_ns:
                name, start_ns = phase, phase_start_ns
        listed.append({"phase": name, "at_s": round((freeze.started_ns - start_ns) / 1e9, 2),
                       "ms": round(freeze.ms)})
    return listed


@click.command("g2p")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--quick", is_flag=True, help=f"{ROWS_QUICK:,} rows, {LIVE_PER_S_QUICK:.0f}/s live.")
@click.option("--rows", type=int, default=None, help=f"Beneficiaries [{ROWS_DEFAULT:,}].")
@click.option("--live", "live_per_s", type=float, default=None,
              help=f"Ordinary transfers per second [{LIVE_PER_S_DEFAULT:,.0f}].")
@click.option("--rate", "rate_rows_per_s", type=click.IntRange(1, 200_000),
              default=G2P_RATE_ROWS_PER_S, show_default=True,
              help="The engine's rows/s cap ([g2p] rate_rows_per_s).")
@click.option("--live-queue-depth", "live_queue_depth_max", type=click.IntRange(1, 1 << 22),
              default=256, show_default=True,
              help="No row is submitted while the inbound queue is deeper ([g2p]).")
@click.option("--seed", type=int, default=1, show_default=True)
def g2p_command(as_json, quick, rows, live_per_s, rate_rows_per_s, live_queue_depth_max,
                seed) -> None:
    """G2P: a programme pays a batch by national ID while ordinary traffic runs."""
    result = run(rows=rows or (ROWS_QUICK if quick else ROWS_DEFAULT),
                 live_per_s=live_per_s or (LIVE_PER_S_QUICK if quick else LIVE_PER_S_DEFAULT),
                 unloaded_s=UNLOADED_S_QUICK if quick else UNLOADED_S_DEFAULT, seed=seed,
                 rate_rows_per_s=rate_rows_per_s, live_queue_depth_max=live_queue_depth_max)
    if not result["ledger_reconciled"]:
        raise click.ClickException(f"the programme's ledger debit differs from the batch's "
                                   f"paid total: {result}")
    if as_json:
        click.echo(json.dumps({"results": [result]}))
        return
    click.echo(
        f"{result['rows']:,} rows in {result['batch_seconds']:.1f} s = "
        f"{result['rows_per_s']:,.0f} rows/s (paid {result['paid']:,}, failed "
        f"{result['failed']:,}); live {result['live_per_s']:,.0f}/s p99 "
        f"{result['live_p99_unloaded_ms']:.2f} ms unloaded, {result['live_p99_loaded_ms']:.2f} "
        f"ms during the batch (x{result['live_p99_ratio']}); report CSV "
        f"{result['report_csv_seconds']:.2f} s, JSON {result['report_json_seconds']:.2f} s; "
        f"switch peak RSS {result['peak_rss_bytes'] / 2**20:,.0f} MiB, growth after 25% "
        f"{result['rss_growth_bytes_after_25pct'] / 2**20:,.1f} MiB, over the second half "
        f"{result['rss_growth_bytes_second_half'] / 2**20:,.1f} MiB")
