"""A small FSPIOP DFSP in Python: what the tests and `ponte bench fspiop` play the banks with.

`Dfsp` signs its requests as Mojaloop's SDK does (RS256 `FSPIOP-Signature` binding URI,
method, source, destination and date), sends them pipelined on keep-alive connections to the
hub, and serves the hub's requests and callbacks on its own endpoint. As a payee it answers
like the SDK: the party lookup from its table, the quote with an ILP packet and the
condition `SHA-256(HMAC(secret, packet))`, the prepare with the fulfilment. Everything it
receives is kept (bounded) so a test can look at it, and every callback resolves the future
a payer waits on. It is a test and benchmark tool, not a production DFSP: it trusts the hub.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import time
import uuid
from collections import deque

import msgspec

from connectors.fspiop import ilp, jws, wire
from connectors.http.client import ConnectionPool
from connectors.http.jws import Signer
from connectors.http.server import HttpServer, Request, Response

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder()
RECEIVED_KEPT_MAX = 10_000


class Received(msgspec.Struct, frozen=True):
    method: str
    path: str
    headers: dict
    body: bytes


class Dfsp:
    """One DFSP. `parties`: {(party type, identifier): display name} it holds as payee."""

    def __init__(self, fsp_id: str, hub_url: str, api_key: str, signing_key_pem: bytes | None,
                 *, ilp_secret: bytes = b"dfsp-secret", parties: dict | None = None,
                 reject_quotes: bool = False, fulfil: bool = True,
                 transfer_state: str = "COMMITTED", connections: int = 4,
                 fulfil_secret: bytes | None = None) -> None:
        self.fsp_id = fsp_id
        self.hub_url = hub_url
        self.api_key = api_key
        self.signer = Signer(signing_key_pem, "RS256") if signing_key_pem else None
        self.ilp_secret = ilp_secret
        self.parties = parties or {}
        self.reject_quotes = reject_quotes
        self.fulfil = fulfil
        self.transfer_state = transfer_state
        # Set: fulfil prepares with this secret instead of the quote's (a wrong fulfilment).
        self.fulfil_secret = fulfil_secret
        self.connections = connections
        self.received: deque[Received] = deque(maxlen=RECEIVED_KEPT_MAX)
        self.waiters: dict[str, asyncio.Future] = {}  # callback path -> future
        self.quotes: dict[str, str] = {}  # transactionId -> fulfilment (as payee)
        self.server: HttpServer | None = None
        self.pool: ConnectionPool | None = None
        self.answers_sent = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        self.server = HttpServer(self._handle)
        await self.server.start("127.0.0.1", port)
        self.pool = ConnectionPool(self.hub_url, connections_max=self.connections,
                                   in_flight_per_connection_max=256, timeout_ms=30_000)
        return self.endpoint

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.server is not None:
            await self.server.close(grace_ms=100)

    # -- requests to the hub -----------------------------------------------------------

    def headers(self, method: str, path: str, resource: str, body: bytes | None,
                destination: str = "", *, sign: bool = True, source: str = "") -> list:
        date = email.utils.formatdate(usegmt=True)
        source = source or self.fsp_id
        media = f"application/vnd.interoperability.{resource}+json;version=1.1"
        headers = [(b"content-type", media.encode()), (b"date", date.encode()),
                   (b"fspiop-source", source.encode()),
                   (b"authorization", b"Bearer " + self.api_key.encode())]
        if destination:
            headers.append((b"fspiop-destination", destination.encode()))
        if method != "PUT":
            headers.append((b"accept", f"application/vnd.interoperability.{resource}+json;"
                                       "version=1".encode()))
        if sign and self.signer is not None and body is not None:
            headers += [(b"fspiop-uri", path.encode()), (b"fspiop-http-method", method.encode()),
                        (b"fspiop-signature", jws.sign(self.signer, body, method=method,
                                                       uri=path, source=source,
                                                       destination=destination, date=date))]
        return headers

    def send(self, method: str, path: str, payload=None, *, resource: str,
             destination: str = "", headers: list | None = None, sign: bool = True):
        """Send one request (pipelined); a future of the hub's synchronous answer."""
        body = None if payload is None else (payload if isinstance(payload, bytes)
                                             else _encode(payload))
        if headers is None:
            headers = self.headers(method, path, resource, body, destination, sign=sign)
        return asyncio.ensure_future(self.pool.request(method.encode(), path.encode(), body,
                                                       tuple(headers)))

    def expect(self, path: str) -> asyncio.Future:
        """A future of the next request the hub sends to `path` (a callback)."""
        future = self.waiters.get(path)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self.waiters[path] = future
        return future

    # -- a payment as payer: lookup, quote, transfer -----------------------------------

    def quote_body(self, payee: dict, amount: str, currency: str, transaction_id: str,
                   quote_id: str) -> dict:
        return {"quoteId": quote_id, "transactionId": transaction_id,
                "payee": {"partyIdInfo": payee},
                "payer": {"partyIdInfo": {"partyIdType": "MSISDN",
                                          "partyIdentifier": "254711000000",
                                          "fspId": self.fsp_id}},
                "amountType": "SEND", "amount": {"currency": currency, "amount": amount},
                "transactionType": {"scenario": "TRANSFER", "initiator": "PAYER",
                                    "initiatorType": "CONSUMER"}}

    def prepare_body(self, transfer_id: str, payee_fsp: str, quote: dict,
                     expires_in_s: float = 30) -> dict:
        return {"transferId": transfer_id, "payeeFsp": payee_fsp, "payerFsp": self.fsp_id,
                "amount": quote["transferAmount"], "ilpPacket": quote["ilpPacket"],
                "condition": quote["condition"],
                "expiration": wire.time_text(time.time_ns() + int(expires_in_s * 1e9))}

    async def pay(self, party_type: str, identifier: str, amount: str, currency: str,
                  timeout_s: float = 20) -> tuple[dict, dict]:
        """Lookup, quote and transfer; (the PUT /transfers body, {step: latency s})."""
        started = time.perf_counter()
        party_path = f"/parties/{party_type}/{identifier}"
        party_future = self.expect(party_path)
        answer = await self.send("GET", party_path, resource="parties")
        assert answer.status == 202, answer
        party = _decode.decode((await asyncio.wait_for(party_future, timeout_s)).body)
        payee = party["party"]["partyIdInfo"]
        transaction_id = str(uuid.uuid4())
        quote_id = str(uuid.uuid4())
        quote_future = self.expect(f"/quotes/{quote_id}")
        answer = await self.send("POST", "/quotes", self.quote_body(
            payee, amount, currency, transaction_id, quote_id), resource="quotes",
            destination=payee["fspId"])
        assert answer.status == 202, answer
        quote = _decode.decode((await asyncio.wait_for(quote_future, timeout_s)).body)
        transfer_future = self.expect(f"/transfers/{transaction_id}")
        answer = await self.send("POST", "/transfers", self.prepare_body(
            transaction_id, payee["fspId"], quote), resource="transfers",
            destination=payee["fspId"])
        assert answer.status == 202, answer
        received = await asyncio.wait_for(transfer_future, timeout_s)
        return _decode.decode(received.body), {"total_s": time.perf_counter() - started}

    # -- the hub's requests to us ------------------------------------------------------

    def _handle(self, request: Request):
        path = request.path.decode()
        received = Received(request.method.decode(), path, dict(request.headers),
                            request.body)
        self.received.append(received)
        future = self.waiters.pop(path, None)
        if future is not None and not future.done():
            future.set_result(received)
        if request.method == b"GET" and path.startswith("/parties/"):
            self._answer_party(request, path)
        elif request.method == b"POST" and path == "/quotes":
            self._answer_quote(request)
        elif request.method == b"POST" and path == "/transfers":
            self._answer_prepare(request)
        return Response(202 if request.method in (b"POST", b"GET") else 200, b"")

    def _reply(self, request: Request, method: str, path: str, payload, resource: str) -> None:
        destination = request.headers.get(b"fspiop-source", b"").decode()
        self.answers_sent += 1
        self.send(method, path, payload, resource=resource, destination=destination)

    def _answer_party(self, request: Request, path: str) -> None:
        _, _, party_type, identifier = path.split("/")[:4]
        name = self.parties.get((party_type, identifier))
        if name is None:
            self._reply(request, "PUT", path + "/error", {"errorInformation": {
                "errorCode": "3204", "errorDescription": "Party not found"}}, "parties")
            return
        self._reply(request, "PUT", path, {"party": {"partyIdInfo": {
            "partyIdType": party_type, "partyIdentifier": identifier, "fspId": self.fsp_id},
            "name": name}}, "parties")

    def _answer_quote(self, request: Request) -> None:
        quote = _decode.decode(request.body)
        path = f"/quotes/{quote['quoteId']}"
        if self.reject_quotes:
            self._reply(request, "PUT", path + "/error", {"errorInformation": {
                "errorCode": "5101", "errorDescription": "Payee rejected quote"}}, "quotes")
            return
        money = msgspec.convert(quote["amount"], wire.Money)
        transaction = {"transactionId": quote["transactionId"], "quoteId": quote["quoteId"],
                       "payee": quote["payee"], "payer": quote["payer"],
                       "amount": quote["amount"], "transactionType": quote["transactionType"]}
        info = quote["payee"]["partyIdInfo"]
        packet = ilp.transaction_packet(transaction, wire.amount_minor(money), self.fsp_id,
                                        info["partyIdType"], info["partyIdentifier"])
        fulfilment = sdk_fulfilment(self.ilp_secret, packet)
        self.quotes[quote["transactionId"]] = fulfilment
        self._reply(request, "PUT", path, {
            "transferAmount": quote["amount"], "payeeReceiveAmount": quote["amount"],
            "expiration": wire.time_text(time.time_ns() + 60 * 10**9), "ilpPacket": packet,
            "condition": ilp.condition_of(fulfilment)}, "quotes")

    def _answer_prepare(self, request: Request) -> None:
        if not self.fulfil:
            return
        prepare = _decode.decode(request.body)
        fulfilment = self.quotes.pop(prepare["transferId"], None) or sdk_fulfilment(
            self.ilp_secret, prepare["ilpPacket"])
        if self.fulfil_secret is not None:
            fulfilment = sdk_fulfilment(self.fulfil_secret, prepare["ilpPacket"])
        self._reply(request, "PUT", f"/transfers/{prepare['transferId']}", {
            "fulfilment": fulfilment, "completedTimestamp": wire.time_text(time.time_ns()),
            "transferState": self.transfer_state}, "transfers")


def sdk_fulfilment(secret: bytes, packet: str) -> str:
    """The SDK's `calculateFulfil`: HMAC-SHA256 keyed by base64(secret) over the packet."""
    key = base64.b64encode(secret)
    return ilp.b64url(hmac.new(key, packet.encode("ascii"), hashlib.sha256).digest())
