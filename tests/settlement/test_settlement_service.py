"""Settlement on a real in-process switch (core, journal file, stream connector, operator
service, HTTP connector): a deferred-net window closed under traffic, its pacs.009
instructions, the RTGS's pacs.002 confirming it (or rejecting it, which changes nothing
but the failure shown), statements that add up and match the window's positions, a
participant that can only ever read its own, reconciliation, and the entry log rebuilt by
the journal's replay after a restart."""

from __future__ import annotations

import csv
import io
import os

import httpx
import msgspec
import pytest

from settlement_helpers import KES, Payers, assert_valid, deferred_net_world, pacs002
from switch.admin.service import Caller
from switch.admin.types import AdminRefusal, AdminResult, Role
from switch.core.messages import SettlementWindowClosed
from switch.core.results import Result
from switch.testing import start_test_server

RTGS = Caller("rtgs", Role.OPERATOR, "10.9.9.9")
CAMT = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"


async def start(tmp_path, **options):
    return await start_test_server(str(tmp_path), console_enabled=True, console_port=0,
                                   http_enabled=True, http={"port": 0}, **options)


async def traffic(payers: Payers, rounds: int = 15) -> list:
    outcomes = []
    for n in range(rounds):
        outcomes.append(await payers.pay("bank_a", "bank_b", 1_000 + n, f"E2E-{n}"))
        outcomes.append(await payers.pay("bank_b", "bank_c", 400 + n))
        outcomes.append(await payers.pay("bank_c", "bank_a", 150))
    return outcomes


async def close(server) -> int:
    window_id = server.core.open_window_id(KES)
    answer = await server.gateway.admin(SettlementWindowClosed(request_id=f"close-{window_id}",
                                                               currency=KES))
    assert answer.result == Result.OK, answer
    return window_id


async def body(chunks) -> bytes:
    return b"".join([chunk async for chunk in chunks])


class Participant:
    """The participant API over HTTP, with one participant's API key."""

    def __init__(self, base: str, api_key: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, timeout=30,
                                      headers={"Authorization": f"Bearer {api_key}"})

    async def __aenter__(self) -> "Participant":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.http.aclose()

    async def get_json(self, path: str):
        response = await self.http.get(path)
        assert response.status_code == 200, response.text
        return response.json()

    async def get_raw(self, path: str) -> tuple[int, dict, bytes]:
        response = await self.http.get(path)
        return response.status_code, response.headers, response.content

    async def post_json(self, path: str, payload) -> tuple[int, dict]:
        response = await self.http.post(path, json=payload)
        return response.status_code, response.json()


async def test_a_window_closes_settles_through_the_rtgs_and_every_statement_adds_up(tmp_path):
    server = await start(tmp_path)
    payers = None
    try:
        participants = await deferred_net_world(server)
        payers = await Payers.connect(server, participants)
        outcomes = await traffic(payers)
        window_id = await close(server)
        service = server.console.service
        detail = service.settlement_window(window_id)
        assert detail.window.state == "pending_settlement"
        assert detail.net_sum_minor == 0 and detail.window.transfers == len(outcomes)
        net = {p.participant_id: p.net_minor for p in detail.positions}
        # The RTGS instructions: one per position, valid pacs.009.
        instructions = service.settlement_instructions(window_id)
        root = assert_valid(instructions, "pacs.009.001.08")
        assert len(root.findall(".//{*}CdtTrfTxInf")) == len(net)
        # Each participant's statement: valid camt.053, its entries are exactly its net.
        for name, (participant_id, _key) in participants.items():
            media, _file, chunks = await service.settlement_statement(participant_id,
                                                                      window_id, "camt053")
            document = await body(chunks)
            statement = assert_valid(document, "camt.053.001.08")
            signed = sum((-1 if e.findtext(f"{{{CAMT}}}CdtDbtInd") == "DBIT" else 1)
                         * int(e.findtext(f"{{{CAMT}}}Amt").replace(".", ""))
                         for e in statement.iter(f"{{{CAMT}}}Ntry")
                         if e.findtext(f"{{{CAMT}}}BkTxCd/{{{CAMT}}}Prtry/{{{CAMT}}}Cd")
                         in ("PAYMENT", "RETURN", "FEE"))
            assert signed == net.get(participant_id, 0), name
            for outcome in outcomes:
                if participant_id in (outcome.payer_participant_id,
                                      outcome.payee_participant_id):
                    assert f"transfer_id={outcome.transfer_id} ".encode() in document
        # The RTGS settles every instruction: the window is settled, the room restored.
        answer = await service.rtgs_answer(RTGS, pacs002(f"PONTE-W{window_id}", group="ACSC"))
        assert (answer.window_id, answer.state) == (window_id, "settled")
        for participant_id, _key in participants.values():
            position = service.positions(participant_id)[0]
            assert position.available_minor == 10**9, participant_id  # the cap, whole again
        # The same answer again is answered again; nothing moves twice.
        digest = server.ledger.digest()
        again = await service.rtgs_answer(RTGS, pacs002(f"PONTE-W{window_id}", group="ACSC"))
        assert again == answer and server.ledger.digest() == digest
        # Another answer to a settled window: refused, typed, nothing changes.
        with pytest.raises(AdminRefusal) as refused:
            await service.rtgs_answer(RTGS, pacs002(f"PONTE-W{window_id}", group="ACSC",
                                                    message_id="RTGS-OTHER"))
        assert refused.value.core_result == Result.SETTLEMENT_WINDOW_NOT_PENDING
        assert server.ledger.digest() == digest
    finally:
        if payers is not None:
            await payers.close()
        await server.stop(drain_s=0)


