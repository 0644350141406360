"""A switch with the Mobile Money hub, a stream bank, and test wallets serving their side
of the GSMA API — every exchange Ponte serves or sends checked against the spec."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid

import msgspec

from connectors.http.client import ConnectionPool
from connectors.http.server import HttpServer, Request, Response
from connectors.mobilemoney.config import WalletSettings
from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.core.messages import AliasRegistration
from switch.testing import onboard, start_test_server
import gsma_spec

# Hub routes that are not GSMA operations (Ponte's own): not checked against the spec.
NOT_GSMA = ("/oauth/token", "/callbacks/")


def new_id() -> str:
    return str(uuid.uuid4())


class TestWallet:
    """The wallet side of the API as Ponte calls it, and the receiver of Ponte's callbacks
    (at /cb/...). `mode` decides credits: "accept", "reject", "silent", "polling",
    "late" (completes after `late_s`)."""

    def __init__(self, name: str, customers: set[str]) -> None:
        self.name = name
        self.customers = customers
        self.mode = "accept"
        self.late_s = 0.0
        self.server: HttpServer | None = None
        self.credits: dict[str, dict] = {}  # server id -> {"customer", "amount", "status"}
        self.received: list[tuple[str, str, dict, bytes]] = []  # Ponte's requests
        self.callbacks: dict[str, list[dict]] = {}  # correlation id -> bodies Ponte PUT
        self.callback_event = asyncio.Event()
        self.reversals: list[str] = []
        self.pool: ConnectionPool | None = None
        self.hub_key = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def start(self) -> None:
        self.server = HttpServer(self.handle)
        await self.server.start("127.0.0.1", 0)

    def handle(self, request: Request) -> Response:
        path = request.path.decode()
        headers = {k.decode(): v.decode() for k, v in request.headers.items()}
        self.received.append((request.method.decode(), path, headers, request.body))
        if path.startswith("/cb/"):
            return self._callback(request, path, headers)
        # Everything else is Ponte calling the wallet's API: check it against the spec.
        gsma_spec.validate_request(request.method.decode(), path, headers,
                                   request.body or None)
        segments = path.strip("/").split("/")
        if segments[0] == "accounts":
            if segments[2] not in self.customers:
                return Response(404, b'{"errorCategory":"identification","errorCode":'
                                     b'"identifierError"}')
            return Response(200, b'{"name":{"fullName":"A Holder"}}')
        if segments[:2] == ["transactions", "type"]:
            return self._credit(request, headers)
        if segments[0] == "requeststates":
            credit = self.credits.get(segments[1])
            return Response(200, json.dumps(self._state(segments[1], credit)).encode())
        if segments[0] == "transactions" and segments[-1] == "reversals":
            self.reversals.append(segments[1])
            return Response(202, json.dumps({"serverCorrelationId": new_id(),
                                             "status": "completed",
                                             "notificationMethod": "polling"}).encode())
        return Response(404, b"{}")

    def _state(self, server_id: str, credit: dict) -> dict:
        state = {"serverCorrelationId": server_id, "status": credit["status"],
                 "notificationMethod": "polling", "objectReference": credit["reference"]}
        if credit["status"] == "failed":
            state["error"] = {"errorCategory": "businessRule", "errorCode": "requestDeclined"}
        return state

    def _credit(self, request: Request, headers: dict) -> Response:
        body = json.loads(request.body)
        server_id = new_id()
        credit = {"customer": body["creditParty"][0]["value"], "amount": body["amount"],
                  "status": "pending", "reference": f"{self.name}-{len(self.credits) + 1}"}
        self.credits[server_id] = credit
        if self.mode == "reject":
            return Response(400, b'{"errorCategory":"businessRule","errorCode":'
                                 b'"requestDeclined"}')
        callback = headers.get("x-callback-url")
        if self.mode == "polling":
            credit["status"] = "completed"
            return Response(202, json.dumps({"serverCorrelationId": server_id,
                                             "status": "pending",
                                             "notificationMethod": "polling"}).encode())
        if self.mode in ("accept", "late") and callback:
            delay = self.late_s if self.mode == "late" else 0.0
            asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(
                self._complete(callback, credit, headers)))
        return Response(202, json.dumps({"serverCorrelationId": server_id, "status": "pending",
                                         "notificationMethod": "callback"}).encode())

    async def _complete(self, callback: str, credit: dict, headers: dict) -> None:
        credit["status"] = "completed"
        body = json.dumps({"amount": credit["amount"], "currency": "KES", "type": "transfer",
                           "transactionReference": credit["reference"],
                           "transactionStatus": "completed",
                           "debitParty": [{"key": "organisationid", "value": "1"}],
                           "creditParty": [{"key": "accountid", "value": credit["customer"]}]
                           }).encode()
        origin, _, path = callback.partition("//")[2].partition("/")
        pool = ConnectionPool(callback.split("/callbacks/")[0])
        try:
            await pool.request(b"PUT", b"/callbacks/" + callback.split("/callbacks/")[1].encode(),
                               body, ((b"x-api-key", self.hub_key.encode()),))
        finally:
            await pool.close()

    def _callback(self, request: Request, path: str, headers: dict) -> Response:
        correlation_id = path.rsplit("/", 1)[1]
        body = json.loads(request.body)
        assert headers.get("x-content-hash") == hashlib.sha256(request.body).hexdigest()
        self.callbacks.setdefault(correlation_id, []).append(body)
        self.callback_event.set()
        return Response(204)

    async def callback_for(self, correlation_id: str, timeout_s: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while correlation_id not in self.callbacks:
            if time.monotonic() > deadline:
                raise AssertionError(f"no callback for {correlation_id}")
            self.callback_event.clear()
            try:
                await asyncio.wait_for(self.callback_event.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        return self.callbacks[correlation_id][-1]


class Hub:
    """The switch, its hub's URL and the participants of a test."""

    def __init__(self, server, participants, wallets: dict[str, TestWallet], bank) -> None:
        self.server = server
        self.participants = participants
        self.wallets = wallets
        self.bank = bank
        self.connector = server.mobilemoney_connector
        self.url = f"http://127.0.0.1:{self.connector.port}"
        self.pool = ConnectionPool(self.url, connections_max=2, timeout_ms=30_000)
        self.served: list[tuple[str, str, int]] = []  # (method, template, status) checked

    def key(self, name: str) -> str:
        return self.participants[name][1]

    def id(self, name: str) -> int:
        return self.participants[name][0]

    async def call(self, method: str, path: str, body=None, *, wallet: str = "walleta",
                   headers: dict | None = None, correlation_id: str | None = None,
                   callback: bool = True, raw: bytes | None = None, key: str | None = None
                   ) -> tuple[int, object, dict]:
        """One request to the hub; the answer checked against the spec. (status, JSON, headers)"""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"x-api-key": key if key is not None else self.key(wallet),
                "x-date": "2024-05-01T12:00:00.000Z"}
        if correlation_id is not None:
            sent["x-correlationid"] = correlation_id
        if callback and correlation_id is not None and method == "POST":
            sent["x-callback-url"] = f"{self.wallets[wallet].url}/cb/{correlation_id}"
        if data is not None:
            sent["x-content-hash"] = hashlib.sha256(data).hexdigest()
        sent.update(headers or {})
        response = await self.pool.request(method.encode(), path.encode(), data, tuple(
            (k.encode(), v.encode()) for k, v in sent.items()))
        answer = json.loads(response.body) if response.body else None
        if not path.startswith(NOT_GSMA):
            template = gsma_spec.validate_response(method, path, response.status,
                                                   response.body)
            self.served.append((method, template, response.status))
        return response.status, answer, {k.decode(): v.decode()
                                         for k, v in response.headers.items()}

    async def close(self) -> None:
        await self.pool.close()
        await self.bank.close()
        for wallet in self.wallets.values():
            await wallet.server.close(500)
        await self.server.stop(drain_s=0)


