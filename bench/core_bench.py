"""`ponte bench core`: the switch core's CPU cost per transfer, in memory.

One transfer = four messages and their ledger operations: the payer's transfer in, the
credit request out, the payee's accept in, the outcome out to both parties (plus the timer
arm/cancel and the lookup-token refund), with the ledger reserve and post of the payment
and fee legs. Cases:

- `core`: `SwitchCore.step` only, on pre-built events (what issue 3's target is about);
- `core+codec`: also decoding both inbound messages from msgpack bytes, encoding the three
  outbound ones and the two journal records (what the server adds around the core).

Each case runs for the compiled and the pure ledger, with and without a scheme fee (the fee
is a second, linked ledger leg). Figures are medians of several runs on fresh cores; the
events are generated before any clock starts. CPU time (`process_time`) is reported beside
wall time. It drives the core only through its public API and never times set-up.
`--json` prints `{"results": [...]}`, one object per case as `measure()` returns it (shape
in docs/core.md, "Proof").
"""

from __future__ import annotations

import json
import statistics
import time

import click

import ledger
from switch.core import CoreConfig, SettlementModel, SwitchCore, codec
from switch.core.messages import (
    CurrencyAdded,
    FundsDeposited,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    PayeeAnswer,
    PayeeAnswered,
    SchemeRules,
    Send,
    TransferRequest,
    TransferRequested,
)

TARGET_US = 20.0  # issue 3: <= 20 µs of CPU per transfer with the compiled ledger
T0_NS = 1_700_000_000 * 10**9
TRANSFERS = {"compiled": 100_000, "pure": 20_000}
TRANSFERS_QUICK = {"compiled": 20_000, "pure": 5_000}
RUNS = 5
RUNS_QUICK = 3
CASES = ("core", "core+codec")


def build_core(ledger_cls, fee: bool, transfers: int) -> SwitchCore:
    """A core with one prefunded currency and two participants with money to spare."""
    config = CoreConfig(transfers_retained_max=max(transfers, 1_000), in_flight_max=1_000)
    store = ledger_cls(ledger.LedgerConfig(
        accounts_max=64, transfers_retained_max=max(1 << 16, 4 * transfers), pending_max=4_096))
    core = SwitchCore(config, store)
    rules = SchemeRules(fee_fixed_minor=1, fee_bps=10) if fee else SchemeRules()
    core.step(CurrencyAdded(request_id="cur", currency="BRL", ledger_id=986,
                            settlement_model=SettlementModel.PREFUNDED_RTGS, rules=rules), T0_NS)
    for participant_id in (1, 2):
        for event in (
            ParticipantAdded(request_id=f"add-{participant_id}", participant_id=participant_id,
                             name=f"bank-{participant_id}"),
            ParticipantAccountOpened(request_id=f"open-{participant_id}",
                                     participant_id=participant_id, currency="BRL"),
            FundsDeposited(request_id=f"fund-{participant_id}", participant_id=participant_id,
                           currency="BRL", amount_minor=10**15),
        ):
            core.step(event, T0_NS)
    return core


def make_events(transfers: int) -> list[tuple[TransferRequested, PayeeAnswered]]:
    payee = Party(alias_type="MSISDN", alias_value="+5511999990000")
    pairs = []
    for index in range(transfers):
        transfer_id = f"tx-{index:010d}"
        request = TransferRequest(
            transfer_id=transfer_id, payee=payee, amount_minor=1_000 + index % 1_000,
            currency="BRL", expires_at_ns=T0_NS + 60 * 10**9, end_to_end_id=f"E2E{index}",
            payer_user_ref="user-1",
        )
        pairs.append((
            TransferRequested(payer_participant_id=1, payee_participant_id=2,
                              payee_account_ref="acc-2", request=request),
            PayeeAnswered(payee_participant_id=2, answer=PayeeAnswer(
                payer_participant_id=1, transfer_id=transfer_id, accepted=True)),
        ))
    return pairs


def run_core(core: SwitchCore, pairs) -> None:
    step = core.step
    now_ns = T0_NS + 1_000
    for transfer, answer in pairs:
        commands = step(transfer, now_ns)
        assert len(commands) == 2  # credit request + timer
        commands = step(answer, now_ns + 500)
        assert len(commands) == 4  # cancel timer, outcome to payer and payee, token refund
        now_ns += 1_000


