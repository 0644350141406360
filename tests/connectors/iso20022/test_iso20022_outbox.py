"""The ISO 20022 connector's outbox (connectors/iso20022/outbox.py): what the switch owes a
bank is on disk before it is POSTed, stays owed until the bank acknowledges it (however
long the bank's endpoint is down), replays in order after a restart, and is not queued
twice when the core writes it again.

On its own (file and PostgreSQL), inside an in-process switch (`iso` fixture), and in a
real switch process killed with SIGKILL while a bank's endpoint is down."""

from __future__ import annotations

import asyncio
import os

import pytest

from connectors.iso20022 import limits
from connectors.iso20022.bank import Bank
from connectors.iso20022.outbound import Written
from connectors.iso20022.outbox import Outbox
from switch.launcher import SwitchProcess, free_port, sim_server_config
from switch.store.iso20022_state import FileStateLog

from iso_helpers import ALIAS_B, MEMBER_B, eventually, sample
from test_iso20022_restart import (MEMBER_A as MEMBER_KES_A, SWITCH, credit_of,
                                   final_status, iso_table, onboard_banks, pacs008)

P2 = "FIToFIPmtStsRpt/TxInfAndSts/"


def written(participant_id: int, index: int, size: int = 100) -> Written:
    return Written(f"B{participant_id}-{index}", "pacs.002.001.10", participant_id,
                   b"<x>" + bytes([65 + index % 26]) * size + b"</x>")


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


def owed(outbox: Outbox) -> dict:
    return {participant_id: [(owed.sequence, owed.written.biz_msg_id, owed.written.body)
                             for owed in lane.values()]
            for participant_id, lane in outbox.lanes.items() if lane}


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_log(request, tmp_path):
    """Opens the outbox's log again and again on one backend: `outbox.log` in a data
    directory, or the `iso20022_outbox` table of a migrated database."""
    if request.param == "file":
        return lambda: FileStateLog(str(tmp_path), "outbox.log")
    from switch.store.iso20022_state import PostgresStateLog
    from switch.store.migrate import migrate_dsn

    dsn = request.getfixturevalue("postgres_dsn")
    asyncio.run(migrate_dsn(dsn))

    class Opener:
        async def read(self):
            self.log = await PostgresStateLog.connect(dsn, "iso20022_outbox")
            return await self.log.read()

        def __getattr__(self, name):
            return getattr(self.log, name)

    return Opener


async def test_what_is_owed_replays_in_order_and_what_was_done_does_not(open_log):
    outbox = Outbox(open_log())
    await outbox.load()
    for index in range(10):
        for participant_id in (1, 2):
            assert outbox.add(written(participant_id, index)) is not None
    outbox.done(1, 4)  # bank 1 acknowledged its first four
    outbox.done(2, 10)  # bank 2 all of them
    assert outbox.add(written(2, 10)).sequence == 11
    before = owed(outbox)
    assert [item[0] for item in before[1]] == list(range(5, 11))
    assert [item[0] for item in before[2]] == [11]
    await outbox.close()

    again = Outbox(open_log())
    await again.load()
    assert owed(again) == before
    # Sequences go on after the last one given: a new message is never taken for done.
    assert again.add(written(1, 10)).sequence == 11
    # Written again while owed (a credit the core re-sends after a restart): not twice.
    assert again.add(written(1, 7)) is None and again.resent_skipped_total == 1
    again.done(1, 11)
    again.done(2, 11)
    assert again.owed == 0
    await again.close()
    third = Outbox(open_log())
    await third.load()
    assert third.owed == 0
    await third.close()


async def test_a_torn_tail_is_cut_and_the_log_is_rewritten_from_what_is_owed(
        tmp_path, monkeypatch):
    outbox = Outbox(FileStateLog(str(tmp_path), "outbox.log"))
    await outbox.load()
    for index in range(5):
        outbox.add(written(1, index))
    await outbox.log.sync()
    path = os.path.join(str(tmp_path), "outbox.log")
    whole = os.path.getsize(path)
    await outbox.close()
    with open(path, "ab") as file:  # half a frame, as a crash during a write leaves it
        file.write(b"\x40\x00\x00\x00\x01\x02\x03\x04partial")
    again = Outbox(FileStateLog(str(tmp_path), "outbox.log"))
    await again.load()
    assert [owed.sequence for owed in again.lanes[1].values()] == [1, 2, 3, 4, 5]
    assert os.path.getsize(path) == whole

    # Owed and acknowledged over and over: the log is rewritten from what is still owed.
    monkeypatch.setattr(limits, "OUTBOX_COMPACT_BYTES_MIN", 64 * 1024)
    for index in range(5, 400):
        owed_now = again.add(written(1, index, size=1000))
        again.done(1, owed_now.sequence - 5)  # five stay owed
        await again.log.sync()
    assert again.log.rewrites >= 1
    assert os.path.getsize(path) < 3 * 64 * 1024
    before = owed(again)
    assert [item[0] for item in before[1]] == list(range(396, 401))
    await again.close()
    third = Outbox(FileStateLog(str(tmp_path), "outbox.log"))
    await third.load()
    assert owed(third) == before
    await third.close()


