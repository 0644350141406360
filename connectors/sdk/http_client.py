"""The participant SDK over HTTP: what a bank or wallet embeds to speak the HTTP connector.

`HttpClient` calls the switch (resolve, send transfers and returns, answer credit requests,
request-to-pay, status, aliases) over a keep-alive, pipelining connection pool, and runs a
small callback receiver (an HTTP server) for what the switch sends: credit requests,
transfer outcomes, refusals, request-to-pay notices and outcomes. It has the same shape as
the stream client: connect/close, the same verbs, a `ParticipantHandler` for inbound
messages.

Retries: a request that got no answer, or 503 (SERVER_BUSY / SERVICE_UNAVAILABLE), is sent
again with the SAME body after an exponential back-off with jitter, so a transfer keeps its
transfer id and a resend can never create a second transfer (the switch answers a resend
with the first outcome). Any other error answer raises `SwitchError` at once.

Inbound messages may arrive more than once (the switch delivers at least once): handlers
must be idempotent by (payer_participant_id, transfer_id). The receiver answers 200 as
soon as a message is decoded (and its signature checked, when the switch's key is given)
and runs the handler afterwards; a credit request's answer is PUT back by the client.

It must never change a transfer id on retry and never block the loop in a handler call.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from urllib.parse import quote

import msgspec

from connectors.http import limits
from connectors.http.client import ClientResponse, ConnectionPool, HttpClientError
from connectors.http.errors import ErrorBody
from connectors.http.jws import COMPACT_HEADER, JwsError, Signer, VerifyKey, \
    signature_from_headers, verify_detached
from connectors.http.resources import Accepted, Health
from connectors.http.server import HttpServer, Request, Response
from switch.core.messages import (
    CreditRequest,
    ErrorAnswer,
    Outbound,
    Refused,
    RequestToPay,
    RequestToPayNotice,
    RequestToPayOutcome,
    ResolveAnswer,
    ReturnRequest,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import Result
from switch.server.gateway import AliasAnswer

log = logging.getLogger("ponte.sdk.http")

_encode = msgspec.json.Encoder().encode
_decode_outbound = msgspec.json.Decoder(Outbound).decode
_decode_accepted = msgspec.json.Decoder(Accepted).decode
_decode_outcome = msgspec.json.Decoder(TransferOutcome).decode
_decode_resolve = msgspec.json.Decoder(ResolveAnswer).decode
_decode_alias = msgspec.json.Decoder(AliasAnswer).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode
_decode_health = msgspec.json.Decoder(Health).decode

_OK_BODY = Response(200, b"{}")
_RETRY_STATUSES = frozenset({502, 503, 504})
ATTEMPTS_MAX_DEFAULT = 6
BACKOFF_MS_MIN = 20
BACKOFF_MS_MAX = 2_000


class SwitchError(Exception):
    """The switch answered with a typed error (`result`, its `http_status`, `detail`)."""

    def __init__(self, result: Result | int, http_status: int, detail: str = "") -> None:
        try:
            result = Result(result)
        except ValueError:
            pass
        name = result.name if isinstance(result, Result) else str(result)
        super().__init__(f"{http_status} {name}: {detail}")
        self.result = result
        self.http_status = http_status
        self.detail = detail


class ParticipantHandler:
    """Override what you need. Methods may be plain or `async`. Each may be called more
    than once for the same message (at-least-once delivery)."""

    def on_credit_request(self, message: CreditRequest):
        """Return True to accept, False or (False, reason) to reject; the client PUTs the
        answer. Return None to answer yourself later with `HttpClient.answer`."""
        return True

    def on_transfer_outcome(self, message: TransferOutcome) -> None:
        """A transfer's final state (as payer or payee). As payee, credit your customer
        only when `state` is COMMITTED."""

    def on_refused(self, message: Refused) -> None:
        """A request of yours was not acted on; nothing was recorded for it."""

    def on_request_to_pay_notice(self, message: RequestToPayNotice) -> None:
        """A payee asks you to pay; decide with `HttpClient.decide_request_to_pay`."""

    def on_request_to_pay_outcome(self, message: RequestToPayOutcome) -> None:
        """A request-to-pay's final state."""

    def on_error(self, message: ErrorAnswer) -> None:
        """The switch could not act on something you sent."""


