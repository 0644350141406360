"""A simulated wallet that speaks only the GSMA Mobile Money API 1.1.2 to Ponte.

It serves the wallet side of the API (what Ponte calls for the credits it sends: GET
.../accountname, POST /transactions/type/{type}, GET /requeststates/{id}, POST
/transactions/{ref}/reversals, and the PUT callbacks of its own payments) and calls the
hub for its customers' payments (POST /transactions/type/transfer with X-Callback-URL).
Its books (connectors/sim/books.py) follow the GSMA semantics: a credit is booked when the
wallet completes it, and un-booked if Ponte asks for its reversal (the switch did not
commit it). Its customers' aliases are loaded into the directory at setup (as an operator's
`ponte directory import` would for a real wallet); every payment, credit and lookup then
goes through the Mobile Money API.

`observer(direction, method, path, headers, body, status, response_body)` (optional) sees
every exchange: the tests validate each one against the spec. It must never read the
switch's state except through the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import uuid
from urllib.parse import unquote

import msgspec

from connectors.http.client import ConnectionPool, HttpClientError
from connectors.http.server import HttpServer, Request, Response
from connectors.sim.participant import SimOptions, SimParticipant
from switch.core.results import TransferState

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
PENDING_MAX = 20_000  # payments in flight before `room()` waits


def _date() -> str:
    now_ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ns // 10**9)) + \
        f".{now_ns // 10**6 % 1000:03d}Z"


def _error(category: str, code: str, description: str = "") -> bytes:
    return _encode({"errorCategory": category, "errorCode": code,
                    "errordescription": description, "errorDateTime": _date()})


class _Credit:
    __slots__ = ("reference", "customer", "amount_minor", "status", "server_id",
                 "payer", "transfer_id", "reversed")

    def __init__(self, reference: str, customer: str, amount_minor: int, server_id: str,
                 payer: int, transfer_id: str) -> None:
        self.reference = reference
        self.customer = customer
        self.amount_minor = amount_minor
        self.status = "pending"
        self.server_id = server_id
        self.payer = payer
        self.transfer_id = transfer_id
        self.reversed = False


class MobileMoneyWalletClient:
    """The wallet's side of the sim runner's client contract (`pending_transfers`,
    `pending_max`, `room()`, `connected`, `close()`), over the GSMA API."""

    def __init__(self, wallet: SimMobileMoneyWallet, pending_max: int) -> None:
        self.wallet = wallet
        self.pending_max = pending_max
        self.pending: dict[str, tuple] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._write_open = self._room  # the runner checks it like the stream client's
        self.connected = True
        self.participant_id = 0

    @property
    def pending_transfers(self) -> int:
        return len(self.pending)

    async def room(self) -> None:
        while len(self.pending) >= self.pending_max:
            self._room.clear()
            await self._room.wait()

    def freed(self) -> None:
        if len(self.pending) < self.pending_max:
            self._room.set()

    async def close(self) -> None:
        self.connected = False
        await self.wallet.stop()


class SimMobileMoneyWallet(SimParticipant):
    """A `SimParticipant` whose every payment and credit goes through the GSMA API."""

    def __init__(self, name: str, population, options: SimOptions,
                 opening_position_minor: int, *, hub_url: str, wallet_host: str = "127.0.0.1",
                 wallet_port: int = 0, observer=None) -> None:
        super().__init__(name, population, options, opening_position_minor)
        self.hub_url = hub_url.rstrip("/")
        self.wallet_host = wallet_host
        self.wallet_port = wallet_port
        self.observer = observer
        self.api_key = ""
        self.server: HttpServer | None = None
        self.pool: ConnectionPool | None = None
        self.credits: dict[str, _Credit] = {}  # server correlation id -> credit
        self.by_reference: dict[str, _Credit] = {}
        self.by_correlation: dict[str, _Credit] = {}
        self._references = itertools.count(1)
        self.reversals = 0
        self.callbacks_received = 0

    @property
    def api_url(self) -> str:
        return f"http://{self.wallet_host}:{self.server.port}"

    async def start_server(self) -> str:
        """Serve the wallet's API; its URL (register it as the wallet's api_url)."""
        if self.server is None:
            self.server = HttpServer(self._handle)
            await self.server.start(self.wallet_host, self.wallet_port)
        return self.api_url

    async def connect(self, host: str, port: int, api_key: str, **options) -> None:
        """`port` is the switch's stream port: used once, to load the customers' aliases
        into the directory (`register_aliases`); payments use the Mobile Money API only."""
        from connectors.sdk.stream_client import StreamClient

        self.api_key = api_key
        await self.start_server()
        self._stream = await StreamClient.connect(host, port, api_key=api_key,
                                                  client_name=f"sim:{self.name}:directory")
        self.books.participant_id = self._stream.participant_id
        self.pool = ConnectionPool(self.hub_url, connections_max=4,
                                   in_flight_per_connection_max=128, timeout_ms=30_000)
        self.client = MobileMoneyWalletClient(self, options.get("pending_max", PENDING_MAX))
        self.client.participant_id = self.books.participant_id

    async def register_aliases(self) -> dict:
        from connectors.sim.participant import registrations

        rows = []
        for customer in self.customers.values():
            rows.extend(registrations(customer, self.options.register_national_id))
        answer = await self._stream.register_aliases(rows)
        await self._stream.close()  # the directory is loaded: the stream is not used again
        return {"registered": answer.registered, "existing": answer.existing,
                "rejected": answer.rejected}

    async def stop(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.server is not None:
            await self.server.close(1_000)

    # -- payer side: POST /transactions/type/transfer -------------------------------------

    def _headers(self, correlation_id: str, body: bytes | None) -> tuple:
        headers = [(b"x-api-key", self.api_key.encode()),
                   (b"x-correlationid", correlation_id.encode()), (b"x-date", _date().encode())]
        if body is not None:
            headers.append((b"x-content-hash", hashlib.sha256(body).hexdigest().encode()))
        return tuple(headers)

    def _send(self, request, customer: str, amount_minor: int) -> None:
        from switch.core.messages import ReturnRequest

        client = self.client
        correlation_id = str(uuid.uuid4())
        started = time.perf_counter()
        currency = self.currency
        exponent = _exponent(currency)
        if type(request) is ReturnRequest:
            return  # returns of received credits are not part of this wallet's traffic
        payee = request.payee
        identifier_type = _IDENTIFIER.get(payee.alias_type)
        if identifier_type is None:
            # The API has no identifier type for a national ID (nor a random key): this
            # wallet's customers cannot name a payee that way, so it is not part of its
            # traffic. (Sent as an `accountid`, the hub refuses it, formatError.)
            return
        body = _encode({
            "amount": _amount(request.amount_minor, exponent), "currency": currency,
            "debitParty": [{"key": "accountid", "value": customer}],
            "creditParty": [{"key": identifier_type, "value": payee.alias_value}],
            "requestingOrganisationTransactionReference": request.transfer_id,
            "requestDate": _date()})
        path = b"/transactions/type/transfer"
        headers = self._headers(correlation_id, body) + (
            (b"x-callback-url", f"{self.api_url}/callbacks/{correlation_id}".encode()),)
        self.books.reserve(correlation_id, customer, amount_minor)
        self.sent += 1
        client.pending[correlation_id] = (started, customer, amount_minor)
        self._exchange_out(b"POST", path, headers, body, self._posted, correlation_id)

    def _exchange_out(self, method: bytes, path: bytes, headers, body, then, key) -> None:
        future = self.pool.try_send(method, path, body, headers)
        if future is None:
            asyncio.ensure_future(self._request(method, path, headers, body, then, key))
            return
        future.add_done_callback(lambda done: self._answered(method, path, headers, body,
                                                             done, then, key))

    async def _request(self, method, path, headers, body, then, key) -> None:
        try:
            response = await self.pool.request(method, path, body, headers)
        except HttpClientError:
            then(key, None)
            return
        self._observe("out", method, path, headers, body, response.status, response.body)
        then(key, response)

    def _answered(self, method, path, headers, body, done, then, key) -> None:
        if done.cancelled() or done.exception() is not None:
            then(key, None)
            return
        response = done.result()
        self._observe("out", method, path, headers, body, response.status, response.body)
        then(key, response)

    def _observe(self, direction, method, path, headers, body, status, answer) -> None:
        if self.observer is not None:
            self.observer(direction, method, path, dict(headers), body, status, answer)

    def _posted(self, correlation_id: str, response) -> None:
        if response is None or response.status != 202:
            self._finish(correlation_id, None, 0)

    def _finish(self, correlation_id: str, state, fee_minor: int) -> None:
        client = self.client
        found = client.pending.pop(correlation_id, None)
        if found is None:
            return
        started = found[0]
        elapsed = time.perf_counter() - started
        self.last_done_at = time.monotonic()
        self.latency.record(elapsed)
        self.interval_latency.record(elapsed)
        self.done += 1
        self.books.sent_final(correlation_id, state, fee_minor)
        self._count(state.name if state is not None else "REFUSED")
        client.freed()

    # -- the wallet's API, as Ponte calls it -----------------------------------------------

    def _handle(self, request: Request) -> Response:
        response = self._route(request)
        headers = dict(request.headers)
        self._observe("in", request.method, request.path, headers, request.body,
                      response.status, response.body)
        return response

    def _route(self, request: Request) -> Response:
        segments = request.path.strip(b"/").split(b"/")
        method = request.method
        if method == b"PUT" and segments[0] == b"callbacks" and len(segments) == 2:
            return self._callback(segments[1].decode(), request.body)
        if request.headers.get(b"x-api-key") != self.outbound_key_expected():
            return Response(401, _error("authorisation", "clientAuthorisationError"))
        if method == b"GET" and segments[0] == b"accounts" and len(segments) == 4:
            customer = unquote(segments[2].decode())
            if customer not in self.customers:
                return Response(404, _error("identification", "identifierError"))
            return Response(200, _encode({"name": {"fullName": "account holder"}}))
        if method == b"POST" and segments[:2] == [b"transactions", b"type"]:
            return self._credit(request)
        if method == b"GET" and segments[0] == b"requeststates" and len(segments) == 2:
            credit = self.credits.get(segments[1].decode())
            if credit is None:
                return Response(404, _error("identification", "genericError"))
            return Response(200, self._state(credit))
        if method == b"POST" and segments[0] == b"transactions" and len(segments) == 3:
            return self._reversal(unquote(segments[1].decode()))
        return Response(404, _error("identification", "genericError"))

    def outbound_key_expected(self) -> bytes | None:
        return getattr(self, "expected_key", None)

    def _state(self, credit: _Credit) -> bytes:
        state = {"serverCorrelationId": credit.server_id, "status": credit.status,
                 "notificationMethod": "polling", "objectReference": credit.reference}
        if credit.status == "failed":
            state["error"] = {"errorCategory": "businessRule", "errorCode": "requestDeclined"}
        return _encode(state)

    def _credit(self, request: Request) -> Response:
        body = _decode(request.body)
        correlation_id = request.headers.get(b"x-correlationid", b"").decode()
        known = self.by_correlation.get(correlation_id)
        if known is not None:
            return Response(202, self._state(known))
        customer = body["creditParty"][0]["value"]
        amount_minor = _minor(body["amount"], _exponent(body["currency"]))
        reference = f"{self.name}-c{next(self._references)}"
        payer, _, transfer_id = body.get("requestingOrganisationTransactionReference",
                                         "0.x").partition(".")
        credit = _Credit(reference, customer, amount_minor, str(uuid.uuid4()), int(payer),
                         transfer_id)
        self.credits[credit.server_id] = credit
        self.by_reference[reference] = credit
        self.by_correlation[correlation_id] = credit
        callback = request.headers.get(b"x-callback-url", b"").decode()
        roll = self._random.random()
        options = self.options
        if customer not in self.customers or body["currency"] != self.currency:
            decision = False
        elif roll < options.silence_rate:
            decision = None
        elif roll < options.silence_rate + options.reject_rate:
            decision = False
        else:
            decision = True
        if decision is not None:
            self.answered += 1
            delay = options.answer_latency_ms * (0.5 + self._random.random()) / 1000.0
            asyncio.get_running_loop().call_later(delay, self._decide, credit, decision,
                                                  callback, correlation_id)
        state = {"serverCorrelationId": credit.server_id, "status": "pending",
                 "notificationMethod": "callback" if callback else "polling"}
        return Response(202, _encode(state))

    def _decide(self, credit: _Credit, accepted: bool, callback: str,
                correlation_id: str) -> None:
        credit.status = "completed" if accepted else "failed"
        if accepted:
            self.books.accept_credit(credit.payer, credit.transfer_id, credit.customer,
                                     credit.amount_minor)
            self.books.received_final(credit.payer, credit.transfer_id,
                                      TransferState.COMMITTED)
        if not callback:
            return
        if accepted:
            body = _encode({"amount": _amount(credit.amount_minor, _exponent(self.currency)),
                            "currency": self.currency, "type": "transfer",
                            "transactionReference": credit.reference,
                            "transactionStatus": "completed",
                            "debitParty": [{"key": "organisationid", "value": str(credit.payer)}],
                            "creditParty": [{"key": "accountid", "value": credit.customer}]})
        else:
            body = _error("businessRule", "requestDeclined", "account blocked")
        path = callback.split("/", 3)[3] if callback.count("/") >= 3 else ""
        headers = self._headers(correlation_id, body)
        self._exchange_out(b"PUT", b"/" + path.encode(), headers, body,
                           lambda key, response: None, correlation_id)

    def _reversal(self, reference: str) -> Response:
        credit = self.by_reference.get(reference)
        if credit is None:
            return Response(404, _error("identification", "genericError"))
        if credit.status == "completed" and not credit.reversed:
            credit.reversed = True
            self.books.credit_reversed(credit.customer, credit.amount_minor)
            self.reversals += 1
        body = _encode({"serverCorrelationId": str(uuid.uuid4()), "status": "completed",
                        "notificationMethod": "polling", "objectReference": reference})
        return Response(202, body)

    def _callback(self, correlation_id: str, body: bytes) -> Response:
        self.callbacks_received += 1
        if correlation_id not in self.client.pending:
            return Response(204)
        message = _decode(body)
        if message.get("transactionStatus") == "completed":
            fee = 0
            for entry in message.get("fees") or ():
                fee += _minor(entry["feeAmount"], _exponent(self.currency))
            self._finish(correlation_id, TransferState.COMMITTED, fee)
        else:
            names = {p["key"]: p["value"] for p in message.get("errorParameters") or ()}
            state = {"TRANSFER_EXPIRED": TransferState.EXPIRED,
                     "PAYEE_REJECTED": TransferState.REJECTED}.get(
                names.get("ponteResultName", ""))
            self._finish(correlation_id, state, 0)
        return Response(204)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        else:
            await self.stop()


_IDENTIFIER = {"MSISDN": "msisdn", "EMAIL": "emailaddress", "HANDLE": "identityalias",
               "ACCOUNT": "accountid"}


def _exponent(currency: str) -> int:
    from switch.core.money import exponent

    return exponent(currency)


def _amount(amount_minor: int, exponent: int) -> str:
    if not exponent:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10 ** exponent)
    text = f"{fraction:0{exponent}d}".rstrip("0")
    return f"{whole}.{text}" if text else str(whole)


def _minor(text: str, exponent: int) -> int:
    whole, _, fraction = text.partition(".")
    return int(whole) * 10 ** exponent + (int(fraction.ljust(exponent, "0")) if exponent else 0)
