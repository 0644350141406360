"""`HttpClient`: what a bank or wallet embeds to speak the HTTP/JSON connector.

The same shape as `StreamClient` (`connectors.sdk.ParticipantClient`): resolve,
`submit_transfer` / `transfer` (a future of the FINAL answer), status, request-to-pay and
its decision, alias registration, credit requests answered through `on_credit_request`
(or a `ParticipantHandler`), every pushed message to `on_push`. Over HTTP the requests go
out on a keep-alive, pipelining connection pool and everything the switch sends arrives at
a small callback receiver (an HTTP server) this client runs: register its `callback_url`
as the participant's callback URL at onboarding. A transfer's future therefore needs the
receiver: it resolves when the outcome callback arrives.

Retries: a request that got no answer, or 502/503/504 (SERVER_BUSY, SERVICE_UNAVAILABLE),
is sent again with the SAME body after an exponential back-off with jitter, so a transfer
keeps its transfer id and a resend can never pay twice (the switch answers it with the
first outcome). Given several base URLs (a primary switch and its standbys), a request
that got no answer moves the client to the next URL at once; `attempts_max` then counts
rounds over all of them, with the back-off between rounds. A payee's answer is remembered until the transfer's outcome arrives, so a
credit request re-sent after a switch restart is answered the same.

Inbound messages may arrive more than once (the switch delivers at least once): handlers
must be idempotent by (payer_participant_id, transfer_id). The receiver answers 200 as
soon as a message is decoded (and its signature checked, when the switch's key is given)
and runs the handler afterwards.

It must never change a transfer id on retry, never block the loop in a handler call and
never log an API key.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections import deque
from typing import Awaitable, Callable, Sequence
from urllib.parse import quote

import msgspec

from connectors.http import limits
from connectors.http.client import ClientResponse, ConnectionPool, HttpClientError
from connectors.http.errors import ErrorBody
from connectors.http.jws import COMPACT_HEADER, JwsError, Signer, VerifyKey, \
    signature_from_headers, verify_detached
from connectors.http.resources import Accepted, Health
from connectors.http.server import HttpServer, Request, Response
from connectors.sdk import Decision, SdkError, TransferWaiting
from switch.core.messages import (
    AliasAnswer,
    AliasRegistration,
    BulkAliasAnswer,
    CreditRequest,
    ErrorAnswer,
    Outbound,
    Party,
    ParticipantView,
    Refused,
    RequestType,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    ResolveAnswer,
    ReturnRequest,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import TRANSFER_FINAL_STATES, Result

log = logging.getLogger("ponte.sdk.http")

_encode = msgspec.json.Encoder().encode
_decode_outbound = msgspec.json.Decoder(Outbound).decode
_decode_accepted = msgspec.json.Decoder(Accepted).decode
_decode_outcome = msgspec.json.Decoder(TransferOutcome).decode
_decode_resolve = msgspec.json.Decoder(ResolveAnswer).decode
_decode_alias = msgspec.json.Decoder(AliasAnswer).decode
_decode_error = msgspec.json.Decoder(ErrorBody).decode
_decode_health = msgspec.json.Decoder(Health).decode
_decode_view = msgspec.json.Decoder(ParticipantView).decode

_OK_BODY = Response(200, b"{}")
_RETRY_STATUSES = frozenset({502, 503, 504})
ATTEMPTS_MAX_DEFAULT = 6
BACKOFF_MS_MIN = 20
BACKOFF_MS_MAX = 2_000
PENDING_MAX_DEFAULT = 50_000
# Payee answers remembered until their outcome arrives (to answer a re-sent credit request
# the same); past the bound the oldest are forgotten (their outcome was given up on).
ANSWERS_REMEMBERED_MAX = 100_000
ALIASES_IN_FLIGHT_MAX = 64  # register_aliases: registrations in flight at once
BASE_URLS_MAX = 16  # switch addresses one client moves between (a primary, its standbys)


class SwitchError(Exception):
    """The switch answered with a typed error (`result`, its `http_status`, `detail`)."""

    def __init__(self, result: Result | int, http_status: int, detail: str = "",
                 retry_after_ms: int = 0) -> None:
        try:
            result = Result(result)
        except ValueError:
            pass
        name = result.name if isinstance(result, Result) else str(result)
        super().__init__(f"{http_status} {name}: {detail}")
        self.result = result
        self.http_status = http_status
        self.detail = detail
        self.retry_after_ms = retry_after_ms


class ParticipantHandler:
    """Override what you need. Methods may be plain or `async`. Each may be called more
    than once for the same message (at-least-once delivery)."""

    def on_credit_request(self, message: CreditRequest):
        """Return a `Decision` (or True / False / (False, reason)); the client PUTs the
        answer. Return None to answer later with `HttpClient.answer`."""
        return True

    def on_transfer_outcome(self, message: TransferOutcome) -> None:
        """A transfer's state (as payer or payee). As payee, credit your customer only
        when `state` is COMMITTED."""

    def on_refused(self, message: Refused) -> None:
        """A request of yours was not acted on; nothing was recorded for it."""

    def on_request_to_pay_notice(self, message: RequestToPayNotice) -> None:
        """A payee asks you to pay; decide with `HttpClient.decide_request_to_pay`."""

    def on_request_to_pay_outcome(self, message: RequestToPayOutcome) -> None:
        """A request-to-pay's state."""

    def on_error(self, message: ErrorAnswer) -> None:
        """The switch could not act on something you sent."""


