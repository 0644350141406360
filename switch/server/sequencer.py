"""The sequencer: the one loop that feeds the core, journals its inputs and releases its
outputs, with group commit.

Each tick
  1. takes up to `tick_events_max` items from the gateway's bounded inbound queue;
  2. stamps them with ONE `now_ns` (time.time_ns(), read here only, never going back);
  3. resolves the payee aliases of the tick's transfers with one directory round trip;
  4. steps the core with each event, in order, collecting its commands (timers are armed
     and cancelled at once; Send commands are held);
  5. appends the tick's events as one journal record (status queries change nothing and
     are not journaled).
A separate committer task makes the journal durable — one write + fdatasync (file, in a
thread) or one COPY (PostgreSQL) covering every tick appended since the last commit — and
only then releases the held ticks in order: messages to the participants' sinks, answers
to waiting status and admin calls, `origin.sequenced(n)` to connectors. While a commit
runs, the next tick is decided (at most `TICKS_IN_FLIGHT_MAX` ticks wait undisclosed).

It must never release a message before the journal record of the events behind it is
durable, never read the clock anywhere else, and never keep going after the core raised
anything but ProtocolError (state may be half-changed: fail-stop, restart, replay).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import msgspec

from switch.core.messages import (
    AdminAnswer,
    ArmTimer,
    CancelTimer,
    ConsultStore,
    CreditRequest,
    ErrorAnswer,
    PayeeAnswer,
    PayeeAnswered,
    Refused,
    RefundLookupToken,
    RequestToPay,
    RequestToPayDecided,
    RequestToPayDecision,
    RequestToPayRequested,
    ResolveRequest,
    ReturnRequest,
    ReturnRequested,
    Send,
    StatusQueried,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
)
from switch.core.results import TRANSFER_FINAL_STATES, ProtocolError, Result
from switch.server import limits
from switch.server.gateway import (
    ITEM_ADMIN,
    ITEM_STATUS,
    ITEM_SUBMIT,
    ITEM_TIMER,
    Gateway,
    refused_for,
)
from switch.server.metrics import LATENCY_BUCKETS_S, ServerMetrics

log = logging.getLogger("ponte.server.sequencer")

_FINAL = TRANSFER_FINAL_STATES
_OK = Result.OK


class OutcomeArchive:
    """Outcomes of transfers the core has dropped from its retained window, so ConsultStore
    can still answer them (a resend or status query of an old transfer).

    The core keeps its final transfers in the order they ended and drops the oldest when
    its table is full. The archive follows the same order with a queue of keys (~80 bytes
    each, the strings are the core's own) and, as a key reaches the part of the core's
    table that may be dropped next, takes its outcome from the core and keeps it encoded
    (~150 bytes). Bounded at `entries_max`, oldest forgotten first. In memory only: after
    a restart it starts empty (what the replay rebuilt is in the core)."""

    def __init__(self, entries_max: int, core) -> None:
        assert entries_max >= 1
        self.entries_max = entries_max
        self.core = core
        # Keys beyond this many recent finals may be dropped by the core at any time: its
        # table also holds the transfers in flight.
        self.recent_max = max(1, core.config.transfers_retained_max - core.config.in_flight_max)
        self._recent: deque[tuple[int, str]] = deque()
        self._outcomes: dict[tuple[int, str], bytes] = {}
        self._order: deque[tuple[int, str]] = deque()

    def put(self, outcome: TransferOutcome) -> None:
        recent = self._recent
        recent.append((outcome.payer_participant_id, outcome.transfer_id))
        if len(recent) > self.recent_max:
            key = recent.popleft()
            kept = self.core.transfer_outcome(*key)
            if kept is not None and kept.state in _FINAL:
                self._archive(key, kept)

    def _archive(self, key: tuple[int, str], outcome: TransferOutcome) -> None:
        outcomes = self._outcomes
        if key not in outcomes:
            self._order.append(key)
        outcomes[key] = _archive_encoder.encode(outcome)
        if len(outcomes) > self.entries_max:
            del outcomes[self._order.popleft()]

    def get(self, payer_participant_id: int, transfer_id: str) -> TransferOutcome | None:
        found = self._outcomes.get((payer_participant_id, transfer_id))
        return None if found is None else _archive_decoder.decode(found)

    def __len__(self) -> int:
        return len(self._outcomes)


_archive_encoder = msgspec.msgpack.Encoder()
_archive_decoder = msgspec.msgpack.Decoder(TransferOutcome)


class _Tick:
    __slots__ = ("sequence", "decided_ns", "sends", "replies", "origins", "refunds",
                 "finals_ns", "events")

    def __init__(self, decided_ns: int) -> None:
        self.sequence = 0
        self.decided_ns = decided_ns
        self.sends: list[tuple[int, object]] = []
        self.replies: list[tuple[asyncio.Future, object]] = []
        self.origins: dict[int, list] = {}
        self.refunds: list[RefundLookupToken] = []
        self.finals_ns: list[int] = []  # forwarded_at of transfers decided this tick
        self.events = 0


class SequencerFailed(Exception):
    """The sequencer stopped: the core raised (a bug) or the journal failed."""


class Sequencer:
    def __init__(self, *, core, gateway: Gateway, journal, timers, metrics: ServerMetrics,
                 archive: OutcomeArchive, tick_events_max: int,
                 commit_interval_s: float = limits.COMMIT_INTERVAL_S_DEFAULT) -> None:
        assert 1 <= tick_events_max <= limits.TICK_EVENTS_MAX_CEILING
        self.core = core
        self.gateway = gateway
        self.journal = journal
        self.timers = timers
        self.metrics = metrics
        self.archive = archive
        self.tick_events_max = tick_events_max
        assert 0.0 <= commit_interval_s <= limits.COMMIT_INTERVAL_S_MAX
        self.commit_interval_s = commit_interval_s
        self._now_ns = core.now_ns
        self._held: list[_Tick] = []
        self._committed = asyncio.Event()  # set whenever a commit releases ticks
        self._work = asyncio.Event()  # wakes the committer
        self._stopping = False
        self.failed: BaseException | None = None
        self._forwarded_at: dict[tuple[int, str], int] = {}
        self._resolves: set[asyncio.Task] = set()
        self._refund_tasks: set[asyncio.Task] = set()
        self.ticks = 0

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Decide ticks until stop() and the queue is empty. Raises SequencerFailed."""
        committer = asyncio.create_task(self._commit_loop(), name="ponte-committer")
        try:
            while True:
                if self.failed is not None:
                    raise SequencerFailed(str(self.failed)) from self.failed
                if self._stopping and not self.gateway.inbound_depth:
                    break
                if not self.gateway.inbound_depth:
                    waiter = asyncio.ensure_future(self.gateway.wait_for_items())
                    stopper = asyncio.ensure_future(self._wait_stop())
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    stopper.cancel()
                    continue
                while len(self._held) >= limits.TICKS_IN_FLIGHT_MAX and self.failed is None:
                    self._committed.clear()
                    await self._committed.wait()
                if self.failed is not None:
                    continue
                await self._decide(self.gateway.take(self.tick_events_max))
            # Everything decided: wait for the last ticks to be durable and released.
            while self._held and self.failed is None:
                self._committed.clear()
                self._work.set()
                await self._committed.wait()
            if self.failed is not None:
                raise SequencerFailed(str(self.failed)) from self.failed
        finally:
            committer.cancel()
            try:
                await committer
            except (asyncio.CancelledError, SequencerFailed):
                pass

    _stop_event: asyncio.Event | None = None

    async def _wait_stop(self) -> None:
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        await self._stop_event.wait()

    def stop(self) -> None:
        """Finish what is queued, release it, and return from run()."""
        self._stopping = True
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        self._stop_event.set()

    # -- deciding --------------------------------------------------------------------

    async def _decide(self, items: list) -> None:
        now_ns = time.time_ns()
        if now_ns < self._now_ns:
            now_ns = self._now_ns  # the wall clock stepped back: never let the core see it
        self._now_ns = now_ns
        gateway = self.gateway
        # One directory round trip for every alias this tick must route.
        lookups = []
        for kind, participant_id, message, _extra in items:
            if kind == ITEM_SUBMIT:
                kind_type = type(message)
                if kind_type is TransferRequest and message.payee is not None:
                    lookups.append((participant_id, message.payee, message.payer_user_ref))
                elif kind_type is RequestToPay:
                    lookups.append((participant_id, message.payer, message.payee_user_ref))
        routes = iter(())
        if lookups:
            try:
                routes = iter(await gateway.route_many(lookups))
            except Exception as error:  # noqa: BLE001 - a directory outage refuses, never stops
                log.warning("directory_route_failed error=%r", error)
                routes = iter([Result.SERVICE_UNAVAILABLE] * len(lookups))
        tick = _Tick(now_ns)
        journaled: list = []
        step = self.core.step
        try:
            for item in items:
                kind, participant_id, message, extra = item
                if kind == ITEM_SUBMIT:
                    if extra is not None:
                        counted = tick.origins.get(id(extra))
                        if counted is None:
                            tick.origins[id(extra)] = [extra, 1]
                        else:
                            counted[1] += 1
                    event = self._event_for(participant_id, message, routes, tick)
                    if event is None:
                        continue
                elif kind == ITEM_TIMER:
                    event = message
                elif kind == ITEM_STATUS:
                    event = StatusQueried(participant_id=participant_id, query=message)
                else:
                    assert kind == ITEM_ADMIN
                    event = message
                try:
                    commands = step(event, now_ns)
                except ProtocolError as error:
                    answer = ErrorAnswer(result=error.result, detail=error.detail[:140])
                    if kind == ITEM_STATUS:
                        tick.replies.append((extra, answer))
                    else:
                        tick.sends.append((participant_id, answer))
                    continue
                if type(event) is not StatusQueried:
                    journaled.append(event)
                self._dispatch(commands, kind, participant_id, event, extra, tick, now_ns)
        except Exception as error:
            # A bug in the core (or here): its state may be half-changed. Nothing of this
            # tick was journaled or released; stop, and let a restart replay the journal.
            log.critical("sequencer_failed error=%r", error, exc_info=True)
            self.failed = error
            self._committed.set()
            self.gateway.close()
            return
        tick.events = len(items)
        if journaled:
            tick.sequence, payload_bytes = self.journal.append_tick(now_ns, journaled)
            self.metrics.journal_bytes.values[()] = (
                self.metrics.journal_bytes.values.get((), 0) + payload_bytes)
        else:
            tick.sequence = self.journal.appended_sequence
        self.metrics.tick_events.observe(len(items))
        self.ticks += 1
        self._held.append(tick)
        self._work.set()

    def _event_for(self, participant_id: int, message, routes, tick: _Tick):
        """The core event for a participant's message (None: answered here already)."""
        message_type = type(message)
        if message_type is TransferRequest:
            if message.payee is None:
                # Only the core builds payee-less transfers (from a request-to-pay).
                tick.sends.append((participant_id, refused_for(message, participant_id,
                                                               Result.VALIDATION_ERROR)))
                return None
            route = next(routes)
            if type(route) is Result:
                refusals = self.metrics.refused
                key = ("transfer", route)
                refusals[key] = refusals.get(key, 0) + 1
                tick.sends.append((participant_id, refused_for(message, participant_id, route)))
                return None
            return TransferRequested(payer_participant_id=participant_id,
                                     payee_participant_id=route[0], payee_account_ref=route[1],
                                     request=message)
        if message_type is PayeeAnswer:
            return PayeeAnswered(payee_participant_id=participant_id, answer=message)
        if message_type is ReturnRequest:
            return ReturnRequested(payer_participant_id=participant_id, request=message)
        if message_type is StatusQuery:
            return StatusQueried(participant_id=participant_id, query=message)
        if message_type is RequestToPay:
            route = next(routes)
            if type(route) is Result:
                tick.sends.append((participant_id, refused_for(message, participant_id, route)))
                return None
            return RequestToPayRequested(payee_participant_id=participant_id,
                                         payer_participant_id=route[0],
                                         payer_account_ref=route[1], request=message)
        if message_type is RequestToPayDecision:
            return RequestToPayDecided(payer_participant_id=participant_id, decision=message)
        if message_type is ResolveRequest:
            self._resolve_later(participant_id, message)
            return None
        tick.sends.append((participant_id, ErrorAnswer(result=Result.VALIDATION_ERROR,
                                                       detail="not a request")))
        return None

    def _dispatch(self, commands, kind: int, participant_id: int, event, extra, tick: _Tick,
                  now_ns: int) -> None:
        for command in commands:
            command_type = type(command)
            if command_type is Send:
                message = command.message
                message_type = type(message)
                if message_type is CreditRequest:
                    # Forwarded now (or re-sent): reserve_to_answer and end_to_end start.
                    self._forwarded_at[(message.payer_participant_id,
                                        message.transfer_id)] = now_ns
                elif message_type is TransferOutcome:
                    if message.decided_at_ns == now_ns and message.state in _FINAL and (
                        command.participant_id == message.payer_participant_id
                    ):
                        self._decided(message, now_ns, tick)
                elif message_type is Refused:
                    refusals = self.metrics.refused
                    key = (message.request_type, message.result)
                    refusals[key] = refusals.get(key, 0) + 1
                if kind == ITEM_STATUS and command.participant_id == participant_id:
                    tick.replies.append((extra, message))
                else:
                    tick.sends.append((command.participant_id, message))
            elif command_type is ArmTimer:
                self.timers.arm(command.timer_id, command.deadline_ns)
            elif command_type is CancelTimer:
                self.timers.cancel(command.timer_id)
            elif command_type is RefundLookupToken:
                tick.refunds.append(command)
            elif command_type is ConsultStore:
                self._consult(command, kind, event, extra, tick)
            elif command_type is AdminAnswer:
                if kind == ITEM_ADMIN:
                    tick.replies.append((extra, command))
            else:  # pragma: no cover - the Command union is closed
                raise AssertionError(f"unknown command {command_type.__name__}")

    def _decided(self, outcome: TransferOutcome, now_ns: int, tick: _Tick) -> None:
        """A transfer reached its final state in this tick: count it, archive it, time it."""
        finals = self.metrics.finals
        key = (outcome.state, outcome.result)  # enum members: names are read at scrape time
        finals[key] = finals.get(key, 0) + 1
        self.archive.put(outcome)
        forwarded_ns = self._forwarded_at.pop(
            (outcome.payer_participant_id, outcome.transfer_id), None)
        if forwarded_ns is not None:
            ServerMetrics.observe_series(self.metrics.reserve_to_answer, LATENCY_BUCKETS_S,
                                         (now_ns - forwarded_ns) / 1e9)
            tick.finals_ns.append(forwarded_ns)

    def _consult(self, command: ConsultStore, kind: int, event, extra, tick: _Tick) -> None:
        asker = command.participant_id
        outcome = self.archive.get(command.payer_participant_id, command.transfer_id)
        if outcome is not None and asker in (outcome.payer_participant_id,
                                             outcome.payee_participant_id):
            answer = outcome
        else:
            request_type = {
                TransferRequested: "transfer", ReturnRequested: "return",
                PayeeAnswered: "payee_answer", StatusQueried: "status_query",
            }.get(type(event), "status_query")
            answer = Refused(request_type=request_type,
                             scope_participant_id=command.payer_participant_id,
                             id=command.transfer_id, result=command.result_if_absent)
        if kind == ITEM_STATUS:
            tick.replies.append((extra, answer))
        else:
            tick.sends.append((asker, answer))

    def _resolve_later(self, participant_id: int, request: ResolveRequest) -> None:
        """A resolve submitted like a request: answered through the sink when done. It
        reveals no ledger state, so it need not wait for a commit."""
        if len(self._resolves) >= limits.RESOLVES_IN_FLIGHT_MAX:
            self.gateway.deliver([(participant_id, ErrorAnswer(result=Result.SERVER_BUSY,
                                                               detail="resolve"))])
            return

        async def resolve() -> None:
            answer = await self.gateway.resolve(participant_id, request)
            self.gateway.deliver([(participant_id, answer)])

        task = asyncio.ensure_future(resolve())
        self._resolves.add(task)
        task.add_done_callback(self._resolves.discard)

    # -- committing and releasing ----------------------------------------------------

    async def _commit_loop(self) -> None:
        journal = self.journal
        metrics = self.metrics
        loop = asyncio.get_running_loop()
        interval_s = self.commit_interval_s
        last_started = 0.0
        while True:
            await self._work.wait()
            self._work.clear()
            if not self._held:
                continue
            # Pace commits: each one costs a thread hand-off, an fsync and a socket write
            # per connection, whatever it carries. Under load, waiting to the next slot
            # lets one commit carry several ticks; when idle, there is no wait at all.
            wait_s = last_started + interval_s - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            last_started = loop.time()
            if journal.buffered_records:
                started = time.perf_counter()
                records = journal.buffered_records
                try:
                    durable = await journal.commit()
                except Exception as error:  # noqa: BLE001 - fail-stop, see the docstring
                    log.critical("journal_commit_failed error=%r", error)
                    self.failed = error
                    self._committed.set()
                    self.gateway.close()
                    return
                metrics.commit_seconds.observe(time.perf_counter() - started)
                metrics.journal_records.values[()] = (
                    metrics.journal_records.values.get((), 0) + records)
            else:
                durable = journal.durable_sequence
            released_ns = time.time_ns()
            held = self._held
            count = 0
            for tick in held:
                if tick.sequence > durable:
                    break
                self._release(tick, released_ns)
                count += 1
            if count:
                del held[:count]
                self._committed.set()
            if held:
                self._work.set()

    def _release(self, tick: _Tick, released_ns: int) -> None:
        metrics = self.metrics
        metrics.commit_lag_seconds.observe((released_ns - tick.decided_ns) / 1e9)
        if tick.sends:
            self.gateway.deliver(tick.sends)
        for future, answer in tick.replies:
            if not future.done():
                future.set_result(answer)
        for origin, count in tick.origins.values():
            try:
                origin.sequenced(count)
            except Exception:  # noqa: BLE001 - a connector bug must not stop the switch
                log.exception("origin_sequenced_failed")
        if tick.finals_ns:
            series = metrics.end_to_end
            for forwarded_ns in tick.finals_ns:
                ServerMetrics.observe_series(series, LATENCY_BUCKETS_S,
                                             (released_ns - forwarded_ns) / 1e9)
        if tick.refunds:
            task = asyncio.ensure_future(self._refund(tick.refunds))
            self._refund_tasks.add(task)
            task.add_done_callback(self._refund_tasks.discard)

    async def _refund(self, refunds: list[RefundLookupToken]) -> None:
        for refund in refunds:
            try:
                await self.gateway.refund_lookup(refund.payer_participant_id,
                                                 refund.payer_user_ref)
            except Exception as error:  # noqa: BLE001 - a lost refund costs one token
                log.warning("refund_lookup_failed error=%r", error)
                return

    @property
    def held_ticks(self) -> int:
        return len(self._held)

    def fail_pending(self) -> None:
        """After a failure: answer every waiting caller so nothing hangs."""
        for tick in self._held:
            for future, _answer in tick.replies:
                if not future.done():
                    future.set_result(ErrorAnswer(result=Result.INTERNAL_SERVER_ERROR))
        self._held.clear()
