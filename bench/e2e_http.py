"""End-to-end benchmark of the HTTP connector: `run_http(...)`, called by `ponte bench e2e`.

NOTE for bench/e2e_bench.py (the server engineer's file): this module owns only the HTTP
transport. `bench/e2e_bench.py` calls `run_http(seconds=..., offered_per_s=..., quick=...)`
and gets back one result dict in the `--json` shape:
`{"transport": "http", "offered_per_s", "transfers_per_s", "p50_ms", "p90_ms", "p99_ms",
"success_rate", "peak_rss_bytes"}`, and per-second samples appended to `series=`. `python -m bench.e2e_http --seconds 10` runs it alone.

Layout on one box, real processes and sockets: the switch (SwitchServer + HttpConnector,
durable file journal) in one process; the participants (payer banks and payee wallets,
each an SDK `HttpClient` with its callback receiver) in a second process. Each transfer is
four HTTP exchanges plus one: payer POST /transfers, credit request callback to the payee,
payee PUT answer, outcome callbacks to payer and payee. Latency is from the payer's POST
to the payer receiving the final outcome. At the end the participants' books (every
committed outcome they heard) must equal the switch's ledger, or the run raises.
`offered_per_s = 0` runs closed-loop (a fixed window of transfers in flight) to find the
most the box does.

It must never measure anything but public surfaces: HTTP in, HTTP callbacks out.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import socket
import tempfile
import time

import msgspec

from connectors.sim.latency import LatencyHistogram
from switch.core.results import TransferState

ALIASES_PER_PAYEE = 200
CURRENCY = "BRL"
LEDGER_ID = 986
FUNDING_MINOR = 10**15
EXPIRY_NS = 60 * 1_000_000_000
WARMUP_S = 1.0
IN_FLIGHT_MAX = 20_000  # open loop: transfers outstanding before the load counts a miss
_STATE_NAMES = {int(state): state.name for state in TransferState}


class SwitchReady(msgspec.Struct):
    http_port: int
    api_keys: dict[int, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _peak_rss_bytes(pid: int | str = "self") -> int:
    """VmHWM: the process's peak resident set size (Linux)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def msisdn(payee_index: int, alias_index: int) -> str:
    return f"+55119{payee_index:02d}{alias_index:06d}"


def cpf(seed: int) -> str:
    """A valid Brazilian CPF for any seed (the directory's default national-ID format)."""
    base = f"{seed % 10**9:09d}"
    if base == base[0] * 9:
        base = "1" + base[1:8] + "2"
    digits = base
    for weights in (range(10, 1, -1), range(11, 1, -1)):
        remainder = sum(int(c) * w for c, w in zip(digits, weights)) % 11
        digits += str(0 if remainder < 2 else 11 - remainder)
    return digits


# -- the switch process ----------------------------------------------------------------


