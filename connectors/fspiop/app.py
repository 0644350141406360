"""The FSPIOP 1.1 hub: any Mojaloop-ready DFSP pays and is paid through Ponte (docs/fspiop.md).

`FspiopConnector(gateway, config)` serves the hub side of the FSPIOP API on the HTTP
connector's server (`connectors.http.server`), and attaches a gateway `Sink` for every
FSPIOP participant, so the core's messages for it (credit requests, outcomes, refusals)
become FSPIOP requests to its endpoint, sent by the HTTP connector's callback lanes
(retries, back-off, bounded queues).

- Authentication: the participant's API key (`Authorization: Bearer`, the SDK's static
  WSO2 token) or its TLS client certificate (optional mTLS); `FSPIOP-Source` must be the
  authenticated participant's FSP id; `FSPIOP-Signature` is verified with the participant's
  registered key on every request with a body.
- Conversations that move no money stay here: party lookups (the directory is the oracle,
  the payee DFSP gives the party's details), quotes, transaction requests are forwarded
  with their original bytes and signatures. Transfers go through the core: POST /transfers
  is a `TransferRequest` (condition and body digest included), the payee's fulfilment a
  `PayeeAnswer`; the core reserves, checks the fulfilment, commits or voids.
- Participants on Ponte's other protocols: Ponte answers lookups and quotes on their
  behalf and produces the condition and fulfilment (`ilp.hub_fulfilment`); an FSPIOP payee
  paid by them is quoted and sent the prepare by the hub; their requests-to-pay reach an
  FSPIOP payer as transaction requests, whose prepare approves them, and a DFSP's
  transaction request to them is a core request-to-pay.
- Prepares are kept in a store (`connectors/fspiop/store.py`) until final, so a credit
  request re-sent after a restart reaches the payee as the payer signed it.

It must never decide an outcome (the core does), never take a participant's identity from
a header or body (only from its credential), never change anything for a request it
answered with an error, and never log a key, a signature or a party identifier.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import ssl
import time
import uuid
from collections import OrderedDict
from typing import Annotated
from urllib.parse import unquote

import msgspec
from msgspec import Meta

import switch
from connectors.fspiop import errors, ilp, jws, limits, wire
from connectors.fspiop.store import PrepareStore, PrepareWriter, StoredPrepare, decode_prepare
from connectors.fspiop.errors import code_of, error_body
from connectors.http.callbacks import CallbackPolicy, CallbackSender
from connectors.http.jws import JwsError, JwsMalformed, Signer, VerifyKey
from connectors.http.server import HttpServer, Request, Response
from switch.core import limits as core_limits
from switch.core.messages import (
    CallbackUrl,
    CreditRequest,
    ErrorAnswer,
    PayeeAnswer,
    Party,
    Refused,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    RequestType,
    ResolveRequest,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import RequestToPayState, Result, TransferState

log = logging.getLogger("ponte.fspiop")

_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder()
_NS = uuid.UUID("6b1f9c2e-4c1a-5e7d-9a43-2f0c6d1e8b57")  # Ponte's namespace for derived ids
_RESOURCES = frozenset({b"parties", b"participants", b"quotes", b"transfers",
                        b"transactionRequests"})
_VERSIONS = frozenset({b"1", b"1.0", b"1.1"})
_SEND_VERSION = "1.1"
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_FORWARDED = (b"content-type", b"accept", b"date", b"fspiop-source", b"fspiop-destination",
              b"fspiop-signature", b"fspiop-uri", b"fspiop-http-method",
              b"fspiop-encryption", b"x-forwarded-for")
_FINAL = (TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED)
# Refusals of a resend whose first copy the switch holds: its prepare is still needed.
_ALREADY_RECORDED = frozenset({Result.EXISTS_WITH_DIFFERENT_AMOUNT,
                               Result.EXISTS_WITH_DIFFERENT_BODY,
                               Result.EXISTS_WITH_DIFFERENT_CURRENCY,
                               Result.EXISTS_WITH_DIFFERENT_PARTY})


class FspiopParticipant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An FSPIOP DFSP: its FSP id, the base URL of its FSPIOP API (where the hub sends
    `/parties`, `/quotes`, `/transfers`... requests and callbacks), and its JWS public key.
    A participant of another protocol may be given an FSP id alone (no endpoint): the name
    FSPIOP DFSPs see it by."""

    participant_id: Annotated[int, Meta(ge=1, le=core_limits.PARTICIPANT_ID_MAX)]
    fsp_id: wire.FspId
    endpoint: CallbackUrl = ""
    public_key_pem: wire.PublicKeyPem = ""
    signature_required: bool = True


