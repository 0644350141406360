"""`ponte demo`: the whole system on this box in one command, no external service.

A switch process (embedded SQLite directory and credentials, hash-chained file journal,
all in a temporary directory), the quick population's two banks and two wallets (10,000
people and 520 merchants and billers) in a simulator process, traffic at `--tps` for
`--seconds`, a live line (transfers/s, p50/p99, success rate), and at the end the
reconciliation of every simulator's books against the switch's ledger, counting what
operators moved meanwhile through the console (its executed maker-checker proposals): the
demo exits 1 if they do not agree exactly. Participants are funded for the traffic
(connectors/sim/funding.py), so their positions visibly move.

Ctrl-C or SIGTERM (what `timeout`, `kill` and CI send) stops everything cleanly: the
simulators first, then the switch (graceful shutdown), then the temporary data directory is
removed unless --keep-data; the exit status is 128 + the signal's number. If the demo itself
is killed outright, its children notice and stop themselves (switch/launcher.py).

It must never leave a process behind.
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import signal
import tempfile
import time

import msgspec

from connectors.sim.books import (
    BooksReport,
    OperatorMovement,
    OperatorMovementKind,
    operator_net_minor,
    reconcile,
)
from connectors.sim.funding import opening_positions
from connectors.sim.population import load_profile
from connectors.sim.runner import build_population
from switch.admin.client import OperatorClient
from switch.launcher import (
    SimProcess,
    SwitchProcess,
    free_port,
    join_mobilemoney_wallet,
    onboard_population,
    sim_server_config,
)

PROFILE = "quick"
LEDGER_IDS = {"KES": 404, "BRL": 986, "USD": 840, "EUR": 978}


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: stop as Ctrl-C does (a KeyboardInterrupt, so everything
    that lets Ctrl-C through lets this through too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_signals():
    """While a command runs (the demo, `ponte bench instructions`), SIGINT and SIGTERM raise
    `Stopped` once; a repeat during the cleanup is ignored, so the cleanup itself is never
    cut short (each of its waits is bounded: a child that does not stop in time is
    killed)."""
    received: list[int] = []

    def handler(signum, frame) -> None:
        if received:
            return
        received.append(signum)
        raise Stopped(signum)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield received
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def run_demo(*, seconds: float, tps: float, seed: int, reject_rate: float,
             keep_data: bool = False) -> int:
    with stop_signals():
        return _run_demo(seconds=seconds, tps=tps, seed=seed, reject_rate=reject_rate,
                         keep_data=keep_data)


def _run_demo(*, seconds: float, tps: float, seed: int, reject_rate: float,
              keep_data: bool) -> int:
    from rich.console import Console

    # soft_wrap: rich never breaks a line itself, so a URL stays whole (and clickable) at
    # any width, piped or not; a terminal folds long lines on its own.
    console = Console(soft_wrap=True)
    profile = load_profile(PROFILE)
    data_dir = ""
    switch: SwitchProcess | None = None
    sims: SimProcess | None = None
    status = 0
    try:
        data_dir = tempfile.mkdtemp(prefix="ponte-demo-")
        http_port = free_port()
        console_port = free_port()
        mobilemoney_port = free_port()
        config = sim_server_config(data_dir, http_enabled=_http_available(),
                                   http={"port": http_port}, console_enabled=True,
                                   console_port=console_port, mobilemoney_enabled=True,
                                   mobilemoney={"port": mobilemoney_port})
        switch = SwitchProcess(config)
        console.print(f"[bold]Ponte demo[/bold] — data in {data_dir}")
        population = build_population(PROFILE, seed, tps, seconds)
        names = [p.participant_id for p in profile.participants]
        funding = opening_positions(population, names, tps, seconds)
        switch.start()
        names_kinds = [(p.participant_id, p.kind.value) for p in profile.participants]
        credentials = onboard_population(switch, names_kinds, profile.currency,
                                         LEDGER_IDS.get(profile.currency, 999), funding)
        console.print(f"switch: stream 127.0.0.1:{switch.stream_port}  admin+metrics "
                      f"http://127.0.0.1:{switch.admin_port}/metrics")
        if config["http_enabled"]:
            console.print(f"HTTP API: http://127.0.0.1:{http_port}  OpenAPI: "
                          f"http://127.0.0.1:{http_port}/openapi.json  docs: "
                          f"http://127.0.0.1:{http_port}/docs")
        operators = _print_console(console, data_dir, console_port)
        console.print("participants: " + ", ".join(
            f"{name} (id {c['participant_id']})" for name, c in credentials.items()))
        money = _money_format(profile)
        console.print(f"funding, sized to the traffic ({profile.currency}): " + ", ".join(
            f"{name} {money(funding[name])}" for name in credentials))
        # One wallet joins through the GSMA Mobile Money API: an operator puts it on the
        # hub (maker-checker), and it pays and is credited only through that API.
        mobilemoney = join_mobilemoney_wallet(
            switch, [p.participant_id for p in profile.participants if p.kind.value == "wallet"],
            credentials, mobilemoney_port)
        console.print(f"GSMA Mobile Money API: http://127.0.0.1:{mobilemoney_port}  "
                      f"({mobilemoney['name']} joins this way)")
        sims = SimProcess({
            "port": switch.stream_port,
            "participants": [{"name": name, "api_key": c["api_key"],
                              "opening_position_minor": funding[name],
                              **(mobilemoney["sim"] if name == mobilemoney["name"] else {})}
                             for name, c in credentials.items()],
            "profile": PROFILE, "seed": seed, "tps": tps, "seconds": seconds,
            "options": {"reject_rate": reject_rate, "answer_latency_ms": 2.0,
                        "return_rate": 0.005, "silence_rate": 0.0, "seed": seed},
        }, data_dir).start()
        ready = sims.wait_for("ready", 300)
        customers = sum(p["customers"] for p in ready["participants"].values())
        aliases = sum((p["aliases"] or {}).get("registered", 0)
                      for p in ready["participants"].values())
        console.print(f"{customers} customers, {aliases} aliases registered; offering "
                      f"{tps:g} payments/s for {seconds:g} s (Ctrl-C to stop)")
        final = _follow(console, sims)
        sims.wait(30)
        if final is None:
            raise RuntimeError(f"the simulators gave no final report; see {sims.log_path}:\n"
                               f"{sims.stderr_tail()}")
        movements = _operator_movements(f"http://127.0.0.1:{console_port}", operators)
        if not _summary(console, switch, final, movements, money):
            status = 1
    except Stopped as stop:
        console.print(f"\n{stop} received: stopping...")
        status = 128 + stop.signum
    except Exception as error:  # noqa: BLE001 - report, then clean up below
        console.print(f"[red]demo failed:[/red] {error}")
        status = 1
    finally:
        try:
            if sims is not None:
                sims.stop()
        finally:
            code = switch.stop() if switch is not None else 0
            if code not in (0, None):
                console.print(f"switch exited with {code}; log: {switch.log_path}")
            if keep_data and data_dir:
                console.print(f"data kept in {data_dir}")
            elif data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
    return status


def _stats_line(record: dict) -> str:
    return (f"t={record['t_s']:6.1f}s  transfers/s={record['interval_per_s']:8.1f}  "
            f"p50={record['p50_ms']:7.2f} ms  p99={record['p99_ms']:7.2f} ms  "
            f"success={record['success_rate'] * 100:6.2f}%  done={record['done']}")


def _follow(console, sims: SimProcess) -> dict | None:
    """Show the simulators' progress until they end; their final record (None if none).

    On a terminal one live line is redrawn in place; otherwise (a pipe, a CI log) each
    progress record is a line of its own, since there is no cursor to move back."""
    from rich.live import Live
    from rich.text import Text

    final = None
    live = Live(Text("starting..."), console=console, refresh_per_second=4) \
        if console.is_terminal else None
    with live if live is not None else contextlib.nullcontext():
        while True:
            try:
                record = sims.next_record(1.0)
            except queue.Empty:
                continue
            if record is None:
                break
            if record["type"] == "stats":
                if live is not None:
                    # Wrapped, not cropped, on a narrow terminal (the console soft-wraps).
                    live.update(Text(_stats_line(record), no_wrap=False, overflow="fold"))
                else:
                    console.print(_stats_line(record), highlight=False)
            elif record["type"] == "final":
                final = record
    # Live ends its line itself on a terminal (rich's Live.stop); a plain line always ends.
    return final


def _money_format(profile):
    """minor units -> '1,234.56' in the profile's currency exponent."""
    exponent = profile.currency_exponent

    def money(amount_minor: int) -> str:
        sign = "-" if amount_minor < 0 else ""
        major, minor = divmod(abs(amount_minor), 10**exponent)
        return f"{sign}{major:,}" + (f".{minor:0{exponent}d}" if exponent else "")

    return money