async def test_rtgs_rejections_and_bad_answers_change_nothing_but_the_failure_shown(tmp_path):
    server = await start(tmp_path)
    payers = None
    try:
        participants = await deferred_net_world(server)
        payers = await Payers.connect(server, participants)
        await traffic(payers, 5)
        window_id = await close(server)
        service = server.console.service
        before = (server.ledger.digest(), msgspec.to_builtins(server.core._settlement_snapshot()))
        instruction = f"W{window_id}-P{participants['bank_a'][0]}-D"
        cases = [
            (pacs002(f"PONTE-W{window_id}", transactions=[(instruction, "RJCT", "AM04")]),
             AdminResult.SWITCH_REFUSED, Result.SETTLEMENT_RTGS_REJECTED),
            (pacs002(f"PONTE-W{window_id}", group="ACSP"), AdminResult.SWITCH_REFUSED,
             Result.SETTLEMENT_RTGS_NOT_FINAL),
            (pacs002("PONTE-W999", group="ACSC"), AdminResult.SWITCH_REFUSED,
             Result.SETTLEMENT_RTGS_UNKNOWN_MESSAGE),
            (b"<Document/>", AdminResult.VALIDATION_ERROR, Result.SETTLEMENT_DOCUMENT_INVALID),
        ]
        for document, admin_result, core_result in cases:
            with pytest.raises(AdminRefusal) as refused:
                await service.rtgs_answer(RTGS, document)
            assert (refused.value.result, refused.value.core_result) == (
                admin_result, int(core_result)), refused.value
            assert (server.ledger.digest(),
                    msgspec.to_builtins(server.core._settlement_snapshot())) == before
        shown = service.settlement_windows(KES)[1]
        assert shown.window_id == window_id and shown.state == "pending_settlement"
        assert "AM04" in shown.rtgs_failure
        audit = [r for r in await service.audit_page() if r.action == "settlement.rtgs_answer"]
        assert len(audit) == len(cases)
        # A viewer may not post RTGS answers.
        with pytest.raises(AdminRefusal) as refused:
            await service.rtgs_answer(Caller("v", Role.VIEWER, "x"),
                                      pacs002(f"PONTE-W{window_id}", group="ACSC"))
        assert refused.value.result is AdminResult.ROLE_INSUFFICIENT
    finally:
        if payers is not None:
            await payers.close()
        await server.stop(drain_s=0)
    # The rejection is still shown after a restart; the window still waits.
    again = await start(tmp_path)
    try:
        shown = again.console.service.settlement_window(window_id).window
        assert shown.state == "pending_settlement" and "AM04" in shown.rtgs_failure
    finally:
        await again.stop(drain_s=0)


