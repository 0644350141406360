"""`ponte bench settlement`: what settlement costs (docs/settlement.md).

Three cases, each a median of several runs unless said otherwise:

- `close`: a deferred-net window holding `--transfers` committed transfers (10,000,000 by
  default) between `--participants` participants, each a real transfer through
  `SwitchCore.step` (request and accept; a scheme fee leg on each) on the compiled ledger;
  then the close, one core step, timed (target: <= 1 s, whatever the window's size). The
  close is timed once (a window closes once); the positions it computes, read again on the
  next window with as many participants (`settlement_live`), are timed `runs` times.
- `traffic`: a switch process with the simulated population at `--offered`/s (10,000 by
  default) for `--seconds`, `--traffic-runs` times as is and as many with an operator
  closing the currency's window every `--close-every-s` through the console
  (maker-checker), alternating; the simulators' p50/p99 (medians, and each run's p99), and
  how many closes happened while traffic flowed.
- `statement`: a participant's camt.053 and CSV of a window of `--entries` entries (2,000,000
  by default) streamed from its entry log: entries per second, and the generator's peak
  traced memory beside the same for a window ten times smaller (flat: about equal).

`--json` prints `{"results": [...]}`, one object per case. It drives the core through its
public API, the switch process only through its sockets and console, and never times
set-up. Targets: close <= 1,000 ms; traffic p99 within noise of the run without closes;
statements >= 200,000 entries/s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
import tracemalloc

import click

import ledger
from switch.core import CoreConfig, SettlementModel, SwitchCore
from switch.core.messages import (
    CurrencyAdded,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    PayeeAnswer,
    PayeeAnswered,
    SchemeRules,
    SettlementWindowClosed,
    TransferRequest,
    TransferRequested,
)

T0_NS = 1_700_000_000 * 10**9
CLOSE_TARGET_MS = 1_000.0
STATEMENT_TARGET_PER_S = 200_000
DEFAULTS = {"transfers": 10_000_000, "participants": 100, "offered": 10_000.0, "seconds": 20.0,
            "entries": 2_000_000, "runs": 5, "close_every_s": 2.0, "traffic_runs": 3}
QUICK = {"transfers": 100_000, "participants": 20, "offered": 2_000.0, "seconds": 5.0,
         "entries": 100_000, "runs": 3, "close_every_s": 1.0, "traffic_runs": 1}


# -- close -------------------------------------------------------------------------------------


def _fill(core: SwitchCore, participants: int, transfers: int, now_ns: int) -> int:
    """`transfers` committed transfers in the open KES window; the clock after them."""
    pairs = [(payer, 1 + (payer + step) % participants)
             for payer in range(1, participants + 1) for step in range(1, 4)]
    step = core.step
    alias = Party(alias_type="MSISDN", alias_value="+254700000000")
    for n in range(transfers):
        payer, payee = pairs[n % len(pairs)]
        transfer_id = f"t{n}"
        step(TransferRequested(
            payer_participant_id=payer, payee_participant_id=payee, payee_account_ref="a",
            request=TransferRequest(transfer_id=transfer_id, payee=alias,
                                    amount_minor=100 + n % 9_000, currency="KES",
                                    expires_at_ns=now_ns + 1_000_000)), now_ns)
        step(PayeeAnswered(payee_participant_id=payee, answer=PayeeAnswer(
            payer_participant_id=payer, transfer_id=transfer_id, accepted=True)), now_ns)
        now_ns += 1_000  # a microsecond: the retained table drops transfers whose expiry passed
    return now_ns


def measure_close(transfers: int, participants: int, runs: int) -> dict:
    config = CoreConfig(transfers_retained_max=1 << 16, in_flight_max=1_024)
    store = ledger.Ledger(ledger.LedgerConfig(accounts_max=participants + 64,
                                              transfers_retained_max=1 << 17,
                                              pending_max=4_096))
    core = SwitchCore(config, store)
    now_ns = T0_NS
    core.step(CurrencyAdded(request_id="kes", currency="KES", ledger_id=404,
                            settlement_model=SettlementModel.DEFERRED_NET,
                            rules=SchemeRules(fee_fixed_minor=1)), now_ns)
    for participant in range(1, participants + 1):
        core.step(ParticipantAdded(request_id=f"p{participant}", participant_id=participant,
                                   name=f"bank-{participant}"), now_ns)
        core.step(ParticipantAccountOpened(request_id=f"o{participant}",
                                           participant_id=participant, currency="KES"), now_ns)
        core.step(NetDebitCapSet(request_id=f"c{participant}", participant_id=participant,
                                 currency="KES", cap_minor=10**17), now_ns)
    fill_started = time.perf_counter()
    now_ns = _fill(core, participants, transfers, now_ns)
    fill_s = time.perf_counter() - fill_started
    window_id = core.open_window_id("KES")
    assert core.settlement_window(window_id).transfers == transfers
    started = time.perf_counter()
    (answer,) = core.step(SettlementWindowClosed(request_id="close", currency="KES"), now_ns)
    close_ms = (time.perf_counter() - started) * 1000
    assert answer.result == 0, answer
    window = core.settlement_window(window_id)
    assert sum(window.net.values()) + window.fees_minor == 0
    _fill(core, participants, min(transfers, 10_000), now_ns + 1)
    positions_ms = []
    for _ in range(runs):
        started = time.perf_counter()
        core.settlement_live("KES")
        positions_ms.append((time.perf_counter() - started) * 1000)
    return {"case": "close", "ledger": store.implementation, "transfers_in_window": transfers,
            "participants": participants, "bilateral_pairs": len(window.bilateral),
            "close_ms": round(close_ms, 3), "runs": 1,
            "positions_ms_median": round(statistics.median(positions_ms), 3),
            "positions_runs": runs, "fill_transfers_per_s": round(transfers / fill_s),
            "target_ms": CLOSE_TARGET_MS, "meets_target": close_ms <= CLOSE_TARGET_MS}


# -- traffic -----------------------------------------------------------------------------------


def _traffic_run(offered_per_s: float, seconds: float, close_every_s: float | None,
                 seed: int) -> dict:
    """One e2e stream run (bench/e2e_bench.py); with an operator closing the population's
    currency window every `close_every_s` while it runs."""
    from bench import e2e_bench

    closes: list[float] = []
    done = threading.Event()

    def operate(switch) -> None:
        if close_every_s is None:
            return

        def loop() -> None:
            from switch.admin.client import OperatorApiError
            from switch.launcher import AdminError

            while not done.wait(close_every_s):
                try:
                    rows = switch.operators()[0].get("/api/admin/settlement/windows",
                                                     currency="KES", limit=1)
                    started = time.perf_counter()
                    switch.propose_and_approve({"kind": "settlement_close", "currency": "KES",
                                                "window_id": rows[0]["window_id"]})
                    closes.append(time.perf_counter() - started)
                except (AdminError, OperatorApiError, OSError):
                    continue  # the run is ending: its switch is stopping
        threading.Thread(target=loop, name="closer", daemon=True).start()

    try:
        result = e2e_bench.run_stream(offered_per_s=offered_per_s, seconds=seconds, seed=seed,
                                      during=operate)
    finally:
        done.set()
    result["closes"] = len(closes)
    result["close_roundtrip_ms_median"] = (round(statistics.median(closes) * 1000, 2)
                                           if closes else None)
    return result


def measure_traffic(offered_per_s: float, seconds: float, close_every_s: float,
                    runs: int = 1, seed: int = 1) -> dict:
    """`runs` pairs, alternating without and with closes (a drift of the box hits both),
    reported as medians with each side's range: the p99 with closes is "within noise" when
    it lies inside the range of the runs without."""
    baselines, closings = [], []
    for _ in range(runs):
        baselines.append(_traffic_run(offered_per_s, seconds, None, seed))
        closings.append(_traffic_run(offered_per_s, seconds, close_every_s, seed))

    def median(rows, key):
        return round(statistics.median(row[key] for row in rows), 3)

    p99, baseline_p99 = median(closings, "p99_ms"), median(baselines, "p99_ms")
    baseline_range = [min(r["p99_ms"] for r in baselines), max(r["p99_ms"] for r in baselines)]
    return {"case": "traffic", "offered_per_s": offered_per_s, "seconds": seconds,
            "runs": runs, "close_every_s": close_every_s,
            "closes": sum(r["closes"] for r in closings),
            "close_roundtrip_ms_median": statistics.median(
                r["close_roundtrip_ms_median"] for r in closings
                if r["close_roundtrip_ms_median"] is not None) if any(
                r["closes"] for r in closings) else None,
            "transfers_per_s": median(closings, "transfers_per_s"),
            "baseline_transfers_per_s": median(baselines, "transfers_per_s"),
            "p50_ms": median(closings, "p50_ms"), "p99_ms": p99,
            "baseline_p50_ms": median(baselines, "p50_ms"), "baseline_p99_ms": baseline_p99,
            "p99_ms_runs": [r["p99_ms"] for r in closings],
            "baseline_p99_ms_runs": [r["p99_ms"] for r in baselines],
            "p99_ratio": round(p99 / baseline_p99, 3) if baseline_p99 else None,
            "p99_within_baseline_range": p99 <= baseline_range[1],
            "books_reconciled": all(r["books_reconciled"] for r in baselines + closings)}


# -- statements --------------------------------------------------------------------------------


def _write_log(path: str, entries: int) -> int:
    from switch.settlement.entries import KIND_PAYMENT, Entry, encode_entry

    with open(path, "wb") as file:
        batch = []
        for n in range(entries):
            pays = n % 2 == 0
            batch.append(encode_entry(Entry(
                seq=1_000 + n, at_ns=T0_NS + n * 50_000, kind=KIND_PAYMENT,
                payer_participant_id=1 if pays else 2, payee_participant_id=2 if pays else 1,
                amount_minor=100 + n % 90_000, fee_minor=1 if pays else 0,
                transfer_id=f"tx-{n:012d}", end_to_end_id=f"E2E-{n}" if n % 3 == 0 else "")))
            if len(batch) == 10_000:
                file.write(b"".join(batch))
                batch.clear()
        file.write(b"".join(batch))
    return os.path.getsize(path)


def _statement(path: str, end: int, fmt: str):
    from switch.settlement.config import SettlementConfig
    from switch.settlement.statements import StatementInput

    return StatementInput(
        format=fmt, window_id=7, currency="KES", participant_id=1, participant_name="bank-1",
        account_id=(404 << 32) | (1 << 8) | 2, from_ns=T0_NS, to_ns=T0_NS + 10**13,
        opening_minor=0, closing_minor=0, created_at_ns=T0_NS + 10**13, entries_path=path,
        entries_end=end, movements=(), config=SettlementConfig())


def _stream(source, traced: bool) -> tuple[float, int]:
    from switch.settlement.statements import statement_chunks

    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        for _chunk in statement_chunks(source):
            pass
        elapsed = time.perf_counter() - started
        return elapsed, tracemalloc.get_traced_memory()[1] if traced else 0
    finally:
        if traced:
            tracemalloc.stop()


def measure_statements(entries: int, runs: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ponte-bench-statement-") as work:
        large = os.path.join(work, "large.entries")
        small = os.path.join(work, "small.entries")
        large_end = _write_log(large, entries)
        small_end = _write_log(small, max(1, entries // 10))
        for fmt in ("camt053", "csv"):
            rates = [entries / _stream(_statement(large, large_end, fmt), False)[0]
                     for _ in range(runs)]
            _elapsed, peak_large = _stream(_statement(large, large_end, fmt), True)
            _elapsed, peak_small = _stream(_statement(small, small_end, fmt), True)
            rate = statistics.median(rates)
            results.append({
                "case": "statement", "format": fmt, "entries": entries, "runs": runs,
                "entries_per_s": round(rate), "peak_traced_bytes": peak_large,
                "peak_traced_bytes_tenth": peak_small,
                "target_entries_per_s": STATEMENT_TARGET_PER_S,
                "meets_target": rate >= STATEMENT_TARGET_PER_S})
    return results


@click.command("settlement")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document, nothing else")
@click.option("--quick", is_flag=True, help="small window, short traffic (a minute or so)")
@click.option("--transfers", type=int, default=None, help="transfers in the closed window")
@click.option("--participants", type=int, default=None)
@click.option("--offered", type=float, default=None, help="traffic per second (stream)")
@click.option("--seconds", type=float, default=None, help="seconds of traffic per run")
@click.option("--close-every-s", type=float, default=None)
@click.option("--entries", type=int, default=None, help="entries in the statement's window")
@click.option("--traffic-runs", type=click.IntRange(min=1), default=None,
              help="pairs of traffic runs, without and with closes [3; quick 1]")
@click.option("--traffic/--no-traffic", default=True, show_default=True,
              help="run the traffic case (switch and simulator processes)")
def settlement_command(as_json, quick, transfers, participants, offered, seconds,
                       close_every_s, entries, traffic_runs, traffic) -> None:
    """Settlement: window close cost, traffic during closes, statement throughput."""
    settings = dict(QUICK if quick else DEFAULTS)
    for name, value in (("transfers", transfers), ("participants", participants),
                        ("offered", offered), ("seconds", seconds),
                        ("close_every_s", close_every_s), ("entries", entries),
                        ("traffic_runs", traffic_runs)):
        if value is not None:
            settings[name] = value
    results = [measure_close(settings["transfers"], settings["participants"],
                             settings["runs"])]
    if not as_json:
        click.echo(_line(results[-1]))
    if traffic:
        results.append(measure_traffic(settings["offered"], settings["seconds"],
                                       settings["close_every_s"], settings["traffic_runs"]))
        if not as_json:
            click.echo(_line(results[-1]))
    for result in measure_statements(settings["entries"], settings["runs"]):
        results.append(result)
        if not as_json:
            click.echo(_line(result))
    if as_json:
        click.echo(json.dumps({"results": results}))


def _line(result: dict) -> str:
    if result["case"] == "close":
        return (f"close     {result['transfers_in_window']:>12,} transfers, "
                f"{result['participants']} participants: {result['close_ms']:.1f} ms "
                f"(target ≤ {CLOSE_TARGET_MS:.0f} ms {'met' if result['meets_target'] else 'MISSED'});"
                f" positions {result['positions_ms_median']:.2f} ms")
    if result["case"] == "traffic":
        return (f"traffic   {result['transfers_per_s']:,.0f}/s with {result['closes']} closes: "
                f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
                f"(without closes: p99 {result['baseline_p99_ms']:.2f} ms, runs "
                f"{result['baseline_p99_ms_runs']}; medians of {result['runs']})")
    return (f"statement {result['format']:<8} {result['entries']:,} entries: "
            f"{result['entries_per_s']:,}/s, peak {result['peak_traced_bytes'] / 2**20:.1f} MiB "
            f"(a tenth: {result['peak_traced_bytes_tenth'] / 2**20:.1f} MiB)")
