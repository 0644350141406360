"""FSPIOP participants (FSP id, endpoint, JWS key) managed through the admin surface: a
maker-checker `fspiop_participant` proposal, audited, applied to the running hub without a
restart, and applied again at the next start (it replaces the configuration's entry)."""

from __future__ import annotations

import json

import pytest

from connectors.fspiop.dfsp import Dfsp
from connectors.http.jws import Signer
from fspiop_helpers import (
    PAYEE_MSISDN,
    balances,
    hub,
    pending_total,
    register_payee,
    rsa_pair,
)
from switch.admin.service import Caller
from switch.admin.types import (
    AdminRefusal,
    AdminResult,
    Decision,
    FspiopParticipantProposal,
    Role,
)
from switch.console.server_port import bootstrap_operators
from switch.testing import start_test_server

pytestmark = pytest.mark.asyncio
OPERATORS = (("alice", "admin"), ("ada", "admin"), ("vic", "viewer"))


def _caller(name: str, role: str) -> Caller:
    return Caller(name, Role[role.upper()], "test")


async def _approved(service, body) -> None:
    proposal = await service.propose(_caller("alice", "admin"), body)
    assert proposal.state == "pending"
    done = await service.decide(_caller("ada", "admin"), proposal.proposal_id,
                                Decision(approve=True))
    assert done.state == "executed", done


def _code(response) -> str:
    return json.loads(response.body)["errorInformation"]["errorCode"]


