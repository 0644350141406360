"""The HTTP connector: JSON resources translated to and from the core's messages.

`HttpConnector(gateway, config)` listens (through `server.HttpServer`), authenticates each
request with the participant's API key (`gateway.authenticate`), checks the optional
detached JWS, decodes the body straight into the core Struct and hands it to the gateway.
Asynchronous operations answer 202 once the sequencer says the request is durable; their
outcomes go to the participant's callback URL through `callbacks.CallbackSender`, which
this connector installs as the gateway's fallback sink (participants on a stream
connection get theirs on the connection instead). The routes are `ROUTES`; the OpenAPI
document (`openapi.PATHS`) describes the same set, which a test checks.

It must never decide an outcome, never take a participant id from a body or a path as the
caller's identity (only from the API key), and never change anything for a request it
answered with an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Literal
from urllib.parse import parse_qs, unquote

import msgspec
from msgspec import Meta

import switch
from connectors.http import errors, limits
from connectors.http.callbacks import CallbackPolicy, CallbackSender
from connectors.http.errors import error_response, rate_limited_response
from connectors.http.jws import JwsError, JwsMalformed, Signer, VerifyKey, \
    signature_from_headers, verify_request
from connectors.http.openapi import build_document, render_docs
from connectors.http.resources import (
    Accepted,
    Health,
    PayeeAnswerBody,
    RequestToPayDecisionBody,
)
from connectors.http.server import HttpServer, Request, Response, StreamedResponse
from switch.core import limits as core_limits
from switch.core.messages import (
    AliasRegistration,
    ErrorAnswer,
    Party,
    PayeeAnswer,
    ReconciliationRequest,
    Refused,
    RequestToPay,
    RequestToPayDecision,
    ResolveAnswer,
    ResolveRequest,
    ReturnRequest,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
    id_valid,
)
from switch.core.results import Result

log = logging.getLogger("ponte.http")

_encode = msgspec.json.Encoder().encode
_ALIAS_TYPE = re.compile(r"^[A-Z_]{1,16}$")


class ParticipantKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A participant's registered JWS public key (PEM: P-256, RSA >= 2048 or Ed25519).
    With `signature_required`, a request with a body and no valid signature gets 401."""

    participant_id: Annotated[int, Meta(ge=1, le=core_limits.PARTICIPANT_ID_MAX)]
    public_key_pem: Annotated[str, Meta(max_length=limits.PUBLIC_KEY_PEM_BYTES_MAX)]
    signature_required: bool = False


class HttpConnectorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Read once (TOML/env) by the server. The switch's private key is named by path, so the
    config never holds (or prints) it."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    public_url: str = ""  # as participants reach it; the OpenAPI `servers` entry
    participant_keys: tuple[ParticipantKey, ...] = ()
    signing_key_path: str = ""  # PEM private key: callbacks are signed when set
    signing_algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = "ES256"
    signing_kid: str = ""
    callbacks: CallbackPolicy = CallbackPolicy()
    # Connections one remote address may hold (from accept, before any request).
    connections_per_address_max: Annotated[int, Meta(ge=1, le=limits.CONNECTIONS_MAX)] = (
        limits.CONNECTIONS_PER_ADDRESS_MAX_DEFAULT)
    # Answer 202 only once the request is journaled (True), or as soon as it is queued.
    accept_when_durable: bool = True


class _Durable:
    """The gateway's `Origin` for one request: completes the 202 when the sequencer has
    made the request durable. The server awaits it like any future."""

    __slots__ = ("future", "response")

    def __init__(self, loop: asyncio.AbstractEventLoop, response: Response) -> None:
        self.future = loop.create_future()
        self.response = response

    def sequenced(self, count: int) -> None:
        if not self.future.done():
            self.future.set_result(self.response)


def _path_id(raw: bytes) -> str | None:
    """A transfer or request id from a path segment, checked as the core's `Id` type."""
    if b"%" in raw:
        text = unquote(raw.decode("utf-8", "replace"))
    else:
        text = raw.decode("ascii", "replace")
    return text if id_valid(text) else None


def _path_participant(raw: bytes) -> int | None:
    if not raw.isdigit() or len(raw) > 8:
        return None
    value = int(raw)
    if not 1 <= value <= core_limits.PARTICIPANT_ID_MAX:
        return None
    return value


def _validation(error: msgspec.ValidationError) -> Response:
    return error_response(Result.VALIDATION_ERROR, str(error))