async def test_a_participant_reads_only_its_own_statement_and_reconciles(tmp_path):
    server = await start(tmp_path)
    payers = None
    try:
        participants = await deferred_net_world(server, names=("bank_a", "bank_b", "bank_c",
                                                              "bank_d"))
        payers = await Payers.connect(server, participants)
        outcomes = await traffic(payers, 6)
        window_id = await close(server)
        a_id, a_key = participants["bank_a"]
        d_id, d_key = participants["bank_d"]  # in the currency, but no transfer of its own
        base = f"http://127.0.0.1:{server.http_port}"
        async with Participant(base, a_key) as client:
            windows = await client.get_json("/settlement/windows")
            assert windows[0]["state"] == "open" and windows[1]["window_id"] == window_id
            mine = next(w for w in windows if w["window_id"] == window_id)
            assert mine["net_minor"] == server.core.settlement_window(window_id).net[a_id]
            status, headers, document = await client.get_raw(
                f"/settlement/windows/{window_id}/statement?format=camt053")
            assert status == 200
            assert_valid(document, "camt.053.001.08")
            status, _h, text = await client.get_raw(
                f"/settlement/windows/{window_id}/statement?format=csv")
            rows = list(csv.DictReader(io.StringIO(text.decode())))
            involved = {(o.payer_participant_id, o.transfer_id) for o in outcomes
                        if a_id in (o.payer_participant_id, o.payee_participant_id)}
            assert {(int(r["payer_participant_id"]), r["transfer_id"]) for r in rows
                    if r["entry"] == "PAYMENT"} == involved
            assert all(a_id in (int(r["payer_participant_id"] or 0),
                                int(r["payee_participant_id"] or 0))
                       for r in rows if r["transfer_id"])
            # Reconciliation: its own list, less one row, one amount wrong, one invented.
            listed = [{"payer_participant_id": o.payer_participant_id,
                       "transfer_id": o.transfer_id, "amount_minor": o.amount_minor}
                      for o in outcomes if (o.payer_participant_id, o.transfer_id) in involved]
            dropped = listed.pop()
            listed[0] = {**listed[0], "amount_minor": listed[0]["amount_minor"] + 1}
            listed.append({"payer_participant_id": a_id, "transfer_id": "never-sent",
                           "amount_minor": 5})
            status, report = await client.post_json(
                f"/settlement/windows/{window_id}/reconciliation", {"transfers": listed})
            assert status == 200, report
            assert [t["transfer_id"] for t in report["missing_at_participant"]] == [
                dropped["transfer_id"]]
            assert [t["transfer_id"] for t in report["missing_at_switch"]] == ["never-sent"]
            assert [m["transfer_id"] for m in report["amount_mismatches"]] == [
                listed[0]["transfer_id"]]
            # Bad input: typed errors.
            status, error = await client.post_json(
                f"/settlement/windows/{window_id}/reconciliation", {"transfers": [{}]})
            assert status == 400 and error["name"] == "VALIDATION_ERROR"
            status, _h, raw = await client.get_raw(
                f"/settlement/windows/{window_id}/statement?format=xls")
            assert status == 400 and b"STATEMENT_FORMAT_UNKNOWN" in raw
            status, _h, raw = await client.get_raw(
                f"/settlement/windows/{window_id + 1}/statement?format=camt053")
            assert status == 409 and b"STATEMENT_WINDOW_OPEN" in raw
            status, _h, raw = await client.get_raw("/settlement/windows/999/statement")
            assert status == 404 and b"STATEMENT_WINDOW_NOT_FOUND" in raw
        # D holds the currency but paid and received nothing: its statement has no entry
        # of anyone else's.
        async with Participant(base, d_key) as client:
            status, _h, document = await client.get_raw(
                f"/settlement/windows/{window_id}/statement?format=camt053")
            root = assert_valid(document, "camt.053.001.08")
            bookings = [n.findtext(f"{{{CAMT}}}BkTxCd/{{{CAMT}}}Prtry/{{{CAMT}}}Cd")
                        for n in root.findall(f".//{{{CAMT}}}Ntry")]
            assert bookings == ["CAP_RAISE"]  # its own cap, and no one else's transfer
            assert b"transfer_id=" not in document
        # A participant without the currency learns nothing of its windows.
        from switch.admin.bootstrap import add_participant

        outsider = await add_participant(server, "outsider", "bank", [])
        async with Participant(base, outsider.api_key) as client:
            assert await client.get_json("/settlement/windows") == []
            status, _h, raw = await client.get_raw(
                f"/settlement/windows/{window_id}/statement?format=csv")
            assert status == 404 and b"STATEMENT_WINDOW_NOT_FOUND" in raw
    finally:
        if payers is not None:
            await payers.close()
        await server.stop(drain_s=0)


async def test_the_entry_log_is_rebuilt_by_the_replay(tmp_path):
    server = await start(tmp_path)
    payers = None
    try:
        participants = await deferred_net_world(server)
        payers = await Payers.connect(server, participants)
        await traffic(payers, 5)
        window_id = await close(server)
        await traffic(payers, 3)  # and some in the open window
        service = server.console.service
        before = {fmt: await body((await service.settlement_statement(
            participants["bank_b"][0], window_id, fmt))[2]) for fmt in ("camt053", "csv")}
    finally:
        if payers is not None:
            await payers.close()
        await server.stop(drain_s=0)
    again = await start(tmp_path)
    try:
        service = again.console.service
        after = {fmt: await body((await service.settlement_statement(
            participants["bank_b"][0], window_id, fmt))[2]) for fmt in ("camt053", "csv")}
        # The same document but for when it was produced.
        strip = lambda text: b"".join(text.split(b"<CreDtTm>")[i].split(b"</CreDtTm>")[-1]
                                      for i in range(len(text.split(b"<CreDtTm>"))))
        assert strip(after["camt053"]) == strip(before["camt053"])
        assert after["csv"] == before["csv"]
    finally:
        await again.stop(drain_s=0)


