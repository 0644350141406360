"""The GSMA Mobile Money API hub: wallets send their customers' payments into Ponte and
receive credits from it through the GSMA Mobile Money API 1.1.2 (docs/mobilemoney.md).

`MobileMoneyConnector(gateway, config)` listens with the HTTP connector's server
(`connectors.http.server.HttpServer`), authenticates each request (the wallet's Ponte API
key in X-API-Key, or an OAuth2 bearer token from POST /oauth/token; optionally checks
X-Content-Hash), translates the GSMA body into the core's message (`translate`) and hands
it to the gateway. Asynchronous requests answer 202 with a request state once the switch
has journaled them; the outcome then goes to the request's X-Callback-URL (PUT) and to the
request state a wallet may poll. X-CorrelationID is the idempotency key: the same id with
the same body returns the same request state, with another body is refused
(duplicateRequest) and changes nothing.

For each wallet on this API the connector attaches a `Sink` in the gateway, so the core's
messages for it come here: its payments' outcomes update request states and callbacks,
the credits it receives go to its own API (`payee.PayeeSide`).

It must never decide an outcome, never take a participant from a body, a path or a header
other than the credential, never let a wallet read or act on another's resources, and
never change anything for a request it answered with an error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from urllib.parse import parse_qs, unquote

import msgspec

from connectors.http.server import HttpServer, Request, Response
from connectors.mobilemoney import errors, limits, translate
from connectors.mobilemoney.batches import Batch, Batches, batch_id_for
from connectors.mobilemoney.config import MobileMoneyConfig, WalletSettings
from connectors.mobilemoney.errors import error_response
from connectors.mobilemoney.lanes import Lanes, origin_of
from connectors.mobilemoney.payee import PayeeSide, content_hash
from connectors.mobilemoney.wire import (
    IDENTIFIER_ALIAS_TYPES,
    IDENTIFIER_TYPES,
    PAYMENT_TYPES,
    AccountName,
    BatchRequest,
    Heartbeat,
    Metadata,
    PartyEntry,
    Quote,
    QuotationAnswer,
    QuotationRequest,
    QuoteFee,
    RequestState,
    ResponseLink,
    ReversalAnswer,
    ReversalRequest,
    TransactionAnswer,
    TransactionRequest,
    amount_text,
    date_time,
    derived_uuid,
    parse_transaction_reference,
    transaction_reference,
    uuid_valid,
)
from switch.core import limits as core_limits
from switch.core.messages import (
    CreditRequest,
    ErrorAnswer,
    Refused,
    ResolveRequest,
    StatusQuery,
    TransferOutcome,
)
from switch.core.results import Result, TransferState

log = logging.getLogger("ponte.mobilemoney")

_encode = msgspec.json.Encoder().encode
_FINAL = (TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED)
_STATUS_TEXT = {TransferState.COMMITTED: "completed", TransferState.REJECTED: "rejected",
                TransferState.EXPIRED: "expired"}


class _Request:
    """One asynchronous request the hub accepted: a payment, a reversal (or, by its id, a
    batch). Keyed by (owner, X-CorrelationID) and by its serverCorrelationId."""

    __slots__ = ("owner", "correlation_id", "server_correlation_id", "body_hash", "kind",
                 "callback_url", "status", "error", "created_ns", "modified_ns", "amount",
                 "currency", "type", "debit", "credit", "description", "org_reference",
                 "original_reference", "object_reference")

    def __init__(self, owner: int, correlation_id: str, body_hash: bytes, kind: str,
                 callback_url: str, now_ns: int) -> None:
        self.owner = owner
        self.correlation_id = correlation_id
        self.server_correlation_id = derived_uuid("request", str(owner), correlation_id)
        self.body_hash = body_hash
        self.kind = kind  # "transaction", "reversal" or "batch"
        self.callback_url = callback_url
        self.status = "pending"
        self.error = None
        self.created_ns = now_ns
        self.modified_ns = now_ns
        self.amount = ""
        self.currency = ""
        self.type = ""
        self.debit: list[PartyEntry] | None = None
        self.credit: list[PartyEntry] | None = None
        self.description = ""
        self.org_reference = ""
        self.original_reference = ""
        self.object_reference = ""

    def state(self) -> RequestState:
        return RequestState(
            server_correlation_id=self.server_correlation_id, status=self.status,
            notification_method="callback" if self.callback_url else "polling",
            object_reference=self.object_reference, error=self.error)


class _Durable:
    """The gateway's Origin for one request: answers once the switch journaled it."""

    __slots__ = ("future", "response")

    def __init__(self, loop: asyncio.AbstractEventLoop, response: Response) -> None:
        self.future = loop.create_future()
        self.response = response

    def sequenced(self, count: int) -> None:
        if not self.future.done():
            self.future.set_result(self.response)


class WalletSink:
    """The gateway `Sink` of one wallet on this API: the core's messages for it."""

    __slots__ = ("connector", "participant_id")

    def __init__(self, connector: MobileMoneyConnector, participant_id: int) -> None:
        self.connector = connector
        self.participant_id = participant_id

    def deliver(self, message) -> None:
        self.connector.deliver(self.participant_id, message)

    def flush(self) -> None:
        pass  # each lane writes what one loop pass queued together

    def close(self, reason: str) -> None:
        """Nothing to end: every request carries its credential."""