async def _switch(data_dir: str, callback_urls: dict[int, str], payees: list[int],
                  pipe) -> None:
    from connectors.http.app import HttpConnector, HttpConnectorConfig
    from switch.core.messages import (
        CurrencyAdded,
        FundsDeposited,
        ParticipantAccountOpened,
        ParticipantAdded,
    )
    from switch.core.results import Result, SettlementModel
    from switch.server.config import ServerConfig
    from switch.app import start_switch

    from switch.directory.config import DirectoryConfig

    # The bench's payers are large banks: the anti-enumeration policy of the top category.
    directory = DirectoryConfig(participant_categories={
        str(participant_id): "A" for participant_id in callback_urls})
    server = await start_switch(ServerConfig(data_dir=data_dir, stream_enabled=False,
                                       admin_enabled=False, directory=directory))
    gateway = server.gateway

    async def admin(event) -> None:
        answer = await gateway.admin(event)
        assert answer.result in (Result.OK,), answer

    await admin(CurrencyAdded(request_id="bench-currency", currency=CURRENCY,
                              ledger_id=LEDGER_ID,
                              settlement_model=SettlementModel.PREFUNDED_RTGS))
    api_keys = {}
    for participant_id, url in callback_urls.items():
        kind = "wallet" if participant_id in payees else "bank"
        await server.credentials.put_participant(participant_id, f"{kind}-{participant_id}",
                                                 kind, url)
        await admin(ParticipantAdded(request_id=f"bench-p-{participant_id}",
                                     participant_id=participant_id,
                                     name=f"{kind}-{participant_id}"))
        await admin(ParticipantAccountOpened(request_id=f"bench-a-{participant_id}",
                                             participant_id=participant_id,
                                             currency=CURRENCY))
        await admin(FundsDeposited(request_id=f"bench-f-{participant_id}",
                                   participant_id=participant_id, currency=CURRENCY,
                                   amount_minor=FUNDING_MINOR))
        api_keys[participant_id] = await server.credentials.issue_key(participant_id)
    for payee_index, participant_id in enumerate(payees):
        for alias_index in range(ALIASES_PER_PAYEE):
            answer = await gateway.register_alias(
                participant_id, alias_type="MSISDN", alias_value=msisdn(payee_index,
                                                                        alias_index),
                account_ref=f"acc-{alias_index}",
                owner_national_id=cpf(participant_id * 100_000 + alias_index),
                display_name="Bench Customer")
            assert answer.result is Result.OK, answer
    http = HttpConnector(gateway, HttpConnectorConfig(port=0))
    await http.start()
    pipe.send(msgspec.msgpack.encode(SwitchReady(http_port=http.port, api_keys=api_keys)))
    loop = asyncio.get_running_loop()
    cpu_started_s = time.process_time()
    await loop.run_in_executor(None, pipe.recv)  # "stop"
    cpu_s = time.process_time() - cpu_started_s
    stats = msgspec.structs.asdict(http.callbacks.stats)
    positions = {participant_id: accounts[CURRENCY]
                 for participant_id, accounts in server.positions().items()}
    await http.close(grace_ms=1_000)
    await server.stop(drain_s=1.0)
    pipe.send(msgspec.msgpack.encode({"peak_rss_bytes": _peak_rss_bytes(),
                                      "callbacks": stats, "cpu_s": cpu_s,
                                      "positions": positions}))


def _profiled(name: str, run) -> object:
    """Run `run()`, under cProfile when PONTE_BENCH_PROFILE names a folder for the stats."""
    folder = os.environ.get("PONTE_BENCH_PROFILE")
    if not folder:
        return run()
    import cProfile

    profile = cProfile.Profile()
    try:
        return profile.runcall(run)
    finally:
        profile.dump_stats(os.path.join(folder, f"{name}.prof"))


def _switch_main(data_dir, callback_urls, payees, pipe) -> None:
    import logging

    import uvloop

    logging.basicConfig(level=logging.WARNING)
    _profiled("switch", lambda: uvloop.run(_switch(data_dir, callback_urls, payees, pipe)))


# -- the participants' process ---------------------------------------------------------


