"""The gateway: the ONE interface every connector (stream, HTTP, ISO 20022, ...) uses to
talk to the switch. A connector authenticates a participant, hands the gateway decoded core
messages (`switch.core.messages.Inbound`) and receives `Outbound` messages through a sink.

It is I/O adapters — authentication, delivery to sinks, the bounded inbound queue,
directory calls. The deciding shell (`switch/server/shell.py`) decides what to journal,
answer and release, and the sequencer carries it out. The gateway keeps only admission and
delivery choices that depend on connections, not on the state of any transfer (so the
simulator, which runs the shell, does not run them): refusing new work while draining or
overloaded, status queries past `status_per_participant_max` (and their pacing at
`status_rate_per_participant`), which of a participant's
doors a message goes to (its origin, else the oldest, else the callback fallback), the
credit requests held after a restart until a door is used, and the remembered routes of
recent lookups. The gateway must
never reveal an outcome before the sequencer says it is durable, never block the event
loop, and never take a participant id from a message body (only from `authenticate`).

How a connector uses it
=======================

Everything runs on the server's event loop thread (call it from coroutines or protocol
callbacks of that loop, never from another thread).

1. Authenticate once per connection or request::

       participant_id = gateway.authenticate(api_key)      # int, or None: refuse (401)

   API keys are random 256-bit tokens stored as HMAC-SHA256 under a server pepper and
   compared in constant time. A TLS connector may instead map a client certificate:
   ``gateway.authenticate_certificate(der_bytes)``.

2. Register where this participant's outbound messages go::

       gateway.attach(participant_id, sink)   # sink.deliver(message); sink.flush()
       ...
       gateway.detach(participant_id, sink)   # on disconnect

   A sink is any object with ``deliver(message: Outbound) -> None`` and ``flush() -> None``
   (see `Sink`). The gateway calls ``deliver`` for each message (credit requests, transfer
   outcomes, refusals, request-to-pay notices, ...) only after the events behind it are
   durable, then ``flush()`` once per released batch, so a connector can write everything
   of one loop tick with a single ``transport.write``. Both must be fast and must not
   raise (a raising sink is detached and logged). Several sinks may be attached for one
   participant: an answer goes to the sink of the connection that sent the request (a
   payer's final outcome to the connection that sent the transfer, if it is still
   attached); anything else (credit requests, notices, outcomes whose asker is gone) to
   the oldest attached one. With no sink attached, messages go to the fallback sink if one
   is set (``gateway.set_fallback_sink(sink)`` — the HTTP connector's callback sender sets
   it and looks up ``gateway.callback_url(participant_id)``); otherwise they are dropped
   and the outcome stays retrievable with ``status``.

   After a restart the switch re-sends the credit requests of transfers still waiting for
   their payee. Each is held until its participant uses a door: attaching a stream
   connection delivers them there; an authenticated HTTP request (the HTTP connector calls
   ``gateway.door_used(participant_id)``) sends them to its callback URL. A participant
   that uses neither within ``held_grace_s`` gets them at its callback URL if it has one;
   otherwise they wait for its first connection (their timers expire them meanwhile). Delivery is at-least-once from the
   participant's point of view: the same outcome may arrive again (answer to a resend, a
   status query, a credit request re-sent after a restart). Participants must treat
   messages idempotently by (payer_participant_id, transfer_id).

3. Send requests::

       result = gateway.submit(participant_id, message, origin=None)

   ``message`` is any `Inbound` (TransferRequest, ReturnRequest, PayeeAnswer,
   RequestToPay, RequestToPayDecision; StatusQuery and ResolveRequest too, whose answers
   then arrive through the sink). It never blocks: it answers a `Result` at once —
   ``OK`` (queued: the answer comes later through the sink), ``SERVER_BUSY`` (the bounded
   inbound queue is full: back-pressure; retry later with the same id), or
   ``SERVICE_UNAVAILABLE`` (starting or shutting down). Nothing was recorded unless it
   answered OK. ``origin`` (optional) is told how many of its messages the sequencer has
   taken and made durable: ``origin.sequenced(count)``, called once per tick. The stream
   connector uses it to bound each connection's in-flight window.

   The gateway resolves the payee alias of a TransferRequest (and the payer alias of a
   RequestToPay) through the directory before the core sees it, charged and refused
   exactly like a ``resolve`` (``Refused(LOOKUP_RATE_LIMITED)`` once the payer's buckets are
   empty), to ``payer_user_ref`` (send it: without it every anonymous lookup of a
   participant shares one end-user bucket). If the participant resolved the same alias
   with ``resolve`` in the last minute, the transfer's lookup costs nothing more (once per
   resolve) but is still admitted or refused on the buckets. An unknown alias is answered
   ``Refused(PARTY_NOT_FOUND)``.

4. Ask and wait (answers returned directly, after they are durable)::

       answer = await gateway.resolve(participant_id, ResolveRequest(...))  # ResolveAnswer
       answer = await gateway.status(participant_id, StatusQuery(...))
       # -> TransferOutcome, or Refused(TRANSFER_NOT_FOUND), or ErrorAnswer(SERVER_BUSY)

   A participant may have at most ``status_per_participant_max`` status queries waiting at
   once; past it they are answered SERVER_BUSY without queuing. Its queries are also paced
   at ``status_rate_per_participant`` a second (a burst of one second's worth): past the
   rate a query waits for its turn before it is queued. Together they keep one
   participant's query flood from crowding out another's payments.

   and, for aliases, ``await gateway.register_alias(participant_id, alias_type=...,
   alias_value=..., account_ref=..., owner_national_id=..., display_name=...,
   owner_kind=1)`` and ``await gateway.delete_alias(participant_id, alias_type=...,
   alias_value=...)``, which return `AliasAnswer`, and ``await
   gateway.register_aliases(participant_id, [AliasRegistration(...), ...])`` for a bulk
   load (`BulkAliasAnswer`).

   Shutdown: ``gateway.draining`` is True while the server lets transfers in flight
   finish: new transfers, returns and requests-to-pay get SERVICE_UNAVAILABLE, payee
   answers and status queries are still taken.

5. Read-only: ``gateway.participant(participant_id)`` (a `ParticipantView` or None),
   ``gateway.callback_url(participant_id)``, ``gateway.accepting`` (False while starting
   or draining), ``gateway.inbound_depth``.

Result codes the gateway itself answers are from `switch.core.results.Result`:
SERVER_BUSY, SERVICE_UNAVAILABLE, VALIDATION_ERROR (a message type that cannot be
submitted), PARTY_NOT_FOUND and LOOKUP_RATE_LIMITED (directory), INTERNAL_SERVER_ERROR.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections import OrderedDict, deque
from typing import Any, Callable, Container, Protocol

from switch.core.messages import (
    ALIAS_TYPE_NUMBERS,
    AdminAnswer,
    AliasAnswer,
    AliasRegistration,
    BulkAliasAnswer,
    ErrorAnswer,
    Inbound,
    Outbound,
    Party,
    ParticipantView,
    RequestToPay,
    ResolveAnswer,
    ResolveRequest,
    ReturnRequest,
    StatusQuery,
    TransferRequest,
)
from switch.core.fees import fee_minor as scheme_fee_minor
from switch.core.results import Result
from switch.directory.types import DirectoryResult, MapperLinkRequest, Rejection, RegisterAlias
from switch.directory.types import ResolveRequest as DirectoryResolve
from switch.server import limits
from switch.server.shell import (
    ITEM_ADMIN,
    ITEM_ROUTED,
    ITEM_STATUS,
    ITEM_SUBMIT,
    ITEM_TIMER,
    InboundItem,
)

log = logging.getLogger("ponte.server.gateway")

__all__ = ["Gateway", "Origin", "Sink", "directory_participant_id", "rejection_result"]


class Sink(Protocol):
    """Where a participant's outbound messages go (a stream connection, an HTTP callback
    sender). Called on the loop thread; must not block or raise."""

    def deliver(self, message: Outbound) -> None: ...

    def flush(self) -> None: ...

    def close(self, reason: str) -> None:
        """End the session now (its key was revoked, its participant suspended): tell the
        peer `reason` and stop serving it. A sink authenticated by an API key carries the
        key's hash as `key_hash` (see `Gateway.close_sessions`)."""
        ...


