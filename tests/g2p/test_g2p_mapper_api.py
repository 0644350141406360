"""The G2P Connect mapper API and the disbursement search, over real HTTP on a running
switch: resolve (sync, and async with the on-resolve callback received by the programme's
own callback server), update, unlink, the mapper's txn/status and /disburse/search. A link
older than the one held is refused; so is one stamped beyond the clock's skew in the
future, which would otherwise lock the beneficiary in at one bank for good. And the engine
gives way to live payments, and counts it (ponte_g2p_pacing_yields_total)."""

from __future__ import annotations

import datetime
import time

import msgspec
import pytest

from switch.directory import limits as directory_limits
from switch.directory import mapper
from switch.directory.types import DirectoryResult, Rejection
from tests.g2p.g2p_helpers import World, disburse_body, header, until

IDS = {n: f"{7_000_000_100 + n}" for n in range(1, 10)}
_REQUEST_KEYS = {"link": "link_request", "update": "update_request",
                 "unlink": "unlink_request", "resolve": "resolve_request"}


@pytest.fixture
async def world(tmp_path):
    running = await World().start(str(tmp_path))
    yield running
    await running.close()


def stamp(offset_s: float = 0.0) -> str:
    """RFC 3339 for now + offset_s: the links' own time, relative to the switch's clock."""
    moment = (datetime.datetime.now(datetime.timezone.utc)
              + datetime.timedelta(seconds=offset_s))
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def mapper_body(action: str, transaction_id: str, items: list[dict]) -> dict:
    return {"header": header(action, len(items)), "message": {
        "transaction_id": transaction_id, _REQUEST_KEYS[action]: items}}


def link_item(reference: str, national_id: str, fa: str, offset_s: float = -60.0) -> dict:
    return {"reference_id": reference, "timestamp": stamp(offset_s),
            "id": f"{national_id}@nid", "fa": fa}


def unlink_item(reference: str, national_id: str) -> dict:
    return {"reference_id": reference, "timestamp": stamp(), "id": f"{national_id}@nid"}


def resolve_item(reference: str, national_id: str, scope: str = "details") -> dict:
    return {"reference_id": reference, "timestamp": stamp(), "id": f"{national_id}@nid",
            "scope": scope}


def untimed(items: list[dict]) -> list[dict]:
    """Items without their `timestamp` (each answer stamps its own time)."""
    return [{key: value for key, value in item.items() if key != "timestamp"}
            for item in items]


def callbacks(world: World, name: str, path: str, transaction_id: str) -> list[dict]:
    return [body for got, body in world.recorders[name].received
            if got == path and body["message"].get("transaction_id") == transaction_id]


async def link(world: World, name: str, transaction_id: str, items: list[dict]) -> list[dict]:
    status, answer = await world.clients[name].post(
        "/mapper/sync/link", mapper_body("link", transaction_id, items))
    assert status == 200, answer
    return answer["message"]["link_response"]


async def resolved(world: World, national_id: str) -> dict:
    """What the programme is told about one national ID (scope details)."""
    status, answer = await world.clients["programme"].post("/mapper/sync/resolve", mapper_body(
        "resolve", f"check-{time.time_ns()}", [resolve_item("q", national_id)]))
    assert status == 200, answer
    (item,) = answer["message"]["resolve_response"]
    return item


async def test_resolve_sync_and_async_with_the_on_resolve_callback(world):
    (linked,) = await link(world, "bank-a", "link-1",
                           [link_item("l1", IDS[1], world.fa("bank-a", "acc-1"))])
    assert linked["status"] == "succ", linked
    programme = world.clients["programme"]
    items = [resolve_item("q1", IDS[1]), resolve_item("q2", IDS[2]),
             resolve_item("q3", IDS[1], scope="yes_no")]
    status, answer = await programme.post("/mapper/sync/resolve",
                                          mapper_body("resolve", "res-1", items))
    assert status == 200, answer
    assert answer["header"]["action"] == "on-resolve"
    by_reference = {item["reference_id"]: item for item in
                    answer["message"]["resolve_response"]}
    assert by_reference["q1"]["status_reason_code"] == "succ.id.active"
    assert by_reference["q1"]["fa"] == world.fa("bank-a", "acc-1")
    assert by_reference["q1"]["account_provider_info"] == {
        "code": str(world.ids["bank-a"]), "name": "bank-a"}
    assert by_reference["q2"]["status_reason_code"] == "succ.id.not_found"
    assert "fa" not in by_reference["q2"]
    # yes_no says whether the person is linked, not where.
    assert by_reference["q3"]["status_reason_code"] == "succ.id.active"
    assert "fa" not in by_reference["q3"] and "account_provider_info" not in by_reference["q3"]
    assert IDS[1].encode() not in msgspec.json.encode(answer)  # the ID is never echoed

    # The asynchronous form: an Ack now, the same answer at <callback URL>/mapper/on-resolve.
    status, ack = await programme.post("/mapper/resolve", mapper_body("resolve", "res-2", items))
    assert status == 200 and ack["message"]["ack_status"] == "ACK", ack
    await until(lambda: callbacks(world, "programme", "/mapper/on-resolve", "res-2"))
    (callback,) = callbacks(world, "programme", "/mapper/on-resolve", "res-2")
    assert callback["header"]["action"] == "on-resolve"
    assert callback["header"]["receiver_id"] == "test"  # the request's sender_id
    assert callback["message"]["correlation_id"] == ack["message"]["correlation_id"]
    assert untimed(callback["message"]["resolve_response"]) == untimed(
        answer["message"]["resolve_response"])


