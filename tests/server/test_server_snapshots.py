"""Snapshots while traffic flows, journal segments, and recovery from the newest valid
snapshot plus the journal after it — on a real in-process switch (real journal files,
a real forked snapshot writer)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time

from click.testing import CliRunner

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from ledger.journal_segments import list_segments
from switch.cli import main as ponte
from switch.core.messages import AliasRegistration, Party, StatusQuery, TransferRequest
from switch.core.results import TransferState
from switch.server.snapshots import SNAPSHOT_DIRECTORY, _lower_priority
from switch.testing import onboard, start_test_server

PAYEE_ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
# Small enough that a few hundred transfers snapshot and rotate several times.
SMALL = {"snapshot_every_events": 150, "snapshot_every_s": 3600.0,
         "journal_segment_bytes_max": 16 * 1024, "journal_archive": "compress",
         "snapshots_retained": 2}


async def pay(server, participants, prefix: str, count: int) -> list:
    port = server.stream_port
    payee = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_b"][1],
                                       on_credit_request=lambda cr: Decision(True))
    payer = await StreamClient.connect("127.0.0.1", port, api_key=participants["bank_a"][1])
    try:
        if prefix == "first":
            answer = await payee.register_aliases([AliasRegistration(
                alias_type="MSISDN", alias_value=PAYEE_ALIAS.alias_value, account_ref="acc-1",
                owner_national_id="1234567890", display_name="Jane Doe")])
            assert answer.registered == 1
        outcomes = []
        for batch in range(0, count, 50):
            futures = [payer.submit_transfer(TransferRequest(
                transfer_id=f"{prefix}-{i}", payee=PAYEE_ALIAS, amount_minor=100 + i,
                currency="KES", expires_at_ns=time.time_ns() + 60 * 10**9))
                for i in range(batch, min(count, batch + 50))]
            outcomes += await asyncio.wait_for(asyncio.gather(*futures), 30)
            await asyncio.sleep(0.01)  # let the sequencer reach a quiet point now and then
        return outcomes
    finally:
        await payer.close()
        await payee.close()


async def wait_for_snapshots(server, count: int) -> None:
    deadline = time.monotonic() + 60
    while server.snapshots.status.taken < count:
        assert time.monotonic() < deadline, server.snapshots.status
        server.snapshots.reap()
        await asyncio.sleep(0.02)


async def test_snapshots_and_segments_while_paying_then_recovery_from_the_newest(tmp_path):
    server = await start_test_server(str(tmp_path), **SMALL)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        outcomes = await pay(server, participants, "first", 400)
        assert all(o.state is TransferState.COMMITTED for o in outcomes)
        await wait_for_snapshots(server, 2)
        positions = server.positions()
        head = server.journal.position.sequence
        # What operators (and `ponte bench recovery`) read of each snapshot written.
        recent = server.durability()["snapshot"]["recent"]
        assert len(recent) == server.snapshots.status.taken
        assert all(r["started_ns"] < r["finished_ns"] and r["bytes"] > 0 for r in recent)
        assert [r["sequence"] for r in recent] == sorted(r["sequence"] for r in recent)
        assert 'ponte_tick_latency_seconds_count{snapshot="idle"}' in server.registry.render()
    finally:
        await server.stop(drain_s=0)
    segments = list_segments(str(tmp_path / "journal"))
    assert len(segments) >= 3, "the journal rotated"
    assert any(segment.archived for segment in segments), "covered segments were archived"
    snapshots = sorted(os.listdir(tmp_path / SNAPSHOT_DIRECTORY))
    assert len(snapshots) == SMALL["snapshots_retained"]

    again = await start_test_server(str(tmp_path), **SMALL)
    try:
        assert again.recovered_from_sequence > 0, "recovery started from a snapshot"
        assert again.recovered_from_sequence <= head
        assert again.positions() == positions
        # Transfers decided long before the newest snapshot still answer.
        payer_id = participants["bank_a"][0]
        for transfer_id in ("first-0", "first-199", "first-399"):
            answer = await again.gateway.status(payer_id, StatusQuery(
                payer_participant_id=payer_id, transfer_id=transfer_id))
            assert answer.state is TransferState.COMMITTED, (transfer_id, answer)
        more = await pay(again, participants, "second", 20)
        assert all(o.state is TransferState.COMMITTED for o in more)
    finally:
        await again.stop(drain_s=0)


async def test_a_damaged_newest_snapshot_falls_back_to_the_previous_loudly(tmp_path, caplog):
    server = await start_test_server(str(tmp_path), **SMALL)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        await pay(server, participants, "first", 400)
        await wait_for_snapshots(server, 2)
        positions = server.positions()
    finally:
        await server.stop(drain_s=0)
    directory = tmp_path / SNAPSHOT_DIRECTORY
    newest, previous = sorted(directory.iterdir(), reverse=True)[:2]
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.ERROR, logger="ponte.server"):
        again = await start_test_server(str(tmp_path), **SMALL)
    try:
        assert any(newest.name in r.getMessage() and "snapshot_skipped" in r.getMessage()
                   for r in caplog.records), [r.getMessage() for r in caplog.records]
        assert again.snapshots.status.skipped_at_start == 1
        assert again.recovered_from_sequence == int(previous.name.split("-")[1].split(".")[0])
        assert again.positions() == positions
    finally:
        await again.stop(drain_s=0)


async def test_ponte_journal_verify_checks_chain_and_snapshots_and_prints_the_head(tmp_path):
    server = await start_test_server(str(tmp_path), **SMALL)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        await pay(server, participants, "first", 300)
        await wait_for_snapshots(server, 1)
        head = server.journal.position
    finally:
        await server.stop(drain_s=0)
    runner = CliRunner()
    result = runner.invoke(ponte, ["journal", "verify", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["head_sequence"] == head.sequence
    assert report["head_hash"] == head.record_hash.hex()
    assert report["invariants"] and report["snapshots"]
    assert all(not snapshot["problem"] for snapshot in report["snapshots"])
    inspect = runner.invoke(ponte, ["journal", "inspect", "--data-dir", str(tmp_path),
                                    "--count", "3"])
    assert inspect.exit_code == 0, inspect.output
    assert "#1 " in inspect.output and "CurrencyAdded" in inspect.output
    # A damaged archived segment is named, and the command fails.
    archived = [s for s in list_segments(str(tmp_path / "journal")) if s.archived]
    if archived:
        data = bytearray(open(archived[0].path, "rb").read())
        data[len(data) // 2] ^= 0xFF
        open(archived[0].path, "wb").write(bytes(data))
        broken = runner.invoke(ponte, ["journal", "verify", "--data-dir", str(tmp_path)])
        assert broken.exit_code == 1
        assert archived[0].name in broken.output


async def test_a_journal_written_before_segments_becomes_the_first_segment(tmp_path):
    server = await start_test_server(str(tmp_path), snapshots_enabled=False)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        await pay(server, participants, "first", 10)
        positions = server.positions()
    finally:
        await server.stop(drain_s=0)
    (segment,) = list_segments(str(tmp_path / "journal"))
    os.rename(segment.path, tmp_path / "switch.journal")  # as the switch wrote it before
    os.rmdir(tmp_path / "journal")
    again = await start_test_server(str(tmp_path), snapshots_enabled=False)
    try:
        assert again.positions() == positions
        assert not (tmp_path / "switch.journal").exists()
    finally:
        await again.stop(drain_s=0)


def test_the_snapshot_child_runs_at_a_lower_priority_than_the_sequencer():
    parent = os.getpriority(os.PRIO_PROCESS, 0)
    pid = os.fork()
    if pid == 0:
        try:
            _lower_priority()
            os._exit(0 if os.getpriority(os.PRIO_PROCESS, 0) == min(19, parent + 10) else 3)
        except BaseException:  # noqa: BLE001 - a forked child must never return into pytest
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.getpriority(os.PRIO_PROCESS, 0) == parent  # the parent keeps its own
