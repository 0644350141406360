"""`ponte bench iso20022`: what ISO 20022 costs.

Two parts:
- per message, CPU µs (time.process_time) for each stage of the connector on a pacs.008
  with every group the mapping reads and a pacs.002: parse (hardened lxml parser),
  validate (the compiled XSDs: AppHdr + Document), map (the scheme's rules and the core
  Struct), serialise (pacs.008 and pacs.002 written by the connector);
- full ISO payments per second: a real switch in this process (core, ledger, durable file
  journal with fdatasync per group commit), the ISO connector with validation on, and two
  ISO banks on loopback (connectors/iso20022/bank.py, in this process too, so their CPU is
  counted against the switch): the payer bank POSTs batches of pacs.008, the switch sends
  pacs.008 to the payee bank, which answers pacs.002 ACCP, and both banks get pacs.002
  ACSC. A payment counts when the payer bank has its pacs.002.

`--json` prints one JSON document; `--quick` runs a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time

import click

SAMPLE_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests", "connectors",
                          "iso20022", "samples")


def _messages():
    from connectors.iso20022.bank import envelope, new_id, now_text, pacs002, pacs008
    _, p8 = pacs008("BANKA001", "PONTE", "BANKB002", "TX-BENCH", "25.00", "BRL",
                    proxy=("MSISDN", "+5511987650001"))
    p2 = pacs002("BANKB002", "PONTE", "PBENCH", "1", "TX-BENCH", "ACCP")
    return p8, p2


def stages(iterations: int) -> dict:
    from connectors.iso20022 import xml
    from connectors.iso20022.common import Members
    from connectors.iso20022.inbound import Context, decode, open_envelope
    from connectors.iso20022.outbound import Writer
    from switch.core.messages import CreditRequest, Party, TransferOutcome
    from switch.core.results import Result, TransferState

    xml.load_all()
    members = Members("PONTE", {1: ("BANKA001",), 2: ("BANKB002",)})
    writer = Writer(members)
    p8, p2 = _messages()
    sent = {"PBENCH": (1, "TX-BENCH")}.get
    results = {}
    for name, body, sender in (("pacs.008", p8, "BANKA001"), ("pacs.002", p2, "BANKB002")):
        clock = time.process_time
        start = clock()
        for _ in range(iterations):
            root = xml.parse(body)
        parse_us = (clock() - start) / iterations * 1e6
        header, document = root[0], root[1]
        definition = "pacs.008.001.08" if name == "pacs.008" else "pacs.002.001.10"
        start = clock()
        for _ in range(iterations):
            assert xml.validate(xml.HEAD, header) is None
            assert xml.validate(definition, document) is None
        validate_us = (clock() - start) / iterations * 1e6
        # open_envelope validates too: map = (open + decode) - validate.
        now_ns = time.time_ns()
        participant = 1 if sender == "BANKA001" else 2
        context = Context(participant, sender, now_ns, members, 60_000, 300_000, sent)
        start = clock()
        for _ in range(iterations):
            envelope = open_envelope(xml.parse(body), sender, members, now_ns)
            decode(envelope, context)
        map_us = (clock() - start) / iterations * 1e6 - validate_us - parse_us
        results[name + " in"] = {"parse_us": round(parse_us, 1),
                                 "validate_us": round(validate_us, 1),
                                 "map_us": round(max(map_us, 0.0), 1)}
    credit = CreditRequest(payer_participant_id=1, transfer_id="TX-BENCH",
                           payee_account_ref="ACC-B-1", amount_minor=2_500, currency="BRL",
                           expires_at_ns=time.time_ns() + 60 * 10**9,
                           payee_alias=Party(alias_type="MSISDN", alias_value="+551198765"),
                           end_to_end_id="E2E", purpose="Invoice")
    outcome = TransferOutcome(payer_participant_id=1, transfer_id="TX-BENCH",
                              state=TransferState.COMMITTED, result=Result.OK,
                              payee_participant_id=2, amount_minor=2_500, currency="BRL")
    for name, write in (("pacs.008 out", lambda now: writer.credit(credit, 2, now, None)),
                        ("pacs.002 out", lambda now: writer.outcome(1, outcome, now, None,
                                                                    "pacs.008"))):
        start = time.process_time()
        for _ in range(iterations):
            written = write(time.time_ns())
        serialise_us = (time.process_time() - start) / iterations * 1e6
        root = xml.parse(written.body)
        start = time.process_time()
        for _ in range(iterations):
            xml.validate(written.definition, root[1])
        results[name] = {"serialise_us": round(serialise_us, 1),
                         "validate_us": round((time.process_time() - start) / iterations
                                              * 1e6, 1)}
    return results


async def _payments(seconds: float, batch: int, window: int) -> dict:
    from connectors.iso20022.bank import Bank, pacs008
    from connectors.iso20022.connector import BankConfig, Iso20022Config, Iso20022Connector
    from switch.app import start_switch
    from switch.core.messages import (CurrencyAdded, FundsDeposited, ParticipantAccountOpened,
                                      ParticipantAdded)
    from switch.core.results import SettlementModel
    from switch.directory.config import DirectoryConfig
    from switch.server.config import ServerConfig

    with tempfile.TemporaryDirectory() as data_dir:
        directory = DirectoryConfig(participant_categories={"1": "A", "2": "A"})
        server = await start_switch(ServerConfig(
            data_dir=data_dir, stream_enabled=False, admin_enabled=False,
            directory=directory))
        try:
            await server.gateway.admin(CurrencyAdded(
                request_id="c", currency="BRL", ledger_id=986,
                settlement_model=SettlementModel.PREFUNDED_RTGS))
            keys = {}
            for pid in (1, 2):
                await server.credentials.put_participant(pid, f"bank-{pid}", "bank", "")
                for event in (ParticipantAdded(request_id=f"p{pid}", participant_id=pid,
                                               name=f"bank-{pid}"),
                              ParticipantAccountOpened(request_id=f"a{pid}",
                                                       participant_id=pid, currency="BRL"),
                              FundsDeposited(request_id=f"f{pid}", participant_id=pid,
                                             currency="BRL", amount_minor=10**14)):
                    await server.gateway.admin(event)
                keys[pid] = await server.credentials.issue_key(pid)
            payer = Bank("BANKA001", "PONTE", validate=False)
            payee = Bank("BANKB002", "PONTE", validate=False)
            await payer.start()
            await payee.start()
            connector = Iso20022Connector(server.gateway, Iso20022Config(
                port=0, banks=(BankConfig(participant_id=1, member_id="BANKA001",
                                          endpoint_url=payer.endpoint_url),
                               BankConfig(participant_id=2, member_id="BANKB002",
                                          endpoint_url=payee.endpoint_url))))
            await connector.start()
            url = f"http://127.0.0.1:{connector.port}"
            payer.connect(url, keys[1])
            payee.connect(url, keys[2])
            await server.gateway.register_alias(
                2, alias_type="MSISDN", alias_value="+5511987650001", account_ref="ACC-B-1",
                owner_national_id="52998224725", display_name="Maria Silva")

            def finished() -> int:
                return len(payer.received)

            sent = 0
            deadline = time.monotonic() + seconds
            started = time.monotonic()
            cpu = time.process_time()
            sequence = 0
            while time.monotonic() < deadline:
                if sent - finished() >= window:
                    await asyncio.sleep(0.001)
                    continue
                bodies = []
                for _ in range(batch):
                    sequence += 1
                    _, body = pacs008("BANKA001", "PONTE", "BANKB002", f"T{sequence}",
                                      "1.00", "BRL", proxy=("MSISDN", "+5511987650001"))
                    bodies.append(body[body.index(b"?>") + 2:])
                body = (b'<Batch xmlns="urn:ponte:xsd:batch">' + b"".join(bodies)
                        + b"</Batch>")
                status, answer = await payer.post(body)
                assert status == 202, answer[:300]
                sent += batch
            while finished() < sent and time.monotonic() < deadline + 10:
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            cpu_s = time.process_time() - cpu
            done = finished()
            await payer.close()
            await payee.close()
            await connector.close(grace_ms=500)
        finally:
            await server.stop(drain_s=0.5)
    return {"payments": done, "seconds": round(elapsed, 2),
            "payments_per_s": round(done / elapsed, 1),
            "cpu_us_per_payment": round(cpu_s / max(done, 1) * 1e6, 1),
            "batch": batch, "window": window, "validation": True, "journal": "file, durable"}


@click.command("iso20022")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document, nothing else")
@click.option("--quick", is_flag=True, help="a few seconds")
@click.option("--seconds", type=float, default=10.0, show_default=True,
              help="how long the full-payment run offers payments")
@click.option("--batch", type=click.IntRange(1, 100), default=50, show_default=True,
              help="pacs.008 per POST from the payer bank")
def iso20022_command(as_json: bool, quick: bool, seconds: float, batch: int) -> None:
    """Full ISO 20022 payments/s and CPU µs per message (parse, validate, map, serialise)."""
    import uvloop

    iterations = 300 if quick else 5_000
    per_message = stages(iterations)
    full = uvloop.run(_payments(1.5 if quick else seconds, batch, 20 * batch))
    document = {"per_message": per_message, "full_payments": full}
    if as_json:
        click.echo(json.dumps(document))
        return
    for name, figures in per_message.items():
        click.echo(f"{name:14} " + "  ".join(f"{key}={value}" for key, value in figures.items()))
    click.echo(f"full payments: {full['payments_per_s']}/s ({full['payments']} in "
               f"{full['seconds']} s, {full['cpu_us_per_payment']} µs CPU each)")