async def test_statements_survive_a_recovery_from_a_snapshot_and_an_entry_log_ahead(tmp_path):
    """The server starts from its newest snapshot and replays only the journal after it:
    the entry log keeps what came before, does not write the replayed entries twice, and
    drops what it holds past the journal (written before a crash, never made durable)."""
    import asyncio
    import os
    import struct

    server = await start(tmp_path, snapshot_every_events=20)
    payers = None
    try:
        participants = await deferred_net_world(server)
        payers = await Payers.connect(server, participants)
        await traffic(payers, 5)
        window_id = await close(server)
        await traffic(payers, 3)
        for _ in range(200):  # a snapshot after the close, taken at a quiet point
            if server.snapshots.status.sequence > 0 and server.snapshots.status.taken >= 2:
                break
            await traffic(payers, 1)
            await asyncio.sleep(0.05)
        assert server.snapshots.status.taken >= 1
        await traffic(payers, 2)  # more in the open window, after the snapshot
        service = server.console.service
        bank_b = participants["bank_b"][0]
        open_id = server.core.open_window_id(KES)
        before = {w: await body((await service.settlement_statement(bank_b, w, "csv"))[2])
                  for w in (window_id, open_id)}
    finally:
        if payers is not None:
            await payers.close()
        await server.stop(drain_s=0)
    # A crash after the log was written, before the journal was: an entry past the journal.
    directory = tmp_path / "settlement"
    index = directory / f"{open_id}.index"
    written, last = struct.unpack("<QQ", index.read_bytes())
    from switch.settlement.entries import Entry, encode_entry

    ghost = encode_entry(Entry(seq=10**9, at_ns=1, kind=1, payer_participant_id=bank_b,
                               payee_participant_id=1, amount_minor=777, fee_minor=0,
                               transfer_id="never-durable", end_to_end_id="",
                               ledger_timestamp=last + 10**12))
    with open(directory / f"{open_id}.entries", "ab") as file:
        file.write(ghost)
    index.write_bytes(struct.pack("<QQ", written + len(ghost), last + 10**12))
    again = await start(tmp_path, snapshot_every_events=20)
    try:
        assert again.recovered_from_sequence > 0  # from a snapshot, not the genesis
        service = again.console.service
        after = {w: await body((await service.settlement_statement(bank_b, w, "csv"))[2])
                 for w in (window_id, open_id)}
        assert after == before
        assert os.path.getsize(directory / f"{open_id}.entries") == written
    finally:
        await again.stop(drain_s=0)


async def test_a_snapshot_is_taken_only_after_the_entries_it_covers_are_written_out(tmp_path):
    """A recovery from a snapshot replays only the journal after it, so the entries before
    it must be on the disk first: at each snapshot the entry log has written every buffer
    and the snapshot's child is handed those files to fsync before it writes (a power cut
    could otherwise keep the snapshot and lose the entries, and statements miss them).
    The same holds for the durable history's files."""
    from switch.settlement.entries import EntryLog

    server = await start(tmp_path, snapshot_every_events=20)
    payers = None
    seen = []
    try:
        (entries,) = [o for o in server.backends.observers if isinstance(o, EntryLog)]
        take = server.snapshots.take

        def checked_take(core, archive, position, durable_first=()):
            files = list(entries._current.values())
            seen.append((list(durable_first), [f.path for f in files],
                         [len(f.buffer) for f in files],
                         [(os.path.getsize(f.path) if os.path.exists(f.path) else 0, f.written)
                          for f in files]))
            return take(core, archive, position, durable_first)

        server.snapshots.take = checked_take
        participants = await deferred_net_world(server)
        payers = await Payers.connect(server, participants)
        for _ in range(40):
            await traffic(payers, 2)
            if any(buffers and paths for paths, _files, buffers, _sizes in seen):
                break
        assert any(paths for paths, *_ in seen), "no snapshot while entries were logged"
        for durable_first, files, buffers, sizes in seen:
            assert buffers == [0] * len(buffers)  # every buffer written before the fork
            assert all(size == written for size, written in sizes)
            assert set(durable_first) >= {path for path in files if os.path.exists(path)}
        # The durable history's SQLite files too: its commits do not fsync on their own.
        assert any(path.endswith("history.sqlite3-wal") for path in seen[-1][0]), seen[-1][0]
    finally:
        if payers is not None:
            await payers.close()
        await server.stop(drain_s=0)