def _operator_movements(console_url: str, operators: list[tuple[str, str, str]]
                        ) -> list[OperatorMovement]:
    """Every deposit, withdrawal and net debit cap change the switch carried out for an
    operator during the demo, as the console's maker-checker recorded them (read as the
    demo's viewer). Raises if one is still being carried out: the books cannot be
    reconciled while the switch may or may not have moved that money."""
    from switch.admin import limits as admin_limits

    viewer = next((username, password) for username, password, role in operators
                  if role == "viewer")
    client = OperatorClient.login(console_url, *viewer)
    if client.get("/api/admin/proposals", state="approved"):
        raise RuntimeError("an operator change is still being carried out; reconcile later")
    executed = client.get("/api/admin/proposals", state="executed")
    if len(executed) >= admin_limits.AUDIT_PAGE_MAX:
        raise RuntimeError(f"more than {admin_limits.AUDIT_PAGE_MAX - 1} operator changes: "
                           "too many to read back for the reconciliation")
    kinds = {kind.value: kind for kind in OperatorMovementKind}
    movements = []
    for proposal in executed:
        kind = kinds.get(proposal["kind"])
        if kind is None:
            continue  # a daily limit moves no money
        body = proposal["body"]
        movements.append(OperatorMovement(
            participant_id=proposal["participant_id"], currency=proposal["currency"],
            kind=kind, at_ns=proposal["decided_ns"],
            amount_minor=body["cap_minor"] if kind is OperatorMovementKind.NET_DEBIT_CAP
            else body["amount_minor"]))
    return movements


