"""A prepare waiting for its FSPIOP payee survives a SIGKILL of the switch process.

A real switch process (switch.launcher.SwitchProcess, durable journal) with the FSPIOP hub:
the payer DFSP's signed prepare reaches the payee DFSP, which holds it unanswered; the
switch is killed with SIGKILL and started again. The credit request the switch re-sends
must reach the payee as the payer's original prepare, bytes and signature unchanged (the
payee verifies the payer, not the hub), and the payee's fulfilment must then commit it."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid

import pytest

from connectors.fspiop import jws
from connectors.fspiop.dfsp import Dfsp
from connectors.http.jws import VerifyKey
from fspiop_helpers import PAYEE_MSISDN, PAYEE_NATIONAL_ID, rsa_pair
from switch.launcher import SwitchProcess, free_port, onboard_population, sim_server_config

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
FUNDING_MINOR = 10**9


def _balances(switch: SwitchProcess) -> dict[int, tuple[int, int]]:
    """participant -> (posted balance, debits still reserved) in KES."""
    return {row["participant_id"]: (
        row["accounts"]["KES"]["credits_posted"] - row["accounts"]["KES"]["debits_posted"],
        row["accounts"]["KES"]["debits_pending"]) for row in switch.get("/admin/participants")}


async def _register_payee(payee: Dfsp) -> None:
    path = f"/participants/MSISDN/{PAYEE_MSISDN}"
    waiting = payee.expect(path)
    answer = await payee.send("POST", path, {"fspId": payee.fsp_id, "currency": "KES",
                                             "extensionList": {"extension": [
                                                 {"key": "ownerNationalId",
                                                  "value": PAYEE_NATIONAL_ID},
                                                 {"key": "displayName",
                                                  "value": "Alice Andrade"}]}},
                              resource="participants")
    assert answer.status == 202, answer
    received = await asyncio.wait_for(waiting, 20)
    assert json.loads(received.body) == {"fspId": payee.fsp_id}


async def test_a_prepare_held_by_the_payee_survives_a_sigkill(tmp_path):
    hub_private, _hub_public = rsa_pair()
    (tmp_path / "hub.pem").write_bytes(hub_private)
    (tmp_path / "ilp-secret").write_bytes(secrets.token_bytes(32))
    fspiop_port = free_port()
    switch = SwitchProcess(sim_server_config(str(tmp_path / "switch"), fspiop_enabled=True,
                                             fspiop={
        "port": fspiop_port, "hub_fsp_id": "ponte",
        "signing_key_path": str(tmp_path / "hub.pem"),
        "ilp_secret_path": str(tmp_path / "ilp-secret")}))
    url = f"http://127.0.0.1:{fspiop_port}"
    dfsps: list[Dfsp] = []
    try:
        await asyncio.to_thread(switch.start)
        banks = await asyncio.to_thread(
            onboard_population, switch, [("payerfsp", "bank"), ("payeefsp", "bank")], "KES",
            404, FUNDING_MINOR, {"payee_timeout_ms": 120_000})
        payer_private, payer_public = rsa_pair()
        payee_private, payee_public = rsa_pair()
        payer = Dfsp("payerfsp", url, banks["payerfsp"]["api_key"], payer_private)
        payee = Dfsp("payeefsp", url, banks["payeefsp"]["api_key"], payee_private,
                     parties={("MSISDN", PAYEE_MSISDN): "Alice A."}, fulfil=False)
        dfsps += [payer, payee]
        for dfsp, public in ((payer, payer_public), (payee, payee_public)):
            await dfsp.start()
            await asyncio.to_thread(
                switch.set_fspiop_participant, banks[dfsp.fsp_id]["participant_id"],
                dfsp.fsp_id, dfsp.endpoint, public.decode())
        await _register_payee(payee)
        before = await asyncio.to_thread(_balances, switch)
        # The payer: quote, prepare (answered 202: journaled and stored); the payee gets
        # the prepare and holds it.
        transfer_id, quote_id = str(uuid.uuid4()), str(uuid.uuid4())
        quoted = payer.expect(f"/quotes/{quote_id}")
        party = {"partyIdType": "MSISDN", "partyIdentifier": PAYEE_MSISDN,
                 "fspId": "payeefsp"}
        answer = await payer.send("POST", "/quotes", payer.quote_body(
            party, "25", "KES", transfer_id, quote_id), resource="quotes",
            destination="payeefsp")
        assert answer.status == 202, answer
        quote = json.loads((await asyncio.wait_for(quoted, 20)).body)
        payment = payer.expect(f"/transfers/{transfer_id}")
        prepared = payee.expect("/transfers")
        answer = await payer.send("POST", "/transfers", payer.prepare_body(
            transfer_id, "payeefsp", quote, expires_in_s=120), resource="transfers",
            destination="payeefsp")
        assert answer.status == 202, answer
        first = await asyncio.wait_for(prepared, 20)
        prepare = json.loads(first.body)
        assert prepare["transferId"] == transfer_id
        resent = payee.expect("/transfers")
        await asyncio.to_thread(switch.kill)
        await asyncio.to_thread(switch.start)  # replay; the console re-registers the DFSPs
        again = await asyncio.wait_for(resent, 30)
        # The payer's own prepare, bytes and signature unchanged: the payee verifies the
        # payer with the payer's key.
        assert again.body == first.body
        for name in (b"fspiop-signature", b"fspiop-source", b"fspiop-uri", b"date",
                     b"fspiop-http-method", b"fspiop-destination"):
            assert again.headers.get(name) == first.headers.get(name), name
        jws.verify(again.headers, again.body, VerifyKey(payer_public), method=b"POST",
                   uri=b"/transfers")
        fulfilment = payee.quotes[transfer_id]
        answer = await payee.send("PUT", f"/transfers/{transfer_id}", {
            "fulfilment": fulfilment, "completedTimestamp": prepare["expiration"],
            "transferState": "COMMITTED"}, resource="transfers", destination="payerfsp")
        assert answer.status == 200, answer
        fulfil = json.loads((await asyncio.wait_for(payment, 60)).body)
        assert fulfil["transferState"] == "COMMITTED"
        assert fulfil["fulfilment"] == fulfilment
        after = await asyncio.to_thread(_balances, switch)
        payer_id = banks["payerfsp"]["participant_id"]
        payee_id = banks["payeefsp"]["participant_id"]
        assert after[payer_id] == (before[payer_id][0] - 2500, 0)
        assert after[payee_id] == (before[payee_id][0] + 2500, 0)
    finally:
        for dfsp in dfsps:
            await dfsp.close()
        await asyncio.to_thread(switch.stop)