class _Load:
    """Payers send, payees accept; the payers' outcome callbacks close the loop."""

    def __init__(self, seconds: float, offered_per_s: int, window: int, seed: int) -> None:
        self.seconds = seconds
        self.offered_per_s = offered_per_s
        self.window = window
        self.rng = random.Random(seed)
        self.sent_ns: dict[tuple[int, str], int] = {}
        self.latencies_ns: list[int] = []
        self.committed = 0
        # The participants' books, from every COMMITTED outcome (warm-up and tail too), to
        # reconcile with the switch's ledger at the end.
        self.booked: set[tuple[int, str]] = set()
        self.debits_minor: dict[int, int] = {}
        self.credits_minor: dict[int, int] = {}
        self.failed = 0
        self.refused = 0
        self.send_errors = 0
        self.missed = 0  # open loop: offered while IN_FLIGHT_MAX were outstanding
        self.measuring = False
        self.measure_from = 0.0
        # Per second of the measured run: final answers by result, and their latencies (a
        # bounded histogram each), for the report's per-second series.
        self.second_outcomes: list[dict[str, int]] = [{} for _ in range(int(seconds) + 1)]
        self.second_latency = [LatencyHistogram() for _ in range(int(seconds) + 1)]
        self.room = asyncio.Event()
        self.next_id = 0

    def outcome(self, message) -> None:
        key = (message.payer_participant_id, message.transfer_id)
        if message.state == 3 and key not in self.booked:  # COMMITTED, first time heard
            self.booked.add(key)
            self.debits_minor[message.payer_participant_id] = (
                self.debits_minor.get(message.payer_participant_id, 0) + message.amount_minor)
            self.credits_minor[message.payee_participant_id] = (
                self.credits_minor.get(message.payee_participant_id, 0)
                + message.amount_minor)
        sent = self.sent_ns.pop(key, None)
        if sent is None:
            return  # a duplicate delivery, or the payee's copy
        if self.measuring:
            latency_ns = time.perf_counter_ns() - sent
            if message.state == 3:  # COMMITTED
                self.committed += 1
                self.latencies_ns.append(latency_ns)
            else:
                self.failed += 1
            self._count_second(_STATE_NAMES.get(message.state, "UNKNOWN_STATE"), latency_ns)
        self.room.set()

    def refused_message(self, message) -> None:
        if self.sent_ns.pop((message.scope_participant_id, message.id), None) is not None:
            if self.measuring:
                self.refused += 1
                self._count_second(
                    f"REFUSED_{getattr(message.result, 'name', message.result)}", None)
        self.room.set()

    def _count_second(self, outcome: str, latency_ns: int | None) -> None:
        second = int(time.perf_counter() - self.measure_from)
        if 0 <= second < len(self.second_outcomes):
            outcomes = self.second_outcomes[second]
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if latency_ns is not None:
                self.second_latency[second].record(latency_ns / 1e9)

    def seconds_series(self) -> list[dict]:
        """One entry per whole second measured: completed, p50/p90/p99 (None if nothing
        completed with a latency), outcomes by result."""
        series = []
        for outcomes, histogram in zip(self.second_outcomes[:int(self.seconds)],
                                       self.second_latency):
            measured = histogram.count > 0
            series.append({
                "completed": sum(outcomes.values()),
                "p50_ms": histogram.quantile(0.50) * 1000 if measured else None,
                "p90_ms": histogram.quantile(0.90) * 1000 if measured else None,
                "p99_ms": histogram.quantile(0.99) * 1000 if measured else None,
                "outcomes": dict(sorted(outcomes.items())),
            })
        return series


