"""The deciding shell: every rule of the server that is not I/O, in one object that the
server's asyncio loop and the seeded simulator drive the same way (models: h11 keeps every
protocol rule in an object that never touches a socket; TigerBeetle's simulator runs the
real replica on fake storage).

What it decides, per sequencer tick (`decide(items, routes, now_ns) -> Tick`):
- which inbound items need a directory route (`lookups(items)`, asked before `decide`), and
  each participant message plus its route as a core event — or as a refusal the core never
  sees (a directory miss, a payee-less transfer, an operator request that breaks its types);
- the core's commands, routed: messages held in the tick and addressed to the connection
  that asked where there is one (`origin`; a payer's final outcome goes to the connection
  that sent the transfer), timers handed out at once, store consultations answered from
  the archive of outcomes, lookup refunds collected;
- what is journaled: every stepped event but status queries, as the tick's record payloads,
  never an event the journal decoder would refuse (replay must read every record);
and, after the journal says what is durable (`released(durable_sequence) -> [Tick]`),
which ticks may be released: in order, only those whose last record is durable. No reply
that states an outcome may leave before the records behind it are durable.

It must never await, read a clock, or touch a socket or a file: `now_ns`, the directory's
routes and the durable sequence are arguments, and a `Tick` is data the loop carries out
(`switch/server/sequencer.py`). A core failure other than `ProtocolError` propagates: the
core's state may be half-changed, so the loop must fail-stop and recovery must replay.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

import msgspec

from switch.core import codec
from switch.core import limits as core_limits
from switch.core.messages import (
    AdminAnswer,
    FinalTransfer,
    ArmTimer,
    CancelTimer,
    ConsultStore,
    CreditRequest,
    ErrorAnswer,
    Party,
    PayeeAnswer,
    PayeeAnswered,
    Refused,
    RefundLookupToken,
    RequestToPay,
    RequestToPayDecided,
    RequestToPayDecision,
    RequestToPayRequested,
    RequestType,
    ResolveRequest,
    ReturnRequest,
    ReturnRequested,
    Send,
    StatusQueried,
    StatusQuery,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
    refused_for,
)
from switch.core.records import compare_requests
from switch.core.results import TRANSFER_FINAL_STATES, ProtocolError, Result, TransferState
from switch.server import limits
from switch.server.metrics import LATENCY_BUCKETS_S, ServerMetrics

# Kinds of inbound items: (kind, participant_id, message, extra).
ITEM_SUBMIT = 0  # extra: the origin (a connection: Origin and maybe Sink) or None
ITEM_STATUS = 1  # extra: where the answer goes (the loop's future)
ITEM_ADMIN = 2  # extra: where the answer goes; participant_id 0
ITEM_TIMER = 3  # message: TimerFired; participant_id 0, extra None
# A transfer whose payee was decided before it reached the switch (a G2P row the mapper
# routed, switch/g2p): extra is (origin, (payee participant id, account reference)). Its
# payee alias is already in recorded form (a national ID only as its identity token).
ITEM_ROUTED = 4

InboundItem = tuple[int, int, Any, Any]
# A directory route for one lookup: (payee or payer participant id, its account
# reference), or a Result to refuse with.
Route = tuple[int, str] | Result
# Recorded instead of a NATIONAL_ID that is not well formed: equals no identity token.
NOT_A_TOKEN = "-"

_FINAL = TRANSFER_FINAL_STATES
_NOTHING: frozenset = frozenset()
_DETAIL_LENGTH_MAX = core_limits.TEXT_LENGTH_MAX
_REQUEST_TYPE_OF_EVENT = {
    TransferRequested: RequestType.TRANSFER,
    ReturnRequested: RequestType.RETURN,
    PayeeAnswered: RequestType.PAYEE_ANSWER,
    StatusQueried: RequestType.STATUS_QUERY,
    # An approval whose transfer the core would refuse as expired: the transfer is refused.
    RequestToPayDecided: RequestType.TRANSFER,
}


class Tick:
    """What one decision round asks the loop to do. `timers` and `resolves` at once;
    everything else when `released` hands the tick back (its records are durable)."""

    __slots__ = ("now_ns", "items", "records", "sequence", "sends", "replies", "origins",
                 "refunds", "finals_ns", "timers", "resolves")

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns
        self.items = 0
        self.records: list[bytes] = []  # journal payloads, appended in order by the loop
        self.sequence = 0  # the journal sequence this tick waits for
        # (participant_id, Outbound, origin or None): origin is the connection that asked.
        self.sends: list[tuple[int, Any, Any]] = []
        self.replies: list[tuple[Any, Any]] = []  # (reply_to, answer) for awaited calls
        self.origins: dict[int, list] = {}  # id(origin) -> [origin, items it sent this tick]
        self.refunds: list[RefundLookupToken] = []
        self.finals_ns: list[int] = []  # forwarded_at of transfers decided this tick
        self.timers: list[ArmTimer | CancelTimer] = []
        self.resolves: list[tuple[int, ResolveRequest, Any]] = []


class OutcomeArchive:
    """Final transfers the core has dropped from its retained window: the memory tier of
    the transfer history, so a store consultation, a resend or a return of an old transfer
    is still answered — and the feed of the durable tier (`switch/server/history.py`).

    The core keeps its final transfers in the order they ended and drops the oldest when
    its table is full. The archive follows the same order — it is the core's observer
    (`observe`), so the replay of the journal at a restart rebuilds it exactly as it was —
    with a queue of keys, and, as a key reaches the part of the core's table that may be
    dropped next, takes the transfer from the core as a `FinalTransfer` (its event,
    outcome, whether the payee was sent it, how much was returned) and keeps it encoded.
    Each one is also queued for the durable history (`take_writes`); memory keeps at most
    `entries_max` of them, forgetting the oldest only once the history confirmed it
    (`written`). With no durable history, everything counts as written at once."""

    def __init__(self, entries_max: int, config, *, durable: bool = False) -> None:
        """`config`: the core's CoreConfig. Give `observe` to the core as its observer and
        `bind` the core before it is stepped. `durable`: a history store takes the writes."""
        assert entries_max >= 1
        self.entries_max = entries_max
        self.durable = durable
        self.core = None
        # Keys beyond this many recent finals may be dropped by the core at any time: its
        # table also holds the transfers in flight.
        self.recent_max = max(1, config.transfers_retained_max - config.in_flight_max)
        self._recent: deque[tuple[int, str]] = deque()
        self._finals: dict[tuple[int, str], tuple[int, bytes]] = {}  # key -> (index, bytes)
        self._order: deque[tuple[int, tuple[int, str]]] = deque()  # (archive index, key)
        self._archived = 0  # FinalTransfers archived so far (the next index)
        self._written = 0  # indexes below this are in the durable history
        self._writes: list[tuple[tuple[int, str], bytes, int]] = []  # (key, bytes, decided)

    def reset(self) -> None:
        """Forget everything (a recovery attempt from another snapshot starts over)."""
        self.core = None
        self._recent.clear()
        self._finals.clear()
        self._order.clear()
        self._writes.clear()
        self._archived = self._written = 0

    def bind(self, core) -> OutcomeArchive:
        self.core = core
        return self

    def observe(self, payer_participant_id: int, transfer_id: str, state: TransferState,
                now_ns: int) -> None:
        """The core's observer: every final state of every transfer, live or replayed."""
        if state not in _FINAL:
            return
        recent = self._recent
        recent.append((payer_participant_id, transfer_id))
        if len(recent) > self.recent_max:
            key = recent.popleft()
            record = self.core.transfer_record(*key)
            if record is not None and record.state in _FINAL:
                event = record.event
                if type(event) is ReturnRequested and event.original is not None:
                    event = msgspec.structs.replace(event, original=None)
                self._archive(key, _final_encoder.encode(FinalTransfer(
                    event=event, outcome=record.outcome, forwarded=record.forwarded,
                    returned_minor=record.returned_minor)), record.decided_at_ns)

    # Final states only: the core does not call it for the others (switch/core/machine.py).
    observe.finals_only = True

    def _archive(self, key: tuple[int, str], data: bytes, decided_at_ns: int) -> None:
        self._finals[key] = (self._archived, data)
        self._order.append((self._archived, key))
        self._archived += 1
        if self.durable:
            self._writes.append((key, data, decided_at_ns))
        else:
            self._written = self._archived

    def forget_written(self) -> None:
        """Forget the oldest entries beyond `entries_max` that the history has confirmed.
        Called by the shell at the end of a tick only: between `lookups` (which leaves out
        of the history query whatever memory holds) and `decide`, memory forgets nothing."""
        order = self._order
        while len(order) > self.entries_max and order[0][0] < self._written:
            index, key = order.popleft()
            # A newer entry of the same key (restored for a return, dropped again) stays.
            if self._finals[key][0] == index:
                del self._finals[key]

    @property
    def unconfirmed(self) -> int:
        """Outcomes archived that the durable history has not confirmed yet: memory holds
        them all (the server refuses new work past a bound, see HistoryWriter)."""
        return self._archived - self._written

    def take_writes(self) -> list[tuple[tuple[int, str], bytes, int]]:
        """What the durable history must store, oldest first (the sequencer hands it to
        the history writer); then `written(len(...))` once stored."""
        writes, self._writes = self._writes, []
        return writes

    def requeue_writes(self, writes: list[tuple[tuple[int, str], bytes, int]]) -> None:
        """Put writes taken earlier and never confirmed back in front of the queue, oldest
        first (a standby that takes over re-sends its last ones: writes are upserts)."""
        self._writes[:0] = writes

    def written(self, count: int) -> None:
        """The oldest `count` writes taken are durable: memory may forget them."""
        self._written += count
        assert self._written <= self._archived

    def final(self, payer_participant_id: int, transfer_id: str) -> FinalTransfer | None:
        found = self._finals.get((payer_participant_id, transfer_id))
        return None if found is None else _final_decoder.decode(found[1])

    def get(self, payer_participant_id: int, transfer_id: str,
            asker: int) -> TransferOutcome | None:
        """The archived outcome if `asker` may read it (`readable_by`)."""
        final = self.final(payer_participant_id, transfer_id)
        return None if final is None else readable_by(final, asker)

    def __len__(self) -> int:
        return len(self._finals)

    def snapshot(self) -> bytes:
        """The archive as bytes, to keep beside a core snapshot taken at the same point:
        the journal after that point replays into a `restore`d archive."""
        return _final_encoder.encode((list(self._recent), [
            (key, self._finals[key][1]) for index, key in self._order
            if self._finals[key][0] == index]))

    def restore(self, data: bytes) -> OutcomeArchive:
        """Everything restored is queued for the durable history again (writes are upserts,
        and whether they reached it before the snapshot is not known)."""
        recent, archived = _snapshot_decoder.decode(data)
        assert not self._recent and not self._finals, "restore into a fresh archive"
        self._recent.extend(tuple(key) for key in recent)
        for key, final in archived:
            decided_at_ns = _final_decoder.decode(final).outcome.decided_at_ns
            self._archive(tuple(key), final, decided_at_ns)
        return self


