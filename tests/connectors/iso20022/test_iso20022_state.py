"""The ISO 20022 connector's store (connectors/iso20022/state.py) on its own: what is
written replays into the same memory; a torn tail (a crash during a write) is cut off at
the last whole record; the log is rewritten from memory when it grows; what is no longer
needed is pruned; a store that cannot be written refuses what depends on it."""

from __future__ import annotations

import os
import time

from connectors.iso20022 import limits
from connectors.iso20022.inbound import OriginalRefs, Passthrough
from connectors.iso20022.state import RecallCase, State, StateUnavailable
from switch.core.messages import StatusQuery, TransferOutcome
from switch.core.results import Result, TransferState
from switch.store.iso20022_state import FILE_NAME, FileStateLog

import pytest

from iso_helpers import ALIAS_B, MEMBER_B, sample


def passthrough(tag: str) -> Passthrough:
    return Passthrough(OriginalRefs(f"M-{tag}", "pacs.008.001.08", "", f"E2E-{tag}", tag),
                       ("BANKA001", "PONTE", f"B-{tag}", "pacs.008.001.08", "2026-01-01"),
                       "pacs.008", debtor=b"<Dbtr><Nm>Ana</Nm></Dbtr>")


def outcome(tag: str) -> TransferOutcome:
    return TransferOutcome(payer_participant_id=1, transfer_id=tag,
                           state=TransferState.COMMITTED, result=Result.OK,
                           payee_participant_id=2, amount_minor=100, currency="BRL")


def memory(state: State) -> tuple:
    return (dict(state.passthrough), dict(state.sent), dict(state.credits),
            dict(state.recalls), {key: dict(window) for key, window in state.seen.items()},
            dict(state.reports), dict(state.report_sequence))


async def fill(state: State, count: int) -> None:
    now_ns = time.time_ns()
    for index in range(count):
        tag = f"T{index}"
        state.keep((1, tag), passthrough(tag), now_ns)
        state.remember_sent(f"P{index}", 1, tag)
        state.credit((1, tag), "pacs.008", now_ns)
        state.see(1, f"B{index}", bytes(16))
        state.log_seen(1, f"B{index}", bytes(16))
        state.report_entry(1, outcome(tag))
        if index % 2:
            state.forget((1, tag))
            state.credit_kind((1, tag), final=True)
    state.open_recall("C1", RecallCase(1, 2, "CASE-1", OriginalRefs("M-T0")))
    state.open_recall("C2", RecallCase(1, 2, "CASE-2", OriginalRefs("M-T1")))
    state.close_recall("C1")
    assert state.take_report(1, "BRL") is not None
    state.report_entry(1, outcome("after-report"))
    await state.sync()


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def open_log(request, tmp_path):
    """A function opening the store's log again and again on one backend: the data
    directory's file, or the `iso20022_state` table of a migrated database."""
    if request.param == "file":
        return lambda: FileStateLog(str(tmp_path))
    import asyncio

    from switch.store.iso20022_state import PostgresStateLog
    from switch.store.migrate import migrate_dsn

    dsn = request.getfixturevalue("postgres_dsn")
    asyncio.run(migrate_dsn(dsn))

    class Opener:
        async def read(self):
            self.log = await PostgresStateLog.connect(dsn)
            return await self.log.read()

        def __getattr__(self, name):
            return getattr(self.log, name)

    return Opener


async def test_what_is_written_replays_into_the_same_memory(open_log):
    state = State(open_log())
    await state.load(time.time_ns())
    await fill(state, 50)
    before = memory(state)
    await state.close()
    again = State(open_log())
    await again.load(time.time_ns())
    assert memory(again) == before
    assert len(again.passthrough) == 25 and list(again.recalls) == ["C2"]
    assert again.report_sequence == {(1, "BRL"): 1}
    assert [entry.transfer_id for entry in again.reports[(1, "BRL")]] == ["after-report"]
    await again.close()


