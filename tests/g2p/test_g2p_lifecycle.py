"""A batch's life cycle on a real switch: a funding shortfall pauses the batch instead of
failing rows, and it finishes once the programme is funded; operators pause, resume and
cancel a batch through the console's maker-checker proposals; an action the batch's state
does not allow, or on a batch that does not exist, changes nothing."""

from __future__ import annotations

import asyncio

import httpx
import msgspec

from switch.admin.bootstrap import fund
from switch.admin.passwords import Passwords
from switch.admin.service import Caller
from switch.admin.types import Role, UserCreate
from switch.console.server_port import attach_console
from switch.core.results import Result
from switch.testing import CURRENCY
from tests.g2p.g2p_helpers import World, disburse_body, until

PASSWORD = "correct horse battery staple"


async def _summary(world: World, name: str, transaction_id: str) -> dict:
    status, body = await world.clients[name].get(f"/g2p/batches/{transaction_id}/summary")
    assert status == 200, body
    return msgspec.json.decode(body)


async def test_funding_shortfall_pauses_the_batch_and_funding_resumes_it(tmp_path):
    world = await World().start(str(tmp_path), programme_funding_minor=5_000)
    try:
        programme = world.clients["programme"]
        rows = [(f"r{n}", world.fa("bank-a", f"acc-{n}"), "20.00") for n in range(5)]
        status, answer = await programme.post("/disburse/sync/disburse",
                                              disburse_body("relief-1", rows))
        assert status == 200, answer
        await until(lambda: world.server.g2p_engine.open and all(
            batch.record.state.name == "PAUSED_FUNDING"
            for batch in world.server.g2p_engine.open.values()), 30)
        await until(lambda: world.server.g2p_engine.in_flight == 0)
        summary = await _summary(world, "programme", "relief-1")
        assert summary["state"] in ("paused_funding", "active"), summary  # probing
        assert summary["paid"] == 2 and summary["failed"] == 0, summary
        assert world.balance("programme") == 1_000
        await fund(world.server, world.ids["programme"], CURRENCY, 10_000, request_id="top-up")
        assert await world.server.g2p_engine.wait_idle(30)
        summary = await _summary(world, "programme", "relief-1")
        assert (summary["state"], summary["paid"], summary["failed"]) == ("completed", 5, 0)
        assert world.balance("programme") == 15_000 - 10_000
    finally:
        await world.close()


class _Session:
    def __init__(self, console, username: str) -> None:
        self.client = httpx.AsyncClient(base_url=console.url, timeout=10)
        self.username = username

    async def __aenter__(self) -> httpx.AsyncClient:
        answer = await self.client.post("/api/admin/session", json={
            "username": self.username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        self.client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()


async def _carried_out(maker, checker, body: dict) -> dict:
    proposed = await maker.post("/api/admin/proposals", json=body)
    assert proposed.status_code == 201, proposed.text
    decided = await checker.post(f"/api/admin/proposals/{proposed.json()['proposal_id']}"
                                 "/decision", json={"approve": True})
    assert decided.status_code == 200, decided.text
    return decided.json()


async def test_operators_pause_resume_and_cancel_by_maker_checker(tmp_path):
    world = await World().start(str(tmp_path), g2p={"rate_rows_per_s": 200})
    console = await attach_console(world.server,
                                   passwords=Passwords(time_cost=1, memory_kib=8192))
    for username, role in (("olga", "operator"), ("omar", "operator")):
        await console.service.create_user(Caller("test", Role.ADMIN, "local"), UserCreate(
            username=username, password=PASSWORD, role=role))
    try:
        programme = world.clients["programme"]
        rows = [(f"r{n}", world.fa("wallet-b", f"w-{n}"), "1.00") for n in range(1_500)]
        status, answer = await programme.post("/disburse", disburse_body("cash-1", rows))
        assert status == 200, answer
        pid = world.ids["programme"]
        action = {"kind": "g2p_batch", "participant_id": pid, "transaction_id": "cash-1"}
        async with _Session(console, "olga") as olga, _Session(console, "omar") as omar:
            await until(lambda: world.server.g2p_engine.rows_paid_total >= 50)
            # One operator alone changes nothing: the proposal waits for its checker.
            proposed = await olga.post("/api/admin/proposals", json={**action,
                                                                      "action": "pause"})
            assert proposed.status_code == 201, proposed.text
            assert (await _summary(world, "programme", "cash-1"))["state"] == "active"
            decided = await omar.post(f"/api/admin/proposals/{proposed.json()['proposal_id']}"
                                      "/decision", json={"approve": True})
            assert decided.json()["state"] == "executed", decided.text
            await until(lambda: world.server.g2p_engine.in_flight == 0)
            paused = await _summary(world, "programme", "cash-1")
            assert paused["state"] == "paused"
            await asyncio.sleep(0.3)
            assert (await _summary(world, "programme", "cash-1"))["paid"] == paused["paid"]
            # Pausing a paused batch is refused; so is any action on a batch that is not.
            again = await _carried_out(olga, omar, {**action, "action": "pause"})
            assert again["state"] == "failed"
            assert again["core_result"] == int(Result.G2P_BATCH_STATE)
            missing = await _carried_out(olga, omar, {**action, "transaction_id": "nope",
                                                      "action": "cancel"})
            assert missing["core_result"] == int(Result.G2P_BATCH_NOT_FOUND)
            resumed = await _carried_out(olga, omar, {**action, "action": "resume"})
            assert resumed["state"] == "executed", resumed
            await until(lambda: world.server.g2p_engine.rows_paid_total >= paused["paid"] + 50)
            cancelled = await _carried_out(olga, omar, {**action, "action": "cancel"})
            assert cancelled["state"] == "executed", cancelled
        assert await world.server.g2p_engine.wait_idle(30)
        summary = await _summary(world, "programme", "cash-1")
        assert summary["state"] == "cancelled"
        assert summary["failed"] == 0
        assert summary["paid"] + summary["cancelled"] == 1_500, summary
        assert 0 < summary["cancelled"] < 1_500
        assert world.balance("programme") == 10**9 - summary["paid_minor"]
        # The store agrees with the summary: no row is left pending or submitted.
        engine = world.server.g2p_engine
        (batch_id,) = [b.record.batch_id for b in engine.open.values()
                       if b.record.transaction_id == "cash-1"]
        stored = await engine.store.counts(batch_id)
        assert (stored.pending, stored.submitted) == (0, 0), stored
        assert (stored.paid, stored.cancelled) == (summary["paid"], summary["cancelled"])
        # A cancelled batch takes no more rows.
        status, answer = await programme.post("/disburse", disburse_body(
            "cash-1", [("late", world.fa("wallet-b", "w-late"), "1.00")]))
        assert status == 409 and answer["name"] == "G2P_BATCH_CLOSED", answer
    finally:
        await console.stop()
        await world.close()