class FspiopConnectorConfig(msgspec.Struct, frozen=True, kw_only=True,
                            forbid_unknown_fields=True):
    """Read once with the server's configuration (`[fspiop]`). Keys and the ILP secret are
    named by path, so the configuration never holds or prints them."""

    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8444
    hub_fsp_id: wire.FspId = "ponte"  # FSPIOP-Source of what the hub writes itself
    signing_key_path: str = ""  # PEM private key (RSA for RS256): the hub's JWS key
    signing_algorithm: str = "RS256"
    ilp_secret_path: str = ""  # secret for fulfilments made for payees without ILP
    participants: tuple[FspiopParticipant, ...] = ()
    # Participants of other protocols appear to FSPIOP DFSPs as `<prefix><participant id>`
    # unless given an FSP id.
    other_fsp_prefix: Annotated[str, Meta(max_length=16, pattern=r"^[A-Za-z0-9._-]*$")] = (
        "ponte-")
    quote_expiry_s: Annotated[int, Meta(ge=1, le=3600)] = 60
    callbacks: CallbackPolicy = CallbackPolicy()
    tls_cert: str = ""  # PEM chain + key: HTTPS; with tls_client_ca, mutual TLS
    tls_key: str = ""
    tls_client_ca: str = ""
    connections_per_address_max: Annotated[int, Meta(ge=1, le=4096)] = 256

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("fspiop tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("fspiop tls_client_ca needs tls_cert/tls_key")


class _Dfsp:
    __slots__ = ("participant_id", "fsp_id", "endpoint", "key", "signature_required", "sink")

    def __init__(self, entry: FspiopParticipant) -> None:
        self.participant_id = entry.participant_id
        self.fsp_id = entry.fsp_id
        self.endpoint = entry.endpoint
        self.key = VerifyKey(entry.public_key_pem.encode()) if entry.public_key_pem else None
        self.signature_required = entry.signature_required and self.key is not None
        self.sink: _DfspSink | None = None


class _DfspSink:
    """The gateway Sink of one FSPIOP participant."""

    __slots__ = ("connector", "participant_id")

    def __init__(self, connector: FspiopConnector, participant_id: int) -> None:
        self.connector = connector
        self.participant_id = participant_id

    def deliver(self, message) -> None:
        self.connector._outbound(self.participant_id, message)

    def flush(self) -> None:
        self.connector.sender.flush()

    def close(self, reason: str) -> None:
        """Nothing to end: every FSPIOP request carries its credential."""


class _Prepare:
    """A payer's POST /transfers, kept to forward it with its signature (in memory, and in
    the prepare store until the transfer is final: a restart re-sends it from there)."""

    __slots__ = ("body", "headers", "payee_id", "transaction_id", "hub_fulfilment")

    def __init__(self, body, headers, payee_id, transaction_id, hub_fulfilment) -> None:
        self.body = body
        self.headers = headers
        self.payee_id = payee_id
        self.transaction_id = transaction_id
        self.hub_fulfilment = hub_fulfilment


class _Flight:
    """A transfer forwarded to an FSPIOP payee, by its FSPIOP transfer id."""

    __slots__ = ("payer_id", "payee_id", "transfer_id", "condition", "reserved", "answer",
                 "hub_driven", "credit", "quote_id")

    def __init__(self, payer_id: int, payee_id: int, transfer_id: str, condition: str,
                 hub_driven: bool = False, credit: CreditRequest | None = None) -> None:
        self.payer_id = payer_id
        self.payee_id = payee_id
        self.transfer_id = transfer_id  # Ponte's (scoped by the payer)
        self.condition = condition
        self.reserved = False  # the payee answered RESERVED: it wants PATCH at commit
        self.answer: tuple[bytes, tuple] | None = None  # the payee's PUT, to forward
        self.hub_driven = hub_driven  # the payer does not speak FSPIOP: the hub quotes
        self.credit = credit
        self.quote_id = ""


class _Rtp:
    """A core request-to-pay sent to an FSPIOP payer as POST /transactionRequests, by its
    transactionRequestId: what its quote and prepare must match."""

    __slots__ = ("payee_id", "request_id", "payer_id", "amount_minor", "currency",
                 "transfer_id")

    def __init__(self, notice: RequestToPayNotice, payer_id: int) -> None:
        self.payee_id = notice.payee_participant_id
        self.request_id = notice.request_id
        self.payer_id = payer_id
        self.amount_minor = notice.amount_minor
        self.currency = notice.currency
        self.transfer_id = ""  # the prepare that approves it, once sent


class _Bounded(OrderedDict):
    """An insertion-ordered table that drops its oldest entries past `maximum`."""

    def __init__(self, maximum: int) -> None:
        super().__init__()
        self.maximum = maximum

    def put(self, key, value) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.maximum:
            self.popitem(last=False)


class _Durable:
    """Completes the answer when the sequencer has made the request durable (and, with
    `stored_too`, the prepare store has made the prepare durable)."""

    __slots__ = ("future", "response", "waiting")

    def __init__(self, loop, response: Response, stored_too: bool = False) -> None:
        self.future = loop.create_future()
        self.response = response
        self.waiting = 2 if stored_too else 1

    def sequenced(self, count: int) -> None:
        self._part_done()

    def stored(self) -> None:
        self._part_done()

    def _part_done(self) -> None:
        self.waiting -= 1
        if self.waiting == 0 and not self.future.done():
            self.future.set_result(self.response)


_ACCEPTED = Response(202, b"")
_OK = Response(200, b"")


def _error(code: str, detail: str, status: int | None = None) -> Response:
    return Response(status or errors.status_of_code(code), error_body(code, detail))


def protocol_error(status: int, detail: str) -> Response:
    """The server's error factory: framing failures as FSPIOP error bodies."""
    code = {413: errors.PAYLOAD_TOO_LARGE, 404: errors.UNKNOWN_URI, 503: "2003",
            500: "2001", 408: "1000"}.get(status, "3101")
    return Response(status, error_body(code, detail))


def derived_id(kind: str, participant_id: int, item_id: str) -> str:
    """A stable UUID for an id of another protocol (FSPIOP ids are UUIDs)."""
    return str(uuid.uuid5(_NS, f"{kind}/{participant_id}/{item_id}"))


_CORRELATION_ID = re.compile(wire.CORRELATION_ID_PATTERN).match


def _party_of_account(account_ref: str) -> tuple[str, str]:
    """An FSPIOP party for a directory account: aliases registered through the oracle (and
    transaction requests) keep "<party type>/<identifier>" as their account, the party as
    the DFSP knows it; any other account is an ACCOUNT_ID."""
    party_type, _, identifier = account_ref.partition("/")
    if party_type in wire.PARTY_TO_ALIAS and identifier:
        return party_type, identifier
    return "ACCOUNT_ID", account_ref or "unknown"


def _now_text() -> str:
    return wire.time_text(time.time_ns())


class FspiopConnector:
    """See the module docstring. `start()` listens; `close()` drains."""

    def __init__(self, gateway, config: FspiopConnectorConfig = FspiopConnectorConfig(),
                 store: PrepareStore | None = None) -> None:
        """`store`: where prepares outlive a restart (connectors/fspiop/store.py); without
        one a prepare still waiting for its payee when the switch restarts is rejected."""
        self.gateway = gateway
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.signer: Signer | None = None
        if config.signing_key_path:
            with open(config.signing_key_path, "rb") as file:
                self.signer = Signer(file.read(), config.signing_algorithm)
        if config.ilp_secret_path:
            with open(config.ilp_secret_path, "rb") as file:
                self.ilp_secret = file.read().strip()
        else:
            import secrets as _secrets

            # Without a configured secret the fulfilments made for non-ILP payees do not
            # survive a restart (see docs/fspiop.md): configure one in production.
            self.ilp_secret = _secrets.token_bytes(32)
        self.dfsps: dict[int, _Dfsp] = {}
        self.by_fsp: dict[str, _Dfsp] = {}
        self.sender = CallbackSender(self._endpoint, policy=config.callbacks)
        self.server = HttpServer(self.handle, protocol_error,
                                 connections_per_address_max=config.connections_per_address_max)
        self._lookups = _Bounded(limits.PARTY_LOOKUPS_PENDING_MAX)
        self._quotes = _Bounded(limits.QUOTES_PENDING_MAX)
        self._requests = _Bounded(limits.TRANSACTION_REQUESTS_PENDING_MAX)
        # Core requests-to-pay sent to FSPIOP payers, by transactionRequestId; and the
        # transactions their payers quoted under them, by transactionId.
        self._rtps = _Bounded(limits.TRANSACTION_REQUESTS_PENDING_MAX)
        self._rtp_transactions = _Bounded(limits.QUOTES_PENDING_MAX)
        self._prepares = _Bounded(limits.TRANSFERS_REMEMBERED_MAX)
        self._flights = _Bounded(limits.TRANSFERS_REMEMBERED_MAX)
        # FSPIOP transfer id -> (payer id, Ponte transfer id, payee id) of final transfers.
        self._finished = _Bounded(limits.FINISHED_REMEMBERED_MAX)
        self._status_queries: dict[int, int] = {}
        self.writer = PrepareWriter(store) if store is not None else None
        self._loading: list[tuple[int, CreditRequest]] = []  # re-sent credits, prepare read
        self._loader: asyncio.Task | None = None
        self._pruner: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.counters = {"requests_total": 0, "refused_total": 0, "forwarded_total": 0,
                         "hub_answers_total": 0}
        self._transfer_decoder = msgspec.json.Decoder(wire.TransfersPostRequest)
        self._fulfil_decoder = msgspec.json.Decoder(wire.TransfersIDPutResponse)
        self._error_decoder = msgspec.json.Decoder(wire.ErrorInformationObject)
        self._quote_decoder = msgspec.json.Decoder(wire.QuotesPostRequest)
        self._quote_answer_decoder = msgspec.json.Decoder(wire.QuotesIDPutResponse)
        self._party_decoder = msgspec.json.Decoder(wire.PartiesTypeIDPutResponse)
        self._oracle_decoder = msgspec.json.Decoder(wire.ParticipantsTypeIDSubIDPostRequest)
        self._trq_decoder = msgspec.json.Decoder(wire.TransactionRequestsPostRequest)
        self._trq_answer_decoder = msgspec.json.Decoder(wire.TransactionRequestsIDPutResponse)
        with open(__file__.rsplit("/", 1)[0] + "/fspiop-1.1-openapi3.yaml", "rb") as file:
            self._openapi = Response(200, file.read(), content_type=b"application/yaml")
        for entry in config.participants:
            self.set_participant(entry)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self, *, sock=None) -> None:
        context = None
        config = self.config
        if config.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(config.tls_cert, config.tls_key)
            if config.tls_client_ca:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(config.tls_client_ca)
        await self.server.start(config.host, config.port, sock=sock, ssl=context)
        log.info("fspiop.listening host=%s port=%d", config.host, self.server.port)
        if self.writer is not None:
            self._pruner = asyncio.ensure_future(self._prune_loop())

    async def _prune_loop(self) -> None:
        """Rows a crash left behind (the transfer went final, its delete was not written)
        go once their prepare expired long enough ago; at start, then periodically."""
        while True:
            try:
                pruned = await self.writer.store.prune(
                    time.time_ns() - limits.PREPARES_KEPT_PAST_EXPIRY_S * 10**9)
                if pruned:
                    log.info("fspiop.prepares_pruned count=%d", pruned)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("fspiop.prepare_prune_failed")
            await asyncio.sleep(limits.PREPARES_PRUNE_INTERVAL_S)

    @property
    def port(self) -> int:
        return self.server.port

    async def close(self, grace_ms: int = 5_000) -> None:
        await self.server.close(grace_ms)
        for dfsp in self.dfsps.values():
            if dfsp.sink is not None:
                self.gateway.detach(dfsp.participant_id, dfsp.sink)
        for task in list(self._tasks) + [self._pruner, self._loader]:
            if task is not None:
                task.cancel()
        await self.sender.close(grace_ms)
        if self.writer is not None:
            await self.writer.close()

    def register_metrics(self, registry) -> None:
        for name, help_text in (
                ("requests_total", "FSPIOP requests the hub parsed."),
                ("refused_total", "FSPIOP requests answered with an error."),
                ("forwarded_total", "FSPIOP requests forwarded with their signature."),
                ("hub_answers_total", "FSPIOP requests the hub wrote itself.")):
            registry.gauge(f"ponte_fspiop_{name}", help_text,
                           lambda name=name: self.counters[name], kind="counter")

    # -- participants ------------------------------------------------------------------

    def check_participant(self, entry: FspiopParticipant) -> _Dfsp:
        """What `set_participant` would register, changing nothing. Raises ValueError
        (a field out of its grammar, an unusable key, an FSP id taken by another)."""
        try:
            entry = msgspec.convert(msgspec.to_builtins(entry), FspiopParticipant)
        except msgspec.ValidationError as error:
            raise ValueError(str(error)) from None
        other = self.by_fsp.get(entry.fsp_id)
        if other is not None and other.participant_id != entry.participant_id:
            raise ValueError(f"FSP id {entry.fsp_id!r} belongs to another participant")
        if entry.fsp_id == self.config.hub_fsp_id:
            raise ValueError("that FSP id is the hub's")
        try:
            return _Dfsp(entry)
        except JwsError as error:
            raise ValueError(str(error)) from None

    def participant_entry(self, participant_id: int, settings: dict) -> FspiopParticipant:
        """An operator's `fspiop_participant` proposal (plain fields) as an entry; ValueError
        for a value out of its grammar."""
        try:
            return msgspec.convert({**settings, "participant_id": participant_id},
                                   FspiopParticipant)
        except msgspec.ValidationError as error:
            raise ValueError(str(error)) from None

    def set_participant(self, entry: FspiopParticipant) -> None:
        """Register or replace an FSPIOP participant (configuration, or an operator's
        `fspiop_participant` proposal: from the next request on, no restart). The new key
        replaces the old at once: a request signed with the old one is refused (3105).
        Raises ValueError (see `check_participant`) and then changes nothing."""
        dfsp = self.check_participant(entry)
        old = self.dfsps.pop(dfsp.participant_id, None)
        if old is not None:
            self.by_fsp.pop(old.fsp_id, None)
            if old.sink is not None:
                self.gateway.detach(old.participant_id, old.sink)
        self.dfsps[dfsp.participant_id] = dfsp
        self.by_fsp[dfsp.fsp_id] = dfsp
        if dfsp.endpoint:
            dfsp.sink = _DfspSink(self, dfsp.participant_id)
            self.gateway.attach(dfsp.participant_id, dfsp.sink)

    def _endpoint(self, participant_id: int) -> str:
        dfsp = self.dfsps.get(participant_id)
        return dfsp.endpoint if dfsp is not None else ""

    def fsp_of(self, participant_id: int) -> str:
        dfsp = self.dfsps.get(participant_id)
        if dfsp is not None:
            return dfsp.fsp_id
        return f"{self.config.other_fsp_prefix}{participant_id}"

    def participant_of_fsp(self, fsp_id: str) -> int | None:
        dfsp = self.by_fsp.get(fsp_id)
        if dfsp is not None:
            return dfsp.participant_id
        prefix = self.config.other_fsp_prefix
        rest = fsp_id[len(prefix):]
        if prefix and fsp_id.startswith(prefix) and rest.isdigit() and len(rest) <= 8:
            participant_id = int(rest)
            if participant_id not in self.dfsps and self.gateway.participant(
                    participant_id) is not None:
                return participant_id
        return None

    def _speaks_fspiop(self, participant_id: int) -> bool:
        dfsp = self.dfsps.get(participant_id)
        return dfsp is not None and bool(dfsp.endpoint)

    # -- sending -----------------------------------------------------------------------

    def _send(self, to_id: int, method: bytes, path: str, body: bytes | None,
              headers: tuple, kind: str) -> None:
        self.sender.deliver_request(to_id, method, path.encode(), body, headers, kind)

    def _forward(self, to_id: int, request: Request, kind: str, body: bytes | None = None,
                 path: str | None = None) -> None:
        headers = tuple((name, request.headers[name]) for name in _FORWARDED
                        if name in request.headers)
        self.counters["forwarded_total"] += 1
        self._send(to_id, request.method, path or request.path.decode(),
                   request.body if body is None else body, headers, kind)
        self.sender.flush()

    def _hub_send(self, to_id: int, method: str, path: str, payload, resource: str,
                  kind: str, source: str = "") -> None:
        """A request the hub writes itself: its headers, signed with the hub's key."""
        body = None if payload is None else (
            payload if type(payload) is bytes else _encode(payload))
        date = email.utils.formatdate(usegmt=True)
        destination = self.fsp_of(to_id)
        source = source or self.config.hub_fsp_id
        media = f"application/vnd.interoperability.{resource}+json;version={_SEND_VERSION}"
        headers = [(b"content-type", media.encode()), (b"date", date.encode()),
                   (b"fspiop-source", source.encode()),
                   (b"fspiop-destination", destination.encode())]
        if method != "PUT":
            headers.append((b"accept", f"application/vnd.interoperability.{resource}+json;"
                                       f"version=1".encode()))
        if self.signer is not None and body is not None:
            headers += [(b"fspiop-uri", path.encode()), (b"fspiop-http-method", method.encode()),
                        (b"fspiop-signature", jws.sign(
                            self.signer, body, method=method, uri=path, source=source,
                            destination=destination, date=date))]
        self.counters["hub_answers_total"] += 1
        self._send(to_id, method.encode(), path, body, tuple(headers), kind)
        self.sender.flush()

    def _hub_error(self, to_id: int, path: str, resource: str, code: str, detail: str) -> None:
        self._hub_send(to_id, "PUT", path + "/error", error_body(code, detail), resource,
                       "error")

    def _spawn(self, coroutine) -> Response:
        """Run a conversation step that waits on the directory or the sequencer; answers
        202, or 503 without starting it when too many wait already (bounded)."""
        if len(self._tasks) >= limits.TASKS_IN_FLIGHT_MAX:
            coroutine.close()
            return _error("2005", "too many requests in flight", 503)
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _ACCEPTED

    # -- the request pipeline ----------------------------------------------------------

    def handle(self, request: Request):
        self.counters["requests_total"] += 1
        path = request.path
        if path == b"/openapi.yaml" and request.method in (b"GET", b"HEAD"):
            return self._openapi
        if path == b"/health":
            return Response(200 if self.gateway.accepting else 503, _encode(
                {"accepting": bool(self.gateway.accepting), "version": switch.__version__}))
        segments = path[1:].split(b"/") if path[:1] == b"/" else [b""]
        resource = segments[0]
        if resource not in _RESOURCES:
            return self._refuse(errors.UNKNOWN_URI, "no such resource", 404)
        caller = self._enter(request, resource)
        if type(caller) is Response:
            self.counters["refused_total"] += 1
            return caller
        try:
            segments = [unquote(s.decode("utf-8")) for s in segments]
        except UnicodeDecodeError:
            return self._refuse("3101", "path is not UTF-8")
        route = _ROUTES.get((request.method, resource, len(segments),
                             segments[-1] == "error"))
        if route is None:
            return self._refuse(errors.UNKNOWN_URI, "no such operation", 405 if any(
                key[1] == resource for key in _ROUTES) else 404)
        return route(self, caller, request, segments)

    def _refuse(self, code: str, detail: str, status: int | None = None) -> Response:
        self.counters["refused_total"] += 1
        return _error(code, detail, status)

    def _enter(self, request: Request, resource: bytes) -> _Dfsp | Response:
        """Authenticate, check the headers the spec requires and the signature."""
        headers = request.headers
        participant_id = None
        if request.certificate is not None:
            participant_id = self.gateway.authenticate_certificate(request.certificate)
        if participant_id is None:
            value = headers.get(b"authorization")
            key = value[7:].strip() if value is not None and value[:7].lower() == b"bearer " \
                else headers.get(b"x-api-key")
            if key is not None:
                try:
                    participant_id = self.gateway.authenticate(key.decode("ascii"))
                except UnicodeDecodeError:
                    participant_id = None
        if participant_id is None:
            return _error("3100", "missing or unknown credentials (API key or client "
                          "certificate)", 401)
        dfsp = self.dfsps.get(participant_id)
        if dfsp is None or not dfsp.endpoint:
            return _error("3100", "this participant is not registered for FSPIOP", 403)
        self.gateway.door_used(participant_id)
        method = request.method
        content_type = headers.get(b"content-type")
        if content_type is None:
            return _error(errors.MISSING_ELEMENT, "Content-Type is required")
        media, _, parameters = content_type.partition(b";")
        if media.strip().lower() != b"application/vnd.interoperability." + resource.lower() + \
                b"+json":
            return _error("3101", "Content-Type must be application/vnd.interoperability."
                          f"{resource.decode()}+json;version=1.1")
        version = parameters.strip().partition(b"=")
        if version[0].strip().lower() != b"version" or version[2].strip() not in _VERSIONS:
            return _error(errors.UNACCEPTABLE_VERSION, "supported versions: 1.0, 1.1")
        accept = headers.get(b"accept")
        if accept is None:
            if method != b"PUT" and method != b"PATCH":
                return _error(errors.MISSING_ELEMENT, "Accept is required")
        elif b"application/vnd.interoperability." + resource.lower() not in accept.lower():
            return _error("3101", "Accept names another resource")
        elif not any(b"version=" + v in accept for v in _VERSIONS):
            return _error(errors.UNACCEPTABLE_VERSION, "supported versions: 1, 1.0, 1.1")
        date = headers.get(b"date")
        if date is None:
            return _error(errors.MISSING_ELEMENT, "Date is required")
        try:
            if email.utils.parsedate_to_datetime(date.decode("latin-1")) is None:
                raise ValueError
        except (ValueError, TypeError, IndexError):
            return _error("3101", "Date is not an HTTP date")
        source = headers.get(b"fspiop-source")
        if source is None:
            return _error(errors.MISSING_ELEMENT, "FSPIOP-Source is required")
        if source.decode("latin-1") != dfsp.fsp_id:
            # A participant may act only as itself.
            return _error("3100", "FSPIOP-Source is not the authenticated participant", 403)
        # Deployed Mojaloop software does not sign PUT /parties (the SDK's
        # JWS_SIGN_PUT_PARTIES defaults to false): verified when signed, not required.
        required = (dfsp.signature_required or dfsp.participant_id in self.gateway.signature_policy
                    ) and not (resource == b"parties" and method == b"PUT")
        if method in _BODY_METHODS and required and dfsp.key is None:
            # Its policy (declared for another door) asks for signatures; no key here.
            return _error("3105", "this participant must sign its requests: no key registered "
                          "for it on this connector", 401)
        if method in _BODY_METHODS and dfsp.key is not None and (
                required or b"fspiop-signature" in headers):
            uri = request.path if request.query is None else \
                request.path + b"?" + request.query
            try:
                jws.verify(headers, request.body, dfsp.key, method=method, uri=uri)
            except JwsMalformed as error:
                return _error("3105", str(error), 400)
            except JwsError as error:
                return _error("3105", str(error), 401)
        return dfsp

    def _destination(self, request: Request, fallback: str | None = None
                     ) -> int | Response:
        value = request.headers.get(b"fspiop-destination")
        fsp = value.decode("latin-1") if value is not None else fallback
        if not fsp:
            return _error(errors.MISSING_ELEMENT, "FSPIOP-Destination is required")
        participant_id = self.participant_of_fsp(fsp)
        if participant_id is None:
            return _error(errors.DESTINATION_NOT_FOUND, "unknown destination FSP")
        return participant_id

    def _decode(self, decoder, body: bytes):
        try:
            return decoder.decode(body)
        except msgspec.ValidationError as error:
            return _error("3100", str(error))
        except (msgspec.DecodeError, RecursionError) as error:
            return _error("3101", f"malformed JSON: {error}")

    # -- parties -----------------------------------------------------------------------

    def _party_path(self, segments) -> tuple[str, str, str]:
        sub = segments[3] if len(segments) >= 4 and segments[3] != "error" else ""
        return segments[1], segments[2], sub

    def get_party(self, dfsp: _Dfsp, request: Request, segments):
        party_type, identifier, sub = self._party_path(segments)
        return self._spawn(self._lookup(dfsp.participant_id, request, party_type, identifier,
                                        sub))

    def _party_alias(self, party_type: str, identifier: str) -> Party | str:
        alias_type = wire.PARTY_TO_ALIAS.get(party_type)
        if alias_type is None:
            return f"party type {party_type[:20]} is not offered by this hub"
        try:
            return msgspec.convert({"alias_type": alias_type, "alias_value": wire.alias_value(
                party_type, identifier)}, Party)
        except msgspec.ValidationError as error:
            return str(error)

    async def _lookup(self, requester: int, request: Request, party_type: str,
                      identifier: str, sub: str) -> None:
        path = request.path.decode()
        alias = self._party_alias(party_type, identifier)
        if type(alias) is str:
            self._hub_error(requester, path, "parties", "3100", alias)
            return
        answer = await self.gateway.resolve(requester, ResolveRequest(alias=alias))
        if answer.result is not Result.OK:
            self._hub_error(requester, path, "parties", code_of(answer.result),
                            answer.result.name)
            return
        payee = answer.payee_participant_id
        if self._speaks_fspiop(payee):
            self._lookups.put((payee, party_type, identifier, sub, requester),
                              time.monotonic())
            headers = dict(request.headers)
            headers[b"fspiop-destination"] = self.fsp_of(payee).encode()
            self.counters["forwarded_total"] += 1
            self._send(payee, b"GET", path, None, tuple(
                (name, headers[name]) for name in _FORWARDED if name in headers), "party")
            self.sender.flush()
            return
        # The payee does not speak FSPIOP: the hub answers with what the directory shows.
        info = {"partyIdType": party_type, "partyIdentifier": identifier,
                "fspId": self.fsp_of(payee)}
        if sub:
            info["partySubIdOrType"] = sub
        party: dict = {"partyIdInfo": info}
        if answer.display_name_masked:
            party["name"] = answer.display_name_masked[:128]
        self._hub_send(requester, "PUT", path, {"party": party}, "parties", "party")

    def put_party(self, dfsp: _Dfsp, request: Request, segments):
        party_type, identifier, sub = self._party_path(segments)
        destination = self._destination(request)
        if type(destination) is Response:
            return destination
        key = (dfsp.participant_id, party_type, identifier, sub, destination)
        if self._lookups.pop(key, None) is None:
            return _error(errors.GENERIC_ID_NOT_FOUND, "no lookup of this party is waiting "
                          "for this participant", 404)
        if segments[-1] != "error":
            body = self._decode(self._party_decoder, request.body)
            if type(body) is Response:
                return body
            if body.party.partyIdInfo.fspId not in (None, dfsp.fsp_id):
                return _error("3100", "a DFSP answers only for its own parties", 403)
        else:
            body = self._decode(self._error_decoder, request.body)
            if type(body) is Response:
                return body
        self._forward(destination, request, "party")
        return _OK

    # -- participants (the oracle: Ponte's directory) ----------------------------------

    def post_participant(self, dfsp: _Dfsp, request: Request, segments):
        body = self._decode(self._oracle_decoder, request.body)
        if type(body) is Response:
            return body
        if body.fspId != dfsp.fsp_id:
            return _error("3100", "a DFSP registers parties for itself only", 403)
        extensions = {e.key: e.value for e in body.extensionList.extension} \
            if body.extensionList else {}
        party_type, identifier, sub = self._party_path(segments)
        alias = self._party_alias(party_type, identifier)
        if type(alias) is str:
            return _error("3100", alias)
        owner = extensions.get("ownerNationalId", "")
        name = extensions.get("displayName", "")
        if not owner or not name:
            return _error("3107", "Ponte's directory needs the extensions ownerNationalId "
                          "and displayName to register a party")
        return self._spawn(self._register(dfsp, request.path.decode(), alias, party_type,
                                          identifier, owner, name))

    async def _register(self, dfsp: _Dfsp, path: str, alias: Party, party_type: str,
                        identifier: str, owner: str, name: str) -> None:
        answer = await self.gateway.register_alias(
            dfsp.participant_id, alias_type=alias.alias_type, alias_value=alias.alias_value,
            account_ref=f"{party_type}/{identifier}"[:core_limits.REFERENCE_LENGTH_MAX],
            owner_national_id=owner, display_name=name)
        self._oracle_answer(dfsp.participant_id, path, answer.result, dfsp.fsp_id)

    def _oracle_answer(self, to_id: int, path: str, result: Result, fsp_id: str) -> None:
        if result is Result.OK:
            self._hub_send(to_id, "PUT", path, {"fspId": fsp_id}, "participants",
                           "participant")
        else:
            self._hub_error(to_id, path, "participants", code_of(result), result.name)

    def get_participant(self, dfsp: _Dfsp, request: Request, segments):
        party_type, identifier, _ = self._party_path(segments)
        alias = self._party_alias(party_type, identifier)
        if type(alias) is str:
            return _error("3100", alias)
        return self._spawn(self._oracle_lookup(dfsp.participant_id, request.path.decode(),
                                               alias))

    async def _oracle_lookup(self, requester: int, path: str, alias: Party) -> None:
        answer = await self.gateway.resolve(requester, ResolveRequest(alias=alias))
        self._oracle_answer(requester, path, answer.result,
                            self.fsp_of(answer.payee_participant_id))

    def delete_participant(self, dfsp: _Dfsp, request: Request, segments):
        party_type, identifier, _ = self._party_path(segments)
        alias = self._party_alias(party_type, identifier)
        if type(alias) is str:
            return _error("3100", alias)

        async def delete() -> None:
            answer = await self.gateway.delete_alias(
                dfsp.participant_id, alias_type=alias.alias_type,
                alias_value=alias.alias_value)
            self._oracle_answer(dfsp.participant_id, request.path.decode(), answer.result,
                                dfsp.fsp_id)

        return self._spawn(delete())

    # -- quotes ------------------------------------------------------------------------

    def post_quote(self, dfsp: _Dfsp, request: Request, segments):
        quote = self._decode(self._quote_decoder, request.body)
        if type(quote) is Response:
            return quote
        destination = self._destination(request, quote.payee.partyIdInfo.fspId)
        if type(destination) is Response:
            return destination
        try:
            amount_minor = wire.amount_minor(quote.amount)
        except wire.AmountError as error:
            return _error("3100", str(error))
        if self._speaks_fspiop(destination):
            self._quotes.put(quote.quoteId, (dfsp.participant_id, destination, None))
            self._forward(destination, request, "quote")
            return _ACCEPTED
        rtp = self._rtps.get(quote.transactionRequestId or "")
        if rtp is not None and rtp.payer_id == dfsp.participant_id and (
                rtp.payee_id == destination):
            # Quoted to pay a request-to-pay: its prepare approves the request.
            self._rtp_transactions.put(quote.transactionId, quote.transactionRequestId)
        # The payee does not speak FSPIOP: the hub quotes for it, no fee of its own (the
        # scheme's fee is charged to the payer's position at commit, docs/fspiop.md).
        raw = _decode_any.decode(request.body)
        transaction = {"transactionId": quote.transactionId, "quoteId": quote.quoteId,
                       "payee": raw["payee"], "payer": raw["payer"], "amount": raw["amount"],
                       "transactionType": raw["transactionType"]}
        info = quote.payee.partyIdInfo
        fulfilment = ilp.hub_fulfilment(self.ilp_secret, dfsp.fsp_id, quote.transactionId,
                                        amount_minor, quote.amount.currency)
        expiration = wire.time_text(time.time_ns() + self.config.quote_expiry_s * 10 ** 9)
        answer = {"transferAmount": raw["amount"], "payeeReceiveAmount": raw["amount"],
                  "expiration": quote.expiration or expiration,
                  "ilpPacket": ilp.transaction_packet(transaction, amount_minor,
                                                      self.fsp_of(destination),
                                                      info.partyIdType, info.partyIdentifier),
                  "condition": ilp.condition_of(fulfilment)}
        self._hub_send(dfsp.participant_id, "PUT", f"/quotes/{quote.quoteId}", answer,
                       "quotes", "quote")
        return _ACCEPTED

    def put_quote(self, dfsp: _Dfsp, request: Request, segments):
        quote_id = segments[1]
        pending = self._quotes.get(quote_id)
        if pending is None or pending[1] != dfsp.participant_id:
            return _error(errors.QUOTE_NOT_FOUND, "no quote with this id is waiting for "
                          "this participant")
        error = segments[-1] == "error"
        body = self._decode(self._error_decoder if error else self._quote_answer_decoder,
                            request.body)
        if type(body) is Response:
            return body
        del self._quotes[quote_id]
        flight = pending[2]
        if flight is None:
            self._forward(pending[0], request, "quote")
            return _OK
        # A quote the hub asked for a payer of another protocol.
        if error:
            info = body.errorInformation
            self._payee_answer(flight, False, f"{info.errorCode} {info.errorDescription}")
            return _OK
        credit = flight.credit
        try:
            amount_ok = wire.amount_minor(body.transferAmount) == credit.amount_minor and \
                body.transferAmount.currency == credit.currency
        except wire.AmountError:
            amount_ok = False
        if not amount_ok:
            self._payee_answer(flight, False, f"{errors.PAYEE_QUOTE_REJECTED} the quote's "
                                              "transfer amount differs")
            return _OK
        flight.condition = body.condition
        transfer_id = self._fspiop_transfer_id(flight)
        self._hub_send(flight.payee_id, "POST", "/transfers", {
            "transferId": transfer_id, "payeeFsp": dfsp.fsp_id,
            "payerFsp": self.fsp_of(flight.payer_id), "amount": {
                "currency": credit.currency,
                "amount": wire.amount_text(credit.amount_minor, credit.currency)},
            "ilpPacket": body.ilpPacket, "condition": body.condition,
            "expiration": wire.time_text(credit.expires_at_ns)}, "transfers", "transfer")
        return _OK

    # -- transfers ---------------------------------------------------------------------

    def post_transfer(self, dfsp: _Dfsp, request: Request, segments):
        body = request.body
        prepare = self._decode(self._transfer_decoder, body)
        if type(prepare) is Response:
            return prepare
        if prepare.payerFsp != dfsp.fsp_id:
            return _error("3100", "payerFsp is not the authenticated participant", 403)
        destination = request.headers.get(b"fspiop-destination")
        if destination is not None and destination.decode("latin-1") != prepare.payeeFsp:
            return _error("3100", "FSPIOP-Destination is not the payeeFsp")
        payee_id = self.participant_of_fsp(prepare.payeeFsp)
        if payee_id is None:
            return _error(errors.DESTINATION_NOT_FOUND, "unknown payeeFsp")
        try:
            amount_minor = wire.amount_minor(prepare.amount)
            expires_at_ns = wire.time_ns(prepare.expiration)
            transaction = ilp.transaction_of(prepare.ilpPacket)
            info = transaction["payee"]["partyIdInfo"]
            party_type, identifier = info["partyIdType"], info["partyIdentifier"]
            transaction_id = str(transaction.get("transactionId", ""))
        except (wire.AmountError, ValueError, KeyError, TypeError) as error:
            return _error("3100", f"transfer not acceptable: {error}")
        rtp = self._rtps.get(self._rtp_transactions.get(transaction_id, ""))
        if rtp is not None:
            return self._pay_request(dfsp, request, prepare, rtp, payee_id, amount_minor,
                                     expires_at_ns, transaction_id)
        alias = self._party_alias(str(party_type), str(identifier))
        if type(alias) is str:
            return _error("3100", alias)
        hub_fulfilment = ""
        condition = prepare.condition
        if not self._speaks_fspiop(payee_id):
            # The hub quoted for this payee: the condition must be the one it gave.
            hub_fulfilment = ilp.hub_fulfilment(self.ilp_secret, dfsp.fsp_id, transaction_id,
                                                amount_minor, prepare.amount.currency)
            if ilp.condition_of(hub_fulfilment) != condition:
                return _error("3100", "the condition is not the one the hub quoted")
            condition = ""  # the payee answers without ILP: the hub holds the fulfilment
        try:
            message = msgspec.convert({
                "transfer_id": prepare.transferId, "payee": msgspec.to_builtins(alias),
                "amount_minor": amount_minor, "currency": prepare.amount.currency,
                "expires_at_ns": expires_at_ns, "end_to_end_id": transaction_id[:128],
                "condition": condition, "dialect_sha256": ilp.body_sha256(body)},
                TransferRequest)
        except msgspec.ValidationError as error:
            return _error("3100", str(error))
        return self._submit_prepare(dfsp, request, prepare.transferId, message, payee_id,
                                    transaction_id, hub_fulfilment, expires_at_ns)

    def _submit_prepare(self, dfsp: _Dfsp, request: Request, transfer_id: str, message,
                        payee_id: int, transaction_id: str, hub_fulfilment: str,
                        expires_at_ns: int):
        """Keep the prepare (memory and store), submit `message` (the TransferRequest, or
        the RequestToPayDecision it is); 202 once both are durable."""
        body = request.body
        writer = self.writer
        if writer is not None and not writer.room():
            return _error("2005", "too many prepares waiting to be stored", 503)
        headers = tuple((name, request.headers[name]) for name in _FORWARDED
                        if name in request.headers)
        key = (dfsp.participant_id, transfer_id)
        first = key not in self._prepares
        if first:
            # The first prepare under an id is the one forwarded: a resend with a changed
            # body is refused by the core (3106) and must not replace it (nor in the store).
            self._prepares.put(key, _Prepare(body, headers, payee_id, transaction_id,
                                             hub_fulfilment))
        # 202 once the transfer is journaled and its prepare stored (they run together).
        origin = _Durable(self.loop, _ACCEPTED, stored_too=writer is not None)
        if writer is not None:
            writer.put(key, StoredPrepare(body=body, headers=list(headers),
                                          payee_participant_id=payee_id,
                                          transaction_id=transaction_id),
                       expires_at_ns, origin.stored)
        result = self.gateway.submit(dfsp.participant_id, message, origin)
        if result is not Result.OK:
            if first:  # nothing was recorded under this id
                self._forget_prepare(key)
            code, status = errors.FSPIOP_CODES[result]
            return _error(code, result.name, status)
        return origin.future

    def _pay_request(self, dfsp: _Dfsp, request: Request, prepare, rtp: _Rtp, payee_id: int,
                     amount_minor: int, expires_at_ns: int, transaction_id: str):
        """A prepare quoted under a transaction request the hub sent for a request-to-pay of
        another protocol's payee: it approves the request, naming this transfer (the core
        creates it, to the requester, for the requested amount)."""
        if rtp.payer_id != dfsp.participant_id or rtp.payee_id != payee_id:
            return _error("3100", "this transaction request was not sent to this payer for "
                          "this payee", 403)
        if amount_minor != rtp.amount_minor or prepare.amount.currency != rtp.currency:
            return _error("3100", "the transfer's amount is not the transaction request's")
        hub_fulfilment = ilp.hub_fulfilment(self.ilp_secret, dfsp.fsp_id, transaction_id,
                                            amount_minor, rtp.currency)
        if ilp.condition_of(hub_fulfilment) != prepare.condition:
            return _error("3100", "the condition is not the one the hub quoted")
        try:
            decision = msgspec.convert({
                "payee_participant_id": rtp.payee_id, "request_id": rtp.request_id,
                "approved": True, "transfer_id": prepare.transferId,
                "expires_at_ns": expires_at_ns}, RequestToPayDecision)
        except msgspec.ValidationError as error:
            return _error("3100", str(error))
        rtp.transfer_id = prepare.transferId
        return self._submit_prepare(dfsp, request, prepare.transferId, decision, payee_id,
                                    transaction_id, hub_fulfilment, expires_at_ns)

    def _forget_prepare(self, key: tuple[int, str]) -> None:
        """The transfer is final (or was never recorded): its prepare is not needed again."""
        self._prepares.pop(key, None)
        if self.writer is not None:
            self.writer.delete(key)

    def put_transfer(self, dfsp: _Dfsp, request: Request, segments):
        transfer_id = segments[1]
        flight = self._flights.get(transfer_id)
        if flight is None or flight.payee_id != dfsp.participant_id:
            return _error("3208", "no transfer with this id is waiting for this participant",
                          404)
        if segments[-1] == "error":
            body = self._decode(self._error_decoder, request.body)
            if type(body) is Response:
                return body
            flight.answer = (request.body, self._forwarded_headers(request), True)
            info = body.errorInformation
            return self._payee_answer(flight, False, f"{info.errorCode} "
                                                     f"{info.errorDescription}", durable=True)
        body = self._decode(self._fulfil_decoder, request.body)
        if type(body) is Response:
            return body
        if body.transferState == "ABORTED":
            return self._payee_answer(flight, False, "the payee aborted", durable=True)
        if body.transferState not in ("COMMITTED", "RESERVED") or not body.fulfilment:
            return _error("3102", "a fulfilment with transferState COMMITTED or RESERVED "
                          "is required")
        fulfilment = body.fulfilment
        if flight.hub_driven and ilp.condition_of(fulfilment) != flight.condition:
            # The core holds no condition for a payer of another protocol: check here.
            fulfilment = ""
        flight.reserved = body.transferState == "RESERVED"
        if body.transferState == "COMMITTED":
            flight.answer = (request.body, self._forwarded_headers(request), False)
        if flight.hub_driven:
            if not fulfilment:
                self._payee_answer(flight, False, "invalid fulfilment")
                self._hub_error(dfsp.participant_id, f"/transfers/{transfer_id}",
                                "transfers", "3100", "invalid fulfilment")
                return _OK
            fulfilment = ""  # nothing for the core to check
        return self._payee_answer(flight, True, "", fulfilment=fulfilment, durable=True)

    @staticmethod
    def _forwarded_headers(request: Request) -> tuple:
        return tuple((name, request.headers[name]) for name in _FORWARDED
                     if name in request.headers)

    def _payee_answer(self, flight: _Flight, accepted: bool, reason: str, *,
                      fulfilment: str = "", durable: bool = False):
        message = PayeeAnswer(payer_participant_id=flight.payer_id,
                              transfer_id=flight.transfer_id, accepted=accepted,
                              reason=reason[:core_limits.TEXT_LENGTH_MAX],
                              fulfilment=fulfilment)
        origin = _Durable(self.loop, _OK) if durable else None
        result = self.gateway.submit(flight.payee_id, message, origin)
        if result is not Result.OK:
            code, status = errors.FSPIOP_CODES[result]
            return _error(code, result.name, status)
        return origin.future if origin is not None else _OK

    def get_transfer(self, dfsp: _Dfsp, request: Request, segments):
        transfer_id = segments[1]
        flight = self._flights.get(transfer_id)
        payer_id, ponte_id = dfsp.participant_id, transfer_id  # unknown: asked as its payer
        if flight is not None:
            payer_id, ponte_id = flight.payer_id, flight.transfer_id
        else:
            finished = self._finished.get(transfer_id)
            if finished is not None and dfsp.participant_id in (finished[0], finished[2]):
                payer_id, ponte_id = finished[0], finished[1]
        waiting = self._status_queries.get(dfsp.participant_id, 0)
        if waiting >= limits.STATUS_QUERIES_IN_FLIGHT_PER_PARTICIPANT_MAX:
            return _error("2005", "status queries in flight", 503)
        self._status_queries[dfsp.participant_id] = waiting + 1
        answer = self._spawn(self._status(dfsp.participant_id, payer_id, ponte_id,
                                          transfer_id))
        if answer.status != 202:
            self._status_done(dfsp.participant_id)
        return answer

    def _status_done(self, participant_id: int) -> None:
        left = self._status_queries[participant_id] - 1
        if left:
            self._status_queries[participant_id] = left
        else:
            del self._status_queries[participant_id]

    async def _status(self, asker: int, payer_id: int, ponte_id: str, transfer_id: str
                      ) -> None:
        path = f"/transfers/{transfer_id}"
        try:
            try:
                query = msgspec.convert({"payer_participant_id": payer_id,
                                         "transfer_id": ponte_id}, StatusQuery)
            except msgspec.ValidationError:
                self._hub_error(asker, path, "transfers", "3208", "TRANSFER_NOT_FOUND")
                return
            answer = await self.gateway.status(asker, query)
        finally:
            self._status_done(asker)
        if type(answer) is TransferOutcome:
            state = {TransferState.COMMITTED: "COMMITTED", TransferState.REJECTED: "ABORTED",
                     TransferState.EXPIRED: "ABORTED"}.get(answer.state, "RESERVED")
            body = {"transferState": state}
            if answer.state == TransferState.COMMITTED:
                fulfilment = self._fulfilment_for_payer(answer)
                if fulfilment:
                    body["fulfilment"] = fulfilment
                body["completedTimestamp"] = wire.time_text(answer.decided_at_ns)
            self._hub_send(asker, "PUT", path, body, "transfers", "transfer")
            return
        result = getattr(answer, "result", Result.INTERNAL_SERVER_ERROR)
        self._hub_error(asker, path, "transfers", code_of(result), result.name)

    def patch_transfer(self, dfsp: _Dfsp, request: Request, segments):
        return _error("3100", "PATCH /transfers is sent by the hub, not to it", 405)

    # -- transaction requests (request-to-pay between FSPIOP DFSPs) --------------------

    def post_transaction_request(self, dfsp: _Dfsp, request: Request, segments):
        body = self._decode(self._trq_decoder, request.body)
        if type(body) is Response:
            return body
        destination = self._destination(request, body.payer.fspId)
        if type(destination) is Response:
            return destination
        if not self._speaks_fspiop(destination):
            return self._request_payment(dfsp, body)
        self._requests.put(body.transactionRequestId, (dfsp.participant_id, destination))
        self._forward(destination, request, "transaction_request")
        return _ACCEPTED

    def _request_payment(self, dfsp: _Dfsp, body):
        """A transaction request to a payer of another protocol: a core request-to-pay
        (request id = transactionRequestId) from this DFSP; its outcomes come back as
        PUT /transactionRequests/{ID}, the transfer an approval creates as quote + prepare."""
        payer = body.payer
        alias = self._party_alias(payer.partyIdType, payer.partyIdentifier)
        if type(alias) is str:
            return _error("3100", alias)
        payee = body.payee.partyIdInfo
        try:
            amount_minor = wire.amount_minor(body.amount)
            expires_at_ns = wire.time_ns(body.expiration) if body.expiration else (
                time.time_ns() + self.config.quote_expiry_s * 10**9)
            message = msgspec.convert({
                "request_id": body.transactionRequestId, "payer": msgspec.to_builtins(alias),
                "amount_minor": amount_minor, "currency": body.amount.currency,
                "expires_at_ns": expires_at_ns,
                "payee_account_ref": f"{payee.partyIdType}/{payee.partyIdentifier}"[
                    :core_limits.REFERENCE_LENGTH_MAX],
                "purpose": body.note or ""}, RequestToPay)
        except (wire.AmountError, ValueError) as error:  # ValidationError is a ValueError
            return _error("3100", f"transaction request not acceptable: {error}")
        origin = _Durable(self.loop, _ACCEPTED)
        result = self.gateway.submit(dfsp.participant_id, message, origin)
        if result is not Result.OK:
            code, status = errors.FSPIOP_CODES[result]
            return _error(code, result.name, status)
        return origin.future

    def put_transaction_request(self, dfsp: _Dfsp, request: Request, segments):
        rtp = self._rtps.get(segments[1])
        if rtp is not None and rtp.payer_id == dfsp.participant_id:
            return self._answer_request_to_pay(rtp, request, segments[-1] == "error")
        pending = self._requests.get(segments[1])
        if pending is None or pending[1] != dfsp.participant_id:
            return _error("3206", "no transaction request with this id is waiting for this "
                          "participant", 404)
        body = self._decode(self._error_decoder if segments[-1] == "error"
                            else self._trq_answer_decoder, request.body)
        if type(body) is Response:
            return body
        self._forward(pending[0], request, "transaction_request")
        return _OK

    def _answer_request_to_pay(self, rtp: _Rtp, request: Request, error: bool):
        """The payer DFSP's answer to a transaction request the hub sent for a core
        request-to-pay: REJECTED (or an error callback) declines it; RECEIVED, PENDING or
        ACCEPTED change nothing (its quote and prepare approve it)."""
        body = self._decode(self._error_decoder if error else self._trq_answer_decoder,
                            request.body)
        if type(body) is Response:
            return body
        if not error and body.transactionRequestState != "REJECTED":
            return _OK
        decision = RequestToPayDecision(payee_participant_id=rtp.payee_id,
                                        request_id=rtp.request_id, approved=False)
        result = self.gateway.submit(rtp.payer_id, decision)
        if result is not Result.OK:
            code, status = errors.FSPIOP_CODES[result]
            return _error(code, result.name, status)
        return _OK

    def get_transaction_request(self, dfsp: _Dfsp, request: Request, segments):
        pending = self._requests.get(segments[1])
        if pending is None or dfsp.participant_id not in pending:
            return _error("3206", "unknown transaction request", 404)
        other = pending[1] if pending[0] == dfsp.participant_id else pending[0]
        self._forward(other, request, "transaction_request")
        return _ACCEPTED

    # -- the core's messages for FSPIOP participants -----------------------------------

    def _outbound(self, participant_id: int, message) -> None:
        kind = type(message)
        if kind is CreditRequest:
            self._on_credit(participant_id, message)
        elif kind is TransferOutcome:
            self._on_outcome(participant_id, message)
        elif kind is Refused:
            self._on_refused(participant_id, message)
        elif kind is ErrorAnswer:
            log.warning("fspiop.error_answer participant_id=%d result=%s", participant_id,
                        message.result.name)
        elif kind is RequestToPayNotice:
            self._on_request_to_pay(participant_id, message)
        elif kind is RequestToPayOutcome:
            self._on_request_outcome(participant_id, message)
        else:
            log.info("fspiop.unsupported_message participant_id=%d type=%s", participant_id,
                     kind.__name__)

    def _on_request_to_pay(self, payer_id: int, notice: RequestToPayNotice) -> None:
        """A payee of another protocol asks this FSPIOP payer to pay: POST
        /transactionRequests, written by the hub for the payee's FSP id."""
        transaction_request_id = derived_id("transaction_request", notice.payee_participant_id,
                                            notice.request_id)
        self._rtps.put(transaction_request_id, _Rtp(notice, payer_id))
        party_type, identifier = _party_of_account(notice.payer_account_ref)
        payee_fsp = self.fsp_of(notice.payee_participant_id)
        body = {
            "transactionRequestId": transaction_request_id,
            "payee": {"partyIdInfo": {"partyIdType": "ALIAS", "partyIdentifier": payee_fsp,
                                      "fspId": payee_fsp}},
            "payer": {"partyIdType": party_type, "partyIdentifier": identifier[:128],
                      "fspId": self.fsp_of(payer_id)},
            "amount": {"currency": notice.currency,
                       "amount": wire.amount_text(notice.amount_minor, notice.currency)},
            "transactionType": {"scenario": "PAYMENT", "initiator": "PAYEE",
                                "initiatorType": "BUSINESS"},
            "expiration": wire.time_text(notice.expires_at_ns)}
        if notice.purpose:
            body["note"] = notice.purpose[:128]
        self._hub_send(payer_id, "POST", "/transactionRequests", body, "transactionRequests",
                       "transaction_request")

    def _on_request_outcome(self, participant_id: int, outcome: RequestToPayOutcome) -> None:
        """As the requester (a transaction request it sent): the request's state as
        PUT /transactionRequests/{ID}. As the payer: a request-to-pay it was asked, once
        final without the transfer its prepare named (expired, declined, already approved),
        refuses that prepare."""
        if outcome.payee_participant_id == participant_id:
            self._tell_requester(participant_id, outcome.request_id, outcome.state,
                                 outcome.result, outcome)
            return
        if outcome.state == RequestToPayState.OPEN:
            return
        transaction_request_id = derived_id("transaction_request", outcome.payee_participant_id,
                                            outcome.request_id)
        rtp = self._rtps.pop(transaction_request_id, None)
        if rtp is None or not rtp.transfer_id or outcome.transfer_id == rtp.transfer_id:
            return
        self._refuse_request_payment(participant_id, rtp, outcome.result)

    def _tell_requester(self, payee_id: int, request_id: str, state: RequestToPayState | None,
                        result: Result, outcome: RequestToPayOutcome | None = None) -> None:
        path = f"/transactionRequests/{request_id}"
        answer = _REQUEST_STATES.get(state)
        if answer is None:  # expired, refused by the switch
            self._hub_error(payee_id, path, "transactionRequests", code_of(result), result.name)
            return
        body = {"transactionRequestState": answer}
        if state == RequestToPayState.APPROVED and outcome is not None:
            # The transaction the hub quotes the payee under (its transfer id too).
            body["transactionId"] = derived_id("transfer", outcome.payer_participant_id,
                                               outcome.transfer_id)
        self._hub_send(payee_id, "PUT", path, body, "transactionRequests",
                       "transaction_request")

    def _refuse_request_payment(self, payer_id: int, rtp: _Rtp, result: Result) -> None:
        self._forget_prepare((payer_id, rtp.transfer_id))
        self._hub_error(payer_id, f"/transfers/{rtp.transfer_id}", "transfers",
                        code_of(result), result.name)
        rtp.transfer_id = ""

    def _fspiop_transfer_id(self, flight: _Flight) -> str:
        if flight.hub_driven:
            return derived_id("transfer", flight.payer_id, flight.transfer_id)
        return flight.transfer_id

    def _on_credit(self, payee_id: int, credit: CreditRequest) -> None:
        payer_id = credit.payer_participant_id
        if not self._speaks_fspiop(payer_id):
            self._hub_quote(payee_id, credit)
            return
        prepare = self._prepares.get((payer_id, credit.transfer_id))
        if prepare is None and self.writer is not None:
            # Re-sent after a restart: the prepare is read back from the store.
            if len(self._loading) < limits.PREPARE_LOADS_PENDING_MAX:
                self._loading.append((payee_id, credit))
                if self._loader is None or self._loader.done():
                    self._loader = asyncio.ensure_future(self._load_prepares())
                return
        self._forward_prepare(payee_id, credit, prepare)

    async def _load_prepares(self) -> None:
        """Read back the prepares of credit requests re-sent after a restart, in batches."""
        while self._loading:
            batch, self._loading = self._loading, []
            keys = [(credit.payer_participant_id, credit.transfer_id) for _, credit in batch]
            try:
                found = await self.writer.store.get_many(keys)
            except Exception:  # noqa: BLE001 - without it the transfer is rejected
                log.exception("fspiop.prepare_store_read_failed count=%d", len(keys))
                found = {}
            for (payee_id, credit), key in zip(batch, keys):
                prepare = self._prepares.get(key)
                raw = found.get(key)
                if prepare is None and raw is not None:
                    stored = decode_prepare(raw)
                    prepare = _Prepare(stored.body, tuple(map(tuple, stored.headers)),
                                       stored.payee_participant_id, stored.transaction_id, "")
                    self._prepares.put(key, prepare)
                self._forward_prepare(payee_id, credit, prepare)
            self.sender.flush()

    def _forward_prepare(self, payee_id: int, credit: CreditRequest,
                         prepare: _Prepare | None) -> None:
        payer_id = credit.payer_participant_id
        flight = _Flight(payer_id, payee_id, credit.transfer_id, credit.condition)
        if prepare is None or prepare.payee_id != payee_id:
            reason = ("the prepare was not kept across a switch restart (no prepare store)"
                      if prepare is None else "payeeFsp does not hold the payee's alias")
            self._payee_answer(flight, False, reason)
            return
        self._flights.put(credit.transfer_id, flight)
        self.counters["forwarded_total"] += 1
        self._send(payee_id, b"POST", "/transfers", prepare.body, prepare.headers, "transfer")

    def _hub_quote(self, payee_id: int, credit: CreditRequest) -> None:
        """A payer of another protocol pays an FSPIOP payee: quote, then prepare."""
        flight = _Flight(credit.payer_participant_id, payee_id, credit.transfer_id, "",
                         hub_driven=True, credit=credit)
        transfer_id = self._fspiop_transfer_id(flight)
        flight.quote_id = derived_id("quote", flight.payer_id, credit.transfer_id)
        self._flights.put(transfer_id, flight)
        self._quotes.put(flight.quote_id, (flight.payer_id, payee_id, flight))
        payer_fsp = self.fsp_of(flight.payer_id)
        if credit.payee_alias is not None:
            party_type = wire.ALIAS_TO_PARTY.get(credit.payee_alias.alias_type, "ALIAS")
            identifier = credit.payee_alias.alias_value
            if party_type == "MSISDN":
                identifier = identifier.lstrip("+")
        else:
            party_type, identifier = _party_of_account(credit.payee_account_ref)
        amount = {"currency": credit.currency,
                  "amount": wire.amount_text(credit.amount_minor, credit.currency)}
        quote = {
            "quoteId": flight.quote_id, "transactionId": transfer_id,
            "payee": {"partyIdInfo": {"partyIdType": party_type,
                                      "partyIdentifier": identifier[:128],
                                      "fspId": self.fsp_of(payee_id)}},
            "payer": {"partyIdInfo": {"partyIdType": "ALIAS", "partyIdentifier": payer_fsp,
                                      "fspId": payer_fsp}},
            "amountType": "RECEIVE", "amount": amount,
            "transactionType": {"scenario": "TRANSFER", "initiator": "PAYER",
                                "initiatorType": "BUSINESS"},
            "expiration": wire.time_text(credit.expires_at_ns)}
        if _CORRELATION_ID(credit.request_to_pay_id):
            # Paying this DFSP's own transaction request (request id = transactionRequestId).
            quote["transactionRequestId"] = credit.request_to_pay_id
            quote["transactionType"] = {"scenario": "PAYMENT", "initiator": "PAYEE",
                                        "initiatorType": "BUSINESS"}
        self._hub_send(payee_id, "POST", "/quotes", quote, "quotes", "quote")

    def _fulfilment_for_payer(self, outcome: TransferOutcome) -> str:
        if outcome.fulfilment:
            return outcome.fulfilment
        prepare = self._prepares.get((outcome.payer_participant_id, outcome.transfer_id))
        if prepare is not None and prepare.hub_fulfilment:
            return prepare.hub_fulfilment
        if self._speaks_fspiop(outcome.payee_participant_id):
            return ""
        # The hub made the condition for this payee; without the prepare in memory (a
        # restart), the SDK's convention transactionId == transferId gives it back.
        transaction_id = prepare.transaction_id if prepare is not None else outcome.transfer_id
        return ilp.hub_fulfilment(self.ilp_secret, self.fsp_of(outcome.payer_participant_id),
                                  transaction_id, outcome.amount_minor, outcome.currency)

    def _on_outcome(self, participant_id: int, outcome: TransferOutcome) -> None:
        if outcome.state not in _FINAL:
            return  # an answer to a duplicate prepare still in progress: nothing to say
        payer_id = outcome.payer_participant_id
        key = (payer_id, outcome.transfer_id)
        if participant_id == payer_id:
            path = f"/transfers/{outcome.transfer_id}"
            flight = self._flights.get(outcome.transfer_id)
            answer = flight.answer if flight is not None and flight.payer_id == payer_id \
                else None
            if outcome.state == TransferState.COMMITTED:
                if answer is not None and not answer[2] and not flight.reserved:
                    self.counters["forwarded_total"] += 1
                    self._send(payer_id, b"PUT", path, answer[0], answer[1], "transfer")
                else:
                    body = {"transferState": "COMMITTED",
                            "completedTimestamp": wire.time_text(outcome.decided_at_ns)}
                    fulfilment = self._fulfilment_for_payer(outcome)
                    if fulfilment:
                        body["fulfilment"] = fulfilment
                    self._hub_send(payer_id, "PUT", path, body, "transfers", "transfer")
            elif answer is not None and answer[2]:
                self.counters["forwarded_total"] += 1
                self._send(payer_id, b"PUT", path + "/error", answer[0], answer[1], "error")
            else:
                self._hub_error(payer_id, path, "transfers", code_of(outcome.result),
                                (outcome.reason or outcome.result.name))
            # The payee's copy of the outcome follows this one (the core sends the payer's
            # first) and retires the flight.
            self._forget_prepare(key)
            return
        # The payee's side.
        flight_id = derived_id("transfer", payer_id, outcome.transfer_id) \
            if not self._speaks_fspiop(payer_id) else outcome.transfer_id
        flight = self._flights.pop(flight_id, None)
        self._finished.put(flight_id, (payer_id, outcome.transfer_id, participant_id))
        path = f"/transfers/{flight_id}"
        if outcome.state == TransferState.COMMITTED:
            if flight is not None and flight.reserved:
                self._hub_send(participant_id, "PATCH", path, {
                    "completedTimestamp": wire.time_text(outcome.decided_at_ns),
                    "transferState": "COMMITTED"}, "transfers", "transfer")
        elif outcome.result is not Result.PAYEE_REJECTED:
            self._hub_error(participant_id, path, "transfers", code_of(outcome.result),
                            outcome.result.name)

    def _on_refused(self, participant_id: int, refused: Refused) -> None:
        if refused.request_type is RequestType.TRANSFER:
            if refused.result not in _ALREADY_RECORDED:
                self._forget_prepare((participant_id, refused.id))
            self._hub_error(participant_id, f"/transfers/{refused.id}", "transfers",
                            code_of(refused.result), refused.result.name)
        elif refused.request_type is RequestType.REQUEST_TO_PAY:
            self._tell_requester(participant_id, refused.id, None, refused.result)
        elif refused.request_type is RequestType.REQUEST_TO_PAY_DECISION:
            rtp = self._rtps.get(derived_id("transaction_request",
                                            refused.scope_participant_id, refused.id))
            if rtp is not None and rtp.transfer_id:
                self._refuse_request_payment(participant_id, rtp, refused.result)
        elif refused.request_type is RequestType.PAYEE_ANSWER:
            self._hub_error(participant_id, f"/transfers/{refused.id}", "transfers",
                            code_of(refused.result), refused.result.name)