def test_the_largest_message_the_switch_writes_fits_one_record():
    """A camt.052 of REPORT_ENTRIES_MAX entries, the largest owed message, is one outbox
    record (the bound the log's reader enforces)."""
    from connectors.iso20022.common import Members
    from connectors.iso20022.outbound import Writer
    from switch.core.messages import TransferOutcome
    from switch.core.results import Result, TransferState

    writer = Writer(Members("PONTE", {1: ("BANKA001",), 2: ("BANKB002",)}))
    entries = [TransferOutcome(payer_participant_id=2, transfer_id=f"T-{index:032d}",
                               state=TransferState.COMMITTED, result=Result.OK,
                               payee_participant_id=1, amount_minor=10**12 + index,
                               currency="BRL", decided_at_ns=1_700_000_000 * 10**9)
               for index in range(limits.REPORT_ENTRIES_MAX)]
    report = writer.report(1, "BRL", entries, 1, 1_700_000_000 * 10**9)
    assert len(report.body) + 1024 <= limits.OUTBOX_RECORD_BYTES_MAX
    outbox = Outbox(None)
    outbox.durable = True  # frame it as a durable outbox would
    assert outbox.add(report).frame


# -- inside a switch -------------------------------------------------------------------


class Gated:
    """A log whose appends wait for `open` (a slow or stalled disk)."""

    def __init__(self, log) -> None:
        self.log = log
        self.open = asyncio.Event()
        self.open.set()

    async def append(self, data: bytes) -> None:
        await self.open.wait()
        await self.log.append(data)

    def __getattr__(self, name):
        return getattr(self.log, name)


async def test_nothing_is_posted_before_its_record_is_on_disk(iso):
    outbox = iso.connector.outbox
    gated = Gated(outbox.log.file)
    outbox.log.file = gated
    gated.open.clear()
    body = sample("pacs.008-proxy.xml", TX="TX-GATED", AMOUNT="3.00", PROXY=ALIAS_B,
                  CDTR_AGT=MEMBER_B)
    status, answer = await iso.a.post(body)
    assert status == 202, answer
    await eventually(lambda: outbox.owed >= 1)
    await asyncio.sleep(0.3)
    assert iso.b.of("pacs.008.001.08") == [], "a credit went out before it was durable"
    gated.open.set()
    await eventually(lambda: iso.b.of("pacs.008.001.08"))
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    await eventually(lambda: outbox.owed == 0)


async def test_a_bank_down_longer_than_every_retry_still_gets_everything_in_order(iso):
    policy = iso.connector.config.delivery
    stats = iso.connector.delivery.stats
    iso.a.fail_first = policy.attempts_max + 3  # bank A's endpoint: 503 for a while
    tx_ids = [f"TX-DOWN-{index}" for index in range(3)]
    for tx_id in tx_ids:
        status, answer = await iso.a.post(sample(
            "pacs.008-proxy.xml", TX=tx_id, AMOUNT="1.00", PROXY=ALIAS_B,
            CDTR_AGT=MEMBER_B))
        assert status == 202, answer
        await eventually(lambda: iso.position(2)["credits_posted"] > 0 and
                         any(item.find(P2 + "OrgnlTxId") == tx_id and
                             item.find(P2 + "TxSts") == "ACSC"
                             for item in iso.b.of("pacs.002.001.10")), seconds=15)
    await eventually(lambda: iso.a.fail_first == 0, seconds=30)
    await eventually(lambda: all(final_status(iso.a, tx_id) for tx_id in tx_ids),
                     seconds=30)
    assert stats.stalled_total == 1  # counted and logged, nothing dropped
    finals = [item.find(P2 + "OrgnlTxId") for item in iso.a.of("pacs.002.001.10")
              if item.find(P2 + "TxSts") == "ACSC"]
    assert finals == tx_ids
    ids = [item.biz_msg_id for item in iso.a.received]
    assert len(ids) == len(set(ids))
    head = "{urn:iso:std:iso:20022:tech:xsd:head.001.001.02}"
    assert final_status(iso.a, tx_ids[0]).root[0].findtext(head + "PssblDplct") == "true"
    await eventually(lambda: iso.connector.outbox.owed == 0)
    iso.check_valid()


