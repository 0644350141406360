"""Shared by the connector tests (fixtures re-exported by conftest.py): a real switch
(SwitchServer: core, ledger, durable file journal, directory, credentials, sequencer) with
the HTTP connector in front, and participants made of the SDK's `HttpClient` with real
callback receivers. Nothing is mocked."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.http.app import HttpConnector, HttpConnectorConfig
from connectors.sdk.http_client import HttpClient, ParticipantHandler
from switch.core.messages import (
    CurrencyAdded,
    FundsDeposited,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    TransferRequest,
)
from switch.core.results import Result, SettlementModel
from switch.directory.config import DirectoryConfig
from switch.server.config import ServerConfig
from switch.app import start_switch
from switch.server.server import SwitchServer

CURRENCY = "BRL"
FUNDING_MINOR = 1_000_000_000
PAYEE_ALIAS = Party(alias_type="MSISDN", alias_value="+5511987650001")
PAYER_ALIAS = Party(alias_type="MSISDN", alias_value="+5511987650002")


class Recorder(ParticipantHandler):
    """Records every inbound message; answers credit requests with `decision`."""

    def __init__(self, decision=True) -> None:
        self.decision = decision
        self.credit_requests = []
        self.outcomes = []
        self.refusals = []
        self.notices = []
        self.rtp_outcomes = []
        self.errors = []

    def on_credit_request(self, message):
        self.credit_requests.append(message)
        return self.decision

    def on_transfer_outcome(self, message):
        self.outcomes.append(message)

    def on_refused(self, message):
        self.refusals.append(message)

    def on_request_to_pay_notice(self, message):
        self.notices.append(message)
        return None

    def on_request_to_pay_outcome(self, message):
        self.rtp_outcomes.append(message)

    def on_error(self, message):
        self.errors.append(message)


async def eventually(predicate, seconds: float = 10.0) -> None:
    """Wait for something the switch does asynchronously (a callback arriving)."""
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def transfer(transfer_id: str, amount_minor: int = 1_000, payee: Party = PAYEE_ALIAS,
             **extra) -> TransferRequest:
    return TransferRequest(transfer_id=transfer_id, payee=payee, amount_minor=amount_minor,
                           currency=CURRENCY, expires_at_ns=time.time_ns() + 60 * 10**9,
                           payer_user_ref="user-1", **extra)


class Switch:
    """The running switch, its HTTP connector and helpers to onboard participants."""

    def __init__(self, server: SwitchServer, http: HttpConnector) -> None:
        self.server = server
        self.http = http
        self.base_url = f"http://127.0.0.1:{http.port}"
        self.clients: list[HttpClient] = []

    async def admin(self, event) -> None:
        answer = await self.server.gateway.admin(event)
        assert answer.result is Result.OK, answer

    async def participant(self, participant_id: int, handler: ParticipantHandler | None,
                          callback_url: str = "", **client_options) -> HttpClient:
        """Onboard a funded participant whose callbacks go to its SDK receiver (or to
        `callback_url`), and return its connected client."""
        client = HttpClient(self.base_url, "", handler=handler, **client_options)
        if client.handler is not None and not callback_url:
            callback_url = await client.start_receiver()
        name = f"participant-{participant_id}"
        await self.server.credentials.put_participant(participant_id, name, "bank",
                                                      callback_url)
        await self.admin(ParticipantAdded(request_id=f"p-{participant_id}",
                                          participant_id=participant_id, name=name))
        await self.admin(ParticipantAccountOpened(request_id=f"a-{participant_id}",
                                                  participant_id=participant_id,
                                                  currency=CURRENCY))
        await self.admin(FundsDeposited(request_id=f"f-{participant_id}",
                                        participant_id=participant_id, currency=CURRENCY,
                                        amount_minor=FUNDING_MINOR))
        client.api_key = await self.server.credentials.issue_key(participant_id)
        await client.connect()
        self.clients.append(client)
        return client

    def position(self, participant_id: int) -> dict:
        return self.server.positions()[participant_id][CURRENCY]


@pytest.fixture
async def switch(tmp_path):
    directory = DirectoryConfig(participant_categories={str(n): "A" for n in range(1, 10)})
    server = await start_switch(ServerConfig(data_dir=str(tmp_path), stream_enabled=False,
                                             admin_enabled=False, directory=directory))
    await server.gateway.admin(CurrencyAdded(
        request_id="currency", currency=CURRENCY, ledger_id=986,
        settlement_model=SettlementModel.PREFUNDED_RTGS))
    http = HttpConnector(server.gateway, HttpConnectorConfig(port=0))
    await http.start()
    running = Switch(server, http)
    yield running
    for client in running.clients:
        await client.close()
    await http.close(grace_ms=500)
    await server.stop(drain_s=0.5)


@pytest.fixture
async def payer_and_payee(switch):
    """Participant 1 (payer) and 2 (payee, holding PAYEE_ALIAS), both on HTTP callbacks."""
    payer_handler, payee_handler = Recorder(), Recorder()
    payer = await switch.participant(1, payer_handler)
    payee = await switch.participant(2, payee_handler)
    answer = await payee.register_alias(
        alias_type=PAYEE_ALIAS.alias_type, alias_value=PAYEE_ALIAS.alias_value,
        account_ref="payee-account-1", owner_national_id="52998224725",
        display_name="Maria Silva")
    assert answer.result is Result.OK
    return payer, payer_handler, payee, payee_handler
