"""Settlement with real processes: a switch process (file journal, console, stream
connector) carrying real SDK traffic in a deferred-net currency, operated through its
console like operators do (maker-checker, the `ponte settlement` CLI).

- Windows closed while transfers flow lose nothing and count nothing twice: every committed
  transfer is in exactly one window's statements, and each window's positions equal the
  recomputation from its statements' entries.
- kill -9 between a window's close and its confirmation: the restarted switch has the same
  pending window, positions, instructions and statements, and the RTGS's answer settles it.
- kill -9 between the confirmation and its ledger postings (the moment the confirmation
  reaches the journal, before anyone is answered): the restarted switch carries the
  approved confirmation out once — every position settled, nothing posted twice.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from settlement_helpers import KES, KES_LEDGER, Payers, assert_valid, pacs002
from switch.launcher import SwitchProcess, sim_server_config

pytestmark = pytest.mark.slow

CAP_MINOR = 10**10
NAMES = ("bank_a", "bank_b", "bank_c")
RULES = {"fee_fixed_minor": 2, "fee_bps": 10}


def start_switch(tmp_path) -> tuple[SwitchProcess, dict[str, tuple[int, str]]]:
    switch = SwitchProcess(sim_server_config(str(tmp_path / "switch"))).start()
    switch.add_currency(KES, KES_LEDGER, "deferred_net", RULES)
    participants = {}
    for name in NAMES:
        created = switch.onboard_participant(name, "bank", [KES], net_debit_cap_minor=CAP_MINOR)
        participants[name] = (created["participant_id"], created["api_key"])
    return switch, participants


def journal_bytes(switch: SwitchProcess) -> int:
    """Bytes in the switch's journal segments (data_dir/journal/*.journal)."""
    directory = os.path.join(switch.data_dir, "journal")
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory)
               if name.endswith(".journal"))


def operator(switch: SwitchProcess):
    return switch.operators()[0]


def restart(switch: SwitchProcess) -> None:
    """Start again on the same data directory; wait for the console too (it listens after
    the health port the launcher waits for)."""
    from switch.admin.client import OperatorApiError

    switch.start()
    deadline = time.monotonic() + 60
    while True:
        try:
            operator(switch).get("/api/admin/session")
            return
        except OperatorApiError:
            assert time.monotonic() < deadline, "the console did not come back"
            time.sleep(0.05)


def windows(switch: SwitchProcess) -> list[dict]:
    return operator(switch).get("/api/admin/settlement/windows", currency=KES, limit=500)


def detail(switch: SwitchProcess, window_id: int) -> dict:
    return operator(switch).get(f"/api/admin/settlement/windows/{window_id}")


def document(switch: SwitchProcess, path: str, params: dict | None = None) -> bytes:
    out = io.BytesIO()
    operator(switch).download(path, out, params)
    return out.getvalue()


def statement_rows(switch: SwitchProcess, window_id: int, participant_id: int) -> list[dict]:
    text = document(switch, f"/api/admin/settlement/windows/{window_id}/statements/"
                            f"{participant_id}", {"format": "csv"}).decode()
    return list(csv.DictReader(io.StringIO(text)))


def close_window(switch: SwitchProcess) -> int:
    open_window = windows(switch)[0]
    assert open_window["state"] == "open"
    switch.propose_and_approve({"kind": "settlement_close", "currency": KES,
                                "window_id": open_window["window_id"]})
    return open_window["window_id"]


async def pay_many(switch: SwitchProcess, participants, count: int,
                   concurrency: int = 64, keep_going=None) -> list:
    """`count` payments at least, and more while `keep_going()` says so."""
    payers = await Payers.connect(switch, participants)
    pairs = [("bank_a", "bank_b"), ("bank_b", "bank_c"), ("bank_c", "bank_a"),
             ("bank_a", "bank_c")]
    outcomes: list = []
    sent = 0

    async def worker() -> None:
        nonlocal sent
        while sent < count or (keep_going is not None and keep_going()):
            n = sent
            sent += 1
            payer, payee = pairs[n % len(pairs)]
            outcomes.append(await payers.pay(payer, payee, 100 + n % 997))

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return outcomes
    finally:
        await payers.close()


