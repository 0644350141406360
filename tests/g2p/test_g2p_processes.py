"""Real processes (switch.launcher.SwitchProcess) on PostgreSQL: the switch is killed with
SIGKILL in the middle of a batch and restarted; the batch completes with every row paid
exactly once (the ledger and the payees' own records agree). Then no raw national ID is
anywhere: not in a table (a full pg_dump), the journal or any file of the data directory,
the switch's log, its metrics, or any callback a participant received."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import msgspec
import pytest

from connectors.sdk.stream_client import StreamClient
from switch.core.messages import TransferOutcome
from switch.core.results import TransferState
from switch.g2p.types import parse_transfer_id
from switch.launcher import SwitchProcess, free_port, sim_server_config
from tests.g2p.g2p_helpers import CallbackRecorder, disburse_body, link_body, payee_decider

pytestmark = pytest.mark.slow

# Ten-digit IDs (the simulators' KE format) unlikely to occur by chance in a dump.
NATIONAL_IDS = [f"{4_829_175_036 + 7_919 * n}" for n in range(600)]
ROWS_BY_ACCOUNT = 1_400
AMOUNT_MINOR = 100


class Participants(threading.Thread):
    """Banks and wallets in their own event loop: stream clients answering credit requests
    (reconnecting on their own after the crash) and callback servers recording bodies."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.loop = asyncio.new_event_loop()
        self.recorders: dict[str, CallbackRecorder] = {}
        self.urls: dict[str, str] = {}
        self.clients: list[StreamClient] = []
        self.committed: dict[str, set[str]] = {}

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coroutine, timeout_s: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    async def add_recorder(self, name: str) -> str:
        recorder = CallbackRecorder()
        self.recorders[name] = recorder
        self.urls[name] = await recorder.start()
        return self.urls[name]

    async def connect(self, name: str, port: int, api_key: str) -> None:
        seen = self.committed.setdefault(name, set())

        def on_push(message) -> None:
            if type(message) is TransferOutcome and message.state is TransferState.COMMITTED:
                seen.add(message.transfer_id)

        async def slow_payee(credit_request):
            # Answers take a while, so rows are in flight whenever the switch is killed.
            await asyncio.sleep(0.05)
            return payee_decider(credit_request)

        self.clients.append(await StreamClient.connect(
            "127.0.0.1", port, api_key=api_key, on_credit_request=slow_payee,
            on_push=on_push))

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for recorder in self.recorders.values():
            await recorder.close()