def run_core_with_codec(core: SwitchCore, frames) -> None:
    """As the server would: decode the wire frames, step, encode the replies and journal."""
    step = core.step
    decode = codec.decode_inbound_msgpack
    encode_outbound = codec.encode_outbound_msgpack
    encode_event = codec.encode_event
    now_ns = T0_NS + 1_000
    for transfer_frame, answer_frame in frames:
        event = TransferRequested(payer_participant_id=1, payee_participant_id=2,
                                  payee_account_ref="acc-2", request=decode(transfer_frame))
        encode_event(now_ns, event)
        for command in step(event, now_ns):
            if type(command) is Send:
                encode_outbound(command.message)
        event = PayeeAnswered(payee_participant_id=2, answer=decode(answer_frame))
        encode_event(now_ns + 500, event)
        for command in step(event, now_ns + 500):
            if type(command) is Send:
                encode_outbound(command.message)
        now_ns += 1_000


def measure(case: str, implementation: str, fee: bool, transfers: int, runs: int) -> dict:
    ledger_cls = ledger.CompiledLedger if implementation == "compiled" else ledger.PureLedger
    assert ledger_cls is not None, "compiled ledger not built"
    pairs = make_events(transfers)
    frames = [(codec.encode_inbound_msgpack(t.request), codec.encode_inbound_msgpack(a.answer))
              for t, a in pairs] if case == "core+codec" else None
    cpu_us, wall_us = [], []
    for _ in range(runs):
        core = build_core(ledger_cls, fee, transfers)
        cpu_start, wall_start = time.process_time_ns(), time.perf_counter_ns()
        if case == "core":
            run_core(core, pairs)
        else:
            run_core_with_codec(core, frames)
        cpu_us.append((time.process_time_ns() - cpu_start) / transfers / 1_000)
        wall_us.append((time.perf_counter_ns() - wall_start) / transfers / 1_000)
        assert core.in_flight_count == 0
        core.ledger.check_invariants()
    cpu = statistics.median(cpu_us)
    return {
        "case": case,
        "ledger": implementation,
        "fee_leg": fee,
        "transfers": transfers,
        "runs": runs,
        "cpu_us_per_transfer": round(cpu, 3),
        "wall_us_per_transfer": round(statistics.median(wall_us), 3),
        "transfers_per_s": round(1_000_000 / cpu),
        "target_cpu_us": TARGET_US if implementation == "compiled" else None,
        "meets_target": (cpu <= TARGET_US) if implementation == "compiled" else None,
    }


def run_all(quick: bool, implementations: tuple[str, ...], progress=None) -> list[dict]:
    plan = [(case, impl, fee) for impl in implementations for case in CASES
            for fee in (True, False)]
    results = []
    for case, impl, fee in plan:
        transfers = (TRANSFERS_QUICK if quick else TRANSFERS)[impl]
        results.append(measure(case, impl, fee, transfers, RUNS_QUICK if quick else RUNS))
        if progress is not None:
            progress()
    return results


@click.command("core")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document, nothing else")
@click.option("--quick", is_flag=True, help="fewer transfers and runs (a few seconds)")
@click.option("--pure/--no-pure", default=True, show_default=True,
              help="also measure with the pure-Python ledger twin")
def core_command(as_json: bool, quick: bool, pure: bool) -> None:
    """Switch core CPU per transfer (4 messages + ledger ops), in memory."""
    implementations = ("compiled",) if ledger.CompiledLedger is not None else ()
    if pure or not implementations:
        implementations += ("pure",)
    if as_json:
        results = run_all(quick, implementations)
        click.echo(json.dumps({"results": results}))
        return
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    cases = len(implementations) * len(CASES) * 2
    with Progress(transient=True) as progress:
        task = progress.add_task("core bench", total=cases)
        results = run_all(quick, implementations, lambda: progress.advance(task))
    table = Table(title="switch core: per transfer (transfer, credit request, accept, outcomes)")
    for column in ("case", "ledger", "fee leg", "transfers x runs", "CPU µs", "wall µs",
                   "transfers/s (1 core)", "target"):
        table.add_column(column)
    for row in results:
        target = "" if row["target_cpu_us"] is None else (
            f"≤ {row['target_cpu_us']:.0f} µs {'met' if row['meets_target'] else 'MISSED'}")
        table.add_row(row["case"], row["ledger"], "yes" if row["fee_leg"] else "no",
                      f"{row['transfers']:,} x {row['runs']}", f"{row['cpu_us_per_transfer']:.2f}",
                      f"{row['wall_us_per_transfer']:.2f}", f"{row['transfers_per_s']:,}", target)
    Console().print(table)
    if ledger.CompiledLedger is None:
        click.echo(f"compiled ledger not built ({ledger.COMPILED_IMPORT_ERROR}): pure only")