class HttpClient:
    """A participant's connection to the switch over HTTP. Use `async with` or
    `await connect()` / `await close()`."""

    def __init__(self, base_url: str, api_key: str, *,
                 handler: ParticipantHandler | None = None,
                 callback_host: str = "127.0.0.1", callback_port: int = 0,
                 signer: Signer | None = None, switch_key: VerifyKey | None = None,
                 connections_max: int = 4,
                 in_flight_per_connection_max: int =
                 limits.REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX,
                 timeout_ms: int = limits.CALLBACK_TIMEOUT_MS,
                 attempts_max: int = ATTEMPTS_MAX_DEFAULT,
                 rng: random.Random | None = None) -> None:
        """`base_url`: the switch's HTTP connector (e.g. http://127.0.0.1:8080). `handler`:
        runs the callback receiver on callback_host:callback_port (0 = any free port; see
        `callback_url`). `signer`: signs every body (required if the switch was told so).
        `switch_key`: refuse callbacks whose signature does not verify with it."""
        assert attempts_max >= 1
        self.base_url = base_url
        self.api_key = api_key
        self.handler = handler
        self.callback_host = callback_host
        self.callback_port = callback_port
        self.signer = signer
        self.switch_key = switch_key
        self.connections_max = connections_max
        self.in_flight_per_connection_max = in_flight_per_connection_max
        self.timeout_ms = timeout_ms
        self.attempts_max = attempts_max
        self.rng = rng or random.Random()
        self.pool: ConnectionPool | None = None
        self.receiver: HttpServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.received_total = 0
        self.answer_failures_total = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def connect(self, *, check_health: bool = True) -> None:
        """Open the pool (and the callback receiver if a handler was given); with
        `check_health`, fail unless the switch answers GET /health as accepting."""
        self.pool = ConnectionPool(
            self.base_url, connections_max=self.connections_max,
            in_flight_per_connection_max=self.in_flight_per_connection_max,
            timeout_ms=self.timeout_ms,
            headers=((b"authorization", b"Bearer " + self.api_key.encode()),))
        if self.handler is not None and self.receiver is None:
            await self.start_receiver()
        if check_health:
            health = await self.health()
            if not health.accepting:
                raise SwitchError(Result.SERVICE_UNAVAILABLE, 503, "switch not accepting")

    async def start_receiver(self) -> str:
        """Start the callback receiver before connecting (e.g. to learn the callback URL
        to register at onboarding); returns `callback_url`. `connect` starts it if not."""
        assert self.handler is not None, "a receiver needs a handler"
        if self.receiver is None:
            self.receiver = HttpServer(self._receive)
            await self.receiver.start(self.callback_host, self.callback_port)
        return self.callback_url

    async def close(self) -> None:
        """Close the pool and the receiver; handler tasks still running are cancelled."""
        if self.receiver is not None:
            await self.receiver.close(grace_ms=1_000)
            self.receiver = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def __aenter__(self) -> HttpClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def callback_url(self) -> str:
        """Where the receiver listens: register this as the participant's callback URL."""
        assert self.receiver is not None, "no handler, so no callback receiver"
        return f"http://{self.callback_host}:{self.receiver.port}"

    # -- calls -------------------------------------------------------------------------

    async def _call(self, method: bytes, path: bytes, body: bytes | None = None,
                    retry: bool = True) -> ClientResponse:
        """One request, resent unchanged after a back-off while it gets no answer or 5xx
        that means "later" (attempts_max in all); raises SwitchError on other errors."""
        assert self.pool is not None, "call connect() first"
        headers = ()
        if body is not None and self.signer is not None:
            headers = ((COMPACT_HEADER, self.signer.sign(body)),)
        attempts = self.attempts_max if retry else 1
        for attempt in range(attempts):
            try:
                response = await self.pool.request(method, path, body, headers)
            except HttpClientError:
                if attempt + 1 >= attempts:
                    raise
            else:
                if response.status < 400:
                    return response
                if response.status not in _RETRY_STATUSES or attempt + 1 >= attempts:
                    raise _error(response)
            ceiling_ms = min(BACKOFF_MS_MAX, BACKOFF_MS_MIN << attempt)
            await asyncio.sleep((ceiling_ms / 2 + self.rng.uniform(0, ceiling_ms / 2)) / 1000)
        raise AssertionError("unreachable")

    async def health(self) -> Health:
        """GET /health (no authentication needed)."""
        assert self.pool is not None
        response = await self.pool.request(b"GET", b"/health")
        return _decode_health(response.body)

    async def resolve(self, alias_type: str, alias_value: str,
                      payer_user_ref: str = "") -> ResolveAnswer:
        """Look an alias up before a transfer. Raises SwitchError(PARTY_NOT_FOUND) when the
        directory has no such alias."""
        path = f"/aliases/{quote(alias_type, safe='')}/{quote(alias_value, safe='')}"
        if payer_user_ref:
            path += f"?payer_user_ref={quote(payer_user_ref, safe='')}"
        response = await self._call(b"GET", path.encode())
        return _decode_resolve(response.body)

    async def send_transfer(self, transfer: TransferRequest) -> Accepted:
        """POST /transfers. Returns once the switch recorded it (202); the outcome arrives
        through the handler and `status`. Retries keep the same transfer id and body."""
        response = await self._call(b"POST", b"/transfers", _encode(transfer))
        return _decode_accepted(response.body)

    async def status(self, payer_participant_id: int, transfer_id: str) -> TransferOutcome:
        """Where a transfer stands. Raises SwitchError(TRANSFER_NOT_FOUND) if unknown."""
        path = f"/transfers/{payer_participant_id}/{quote(transfer_id, safe='')}"
        response = await self._call(b"GET", path.encode())
        return _decode_outcome(response.body)

    async def answer(self, payer_participant_id: int, transfer_id: str, accepted: bool,
                     reason: str = "") -> Accepted:
        """As payee: accept or reject a credit request (PUT /transfers/{payer}/{id})."""
        body = {"accepted": accepted}
        if reason:
            body["reason"] = reason
        path = f"/transfers/{payer_participant_id}/{quote(transfer_id, safe='')}"
        response = await self._call(b"PUT", path.encode(), _encode(body))
        return _decode_accepted(response.body)

    async def send_return(self, request: ReturnRequest) -> Accepted:
        """POST /returns: return (part of) a committed transfer you received."""
        response = await self._call(b"POST", b"/returns", _encode(request))
        return _decode_accepted(response.body)

    async def request_to_pay(self, request: RequestToPay) -> Accepted:
        """POST /requests-to-pay: ask a payer to pay you."""
        response = await self._call(b"POST", b"/requests-to-pay", _encode(request))
        return _decode_accepted(response.body)

    async def decide_request_to_pay(self, payee_participant_id: int, request_id: str,
                                    approved: bool, *, transfer_id: str = "",
                                    expires_at_ns: int = 0, payer_account_ref: str = "",
                                    payer_user_ref: str = "") -> Accepted:
        """As payer: approve (naming the transfer it becomes) or decline a request."""
        body = {"approved": approved}
        if approved:
            body.update(transfer_id=transfer_id, expires_at_ns=expires_at_ns)
        if payer_account_ref:
            body["payer_account_ref"] = payer_account_ref
        if payer_user_ref:
            body["payer_user_ref"] = payer_user_ref
        path = f"/requests-to-pay/{payee_participant_id}/{quote(request_id, safe='')}"
        response = await self._call(b"PUT", path.encode(), _encode(body))
        return _decode_accepted(response.body)

    async def register_alias(self, *, alias_type: str, alias_value: str, account_ref: str,
                             owner_national_id: str, display_name: str,
                             owner_kind: int = 1) -> AliasAnswer:
        """POST /aliases: bind an alias to one of your accounts (safe to repeat)."""
        body = _encode({"alias_type": alias_type, "alias_value": alias_value,
                        "account_ref": account_ref, "owner_national_id": owner_national_id,
                        "display_name": display_name, "owner_kind": owner_kind})
        response = await self._call(b"POST", b"/aliases", body)
        return _decode_alias(response.body)

    async def delete_alias(self, alias_type: str, alias_value: str) -> AliasAnswer:
        """DELETE /aliases/{type}/{value}: remove one of your aliases."""
        path = f"/aliases/{quote(alias_type, safe='')}/{quote(alias_value, safe='')}"
        response = await self._call(b"DELETE", path.encode())
        return _decode_alias(response.body)

    # -- the callback receiver ---------------------------------------------------------

    def _receive(self, request: Request) -> Response:
        if request.method != b"POST":
            return Response(405, b'{"detail":"POST only"}')
        if self.switch_key is not None:
            try:
                found = signature_from_headers(request.headers)
                if found is None:
                    raise JwsError("the switch's signature is missing")
                verify_detached(found[0], found[1], request.body, self.switch_key)
            except JwsError as error:
                log.warning("sdk.callback_signature_refused error=%s", error)
                return Response(401, _encode({"detail": str(error)}))
        try:
            message = _decode_outbound(request.body)
        except msgspec.DecodeError as error:  # ValidationError is a DecodeError
            return Response(400, _encode({"detail": str(error)}))
        self.received_total += 1
        self._dispatch(message)
        return _OK_BODY

    def _dispatch(self, message) -> None:
        handler = self.handler
        kind = type(message)
        try:
            if kind is CreditRequest:
                decision = handler.on_credit_request(message)
                if type(decision) is bool or decision is None or type(decision) is tuple:
                    self._answer_now(message, decision)  # the common, synchronous case
                elif inspect.isawaitable(decision):
                    self._spawn(self._answer_later(message, decision))
                else:
                    self._answer_now(message, decision)
                return
            if kind is TransferOutcome:
                result = handler.on_transfer_outcome(message)
            elif kind is Refused:
                result = handler.on_refused(message)
            elif kind is RequestToPayNotice:
                result = handler.on_request_to_pay_notice(message)
            elif kind is RequestToPayOutcome:
                result = handler.on_request_to_pay_outcome(message)
            elif kind is ErrorAnswer:
                result = handler.on_error(message)
            else:
                return  # ResolveAnswer: HTTP resolves answer in the response instead
            if result is not None and inspect.isawaitable(result):
                self._spawn(result)
        except Exception:  # noqa: BLE001 - a handler bug must not break the receiver
            log.exception("sdk.handler_error type=%s", kind.__name__)

    def _spawn(self, awaitable) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_later(self, message: CreditRequest, decision) -> None:
        self._answer_now(message, await decision)

    def _answer_now(self, message: CreditRequest, decision) -> None:
        if decision is None:
            return
        accepted, reason = (decision, "") if isinstance(decision, bool) else decision
        body = _encode({"accepted": accepted, "reason": reason} if reason
                       else {"accepted": accepted})
        path = f"/transfers/{message.payer_participant_id}/" \
               f"{quote(message.transfer_id, safe='')}".encode()
        headers = ((COMPACT_HEADER, self.signer.sign(body)),) if self.signer else ()
        # Fast path without a task: pipeline on a connection with room.
        future = self.pool.try_send(b"PUT", path, body, headers) if self.pool else None
        if future is None:
            self._spawn(self._answer_with_retries(path, body))
            return
        future.add_done_callback(
            lambda done: self._answered(done, path, body))

    def _answered(self, future: asyncio.Future, path: bytes, body: bytes) -> None:
        if not future.cancelled() and future.exception() is None:
            status = future.result().status
            if status < 400:
                return
            if status not in _RETRY_STATUSES:
                self.answer_failures_total += 1
                log.warning("sdk.answer_refused status=%d body=%r", status,
                            future.result().body[:200])
                return
        if self.pool is not None:
            self._spawn(self._answer_with_retries(path, body))

    async def _answer_with_retries(self, path: bytes, body: bytes) -> None:
        try:
            await self._call(b"PUT", path, body)
        except (HttpClientError, SwitchError) as error:
            # The payee timeout will expire the transfer; the payer sees EXPIRED.
            self.answer_failures_total += 1
            log.warning("sdk.answer_failed error=%s", error)


def _error(response: ClientResponse) -> SwitchError:
    try:
        body = _decode_error(response.body)
        return SwitchError(body.result, response.status, body.detail)
    except msgspec.DecodeError:
        return SwitchError(Result.COMMUNICATION_ERROR, response.status,
                           response.body[:200].decode("utf-8", "replace"))