def readable_by(final: FinalTransfer, asker: int) -> TransferOutcome | None:
    """A final transfer's outcome if `asker` may read it: its payer, or its payee if the
    payee was sent the transfer. Anyone else learns nothing."""
    outcome = final.outcome
    if asker == outcome.payer_participant_id or (
            final.forwarded and asker == outcome.payee_participant_id):
        return outcome
    return None


_final_encoder = msgspec.msgpack.Encoder()
_final_decoder = msgspec.msgpack.Decoder(FinalTransfer)
_snapshot_decoder = msgspec.msgpack.Decoder(
    tuple[list[tuple[int, str]], list[tuple[tuple[int, str], bytes]]])



class Shell:
    """See the module docstring. One per server process (and per simulated switch)."""

    def __init__(self, core, *, archive: OutcomeArchive, metrics: ServerMetrics,
                 appended_sequence: int,
                 national_id_token: Callable[[str], str | None]) -> None:
        """`national_id_token(raw)`: the identity token recorded and forwarded in place of
        a raw national ID, or None if it is malformed (pure: the directory's HMAC)."""
        self.core = core
        self.archive = archive
        self.metrics = metrics
        self._national_id_token = national_id_token
        self._routed: list[int] = []  # the items `lookups` asked routes for, by position
        self.history_wanted: list[tuple[int, str]] = []  # ids to look up in the history
        self._history: dict[tuple[int, str], bytes] = {}  # this tick's history rows
        self._history_unknown: frozenset | set = _NOTHING  # ids the history could not say
        self.appended_sequence = appended_sequence  # the journal's last record, held or not
        self._now_ns = core.now_ns
        self._held: deque[Tick] = deque()
        # Payer connections waiting for the final outcome of a forwarded transfer, so it
        # reaches the connection that sent it. Bounded by the core's in-flight table.
        self._waiting: dict[tuple[int, str], Any] = {}
        self._forwarded_at: dict[tuple[int, str], int] = {}
        self.ticks = 0

    # -- before deciding -------------------------------------------------------------

    def lookups(self, items: list[InboundItem]) -> list[tuple[int, Party, str]]:
        """(participant_id, alias, end-user reference) to route, in item order: the payee of
        each new transfer, the payer of each new request-to-pay. The loop asks the
        directory for all of them at once and passes the answers to `decide` in the same
        order. A resend of an id the core still holds, or the archive, is not routed: it is
        answered from what was recorded, whatever the directory says now (and charges no
        lookup). Also gathers `history_wanted`: the ids the core and the memory archive do
        not hold, which the loop looks up in the durable history in the same round trip."""
        wanted = []
        routed = self._routed = []
        history = self.history_wanted = []
        durable = self.archive.durable
        core = self.core
        archive = self.archive
        for index, (kind, participant_id, message, _extra) in enumerate(items):
            message_type = type(message)
            if kind == ITEM_STATUS or message_type is StatusQuery or message_type is PayeeAnswer:
                if durable and kind != ITEM_ADMIN:
                    key = (message.payer_participant_id, message.transfer_id)
                    if core.transfer_record(*key) is None and archive.final(*key) is None:
                        history.append(key)
                continue
            if kind == ITEM_ROUTED:  # routed already; a resend may be in the history only
                key = (participant_id, message.transfer_id)
                if durable and core.transfer_record(*key) is None and (
                        archive.final(*key) is None):
                    history.append(key)
                continue
            if kind != ITEM_SUBMIT:
                continue
            if message_type is TransferRequest or message_type is ReturnRequest:
                key = (participant_id, message.transfer_id)
                held = core.transfer_record(*key) is not None or archive.final(*key) is not None
                if durable and not held:
                    history.append(key)
                if message_type is ReturnRequest:
                    original = (message.original.payer_participant_id,
                                message.original.transfer_id)
                    if durable and core.transfer_record(*original) is None and (
                            archive.final(*original) is None):
                        history.append(original)
                    continue
                if message.payee is None or held:
                    continue
                wanted.append((participant_id, message.payee, message.payer_user_ref))
            elif message_type is RequestToPay:
                if core.request_to_pay_outcome(participant_id, message.request_id) is not None:
                    continue
                wanted.append((participant_id, message.payer, message.payee_user_ref))
            else:
                continue
            routed.append(index)
        return wanted

    def _held_transfer(self, payer_id: int, message: TransferRequest):
        """The route a transfer id the core holds already has, or None."""
        record = self.core.transfer_record(payer_id, message.transfer_id)
        if record is not None:
            return record.payee_participant_id, record.payee_account_ref
        return None

    def _final(self, payer_participant_id: int, transfer_id: str) -> FinalTransfer | None:
        """A final transfer the core no longer holds: from the memory archive, or from the
        durable history rows `lookups` asked for (this tick's `history`)."""
        final = self.archive.final(payer_participant_id, transfer_id)
        if final is None:
            data = self._history.get((payer_participant_id, transfer_id))
            if data is not None:
                final = _final_decoder.decode(data)
        return final

    def _answered_without_core(self, participant_id: int, message, origin,
                               tick: Tick) -> bool:
        """For a transfer or return id the core does not hold: answered here (True) when
        it is a resend of one the archive or the history holds, or refused
        SERVICE_UNAVAILABLE when the history could not say — never handed to the core,
        which would take the id for a new transfer."""
        final = self._final(participant_id, message.transfer_id)
        if final is not None:
            self._answer_from_history(participant_id, message, final, origin, tick)
            return True
        if (participant_id, message.transfer_id) in self._history_unknown:
            self._refuse(tick, participant_id, message, Result.SERVICE_UNAVAILABLE, origin)
            return True
        return False

    def _answer_from_history(self, participant_id: int, message, final: FinalTransfer,
                             origin, tick: Tick) -> None:
        """A resend of a transfer (or return) only the history holds: compared with what
        was recorded, answered with its outcome or refused EXISTS_WITH_*; the core never
        sees it (it would take the id for a new transfer)."""
        if type(message) is TransferRequest:
            resend = TransferRequested(payer_participant_id=participant_id,
                                       payee_participant_id=0, payee_account_ref="",
                                       request=msgspec.structs.replace(
                                           message, payee=self._recorded(message.payee)))
        else:
            resend = ReturnRequested(payer_participant_id=participant_id, request=message)
        result = compare_requests(final.event, resend)
        if result is Result.OK:
            tick.sends.append((participant_id, final.outcome, origin))
            return
        self._refuse(tick, participant_id, message, result, origin)

    def _recorded(self, party: Party | None) -> Party | None:
        """The alias as the switch records and forwards it: a NATIONAL_ID becomes its
        identity token (never journaled or forwarded raw); other aliases as sent."""
        if party is None or party.alias_type != "NATIONAL_ID":
            return party
        token = self._national_id_token(party.alias_value)
        return Party(alias_type=party.alias_type, alias_value=token or NOT_A_TOKEN)

    # -- deciding --------------------------------------------------------------------

    def decide(self, items: list[InboundItem], routes: list[Route], now_ns: int,
               history: dict[tuple[int, str], bytes] | None = None, *,
               history_unavailable: bool = False) -> Tick:
        """Step the core with every item (routes: `lookups(items)`'s answers in order, or
        one Result for all of them when the directory failed). `history`: the durable
        history's rows for `history_wanted`; `history_unavailable`: the store could not
        say, so whatever needed it is refused SERVICE_UNAVAILABLE (an unknown id may be a
        resend of a transfer only the history holds: never taken for a new one). Raises
        what the core raised if it is not a ProtocolError: fail-stop."""
        assert len(items) <= limits.TICK_EVENTS_MAX_CEILING
        if now_ns < self._now_ns:
            now_ns = self._now_ns  # a clock that stepped back: the core never sees it
        self._now_ns = now_ns
        tick = Tick(now_ns)
        tick.items = len(items)
        assert len(routes) == len(self._routed), "routes are lookups(items)' answers"
        routes_by_item = dict(zip(self._routed, routes))
        self._routed = []
        self._history = history or {}
        self._history_unknown = set(self.history_wanted) if history_unavailable else _NOTHING
        journaled: list = []
        step = self.core.step
        for index, (kind, participant_id, message, extra) in enumerate(items):
            if kind == ITEM_SUBMIT:
                if extra is not None:
                    counted = tick.origins.get(id(extra))
                    if counted is None:
                        tick.origins[id(extra)] = [extra, 1]
                    else:
                        counted[1] += 1
                event = self._event_for(participant_id, message, routes_by_item.get(index),
                                        extra, tick)
                if event is None:
                    continue
            elif kind == ITEM_ROUTED:
                origin, route = extra
                kind, extra = ITEM_SUBMIT, origin  # from here on, like any submission
                if origin is not None:
                    counted = tick.origins.get(id(origin))
                    if counted is None:
                        tick.origins[id(origin)] = [origin, 1]
                    else:
                        counted[1] += 1
                if self.core.transfer_record(participant_id, message.transfer_id) is None and (
                        self._answered_without_core(participant_id, message, origin, tick)):
                    continue
                event = TransferRequested(payer_participant_id=participant_id,
                                          payee_participant_id=route[0],
                                          payee_account_ref=route[1], request=message)
            elif kind == ITEM_TIMER:
                event = message
            elif kind == ITEM_STATUS:
                event = StatusQueried(participant_id=participant_id, query=message)
            else:
                assert kind == ITEM_ADMIN, kind
                event = self._admin_event(message, extra, tick)
                if event is None:
                    continue
            try:
                commands = step(event, now_ns)
            except ProtocolError as error:
                answer = ErrorAnswer(result=error.result, detail=error.detail[:140])
                if kind == ITEM_STATUS:
                    tick.replies.append((extra, answer))
                else:
                    tick.sends.append((participant_id, answer, extra))
                continue
            if type(event) is not StatusQueried:  # a query changes nothing: not journaled
                journaled.append(event)
            self._dispatch(commands, kind, participant_id, event, extra, tick, now_ns)
        self.archive.forget_written()
        if journaled:
            tick.records = codec.encode_tick(journaled)
            self.appended_sequence += len(tick.records)
        tick.sequence = self.appended_sequence
        self._held.append(tick)
        self.ticks += 1
        return tick

    def _event_for(self, participant_id: int, message, route, origin, tick: Tick):
        """The core event for a participant's message (None: answered here already).
        `route`: the directory's answer if `lookups` asked for one, else None."""
        message_type = type(message)
        if message_type is TransferRequest:
            if message.payee is None:
                # Only the core builds payee-less transfers (from a request-to-pay).
                self._refuse(tick, participant_id, message, Result.VALIDATION_ERROR, origin)
                return None
            held = self._held_transfer(participant_id, message)
            if held is not None:
                route = held  # the core answers the resend from its record
            else:
                if self._answered_without_core(participant_id, message, origin, tick):
                    return None
                if route is None:
                    # Archived when routes were asked, forgotten since: ask again.
                    self._refuse(tick, participant_id, message, Result.SERVER_BUSY, origin)
                    return None
                if type(route) is Result:
                    self._refuse(tick, participant_id, message, route, origin)
                    return None
            recorded = self._recorded(message.payee)
            if recorded is not message.payee:
                message = msgspec.structs.replace(message, payee=recorded)
            return TransferRequested(payer_participant_id=participant_id,
                                     payee_participant_id=route[0],
                                     payee_account_ref=route[1], request=message)
        if message_type is PayeeAnswer:
            return PayeeAnswered(payee_participant_id=participant_id, answer=message)
        if message_type is ReturnRequest:
            if self.core.transfer_record(participant_id, message.transfer_id) is None and (
                    self._answered_without_core(participant_id, message, origin, tick)):
                return None
            original = None
            ref = message.original
            if self.core.transfer_record(ref.payer_participant_id, ref.transfer_id) is None:
                original = self._final(ref.payer_participant_id, ref.transfer_id)
                if original is None and (ref.payer_participant_id, ref.transfer_id) in (
                        self._history_unknown):
                    self._refuse(tick, participant_id, message, Result.SERVICE_UNAVAILABLE,
                                 origin)
                    return None
            return ReturnRequested(payer_participant_id=participant_id, request=message,
                                   original=original)
        if message_type is StatusQuery:
            return StatusQueried(participant_id=participant_id, query=message)
        if message_type is RequestToPay:
            if route is None:  # an id the switch holds: the core answers the resend
                held = self.core.request_to_pay_outcome(participant_id, message.request_id)
                route = (held.payer_participant_id, "")
            elif type(route) is Result:
                self._refuse(tick, participant_id, message, route, origin)
                return None
            recorded = self._recorded(message.payer)
            if recorded is not message.payer:
                message = msgspec.structs.replace(message, payer=recorded)
            return RequestToPayRequested(payee_participant_id=participant_id,
                                         payer_participant_id=route[0],
                                         payer_account_ref=route[1], request=message)
        if message_type is RequestToPayDecision:
            return RequestToPayDecided(payer_participant_id=participant_id, decision=message)
        if message_type is ResolveRequest:
            tick.resolves.append((participant_id, message, origin))
            return None
        tick.sends.append((participant_id, ErrorAnswer(result=Result.VALIDATION_ERROR,
                                                       detail="not a request"), origin))
        return None

    def _refuse(self, tick: Tick, participant_id: int, message, result: Result,
                origin) -> None:
        answer = refused_for(message, participant_id, result)
        if type(answer) is Refused:
            self._count_refusal(answer)
        tick.sends.append((participant_id, answer, origin))

    def _count_refusal(self, refused: Refused) -> None:
        refusals = self.metrics.refused
        key = (refused.request_type, refused.result)
        refusals[key] = refusals.get(key, 0) + 1

    @staticmethod
    def _admin_event(event, reply_to, tick: Tick):
        """An operator event exactly as the journal decoder will read it back, or None
        (answered VALIDATION_ERROR here: a refused request must never reach the journal in
        a form replay cannot read, or the switch could never start again)."""
        try:
            return codec.validated(event)
        except (msgspec.ValidationError, TypeError) as error:
            request_id = getattr(event, "request_id", "")
            tick.replies.append((reply_to, AdminAnswer(
                request_id=str(request_id)[:_DETAIL_LENGTH_MAX],
                result=Result.VALIDATION_ERROR,
                detail=str(error)[:_DETAIL_LENGTH_MAX])))
            return None

    def _dispatch(self, commands, kind: int, participant_id: int, event, extra, tick: Tick,
                  now_ns: int) -> None:
        asked_by = extra if kind == ITEM_SUBMIT else None
        for command in commands:
            command_type = type(command)
            if command_type is Send:
                message = command.message
                message_type = type(message)
                to = command.participant_id
                origin = asked_by if to == participant_id else None
                if message_type is CreditRequest:
                    key = (message.payer_participant_id, message.transfer_id)
                    self._forwarded_at[key] = now_ns  # forwarded now (or re-sent)
                    if asked_by is not None and participant_id == message.payer_participant_id:
                        self._waiting[key] = asked_by
                        assert len(self._waiting) <= self.core.config.in_flight_max
                elif message_type is TransferOutcome:
                    if message.decided_at_ns == now_ns and message.state in _FINAL and (
                            to == message.payer_participant_id):
                        waiting = self._decided(message, now_ns, tick)
                        if origin is None:
                            origin = waiting
                elif message_type is Refused:
                    self._count_refusal(message)
                if kind == ITEM_STATUS and to == participant_id:
                    tick.replies.append((extra, message))
                else:
                    tick.sends.append((to, message, origin))
            elif command_type is ArmTimer or command_type is CancelTimer:
                tick.timers.append(command)
            elif command_type is RefundLookupToken:
                tick.refunds.append(command)
            elif command_type is ConsultStore:
                self._consult(command, kind, event, extra, tick)
            elif command_type is AdminAnswer:
                if kind == ITEM_ADMIN:
                    tick.replies.append((extra, command))
            else:  # pragma: no cover - the Command union is closed
                raise AssertionError(f"unknown command {command_type.__name__}")

    def _decided(self, outcome: TransferOutcome, now_ns: int, tick: Tick):
        """A transfer reached its final state in this tick: count it, time it; the payer
        connection that waits for it, if any. (The archive sees it as the core's observer.)"""
        finals = self.metrics.finals
        key = (outcome.state, outcome.result)  # enum members: names are read at scrape time
        finals[key] = finals.get(key, 0) + 1
        transfer_key = (outcome.payer_participant_id, outcome.transfer_id)
        forwarded_ns = self._forwarded_at.pop(transfer_key, None)
        if forwarded_ns is not None:
            ServerMetrics.observe_series(self.metrics.reserve_to_answer, LATENCY_BUCKETS_S,
                                         (now_ns - forwarded_ns) / 1e9)
            tick.finals_ns.append(forwarded_ns)
        return self._waiting.pop(transfer_key, None)

    def _consult(self, command: ConsultStore, kind: int, event, extra, tick: Tick) -> None:
        asker = command.participant_id
        key = (command.payer_participant_id, command.transfer_id)
        final = self._final(*key)
        answer = None if final is None else readable_by(final, asker)
        if answer is None:
            # The store could not say: not "not found", which a payer may act on.
            result = (Result.SERVICE_UNAVAILABLE if final is None
                      and key in self._history_unknown else command.result_if_absent)
            answer = Refused(request_type=_REQUEST_TYPE_OF_EVENT[type(event)],
                             scope_participant_id=command.payer_participant_id,
                             id=command.transfer_id, result=result)
        if kind == ITEM_STATUS:
            tick.replies.append((extra, answer))
        else:
            tick.sends.append((asker, answer, extra if kind == ITEM_SUBMIT else None))

    # -- releasing -------------------------------------------------------------------

    def released(self, durable_sequence: int) -> list[Tick]:
        """The held ticks whose records are all durable, oldest first, no longer held."""
        held = self._held
        out = []
        while held and held[0].sequence <= durable_sequence:
            out.append(held.popleft())
        return out

    @property
    def held_ticks(self) -> int:
        return len(self._held)

    def abandon(self) -> list[Tick]:
        """After a failure: every held tick, so the loop can answer its waiting callers."""
        held = list(self._held)
        self._held.clear()
        return held

    # -- recovery --------------------------------------------------------------------

    def recovery(self) -> tuple[list[ArmTimer], list[tuple[int, Any]]]:
        """After a replay: the timers to arm, and the messages to hold until their
        participant next uses a door (credit requests of transfers waiting for their payee,
        notices of open requests-to-pay). They restate durable decisions."""
        timers, holds = [], []
        for command in self.core.recovery_commands():
            if type(command) is ArmTimer:
                timers.append(command)
            else:
                assert type(command) is Send, command
                holds.append((command.participant_id, command.message))
        return timers, holds