def _malformed(error: msgspec.DecodeError) -> Response:
    return error_response(Result.MALFORMED_SYNTAX, str(error))


def _decode_body(decoder, body: bytes):
    """The decoded body, or the 400 `Response` that says why it is not acceptable. One
    place for the two typed errors, so every handler answers bad JSON the same way."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        return _validation(error)
    except msgspec.DecodeError as error:
        return _malformed(error)
    except RecursionError:
        # msgspec bounds nesting with Python's recursion limit (about a thousand levels; no
        # body of ours nests more than 3): deeper is a malformed body, never a traceback.
        return _NESTED_TOO_DEEP


def _path_transfer(segments) -> tuple[int, str] | Response:
    """(participant id, transfer or request id) from `/{kind}/{participant}/{id}`, or the
    400 `Response` naming the segment that is not valid (participant checked first)."""
    participant_id = _path_participant(segments[1])
    if participant_id is None:
        return _BAD_PARTICIPANT
    item_id = _path_id(segments[2])
    if item_id is None:
        return _BAD_ID
    return participant_id, item_id


_NOT_JSON = error_response(Result.VALIDATION_ERROR, "Content-Type must be application/json",
                           status=415)
_NO_KEY = error_response(Result.VALIDATION_ERROR, "missing or unknown API key", status=401)
_SIGNATURE_REQUIRED = error_response(Result.INVALID_SIGNATURE,
                                     "this participant must sign request bodies (JWS)")
_NESTED_TOO_DEEP = error_response(Result.MALFORMED_SYNTAX, "nested deeper than the decoder "
                                                           "allows")
_STATUS_BUSY = error_response(Result.SERVER_BUSY, "status queries in flight")
_BAD_ID = error_response(Result.ID_INVALID, "path id is empty, too long or malformed")
_BAD_PARTICIPANT = error_response(Result.VALIDATION_ERROR, "path participant id is not valid")
_BAD_WINDOW = error_response(Result.VALIDATION_ERROR, "path window id is not valid")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _path_window(raw: bytes) -> int | None:
    """A settlement window id from a path segment: 1 to 18 digits, not zero."""
    if not raw.isdigit() or len(raw) > 18 or int(raw) == 0:
        return None
    return int(raw)


class HttpConnector:
    """The HTTP/JSON connector of one switch process. `start()` listens; `close()` drains."""

    def __init__(self, gateway, config: HttpConnectorConfig = HttpConnectorConfig()) -> None:
        self.gateway = gateway
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.keys: dict[int, VerifyKey] = {}
        # Status queries awaited per participant (limits.STATUS_QUERIES_IN_FLIGHT_...).
        self._status_queries: dict[int, int] = {}
        self.status_queries_peak = 0  # the most one participant ever had at once
        self.signature_required: set[int] = set()
        for entry in config.participant_keys:
            self.set_participant_key(entry.participant_id, entry.public_key_pem.encode(),
                                     entry.signature_required)
        self.signer: Signer | None = None
        if config.signing_key_path:
            with open(config.signing_key_path, "rb") as file:
                self.signer = Signer(file.read(), config.signing_algorithm, config.signing_kid)
        self.callbacks = CallbackSender(gateway.callback_url, policy=config.callbacks,
                                        signer=self.signer)
        self.document = build_document(config.public_url or "/")
        self._openapi = Response(200, _encode(self.document))
        self._docs = Response(200, render_docs(self.document).encode(),
                              content_type=b"text/html; charset=utf-8")
        self.server = HttpServer(self.handle, errors.protocol_error,
                                 connections_per_address_max=config.connections_per_address_max,
                                 large_bodies={b"settlement": limits.LARGE_REQUEST_BODY_BYTES_MAX})
        self._routes = self._route_table()
        decoders = msgspec.json.Decoder
        self._transfer_decoder = decoders(TransferRequest)
        self._return_decoder = decoders(ReturnRequest)
        self._rtp_decoder = decoders(RequestToPay)
        self._answer_decoder = decoders(PayeeAnswerBody)
        self._decision_decoder = decoders(RequestToPayDecisionBody)
        self._alias_decoder = decoders(AliasRegistration)
        self._reconciliation_decoder = decoders(ReconciliationRequest)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, sock=None) -> None:
        """Install the callback sender as the gateway's fallback sink and listen."""
        self.gateway.set_fallback_sink(self.callbacks)
        await self.server.start(self.config.host, self.config.port, sock=sock)
        log.info("http.listening host=%s port=%d", self.config.host, self.server.port)

    @property
    def port(self) -> int:
        return self.server.port

    async def close(self, grace_ms: int = 5_000) -> None:
        """Stop listening, let answers in flight leave, deliver queued callbacks (bounded
        by `grace_ms` each), close every connection."""
        await self.server.close(grace_ms)
        # One HTTP connector per switch: what is released after this stays queryable.
        self.gateway.set_fallback_sink(None)
        await self.callbacks.close(grace_ms)

    def register_metrics(self, registry) -> None:
        """ponte_http_* series in the server's registry, read at scrape time."""
        stats = self.callbacks.stats
        server = self.server
        registry.gauge("ponte_http_requests_total", "Requests the HTTP connector parsed.",
                       lambda: server.requests_total, kind="counter")
        registry.gauge("ponte_http_connections", "Open client connections to the HTTP "
                       "connector.", lambda: len(server.connections))
        for field, help_text in (
                ("delivered_total", "Callbacks a participant answered 2xx."),
                ("retried_total", "Callback attempts that failed and were scheduled again."),
                ("given_up_total", "Callbacks abandoned after every attempt failed."),
                ("refused_total", "Callbacks a participant refused with a 4xx."),
                ("dropped_queue_full_total", "Callbacks dropped: the participant's queue "
                                             "was full."),
                ("dropped_no_url_total", "Callbacks dropped: no callback URL registered.")):
            registry.gauge(f"ponte_http_callbacks_{field}", help_text,
                           lambda field=field: getattr(stats, field), kind="counter")
        registry.gauge("ponte_http_callbacks_pending", "Callbacks queued or in flight.",
                       lambda: self.callbacks.pending)

    def set_participant_key(self, participant_id: int, public_key_pem: bytes | None,
                            signature_required: bool = False) -> None:
        """Register (or with None, remove) a participant's JWS public key. Raises JwsError
        for a key that cannot be used."""
        if public_key_pem is None:
            self.keys.pop(participant_id, None)
            self.signature_required.discard(participant_id)
            return
        self.keys[participant_id] = VerifyKey(public_key_pem)
        if signature_required:
            self.signature_required.add(participant_id)
        else:
            self.signature_required.discard(participant_id)

    # -- routing -----------------------------------------------------------------------

    def _route_table(self) -> dict[tuple[bytes, bytes, int], object]:
        # (method, first path segment, number of segments) -> handler(request, segments).
        table = {}
        for method, template, name in ROUTES:
            segments = template.strip("/").split("/")
            table[(method.encode(), segments[0].encode(), len(segments))] = getattr(self, name)
        return table

    def handle(self, request: Request):
        """The server's handler: a Response now, or a future of one."""
        path = request.path
        segments = path[1:].split(b"/") if path[:1] == b"/" else [b""]
        method = b"GET" if request.method == b"HEAD" else request.method
        route = self._routes.get((method, segments[0], len(segments)))
        if route is None:
            if any(key[1:] == (segments[0], len(segments)) for key in self._routes):
                return error_response(Result.VALIDATION_ERROR, "method not allowed here",
                                      status=405)
            return error_response(Result.VALIDATION_ERROR, "no such resource", status=404)
        return route(request, segments)

    def _caller(self, request: Request) -> int | Response:
        """The authenticated participant, or the 401 to answer."""
        headers = request.headers
        value = headers.get(b"authorization")
        if value is not None:
            if value[:7].lower() != b"bearer ":
                return _NO_KEY
            key = value[7:].strip()
        else:
            key = headers.get(b"x-api-key")
            if key is None:
                return _NO_KEY
        try:
            participant_id = self.gateway.authenticate(key.decode("ascii"))
        except UnicodeDecodeError:
            return _NO_KEY
        if participant_id is None:
            return _NO_KEY
        # This participant uses the HTTP door: what the switch held for it after a restart
        # goes to its callback URL now (docs/operations.md).
        self.gateway.door_used(participant_id)
        return participant_id

    def _body_caller(self, request: Request) -> int | Response:
        """Authenticate a request with a JSON body and check its signature."""
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        content_type = request.headers.get(b"content-type", b"")
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != b"application/json" and not (
                media.startswith(b"application/") and media.endswith(b"+json")):
            return _NOT_JSON
        key = self.keys.get(caller)
        if key is None:
            if caller in self.gateway.signature_policy:
                # Its policy (declared for another door) requires signatures, and this
                # door holds no key to check them with: refused, never let through.
                return _SIGNATURE_REQUIRED
            return caller  # no registered key: a signature, if any, cannot be checked
        try:
            found = signature_from_headers(request.headers)
            if found is None:
                if caller in self.signature_required or caller in self.gateway.signature_policy:
                    return _SIGNATURE_REQUIRED
                return caller
            uri = request.path if request.query is None else request.path + b"?" + request.query
            verify_request(found[0], found[1], request.body, key, method=request.method,
                           uri=uri)
        except JwsMalformed as error:
            # Unreadable (not ASCII, not base64url, not JSON): a bad request, not a bad
            # signature; either way nothing is recorded.
            return error_response(Result.INVALID_SIGNATURE, str(error), status=400)
        except JwsError as error:
            return error_response(Result.INVALID_SIGNATURE, str(error))
        return caller

    def _submit(self, caller: int, message, accepted: Accepted):
        response = Response(202, _encode(accepted))
        if not self.config.accept_when_durable:
            result = self.gateway.submit(caller, message)
            return response if result is Result.OK else error_response(result)
        origin = _Durable(self.loop, response)
        result = self.gateway.submit(caller, message, origin)
        if result is not Result.OK:
            return error_response(result)
        return origin.future

    # -- transfers ---------------------------------------------------------------------

    def create_transfer(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        message = _decode_body(self._transfer_decoder, request.body)
        if type(message) is Response:
            return message
        if message.payee is None:
            return error_response(Result.VALIDATION_ERROR, "Expected `object`, got `null` - "
                                  "at `$.payee`")
        return self._submit(caller, message, Accepted(
            kind="transfer", id=message.transfer_id,
            status_path=f"/transfers/{caller}/{message.transfer_id}"))

    def answer_credit_request(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        path = _path_transfer(segments)
        if type(path) is Response:
            return path
        payer_id, transfer_id = path
        body = _decode_body(self._answer_decoder, request.body)
        if type(body) is Response:
            return body
        message = PayeeAnswer(payer_participant_id=payer_id, transfer_id=transfer_id,
                              accepted=body.accepted, reason=body.reason)
        return self._submit(caller, message, Accepted(
            kind="payee_answer", id=transfer_id,
            status_path=f"/transfers/{payer_id}/{transfer_id}"))

    def get_transfer(self, request: Request, segments):
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        path = _path_transfer(segments)
        if type(path) is Response:
            return path
        payer_id, transfer_id = path
        waiting = self._status_queries.get(caller, 0)
        if waiting >= limits.STATUS_QUERIES_IN_FLIGHT_PER_PARTICIPANT_MAX:
            # Answered now and never queued: a flood costs the flooder, not the others.
            return _STATUS_BUSY
        self._status_queries[caller] = waiting + 1
        if waiting + 1 > self.status_queries_peak:
            self.status_queries_peak = waiting + 1
        answer = asyncio.ensure_future(self._status(caller, StatusQuery(
            payer_participant_id=payer_id, transfer_id=transfer_id)))
        # A done callback runs however the query ends (answered, failed, cancelled).
        answer.add_done_callback(lambda _, caller=caller: self._status_done(caller))
        return answer

    def _status_done(self, caller: int) -> None:
        left = self._status_queries[caller] - 1
        if left:
            self._status_queries[caller] = left
        else:
            del self._status_queries[caller]

    async def _status(self, caller: int, query: StatusQuery) -> Response:
        answer = await self.gateway.status(caller, query)
        if type(answer) is TransferOutcome:
            return Response(200, _encode(answer))
        if type(answer) is Refused or type(answer) is ErrorAnswer:
            return error_response(answer.result, getattr(answer, "detail", ""))
        log.error("http.status_unexpected type=%s", type(answer).__name__)
        return error_response(Result.INTERNAL_SERVER_ERROR)

    def create_return(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        message = _decode_body(self._return_decoder, request.body)
        if type(message) is Response:
            return message
        # A return is a transfer paid by its sender (the original payee): its id is scoped
        # by the caller like any transfer of theirs.
        return self._submit(caller, message, Accepted(
            kind="return", id=message.transfer_id,
            status_path=f"/transfers/{caller}/{message.transfer_id}"))

    # -- request-to-pay ----------------------------------------------------------------

    def create_request_to_pay(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        message = _decode_body(self._rtp_decoder, request.body)
        if type(message) is Response:
            return message
        return self._submit(caller, message, Accepted(kind="request_to_pay",
                                                      id=message.request_id))

    def decide_request_to_pay(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        path = _path_transfer(segments)
        if type(path) is Response:
            return path
        payee_id, request_id = path
        body = _decode_body(self._decision_decoder, request.body)
        if type(body) is Response:
            return body
        if body.approved and not body.transfer_id:
            # At the door, as the docs say, not after a 202 (the core refuses it too).
            return error_response(Result.VALIDATION_ERROR, "$.transfer_id: required when "
                                  "approving (the id of the new transfer)")
        message = RequestToPayDecision(
            payee_participant_id=payee_id, request_id=request_id, approved=body.approved,
            transfer_id=body.transfer_id, expires_at_ns=body.expires_at_ns,
            payer_account_ref=body.payer_account_ref, payer_user_ref=body.payer_user_ref)
        status_path = f"/transfers/{caller}/{body.transfer_id}" if body.approved else ""
        return self._submit(caller, message, Accepted(
            kind="request_to_pay_decision", id=request_id, status_path=status_path))

    # -- aliases -----------------------------------------------------------------------

    def _alias_path(self, segments) -> tuple[str, str] | Response:
        alias_type = segments[1].decode("ascii", "replace")
        if _ALIAS_TYPE.match(alias_type) is None:
            return error_response(Result.VALIDATION_ERROR, "alias_type is not valid")
        alias_value = unquote(segments[2].decode("utf-8", "replace"))
        if not alias_value or len(alias_value) > core_limits.REFERENCE_LENGTH_MAX:
            return error_response(Result.VALIDATION_ERROR, "alias_value is empty or too long")
        return alias_type, alias_value

    def register_alias(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        body = _decode_body(self._alias_decoder, request.body)
        if type(body) is Response:
            return body
        return self._alias_answer(self.gateway.register_alias(
            caller, alias_type=body.alias_type, alias_value=body.alias_value,
            account_ref=body.account_ref, owner_national_id=body.owner_national_id,
            display_name=body.display_name, owner_kind=body.owner_kind))

    def delete_alias(self, request: Request, segments):
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        alias = self._alias_path(segments)
        if type(alias) is Response:
            return alias
        return self._alias_answer(self.gateway.delete_alias(
            caller, alias_type=alias[0], alias_value=alias[1]))

    async def _alias_answer(self, pending) -> Response:
        answer = await pending
        if answer.result is Result.OK:
            return Response(200, _encode(answer))
        if answer.result is Result.LOOKUP_RATE_LIMITED:  # directory writes are charged too
            return rate_limited_response(answer.retry_after_ms)
        detail = f"field {answer.field}" if answer.field else ""
        if answer.directory_result:
            detail += f" (directory result {answer.directory_result})"
        return error_response(answer.result, detail.strip())

    def resolve_alias(self, request: Request, segments):
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        alias = self._alias_path(segments)
        if type(alias) is Response:
            return alias
        user_ref = ""
        if request.query:
            values = parse_qs(request.query.decode("utf-8", "replace")).get("payer_user_ref")
            if values:
                user_ref = values[0]
                if len(user_ref) > core_limits.REFERENCE_LENGTH_MAX:
                    return error_response(Result.VALIDATION_ERROR,
                                          "payer_user_ref is too long")
        try:
            party = msgspec.convert({"alias_type": alias[0], "alias_value": alias[1]}, Party)
        except msgspec.ValidationError as error:
            return _validation(error)
        return self._resolve(caller, ResolveRequest(alias=party, payer_user_ref=user_ref))

    async def _resolve(self, caller: int, message: ResolveRequest) -> Response:
        answer: ResolveAnswer = await self.gateway.resolve(caller, message)
        if answer.result is Result.OK:
            return Response(200, _encode(answer))
        if answer.result is Result.LOOKUP_RATE_LIMITED:
            return rate_limited_response(answer.retry_after_ms)
        return error_response(answer.result)

    def whoami(self, request: Request, segments):
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        view = self.gateway.participant(caller)
        if view is None:  # a key issued before the operator added the participant
            return error_response(Result.PAYER_NOT_FOUND, "participant not registered")
        return Response(200, _encode(view))

    # -- settlement: a participant's own windows, statements, reconciliation -----------------
    # Served by the settlement service the composition root gives the gateway
    # (`gateway.settlement`, switch/settlement/service.py); the participant is always the
    # API key's, so a participant can only ever read its own entries.

    def _settlement_port(self, segments):
        if segments[1] != b"windows" or (len(segments) == 4 and segments[3] not in (
                b"statement", b"reconciliation")):
            return error_response(Result.VALIDATION_ERROR, "no such resource", status=404)
        port = getattr(self.gateway, "settlement", None)
        if port is None:
            return error_response(Result.SERVICE_UNAVAILABLE, "settlement is not running")
        return port

    @staticmethod
    def _settlement_refusal(error) -> Response:
        return error_response(error.result, error.detail)

    def settlement_windows(self, request: Request, segments):
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        port = self._settlement_port(segments)
        if type(port) is Response:
            return port
        query = parse_qs((request.query or b"").decode("ascii", "replace"))
        currency = query.get("currency", [""])[0]
        if currency and not _CURRENCY.match(currency):
            return error_response(Result.VALIDATION_ERROR, "currency is three capital letters")
        return Response(200, _encode(port.participant_windows(caller, currency)))

    def settlement_statement(self, request: Request, segments):
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        port = self._settlement_port(segments)
        if type(port) is Response:
            return port
        window_id = _path_window(segments[2])
        if window_id is None:
            return _BAD_WINDOW
        query = parse_qs((request.query or b"").decode("ascii", "replace"))
        return self._statement(port, caller, window_id, query.get("format", ["camt053"])[0])

    async def _statement(self, port, caller: int, window_id: int, fmt: str):
        try:
            media_type, name, chunks = await port.statement(caller, window_id, fmt[:16])
        except Exception as error:  # noqa: BLE001 - the port's typed refusal
            if not hasattr(error, "result"):
                raise
            return self._settlement_refusal(error)
        return StreamedResponse(200, chunks, media_type.encode(), headers=(
            (b"content-disposition", f'attachment; filename="{name}"'.encode()),))

    def settlement_reconciliation(self, request: Request, segments):
        caller = self._body_caller(request)
        if type(caller) is not int:
            return caller
        port = self._settlement_port(segments)
        if type(port) is Response:
            return port
        window_id = _path_window(segments[2])
        if window_id is None:
            return _BAD_WINDOW
        body = _decode_body(self._reconciliation_decoder, request.body)
        if type(body) is Response:
            return body
        return self._reconcile(port, caller, window_id, body)

    async def _reconcile(self, port, caller: int, window_id: int, body) -> Response:
        try:
            report = await port.reconcile(caller, window_id, body.transfers)
        except Exception as error:  # noqa: BLE001 - the port's typed refusal
            if not hasattr(error, "result"):
                raise
            return self._settlement_refusal(error)
        return Response(200, _encode(report))

    # -- public ------------------------------------------------------------------------

    def health(self, request: Request, segments):
        accepting = bool(self.gateway.accepting)
        body = _encode(Health(accepting=accepting, version=switch.__version__))
        return Response(200 if accepting else 503, body)

    def openapi(self, request: Request, segments):
        return self._openapi

    def docs(self, request: Request, segments):
        return self._docs


async def start_http_connector(gateway, config: HttpConnectorConfig,
                               registry=None) -> HttpConnector:
    """What `SwitchServer` calls: build the connector, register its metrics in the server's
    `MetricsRegistry` (if given), install the callback sender, listen. Stop it with
    `await connector.close()` before the gateway closes."""
    connector = HttpConnector(gateway, config)
    if registry is not None:
        connector.register_metrics(registry)
    await connector.start()
    return connector


# Every route: (method, path template, handler method). `openapi.PATHS` documents the same.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("POST", "/aliases", "register_alias"),
    ("GET", "/aliases/{alias_type}/{alias_value}", "resolve_alias"),
    ("DELETE", "/aliases/{alias_type}/{alias_value}", "delete_alias"),
    ("POST", "/transfers", "create_transfer"),
    ("GET", "/transfers/{payer_participant_id}/{transfer_id}", "get_transfer"),
    ("PUT", "/transfers/{payer_participant_id}/{transfer_id}", "answer_credit_request"),
    ("POST", "/returns", "create_return"),
    ("POST", "/requests-to-pay", "create_request_to_pay"),
    ("PUT", "/requests-to-pay/{payee_participant_id}/{request_id}", "decide_request_to_pay"),
    ("GET", "/participant", "whoami"),
    ("GET", "/settlement/windows", "settlement_windows"),
    ("GET", "/settlement/windows/{window_id}/statement", "settlement_statement"),
    ("POST", "/settlement/windows/{window_id}/reconciliation", "settlement_reconciliation"),
    ("GET", "/health", "health"),
    ("GET", "/openapi.json", "openapi"),
    ("GET", "/docs", "docs"),
)
