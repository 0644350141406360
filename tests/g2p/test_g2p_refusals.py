"""Bad rows and bad batches get typed errors and nothing is paid: malformed bodies, rows
that break a field's grammar, a message over its row bound, a batch over its maximum,
another programme's batch, callers of the wrong kind, a wrong total_count, no API key."""

from __future__ import annotations

import msgspec
import pytest

from switch.g2p import limits
from tests.g2p.g2p_helpers import World, disburse_body, header, link_body

VALID_ID = "7000000001"


@pytest.fixture
async def world(tmp_path):
    running = await World().start(str(tmp_path))
    yield running
    await running.close()


async def _no_money_moved(world: World, before: dict) -> None:
    assert await world.server.g2p_engine.wait_idle(30)
    assert {name: world.balance(name) for name in world.ids} == before


async def test_malformed_bodies_are_typed_and_change_nothing(world):
    programme = world.clients["programme"]
    before = {name: world.balance(name) for name in world.ids}
    status, answer = await programme.post("/disburse", b'{"header": ')
    assert (status, answer["name"]) == (400, "MALFORMED_SYNTAX")
    status, answer = await programme.post("/disburse", {"header": header("disburse", 1),
                                                         "message": {"transaction_id": "t"}})
    assert (status, answer["name"]) == (400, "VALIDATION_ERROR")
    assert "disbursements" in answer["errors"][0]["message"]
    body = disburse_body("t-1", [("r1", world.fa("bank-a", "a1"), "1.00")])
    body["message"]["disbursements"][0]["surprise"] = 1
    status, answer = await programme.post("/disburse", body)
    assert (status, answer["name"]) == (400, "VALIDATION_ERROR")
    body = disburse_body("t-1", [("r1", world.fa("bank-a", "a1"), "1.00")])
    body["header"]["total_count"] = 2
    status, answer = await programme.post("/disburse", body)
    assert (status, answer["name"]) == (400, "VALIDATION_ERROR")
    body["header"]["total_count"] = 1
    body["header"]["action"] = "search"
    status, answer = await programme.post("/disburse", body)
    assert (status, answer["name"]) == (400, "VALIDATION_ERROR")
    status, answer = await world.clients["programme"].post(
        "/disburse/txn/status", {"header": header("txn-status", 1), "message": {
            "transaction_id": "q", "txnstatus_request": {
                "reference_id": "q1", "txn_type": "disburse", "attribute_type": "transaction_id",
                "attribute_value": "t-1"}}})
    assert (status, answer["name"]) == (404, "G2P_BATCH_NOT_FOUND")  # nothing was created
    assert await world.server.g2p_engine.store.list_batches(None, 10) == []
    await _no_money_moved(world, before)


async def test_bad_rows_are_refused_one_by_one_and_never_paid(world):
    programme = world.clients["programme"]
    before = {name: world.balance(name) for name in world.ids}
    rows = [("bad ref", world.fa("bank-a", "a1"), "1.00"),
            ("r-amount", world.fa("bank-a", "a1"), "1"),
            ("r-zero", world.fa("bank-a", "a1"), "0.00"),
            ("r-fraction", world.fa("bank-a", "a1"), "1.005"),
            ("r-nid", "12@nid", "1.00"),
            ("r-nobody", "a1@999999", "1.00"),
            ("r-nofa", "just-text", "1.00")]
    body = disburse_body("bad-rows", rows)
    body["message"]["disbursements"].append({
        "reference_id": "r-currency", "payer_fa": "t@gov", "payee_fa": world.fa("bank-a", "a"),
        "amount": "1.00", "currency_code": "USD"})
    body["message"]["disbursements"].append({
        "reference_id": "r-later", "payer_fa": "t@gov", "payee_fa": world.fa("bank-a", "a"),
        "amount": "1.00", "scheduled_timestamp": "2030-01-01T00:00:00Z"})
    body["header"]["total_count"] = len(body["message"]["disbursements"])
    status, answer = await programme.post("/disburse/sync/disburse", body)
    assert status == 200, answer
    codes = {item["reference_id"]: item.get("status_reason_code")
             for item in answer["message"]["disbursements_status"]}
    assert codes == {
        "bad ref": "rjct.reference_id.invalid", "r-amount": "rjct.amount.invalid",
        "r-zero": "rjct.amount.invalid", "r-fraction": "rjct.amount.invalid",
        "r-nid": "rjct.payee_fa.invalid", "r-nobody": "rjct.payee_fa.invalid",
        "r-nofa": "rjct.payee_fa.invalid", "r-currency": "rjct.currency_code.invalid",
        "r-later": "rjct.schedule_ts.invalid"}
    assert answer["header"]["status"] == "rjct"
    # No valid row: no batch was created.
    assert await world.server.g2p_engine.store.list_batches(None, 10) == []
    # The same reference with other content in the same batch is refused, the first stays.
    status, answer = await programme.post("/disburse/sync/disburse", disburse_body(
        "dup", [("r1", world.fa("bank-a", "a1"), "1.00"), ("r1", world.fa("bank-a", "a1"),
                                                          "2.00")]))
    assert [item["status"] for item in answer["message"]["disbursements_status"]] == [
        "pdng", "rjct"]
    assert answer["message"]["disbursements_status"][1]["status_reason_code"] == (
        "rjct.reference_id.duplicate")
    assert await world.server.g2p_engine.wait_idle(30)
    after = {name: world.balance(name) for name in world.ids}
    assert before["programme"] - after["programme"] == 100  # only the first r1