async def test_a_torn_tail_is_cut_at_the_last_whole_record(tmp_path):
    state = State(FileStateLog(str(tmp_path)))
    await state.load(time.time_ns())
    await fill(state, 10)
    before = memory(state)
    await state.close()
    path = os.path.join(str(tmp_path), FILE_NAME)
    whole = os.path.getsize(path)
    with open(path, "ab") as file:  # half a frame, as a crash during a write leaves it
        file.write(b"\x40\x00\x00\x00\x01\x02\x03\x04partial")
    again = State(FileStateLog(str(tmp_path)))
    await again.load(time.time_ns())
    assert memory(again) == before
    assert os.path.getsize(path) == whole
    # Appending goes on after the cut.
    again.remember_sent("P-NEW", 1, "T-NEW")
    await again.close()
    third = State(FileStateLog(str(tmp_path)))
    await third.load(time.time_ns())
    assert third.sent["P-NEW"] == (1, "T-NEW")
    await third.close()
    # A flipped byte inside a record: the CRC stops the replay there.
    with open(path, "r+b") as file:
        file.seek(whole // 2)
        byte = file.read(1)
        file.seek(whole // 2)
        file.write(bytes([byte[0] ^ 0xFF]))
    fourth = State(FileStateLog(str(tmp_path)))
    await fourth.load(time.time_ns())
    assert os.path.getsize(path) <= whole // 2
    await fourth.close()


async def test_the_log_is_rewritten_from_memory_when_it_grows(tmp_path, monkeypatch,
                                                              open_log):
    monkeypatch.setattr(limits, "STATE_COMPACT_BYTES_MIN", 4096)
    state = State(open_log())
    await state.load(time.time_ns())
    now_ns = time.time_ns()
    for index in range(400):  # kept and forgotten: nothing stays live
        state.keep((1, f"T{index}"), passthrough(f"T{index}"), now_ns)
        state.forget((1, f"T{index}"))
        await state.sync()
    assert state.rewrites >= 1
    assert state.log.log_bytes < 3 * 4096
    if isinstance(state._file, FileStateLog):
        assert os.path.getsize(os.path.join(str(tmp_path), FILE_NAME)) < 3 * 4096
    state.keep((1, "LIVE"), passthrough("LIVE"), now_ns)
    before = memory(state)
    await state.close()
    again = State(open_log())
    await again.load(time.time_ns())
    assert memory(again) == before
    await again.close()


async def test_what_no_transfer_can_need_any_more_is_pruned(tmp_path):
    state = State(FileStateLog(str(tmp_path)))
    await state.load(time.time_ns())
    old_ns = time.time_ns() - limits.STATE_KEPT_AGE_MS_MAX * 1_000_000 - 1
    state.keep((1, "OLD"), passthrough("OLD"), old_ns)
    state.credit((1, "OLD"), "pacs.008", old_ns)
    state.keep((1, "NEW"), passthrough("NEW"), time.time_ns())
    await state.close()
    again = State(FileStateLog(str(tmp_path)))
    await again.load(time.time_ns())
    assert list(again.passthrough) == [(1, "NEW")]
    assert list(again.credits) == []
    await again.close()


async def test_bounds_hold_across_a_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "REFERENCES_MAX", 8)
    monkeypatch.setattr(limits, "SEEN_MESSAGES_PER_PARTICIPANT_MAX", 8)
    state = State(FileStateLog(str(tmp_path)))
    await state.load(time.time_ns())
    for index in range(20):
        state.remember_sent(f"P{index}", 1, f"T{index}")
        state.see(1, f"B{index}", bytes(16))
        state.log_seen(1, f"B{index}", bytes(16))
    before = memory(state)
    await state.close()
    again = State(FileStateLog(str(tmp_path)))
    await again.load(time.time_ns())
    assert memory(again) == before
    assert list(again.sent) == [f"P{index}" for index in range(12, 20)]
    assert list(again.seen[1]) == [f"B{index}" for index in range(12, 20)]
    await again.close()


async def test_a_store_that_cannot_be_written_refuses_and_nothing_is_taken(iso):
    state = iso.connector.state
    os.close(state._file._fd)  # the disk goes away under the store
    state._file._fd = os.open(os.devnull, os.O_RDONLY)
    body = sample("pacs.008-proxy.xml", TX="TX-NO-STORE", AMOUNT="1.00", PROXY=ALIAS_B,
                  CDTR_AGT=MEMBER_B)
    status, answer = await iso.a.post(body)
    assert status == 503 and b"MS03" in answer
    answer = await iso.server.gateway.status(1, StatusQuery(payer_participant_id=1,
                                                            transfer_id="TX-NO-STORE"))
    assert answer.result is Result.TRANSFER_NOT_FOUND
    assert iso.b.of("pacs.008.001.08") == []
    with pytest.raises(StateUnavailable):
        await state.sync()