def g2p(port: int, api_key: str, path: str, body) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def summary(port: int, api_key: str, transaction_id: str) -> dict | None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/g2p/batches/{transaction_id}/summary",
        headers={"Authorization": f"Bearer {api_key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError):
        return None  # the switch is down


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not in {timeout_s}s")


def balance(switch: SwitchProcess, participant_id: int) -> int:
    row = switch.positions()[participant_id]
    account = row["accounts"]["KES"] if "accounts" in row else row["KES"]
    return account["credits_posted"] - account["debits_posted"]


@pytest.mark.postgres
def test_kill_mid_batch_pays_every_row_once_and_no_raw_id_anywhere(tmp_path, postgres_dsn):
    data_dir = str(tmp_path / "switch")
    g2p_port = free_port()
    config = sim_server_config(
        data_dir, store="postgres", postgres_dsn=postgres_dsn, g2p_enabled=True,
        g2p={"port": g2p_port, "rate_rows_per_s": 400, "funding_probe_s": 0.5})
    switch = SwitchProcess(config).start()
    participants = Participants()
    participants.start()
    try:
        switch.add_currency("KES", 404)
        ids, keys = {}, {}
        for name, kind in (("bank-a", "bank"), ("wallet-b", "wallet"),
                           ("programme", "government")):
            url = participants.call(participants.add_recorder(name))
            created = switch.onboard_participant(name, kind, ["KES"], funding_minor=10**9,
                                                 callback_url=url)
            ids[name], keys[name] = created["participant_id"], created["api_key"]
        for name in ("bank-a", "wallet-b"):
            participants.call(participants.connect(name, switch.stream_port, keys[name]))
        # bank-a links every ID, then 100 beneficiaries move to the wallet.
        answer = g2p(g2p_port, keys["bank-a"], "/mapper/sync/link", link_body("links-a", [
            (f"l{n}", national_id, f"acc-{n}@{ids['bank-a']}")
            for n, national_id in enumerate(NATIONAL_IDS)]))
        assert all(item["status"] == "succ" for item in answer["message"]["link_response"])
        moved = link_body("links-b", [(f"m{n}", NATIONAL_IDS[n], f"w-{n}@{ids['wallet-b']}")
                                      for n in range(100)])
        for item in moved["message"]["link_request"]:
            item["timestamp"] = "2026-12-04T11:00:00Z"
        answer = g2p(g2p_port, keys["wallet-b"], "/mapper/link", moved)
        assert answer["message"]["ack_status"] == "ACK"
        rows = [(f"n{n}", f"{national_id}@nid", "1.00")
                for n, national_id in enumerate(NATIONAL_IDS)]
        rows += [(f"f{n}", f"w-{n}@{ids['wallet-b']}", "1.00") for n in range(ROWS_BY_ACCOUNT)]
        total = len(rows)
        before = {name: balance(switch, pid) for name, pid in ids.items()}
        answer = g2p(g2p_port, keys["programme"], "/disburse", disburse_body("pension-12", rows))
        assert answer["message"]["ack_status"] == "ACK", answer

        wait_for(lambda: (summary(g2p_port, keys["programme"], "pension-12") or {}).get(
            "paid", 0) >= total // 4, 60, "a quarter paid")
        switch.kill()  # SIGKILL mid-batch
        switch.start()  # same data directory: replay, then the batch resumes
        done = wait_for(lambda: (lambda s: s if s and s["state"] == "completed" else None)(
            summary(g2p_port, keys["programme"], "pension-12")), 120, "batch completed")
        assert (done["paid"], done["failed"], done["rows_total"]) == (total, 0, total), done
        recovered = [line for line in switch.log_tail(400).splitlines()
                     if "g2p.recovering" in line]
        assert recovered and "rows_submitted=0" not in recovered[0], recovered
        after = {name: balance(switch, pid) for name, pid in ids.items()}
        # Exactly once, by the ledger: what left the programme is every row once.
        assert before["programme"] - after["programme"] == total * AMOUNT_MINOR
        assert done["paid_minor"] == total * AMOUNT_MINOR
        received = (after["bank-a"] - before["bank-a"]) + (after["wallet-b"] - before["wallet-b"])
        assert received == total * AMOUNT_MINOR
        assert after["wallet-b"] - before["wallet-b"] == (100 + ROWS_BY_ACCOUNT) * AMOUNT_MINOR
        # ... and by the payees' own records: no row committed under two transfer ids.
        rows_committed: dict[tuple[int, int], set[str]] = {}
        for transfer_ids in participants.committed.values():
            for transfer_id in transfer_ids:
                batch_id, row_no, _attempt = parse_transfer_id(transfer_id)
                rows_committed.setdefault((batch_id, row_no), set()).add(transfer_id)
        assert all(len(found) == 1 for found in rows_committed.values())

        metrics = switch.get("/metrics")
        callbacks = b"".join(msgspec.json.encode(body) for recorder in
                             participants.recorders.values() for _path, body in recorder.received)
        assert any(path == "/mapper/on-unlink" for path, _ in
                   participants.recorders["bank-a"].received)  # moved-out notices arrived
    finally:
        participants.call(participants.close())
        participants.loop.call_soon_threadsafe(participants.loop.stop)
        switch.stop()

    dump = subprocess.run(["pg_dump", "--data-only", postgres_dsn], capture_output=True,
                          check=True).stdout
    # The dump does hold the batch and the mapper (positive controls for the search below).
    assert b"g2p_rows" in dump and b"directory_mapper_links" in dump
    assert b"acc-599" in dump and b"pension-12" in dump
    files = {}
    for root, _dirs, names in os.walk(data_dir):
        for name in names:
            with open(os.path.join(root, name), "rb") as file:
                files[name] = file.read()
    # The journal (its segments) and the log are among them.
    assert any(name.endswith(".journal") for name in files) and "switch.log" in files
    places = {"pg_dump": dump, "metrics": metrics.encode(), "callbacks": callbacks, **files}
    for national_id in NATIONAL_IDS:
        for spelling in (national_id, f"KE:{national_id}", f"KE{national_id}"):
            needle = spelling.encode()
            found = [place for place, data in places.items() if needle in data]
            assert not found, f"a raw national ID is in {found}"