async def test_what_is_owed_to_one_bank_is_bounded_and_the_excess_counted(iso):
    from connectors.iso20022.transport import DeliveryPolicy

    delivery = iso.connector.delivery
    delivery.policy = DeliveryPolicy(queue_max=3, backoff_ms_min=10, backoff_ms_max=40)
    iso.a.fail_first = 10**9  # bank A is down
    for index in range(5):
        status, answer = await iso.a.post(sample(
            "pacs.008-proxy.xml", TX=f"TX-FULL-{index}", AMOUNT="1.00", PROXY=ALIAS_B,
            CDTR_AGT=MEMBER_B))
        assert status == 202, answer
    # Each payment owes bank A its final pacs.002 and a camt.054: 10, of which 3 are kept.
    await eventually(lambda: delivery.stats.dropped_queue_full_total == 7, seconds=15)
    assert iso.connector.outbox.owed == 3
    assert iso.connector.outbox.lanes[1] and len(iso.connector.outbox.lanes[1]) == 3
    iso.a.fail_first = 0
    await eventually(lambda: len(iso.a.received) == 3)
    await eventually(lambda: iso.connector.outbox.owed == 0)
    await asyncio.sleep(0.1)
    assert len(iso.a.received) == 3
    iso.check_valid()


# -- a real switch process, killed while a bank is down -----------------------------------


@pytest.mark.slow
async def test_what_was_owed_to_a_bank_is_delivered_after_a_sigkill(tmp_path):
    bank_a = Bank(MEMBER_KES_A, SWITCH, fail_first=10**9)  # down until the restart
    bank_b = Bank("BANKB002", SWITCH)  # answers every credit ACCP
    await bank_a.start()
    await bank_b.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    table = iso_table(port, bank_a, bank_b)
    config = sim_server_config(str(tmp_path / "switch"), iso20022_enabled=True,
                               iso20022=table, http_enabled=True,
                               http={"port": free_port()})
    switch = SwitchProcess(config)
    tx_ids = [f"TX-OWED-{index}" for index in range(5)]
    try:
        await asyncio.to_thread(switch.start)
        await onboard_banks(switch, config, url, bank_a, bank_b)
        for index, tx_id in enumerate(tx_ids):  # one at a time: committed in this order
            status, body = await bank_a.post(pacs008(tx_id))
            assert status == 202, body
            await eventually(lambda: credit_of(bank_b, tx_id))

            async def settled(count=index + 1):
                positions = await asyncio.to_thread(switch.positions)
                return positions[2]["accounts"]["KES"]["credits_posted"] == (
                    10**12 + 2_500 * count)
            for _ in range(200):
                if await settled():
                    break
                await asyncio.sleep(0.05)
            assert await settled()
        # Bank A has refused every delivery so far: its final statuses are owed, on disk.
        for _ in range(200):
            if metric(await asyncio.to_thread(switch.get, "/metrics"),
                      "ponte_iso20022_outbox_owed") >= len(tx_ids):
                break
            await asyncio.sleep(0.05)
        requests = bank_a.requests
        await eventually(lambda: bank_a.requests >= requests + 1)
        assert bank_a.received == []

        await asyncio.to_thread(switch.kill)  # no shutdown, no flush
        bank_a.fail_first = 0  # back up
        await asyncio.to_thread(switch.start)

        await eventually(lambda: all(final_status(bank_a, tx_id) for tx_id in tx_ids),
                         seconds=30)
        finals = [item.find(P2 + "OrgnlTxId") for item in bank_a.of("pacs.002.001.10")]
        assert finals == tx_ids  # each once, in the order the switch released them
        assert all(final_status(bank_a, tx_id).find(P2 + "TxSts") == "ACSC"
                   for tx_id in tx_ids)
        ids = [item.biz_msg_id for item in bank_a.received]
        assert len(ids) == len(set(ids))
        # Re-sent after the restart: marked as possibly sent before (head.001), XSD-valid.
        head = "{urn:iso:std:iso:20022:tech:xsd:head.001.001.02}"
        assert all(final_status(bank_a, tx_id).root[0].findtext(head + "PssblDplct") ==
                   "true" for tx_id in tx_ids)
        assert bank_a.invalid == [] and bank_b.invalid == []
        metrics = await asyncio.to_thread(switch.get, "/metrics")
        assert metric(metrics, "ponte_iso20022_delivery_restored_total") >= len(tx_ids)
        await eventually(lambda: metric(switch.get("/metrics"),
                                        "ponte_iso20022_outbox_owed") == 0)
        with open(os.path.join(config["data_dir"], "iso20022", "outbox.log"), "rb") as file:
            assert b"1234567890" not in file.read()  # no national ID in the outbox
    finally:
        await bank_a.close()
        await bank_b.close()
        await asyncio.to_thread(switch.stop)