async def test_update_moves_the_link_and_unlink_removes_only_ones_own(world):
    bank, wallet = world.clients["bank-a"], world.clients["wallet-b"]
    (linked,) = await link(world, "bank-a", "link-3",
                           [link_item("l3", IDS[3], world.fa("bank-a", "acc-3"), -120)])
    assert linked["status"] == "succ", linked
    # The beneficiary moves to the wallet (asynchronous update): the latest link wins.
    status, ack = await wallet.post("/mapper/update", mapper_body(
        "update", "upd-3", [link_item("u3", IDS[3], world.fa("wallet-b", "w-3"), -60)]))
    assert status == 200 and ack["message"]["ack_status"] == "ACK", ack
    await until(lambda: callbacks(world, "wallet-b", "/mapper/on-update", "upd-3"))
    (callback,) = callbacks(world, "wallet-b", "/mapper/on-update", "upd-3")
    (updated,) = callback["message"]["update_response"]
    assert (updated["reference_id"], updated["status"], updated["fa"]) == (
        "u3", "succ", world.fa("wallet-b", "w-3"))
    assert callback["message"]["correlation_id"] == ack["message"]["correlation_id"]
    assert (await resolved(world, IDS[3]))["fa"] == world.fa("wallet-b", "w-3")
    # The bank it left is told, with the old fa.
    await until(lambda: callbacks(world, "bank-a", "/mapper/on-unlink", "moved-out"))
    (notice,) = callbacks(world, "bank-a", "/mapper/on-unlink", "moved-out")
    (moved,) = notice["message"]["unlink_response"]
    assert moved["status_reason_message"] == "moved_out"
    assert {"name": "fa", "value": world.fa("bank-a", "acc-3")} in moved["additional_info"]

    # The bank no longer holds the link: its unlink is refused, exactly as for an ID nobody
    # holds (an unlink tells no bank where someone else banks), and changes nothing.
    status, answer = await bank.post("/mapper/sync/unlink", mapper_body(
        "unlink", "unl-a", [unlink_item("x1", IDS[3]), unlink_item("x2", IDS[9])]))
    assert status == 200, answer
    assert answer["header"]["action"] == "on-unlink"
    refusals = untimed(answer["message"]["unlink_response"])
    assert refusals == [
        {"reference_id": "x1", "status": "rjct", "status_reason_message": "not_linked_by_you"},
        {"reference_id": "x2", "status": "rjct", "status_reason_message": "not_linked_by_you"}]
    assert (await resolved(world, IDS[3]))["fa"] == world.fa("wallet-b", "w-3")

    # The holder unlinks (asynchronously): Ack, on-unlink at its callback, and it is gone.
    status, ack = await wallet.post("/mapper/unlink", mapper_body(
        "unlink", "unl-w", [unlink_item("x3", IDS[3])]))
    assert status == 200 and ack["message"]["ack_status"] == "ACK", ack
    await until(lambda: callbacks(world, "wallet-b", "/mapper/on-unlink", "unl-w"))
    (callback,) = callbacks(world, "wallet-b", "/mapper/on-unlink", "unl-w")
    assert untimed(callback["message"]["unlink_response"]) == [
        {"reference_id": "x3", "status": "succ"}]
    assert (await resolved(world, IDS[3]))["status_reason_code"] == "succ.id.not_found"


def status_query(txn_type: str, transaction_id: str) -> dict:
    return {"header": header("txn-status", 1), "message": {
        "transaction_id": f"st-{time.time_ns()}", "txnstatus_request": {
            "reference_id": "s1", "txn_type": txn_type, "attribute_type": "transaction_id",
            "attribute_value": transaction_id}}}