def _summary(console, switch: SwitchProcess, final: dict,
             movements: list[OperatorMovement], money) -> bool:
    """Print the run's figures and reconcile every simulator's books, with the operator's
    movements, against the switch's ledger; True when they agree exactly."""
    results = final["results"]
    console.print(f"done: {final['done']} transfers in {final['elapsed_s']} s — "
                  + ", ".join(f"{name.lower()}={count}" for name, count in sorted(results.items()))
                  + f"; p50={final['p50_ms']} ms p99={final['p99_ms']} ms")
    reports = [msgspec.convert(books, BooksReport) for books in final["books"]]
    if reports:
        console.print(f"positions at the switch ({reports[0].currency}):")
        width = max(len(report.name) for report in reports)
        for report in reports:
            lowest = report.position_low_minor
            console.print(
                f"  {report.name:<{width}}  funded {money(report.opening_position_minor)}  "
                f"lowest {money(report.opening_position_minor if lowest is None else lowest)}"
                f"  now {money(report.position_minor)}", highlight=False)
    operator_net = {report.name: operator_net_minor(movements, report) for report in reports}
    if movements:
        console.print("operator movements: " + ", ".join(
            f"{name} {'+' if net_minor >= 0 else '-'}{money(abs(net_minor))}"
            for name, net_minor in operator_net.items() if net_minor)
            + f" ({len(movements)} carried out through the console)", highlight=False)
    time.sleep(0.2)
    positions = switch.positions()
    differences = []
    for report in reports:
        account = positions[report.participant_id]["accounts"][report.currency]
        differences.extend(reconcile(report, account, operator_net[report.name]))
    if differences:
        console.print(f"[red]books do not reconcile:[/red] {differences}")
        return False
    console.print("[green]every simulator's books reconcile exactly with the switch's "
                  "ledger[/green]")
    return True


def _print_console(console, data_dir: str, console_port: int) -> list[tuple[str, str, str]]:
    """Print the operator console's URL and the demo's operators (created on first run);
    the operators as (username, password, role)."""
    from switch.console.server_port import create_demo_operators

    console.print(f"operator console: [bold]http://127.0.0.1:{console_port}/[/bold]  "
                  f"admin API: http://127.0.0.1:{console_port}/api/admin/schema/openapi.json")
    operators = create_demo_operators(data_dir)
    for username, password, role in operators:
        console.print(f"  log in as [bold]{username}[/bold] / {password}  ({role})")
    return operators


def _http_available() -> bool:
    try:
        from connectors.http.app import start_http_connector  # noqa: F401
    except ImportError:
        return False
    return True
