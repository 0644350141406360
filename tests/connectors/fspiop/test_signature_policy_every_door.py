"""A participant's security policy holds on every door, whichever connector's table declared
it (issue 18.5): an FSPIOP participant registered with a key at run time, or an ISO 20022
bank with `signature_required`, cannot pay unsigned over the stream (its Hello needs mTLS +
key) or the HTTP API (no key there to check a signature: refused), and nothing is recorded.
A participant without such a policy is unaffected."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from connectors.fspiop.app import FspiopParticipant
from connectors.sdk import SdkError
from connectors.sdk.stream_client import StreamClient
from switch.testing import onboard, start_test_server

from fspiop_helpers import hub, rsa_pair


async def assert_doors_refuse(server, participant_id: int, api_key: str) -> None:
    refused = server.stream_server.protocol_errors.get("MTLS_REQUIRED", 0)
    with pytest.raises(SdkError, match="MTLS_REQUIRED"):
        await StreamClient.connect("127.0.0.1", server.stream_port, api_key=api_key,
                                   reconnect=False)
    assert server.stream_server.protocol_errors["MTLS_REQUIRED"] == refused + 1
    assert not any(connection.participant_id == participant_id
                   for connection in server.stream_server.connections)
    body = msgspec.json.encode({
        "transfer_id": "policy-1", "payee": {"participant_id": 99, "account_ref": "acc"},
        "amount": {"currency": "KES", "amount_minor": 100}})
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"http://127.0.0.1:{server.http_port}/transfers", content=body,
                                 headers={"authorization": f"Bearer {api_key}",
                                          "content-type": "application/json"})
    assert answer.status_code == 401 and answer.json()["name"] == "INVALID_SIGNATURE", \
        answer.text
    assert server.core.transfers_retained == 0


async def test_an_fspiop_policy_registered_at_run_time_holds_on_the_stream_and_http(tmp_path):
    server, banks, _ = await hub(tmp_path, server={"http_enabled": True, "http": {"port": 0}})
    try:
        payer_id, payer_key = banks["payerfsp"]
        # Before its registration with a key: no policy, the stream accepts its key.
        client = await StreamClient.connect("127.0.0.1", server.stream_port, api_key=payer_key,
                                            reconnect=False)
        await client.close()
        _, public = rsa_pair()
        server.fspiop_connector.set_participant(FspiopParticipant(
            participant_id=payer_id, fsp_id="payerfsp", endpoint="http://127.0.0.1:9",
            public_key_pem=public.decode()))  # signature_required defaults to True
        await assert_doors_refuse(server, payer_id, payer_key)
        # Another participant, no policy: the stream still takes its key.
        other = await StreamClient.connect("127.0.0.1", server.stream_port,
                                           api_key=banks["streambank"][1], reconnect=False)
        assert other.participant_id == banks["streambank"][0]
        await other.close()
    finally:
        await server.stop(drain_s=0)


async def test_an_iso20022_bank_policy_holds_on_the_stream_and_http(tmp_path):
    _, public = rsa_pair()
    server = await start_test_server(
        str(tmp_path / "data"), http_enabled=True, http={"port": 0}, iso20022_enabled=True,
        iso20022={"port": 0, "switch_member_id": "PONTEXXX", "banks": [
            {"participant_id": 1, "member_id": "BANKAXXX", "endpoint_url": "http://127.0.0.1:9",
             "public_key_pem": public.decode(), "signature_required": True}]})
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        await assert_doors_refuse(server, *participants["bank_a"])
        other = await StreamClient.connect("127.0.0.1", server.stream_port,
                                           api_key=participants["bank_b"][1], reconnect=False)
        await other.close()
    finally:
        await server.stop(drain_s=0)