async def test_mapper_txn_status_answers_a_transaction_again(world):
    bank = world.clients["bank-a"]
    linked = await link(world, "bank-a", "link-t", [
        link_item("t1", IDS[4], world.fa("bank-a", "acc-4")),
        link_item("t2", "12", world.fa("bank-a", "acc-5"))])  # not a national ID
    assert [(item["status"], item.get("status_reason_code")) for item in linked] == [
        ("succ", None), ("rjct", "rjct.id.invalid")]
    status, answer = await bank.post("/mapper/sync/txn/status", status_query("link", "link-t"))
    assert status == 200, answer
    response = answer["message"]["txnstatus_response"]
    assert response["txn_type"] == "on-link"
    assert response["txn_status"] == {"transaction_id": "link-t", "link_response": linked}

    # Asynchronously: the same answer at <callback URL>/mapper/txn/on-status.
    status, ack = await bank.post("/mapper/txn/status", status_query("link", "link-t"))
    assert status == 200 and ack["message"]["ack_status"] == "ACK", ack
    await until(lambda: any(path == "/mapper/txn/on-status"
                            for path, _ in world.recorders["bank-a"].received))
    (callback,) = [body for path, body in world.recorders["bank-a"].received
                   if path == "/mapper/txn/on-status"]
    assert callback["message"]["correlation_id"] == ack["message"]["correlation_id"]
    assert callback["message"]["txnstatus_response"]["txn_status"] == response["txn_status"]

    # A transaction is its sender's: another participant, or another action, finds nothing.
    for client, txn_type in ((world.clients["wallet-b"], "link"), (bank, "unlink")):
        status, answer = await client.post("/mapper/sync/txn/status",
                                           status_query(txn_type, "link-t"))
        assert (status, answer["name"]) == (404, "G2P_BATCH_NOT_FOUND"), answer
    status, answer = await bank.post("/mapper/sync/txn/status",
                                     status_query("disburse", "link-t"))
    assert (status, answer["name"]) == (400, "VALIDATION_ERROR"), answer


def criterion(reference: str, attribute_type: str, value: str) -> dict:
    return {"reference_id": reference, "request_type": "disburse",
            "attribute_type": attribute_type, "attribute_value": value}


async def test_disburse_search_finds_the_programmes_rows_by_payee(world):
    (linked,) = await link(world, "bank-a", "link-5",
                           [link_item("l5", IDS[5], world.fa("bank-a", "acc-5"))])
    assert linked["status"] == "succ", linked
    programme = world.clients["programme"]
    status, answer = await programme.post("/disburse/sync/disburse", disburse_body(
        "search-batch", [("s1", f"{IDS[5]}@nid", "5.00"),
                         ("s2", world.fa("bank-c", "acc-9"), "7.00"),
                         ("s3", f"{IDS[5]}@nid", "1.50")]))
    assert status == 200, answer
    assert await world.server.g2p_engine.wait_idle(30)
    criteria = [criterion("c1", "payee_fa", f"{IDS[5]}@nid"),
                criterion("c2", "payee_fa", world.fa("bank-c", "acc-9")),
                criterion("c3", "payer_fa", "treasury@gov"),
                criterion("c4", "payee_fa", f"{IDS[6]}@nid")]
    body = {"header": header("search", len(criteria)),
            "message": {"transaction_id": "find-1", "search_criteria": criteria}}
    status, answer = await programme.post("/disburse/sync/search", body)
    assert status == 200, answer
    assert answer["header"]["action"] == "on-search"
    found = {item["reference_id"]: item for item in answer["message"]["disbursements_status"]}

    def rows(reference: str) -> list[tuple]:
        return [(row["transaction_id"], row["reference_id"], row["status"], row["amount"],
                 row["currency_code"]) for row in found[reference]["disbursements"]]

    assert found["c1"]["status"] == "succ"
    assert rows("c1") == [("search-batch", "s1", "succ", "5.00", "KES"),
                          ("search-batch", "s3", "succ", "1.50", "KES")]
    assert rows("c2") == [("search-batch", "s2", "succ", "7.00", "KES")]
    assert (found["c3"]["status"], found["c3"]["status_reason_code"]) == (
        "rjct", "rjct.srch_payer_fa.invalid")
    assert (found["c4"]["status"], rows("c4")) == ("succ", [])
    assert IDS[5].encode() not in msgspec.json.encode(answer)

    # Asynchronously: Ack, then the same rows at <callback URL>/disburse/on-search.
    status, ack = await programme.post("/disburse/search", body)
    assert status == 200 and ack["message"]["ack_status"] == "ACK", ack
    await until(lambda: callbacks(world, "programme", "/disburse/on-search", "find-1"))
    (callback,) = callbacks(world, "programme", "/disburse/on-search", "find-1")
    assert callback["message"]["correlation_id"] == ack["message"]["correlation_id"]
    assert [untimed(item.get("disbursements", [])) for item in
            callback["message"]["disbursements_status"]] == [
        untimed(item.get("disbursements", [])) for item in
        answer["message"]["disbursements_status"]]
    # Another programme searching the same payee finds none of these rows.
    status, other = await world.clients["programme-2"].post("/disburse/sync/search", body)
    assert status == 200, other
    assert [item.get("disbursements", []) for item in other["message"]["disbursements_status"]
            ] == [[], [], [], []]