async def start_fspiop_connector(gateway, config: FspiopConnectorConfig,
                                 registry=None, store: PrepareStore | None = None
                                 ) -> FspiopConnector:
    """What the composition root calls: build, register metrics, listen."""
    connector = FspiopConnector(gateway, config, store)
    if registry is not None:
        connector.register_metrics(registry)
    await connector.start()
    return connector


# A core request-to-pay's state, as the FSPIOP requester hears it (others: an /error).
_REQUEST_STATES = {RequestToPayState.OPEN: "RECEIVED", RequestToPayState.APPROVED: "ACCEPTED",
                   RequestToPayState.DECLINED: "REJECTED"}

_C = FspiopConnector
# (method, resource, number of path segments, ends with /error) -> handler.
_ROUTES = {
    (b"GET", b"parties", 3, False): _C.get_party,
    (b"GET", b"parties", 4, False): _C.get_party,
    (b"PUT", b"parties", 3, False): _C.put_party,
    (b"PUT", b"parties", 4, False): _C.put_party,
    (b"PUT", b"parties", 4, True): _C.put_party,
    (b"PUT", b"parties", 5, True): _C.put_party,
    (b"POST", b"participants", 3, False): _C.post_participant,
    (b"POST", b"participants", 4, False): _C.post_participant,
    (b"GET", b"participants", 3, False): _C.get_participant,
    (b"GET", b"participants", 4, False): _C.get_participant,
    (b"DELETE", b"participants", 3, False): _C.delete_participant,
    (b"DELETE", b"participants", 4, False): _C.delete_participant,
    (b"POST", b"quotes", 1, False): _C.post_quote,
    (b"PUT", b"quotes", 2, False): _C.put_quote,
    (b"PUT", b"quotes", 3, True): _C.put_quote,
    (b"POST", b"transfers", 1, False): _C.post_transfer,
    (b"PUT", b"transfers", 2, False): _C.put_transfer,
    (b"PUT", b"transfers", 3, True): _C.put_transfer,
    (b"GET", b"transfers", 2, False): _C.get_transfer,
    (b"PATCH", b"transfers", 2, False): _C.patch_transfer,
    (b"POST", b"transactionRequests", 1, False): _C.post_transaction_request,
    (b"PUT", b"transactionRequests", 2, False): _C.put_transaction_request,
    (b"PUT", b"transactionRequests", 3, True): _C.put_transaction_request,
    (b"GET", b"transactionRequests", 2, False): _C.get_transaction_request,
}
