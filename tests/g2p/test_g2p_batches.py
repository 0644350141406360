"""A programme pays a batch across banks and wallets through the G2P connector: mapped,
unmapped, moved and rejected rows each get their status and reason, the money moved is the
report's paid total, and sending the same batch again pays nothing twice. Real switch,
real stream payees, real HTTP."""

from __future__ import annotations

import asyncio
import csv
import io

import msgspec

from tests.g2p.g2p_helpers import World, disburse_body, link_body, until

IDS = {n: f"{7_000_000_000 + n}" for n in range(1, 8)}


async def _linked_world(tmp_path) -> World:
    world = await World().start(str(tmp_path))
    bank_a, wallet_b, bank_c = (world.clients[name] for name in ("bank-a", "wallet-b", "bank-c"))
    status, answer = await bank_a.post("/mapper/sync/link", link_body("link-a", [
        ("l1", IDS[1], world.fa("bank-a", "acc-1")),
        ("l2", IDS[2], world.fa("bank-a", "closed-2")),
        ("l3", IDS[3], world.fa("bank-a", "acc-3"))]))
    assert status == 200, answer
    assert [item["status"] for item in answer["message"]["link_response"]] == ["succ"] * 3
    # The beneficiary of ID 3 moves to the wallet: the latest link wins.
    body = link_body("link-b", [("l4", IDS[4], world.fa("wallet-b", "w-4")),
                                ("l3b", IDS[3], world.fa("wallet-b", "w-3"))])
    for item in body["message"]["link_request"]:
        item["timestamp"] = "2026-12-04T11:00:00Z"
    status, answer = await wallet_b.post("/mapper/sync/link", body)
    assert status == 200 and all(item["status"] == "succ"
                                 for item in answer["message"]["link_response"]), answer
    status, answer = await bank_c.post("/mapper/link", link_body("link-c", [
        ("l5", IDS[5], world.fa("bank-c", "reject-5"))]))
    assert status == 200 and answer["message"]["ack_status"] == "ACK", answer
    await until(lambda: any(path == "/mapper/on-link"
                            for path, _ in world.recorders["bank-c"].received))
    return world


ROWS = [("r1", f"{IDS[1]}@nid", "10.00"), ("r2", f"{IDS[2]}@nid", "20.00"),
        ("r3", f"{IDS[3]}@nid", "30.00"), ("r4", f"{IDS[4]}@nid", "40.00"),
        ("r5", f"{IDS[5]}@nid", "50.00"), ("r6", f"{IDS[6]}@nid", "60.00")]


async def test_batch_across_banks_and_wallets(tmp_path):
    world = await _linked_world(tmp_path)
    try:
        programme = world.clients["programme"]
        rows = ROWS + [("r7", world.fa("bank-c", "acc-7"), "70.00")]
        before = {name: world.balance(name) for name in world.ids}
        status, answer = await programme.post("/disburse", disburse_body("pension-2026-12",
                                                                         rows))
        assert status == 200 and answer["message"]["ack_status"] == "ACK", answer
        assert await world.server.g2p_engine.wait_idle(60)
        status, body = await programme.get("/g2p/batches/pension-2026-12/summary")
        summary = msgspec.json.decode(body)
        assert status == 200, summary
        assert summary["state"] == "completed"
        assert (summary["paid"], summary["failed"]) == (4, 3)
        assert summary["failed_by_reason"] == {"account_closed": 1, "payee_rejected": 1,
                                               "unmapped": 1}
        assert summary["paid_minor"] == 1000 + 3000 + 4000 + 7000
        # The summary reconciles with the ledger: what left the programme is what arrived.
        after = {name: world.balance(name) for name in world.ids}
        assert before["programme"] - after["programme"] == summary["paid_minor"]
        assert after["bank-a"] - before["bank-a"] == 1000
        assert after["wallet-b"] - before["wallet-b"] == 3000 + 4000  # ID 3 moved here
        assert after["bank-c"] - before["bank-c"] == 7000
        # The bank the beneficiary left was told, at its callback URL.
        notices = [body for path, body in world.recorders["bank-a"].received
                   if path == "/mapper/on-unlink"]
        assert notices, world.recorders["bank-a"].received
        info = notices[0]["message"]["unlink_response"][0]["additional_info"]
        assert {"name": "fa", "value": world.fa("bank-a", "acc-3")} in info
        # Per-row report: CSV and the spec's JSON.
        status, body = await programme.get("/g2p/batches/pension-2026-12/rows.csv")
        assert status == 200
        table = {row["reference_id"]: row for row in csv.DictReader(io.StringIO(body.decode()))}
        assert {ref: (row["status"], row["reason"]) for ref, row in table.items()} == {
            "r1": ("paid", "none"), "r2": ("failed", "account_closed"),
            "r3": ("paid", "none"), "r4": ("paid", "none"),
            "r5": ("failed", "payee_rejected"), "r6": ("failed", "unmapped"),
            "r7": ("paid", "none")}
        assert table["r3"]["payee_participant_id"] == str(world.ids["wallet-b"])
        status, body = await programme.get("/g2p/batches/pension-2026-12/rows.json")
        spec = msgspec.json.decode(body)
        assert {item["reference_id"]: item["status"] for item in spec["disbursements_status"]
                } == {"r1": "succ", "r2": "rjct", "r3": "succ", "r4": "succ", "r5": "rjct",
                      "r6": "rjct", "r7": "succ"}
        # txn/status answers the same rows, synchronously.
        status, answer = await programme.post("/disburse/sync/txn/status", {
            "header": {"message_id": "s1", "message_ts": "2026-12-04T10:00:00Z",
                       "action": "txn-status", "sender_id": "t", "total_count": 1},
            "message": {"transaction_id": "status-1", "txnstatus_request": {
                "reference_id": "q1", "txn_type": "disburse",
                "attribute_type": "transaction_id", "attribute_value": "pension-2026-12"}}})
        assert status == 200, answer
        assert answer["header"]["completed_count"] == 7
        # The programme was called back when the batch completed.
        await until(lambda: any(path == "/on-disburse" and body["header"].get("completed_count")
                                == 7 for path, body in world.recorders["programme"].received))

        # The same batch again (a retry, a resend after a timeout): nothing is paid twice.
        status, answer = await programme.post("/disburse/sync/disburse",
                                               disburse_body("pension-2026-12", rows))
        assert status == 200, answer
        assert {item["status_reason_message"] for item in
                answer["message"]["disbursements_status"]} == {"already_in_batch"}
        assert await world.server.g2p_engine.wait_idle(30)
        assert {name: world.balance(name) for name in world.ids} == after
        status, body = await programme.get("/g2p/batches/pension-2026-12/summary")
        assert msgspec.json.decode(body)["paid"] == 4
    finally:
        await world.close()