async def test_a_link_older_than_the_one_held_is_refused(world):
    (linked,) = await link(world, "bank-a", "link-6",
                           [link_item("l6", IDS[6], world.fa("bank-a", "acc-6"), -60)])
    assert linked["status"] == "succ", linked
    (stale,) = await link(world, "wallet-b", "link-6b",
                          [link_item("l6b", IDS[6], world.fa("wallet-b", "w-6"), -3600)])
    assert (stale["status"], stale["status_reason_code"], stale["status_reason_message"]) == (
        "rjct", "rjct.timestamp.invalid", "mapper_link_stale")
    assert (await resolved(world, IDS[6]))["fa"] == world.fa("bank-a", "acc-6")
    # Newer than the one held, it takes over: the order is by the links' own time.
    (fresh,) = await link(world, "wallet-b", "link-6c",
                          [link_item("l6c", IDS[6], world.fa("wallet-b", "w-6"), -30)])
    assert fresh["status"] == "succ", fresh
    assert (await resolved(world, IDS[6]))["fa"] == world.fa("wallet-b", "w-6")


async def test_a_link_stamped_in_the_future_is_refused_and_locks_nobody_in(world):
    """A link dated a year ahead would make every later link by another bank stale: the
    beneficiary locked in there. Beyond the clock skew (MAPPER_LINK_AHEAD_MS_MAX) it is
    refused with the spec's code, and nothing is stored."""
    skew_s = directory_limits.MAPPER_LINK_AHEAD_MS_MAX / 1_000
    far, just_past = await link(world, "bank-a", "link-7", [
        link_item("l7", IDS[7], world.fa("bank-a", "acc-7"), 365 * 24 * 3600),
        link_item("l8", IDS[8], world.fa("bank-a", "acc-8"), skew_s + 120)])
    for refused in (far, just_past):
        assert (refused["status"], refused.get("status_reason_code")) == (
            "rjct", "rjct.timestamp.invalid"), refused
    assert (await resolved(world, IDS[7]))["status_reason_code"] == "succ.id.not_found"
    assert (await resolved(world, IDS[8]))["status_reason_code"] == "succ.id.not_found"
    # Another bank links the same person now: accepted, nobody is locked in.
    (moved,) = await link(world, "wallet-b", "link-7b",
                          [link_item("l7b", IDS[7], world.fa("wallet-b", "w-7"), 0)])
    assert moved["status"] == "succ", moved
    assert (await resolved(world, IDS[7]))["fa"] == world.fa("wallet-b", "w-7")
    # A clock a little ahead of the switch's (within the skew) is still served.
    (ahead,) = await link(world, "bank-c", "link-8",
                          [link_item("l8c", IDS[8], world.fa("bank-c", "acc-8"), 60)])
    assert ahead["status"] == "succ", ahead


def test_the_mapper_rule_bounds_a_links_timestamp_by_the_clock():
    now_ns = 1_800_000_000 * 10**9
    skew_ns = directory_limits.MAPPER_LINK_AHEAD_MS_MAX * 10**6
    token = bytes(32)
    refused, notices = mapper.link(None, token, "bank-a", "acc-1", now_ns + skew_ns + 1,
                                   now_ns)
    assert refused == Rejection(result=DirectoryResult.FIELD_MALFORMED, field="timestamp_ns")
    assert notices == []
    held, _ = mapper.link(None, token, "bank-a", "acc-1", now_ns + skew_ns, now_ns)
    assert held.linked_ns == now_ns + skew_ns
    # Within the skew, a link held is still superseded by a later one, as ever.
    moved, notices = mapper.link(held, token, "wallet-b", "w-1", now_ns + skew_ns + 1,
                                 now_ns + 1)
    assert moved.participant_id == "wallet-b" and len(notices) == 1