def test_windows_closed_under_traffic_lose_and_double_count_nothing(tmp_path):
    switch, participants = start_switch(tmp_path)
    try:
        closed: list[int] = []
        stop = threading.Event()

        def operator_closes() -> None:
            while not stop.is_set() and len(closed) < 4:
                time.sleep(0.4)
                closed.append(close_window(switch))

        async def run() -> list:
            closes = asyncio.create_task(asyncio.to_thread(operator_closes))
            try:
                # Traffic flows until the operator has closed its windows (3,000 at least).
                return await pay_many(switch, participants, 3_000,
                                      keep_going=lambda: not closes.done())
            finally:
                stop.set()
                await closes

        outcomes = asyncio.run(run())
        assert len(closed) == 4, "the closes did not happen while traffic flowed"
        committed = {(o.payer_participant_id, o.transfer_id) for o in outcomes
                     if o.state.name == "COMMITTED"}
        assert len(committed) == len(outcomes)  # caps far above the traffic
        seen: dict[tuple[int, str], int] = {}
        for window in windows(switch):
            window_id = window["window_id"]
            positions = {p["participant_id"]: p["net_minor"]
                         for p in detail(switch, window_id)["positions"]}
            for name, (participant_id, _key) in participants.items():
                rows = statement_rows(switch, window_id, participant_id)
                recomputed = 0
                for row in rows:
                    if row["entry"] not in ("PAYMENT", "RETURN", "FEE"):
                        continue  # operator and settlement postings are not positions
                    amount = int(row["amount_minor"])
                    recomputed += -amount if row["direction"] == "DBIT" else amount
                    if row["entry"] == "PAYMENT" and row["direction"] == "DBIT":
                        key = (int(row["payer_participant_id"]), row["transfer_id"])
                        assert key not in seen, f"{key} in windows {seen[key]} and {window_id}"
                        seen[key] = window_id
                assert recomputed == positions.get(participant_id, 0), (window_id, name)
            if window["state"] != "open":
                assert detail(switch, window_id)["net_sum_minor"] == 0
        assert set(seen) == committed  # every committed transfer, in exactly one window
        assert sum(w["transfers"] for w in windows(switch)) == len(committed)
    finally:
        switch.stop()