async def test_keys_and_endpoints_through_maker_checker_without_a_restart(tmp_path):
    server, banks, _ = await hub(tmp_path, server={"console_enabled": True,
                                                   "console_port": 0})
    service = server.console.service
    await bootstrap_operators(service, OPERATORS, "test")
    connector = server.fspiop_connector
    url = f"http://127.0.0.1:{connector.port}"
    first_private, first_public = rsa_pair()
    payee_private, payee_public = rsa_pair()
    payer = Dfsp("payerfsp", url, banks["payerfsp"][1], first_private)
    payee = Dfsp("payeefsp", url, banks["payeefsp"][1], payee_private,
                 parties={("MSISDN", PAYEE_MSISDN): "Alice A."})
    dfsps = (payer, payee)
    try:
        for dfsp in dfsps:
            await dfsp.start()
        # Not on the hub yet: refused.
        answer = await payer.send("GET", f"/parties/MSISDN/{PAYEE_MSISDN}", resource="parties")
        assert answer.status == 403
        # A viewer may not propose; nothing changes.
        with pytest.raises(AdminRefusal) as caught:
            await service.propose(_caller("vic", "viewer"), FspiopParticipantProposal(
                participant_id=banks["payerfsp"][0], fsp_id="payerfsp",
                endpoint=payer.endpoint, public_key_pem=first_public.decode()))
        assert caught.value.result is AdminResult.ROLE_INSUFFICIENT
        assert banks["payerfsp"][0] not in connector.dfsps
        # An unusable key is refused when proposed, before a checker is asked.
        with pytest.raises(AdminRefusal) as caught:
            await service.propose(_caller("alice", "admin"), FspiopParticipantProposal(
                participant_id=banks["payerfsp"][0], fsp_id="payerfsp",
                endpoint=payer.endpoint, public_key_pem="-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                                       "-----END PUBLIC KEY-----\n"))
        assert caught.value.result is AdminResult.VALIDATION_ERROR
        # Proposed by one admin, approved by another: on the hub at once.
        await _approved(service, FspiopParticipantProposal(
            participant_id=banks["payerfsp"][0], fsp_id="payerfsp", endpoint=payer.endpoint,
            public_key_pem=first_public.decode()))
        await _approved(service, FspiopParticipantProposal(
            participant_id=banks["payeefsp"][0], fsp_id="payeefsp", endpoint=payee.endpoint,
            public_key_pem=payee_public.decode()))
        # Another participant's FSP id is refused when proposed.
        with pytest.raises(AdminRefusal) as caught:
            await service.propose(_caller("alice", "admin"), FspiopParticipantProposal(
                participant_id=banks["streambank"][0], fsp_id="payerfsp"))
        assert caught.value.result is AdminResult.VALIDATION_ERROR
        await register_payee(server, banks["payeefsp"][0], "+" + PAYEE_MSISDN)
        before = balances(server, banks)
        fulfil, _ = await payer.pay("MSISDN", PAYEE_MSISDN, "3", "KES")
        assert fulfil["transferState"] == "COMMITTED"
        # The payer's key is rotated through a proposal: its next signed request verifies
        # with the new key, and one signed with the old key is refused.
        second_private, second_public = rsa_pair()
        await _approved(service, FspiopParticipantProposal(
            participant_id=banks["payerfsp"][0], fsp_id="payerfsp", endpoint=payer.endpoint,
            public_key_pem=second_public.decode()))
        old = await payer.send("POST", "/quotes", payer.quote_body(
            {"partyIdType": "MSISDN", "partyIdentifier": PAYEE_MSISDN, "fspId": "payeefsp"},
            "1", "KES", "a1b2c3d4-0000-4000-8000-000000000001",
            "a1b2c3d4-0000-4000-8000-000000000002"), resource="quotes",
            destination="payeefsp")
        assert old.status == 401 and _code(old) == "3105"
        payer.signer = Signer(second_private, "RS256")
        fulfil, _ = await payer.pay("MSISDN", PAYEE_MSISDN, "4", "KES")
        assert fulfil["transferState"] == "COMMITTED"
        after = balances(server, banks)
        assert after["payerfsp"] == before["payerfsp"] - 700
        assert after["payeefsp"] == before["payeefsp"] + 700
        assert pending_total(server) == 0
        # Every step is on the audit record, the key rotation included.
        records = await service.audit_page(limit=50)
        proposed = [json.loads(r.detail) for r in records if r.action == "proposal.propose"]
        assert sum(detail["kind"] == "fspiop_participant" for detail in proposed) == 3
        assert any(r.action == "proposal.fspiop_participant" and r.result == "ROLE_INSUFFICIENT"
                   and r.actor == "vic" for r in records)
        payer_endpoint = payer.endpoint
    finally:
        for dfsp in dfsps:
            await dfsp.close()
        await server.stop(drain_s=0)
    # A new process on the same data directory: the operators' settings come back (over
    # the configuration's bootstrap entry, which names the first key).
    restarted = await start_test_server(
        str(tmp_path / "data"), fspiop_enabled=True, console_enabled=True, console_port=0,
        fspiop={"port": 0, "hub_fsp_id": "ponte", "participants": [{
            "participant_id": banks["payerfsp"][0], "fsp_id": "payerfsp",
            "endpoint": "http://127.0.0.1:9/", "public_key_pem": first_public.decode()}]})
    try:
        dfsp = restarted.fspiop_connector.dfsps[banks["payerfsp"][0]]
        assert dfsp.endpoint == payer_endpoint
        assert dfsp.key.key.public_numbers() == Signer(
            second_private, "RS256").key.public_key().public_numbers()
        assert restarted.fspiop_connector.dfsps[banks["payeefsp"][0]].fsp_id == "payeefsp"
    finally:
        await restarted.stop(drain_s=0)


async def test_ponte_participant_fspiop_proposes_and_a_second_admin_puts_it_on_the_hub(
        tmp_path):
    """The CLI door of the same proposal: `ponte participant fspiop` by one admin, `ponte
    admin approve` by another; a bad key file is refused before any checker sees it."""
    import asyncio
    import re

    from click.testing import CliRunner

    from switch.cli import main as ponte

    server, banks, _ = await hub(tmp_path, server={"console_enabled": True,
                                                   "console_port": 0})
    runner = CliRunner()

    def run(*argv: str, password: str = ""):
        return runner.invoke(ponte, list(argv), input=password + "\n" if password else None)

    try:
        created = await bootstrap_operators(server.console.service, OPERATORS, "test")
        sessions = {}
        for username, password, _role in created:
            sessions[username] = ["--session-file", str(tmp_path / f"{username}.json")]
            login = await asyncio.to_thread(
                run, "admin", "login", "--url", server.console.url, "--username", username,
                "--password-stdin", *sessions[username], password=password)
            assert login.exit_code == 0, login.output
        participant_id = banks["payeefsp"][0]
        _private, public = rsa_pair()
        key_file = tmp_path / "payee.pem"
        key_file.write_bytes(public)
        bad_file = tmp_path / "bad.pem"
        bad_file.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")

        refused = await asyncio.to_thread(
            run, "participant", "fspiop", str(participant_id), "payeefsp",
            "--endpoint", "http://127.0.0.1:9/", "--public-key-file", str(bad_file),
            *sessions["alice"])
        assert refused.exit_code != 0 and "VALIDATION_ERROR" in refused.output
        viewer = await asyncio.to_thread(
            run, "participant", "fspiop", str(participant_id), "payeefsp", *sessions["vic"])
        assert viewer.exit_code != 0 and "ROLE_INSUFFICIENT" in viewer.output
        assert participant_id not in server.fspiop_connector.dfsps

        proposed = await asyncio.to_thread(
            run, "participant", "fspiop", str(participant_id), "payeefsp",
            "--endpoint", "http://127.0.0.1:9/", "--public-key-file", str(key_file),
            "--note", "joins the hub", *sessions["alice"])
        assert proposed.exit_code == 0, proposed.output
        (proposal_id,) = re.findall(r"proposed (p-[0-9a-f]{16})", proposed.output)
        assert participant_id not in server.fspiop_connector.dfsps  # not before approval
        approved = await asyncio.to_thread(run, "admin", "approve", proposal_id,
                                           *sessions["ada"])
        assert approved.exit_code == 0 and "executed" in approved.output, approved.output
        dfsp = server.fspiop_connector.dfsps[participant_id]
        assert (dfsp.fsp_id, dfsp.endpoint) == ("payeefsp", "http://127.0.0.1:9/")
    finally:
        await server.stop(drain_s=0)