class Origin(Protocol):
    """Told how many of its submitted messages a tick took and made durable."""

    def sequenced(self, count: int) -> None: ...


ANONYMOUS_USER = "anonymous"
# Messages that start new work: refused while draining for shutdown.
_NEW_WORK = (TransferRequest, RequestToPay, ReturnRequest)


def _wake(waker: asyncio.Future) -> None:
    if not waker.done():  # its query may have been cancelled meanwhile
        waker.set_result(None)


def _never() -> bool:
    return False


def directory_participant_id(participant_id: int) -> str:
    """The directory names participants by text; the switch by integer. One mapping."""
    return str(participant_id)


def hash_api_key(pepper: bytes, api_key: str) -> bytes:
    return hmac.new(pepper, api_key.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


class Gateway:
    """See the module docstring. Built by `SwitchServer`; connectors receive it."""

    def __init__(self, *, core, directory, credentials, inbound_max: int,
                 status_per_participant_max: int = limits.STATUS_PER_PARTICIPANT_MAX_DEFAULT,
                 status_rate_per_participant: float = limits.STATUS_RATE_PER_PARTICIPANT_DEFAULT,
                 held_grace_s: float = limits.HELD_GRACE_S_DEFAULT) -> None:
        assert 1 <= inbound_max <= limits.INBOUND_QUEUE_MAX_CEILING
        assert 1 <= status_per_participant_max <= limits.STATUS_PER_PARTICIPANT_MAX_CEILING
        self._core = core  # read-only views only: participant(), participant_ids()
        self._directory = directory
        self._credentials = credentials  # switch.server.credentials.CredentialIndex
        self.inbound_max = inbound_max
        # True while something behind the switch cannot keep up (the durable history): new
        # transfers, returns and requests-to-pay are refused SERVER_BUSY, answers still
        # flow. Set by the server.
        self.overloaded: Callable[[], bool] = _never
        self.status_per_participant_max = status_per_participant_max
        # Pacing (GCRA): participant -> the monotonic time its next query may be queued.
        self._status_interval_s = (1.0 / status_rate_per_participant
                                   if status_rate_per_participant else 0.0)
        self._status_burst_s = 1.0 if status_rate_per_participant else 0.0
        self._status_next_at: dict[int, float] = {}
        self.held_grace_s = held_grace_s
        self._inbound: deque[InboundItem] = deque()
        self._wakeup = asyncio.Event()
        self._sinks: dict[int, list[Sink]] = {}
        self._fallback: Sink | None = None
        self._accepting = False
        self._draining = False
        self._status_waiting: dict[int, int] = {}
        # Messages waiting for a participant to use a door (credit requests re-sent after a
        # restart). Bounded by the core's in-flight and request-to-pay tables.
        self._held: dict[int, list] = {}
        self._held_timer: asyncio.TimerHandle | None = None
        # payer -> {(alias_type, alias_value): (payee_id, account_ref, at_ns)}, bounded.
        self._routes: OrderedDict[tuple[int, str, str], tuple[int, str, int]] = OrderedDict()
        self.metrics = None  # set by the server: switch.server.metrics.ServerMetrics
        # Set by the composition root when settlement runs (switch/settlement/service.py):
        # connectors serve a participant its own windows, statements and reconciliations
        # through it (`participant_windows`, `statement`, `reconcile`); None otherwise.
        self.settlement = None
        # The participants whose security policy requires signed requests, whichever
        # table declared it (HTTP keys, FSPIOP participants, ISO 20022 banks): every door
        # reads it at authentication and either checks a signature or refuses (the stream
        # asks for mTLS + key at Hello). Set by the composition root; read live, so a
        # registration made at run time holds at once.
        self.signature_policy: Container[int] = frozenset()

    # -- lifecycle (the server calls these) ------------------------------------------

    def open(self) -> None:
        self._accepting = True

    def close(self) -> None:
        """Stop accepting; queued items are still drained by the sequencer."""
        self._accepting = False
        self._draining = False
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None

    def drain(self) -> None:
        """Graceful shutdown, first phase: refuse new transfers, returns and requests to
        pay (SERVICE_UNAVAILABLE) but keep taking payee answers, decisions and status
        queries, so that transfers in flight can finish."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def inbound_depth(self) -> int:
        return len(self._inbound)

    # -- authentication --------------------------------------------------------------

    def authenticate(self, api_key: str) -> int | None:
        """The participant an API key belongs to, or None. Constant time in the key."""
        if not isinstance(api_key, str) or not 8 <= len(api_key) <= 256:
            return None
        return self._credentials.participant_for_key_hash(
            hash_api_key(self._credentials.pepper, api_key)
        )

    def authenticate_certificate(self, certificate_der: bytes) -> int | None:
        """The participant a TLS client certificate (DER) was registered for, or None."""
        if not certificate_der:
            return None
        return self._credentials.participant_for_certificate(
            hashlib.sha256(certificate_der).digest()
        )

    # -- outbound sinks --------------------------------------------------------------

    def attach(self, participant_id: int, sink: Sink) -> None:
        sinks = self._sinks.setdefault(participant_id, [])
        if sink not in sinks:
            sinks.append(sink)
        held = self._held.pop(participant_id, None)
        if held:
            self.deliver([(participant_id, message, sink) for message in held])

    def door_used(self, participant_id: int) -> None:
        """An authenticated HTTP request from `participant_id` (the HTTP connector calls
        this): what is held for it goes to its callback URL now."""
        if self._held and participant_id not in self._sinks and self._fallback is not None:
            held = self._held.pop(participant_id, None)
            if held:
                self.deliver([(participant_id, message, None) for message in held])

    def hold(self, participant_id: int, message: Outbound) -> None:
        """Deliver now if a connection is attached, else when the participant next uses a
        door (recovery re-sends); see the module docstring for the rule."""
        if participant_id in self._sinks:
            self.deliver([(participant_id, message, None)])
            return
        self._held.setdefault(participant_id, []).append(message)
        if self._held_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # held before the loop runs: armed by open_held_grace()
            self._held_timer = loop.call_later(self.held_grace_s, self._held_grace_over)

    def open_held_grace(self) -> None:
        """Start the grace period for messages held before the loop ran."""
        if self._held and self._held_timer is None:
            loop = asyncio.get_running_loop()
            self._held_timer = loop.call_later(self.held_grace_s, self._held_grace_over)

    def _held_grace_over(self) -> None:
        """Participants that used no door in the grace period: those with a callback URL
        get their held messages there; the others keep waiting for a connection."""
        self._held_timer = None
        if self._fallback is None:
            return
        ready = [participant_id for participant_id in self._held
                 if participant_id not in self._sinks and self.callback_url(participant_id)]
        sends = [(participant_id, message, None) for participant_id in ready
                 for message in self._held.pop(participant_id)]
        if sends:
            self.deliver(sends)

    @property
    def held_count(self) -> int:
        return sum(len(messages) for messages in self._held.values())

    def detach(self, participant_id: int, sink: Sink) -> None:
        sinks = self._sinks.get(participant_id)
        if not sinks:
            return
        try:
            sinks.remove(sink)
        except ValueError:
            return
        if not sinks:
            del self._sinks[participant_id]

    def set_fallback_sink(self, sink: Sink | None) -> None:
        """Receives messages of participants with no attached sink (HTTP callbacks).
        It serves every participant, so it is called ``deliver_to(participant_id,
        message)`` (then ``flush()``) instead of ``deliver(message)``."""
        self._fallback = sink

    def attached(self, participant_id: int) -> bool:
        return participant_id in self._sinks

    def deliver(self, sends) -> None:
        """Release durable messages: [(participant_id, Outbound, origin or None), ...]. An
        origin that is an attached sink of that participant gets the message; otherwise
        the participant's oldest attached sink, else the fallback."""
        touched: dict[int, Sink] = {}
        sinks_by_participant = self._sinks
        fallback = self._fallback
        for participant_id, message, origin in sends:
            sinks = sinks_by_participant.get(participant_id)
            if sinks:
                sink = origin if origin is not None and origin in sinks else sinks[0]
            else:
                sink = fallback
                if sink is None:
                    continue  # retrievable by status query
            try:
                if sinks:
                    sink.deliver(message)
                else:
                    # The fallback serves every participant, so it is told which one.
                    sink.deliver_to(participant_id, message)
            except Exception:  # noqa: BLE001 - a connector bug must not stop the switch
                log.exception("sink_deliver_failed participant_id=%d", participant_id)
                self.detach(participant_id, sink)
                continue
            touched[id(sink)] = sink
        for sink in touched.values():
            try:
                sink.flush()
            except Exception:  # noqa: BLE001
                log.exception("sink_flush_failed")

    # -- requests --------------------------------------------------------------------

    def _enqueue(self, item: InboundItem) -> None:
        self._inbound.append(item)
        if len(self._inbound) == 1:
            self._wakeup.set()

    def submit(self, participant_id: int, message: Inbound, origin: Origin | None = None
               ) -> Result:
        """Queue one message from an authenticated participant; never blocks."""
        if not self._accepting:
            return Result.SERVICE_UNAVAILABLE
        if self._draining and type(message) in _NEW_WORK:
            return Result.SERVICE_UNAVAILABLE
        if len(self._inbound) >= self.inbound_max or (
                type(message) in _NEW_WORK and self.overloaded()):
            if self.metrics is not None:
                self.metrics.inbound_refused_total += 1
            return Result.SERVER_BUSY
        self._enqueue((ITEM_SUBMIT, participant_id, message, origin))
        return Result.OK

    def submit_routed(self, participant_id: int, message: TransferRequest,
                      route: tuple[int, str], origin: Origin | None = None) -> Result:
        """`submit` for a transfer whose payee was decided already — a G2P row the mapper
        routed (switch/g2p): `route` is (payee participant id, account reference), and the
        payee alias is what the switch records (a national ID only as its identity token).
        No directory lookup, no charge: the mapper's resolve was the lookup."""
        if not self._accepting or self._draining:
            return Result.SERVICE_UNAVAILABLE
        if len(self._inbound) >= self.inbound_max or self.overloaded():
            if self.metrics is not None:
                self.metrics.inbound_refused_total += 1
            return Result.SERVER_BUSY
        self._enqueue((ITEM_ROUTED, participant_id, message, (origin, route)))
        return Result.OK

    async def status(self, participant_id: int, query: StatusQuery) -> Outbound:
        """Where a transfer stands, answered once the state it reveals is durable."""
        if not self._accepting:
            return ErrorAnswer(result=Result.SERVICE_UNAVAILABLE)
        waiting = self._status_waiting.get(participant_id, 0)
        if len(self._inbound) >= self.inbound_max or waiting >= self.status_per_participant_max:
            if self.metrics is not None:
                self.metrics.inbound_refused_total += 1
            return ErrorAnswer(result=Result.SERVER_BUSY, detail="status queries")
        self._status_waiting[participant_id] = waiting + 1
        try:
            if self._status_interval_s:
                loop = asyncio.get_running_loop()
                turn = self._status_turn(participant_id, loop.time())
                if turn > 0:
                    # Woken on the slot grid, with the rest of its slot (one tick for all).
                    slot = limits.STATUS_PACING_SLOT_S
                    wake_at = math.ceil(turn / slot) * slot
                    waker = loop.create_future()
                    loop.call_at(wake_at, _wake, waker)
                    await waker
                    if not self._accepting:
                        return ErrorAnswer(result=Result.SERVICE_UNAVAILABLE)
                    if len(self._inbound) >= self.inbound_max:
                        return ErrorAnswer(result=Result.SERVER_BUSY, detail="status queries")
            future = asyncio.get_running_loop().create_future()
            self._enqueue((ITEM_STATUS, participant_id, query, future))
            return await future
        finally:
            left = self._status_waiting[participant_id] - 1
            if left:
                self._status_waiting[participant_id] = left
            else:
                del self._status_waiting[participant_id]

    def _status_turn(self, participant_id: int, now: float) -> float:
        """When (on the clock of `now`) this participant's next status query may be queued;
        0.0 when that is now."""
        next_at = self._status_next_at.get(participant_id, 0.0)
        earliest = now - self._status_burst_s  # unused turns carry over, one second's worth
        if next_at < earliest:
            next_at = earliest
        self._status_next_at[participant_id] = next_at + self._status_interval_s
        return next_at if next_at > now else 0.0

    async def admin(self, event) -> Any:
        """Submit an operator event (switch.core.messages.AdminEvent); the core's
        AdminAnswer once it is durable. Used by the admin surface, not by connectors."""
        if not self._accepting:
            return AdminAnswer(request_id=event.request_id, result=Result.SERVICE_UNAVAILABLE)
        future = asyncio.get_running_loop().create_future()
        # Operator requests are rare and must not be lost to a busy queue: no bound check
        # beyond the queue's own ceiling.
        self._enqueue((ITEM_ADMIN, 0, event, future))
        return await future

    def timer_fired(self, event) -> None:
        """A timer reached its deadline (the server's timer wheel). Bypasses the bound:
        dropping a timer would leave a transfer waiting forever."""
        self._enqueue((ITEM_TIMER, 0, event, None))

    # -- the sequencer's side ----------------------------------------------------------

    def take(self, count_max: int) -> list[InboundItem]:
        """Up to `count_max` queued items, oldest first."""
        inbound = self._inbound
        if len(inbound) <= count_max:
            items = list(inbound)
            inbound.clear()
        else:
            items = [inbound.popleft() for _ in range(count_max)]
        if not inbound:
            self._wakeup.clear()
        return items

    async def wait_for_items(self) -> None:
        if not self._inbound:
            await self._wakeup.wait()

    # -- directory -------------------------------------------------------------------

    async def resolve(self, participant_id: int, request: ResolveRequest) -> ResolveAnswer:
        """Look an alias up for a payer (charges the anti-enumeration buckets)."""
        alias = request.alias
        alias_type = ALIAS_TYPE_NUMBERS.get(alias.alias_type)
        if alias_type is None:  # only a hand-built message can get here: decoders refuse it
            return ResolveAnswer(alias=alias, result=Result.VALIDATION_ERROR)
        try:
            answer = await asyncio.wait_for(self._directory.resolve(
                alias_type, alias.alias_value, directory_participant_id(participant_id),
                request.payer_user_ref or ANONYMOUS_USER, time.time_ns(),
            ), limits.DIRECTORY_TIMEOUT_S)
        except asyncio.TimeoutError:
            return ResolveAnswer(alias=alias, result=Result.SERVICE_UNAVAILABLE)
        if type(answer) is Rejection:
            return ResolveAnswer(alias=alias, result=rejection_result(answer),
                                 retry_after_ms=answer.retry_after_ms)
        payee_id = int(answer.participant_id)
        self._remember_route(participant_id, alias, payee_id, answer.account_ref)
        return ResolveAnswer(
            alias=alias, result=Result.OK, payee_participant_id=payee_id,
            payee_account_ref=answer.account_ref,
            display_name_masked=answer.display_name_masked,
        )

    def _remember_route(self, participant_id: int, alias: Party, payee_id: int,
                        account_ref: str) -> None:
        routes = self._routes
        key = (participant_id, alias.alias_type, alias.alias_value)
        routes[key] = (payee_id, account_ref, time.monotonic_ns())
        routes.move_to_end(key)
        while len(routes) > limits.ROUTES_REMEMBERED_MAX:
            routes.popitem(last=False)

    def take_route(self, participant_id: int, alias: Party) -> tuple[int, str] | None:
        """A route this payer resolved recently (consumed: that resolve prepays the lookup
        of one payment, which the directory still admits or refuses like any lookup)."""
        found = self._routes.pop((participant_id, alias.alias_type, alias.alias_value), None)
        if found is None:
            return None
        payee_id, account_ref, at_ns = found
        if time.monotonic_ns() - at_ns > limits.ROUTE_TTL_NS:
            return None
        return payee_id, account_ref

    async def route_many(self, lookups: list[tuple[int, Party, str]]) -> list:
        """Resolve (participant_id, alias, end-user reference) for transfers and requests
        to pay with as few directory round trips as its batch bound allows. Each answer is
        a route for the shell — (participant_id, account_ref) — or a `Result` to refuse
        with."""
        answers: list = [None] * len(lookups)
        requests = []
        positions = []
        remembered = self._routes
        for index, (payer_id, alias, user_ref) in enumerate(lookups):
            alias_type = ALIAS_TYPE_NUMBERS.get(alias.alias_type)
            if alias_type is None:  # only a hand-built message can get here
                answers[index] = Result.PARTY_NOT_FOUND
                continue
            # Every lookup goes to the directory's buckets, so a throttled payer cannot
            # learn from a transfer what a resolve would refuse to tell it (issue 18). A
            # route it resolved a moment ago was paid for by that resolve: admission only.
            prepaid = bool(remembered) and self.take_route(payer_id, alias) is not None
            requests.append(DirectoryResolve(
                alias_type=alias_type, alias_value=alias.alias_value,
                payer_participant_id=directory_participant_id(payer_id),
                payer_user_id=user_ref or ANONYMOUS_USER, prepaid=prepaid,
            ))
            positions.append(index)
        step = limits.RESOLVE_BATCH_MAX
        for start in range(0, len(requests), step):
            resolved = await asyncio.wait_for(
                self._directory.resolve_many(requests[start:start + step], time.time_ns()),
                limits.DIRECTORY_TIMEOUT_S,
            )
            for index, answer in zip(positions[start:start + step], resolved):
                if type(answer) is Rejection:
                    answers[index] = rejection_result(answer)
                else:
                    answers[index] = (int(answer.participant_id), answer.account_ref)
        return answers

    async def refund_lookup(self, participant_id: int, payer_user_ref: str) -> None:
        await self._directory.refund_lookup(
            directory_participant_id(participant_id), payer_user_ref, time.time_ns()
        )

    async def register_alias(self, participant_id: int, *, alias_type: str, alias_value: str,
                             account_ref: str, owner_national_id: str, display_name: str,
                             owner_kind: int = 1) -> AliasAnswer:
        """Register an alias for one of this participant's accounts. Registering the same
        alias again answers OK with the stored registration (retries are safe)."""
        number = ALIAS_TYPE_NUMBERS.get(alias_type)
        if number is None:
            return AliasAnswer(result=Result.VALIDATION_ERROR, field="alias_type")
        answer = await self._directory.register(RegisterAlias(
            alias_type=number, alias_value=alias_value,
            participant_id=directory_participant_id(participant_id),
            account_ref=account_ref, owner_national_id=owner_national_id,
            owner_kind=owner_kind, display_name=display_name,
        ), time.time_ns())
        if type(answer) is Rejection:
            return AliasAnswer(result=rejection_result(answer),
                               directory_result=int(answer.result), field=answer.field,
                               retry_after_ms=answer.retry_after_ms)
        return AliasAnswer(
            result=Result.OK, alias_type=alias_type, alias_value=answer.alias_value,
            account_ref=answer.account_ref, display_name_masked=answer.display_name_masked,
        )

    async def register_aliases(self, participant_id: int,
                               registrations: list[AliasRegistration]) -> BulkAliasAnswer:
        """Register many aliases at once (a participant's initial load): one store
        transaction per directory batch instead of one per alias. Same checks as
        `register_alias`; RANDOM keys issued here are not reported back (register RANDOM
        aliases one by one to learn their keys)."""
        owner = directory_participant_id(participant_id)
        rows = []
        for registration in registrations:
            number = ALIAS_TYPE_NUMBERS.get(registration.alias_type)
            if number is None:
                rows.append(Rejection(result=DirectoryResult.FIELD_TYPE_UNKNOWN,
                                      field="alias_type"))
                continue
            rows.append(RegisterAlias(
                alias_type=number, alias_value=registration.alias_value, participant_id=owner,
                account_ref=registration.account_ref,
                owner_national_id=registration.owner_national_id,
                owner_kind=registration.owner_kind, display_name=registration.display_name,
            ))
        summary = await self._directory.bulk_import(rows, time.time_ns())
        return BulkAliasAnswer(
            registered=summary.registered, existing=summary.existing, rejected=summary.rejected,
            rejections=[(number - 1, int(rejection.result), rejection.field)
                        for number, rejection in summary.rejections],
        )

    async def delete_alias(self, participant_id: int, *, alias_type: str,
                           alias_value: str) -> AliasAnswer:
        number = ALIAS_TYPE_NUMBERS.get(alias_type)
        if number is None:
            return AliasAnswer(result=Result.VALIDATION_ERROR, field="alias_type")
        rejection = await self._directory.delete(
            number, alias_value, directory_participant_id(participant_id), time.time_ns()
        )
        if rejection is not None:
            return AliasAnswer(result=rejection_result(rejection),
                               directory_result=int(rejection.result), field=rejection.field,
                               retry_after_ms=rejection.retry_after_ms)
        return AliasAnswer(result=Result.OK, alias_type=alias_type, alias_value=alias_value)

    # -- G2P mapper (connectors/g2p) -------------------------------------------------

    def participant_kind(self, participant_id: int) -> str:
        """bank, wallet or government ("" for an unknown participant)."""
        record = self._credentials.record(participant_id)
        return "" if record is None else record.kind

    def identity_token(self, national_id: str):
        """The identity token (bytes) of a national ID, or the directory's Rejection."""
        return self._directory.identity_token(national_id)

    async def mapper_link(self, participant_id: int, national_id: str, account_ref: str,
                          timestamp_ns: int):
        """Link a national ID to one of this participant's accounts: (MapperResolution or
        Rejection, notices for the participants that held the link before)."""
        return await asyncio.wait_for(self._directory.mapper_link(MapperLinkRequest(
            id=national_id, participant_id=directory_participant_id(participant_id),
            account_ref=account_ref, timestamp_ns=timestamp_ns), time.time_ns()),
            limits.DIRECTORY_TIMEOUT_S)

    async def mapper_unlink(self, participant_id: int, national_id: str):
        return await asyncio.wait_for(self._directory.mapper_unlink(
            national_id, directory_participant_id(participant_id)), limits.DIRECTORY_TIMEOUT_S)

    async def mapper_resolve_tokens(self, id_tokens: list[bytes]) -> list:
        """(payee participant id, account reference) or a Rejection per token, in order."""
        answers = await asyncio.wait_for(self._directory.mapper_resolve_tokens(id_tokens),
                                         limits.DIRECTORY_TIMEOUT_S)
        return [answer if type(answer) is Rejection
                else (int(answer.account_provider_info.code), answer.account_ref)
                for answer in answers]

    # -- read-only views -------------------------------------------------------------

    def participant(self, participant_id: int) -> ParticipantView | None:
        return self._core.participant(participant_id)

    def callback_url(self, participant_id: int) -> str:
        return self._credentials.callback_url(participant_id)

    def fee_minor(self, currency: str, amount_minor: int) -> int | None:
        """The scheme fee the payer of `amount_minor` would be charged now (quotations), or
        None when the scheme does not carry the currency. Read-only: decides nothing."""
        state = self._core.currency(currency)
        if state is None:
            return None
        return scheme_fee_minor(state.rules, amount_minor)

    def national_id_token(self, national_id: str) -> str | None:
        """What the switch records instead of a raw national ID (the shell's recorder)."""
        return self._directory.national_id_token(national_id)

    # -- live sessions: revocation and suspension ---------------

    def close_sessions(self, participant_id: int, key_hash: bytes | None, reason: str) -> int:
        """Close at once every live session of `participant_id` — only those a key
        authenticated when `key_hash` (the key's `hash_api_key`) is given (revocation),
        all of them when it is None (suspension). Each attached sink is told
        ``close(reason)`` and detached. Only sessions close (a sink with `session = True`,
        the stream's connections): the HTTP, FSPIOP, ISO 20022, Mobile Money and G2P doors
        are stateless — each request carries its credential and a suspended or revoked one
        is refused at the next — and stay attached, so a resumed participant is served
        again. Returns how many closed, for the audit record."""
        closing = [sink for sink in self._sinks.get(participant_id, ())
                   if getattr(sink, "session", False) and (
                       key_hash is None or getattr(sink, "key_hash", None) == key_hash)]
        for sink in closing:
            try:
                sink.close(reason)
            except Exception:  # noqa: BLE001 - a connector bug must not stop the switch
                log.exception("sink_close_failed participant_id=%d", participant_id)
            self.detach(participant_id, sink)
        if closing:
            log.info("sessions_closed participant_id=%d count=%d reason=%s", participant_id,
                     len(closing), reason)
        return len(closing)

    def session_key_hash(self, api_key: str) -> bytes:
        """The hash `close_sessions` names a key by: a connector keeps it for the session
        the key authenticated (never the key itself)."""
        return hash_api_key(self._credentials.pepper, api_key)



def rejection_result(rejection: Rejection) -> Result:
    """The core-level Result for a directory Rejection."""
    code = rejection.result
    if code is DirectoryResult.ALIAS_NOT_FOUND:
        return Result.PARTY_NOT_FOUND
    if code is DirectoryResult.RATE_LIMITED:
        return Result.LOOKUP_RATE_LIMITED
    return Result.VALIDATION_ERROR