def cli(switch: SwitchProcess, tmp_path, *args: str, stdin: bytes = b"") -> bytes:
    """`ponte ...` as a script runs it, logged in as the launcher's checker."""
    session = str(tmp_path / "session.json")
    env = {**os.environ, "PONTE_SESSION_FILE": session}
    if not os.path.exists(session):
        username, password, _role = switch._operator_passwords[1]
        subprocess.run([sys.executable, "-m", "switch.cli", "admin", "login", "--url",
                        switch.console_url, "--username", username, "--password-stdin"],
                       input=password.encode() + b"\n", env=env, check=True,
                       capture_output=True)
    done = subprocess.run([sys.executable, "-m", "switch.cli", *args], input=stdin, env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def test_kill_9_between_close_and_confirmation_keeps_the_window_then_the_rtgs_settles_it(
        tmp_path):
    switch, participants = start_switch(tmp_path)
    try:
        asyncio.run(pay_many(switch, participants, 400))
        # Closed with the CLI (proposed by the checker, approved by the maker).
        listed = json.loads(cli(switch, tmp_path, "settlement", "windows", "--json"))
        window_id = listed[0]["window_id"]
        assert listed[0]["state"] == "open"
        proposed = cli(switch, tmp_path, "settlement", "close", KES).decode()
        proposal_id = proposed.split()[1]
        assert operator(switch).decide(proposal_id, True)["state"] == "executed"
        before = detail(switch, window_id)
        assert before["window"]["state"] == "pending_settlement"
        assert json.loads(cli(switch, tmp_path, "settlement", "positions", str(window_id),
                              "--json")) == before
        bank_a = participants["bank_a"][0]
        csv_file = tmp_path / "a.csv"
        cli(switch, tmp_path, "settlement", "statement", str(window_id), str(bank_a),
            "--format", "csv", "-o", str(csv_file))
        assert list(csv.DictReader(io.StringIO(csv_file.read_text()))) == statement_rows(
            switch, window_id, bank_a)
        instructions = cli(switch, tmp_path, "settlement", "instructions", str(window_id))
        assert_valid(instructions, "pacs.009.001.08")
        statements = {pid: statement_rows(switch, window_id, pid)
                      for pid, _key in participants.values()}
        switch.kill()
        restart(switch)
        after = detail(switch, window_id)
        assert after == before
        assert cli(switch, tmp_path, "settlement", "instructions", str(window_id)) == (
            instructions)
        assert {pid: statement_rows(switch, window_id, pid)
                for pid, _key in participants.values()} == statements
        # The RTGS settles every instruction; its answer is posted with the CLI.
        answer = cli(switch, tmp_path, "settlement", "rtgs-answer", "-",
                     stdin=pacs002(f"PONTE-W{window_id}", group="ACSC"))
        assert b"settled" in answer
        assert detail(switch, window_id)["window"]["state"] == "settled"
        for view in operator(switch).get("/api/admin/participants"):
            if view["participant_id"] in {pid for pid, _k in participants.values()}:
                assert view["positions"][0]["available_minor"] == CAP_MINOR, view
    finally:
        switch.stop()


def test_kill_9_between_confirmation_and_its_postings_carries_it_out_once(tmp_path):
    switch, participants = start_switch(tmp_path)
    try:
        asyncio.run(pay_many(switch, participants, 400))
        window_id = close_window(switch)
        net = {p["participant_id"]: p["net_minor"] for p in detail(switch, window_id)[
            "positions"]}
        maker, checker = switch.operators()
        proposal = maker.propose({"kind": "settlement_confirm", "window_id": window_id,
                                  "rtgs_reference": "RTGS-KILL-1"})
        size = journal_bytes(switch)

        def approve() -> None:
            try:
                checker.decide(proposal["proposal_id"], True)
            except Exception:  # noqa: BLE001 - the process dies under it: no answer
                pass

        approving = threading.Thread(target=approve)
        approving.start()
        deadline = time.monotonic() + 30
        while journal_bytes(switch) == size:  # the confirmation reaches the journal
            assert time.monotonic() < deadline, "the confirmation never reached the journal"
        os.kill(switch.pid, signal.SIGKILL)
        switch.kill()
        approving.join(30)
        restart(switch)  # replays the journal; the console resumes the approved proposal
        deadline = time.monotonic() + 30
        while maker.get(f"/api/admin/proposals/{proposal['proposal_id']}")["state"] != (
                "executed"):
            assert time.monotonic() < deadline, "the approved confirmation was not resumed"
            time.sleep(0.1)
        settled = detail(switch, window_id)
        assert settled["window"]["state"] == "settled"
        assert {p["participant_id"]: p["posted_minor"] for p in settled["positions"]} == {
            pid: -amount for pid, amount in net.items()}
        # Posted once: every participant is back at its cap, and the open window's
        # statements show one settlement posting each.
        open_id = windows(switch)[0]["window_id"]
        for pid, _key in participants.values():
            postings = [r for r in statement_rows(switch, open_id, pid)
                        if r["entry"].startswith("SETTLEMENT_")]
            assert len(postings) == (1 if net.get(pid) else 0), (pid, postings)
        for view in operator(switch).get("/api/admin/participants"):
            if view["participant_id"] in net:
                assert view["positions"][0]["available_minor"] == CAP_MINOR, view
    finally:
        switch.stop()