async def _participants(ready: SwitchReady, payers: list[int], payees: list[int],
                        ports: dict[int, int], seconds: float, offered_per_s: int,
                        window: int, seed: int) -> dict:
    from connectors.sdk.http_client import HttpClient, ParticipantHandler
    from switch.core.messages import Party, TransferRequest

    load = _Load(seconds, offered_per_s, window, seed)

    class Payer(ParticipantHandler):
        def on_transfer_outcome(self, message) -> None:
            load.outcome(message)

        def on_refused(self, message) -> None:
            load.refused_message(message)

    class Payee(ParticipantHandler):
        def on_credit_request(self, message):
            return True

    base = f"http://127.0.0.1:{ready.http_port}"
    clients: dict[int, HttpClient] = {}
    for participant_id in payers + payees:
        handler = Payee() if participant_id in payees else Payer()
        clients[participant_id] = HttpClient(
            base, ready.api_keys[participant_id], handler=handler,
            callback_port=ports[participant_id], connections_max=4)
    for client in clients.values():
        await client.connect()

    aliases = [Party(alias_type="MSISDN", alias_value=msisdn(p, a))
               for p in range(len(payees)) for a in range(ALIASES_PER_PAYEE)]
    rng = load.rng

    def transfer_for(payer_id: int) -> TransferRequest:
        load.next_id += 1
        return TransferRequest(
            transfer_id=f"b{seed}-{load.next_id}", payee=rng.choice(aliases),
            amount_minor=rng.randint(1, 10_000), currency=CURRENCY,
            expires_at_ns=time.time_ns() + EXPIRY_NS, payer_user_ref=f"u{load.next_id % 997}")

    def send(payer_id: int) -> None:
        transfer = transfer_for(payer_id)
        key = (payer_id, transfer.transfer_id)
        load.sent_ns[key] = time.perf_counter_ns()
        # The SDK's pipelined call: a future of the final answer, no task per transfer.
        future = clients[payer_id].submit_transfer(transfer)
        future.add_done_callback(lambda done, key=key: _sent(done, key))

    def _sent(future: asyncio.Future, key) -> None:
        if future.cancelled() or future.exception() is not None:
            if load.sent_ns.pop(key, None) is not None and load.measuring:
                load.send_errors += 1
            load.room.set()

    started = time.perf_counter()
    cpu_started_s = time.process_time()
    measure_from = load.measure_from = started + WARMUP_S
    stop_at = measure_from + seconds
    payer_cycle = 0
    if offered_per_s <= 0:
        # Closed loop: keep `window` transfers outstanding.
        while time.perf_counter() < stop_at:
            if not load.measuring and time.perf_counter() >= measure_from:
                load.measuring = True
            while len(load.sent_ns) < window:
                send(payers[payer_cycle % len(payers)])
                payer_cycle += 1
            load.room.clear()
            try:
                await asyncio.wait_for(load.room.wait(), 0.05)
            except asyncio.TimeoutError:
                pass
    else:
        tick_s = 0.002
        due = 0.0
        last = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                break
            if not load.measuring and now >= measure_from:
                load.measuring = True
            due += (now - last) * offered_per_s
            last = now
            while due >= 1:
                due -= 1
                if len(load.sent_ns) >= IN_FLIGHT_MAX:
                    if load.measuring:
                        load.missed += 1
                    continue
                send(payers[payer_cycle % len(payers)])
                payer_cycle += 1
            await asyncio.sleep(tick_s)
    load.measuring = False
    elapsed = time.perf_counter() - measure_from
    # Let the last transfers finish (not counted) so the books can be reconciled.
    for _ in range(3_000):
        if not load.sent_ns:
            break
        await asyncio.sleep(0.01)
    for client in clients.values():
        await client.close()
    latencies = sorted(load.latencies_ns)

    def percentile_ms(fraction: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] / 1e6

    attempted = load.committed + load.failed + load.refused + load.send_errors + load.missed
    return {
        "transfers_per_s": load.committed / elapsed,
        "p50_ms": percentile_ms(0.50),
        "p90_ms": percentile_ms(0.90),
        "p99_ms": percentile_ms(0.99),
        "success_rate": load.committed / attempted if attempted else 0.0,
        "committed": load.committed, "failed": load.failed, "refused": load.refused,
        "send_errors": load.send_errors, "missed": load.missed,
        "load_peak_rss_bytes": _peak_rss_bytes(),
        "cpu_s": time.process_time() - cpu_started_s,
        "unfinished": len(load.sent_ns),
        "seconds_series": load.seconds_series(),
        "debits_minor": load.debits_minor,
        "credits_minor": load.credits_minor,
    }


def _participants_main(ready_bytes, payers, payees, ports, seconds, offered_per_s, window,
                       seed, pipe) -> None:
    import logging

    import uvloop

    logging.basicConfig(level=logging.WARNING)
    ready = msgspec.msgpack.decode(ready_bytes, type=SwitchReady)
    result = _profiled("participants", lambda: uvloop.run(_participants(
        ready, payers, payees, ports, seconds, offered_per_s, window, seed)))
    pipe.send(msgspec.msgpack.encode(result))


# -- the entry point -------------------------------------------------------------------


class BooksDoNotReconcile(AssertionError):
    """The participants' books (committed outcomes) differ from the switch's ledger."""


def _reconcile(load: dict, positions: dict, payer_ids: list[int],
               payee_ids: list[int]) -> list[str]:
    """Differences between what the participants heard committed and what the switch's
    ledger posted: payers only pay, payees only receive (on top of their funding)."""
    if load["unfinished"]:
        return [f"{load['unfinished']} transfers never heard of: cannot reconcile"]
    problems = []
    debits = {int(k): v for k, v in load["debits_minor"].items()}
    credits = {int(k): v for k, v in load["credits_minor"].items()}
    positions = {int(k): v for k, v in positions.items()}
    for participant_id in payer_ids:
        ledger_minor = positions[participant_id]["debits_posted"]
        if ledger_minor != debits.get(participant_id, 0):
            problems.append(f"payer {participant_id}: ledger debits {ledger_minor} != "
                            f"books {debits.get(participant_id, 0)}")
    for participant_id in payee_ids:
        ledger_minor = positions[participant_id]["credits_posted"] - FUNDING_MINOR
        if ledger_minor != credits.get(participant_id, 0):
            problems.append(f"payee {participant_id}: ledger credits {ledger_minor} != "
                            f"books {credits.get(participant_id, 0)}")
    return problems


