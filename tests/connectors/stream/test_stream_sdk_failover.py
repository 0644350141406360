"""The SDK's StreamClient with several switch addresses: it connects to the first that
answers, and when its switch goes away it moves on to the standby that took over, resends
every open transfer and payee answer under the same ids, and each transfer is decided
exactly once. Real primary and standby servers on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.app import take_over
from switch.core.messages import AliasRegistration, Party, TransferOutcome, TransferRequest
from switch.core.results import TransferState
from switch.launcher import free_port
from switch.testing import onboard, start_test_server, start_test_standby

pytestmark = pytest.mark.postgres

ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


def backends(dsn: str) -> dict:
    return {"journal": "postgres", "store": "postgres", "postgres_dsn": dsn, **SECRETS,
            "standby_poll_interval_ms": 20}


async def test_connect_takes_the_first_address_that_answers(tmp_path):
    server = await start_test_server(str(tmp_path))
    try:
        participants = await onboard(server, ["bank_a"])
        dead_port = free_port()  # nothing listens there
        client = await StreamClient.connect(
            "127.0.0.1", dead_port, api_key=participants["bank_a"][1],
            fallback_addresses=[("127.0.0.1", server.stream_port)])
        assert client.participant_id == participants["bank_a"][0]
        assert (client.host, client.port) == ("127.0.0.1", server.stream_port)
        await client.close()
        with pytest.raises(OSError):
            await StreamClient.connect("127.0.0.1", dead_port, api_key="k",
                                       fallback_addresses=[("127.0.0.1", free_port())])
        with pytest.raises(ValueError):
            StreamClient("127.0.0.1", 1, fallback_addresses=[("127.0.0.1", 2)] * 16)
    finally:
        await server.stop(drain_s=0)


async def test_open_transfers_finish_once_on_the_standby_after_the_primary_goes(
        tmp_path, postgres_dsn):
    primary = await start_test_server(str(tmp_path / "primary"), **backends(postgres_dsn))
    standby_port = free_port()
    standby = await start_test_standby(str(tmp_path / "standby"), stream_port=standby_port,
                                       **backends(postgres_dsn))
    following = asyncio.ensure_future(take_over(standby))
    payer = payee = None
    try:
        participants = await onboard(primary, ["bank_a", "bank_b"])
        addresses = {"fallback_addresses": [("127.0.0.1", standby_port)]}
        release = asyncio.Event()
        credit_requests = []

        async def decide_later(credit_request):
            credit_requests.append(credit_request.transfer_id)
            await release.wait()
            return Decision(True)

        payee = await StreamClient.connect("127.0.0.1", primary.stream_port,
                                           api_key=participants["bank_b"][1],
                                           on_credit_request=decide_later, **addresses)
        answer = await payee.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
            owner_national_id="1234567890", display_name="Jane Doe")])
        assert answer.registered == 1
        payer = await StreamClient.connect("127.0.0.1", primary.stream_port,
                                           api_key=participants["bank_a"][1], **addresses)
        count = 20
        futures = [payer.submit_transfer(TransferRequest(
            transfer_id=f"t-{i}", payee=ALIAS, amount_minor=100 + i, currency="KES",
            expires_at_ns=time.time_ns() + 60 * 10**9, payer_user_ref="u1"))
            for i in range(count)]
        for _ in range(500):
            if len(set(credit_requests)) == count and standby.core.in_flight_count == count:
                break
            await asyncio.sleep(0.01)
        assert standby.core.in_flight_count == count  # the standby follows them
        # The primary goes away with every transfer in flight; the standby takes over.
        await primary.stop(drain_s=0)
        await asyncio.wait_for(following, 20)
        release.set()  # the payee decides now: its answers reach whichever switch is up
        outcomes = await asyncio.wait_for(asyncio.gather(*futures), 30)
        assert all(type(o) is TransferOutcome and o.state is TransferState.COMMITTED
                   for o in outcomes)
        assert (payer.host, payer.port) == ("127.0.0.1", standby_port)
        assert payer.reconnects >= 1 and payee.reconnects >= 1
        payer_id, payee_id = participants["bank_a"][0], participants["bank_b"][0]
        total_minor = sum(100 + i for i in range(count))
        positions = standby.positions()
        assert positions[payer_id]["KES"]["debits_posted"] == total_minor  # once each
        assert positions[payee_id]["KES"]["credits_posted"] == 10**12 + total_minor
        assert standby.core.in_flight_count == 0
    finally:
        for client in (payer, payee):
            if client is not None:
                await client.close()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await primary.stop(drain_s=0)
        await standby.stop(drain_s=0)