async def start_hub(data_dir: str, *, rules=None, wallet_settings: dict | None = None,
                    **server_options) -> Hub:
    """`server_options`: more ServerConfig fields (the HTTP connector, for one)."""
    server = await start_test_server(data_dir, mobilemoney_enabled=True,
                                     mobilemoney={"port": 0}, **server_options)
    participants = await onboard(server, ["bank", "walleta", "walletb"], rules=rules)
    wallets = {"walleta": TestWallet("walleta", {"a-cust-1", "a-cust-2"}),
               "walletb": TestWallet("walletb", {"b-cust-1", "b-cust-2"})}
    for name, wallet in wallets.items():
        await wallet.start()
        wallet.hub_key = participants[name][1]
        settings = {"participant_id": participants[name][0], "api_url": wallet.url,
                    **(wallet_settings or {}).get(name, {})}
        server.mobilemoney_connector.set_wallet(msgspec.convert(settings, WalletSettings))
    bank_credits = []
    bank = await StreamClient.connect("127.0.0.1", server.stream_port,
                                      api_key=participants["bank"][1],
                                      on_credit_request=lambda credit: (
                                          bank_credits.append(credit) or Decision(True)))
    bank.credits = bank_credits
    # Aliases: the wallets' customers are loaded into the directory at onboarding (as an
    # operator's directory import would); the bank registers its own over the stream.
    await bank.register_aliases([AliasRegistration(
        alias_type="MSISDN", alias_value="+254700000100", account_ref="bank-cust-1",
        owner_national_id="1000000100", display_name="Bank Customer")])
    for name, prefix, number in (("walleta", "a", 200), ("walletb", "b", 300)):
        for index in (1, 2):
            answer = await server.gateway.register_alias(
                participants[name][0], alias_type="MSISDN",
                alias_value=f"+2547000{number + index:05d}", account_ref=f"{prefix}-cust-{index}",
                owner_national_id=f"{1000000000 + number + index}",
                display_name=f"Wallet Customer {prefix}{index}")
            assert int(answer.result) == 0, answer
    return Hub(server, participants, wallets, bank)


def msisdn(wallet: str, index: int) -> str:
    return f"+2547000{(200 if wallet == 'walleta' else 300) + index:05d}"


def payment(creditor: str, amount: str = "15.5", debtor: str = "a-cust-1") -> dict:
    return {"amount": amount, "currency": "KES",
            "debitParty": [{"key": "accountid", "value": debtor}],
            "creditParty": [{"key": "msisdn", "value": creditor}],
            "descriptionText": "lunch", "requestDate": "2024-05-01T12:00:00.000Z",
            "requestingOrganisationTransactionReference": "order-1"}
