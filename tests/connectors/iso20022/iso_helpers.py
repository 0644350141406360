"""A real switch (core, ledger, durable file journal, directory, sequencer) with the ISO
20022 connector and the HTTP connector in front; banks 1 and 2 speak ISO 20022
(`connectors.iso20022.bank.Bank`: real HTTP endpoints that validate every message they get
against the XSDs), participant 3 speaks HTTP/JSON through the SDK. Nothing is mocked."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
from pki_helpers import Pki

from connectors.http.app import HttpConnector, HttpConnectorConfig
from connectors.iso20022.bank import Bank, agent, envelope, new_id, now_text, today
from connectors.iso20022.connector import BankConfig, Iso20022Config, Iso20022Connector
from connectors.iso20022.transport import DeliveryPolicy
from connectors.sdk.http_client import HttpClient, ParticipantHandler
from switch.app import start_switch
from switch.core.messages import (
    CurrencyAdded,
    FundsDeposited,
    ParticipantAccountOpened,
    ParticipantAdded,
    SchemeRules,
)
from switch.core.results import Result, SettlementModel
from switch.directory.config import DirectoryConfig
from switch.server.config import ServerConfig
from switch.store.iso20022_state import FileStateLog

CURRENCY = "BRL"
FUNDING_MINOR = 1_000_000_000
SWITCH = "PONTE"
MEMBER_A = "BANKA001"
MEMBER_B = "BANKB002"
ALIAS_B = "+5511987650001"  # bank B's customer
ALIAS_A = "+5511987650002"  # bank A's customer
ALIAS_C = "+5511987650003"  # the HTTP participant's customer
SAMPLES = os.path.join(os.path.dirname(__file__), "samples")


class Recorder(ParticipantHandler):
    def __init__(self, decision=True) -> None:
        self.decision = decision
        self.credit_requests = []
        self.outcomes = []

    def on_credit_request(self, message):
        self.credit_requests.append(message)
        return self.decision

    def on_transfer_outcome(self, message):
        self.outcomes.append(message)

    def on_refused(self, message):
        self.outcomes.append(message)


async def eventually(predicate, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


def sample(name: str, **values) -> bytes:
    """A sample message from samples/, its {PLACEHOLDERS} filled (ids, times, members)."""
    with open(os.path.join(SAMPLES, name), encoding="utf-8") as file:
        text = file.read()
    defaults = {"NOW": now_text(), "TODAY": today(), "MSG": new_id(), "BIZ": new_id("B"),
                "UETR": str(uuid.uuid4()), "SWITCH": SWITCH, "LATER": now_text(120), "A": MEMBER_A, "B": MEMBER_B}
    defaults.update(values)
    for key, value in defaults.items():
        text = text.replace("{" + key + "}", str(value))
    assert "{" not in text.replace("{urn", ""), text[text.index("{"):][:40]
    return text.encode()


class Iso:
    def __init__(self, server, connector, http, bank_a, bank_b, client_c, handler_c):
        self.server = server
        self.connector = connector
        self.http = http
        self.a = bank_a
        self.b = bank_b
        self.c = client_c
        self.c_handler = handler_c

    def position(self, participant_id: int) -> dict:
        return self.server.positions()[participant_id][CURRENCY]

    def check_valid(self) -> None:
        assert self.a.invalid == [], self.a.invalid
        assert self.b.invalid == [], self.b.invalid


async def _participant(server, participant_id: int, callback_url: str = "") -> str:
    name = f"participant-{participant_id}"
    await server.credentials.put_participant(participant_id, name, "bank", callback_url)
    for event in (ParticipantAdded(request_id=f"p-{participant_id}",
                                   participant_id=participant_id, name=name),
                  ParticipantAccountOpened(request_id=f"a-{participant_id}",
                                           participant_id=participant_id, currency=CURRENCY),
                  FundsDeposited(request_id=f"f-{participant_id}",
                                 participant_id=participant_id, currency=CURRENCY,
                                 amount_minor=FUNDING_MINOR)):
        answer = await server.gateway.admin(event)
        assert answer.result is Result.OK, answer
    return await server.credentials.issue_key(participant_id)


async def _alias(server, participant_id: int, alias: str, account: str) -> None:
    answer = await server.gateway.register_alias(
        participant_id, alias_type="MSISDN", alias_value=alias, account_ref=account,
        owner_national_id="52998224725", display_name="Maria Silva")
    assert answer.result is Result.OK, answer


@pytest.fixture
async def iso(tmp_path, request):
    """Options (indirect parametrisation): payee_timeout_ms; tls (HTTPS with client
    certificates both ways, `iso.pki`); bank_a (BankConfig fields for bank A);
    signing_key_pem (the switch signs its deliveries with it)."""
    options = getattr(request, "param", {})
    directory = DirectoryConfig(participant_categories={str(n): "A" for n in range(1, 10)})
    server = await start_switch(ServerConfig(data_dir=str(tmp_path), stream_enabled=False,
                                             admin_enabled=False, directory=directory))
    rules = SchemeRules(payee_timeout_ms=options.get("payee_timeout_ms", 10_000))
    await server.gateway.admin(CurrencyAdded(
        request_id="currency", currency=CURRENCY, ledger_id=986,
        settlement_model=SettlementModel.PREFUNDED_RTGS, rules=rules))
    pki = Pki(tmp_path, ("switch", "bank_a", "bank_b", "stranger")) if options.get(
        "tls") else None
    bank_a = Bank(MEMBER_A, SWITCH)
    bank_b = Bank(MEMBER_B, SWITCH)
    await bank_a.start(pki.server("bank_a") if pki else None)
    await bank_b.start(pki.server("bank_b") if pki else None)
    tls = {}
    if pki is not None:
        tls = dict(tls_cert=pki.path("switch"), tls_key=pki.path("switch"),
                   tls_client_ca=pki.ca, client_cert=pki.path("switch"),
                   client_key=pki.path("switch"), endpoint_ca=pki.ca)
    if "signing_key_pem" in options:
        (tmp_path / "switch-signing.pem").write_bytes(options["signing_key_pem"])
        tls["signing_key_path"] = str(tmp_path / "switch-signing.pem")
    bank_a_options = {"notifications": ("camt.054",), **options.get("bank_a", {})}
    config = Iso20022Config(
        port=0, switch_member_id=SWITCH, validate_outbound=True, **tls,
        banks=(BankConfig(participant_id=1, member_id=MEMBER_A,
                          endpoint_url=bank_a.endpoint_url, **bank_a_options),
               BankConfig(participant_id=2, member_id=MEMBER_B,
                          endpoint_url=bank_b.endpoint_url, other_member_ids=("BANKBRSPXXX",))),
        delivery=DeliveryPolicy(backoff_ms_min=10, backoff_ms_max=40))
    key_a = await _participant(server, 1)
    key_b = await _participant(server, 2)
    connector = Iso20022Connector(server.gateway, config,
                                  FileStateLog(str(tmp_path / "iso20022")),
                                  FileStateLog(str(tmp_path / "iso20022"), "outbox.log"))
    await connector.start()
    http = HttpConnector(server.gateway, HttpConnectorConfig(port=0))
    await http.start()
    handler_c = Recorder()
    client_c = HttpClient(f"http://127.0.0.1:{http.port}", "", handler=handler_c)
    callback = await client_c.start_receiver()
    client_c.api_key = await _participant(server, 3, callback)
    await client_c.connect()
    switch_url = f"{'https' if pki else 'http'}://127.0.0.1:{connector.port}"
    bank_a.connect(switch_url, key_a, ssl=pki.client("bank_a") if pki else None)
    bank_b.connect(switch_url, key_b, ssl=pki.client("bank_b") if pki else None)
    await _alias(server, 2, ALIAS_B, "ACC-B-1")
    await _alias(server, 1, ALIAS_A, "ACC-A-1")
    await _alias(server, 3, ALIAS_C, "ACC-C-1")
    running = Iso(server, connector, http, bank_a, bank_b, client_c, handler_c)
    running.pki = pki
    running.keys = {1: key_a, 2: key_b}
    running.switch_url = switch_url
    yield running
    await client_c.close()
    await bank_a.close()
    await bank_b.close()
    await connector.close(grace_ms=200)
    await http.close(grace_ms=200)
    await server.stop(drain_s=0.2)


__all__ = ["Pki", "agent", "envelope", "new_id", "now_text", "today"]