def run_http(*, seconds: float = 10.0, offered_per_s: int = 0, quick: bool = False,
             payers: int = 2, payees: int = 2, window: int = 1_000, seed: int = 1,
             data_dir: str | None = None, series: list | None = None) -> dict:
    """Run the HTTP end-to-end benchmark and return one `--json` result dict.
    `offered_per_s = 0`: closed loop with `window` transfers in flight. `quick`: 5 s.
    Appends one per-second sample (bench.report.SeriesSample fields) to `series`."""
    if quick:
        seconds = min(seconds, 5.0)
    assert seconds > 0 and payers >= 1 and payees >= 1 and window >= 1
    payer_ids = list(range(1, payers + 1))
    payee_ids = list(range(payers + 1, payers + payees + 1))
    ports = {participant_id: _free_port() for participant_id in payer_ids + payee_ids}
    callback_urls = {pid: f"http://127.0.0.1:{port}" for pid, port in ports.items()}
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ponte-bench-http-", dir=data_dir) as workdir:
        switch_pipe, switch_end = context.Pipe()
        switch = context.Process(target=_switch_main, name="ponte-switch",
                                 args=(workdir, callback_urls, payee_ids, switch_end))
        switch.start()
        try:
            if not switch_pipe.poll(120):
                raise RuntimeError("the switch did not become ready in 120 s")
            ready_bytes = switch_pipe.recv()
            load_pipe, load_end = context.Pipe()
            participants = context.Process(
                target=_participants_main, name="ponte-participants",
                args=(ready_bytes, payer_ids, payee_ids, ports, seconds, offered_per_s,
                      window, seed, load_end))
            participants.start()
            if not load_pipe.poll(seconds + WARMUP_S + 120):
                participants.kill()
                raise RuntimeError("the participants did not finish")
            load = msgspec.msgpack.decode(load_pipe.recv())
            participants.join(30)
            switch_pipe.send("stop")
            closing = msgspec.msgpack.decode(switch_pipe.recv()) if switch_pipe.poll(60) else {}
            switch.join(30)
        finally:
            for process in (switch,):
                if process.is_alive():
                    process.kill()
                    process.join(5)
    unreconciled = _reconcile(load, closing.get("positions", {}), payer_ids, payee_ids)
    if unreconciled:
        raise BooksDoNotReconcile("; ".join(unreconciled))
    if series is not None:
        for second in load["seconds_series"]:
            series.append({
                "t_s": float(len(series)), "offered_per_s": float(offered_per_s),
                "completed_per_s": float(second["completed"]),
                "latency_p50_ms": second["p50_ms"], "latency_p90_ms": second["p90_ms"],
                "latency_p99_ms": second["p99_ms"], "outcomes": second["outcomes"],
            })
    return {
        "transport": "http",
        "offered_per_s": offered_per_s,
        "transfers_per_s": round(load["transfers_per_s"], 1),
        "p50_ms": round(load["p50_ms"], 3),
        "p90_ms": round(load["p90_ms"], 3),
        "p99_ms": round(load["p99_ms"], 3),
        "success_rate": round(load["success_rate"], 5),
        "peak_rss_bytes": int(closing.get("peak_rss_bytes", 0)),
        "detail": {
            "window": window if offered_per_s <= 0 else None,
            "seconds": seconds,
            "committed": load["committed"], "failed": load["failed"],
            "refused": load["refused"], "send_errors": load["send_errors"],
            "missed": load["missed"],
            "participants_peak_rss_bytes": load["load_peak_rss_bytes"],
            "switch_cpu_s": round(closing.get("cpu_s", 0.0), 2),
            "participants_cpu_s": round(load["cpu_s"], 2),
            "callbacks": closing.get("callbacks", {}),
            "reconciled": True,
        },
    }


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Ponte HTTP connector end-to-end bench")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--offered-per-s", type=int, default=0)
    parser.add_argument("--window", type=int, default=1_000)
    parser.add_argument("--payers", type=int, default=2)
    parser.add_argument("--payees", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    result = run_http(seconds=args.seconds, offered_per_s=args.offered_per_s,
                      quick=args.quick, window=args.window, payers=args.payers,
                      payees=args.payees)
    print(json.dumps({"results": [result]}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
