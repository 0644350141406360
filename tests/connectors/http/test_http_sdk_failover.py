"""The SDK's HttpClient with several base URLs: it talks to the first that answers, and
when its switch goes away it moves to the standby that took over and resends open
transfers with the same bodies; each is decided exactly once. Real primary and standby
servers (HTTP connector on) on one PostgreSQL database, real callback receivers."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.sdk.http_client import HttpClient, ParticipantHandler
from switch.admin.bootstrap import add_currency, add_participant
from switch.app import take_over
from switch.core.messages import AliasRegistration, Party, TransferOutcome, TransferRequest
from switch.core.results import TransferState
from switch.launcher import free_port
from switch.testing import start_test_server, start_test_standby

pytestmark = pytest.mark.postgres

ALIAS = Party(alias_type="MSISDN", alias_value="+254700000001")
SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


def config(dsn: str, http_port: int) -> dict:
    return {"journal": "postgres", "store": "postgres", "postgres_dsn": dsn, **SECRETS,
            "standby_poll_interval_ms": 20, "stream_enabled": False,
            "http_enabled": True, "http": {"port": http_port}}


class Payee(ParticipantHandler):
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.credit_requests: list[str] = []

    async def on_credit_request(self, message):
        self.credit_requests.append(message.transfer_id)
        await self.release.wait()
        return True


async def test_open_transfers_finish_once_on_the_standby_after_the_primary_goes(
        tmp_path, postgres_dsn):
    primary_port, standby_port = free_port(), free_port()
    primary = await start_test_server(str(tmp_path / "primary"),
                                      **config(postgres_dsn, primary_port))
    standby = await start_test_standby(str(tmp_path / "standby"),
                                       **config(postgres_dsn, standby_port))
    following = asyncio.ensure_future(take_over(standby))
    urls = [f"http://127.0.0.1:{primary_port}", f"http://127.0.0.1:{standby_port}"]
    clients = []
    try:
        await add_currency(primary, "KES", 404)
        payee_handler = Payee()
        payee = HttpClient(urls, "", handler=payee_handler, attempts_max=30)
        payer = HttpClient(urls, "", handler=ParticipantHandler(), attempts_max=30)
        clients += [payee, payer]
        made = {}
        for name, client in (("bank_a", payer), ("bank_b", payee)):
            created = await add_participant(primary, name, "bank", ["KES"],
                                            callback_url=await client.start_receiver(),
                                            funding_minor=10**12)
            client.api_key = created.api_key
            await client.connect()
            made[name] = created.participant_id
        answer = await payee.register_aliases([AliasRegistration(
            alias_type="MSISDN", alias_value=ALIAS.alias_value, account_ref="acc-1",
            owner_national_id="1234567890", display_name="Jane Doe")])
        assert answer.registered == 1
        count = 10
        futures = [payer.submit_transfer(TransferRequest(
            transfer_id=f"h-{i}", payee=ALIAS, amount_minor=100 + i, currency="KES",
            expires_at_ns=time.time_ns() + 60 * 10**9, payer_user_ref="u1"))
            for i in range(count)]
        for _ in range(500):
            if (len(set(payee_handler.credit_requests)) == count
                    and standby.core.in_flight_count == count):
                break
            await asyncio.sleep(0.01)
        assert standby.core.in_flight_count == count
        # A transfer sent while the primary is going away is resent to the standby.
        await primary.stop(drain_s=0)
        late = payer.submit_transfer(TransferRequest(
            transfer_id="h-late", payee=ALIAS, amount_minor=7, currency="KES",
            expires_at_ns=time.time_ns() + 60 * 10**9, payer_user_ref="u1"))
        await asyncio.wait_for(following, 20)
        payee_handler.release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*futures, late), 60)
        assert all(type(o) is TransferOutcome and o.state is TransferState.COMMITTED
                   for o in outcomes), outcomes
        assert payer.base_url == urls[1]
        total_minor = sum(100 + i for i in range(count)) + 7
        positions = standby.positions()
        assert positions[made["bank_a"]]["KES"]["debits_posted"] == total_minor
        assert positions[made["bank_b"]]["KES"]["credits_posted"] == 10**12 + total_minor
        assert (await payer.status(made["bank_a"], "h-0")).state is TransferState.COMMITTED
    finally:
        for client in clients:
            await client.close()
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await primary.stop(drain_s=0)
        await standby.stop(drain_s=0)


async def test_a_client_starts_on_the_first_base_url_that_answers(tmp_path):
    port = free_port()
    server = await start_test_server(str(tmp_path), stream_enabled=False, http_enabled=True,
                                     http={"port": port})
    try:
        await add_currency(server, "KES", 404)
        created = await add_participant(server, "bank_a", "bank", ["KES"])
        client = HttpClient([f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{port}"],
                            created.api_key)
        await client.connect()
        assert client.participant_id == created.participant_id
        assert client.base_url == f"http://127.0.0.1:{port}"
        await client.close()
        with pytest.raises(ValueError):
            HttpClient([], "key")
    finally:
        await server.stop(drain_s=0)