async def test_oversize_message_and_batch(world, monkeypatch):
    programme = world.clients["programme"]
    before = {name: world.balance(name) for name in world.ids}
    rows = [(f"r{n}", world.fa("bank-a", "a1"), "1.00")
            for n in range(limits.MESSAGE_ROWS_MAX + 1)]
    status, answer = await programme.post("/disburse", disburse_body("big", rows))
    assert (status, answer["name"]) == (413, "G2P_MESSAGE_TOO_LARGE"), answer
    assert await world.server.g2p_engine.store.list_batches(None, 10) == []
    # A batch over its maximum (made small here): the message that would pass it is
    # refused whole, the rows before it stay.
    monkeypatch.setattr(limits, "BATCH_ROWS_MAX", 3)
    await world.server.g2p_engine.batch_action(0, "pause")  # nothing: no such batch
    status, _ = await programme.post("/disburse/sync/disburse", disburse_body(
        "capped", [("a", world.fa("bank-a", "a1"), "1.00"),
                   ("b", world.fa("bank-a", "a1"), "1.00")]))
    assert status == 200
    status, answer = await programme.post("/disburse/sync/disburse", disburse_body(
        "capped", [("c", world.fa("bank-a", "a1"), "1.00"),
                   ("d", world.fa("bank-a", "a1"), "1.00")]))
    assert (status, answer["name"]) == (413, "G2P_BATCH_TOO_LARGE"), answer
    assert await world.server.g2p_engine.wait_idle(30)
    status, body = await programme.get("/g2p/batches/capped/summary")
    assert msgspec.json.decode(body)["rows_total"] == 2
    after = {name: world.balance(name) for name in world.ids}
    assert before["programme"] - after["programme"] == 200


async def test_another_programmes_batch_is_not_found(world):
    programme, other = world.clients["programme"], world.clients["programme-2"]
    status, _ = await programme.post("/disburse/sync/disburse", disburse_body(
        "mine", [("a", world.fa("bank-a", "a1"), "1.00")]))
    assert status == 200
    assert await world.server.g2p_engine.wait_idle(30)
    status, body = await other.get("/g2p/batches/mine/summary")
    assert status == 404 and msgspec.json.decode(body)["name"] == "G2P_BATCH_NOT_FOUND"
    status, body = await other.get("/g2p/batches/mine/rows.csv")
    assert status == 404
    status, answer = await other.post("/disburse/sync/txn/status", {
        "header": header("txn-status", 1), "message": {
            "transaction_id": "mine", "txnstatus_request": {
                "reference_id": "q1", "txn_type": "disburse",
                "attribute_type": "reference_id_list", "attribute_value": ["a"]}}})
    assert (status, answer["name"]) == (404, "G2P_BATCH_NOT_FOUND")
    status, body = await other.get("/g2p/batches")
    assert msgspec.json.decode(body) == {"batches": []}
    # A path's transaction id has the bodies' grammar.
    status, body = await programme.get("/g2p/batches/%2e%2e/summary")
    assert status == 400 and msgspec.json.decode(body)["name"] == "VALIDATION_ERROR"


async def test_callers_of_the_wrong_kind_and_without_a_key(world):
    bank, programme = world.clients["bank-a"], world.clients["programme"]
    before = {name: world.balance(name) for name in world.ids}
    status, answer = await bank.post("/disburse", disburse_body(
        "x", [("a", world.fa("bank-c", "a1"), "1.00")]))
    assert (status, answer["name"]) == (403, "G2P_NOT_A_PROGRAMME")
    status, answer = await programme.post("/mapper/sync/link", link_body(
        "l", [("l1", VALID_ID, world.fa("programme", "acc"))]))
    assert (status, answer["name"]) == (403, "G2P_NOT_A_PROGRAMME")
    status, answer = await bank.post("/mapper/sync/resolve", {
        "header": header("resolve", 1), "message": {"transaction_id": "r", "resolve_request": [
            {"reference_id": "x", "timestamp": "2026-12-04T10:00:00Z",
             "id": f"{VALID_ID}@nid"}]}})
    assert (status, answer["name"]) == (403, "G2P_NOT_A_PROGRAMME")
    # A bank may link only its own accounts.
    status, answer = await bank.post("/mapper/sync/link", link_body(
        "l", [("l1", VALID_ID, world.fa("bank-c", "acc"))]))
    assert answer["message"]["link_response"][0]["status_reason_code"] == "rjct.fa.invalid"
    status, body = await world.clients["programme"].get("/g2p/batches")
    world.clients["programme"].api_key = "not-a-key-at-all"
    status, answer = await programme.post("/disburse", disburse_body(
        "x", [("a", world.fa("bank-c", "a1"), "1.00")]))
    assert status == 401
    await _no_money_moved(world, before)