def _segment(raw: bytes) -> str:
    return unquote(raw.decode("utf-8", "replace")) if b"%" in raw else raw.decode(
        "utf-8", "replace")


class MobileMoneyConnector:
    """The hub of one switch process. `start()` listens; `close()` drains."""

    def __init__(self, gateway, config: MobileMoneyConfig = MobileMoneyConfig()) -> None:
        self.gateway = gateway
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.server = HttpServer(self.handle, errors.protocol_error,
                                 connections_per_address_max=config.connections_per_address_max,
                                 request_body_bytes_max=limits.BATCH_BODY_BYTES_MAX)
        self.wallets: dict[int, WalletSettings] = {}
        self._sinks: dict[int, WalletSink] = {}
        self.lanes = Lanes()
        self.payee = PayeeSide(gateway, self.lanes, "")
        self.batches = Batches(gateway, self._batch_finished)
        self.requests: OrderedDict[tuple[int, str], _Request] = OrderedDict()
        self.by_server_id: dict[str, _Request] = {}
        self._tokens: OrderedDict[bytes, tuple[int, float]] = OrderedDict()
        self._status_waiting: dict[int, int] = {}
        self._batch_timer: asyncio.TimerHandle | None = None
        self._transaction_decoder = msgspec.json.Decoder(TransactionRequest)
        self._reversal_decoder = msgspec.json.Decoder(ReversalRequest)
        self._batch_decoder = msgspec.json.Decoder(BatchRequest)
        self._quotation_decoder = msgspec.json.Decoder(QuotationRequest)
        self.closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, sock=None) -> None:
        await self.server.start(self.config.host, self.config.port, sock=sock)
        root = self.config.public_url or f"http://{self.config.host}:{self.server.port}"
        self.payee.callback_root = root.rstrip("/")
        for wallet in self.config.wallets:
            self.set_wallet(wallet)
        self._batch_timer = self.loop.call_later(limits.BATCH_TICK_MS / 1000, self._batch_tick)
        log.info("mobilemoney.listening host=%s port=%d wallets=%d", self.config.host,
                 self.server.port, len(self.wallets))

    @property
    def port(self) -> int:
        return self.server.port

    def set_wallet(self, settings: WalletSettings) -> None:
        """Put a wallet on this API (or change its settings), at once: its core messages
        come to this connector from now on."""
        participant_id = settings.participant_id
        self.wallets[participant_id] = settings
        if participant_id not in self._sinks:
            sink = WalletSink(self, participant_id)
            self._sinks[participant_id] = sink
            self.gateway.attach(participant_id, sink)

    def set_wallet_settings(self, participant_id: int, settings: dict) -> None:
        """`set_wallet` from an operator's proposal (plain fields); the outbound key the
        configuration holds for this wallet is kept. ValueError for a value it refuses."""
        kept = self.wallets.get(participant_id)
        values = {**settings, "participant_id": participant_id,
                  "outbound_api_key": kept.outbound_api_key if kept is not None else ""}
        try:
            self.set_wallet(msgspec.convert(values, WalletSettings))
        except msgspec.ValidationError as error:
            raise ValueError(str(error)) from None

    def remove_wallet(self, participant_id: int) -> None:
        self.wallets.pop(participant_id, None)
        sink = self._sinks.pop(participant_id, None)
        if sink is not None:
            self.gateway.detach(participant_id, sink)

    async def close(self, grace_ms: int = 5_000) -> None:
        self.closed = True
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        await self.server.close(grace_ms)
        for participant_id in list(self._sinks):
            self.remove_wallet(participant_id)
        await self.lanes.close(grace_ms)

    def register_metrics(self, registry) -> None:
        stats = self.lanes.stats
        for field, help_text in (
                ("sent_total", "Requests Ponte sent to wallets' endpoints."),
                ("retried_total", "Requests to wallets that failed and were sent again."),
                ("given_up_total", "Requests to wallets abandoned after every attempt."),
                ("dropped_total", "Requests to wallets dropped: queue full or bad URL.")):
            registry.gauge(f"ponte_mobilemoney_outbound_{field}", help_text,
                           lambda field=field: getattr(stats, field), kind="counter")
        registry.gauge("ponte_mobilemoney_requests_remembered",
                       "Request states the Mobile Money hub holds.", lambda: len(self.requests))
        registry.gauge("ponte_mobilemoney_credits_awaiting",
                       "Credits sent to wallets and not answered yet.",
                       lambda: len(self.payee.awaiting))

    # -- routing -----------------------------------------------------------------------

    def handle(self, request: Request):
        now_ns = time.time_ns()
        path = request.path
        segments = path[1:].split(b"/") if path[:1] == b"/" else [b""]
        if segments and segments[-1] == b"" and len(segments) > 1:
            segments = segments[:-1]
        method = b"GET" if request.method == b"HEAD" else request.method
        first = segments[0]
        count = len(segments)
        route = None
        if first == b"transactions":
            if count == 1:
                route = {b"POST": self.create_transaction}
            elif count == 3 and segments[1] == b"type":
                route = {b"POST": self.create_transaction}
            elif count == 2:
                route = {b"GET": self.get_transaction}
            elif count == 3 and segments[2] == b"reversals":
                route = {b"POST": self.create_reversal}
        elif first == b"requeststates" and count == 2:
            route = {b"GET": self.get_request_state}
        elif first == b"batchtransactions":
            if count == 1:
                route = {b"POST": self.create_batch}
            elif count == 2:
                route = {b"GET": self.get_batch}
            elif count == 3 and segments[2] in (b"completions", b"rejections"):
                route = {b"GET": self.get_batch_results}
        elif first == b"accounts" and count == 4 and segments[3] == b"accountname":
            route = {b"GET": self.account_name}
        elif first == b"quotations" and count == 1:
            route = {b"POST": self.create_quotation}
        elif first == b"heartbeat" and count == 1:
            route = {b"GET": self.heartbeat}
        elif first == b"responses" and count == 2:
            route = {b"GET": self.get_response}
        elif first == b"callbacks" and count == 3 and segments[1] == b"credits":
            route = {b"PUT": self.credit_callback}
        elif first == b"oauth" and count == 2 and segments[1] == b"token":
            route = {b"POST": self.oauth_token}
        if route is None:
            return error_response(Result.VALIDATION_ERROR, "no such resource", now_ns,
                                  errors.IDENTIFIER_ERROR)
        handler = route.get(method)
        if handler is None:
            response = error_response(Result.VALIDATION_ERROR, "method not allowed here",
                                      now_ns)
            response.status = 405
            return response
        return handler(request, segments, now_ns)

    # -- authentication ----------------------------------------------------------------

    def _caller(self, request: Request, now_ns: int) -> tuple[int, WalletSettings] | Response:
        headers = request.headers
        key = headers.get(b"x-api-key")
        participant_id = None
        used = ""
        if key is not None:
            try:
                participant_id = self.gateway.authenticate(key.decode("ascii"))
            except UnicodeDecodeError:
                participant_id = None
            used = "api_key"
        else:
            value = headers.get(b"authorization")
            if value is not None and value[:7].lower() == b"bearer ":
                participant_id = self._token_owner(value[7:].strip())
                used = "oauth2"
        settings = self.wallets.get(participant_id) if participant_id is not None else None
        if settings is None or (settings.auth != "any" and settings.auth != used):
            return error_response(Result.VALIDATION_ERROR, "missing or unknown credential, "
                                  "or not a wallet on this API", now_ns, errors.NOT_AUTHORISED)
        if request.body or settings.content_hash_required:
            supplied = headers.get(b"x-content-hash")
            if supplied is None:
                if settings.content_hash_required:
                    return error_response(Result.INVALID_SIGNATURE, "X-Content-Hash is "
                                          "required for this wallet", now_ns)
            elif not hmac.compare_digest(supplied.lower(), content_hash(request.body)):
                return error_response(Result.INVALID_SIGNATURE, "X-Content-Hash does not "
                                      "match the body", now_ns)
        return participant_id, settings

    def _token_owner(self, token: bytes) -> int | None:
        found = self._tokens.get(hashlib.sha256(token).digest())
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def oauth_token(self, request: Request, segments, now_ns: int) -> Response:
        """RFC 6749 client credentials: client_id is the API key's id, client_secret the
        API key (Basic auth or form fields). The token is kept only as its hash."""
        client_id = client_secret = ""
        auth = request.headers.get(b"authorization", b"")
        try:
            if auth[:6].lower() == b"basic ":
                decoded = base64.b64decode(auth[6:].strip(), validate=True).decode()
                client_id, _, client_secret = decoded.partition(":")
            form = parse_qs(request.body.decode("ascii"), max_num_fields=8)
        except (ValueError, UnicodeDecodeError):
            return _oauth_error(400, "invalid_request")
        if form.get("grant_type") != ["client_credentials"]:
            return _oauth_error(400, "unsupported_grant_type")
        client_id = client_id or (form.get("client_id") or [""])[0]
        client_secret = client_secret or (form.get("client_secret") or [""])[0]
        participant_id = self.gateway.authenticate(client_secret) if client_secret else None
        parts = client_secret.split("_")
        settings = self.wallets.get(participant_id) if participant_id is not None else None
        if settings is None or settings.auth == "api_key" or len(parts) < 3 or (
                not hmac.compare_digest(parts[1].encode(), client_id.encode())):
            return _oauth_error(401, "invalid_client")
        token = secrets.token_urlsafe(32)
        tokens = self._tokens
        tokens[hashlib.sha256(token.encode()).digest()] = (
            participant_id, time.monotonic() + limits.OAUTH_TOKEN_TTL_S)
        owned = [key for key, (owner, _) in tokens.items() if owner == participant_id]
        for key in owned[:-limits.OAUTH_TOKENS_PER_WALLET_MAX]:
            del tokens[key]
        while len(tokens) > limits.OAUTH_TOKENS_MAX:
            tokens.popitem(last=False)
        return Response(200, _encode({"access_token": token, "token_type": "Bearer",
                                      "expires_in": limits.OAUTH_TOKEN_TTL_S}),
                        headers=((b"cache-control", b"no-store"),))

    # -- shared request checks ---------------------------------------------------------

    def _correlation(self, request: Request, now_ns: int) -> str | Response:
        value = request.headers.get(b"x-correlationid")
        if value is None:
            return error_response(Result.VALIDATION_ERROR, "X-CorrelationID is required: it "
                                  "is the idempotency key", now_ns, errors.MANDATORY_VALUE)
        text = value.decode("ascii", "replace")
        if not uuid_valid(text):
            return error_response(Result.ID_INVALID, "X-CorrelationID must be a UUID", now_ns)
        return text.lower()

    def _callback_url(self, request: Request, settings: WalletSettings,
                      now_ns: int) -> str | Response:
        value = request.headers.get(b"x-callback-url")
        if value is None:
            return ""
        url = value.decode("ascii", "replace")
        split = origin_of(url)
        allowed = {origin_of(u)[0] for u in (settings.api_url, *settings.callback_origins)
                   if u and origin_of(u) is not None}
        if split is None or len(url) > core_limits.CALLBACK_URL_LENGTH_MAX or (
                split[0] not in allowed):
            return error_response(Result.VALIDATION_ERROR, "X-Callback-URL must be an "
                                  "http(s) URL on an origin registered for this wallet",
                                  now_ns)
        return url

    def _known(self, caller: int, correlation_id: str, body_hash: bytes,
               now_ns: int) -> Response | None:
        """The answer to a resend of a request already accepted, if it is one."""
        known = self.requests.get((caller, correlation_id))
        if known is None:
            return None
        if not hmac.compare_digest(known.body_hash, body_hash):
            return error_response(Result.EXISTS_WITH_DIFFERENT_BODY, "X-CorrelationID was "
                                  "used for another request", now_ns)
        return Response(202, _encode(known.state()), headers=self._date(now_ns))

    @staticmethod
    def _date(now_ns: int) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"x-date", date_time(now_ns).encode()),)

    def _remember(self, entry: _Request) -> None:
        self.requests[(entry.owner, entry.correlation_id)] = entry
        self.by_server_id[entry.server_correlation_id] = entry
        while len(self.requests) > limits.REQUEST_STATES_MAX:
            _, old = self.requests.popitem(last=False)
            self.by_server_id.pop(old.server_correlation_id, None)

    def _forget(self, entry: _Request) -> None:
        self.requests.pop((entry.owner, entry.correlation_id), None)
        self.by_server_id.pop(entry.server_correlation_id, None)

    def _submit(self, entry: _Request, message, now_ns: int):
        """Remember the request, hand it to the switch, answer 202 once it is durable (the
        state exists first: its outcome may be released in the same tick)."""
        self._remember(entry)
        response = Response(202, _encode(entry.state()), headers=self._date(now_ns))
        if not self.config.accept_when_durable:
            result = self.gateway.submit(entry.owner, message)
            if result is not Result.OK:
                self._forget(entry)
                return error_response(result, "", now_ns)
            return response
        origin = _Durable(self.loop, response)
        result = self.gateway.submit(entry.owner, message, origin)
        if result is not Result.OK:
            self._forget(entry)
            return error_response(result, "", now_ns)
        return origin.future

    @staticmethod
    def _refused(refusal: translate.Refusal, now_ns: int) -> Response:
        return error_response(refusal.result, refusal.detail, now_ns, refusal.code)

    # -- payments ----------------------------------------------------------------------

    def create_transaction(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        participant_id, settings = caller
        path_type = None
        if len(segments) == 3:
            path_type = segments[2].decode("ascii", "replace")
            if path_type not in PAYMENT_TYPES:
                return error_response(Result.VALIDATION_ERROR, f"transactionType must be one "
                                      f"of {', '.join(PAYMENT_TYPES)}", now_ns,
                                      errors.TRANSACTION_TYPE_ERROR)
        correlation_id = self._correlation(request, now_ns)
        if type(correlation_id) is Response:
            return correlation_id
        body_hash = hashlib.blake2b(request.path + b"\x00" + request.body,
                                    digest_size=16).digest()
        known = self._known(participant_id, correlation_id, body_hash, now_ns)
        if known is not None:
            return known
        callback_url = self._callback_url(request, settings, now_ns)
        if type(callback_url) is Response:
            return callback_url
        try:
            body = self._transaction_decoder.decode(request.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return self._refused(translate.decode_error(error, request.body), now_ns)
        except RecursionError:
            return error_response(Result.MALFORMED_SYNTAX, "nested too deep", now_ns)
        if path_type is not None and body.type is not None and body.type != path_type:
            return error_response(Result.VALIDATION_ERROR, "type differs from the path's",
                                  now_ns, errors.TRANSACTION_TYPE_ERROR)
        transfer = translate.payment(body, path_type, correlation_id,
                                     now_ns + self.config.expiry_ms * 1_000_000)
        if type(transfer) is translate.Refusal:
            return self._refused(transfer, now_ns)
        entry = _Request(participant_id, correlation_id, body_hash, "transaction",
                         callback_url, now_ns)
        entry.amount = body.amount
        entry.currency = body.currency
        entry.type = path_type or body.type
        entry.debit = body.debit_party
        entry.credit = body.credit_party
        entry.description = body.description_text
        entry.org_reference = body.requesting_organisation_transaction_reference
        entry.object_reference = transaction_reference(participant_id, correlation_id)
        return self._submit(entry, transfer, now_ns)

    def get_transaction(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        reference = parse_transaction_reference(_segment(segments[1]))
        if reference is None:
            return error_response(Result.TRANSFER_NOT_FOUND, "no such transaction", now_ns)
        return self._status_then(caller[0], reference, now_ns, self._transaction_answer)

    def _status_then(self, caller: int, reference: tuple[int, str], now_ns: int, then):
        waiting = self._status_waiting.get(caller, 0)
        if waiting >= limits.STATUS_QUERIES_IN_FLIGHT_PER_WALLET_MAX:
            return error_response(Result.SERVER_BUSY, "status queries in flight", now_ns)
        try:
            query = msgspec.convert({"payer_participant_id": reference[0],
                                     "transfer_id": reference[1]}, StatusQuery)
        except msgspec.ValidationError:
            return error_response(Result.TRANSFER_NOT_FOUND, "no such transaction", now_ns)
        self._status_waiting[caller] = waiting + 1
        return self._status_task(caller, query, then)

    async def _status_task(self, caller: int, query: StatusQuery, then) -> Response:
        try:
            answer = await self.gateway.status(caller, query)
        finally:
            left = self._status_waiting[caller] - 1
            if left:
                self._status_waiting[caller] = left
            else:
                del self._status_waiting[caller]
        now_ns = time.time_ns()
        if type(answer) is TransferOutcome:
            response = then(caller, answer, now_ns)
            if type(response) is not Response:
                response = await response  # a request submitted on this answer: durable
            return response
        if type(answer) is Refused or type(answer) is ErrorAnswer:
            return error_response(answer.result, "no such transaction" if answer.result in (
                Result.TRANSFER_NOT_FOUND,) else "", now_ns)
        return error_response(Result.INTERNAL_SERVER_ERROR, "", now_ns)

    def _transaction_answer(self, caller: int, outcome: TransferOutcome,
                            now_ns: int) -> Response:
        entry = self.requests.get((outcome.payer_participant_id, outcome.transfer_id))
        return Response(200, _encode(self._transaction(outcome, entry)),
                        headers=self._date(now_ns))

    @staticmethod
    def _transaction(outcome: TransferOutcome, entry: _Request | None) -> TransactionAnswer:
        payer = [PartyEntry(key="organisationid", value=str(outcome.payer_participant_id))]
        payee = [PartyEntry(key="organisationid", value=str(outcome.payee_participant_id
                                                            or outcome.payer_participant_id))]
        status = _STATUS_TEXT.get(outcome.state, "pending")
        reference = transaction_reference(outcome.payer_participant_id, outcome.transfer_id)
        if entry is not None and entry.kind == "transaction":
            return TransactionAnswer(
                amount=entry.amount, currency=entry.currency, type=entry.type,
                transaction_reference=reference, transaction_status=status,
                debit_party=entry.debit or payer, credit_party=entry.credit or payee,
                description_text=entry.description,
                requesting_organisation_transaction_reference=entry.org_reference,
                creation_date=date_time(entry.created_ns),
                modification_date=date_time(outcome.decided_at_ns or entry.modified_ns),
                fees=[QuoteFee(fee_type="scheme", fee_amount=amount_text(
                    outcome.fee_minor, outcome.currency), fee_currency=outcome.currency)]
                if outcome.fee_minor and outcome.currency else None)
        currency = outcome.currency
        return TransactionAnswer(
            amount=amount_text(outcome.amount_minor, currency) if currency else "0",
            currency=currency or "XXX", type="transfer" if entry is None or entry.kind !=
            "reversal" else "reversal", transaction_reference=reference,
            transaction_status=status, debit_party=payer, credit_party=payee,
            modification_date=date_time(outcome.decided_at_ns) if outcome.decided_at_ns
            else "")

    # -- reversals ---------------------------------------------------------------------

    def create_reversal(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        participant_id, settings = caller
        correlation_id = self._correlation(request, now_ns)
        if type(correlation_id) is Response:
            return correlation_id
        body_hash = hashlib.blake2b(request.path + b"\x00" + request.body,
                                    digest_size=16).digest()
        known = self._known(participant_id, correlation_id, body_hash, now_ns)
        if known is not None:
            return known
        callback_url = self._callback_url(request, settings, now_ns)
        if type(callback_url) is Response:
            return callback_url
        reference_text = _segment(segments[1])
        original = parse_transaction_reference(reference_text)
        if original is None:
            return error_response(Result.ORIGINAL_TRANSFER_NOT_FOUND, "no such transaction",
                                  now_ns)
        try:
            body = self._reversal_decoder.decode(request.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return self._refused(translate.decode_error(error, request.body), now_ns)
        except RecursionError:
            return error_response(Result.MALFORMED_SYNTAX, "nested too deep", now_ns)
        entry = _Request(participant_id, correlation_id, body_hash, "reversal", callback_url,
                         now_ns)
        entry.original_reference = reference_text
        entry.object_reference = transaction_reference(participant_id, correlation_id)
        entry.description = body.description_text
        given = None
        if body.amount is not None:
            if body.currency is None:
                return error_response(Result.VALIDATION_ERROR, "currency is required with "
                                      "amount", now_ns, errors.MANDATORY_VALUE)
            given = translate.minor_amount(body.amount, body.currency)
            if type(given) is translate.Refusal:
                return self._refused(given, now_ns)

        def checked(caller_id: int, outcome: TransferOutcome, at_ns: int):
            # Read first, as the caller may see it: a wallet that is no party to the
            # original learns nothing (404), and only its payee may return it.
            if outcome.payee_participant_id != caller_id:
                return error_response(Result.RETURN_PARTIES_MISMATCH, "only the original "
                                      "payee reverses a transaction", at_ns)
            # A resend that came in while this status query was out found nothing to
            # match; whichever was submitted first decides it now.
            known = self._known(caller_id, entry.correlation_id, entry.body_hash, at_ns)
            if known is not None:
                return known
            if given is not None and body.currency != outcome.currency:
                return error_response(Result.CURRENCY_NOT_SUPPORTED, "not the original's "
                                      "currency", at_ns)
            # Without an amount, all of it (the core caps the sum of returns).
            value = outcome.amount_minor if given is None else given
            return self._reverse(entry, original, value, outcome.currency, at_ns)

        return self._status_then(participant_id, original, now_ns, checked)

    def _reverse(self, entry: _Request, original: tuple[int, str], value_minor: int,
                 currency: str, now_ns: int):
        message = translate.reversal(entry.correlation_id, original[0], original[1],
                                     value_minor, now_ns + self.config.expiry_ms * 1_000_000,
                                     entry.description or "reversal")
        if type(message) is translate.Refusal:
            return self._refused(message, now_ns)
        entry.amount = amount_text(value_minor, currency)
        entry.currency = currency
        return self._submit(entry, message, now_ns)

    # -- request states and responses ---------------------------------------------------

    def get_request_state(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        entry = self.by_server_id.get(_segment(segments[1]).lower())
        if entry is None or entry.owner != caller[0]:
            return error_response(Result.REQUEST_NOT_FOUND, "no such request state", now_ns)
        return Response(200, _encode(entry.state()), headers=self._date(now_ns))

    def get_response(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        correlation_id = _segment(segments[1]).lower()
        if not uuid_valid(correlation_id):
            return error_response(Result.ID_INVALID, "clientCorrelationId must be a UUID",
                                  now_ns)
        participant_id = caller[0]
        entry = self.requests.get((participant_id, correlation_id))
        if entry is not None:
            if entry.kind == "batch":
                link = f"/batchtransactions/{entry.object_reference}"
            else:
                link = f"/transactions/{entry.object_reference}"
            return Response(200, _encode(ResponseLink(link=link)), headers=self._date(now_ns))

        # Not remembered (older, or before a restart): the transfer id is the correlation id.
        def found(caller_id: int, outcome: TransferOutcome, at_ns: int) -> Response:
            link = "/transactions/" + transaction_reference(participant_id, correlation_id)
            return Response(200, _encode(ResponseLink(link=link)), headers=self._date(at_ns))

        return self._status_then(participant_id, (participant_id, correlation_id), now_ns,
                                  found)

    # -- outcomes from the switch (the wallet's sink) ------------------------------------

    def deliver(self, participant_id: int, message) -> None:
        message_type = type(message)
        settings = self.wallets.get(participant_id)
        if settings is None:
            return
        now_ns = time.time_ns()
        if message_type is CreditRequest:
            self.payee.credit(settings, message)
        elif message_type is TransferOutcome:
            if message.payer_participant_id == participant_id:
                if message.state in _FINAL and not self.batches.outcome(
                        participant_id, message, now_ns):
                    self._payer_outcome(participant_id, message, now_ns)
            elif message.payee_participant_id == participant_id and message.state in _FINAL:
                self.payee.outcome(settings, message)
        elif message_type is Refused:
            if message.scope_participant_id == participant_id and not self.batches.outcome(
                    participant_id, message, now_ns):
                self._payer_refused(participant_id, message, now_ns)
        elif message_type is ErrorAnswer:
            log.debug("mobilemoney.error_answer participant_id=%d result=%s",
                      participant_id, message.result.name)

    def _payer_outcome(self, participant_id: int, outcome: TransferOutcome,
                       now_ns: int) -> None:
        entry = self.requests.get((participant_id, outcome.transfer_id))
        if entry is None or entry.status != "pending":
            return  # not ours to tell (or told already: a resend's answer)
        entry.modified_ns = now_ns
        if outcome.state == TransferState.COMMITTED:
            entry.status = "completed"
            if entry.kind == "reversal":
                body = _encode(ReversalAnswer(
                    type="reversal", original_transaction_reference=entry.original_reference,
                    transaction_reference=entry.object_reference,
                    transaction_status="completed", amount=entry.amount,
                    currency=entry.currency, creation_date=date_time(entry.created_ns),
                    modification_date=date_time(now_ns)))
            else:
                body = _encode(self._transaction(outcome, entry))
        else:
            entry.status = "failed"
            result = outcome.result if outcome.result is not Result.OK else (
                Result.TRANSFER_EXPIRED)
            entry.error = errors.error_object(result, outcome.reason or result.name, now_ns)
            body = _encode(entry.error)
        self._callback(entry, body)

    def _payer_refused(self, participant_id: int, refused: Refused, now_ns: int) -> None:
        entry = self.requests.get((participant_id, refused.id))
        if entry is None or entry.status != "pending":
            return
        entry.status = "failed"
        entry.modified_ns = now_ns
        entry.error = errors.error_object(refused.result, refused.result.name, now_ns)
        self._callback(entry, _encode(entry.error))

    def _callback(self, entry: _Request, body: bytes) -> None:
        if not entry.callback_url:
            return
        headers = ((b"x-correlationid", entry.correlation_id.encode()),
                   (b"x-date", date_time(time.time_ns()).encode()),
                   (b"x-content-hash", content_hash(body)))
        self.lanes.send(entry.owner, entry.callback_url, b"PUT", body, headers)

    # -- Ponte -> wallet: the wallet's callback for a credit ------------------------------

    def credit_callback(self, request: Request, segments, now_ns: int) -> Response:
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        if not self.payee.callback(caller[0], _segment(segments[2]).lower(), request.body):
            return error_response(Result.TRANSFER_NOT_FOUND, "no credit of yours with this "
                                  "id is waiting", now_ns)
        return Response(204, headers=self._date(now_ns))

    # -- batches -----------------------------------------------------------------------

    def create_batch(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        participant_id, settings = caller
        correlation_id = self._correlation(request, now_ns)
        if type(correlation_id) is Response:
            return correlation_id
        body_hash = hashlib.blake2b(request.path + b"\x00" + request.body,
                                    digest_size=16).digest()
        known = self._known(participant_id, correlation_id, body_hash, now_ns)
        if known is not None:
            return known
        callback_url = self._callback_url(request, settings, now_ns)
        if type(callback_url) is Response:
            return callback_url
        try:
            body = self._batch_decoder.decode(request.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return self._refused(translate.decode_error(error, request.body), now_ns)
        except RecursionError:
            return error_response(Result.MALFORMED_SYNTAX, "nested too deep", now_ns)
        if not self.gateway.accepting or self.gateway.draining:
            return error_response(Result.SERVICE_UNAVAILABLE, "", now_ns)
        if not self.batches.room_for(len(body.transactions)):
            return error_response(Result.SERVER_BUSY, "too many batches in progress", now_ns)
        batch_id = batch_id_for(correlation_id)
        entry = _Request(participant_id, correlation_id, body_hash, "batch", callback_url,
                         now_ns)
        entry.object_reference = batch_id
        self._remember(entry)
        batch = Batch(batch_id, participant_id, correlation_id, body_hash, callback_url,
                      body.batch_title, body.batch_description, now_ns)
        self.batches.add(batch, body.transactions,
                         now_ns + self.config.expiry_ms * 1_000_000, now_ns)
        return Response(202, _encode(entry.state()), headers=self._date(now_ns))

    def _batch_tick(self) -> None:
        self._batch_timer = None
        if self.closed:
            return
        if self.batches.active:
            self.batches.tick(time.time_ns())
        self._batch_timer = self.loop.call_later(limits.BATCH_TICK_MS / 1000, self._batch_tick)

    def _batch_finished(self, batch: Batch) -> None:
        entry = self.requests.get((batch.owner, batch.correlation_id))
        if entry is not None:
            entry.status = "completed"
            entry.modified_ns = batch.finished_ns
        if batch.callback_url:
            body = _encode(batch.answer())
            headers = ((b"x-correlationid", batch.correlation_id.encode()),
                       (b"x-date", date_time(time.time_ns()).encode()),
                       (b"x-content-hash", content_hash(body)))
            self.lanes.send(batch.owner, batch.callback_url, b"PUT", body, headers)

    def _batch_of(self, request: Request, segments, now_ns: int) -> Batch | Response:
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        batch = self.batches.get(caller[0], _segment(segments[1]))
        if batch is None:
            return error_response(Result.REQUEST_NOT_FOUND, "no such batch", now_ns)
        return batch

    def get_batch(self, request: Request, segments, now_ns: int) -> Response:
        batch = self._batch_of(request, segments, now_ns)
        if type(batch) is Response:
            return batch
        return Response(200, _encode(batch.answer()), headers=self._date(now_ns))

    def get_batch_results(self, request: Request, segments, now_ns: int) -> Response:
        batch = self._batch_of(request, segments, now_ns)
        if type(batch) is Response:
            return batch
        limit, offset = limits.RESULTS_PAGE_DEFAULT, 0
        if request.query:
            query = parse_qs(request.query.decode("ascii", "replace"), max_num_fields=8)
            try:
                limit = int(query.get("limit", [limit])[0])
                offset = int(query.get("offset", [0])[0])
            except ValueError:
                return error_response(Result.VALIDATION_ERROR, "limit and offset are "
                                      "integers", now_ns, errors.INVALID_OFFSET)
            if not 0 <= offset or not 1 <= limit:
                return error_response(Result.VALIDATION_ERROR, "limit >= 1, offset >= 0",
                                      now_ns, errors.INVALID_OFFSET)
        limit = min(limit, limits.RESULTS_PAGE_MAX)
        items = batch.completions if segments[2] == b"completions" else batch.rejections
        page = items[offset:offset + limit]
        return Response(200, _encode(page), headers=(
            *self._date(now_ns), (b"x-records-available-count", str(len(items)).encode()),
            (b"x-records-returned-count", str(len(page)).encode())))

    # -- lookups, quotations, heartbeat --------------------------------------------------

    def account_name(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        identifier_type = _segment(segments[1])
        if identifier_type not in IDENTIFIER_TYPES:
            return error_response(Result.VALIDATION_ERROR, "identifierType is not one of "
                                  "the spec's", now_ns, errors.IDENTIFIER_ERROR)
        alias_type = IDENTIFIER_ALIAS_TYPES.get(identifier_type)
        if alias_type is None:
            return error_response(Result.VALIDATION_ERROR, f"Ponte's directory holds no "
                                  f"{identifier_type} identifiers", now_ns,
                                  errors.IDENTIFIER_ERROR)
        identifier = _segment(segments[2])
        user_ref = request.headers.get(b"x-ponte-user-ref", b"").decode("utf-8", "replace")
        try:
            message = msgspec.convert({"alias": {"alias_type": alias_type,
                                                 "alias_value": identifier},
                                       "payer_user_ref": user_ref}, ResolveRequest)
        except msgspec.ValidationError as error:
            return error_response(Result.VALIDATION_ERROR, str(error), now_ns)
        return self._resolve(caller[0], message)

    async def _resolve(self, caller: int, message: ResolveRequest) -> Response:
        answer = await self.gateway.resolve(caller, message)
        now_ns = time.time_ns()
        if answer.result is Result.OK:
            return Response(200, _encode(AccountName(name={
                "fullName": answer.display_name_masked})), headers=self._date(now_ns))
        if answer.result is Result.LOOKUP_RATE_LIMITED:
            retry_after_s = max(1, -(-answer.retry_after_ms // 1000))
            return error_response(answer.result, f"retry after {answer.retry_after_ms} ms",
                                  now_ns, headers=((b"retry-after",
                                                    str(retry_after_s).encode()),))
        return error_response(answer.result, "no such account", now_ns)

    def create_quotation(self, request: Request, segments, now_ns: int):
        caller = self._caller(request, now_ns)
        if type(caller) is Response:
            return caller
        try:
            body = self._quotation_decoder.decode(request.body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            return self._refused(translate.decode_error(error, request.body), now_ns)
        except RecursionError:
            return error_response(Result.MALFORMED_SYNTAX, "nested too deep", now_ns)
        if body.type is not None and body.type not in PAYMENT_TYPES:
            return error_response(Result.VALIDATION_ERROR, "not a payment type", now_ns,
                                  errors.TRANSACTION_TYPE_ERROR)
        alias = translate.payee_alias(body.credit_party)
        if type(alias) is translate.Refusal:
            return self._refused(alias, now_ns)
        currency = body.request_currency
        value = translate.minor_amount(body.request_amount, currency)
        if type(value) is translate.Refusal:
            return self._refused(value, now_ns)
        fee = self.gateway.fee_minor(currency, value)
        if fee is None:
            return error_response(Result.CURRENCY_NOT_SUPPORTED, currency, now_ns)
        reference = derived_uuid("quotation", str(caller[0]), str(now_ns),
                                 secrets.token_hex(4))
        amount = amount_text(value, currency)
        quote = Quote(
            quote_id=reference, sending_amount=amount, sending_currency=currency,
            receiving_amount=amount, receiving_currency=currency,
            quote_expiry_time=date_time(now_ns + limits.QUOTE_LIFETIME_MS * 1_000_000),
            receiving_service_provider="Ponte",
            fees=[QuoteFee(fee_type="scheme", fee_amount=amount_text(fee, currency),
                           fee_currency=currency)] if fee else None)
        answer = QuotationAnswer(
            quotation_reference=reference, request_date=date_time(
                int(body.request_date.timestamp() * 1_000_000_000)),
            debit_party=body.debit_party, credit_party=body.credit_party,
            request_amount=body.request_amount, request_currency=currency,
            creation_date=date_time(now_ns), type=body.type or "", quotes=[quote])
        return Response(201, _encode(answer), headers=self._date(now_ns))

    def heartbeat(self, request: Request, segments, now_ns: int) -> Response:
        available = bool(self.gateway.accepting) and not self.gateway.draining
        return Response(200, _encode(Heartbeat(
            service_status="available" if available else "unavailable")),
            headers=self._date(now_ns))


def _oauth_error(status: int, error: str) -> Response:
    return Response(status, _encode({"error": error}), headers=((b"cache-control",
                                                                 b"no-store"),))


async def start_mobilemoney_connector(gateway, config: MobileMoneyConfig,
                                      registry=None) -> MobileMoneyConnector:
    """What the composition root calls: build, register metrics, listen."""
    connector = MobileMoneyConnector(gateway, config)
    if registry is not None:
        connector.register_metrics(registry)
    await connector.start()
    return connector


def load_config(table: dict) -> MobileMoneyConfig:
    """`[mobilemoney]` of the server's config as a MobileMoneyConfig (ValidationError names
    the field at fault)."""
    return msgspec.convert(table, MobileMoneyConfig, strict=False)


__all__ = ["MobileMoneyConnector", "MobileMoneyConfig", "WalletSettings", "Metadata",
           "load_config", "start_mobilemoney_connector"]