async def test_a_batch_sent_in_many_messages_completes(tmp_path):
    """Messages arriving while the batch drains and completes between them: the batch
    still completes, and its counters are the store's (they were once overwritten with
    stale store counts while outcomes were buffered, and the batch never completed)."""
    world = await World().start(str(tmp_path), g2p={"rate_rows_per_s": 50_000})
    try:
        programme = world.clients["programme"]
        engine = world.server.g2p_engine
        for message in range(40):
            rows = [(f"m{message}-{n}", world.fa("wallet-b", f"w-{n}"), "1.00")
                    for n in range(150)]
            status, answer = await programme.post("/disburse", disburse_body("drip", rows))
            assert status == 200, answer
            await asyncio.sleep(0.01 * (message % 4))
        assert await engine.wait_idle(60)
        status, body = await programme.get("/g2p/batches/drip/summary")
        summary = msgspec.json.decode(body)
        assert (summary["state"], summary["paid"], summary["rows_total"]) == (
            "completed", 6_000, 6_000), summary
        (batch,) = engine.open.values()
        stored = await engine.store.counts(batch.record.batch_id)
        assert (batch.counts.paid, batch.counts.pending, batch.counts.submitted) == (
            stored.paid, stored.pending, stored.submitted)
    finally:
        await world.close()


async def test_a_row_whose_payee_did_not_answer_is_tried_again_and_the_window_narrows(tmp_path):
    """A payee that does not answer in time is not a failed row at once: the transfer
    expires (nothing paid), the engine halves its window and tries the row again under its
    next attempt; a payee silent every time fails the row `payee_unavailable` after
    PAYEE_UNAVAILABLE_ATTEMPTS_MAX attempts. Nothing is paid twice."""
    from switch.core.messages import SchemeRules
    from switch.g2p import limits as g2p_limits
    from tests.g2p.g2p_helpers import payee_decider

    asked: dict[str, int] = {}

    def decider(credit):
        account = credit.payee_account_ref
        asked[account] = asked.get(account, 0) + 1
        if account.startswith("silent-once"):  # no answer the first time: it expires
            return None if asked[account] == 1 else payee_decider(credit)
        if account.startswith("silent"):  # never an answer
            return None
        return payee_decider(credit)

    world = await World().start(str(tmp_path), rules=SchemeRules(payee_timeout_ms=300),
                                decider=decider, g2p={"in_flight_rows_max": 512})
    try:
        engine = world.server.g2p_engine
        rows = [("o1", world.fa("bank-a", "silent-once-1"), "1.00"),
                ("s2", world.fa("bank-a", "silent-2"), "2.00"),
                ("p3", world.fa("bank-c", "acc-3"), "3.00")]
        before = {name: world.balance(name) for name in world.ids}
        status, answer = await world.clients["programme"].post(
            "/disburse", disburse_body("retry-1", rows))
        assert status == 200, answer
        assert await engine.wait_idle(60)
        status, body = await world.clients["programme"].get("/g2p/batches/retry-1/summary")
        summary = msgspec.json.decode(body)
        assert (summary["paid"], summary["failed"]) == (2, 1), summary
        assert summary["failed_by_reason"] == {"payee_unavailable": 1}
        assert asked["silent-once-1"] == 2  # asked again, paid the second time
        assert asked["silent-2"] == g2p_limits.PAYEE_UNAVAILABLE_ATTEMPTS_MAX
        assert engine.rows_retried_total == 1 + (g2p_limits.PAYEE_UNAVAILABLE_ATTEMPTS_MAX - 1)
        assert engine.window_control.expiry_cuts >= 1  # the expiries narrowed the window
        after = {name: world.balance(name) for name in world.ids}
        assert before["programme"] - after["programme"] == 100 + 300 == summary["paid_minor"]
        assert after["bank-a"] - before["bank-a"] == 100
    finally:
        await world.close()