class _Callbacks(ParticipantHandler):
    """The StreamClient-style options (`on_credit_request`, `on_push`) as a handler."""

    def __init__(self, on_credit_request, on_push) -> None:
        self._credit = on_credit_request
        self._push = on_push

    def on_credit_request(self, message):
        return None if self._credit is None else self._credit(message)

    def _pushed(self, message) -> None:
        if self._push is not None:
            self._push(message)

    on_transfer_outcome = on_refused = on_request_to_pay_notice = _pushed
    on_request_to_pay_outcome = on_error = _pushed


class _Pending:
    __slots__ = ("request", "future", "path", "body")

    def __init__(self, request, future: asyncio.Future, path: bytes, body: bytes) -> None:
        self.request = request
        self.future = future
        self.path = path
        self.body = body


def _decision(decision) -> Decision:
    if type(decision) is Decision:
        return decision
    if type(decision) is bool:
        return Decision(decision)
    accepted, reason = decision
    return Decision(bool(accepted), str(reason))


class HttpClient(TransferWaiting):
    """A participant's connection to the switch over HTTP. `await connect()` (or `async
    with`), then the same calls as `StreamClient`; `await close()` at the end."""

    def __init__(self, base_url: str | Sequence[str], api_key: str, *,
                 handler: ParticipantHandler | None = None,
                 on_credit_request: Callable[[CreditRequest], Decision | None |
                                             Awaitable[Decision | None]] | None = None,
                 on_push: Callable[[object], None] | None = None,
                 callback_host: str = "127.0.0.1", callback_port: int = 0,
                 signer: Signer | None = None, switch_key: VerifyKey | None = None,
                 connections_max: int = 4,
                 in_flight_per_connection_max: int =
                 limits.REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX,
                 timeout_ms: int = limits.CALLBACK_TIMEOUT_MS,
                 attempts_max: int = ATTEMPTS_MAX_DEFAULT,
                 pending_max: int = PENDING_MAX_DEFAULT,
                 rng: random.Random | None = None) -> None:
        """`base_url`: the switch's HTTP connector (e.g. http://127.0.0.1:8080), or a list
        of them (primary first, then standbys: the client moves to the next when one
        does not answer).
        `handler`, or the StreamClient-style `on_credit_request` / `on_push`: what to do
        with inbound messages; with any of them the client runs its callback receiver on
        callback_host:callback_port (0 = a free port; see `callback_url`). `signer`: signs
        every body (required if the switch was told so). `switch_key`: refuse callbacks
        whose signature does not verify with it. `pending_max`: transfers awaiting their
        outcome at once (`room()` waits below it)."""
        assert attempts_max >= 1
        assert pending_max >= 1
        if handler is None and (on_credit_request is not None or on_push is not None):
            handler = _Callbacks(on_credit_request, on_push)
        self.base_urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not 1 <= len(self.base_urls) <= BASE_URLS_MAX:
            raise ValueError(f"1..{BASE_URLS_MAX} base URLs")
        self._url_index = 0
        self.base_url = self.base_urls[0]  # the one requests go to now
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
        self.pending_max = pending_max
        self.rng = rng or random.Random()
        self.participant_id = 0
        self.pool: ConnectionPool | None = None
        self.receiver: HttpServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self._transfers: dict[tuple[int, str], _Pending] = {}
        self._requests_to_pay: dict[str, asyncio.Future] = {}
        self._answers: dict[tuple[int, str], Decision] = {}
        self._room = asyncio.Event()
        self._room.set()
        # Requests waiting for room in the pool, in order: (method, path, body, done).
        # Drained whenever the pool frees a slot, so overflow costs no task per request.
        self._backlog: deque = deque()
        self.received_total = 0
        self.answer_failures_total = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool (and the callback receiver if there is a handler) and learn which
        participant the API key belongs to (GET /participant). Raises SwitchError if the
        key is refused."""
        self.pool = self._new_pool(self.base_url)
        if self.handler is not None and self.receiver is None:
            await self.start_receiver()
        view = await self.participant()
        self.participant_id = view.participant_id

    def _new_pool(self, url: str) -> ConnectionPool:
        pool = ConnectionPool(
            url, connections_max=self.connections_max,
            in_flight_per_connection_max=self.in_flight_per_connection_max,
            timeout_ms=self.timeout_ms,
            headers=((b"authorization", b"Bearer " + self.api_key.encode()),))
        pool.on_free = self._drain
        return pool

    def _fail_over(self, failed: ConnectionPool | None) -> bool:
        """A request on `failed` got no answer: move to the next base URL (once per
        failure of the current pool). True when a whole round over the URLs is done (the
        caller counts an attempt and backs off), False to try the next URL at once."""
        if len(self.base_urls) == 1 or failed is None or failed is not self.pool:
            return True
        self._url_index = (self._url_index + 1) % len(self.base_urls)
        self.base_url = self.base_urls[self._url_index]
        self.pool = self._new_pool(self.base_url)
        self._spawn(failed.close())
        log.info("sdk.http_fail_over base_url=%s", self.base_url)
        return self._url_index == 0

    async def start_receiver(self) -> str:
        """Start the callback receiver before connecting (e.g. to learn the callback URL
        to register at onboarding); returns `callback_url`. `connect` starts it if not."""
        assert self.handler is not None, "a receiver needs a handler"
        if self.receiver is None:
            self.receiver = HttpServer(self._receive)
            await self.receiver.start(self.callback_host, self.callback_port)
        return self.callback_url

    async def close(self) -> None:
        """Close the receiver and the pool; transfers still awaiting an outcome get
        SdkError, handler tasks still running are cancelled."""
        if self.receiver is not None:
            await self.receiver.close(grace_ms=1_000)
            self.receiver = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for pending in self._transfers.values():
            if not pending.future.done():
                pending.future.set_exception(SdkError("client closed"))
        self._transfers.clear()
        self._backlog.clear()
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

    @property
    def pending_transfers(self) -> int:
        """Transfers sent and still awaiting their final answer."""
        return len(self._transfers)

    # -- plain calls -------------------------------------------------------------------

    def _headers(self, method: bytes, path: bytes, body: bytes | None) -> tuple:
        """The signature header of a request with a body, when the client signs: over the
        body, bound to the method and path (the switch refuses it on any other request)."""
        if body is not None and self.signer is not None:
            return ((COMPACT_HEADER, self.signer.sign(body, method=method, uri=path)),)
        return ()

    async def _call(self, method: bytes, path: bytes, body: bytes | None = None
                    ) -> ClientResponse:
        """One request, resent unchanged after a back-off while it gets no answer or a
        5xx that means "later" (attempts_max in all); raises SwitchError on other errors
        and HttpClientError when no answer ever came."""
        assert self.pool is not None, "call connect() first"
        headers = self._headers(method, path, body)
        attempts = self.attempts_max
        attempt = 0
        while True:
            pool = self.pool
            if pool is None:
                raise HttpClientError("client closed")
            try:
                response = await pool.request(method, path, body, headers)
            except HttpClientError:
                if not self._fail_over(pool):
                    continue  # the next base URL, at once
                attempt += 1
                if attempt >= attempts:
                    raise
            else:
                if response.status < 400:
                    return response
                attempt += 1
                if response.status not in _RETRY_STATUSES or attempt >= attempts:
                    raise _error(response)
            await asyncio.sleep(self._backoff_s(attempt - 1))

    def _backoff_s(self, attempt: int) -> float:
        ceiling_ms = min(BACKOFF_MS_MAX, BACKOFF_MS_MIN << attempt)
        return (ceiling_ms / 2 + self.rng.uniform(0, ceiling_ms / 2)) / 1000

    async def health(self) -> Health:
        """GET /health (no authentication needed)."""
        assert self.pool is not None
        response = await self.pool.request(b"GET", b"/health")
        return _decode_health(response.body)

    async def participant(self) -> ParticipantView:
        """GET /participant: who the API key belongs to (id, name, status, currencies)."""
        return _decode_view((await self._call(b"GET", b"/participant")).body)

    async def resolve(self, alias_type: str, alias_value: str,
                      payer_user_ref: str = "") -> ResolveAnswer:
        """Look an alias up before a transfer. The answer's `result` is OK (with the payee
        participant, an opaque account reference and a masked name) or why not
        (PARTY_NOT_FOUND, LOOKUP_RATE_LIMITED with retry_after_ms, VALIDATION_ERROR)."""
        path = f"/aliases/{quote(alias_type, safe='')}/{quote(alias_value, safe='')}"
        if payer_user_ref:
            path += f"?payer_user_ref={quote(payer_user_ref, safe='')}"
        try:
            response = await self._call(b"GET", path.encode())
        except SwitchError as error:
            if not isinstance(error.result, Result) or error.http_status == 401:
                raise
            alias = Party(alias_type=alias_type, alias_value=alias_value)
            return ResolveAnswer(alias=alias, result=error.result,
                                 retry_after_ms=error.retry_after_ms)
        return _decode_resolve(response.body)

    async def status(self, payer_participant_id: int, transfer_id: str):
        """The transfer's current state (TransferOutcome), or a Refused saying why there
        is none (TRANSFER_NOT_FOUND)."""
        path = f"/transfers/{payer_participant_id}/{quote(transfer_id, safe='')}"
        try:
            response = await self._call(b"GET", path.encode())
        except SwitchError as error:
            if not isinstance(error.result, Result) or error.http_status == 401:
                raise
            return Refused(request_type=RequestType.STATUS_QUERY,
                           scope_participant_id=payer_participant_id, id=transfer_id,
                           result=error.result)
        return _decode_outcome(response.body)

    async def register_alias(self, *, alias_type: str, alias_value: str, account_ref: str,
                             owner_national_id: str, display_name: str,
                             owner_kind: int = 1) -> AliasAnswer:
        """POST /aliases: bind an alias to one of your accounts (safe to repeat). Raises
        SwitchError with the field at fault in `detail` when refused."""
        body = _encode({"alias_type": alias_type, "alias_value": alias_value,
                        "account_ref": account_ref, "owner_national_id": owner_national_id,
                        "display_name": display_name, "owner_kind": owner_kind})
        response = await self._call(b"POST", b"/aliases", body)
        return _decode_alias(response.body)

    async def register_aliases(self, aliases: list[AliasRegistration]) -> BulkAliasAnswer:
        """Register many aliases (POST /aliases each, pipelined). HTTP answers do not tell
        a new registration from a repeated one, so `existing` is always 0 here."""
        registered = rejected = 0
        rejections: list = []
        gate = asyncio.Semaphore(ALIASES_IN_FLIGHT_MAX)

        async def one(index: int, alias: AliasRegistration):
            async with gate:
                try:
                    await self.register_alias(
                        alias_type=alias.alias_type, alias_value=alias.alias_value,
                        account_ref=alias.account_ref,
                        owner_national_id=alias.owner_national_id,
                        display_name=alias.display_name, owner_kind=alias.owner_kind)
                    return None
                except SwitchError as error:
                    return index, int(error.result), error.detail

        for found in await asyncio.gather(*(one(i, a) for i, a in enumerate(aliases))):
            if found is None:
                registered += 1
            else:
                rejected += 1
                rejections.append(found)
        return BulkAliasAnswer(registered=registered, existing=0, rejected=rejected,
                               rejections=rejections)

    async def delete_alias(self, alias_type: str, alias_value: str) -> AliasAnswer:
        """DELETE /aliases/{type}/{value}: remove one of your aliases."""
        path = f"/aliases/{quote(alias_type, safe='')}/{quote(alias_value, safe='')}"
        response = await self._call(b"DELETE", path.encode())
        return _decode_alias(response.body)

    # -- transfers ---------------------------------------------------------------------

    def submit_transfer(self, request: TransferRequest | ReturnRequest) -> asyncio.Future:
        """Send a transfer (or a return) and return a future of its FINAL answer: a
        TransferOutcome in COMMITTED/REJECTED/EXPIRED, or a Refused (nothing recorded).
        Pipelined: does not wait. Sending the same transfer_id again while it is open
        joins the same future. Needs the callback receiver (a handler) for the outcome."""
        assert self.participant_id, "call connect() first"
        assert self.receiver is not None, "outcomes arrive by callback: give a handler"
        key = (self.participant_id, request.transfer_id)
        pending = self._transfers.get(key)
        if pending is not None:
            return pending.future
        path = b"/returns" if type(request) is ReturnRequest else b"/transfers"
        pending = _Pending(request, asyncio.get_running_loop().create_future(), path,
                           _encode(request))
        self._transfers[key] = pending
        if len(self._transfers) >= self.pending_max:
            self._room.clear()
        self._send_pending(key, pending, 0)
        return pending.future

    async def room(self) -> None:
        """Wait until a pipelined sender may submit more (below `pending_max`)."""
        while len(self._transfers) >= self.pending_max:
            self._room.clear()
            await self._room.wait()

    def _send(self, method: bytes, path: bytes, body: bytes, done) -> None:
        """Pipeline one request without a task: now if the pool has room, else after the
        requests already waiting (in order). `done(future)` gets the answer's future."""
        if self.pool is None:
            raise SdkError("client closed")
        if not self._backlog:
            future = self.pool.try_send(method, path, body, self._headers(method, path, body),
                                        self._room_opened)
            if future is not None:
                future.add_done_callback(done)
                return
        self._backlog.append((method, path, body, done))

    def _room_opened(self, error) -> None:
        if error is not None and self._backlog and not self.pool.connections:
            # Cannot connect at all: fail what waits (each decides whether to retry).
            backlog, self._backlog = self._backlog, deque()
            for _, _, _, done in backlog:
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(error)
                done(failed)
            return
        self._drain()

    def _drain(self) -> None:
        backlog = self._backlog
        pool = self.pool
        while backlog and pool is not None:
            method, path, body, done = backlog[0]
            future = pool.try_send(method, path, body, self._headers(method, path, body),
                                   self._room_opened)
            if future is None:
                return
            backlog.popleft()
            future.add_done_callback(done)

    def _send_pending(self, key, pending: _Pending, attempt: int) -> None:
        pool = self.pool
        self._send(b"POST", pending.path, pending.body,
                   lambda done: self._pending_sent(key, pending, attempt, done, pool))

    async def _send_pending_later(self, key, pending: _Pending, attempt: int,
                                  delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        pool = self.pool
        if self._transfers.get(key) is not pending or pool is None:
            return
        try:
            response = await pool.request(b"POST", pending.path, pending.body,
                                          self._headers(b"POST", pending.path, pending.body))
        except HttpClientError as error:
            self._pending_failed(key, pending, attempt, error, pool)
            return
        self._pending_answered(key, pending, attempt, response)

    def _pending_sent(self, key, pending: _Pending, attempt: int,
                      future: asyncio.Future, pool: ConnectionPool | None = None) -> None:
        if future.cancelled():
            self._pending_failed(key, pending, attempt, HttpClientError("cancelled"), pool)
        elif future.exception() is not None:
            self._pending_failed(key, pending, attempt, future.exception(), pool)
        else:
            self._pending_answered(key, pending, attempt, future.result())

    def _pending_answered(self, key, pending: _Pending, attempt: int,
                          response: ClientResponse) -> None:
        if response.status < 400:
            return  # 202: recorded; the outcome comes by callback
        if response.status in _RETRY_STATUSES and attempt + 1 < self.attempts_max:
            self._spawn(self._send_pending_later(key, pending, attempt + 1,
                                                 self._backoff_s(attempt)))
            return
        error = _error(response)
        result = error.result if isinstance(error.result, Result) else Result.VALIDATION_ERROR
        request_type = (RequestType.RETURN if pending.path == b"/returns"
                        else RequestType.TRANSFER)
        self._finish(key, Refused(request_type=request_type, scope_participant_id=key[0],
                                  id=key[1], result=result))

    def _pending_failed(self, key, pending: _Pending, attempt: int, error,
                        pool: ConnectionPool | None = None) -> None:
        if self.pool is None:
            return  # closed: close() answers what is pending
        if not self._fail_over(pool):
            self._spawn(self._send_pending_later(key, pending, attempt, 0.0))
            return
        if attempt + 1 < self.attempts_max:
            self._spawn(self._send_pending_later(key, pending, attempt + 1,
                                                 self._backoff_s(attempt)))
            return
        # Never answered: it may or may not be recorded. Ask its status, or send it again.
        self._transfers.pop(key, None)
        if not pending.future.done():
            pending.future.set_exception(SdkError(f"no answer from the switch: {error}"))
        self._room.set()

    def _finish(self, key, message) -> None:
        pending = self._transfers.pop(key, None)
        if pending is not None and not pending.future.done():
            pending.future.set_result(message)
        if len(self._transfers) < self.pending_max:
            self._room.set()

    # -- answers and request-to-pay ----------------------------------------------------

    def answer(self, credit_request: CreditRequest, decision: Decision) -> None:
        """Answer a credit request (when the handler returned None). Retried in the
        background; remembered until the outcome, to answer a re-sent request the same."""
        key = (credit_request.payer_participant_id, credit_request.transfer_id)
        decision = _decision(decision)
        answers = self._answers
        answers[key] = decision
        if len(answers) > ANSWERS_REMEMBERED_MAX:
            del answers[next(iter(answers))]
        self._put_answer(key, decision)

    async def answer_credit_request(self, payer_participant_id: int, transfer_id: str,
                                    accepted: bool, reason: str = "") -> Accepted:
        """Answer by ids and wait for the switch to record it (PUT /transfers/...)."""
        body = {"accepted": accepted}
        if reason:
            body["reason"] = reason
        path = f"/transfers/{payer_participant_id}/{quote(transfer_id, safe='')}"
        response = await self._call(b"PUT", path.encode(), _encode(body))
        return _decode_accepted(response.body)

    def _put_answer(self, key, decision: Decision) -> None:
        body = _encode({"accepted": decision.accepted, "reason": decision.reason}
                       if decision.reason else {"accepted": decision.accepted})
        path = f"/transfers/{key[0]}/{quote(key[1], safe='')}".encode()
        if self.pool is not None:
            self._send(b"PUT", path, body, lambda done: self._answered(done, path, body))

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

    def request_to_pay(self, request: RequestToPay) -> asyncio.Future:
        """Ask a payer to pay; the future gets the first RequestToPayOutcome (OPEN when
        the payer was asked) or a Refused. Later outcomes arrive through the handler."""
        future = asyncio.get_running_loop().create_future()
        self._requests_to_pay[request.request_id] = future
        self._spawn(self._post_request_to_pay(request, future))
        return future

    async def _post_request_to_pay(self, request: RequestToPay,
                                   future: asyncio.Future) -> None:
        try:
            await self._call(b"POST", b"/requests-to-pay", _encode(request))
        except (HttpClientError, SwitchError) as error:
            self._requests_to_pay.pop(request.request_id, None)
            if not future.done():
                result = getattr(error, "result", Result.COMMUNICATION_ERROR)
                future.set_result(Refused(
                    request_type=RequestType.REQUEST_TO_PAY,
                    scope_participant_id=self.participant_id,
                    id=request.request_id,
                    result=result if isinstance(result, Result) else Result.VALIDATION_ERROR))

    def decide_request_to_pay(self, decision: RequestToPayDecision) -> None:
        """Approve (with the transfer id it becomes) or decline a request-to-pay; sent in
        the background with retries (its outcome arrives through the handler)."""
        body = {"approved": decision.approved}
        for field in ("transfer_id", "expires_at_ns", "payer_account_ref", "payer_user_ref"):
            value = getattr(decision, field)
            if value:
                body[field] = value
        path = f"/requests-to-pay/{decision.payee_participant_id}/" \
               f"{quote(decision.request_id, safe='')}"
        self._spawn(self._decide(path.encode(), _encode(body)))

    async def _decide(self, path: bytes, body: bytes) -> None:
        try:
            await self._call(b"PUT", path, body)
        except (HttpClientError, SwitchError) as error:
            log.warning("sdk.decision_failed error=%s", error)

    async def send_transfer(self, transfer: TransferRequest) -> Accepted:
        """POST /transfers and return once the switch recorded it (202), without waiting
        for the outcome (for clients without a receiver, who poll `status`)."""
        return _decode_accepted((await self._call(b"POST", b"/transfers",
                                                  _encode(transfer))).body)

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
        except RecursionError:
            # A nesting bomb stops msgspec at its recursion guard: bad input, no traceback.
            return Response(400, b'{"detail":"nested deeper than the decoder allows"}')
        self.received_total += 1
        self._dispatch(message)
        return _OK_BODY

    def _dispatch(self, message) -> None:
        handler = self.handler
        kind = type(message)
        try:
            if kind is CreditRequest:
                self._credit_request(message)
                return
            if kind is TransferOutcome:
                if message.state in TRANSFER_FINAL_STATES:
                    key = (message.payer_participant_id, message.transfer_id)
                    self._answers.pop(key, None)
                    if message.payer_participant_id == self.participant_id:
                        self._finish(key, message)
                result = handler.on_transfer_outcome(message)
            elif kind is Refused:
                if message.request_type in (RequestType.TRANSFER, RequestType.RETURN):
                    self._finish((message.scope_participant_id, message.id), message)
                elif message.request_type == RequestType.REQUEST_TO_PAY:
                    self._request_to_pay_answered(message.id, message)
                result = handler.on_refused(message)
            elif kind is RequestToPayNotice:
                result = handler.on_request_to_pay_notice(message)
            elif kind is RequestToPayOutcome:
                if message.payee_participant_id == self.participant_id:
                    self._request_to_pay_answered(message.request_id, message)
                result = handler.on_request_to_pay_outcome(message)
            elif kind is ErrorAnswer:
                result = handler.on_error(message)
            else:
                return  # ResolveAnswer: HTTP resolves answer in the response instead
            if result is not None and inspect.isawaitable(result):
                self._spawn(result)
        except Exception:  # noqa: BLE001 - a handler bug must not break the receiver
            log.exception("sdk.handler_error type=%s", kind.__name__)

    def _request_to_pay_answered(self, request_id: str, message) -> None:
        future = self._requests_to_pay.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(message)

    def _credit_request(self, message: CreditRequest) -> None:
        key = (message.payer_participant_id, message.transfer_id)
        earlier = self._answers.get(key)
        if earlier is not None:
            # A re-sent credit request (after a switch restart): answer as before.
            self._put_answer(key, earlier)
            return
        decision = self.handler.on_credit_request(message)
        if decision is None:
            return
        if type(decision) in (bool, tuple, Decision):
            self.answer(message, decision)  # the common, synchronous case
        elif inspect.isawaitable(decision):
            self._spawn(self._answer_later(message, decision))
        else:
            raise TypeError(f"on_credit_request returned {type(decision).__name__}")

    async def _answer_later(self, message: CreditRequest, decision) -> None:
        result = await decision
        if result is not None:
            self.answer(message, result)

    def _spawn(self, awaitable) -> None:
        task = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _error(response: ClientResponse) -> SwitchError:
    try:
        body = _decode_error(response.body)
        return SwitchError(body.result, response.status, body.detail, body.retry_after_ms)
    except msgspec.DecodeError:
        return SwitchError(Result.COMMUNICATION_ERROR, response.status,
                           response.body[:200].decode("utf-8", "replace"))
