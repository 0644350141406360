"""`StreamClient`: what a bank or wallet embeds to speak the stream protocol to the switch.

One persistent TCP (optionally TLS) connection, pipelined: many transfers, answers and
lookups in flight at once, every frame written during one loop tick sent with one write.
A switch may run as a primary and standbys (docs/operations.md): give every address
(`fallback_addresses`); the client connects to the first that answers and, when the
connection drops, tries the next one at once, then cycles through them with back-off
until one answers (a standby opens its port only once it has taken over).
Transfers are matched to their outcomes by (payer_participant_id, transfer_id); calls
(resolve, status, alias registration) by correlation id. Retries — after SERVER_BUSY, or
after the connection drops and is re-established — resend the SAME request under the SAME
transfer id, so the switch's idempotency turns a retry into the first outcome, never a
second payment.

Credit requests arrive through `on_credit_request(credit_request)`, which answers with a
`Decision` (or None and calls `answer(...)` later); every outcome, request-to-pay notice and
other pushed message also goes to `on_push(message)` when given, so the participant can keep
its books (credit the payee's customer on COMMITTED only; outcomes may arrive more than
once — treat them idempotently).

It must never invent a transfer id on retry, never block the loop, and never log an API key.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
from typing import Awaitable, Callable, Sequence

import msgspec

from connectors.sdk import Decision, InvalidRequest, RetryPolicy, SdkError, TransferWaiting
from connectors.stream import limits
from connectors.stream.protocol import (
    AliasesReply,
    FrameError,
    FrameReader,
    Hello,
    ProtocolErrorFrame,
    Push,
    RegisterAliases,
    Reply,
    Request,
    StreamError,
    Welcome,
    append_frame,
    check_inbound,
    server_frame_decoder,
)
from switch.core.messages import (
    AliasRegistration,
    BulkAliasAnswer,
    CreditRequest,
    ErrorAnswer,
    Party,
    PayeeAnswer,
    Refused,
    RequestType,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayOutcome,
    ResolveAnswer,
    ResolveRequest,
    ReturnRequest,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import TRANSFER_FINAL_STATES, Result

log = logging.getLogger("ponte.sdk.stream")

_RETRYABLE = frozenset({Result.SERVER_BUSY, Result.SERVICE_UNAVAILABLE})
_FINAL = TRANSFER_FINAL_STATES


def _checked(message) -> None:
    """Raise InvalidRequest for a message the switch would refuse on its type alone (or
    that cannot be encoded at all), before the client records or writes anything."""
    try:
        check_inbound(message)
    except FrameError as error:
        raise InvalidRequest(str(error)) from None


class _Done:
    """A callback standing where a future would: no loop scheduling per transfer."""

    __slots__ = ("callback", "_done")

    def __init__(self, callback) -> None:
        self.callback = callback
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result) -> None:
        self._done = True
        self.callback(result, None)

    def set_exception(self, error) -> None:
        self._done = True
        self.callback(None, error)

    def cancel(self) -> None:
        self.set_exception(asyncio.CancelledError())


class _Pending:
    __slots__ = ("request", "future", "attempts", "corr")

    def __init__(self, request, future) -> None:
        self.request = request
        self.future = future
        self.attempts = 1
        self.corr = 0


class _Protocol(asyncio.Protocol):
    def __init__(self, client: StreamClient) -> None:
        self.client = client
        self.reader = FrameReader()

    def connection_made(self, transport) -> None:
        self.client._connected(transport)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        handle = self.client._frame
        while True:
            frame = reader.next_frame()
            if frame is None:
                return
            if type(frame) is StreamError:
                self.client._lost(SdkError(f"bad frame from the switch: {frame.name}"))
                return
            handle(frame)

    def connection_lost(self, exc) -> None:
        self.client._lost(exc)

    def pause_writing(self) -> None:
        self.client._write_open.clear()

    def resume_writing(self) -> None:
        self.client._write_open.set()


class StreamClient(TransferWaiting):
    """See the module docstring and connectors/sdk/__init__.py for the shared interface."""

    def __init__(self, host: str, port: int, *, api_key: str = "",
                 fallback_addresses: Sequence[tuple[str, int]] = (),
                 ssl: ssl_module.SSLContext | None = None, server_hostname: str | None = None,
                 client_name: str = "ponte-sdk",
                 on_credit_request: Callable[[CreditRequest], Decision | None |
                                             Awaitable[Decision | None]] | None = None,
                 on_push: Callable[[object], None] | None = None,
                 retry: RetryPolicy = RetryPolicy(), reconnect: bool = True,
                 pending_max: int = limits.CLIENT_PENDING_TRANSFERS_MAX_DEFAULT) -> None:
        # Every address of the switch (primary, standbys), in the order to try them; host
        # and port are the one connected to (or tried last).
        self.addresses: list[tuple[str, int]] = [(host, port), *(
            (str(other_host), int(other_port)) for other_host, other_port in fallback_addresses)]
        if len(self.addresses) > limits.CLIENT_ADDRESSES_MAX:
            raise ValueError(f"at most {limits.CLIENT_ADDRESSES_MAX} switch addresses")
        self._address_index = 0
        self.host = host
        self.port = port
        self._api_key = api_key
        self._ssl = ssl
        self._server_hostname = server_hostname
        self.client_name = client_name
        self.on_credit_request = on_credit_request
        self.on_push = on_push
        self.retry = retry
        self.reconnect = reconnect
        self.pending_max = pending_max
        self.participant_id = 0
        self.window_max = 0
        self._transport: asyncio.Transport | None = None
        self._out = bytearray()
        self._flush_scheduled = False
        self._corr = 0
        self._calls: dict[int, asyncio.Future] = {}
        self._transfers: dict[tuple[int, str], _Pending] = {}
        self._corr_transfer: dict[int, tuple[int, str]] = {}
        self._answers: dict[tuple[int, str], PayeeAnswer] = {}
        # corr of each answer's latest send, both ways: a door refusal (SERVER_BUSY) names
        # the corr; the final outcome names the key. Entries leave with the final outcome.
        self._corr_answer: dict[int, tuple[int, str]] = {}
        self._answer_corr: dict[tuple[int, str], int] = {}
        self._requests_to_pay: dict[str, _Pending] = {}
        self._welcome: asyncio.Future | None = None
        self._write_open = asyncio.Event()
        self._write_open.set()
        self._room = asyncio.Event()
        self._room.set()
        self._closing = False
        self._reconnect_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.protocol_error: ProtocolErrorFrame | None = None
        self.connection_lost = asyncio.Event()
        self.reconnects = 0

    # -- connecting ----------------------------------------------------------------------

    @classmethod
    async def connect(cls, host: str, port: int, **options) -> StreamClient:
        """Connect, say Hello and wait for Welcome — to `host:port`, else to the first of
        `fallback_addresses` that answers. Raises SdkError if refused (OSError if no
        address could be reached)."""
        client = cls(host, port, **options)
        await client._open_any(0)
        return client

    async def _open_any(self, first_index: int) -> None:
        """Try every address once, from `first_index` on; raise the last error if none
        took the connection."""
        addresses = self.addresses
        error: BaseException | None = None
        for step in range(len(addresses)):
            index = (first_index + step) % len(addresses)
            self._address_index = index
            self.host, self.port = addresses[index]
            try:
                await self._open()
                return
            except (OSError, asyncio.TimeoutError, SdkError) as failed:
                error = failed
                if self._transport is not None:  # connected, but no Welcome in time
                    self._transport.abort()
                log.info("stream_connect_failed address=%s:%d error=%r", self.host, self.port,
                         failed)
        assert error is not None
        raise error

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        self._welcome = loop.create_future()
        kwargs = {}
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
            kwargs["server_hostname"] = self._server_hostname or self.host
        await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(self), self.host, self.port, **kwargs),
            self.retry.connect_timeout_s)
        self._send(Hello(version=limits.PROTOCOL_VERSION, api_key=self._api_key,
                         client_name=self.client_name))
        welcome = await asyncio.wait_for(self._welcome, self.retry.connect_timeout_s)
        self.participant_id = welcome.participant_id
        self.window_max = welcome.window_max

    def _connected(self, transport) -> None:
        self._transport = transport
        self.connection_lost.clear()
        transport.set_write_buffer_limits(limits.WRITE_BUFFER_HIGH_BYTES,
                                          limits.WRITE_BUFFER_LOW_BYTES)

    def _lost(self, exc) -> None:
        if self._transport is None:
            return
        transport = self._transport
        self._transport = None
        transport.abort()
        self._write_open.set()
        self.connection_lost.set()
        welcome = self._welcome
        if welcome is not None and not welcome.done():
            error = self.protocol_error
            welcome.set_exception(SdkError(
                f"refused: {error.error.name} {error.detail}" if error else
                f"connection lost: {exc!r}"))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(SdkError(f"connection lost: {exc!r}"))
        self._calls.clear()
        self._corr_transfer.clear()
        self._corr_answer.clear()
        self._answer_corr.clear()
        error = self.protocol_error
        # The switch ended the session for its credentials: reconnecting with them would
        # only be refused, again and again.
        revoked = error is not None and error.error is StreamError.SESSION_REVOKED
        if self._closing or not self.reconnect or not self.participant_id or revoked:
            reason = (f"session revoked by the switch: {error.error.name} {error.detail}"
                      if revoked else f"connection lost: {exc!r}")
            for pending in list(self._transfers.values()) + list(self._requests_to_pay.values()):
                if not pending.future.done():
                    pending.future.set_exception(SdkError(reason))
            self._transfers.clear()
            self._requests_to_pay.clear()
            return
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.ensure_future(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = self.retry.backoff_initial_s
        # With several addresses the one that failed is tried last, and the first round
        # starts at once: the switch's standby may already be (or soon be) the primary.
        several = len(self.addresses) > 1
        first_index = (self._address_index + 1) % len(self.addresses)
        rounds = 0
        while not self._closing:
            if rounds or not several:
                await asyncio.sleep(delay * (0.5 + random.random()))
            rounds += 1
            try:
                await self._open_any(first_index)
            except (OSError, asyncio.TimeoutError, SdkError) as error:
                log.info("stream_reconnect_failed error=%r", error)
                delay = min(delay * 2, self.retry.backoff_max_s)
                continue
            self.reconnects += 1
            # Resend everything still open under the same ids: the switch answers each
            # with its first outcome (or its current state), never a second transfer.
            for pending in list(self._transfers.values()):
                self._submit_pending(pending)
            for key, answer in list(self._answers.items()):
                self._send_answer(key, answer)
            for pending in list(self._requests_to_pay.values()):
                pending.corr = self._request(pending.request)
            return

    async def close(self) -> None:
        self._closing = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None:
            self._flush()
            self._transport.close()
            self._transport = None
        for future in self._calls.values():
            if not future.done():
                future.cancel()
        for pending in list(self._transfers.values()) + list(self._requests_to_pay.values()):
            if not pending.future.done():
                pending.future.cancel()

    @property
    def connected(self) -> bool:
        return self._transport is not None

    @property
    def pending_transfers(self) -> int:
        return len(self._transfers)

    @property
    def tracked_entries(self) -> int:
        """Everything the client remembers per request (bounded by what is open)."""
        return (len(self._transfers) + len(self._corr_transfer) + len(self._answers)
                + len(self._corr_answer) + len(self._answer_corr) + len(self._calls)
                + len(self._requests_to_pay))

    # -- requests ------------------------------------------------------------------------

    async def resolve(self, alias_type: str, alias_value: str, payer_user_ref: str = ""
                      ) -> ResolveAnswer:
        """Look up an alias; the answer names the payee participant and a masked name."""
        return await self._call(ResolveRequest(
            alias=Party(alias_type=alias_type, alias_value=alias_value),
            payer_user_ref=payer_user_ref))

    async def status(self, payer_participant_id: int, transfer_id: str):
        """The transfer's current outcome (TransferOutcome) or a Refused/ErrorAnswer."""
        return await self._call(StatusQuery(payer_participant_id=payer_participant_id,
                                            transfer_id=transfer_id))

    async def register_aliases(self, aliases: list[AliasRegistration]) -> BulkAliasAnswer:
        """Register many aliases for this participant's accounts (chunked per frame)."""
        registered = existing = rejected = 0
        rejections: list = []
        step = limits.ALIASES_PER_FRAME_MAX
        for start in range(0, len(aliases), step):
            chunk = aliases[start:start + step]
            corr = self._next_corr()
            future = asyncio.get_running_loop().create_future()
            try:
                self._send(RegisterAliases(corr=corr, aliases=chunk))
            except FrameError as error:
                raise InvalidRequest(str(error)) from None
            self._calls[corr] = future
            answer = await asyncio.wait_for(future, self.retry.call_timeout_s)
            if not isinstance(answer, BulkAliasAnswer):
                raise SdkError(f"alias registration refused: {answer!r}")
            registered += answer.registered
            existing += answer.existing
            rejected += answer.rejected
            rejections.extend((start + i, code, field) for i, code, field in answer.rejections)
        return BulkAliasAnswer(registered=registered, existing=existing, rejected=rejected,
                               rejections=rejections)

    def submit_transfer(self, request: TransferRequest | ReturnRequest, on_done=None
                        ) -> asyncio.Future | None:
        """Send a transfer (or a return) and return a future of its FINAL answer: a
        TransferOutcome in COMMITTED/REJECTED/EXPIRED, or a Refused. Pipelined: does not
        wait. Sending the same transfer_id again while it is open joins the same future.
        A request the switch would refuse on its type alone (an amount of 0 or past 2**64,
        an id too long) raises InvalidRequest at once and nothing is sent or remembered.

        With `on_done(answer, error)` no future is made: the callback is called once, on
        the loop, with the final answer (or the error that ended the wait). High-rate
        senders save a loop round per transfer that way."""
        key = (self.participant_id, request.transfer_id)
        pending = self._transfers.get(key)
        if pending is not None:
            return pending.future if on_done is None else None
        _checked(request)
        future = (asyncio.get_running_loop().create_future() if on_done is None
                  else _Done(on_done))
        pending = _Pending(request, future)
        self._transfers[key] = pending
        if len(self._transfers) >= self.pending_max:
            self._room.clear()
        self._submit_pending(pending)
        return future if on_done is None else None

    async def room(self) -> None:
        """Wait until a pipelined sender may submit more (pending bound and socket)."""
        while len(self._transfers) >= self.pending_max:
            self._room.clear()
            await self._room.wait()
        await self._write_open.wait()

    def request_to_pay(self, request: RequestToPay) -> asyncio.Future:
        """Ask a payer to pay; the future gets the first RequestToPayOutcome (OPEN when
        the payer was asked) or a Refused. Later outcomes arrive through on_push.
        Raises InvalidRequest for a request its type refuses (nothing is sent)."""
        _checked(request)
        future = asyncio.get_running_loop().create_future()
        pending = _Pending(request, future)
        self._requests_to_pay[request.request_id] = pending
        pending.corr = self._request(request)
        return future

    def decide_request_to_pay(self, decision: RequestToPayDecision) -> None:
        """Approve (with the transfer id it becomes) or decline a request-to-pay. Raises
        InvalidRequest for a decision its type refuses (nothing is sent)."""
        _checked(decision)
        self._request(decision)

    def answer(self, credit_request: CreditRequest, decision: Decision) -> None:
        """Answer a credit request (when on_credit_request returned None). Raises
        InvalidRequest for an answer its type refuses (a reason too long)."""
        key = (credit_request.payer_participant_id, credit_request.transfer_id)
        answer = PayeeAnswer(payer_participant_id=credit_request.payer_participant_id,
                             transfer_id=credit_request.transfer_id,
                             accepted=decision.accepted, reason=decision.reason)
        _checked(answer)
        self._answers[key] = answer
        self._send_answer(key, answer)

    # -- internals: writing --------------------------------------------------------------

    def _next_corr(self) -> int:
        self._corr += 1
        return self._corr

    def _request(self, message) -> int:
        corr = self._next_corr()
        self._send(Request(corr=corr, message=message))
        return corr

    def _submit_pending(self, pending: _Pending) -> None:
        if self._transport is None:
            return  # resent by the reconnect loop
        corr = self._request(pending.request)
        self._corr_transfer.pop(pending.corr, None)  # an earlier attempt's corr
        pending.corr = corr
        self._corr_transfer[corr] = (self.participant_id, pending.request.transfer_id)

    def _send_answer(self, key, answer: PayeeAnswer) -> None:
        if self._transport is None:
            return
        corr = self._request(answer)
        earlier = self._answer_corr.get(key)
        if earlier is not None:
            self._corr_answer.pop(earlier, None)
        self._answer_corr[key] = corr
        self._corr_answer[corr] = key

    async def _call(self, message):
        _checked(message)
        if self._transport is None:
            raise SdkError("not connected")
        corr = self._next_corr()
        future = asyncio.get_running_loop().create_future()
        self._calls[corr] = future
        self._send(Request(corr=corr, message=message))
        try:
            return await asyncio.wait_for(future, self.retry.call_timeout_s)
        finally:
            self._calls.pop(corr, None)

    def _send(self, frame) -> None:
        append_frame(self._out, frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self._transport is not None:
            self._transport.write(self._out)
        self._out = bytearray()

    # -- internals: reading --------------------------------------------------------------

    def _frame(self, data) -> None:
        try:
            frame = server_frame_decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as error:
            log.error("stream_bad_frame_from_switch error=%s", str(error)[:200])
            return
        frame_type = type(frame)
        if frame_type is Push:
            self._push(frame.message)
        elif frame_type is Reply:
            self._reply(frame.corr, frame.message)
        elif frame_type is AliasesReply:
            future = self._calls.pop(frame.corr, None)
            if future is not None and not future.done():
                future.set_result(frame.answer)
        elif frame_type is Welcome:
            if self._welcome is not None and not self._welcome.done():
                self._welcome.set_result(frame)
        else:
            self.protocol_error = frame
            log.warning("stream_protocol_error error=%s detail=%s", frame.error.name,
                        frame.detail)

    def _push(self, message) -> None:
        message_type = type(message)
        if message_type is CreditRequest:
            self._credit_request(message)
            return
        if message_type is TransferOutcome:
            key = (message.payer_participant_id, message.transfer_id)
            if message.state in _FINAL:
                pending = self._transfers.get(key)
                if pending is not None and message.payer_participant_id == self.participant_id:
                    self._finish(key, pending, message)
                if self._answers.pop(key, None) is not None:
                    self._corr_answer.pop(self._answer_corr.pop(key, 0), None)
        elif message_type is Refused:
            if message.request_type in (RequestType.TRANSFER, RequestType.RETURN):
                key = (message.scope_participant_id, message.id)
                pending = self._transfers.get(key)
                if pending is not None:
                    self._refused(key, pending, message)
            elif message.request_type == RequestType.REQUEST_TO_PAY:
                pending = self._requests_to_pay.pop(message.id, None)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(message)
        elif message_type is RequestToPayOutcome:
            if message.payee_participant_id == self.participant_id:
                pending = self._requests_to_pay.pop(message.request_id, None)
                if pending is not None and not pending.future.done():
                    pending.future.set_result(message)
        if self.on_push is not None:
            self.on_push(message)

    def _reply(self, corr: int, message) -> None:
        future = self._calls.pop(corr, None)
        if future is not None:
            if not future.done():
                future.set_result(message)
            return
        key = self._corr_transfer.get(corr)
        if key is not None:
            pending = self._transfers.get(key)
            if pending is not None and pending.corr == corr:
                if type(message) is Refused:
                    self._refused(key, pending, message)
                elif type(message) is ErrorAnswer:
                    self._refused(key, pending, message)
            return
        key = self._corr_answer.pop(corr, None)
        if key is not None:
            self._answer_corr.pop(key, None)
        if key is not None and type(message) is ErrorAnswer and message.result in _RETRYABLE:
            answer = self._answers.get(key)
            if answer is not None:
                self._later(self.retry.backoff_initial_s, self._send_answer, key, answer)
            return
        for pending in self._requests_to_pay.values():
            if pending.corr == corr:
                self._requests_to_pay.pop(pending.request.request_id, None)
                if not pending.future.done():
                    pending.future.set_result(message)
                return
        if self.on_push is not None:
            self.on_push(message)

    def _refused(self, key, pending: _Pending, message) -> None:
        if message.result in _RETRYABLE and pending.attempts < self.retry.attempts_max:
            delay = min(self.retry.backoff_initial_s * 2 ** (pending.attempts - 1),
                        self.retry.backoff_max_s) * (0.5 + random.random())
            pending.attempts += 1
            self._later(delay, self._resubmit, key)
            return
        self._finish(key, pending, message)

    def _resubmit(self, key) -> None:
        pending = self._transfers.get(key)
        if pending is not None:
            self._submit_pending(pending)

    def _finish(self, key, pending: _Pending, message) -> None:
        del self._transfers[key]
        self._corr_transfer.pop(pending.corr, None)
        if not pending.future.done():
            pending.future.set_result(message)
        if len(self._transfers) < self.pending_max:
            self._room.set()

    def _later(self, delay_s: float, callback, *args) -> None:
        asyncio.get_running_loop().call_later(delay_s, callback, *args)

    def _credit_request(self, credit_request: CreditRequest) -> None:
        key = (credit_request.payer_participant_id, credit_request.transfer_id)
        earlier = self._answers.get(key)
        if earlier is not None:
            # A re-sent credit request (after a restart): answer as before.
            self._send_answer(key, earlier)
            return
        handler = self.on_credit_request
        if handler is None:
            return
        decision = handler(credit_request)
        if decision is None:
            return
        if asyncio.iscoroutine(decision) or isinstance(decision, asyncio.Future):
            task = asyncio.ensure_future(self._answer_later(credit_request, decision))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._answer_from_handler(credit_request, decision)

    async def _answer_later(self, credit_request: CreditRequest, decision) -> None:
        result = await decision
        if result is not None:
            self._answer_from_handler(credit_request, result)

    def _answer_from_handler(self, credit_request: CreditRequest, decision) -> None:
        # The handler runs inside the protocol's read callback: its bad decision must not
        # raise into it. Unanswered, the transfer expires at the payee timeout.
        try:
            self.answer(credit_request, decision)
        except InvalidRequest as error:
            log.warning("stream_answer_invalid transfer_id=%s detail=%s",
                        credit_request.transfer_id, error.detail)
