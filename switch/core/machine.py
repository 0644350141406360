"""The switch core: a deterministic state machine from events to commands.

`SwitchCore(config, ledger).step(event, now_ns) -> list[Command]` decides every transfer,
return, request-to-pay and operator request. It owns the participant and transfer state and
an in-process ledger (`ledger.Ledger`), which it calls synchronously: the ledger is sans-I/O
too. Given the same events with the same `now_ns`, a fresh core on a fresh ledger reaches
the identical state (`replay`), which is how the server recovers from its journal.

It must never do I/O, read the clock, start threads or raise for a business outcome: those
are `Result` values in commands. It raises `ProtocolError` (state unchanged) for a peer that
breaks the protocol and `AssertionError` for its own bugs. See docs/core.md.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable

import msgspec

from ledger.limits import U64_MAX
from ledger.types import (
    TRANSFER_STRUCT,
    Account,
    AccountFlags,
    CreateTransferResult,
    TransferFlags,
    pack_accounts,
)
from switch.core import limits
from switch.core.accounts import HUB_PARTICIPANT_ID, Leg, TransferCode, account_id
from switch.core.config import CoreConfig
from switch.core.fees import fee_minor
from switch.core.messages import (
    AdminAnswer,
    AdminEvent,
    ArmTimer,
    CancelTimer,
    Command,
    ConsultStore,
    CreditRequest,
    CurrencyAdded,
    Event,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    ParticipantDailyLimitSet,
    ParticipantResumed,
    ParticipantSuspended,
    ParticipantView,
    PayeeAnswered,
    RefundLookupToken,
    Refused,
    RequestToPay,
    RequestToPayDecided,
    RequestToPayNotice,
    RequestToPayOutcome,
    RequestToPayRequested,
    ReturnRequest,
    ReturnRequested,
    SchemeRulesChanged,
    Send,
    StatusQueried,
    TimerFired,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
    id_valid,
)
from switch.core.participants import CurrencyState, Participant, ParticipantAccount
from switch.core.results import (
    ParticipantStatus,
    ProtocolError,
    RequestToPayState,
    Result,
    SettlementModel,
    TransferState,
)

_AMOUNT_MINOR_MAX = limits.AMOUNT_MINOR_MAX
_NS_PER_MS = limits.NS_PER_MS
_NS_PER_DAY = limits.NS_PER_DAY
_SHIFT = limits.LEDGER_ID_SHIFT

_PENDING = int(TransferFlags.PENDING)
_LINKED = int(TransferFlags.LINKED)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_RESULT_OK = CreateTransferResult.OK
_LINKED_EVENT_FAILED = CreateTransferResult.LINKED_EVENT_FAILED

# What a refused reserve becomes, per leg (payment, fee). The payer's account may never be
# debited beyond its credits, themselves at most 2**64-1, so a debit that would pass 2**64-1
# is one its funds cannot cover. Credits are cumulative: an account that received ~2**64
# minor units in its life (the payee's on the payment leg, the hub's fee account on the fee
# leg) cannot be credited more. A pending reserve runs only the *_PENDING and total checks.
# Any other result is a core bug (tests/core/test_core_ledger_results.py says why for each).
_RESERVE_REFUSALS: tuple[dict[int, Result], dict[int, Result]] = tuple(
    {
        CreateTransferResult.OVERFLOWS_DEBITS_PENDING: Result.PAYER_INSUFFICIENT_LIQUIDITY,
        CreateTransferResult.OVERFLOWS_CREDITS_PENDING: credit_full,
        CreateTransferResult.OVERFLOWS_DEBITS: Result.PAYER_INSUFFICIENT_LIQUIDITY,
        CreateTransferResult.OVERFLOWS_CREDITS: credit_full,
        CreateTransferResult.EXCEEDS_CREDITS: Result.PAYER_INSUFFICIENT_LIQUIDITY,
    }
    for credit_full in (Result.PAYEE_ACCOUNT_OVERFLOW, Result.HUB_ACCOUNT_OVERFLOW)
)

_RECEIVED = TransferState.RECEIVED
_RESERVED = TransferState.RESERVED
_FORWARDED = TransferState.FORWARDED
_COMMITTED = TransferState.COMMITTED
_REJECTED = TransferState.REJECTED
_EXPIRED = TransferState.EXPIRED
_OK = Result.OK
_ACTIVE = ParticipantStatus.ACTIVE
# Enum members the per-transfer path reads, as module globals (and ledger numbers as plain
# ints): an IntEnum attribute read costs ~50 ns, a global ~5 ns; ~1 µs per transfer in all.
_LEG_RESERVE, _LEG_RESERVE_FEE = int(Leg.RESERVE), int(Leg.RESERVE_FEE)
_LEG_POST, _LEG_POST_FEE = int(Leg.POST), int(Leg.POST_FEE)
_LEG_VOID, _LEG_VOID_FEE = int(Leg.VOID), int(Leg.VOID_FEE)
_CODE_PAYMENT, _CODE_RETURN = int(TransferCode.PAYMENT), int(TransferCode.RETURN)
_CODE_FEE = int(TransferCode.FEE)

Observer = Callable[[int, str, TransferState, int], None]


class TransferRecord(msgspec.Struct, kw_only=True, gc=False):
    """One transfer (or return) the core recorded. Never leaves the core; not a message."""

    seq: int
    event: TransferRequested | ReturnRequested  # the request as first received
    payer_participant_id: int
    transfer_id: str
    payee_participant_id: int
    amount_minor: int
    currency: str
    expires_at_ns: int
    state: TransferState = TransferState.RECEIVED
    result: Result = Result.OK
    fee_minor: int = 0
    deadline_ns: int = 0  # min(payer expiry, forward time + payee timeout)
    day: int = 0  # UTC day it counted against the payer's daily total
    payer_account: ParticipantAccount | None = None
    payee_account_ref: str = ""
    request_to_pay_id: str = ""  # set by the approval that created this transfer, only
    original: TransferRecord | None = None  # the transfer a return returns
    returned_minor: int = 0  # reserved or committed returns of this transfer
    forwarded: bool = False  # the payee was sent a credit request
    decided_at_ns: int = 0
    reason: str = ""
    outcome: TransferOutcome | None = None  # set when final; resent as is


class RequestToPayRecord(msgspec.Struct, kw_only=True, gc=False):
    seq: int
    event: RequestToPayRequested
    payee_participant_id: int
    request_id: str
    payer_participant_id: int
    state: RequestToPayState = RequestToPayState.OPEN
    result: Result = Result.OK
    transfer_id: str = ""
    outcome: RequestToPayOutcome | None = None


class _AccountState(msgspec.Struct, array_like=True, frozen=True):
    currency: str
    account_id: int
    daily_total_max_minor: int | None
    daily_day: int
    daily_used_minor: int
    cap_minor: int


class _ParticipantState(msgspec.Struct, array_like=True, frozen=True):
    participant_id: int
    name: str
    status: ParticipantStatus
    accounts: list[_AccountState]


class CoreSnapshot(msgspec.Struct, array_like=True, frozen=True, kw_only=True):
    """Everything a core holds, with its ledger's snapshot: restore it and replay only the
    journal after `journal_position` (the shell's record count when it was taken)."""

    version: int
    journal_position: int
    now_ns: int
    seq: int
    currencies: list[CurrencyState]
    participants: list[_ParticipantState]
    transfers: list[TransferRecord]  # with payer_account and original left out
    originals: list[tuple[int, str] | None]  # the original of each (returns), by key
    transfers_final: list[tuple[int, str]]
    requests: list[RequestToPayRecord]
    requests_final: list[tuple[int, str]]
    admin: list[tuple[AdminEvent, AdminAnswer]]
    ledger: bytes


SNAPSHOT_VERSION = 2  # 2: TransferRecord.request_to_pay_id, not in the transfer request
_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(CoreSnapshot)


class SwitchCore:
    """The sans-I/O switch. See the module docstring and docs/core.md."""

    def __init__(self, config: CoreConfig, ledger, observer: Observer | None = None):
        assert ledger.account_count == 0, "the core needs a fresh ledger (it replays into it)"
        self._init_state(config, ledger, observer)

    def _init_state(self, config: CoreConfig, ledger, observer: Observer | None) -> None:
        assert config.in_flight_max <= config.transfers_retained_max
        # Every in-flight transfer holds up to two pending ledger transfers (payment + fee).
        assert ledger.config.pending_max >= 2 * config.in_flight_max, "ledger pending_max too small"
        self.config = config
        self.ledger = ledger
        self._observer = observer
        self._expiry_ns_max = config.expiry_ms_max * _NS_PER_MS
        self._now_ns = 0
        self._seq = 0
        self._currencies: dict[str, CurrencyState] = {}
        self._ledger_ids: set[int] = set()
        self._participants: dict[int, Participant] = {}
        self._participant_names: dict[str, int] = {}
        self._transfers: dict[tuple[int, str], TransferRecord] = {}
        self._transfers_final: deque[tuple[int, str]] = deque()
        self._in_flight = 0
        self._requests: dict[tuple[int, str], RequestToPayRecord] = {}
        self._requests_final: deque[tuple[int, str]] = deque()
        self._timers: dict[int, TransferRecord | RequestToPayRecord] = {}
        self._admin_seen: dict[str, tuple[object, AdminAnswer]] = {}
        self._admin_order: deque[str] = deque()
        self._buffer = bytearray(2 * TRANSFER_STRUCT.size)  # a linked payment + fee pair
        self._handlers = {
            TransferRequested: self._on_transfer,
            PayeeAnswered: self._on_payee_answer,
            TimerFired: self._on_timer,
            StatusQueried: self._on_status,
            ReturnRequested: self._on_return,
            RequestToPayRequested: self._on_request_to_pay,
            RequestToPayDecided: self._on_request_to_pay_decision,
            CurrencyAdded: self._admin_act(self._currency_added),
            SchemeRulesChanged: self._admin_rules_changed,
            ParticipantAdded: self._admin_participant_added,
            ParticipantAccountOpened: self._admin_account_opened,
            ParticipantSuspended: self._admin_act(self._set_status),
            ParticipantResumed: self._admin_act(self._set_status),
            ParticipantDailyLimitSet: self._admin_daily_limit,
            FundsDeposited: self._admin_act(self._move_funds),
            FundsWithdrawn: self._admin_act(self._move_funds),
            NetDebitCapSet: self._admin_cap,
        }

    # -- the interface -----------------------------------------------------------------

    def step(self, event: Event, now_ns: int) -> list[Command]:
        """Decide one event. `now_ns` is UTC nanoseconds; it is clamped so it never goes
        back (a replay sees the same clamped values, so decisions are identical)."""
        if now_ns < self._now_ns:
            now_ns = self._now_ns
        else:
            self._now_ns = now_ns
        commands = self._handlers[type(event)](event, now_ns)
        assert len(commands) <= limits.COMMANDS_PER_STEP_MAX
        if self.config.debug_checks:
            self.check_invariants()
        return commands

    def replay(self, entries: Iterable[tuple[int, Event]]) -> list[Command]:
        """Rebuild state from journaled (now_ns, event) pairs (on a fresh core and a fresh
        ledger) and return what the shell must do to resume: `recovery_commands()`.
        Events that raised ProtocolError live were not acted on; they raise again and are
        skipped."""
        for now_ns, event in entries:
            try:
                self.step(event, now_ns)
            except ProtocolError:
                pass
        return self.recovery_commands()

    def recovery_commands(self) -> list[Command]:
        """After a restart: re-arm every live timer; re-send the credit request of every
        transfer waiting for its payee (payees answer duplicates the same way) and the notice
        of every open request-to-pay. Outcomes are not re-sent: participants that missed one
        resend or query, and get it then."""
        commands: list[Command] = []
        for timer_id, record in self._timers.items():
            if isinstance(record, TransferRecord):
                commands.append(ArmTimer(timer_id=timer_id, deadline_ns=record.deadline_ns))
                commands.append(Send(participant_id=record.payee_participant_id,
                                     message=self._credit_request(record)))
            else:
                request = record.event.request
                commands.append(ArmTimer(timer_id=timer_id, deadline_ns=request.expires_at_ns))
                commands.append(Send(participant_id=record.payer_participant_id,
                                     message=self._request_to_pay_notice(record)))
        return commands

    def snapshot(self, journal_position: int) -> bytes:
        """The whole state (core and ledger) as bytes, so recovery replays only the journal
        records after `journal_position` instead of all of them. Take it between steps."""
        transfers, originals = [], []
        for record in self._transfers.values():
            original = record.original
            originals.append(None if original is None else
                             (original.payer_participant_id, original.transfer_id))
            transfers.append(msgspec.structs.replace(record, payer_account=None, original=None))
        participants = [
            _ParticipantState(
                participant_id=p.participant_id, name=p.name, status=p.status,
                accounts=[_AccountState(
                    currency=code, account_id=a.account_id,
                    daily_total_max_minor=a.daily_total_max_minor, daily_day=a.daily_day,
                    daily_used_minor=a.daily_used_minor, cap_minor=a.cap_minor,
                ) for code, a in p.accounts.items()],
            )
            for p in self._participants.values()
        ]
        return _snapshot_encoder.encode(CoreSnapshot(
            version=SNAPSHOT_VERSION, journal_position=journal_position, now_ns=self._now_ns,
            seq=self._seq, currencies=list(self._currencies.values()),
            participants=participants, transfers=transfers, originals=originals,
            transfers_final=list(self._transfers_final), requests=list(self._requests.values()),
            requests_final=list(self._requests_final),
            admin=[self._admin_seen[request_id] for request_id in self._admin_order],
            ledger=self.ledger.snapshot(),
        ))

    @classmethod
    def from_snapshot(cls, config: CoreConfig, ledger_cls, data: bytes,
                      observer: Observer | None = None) -> tuple[SwitchCore, int]:
        """(core, journal_position) rebuilt from `snapshot()` bytes on a new `ledger_cls`
        ledger. Then `replay` the journal records after journal_position."""
        state = _snapshot_decoder.decode(data)
        assert state.version == SNAPSHOT_VERSION, state.version
        store = ledger_cls.from_snapshot(state.ledger)
        core = cls.__new__(cls)
        core._init_state(config, store, observer)
        core._now_ns = state.now_ns
        core._seq = state.seq
        for currency in state.currencies:
            core._currencies[currency.currency] = currency
            core._ledger_ids.add(currency.ledger_id)
        for saved in state.participants:
            participant = Participant(participant_id=saved.participant_id, name=saved.name,
                                      status=saved.status)
            for account in saved.accounts:
                participant.accounts[account.currency] = ParticipantAccount(
                    account_id=account.account_id, currency=core._currencies[account.currency],
                    daily_total_max_minor=account.daily_total_max_minor,
                    daily_day=account.daily_day, daily_used_minor=account.daily_used_minor,
                    cap_minor=account.cap_minor,
                )
            core._participants[saved.participant_id] = participant
            core._participant_names[saved.name] = saved.participant_id
        for record, original_key in zip(state.transfers, state.originals):
            key = (record.payer_participant_id, record.transfer_id)
            if record.state == _FORWARDED:
                record.payer_account = (
                    core._participants[record.payer_participant_id].accounts[record.currency])
                core._in_flight += 1
                core._timers[record.seq] = record
            if original_key is not None:
                # An in-flight return. If its original has been dropped from the table since,
                # no link is needed: it can no longer be returned, so its total is never read.
                record.original = core._transfers.get(original_key)
            core._transfers[key] = record
        core._transfers_final.extend(state.transfers_final)
        for record in state.requests:
            core._requests[(record.payee_participant_id, record.request_id)] = record
            if record.state == RequestToPayState.OPEN:
                core._timers[record.seq] = record
        core._timers = dict(sorted(core._timers.items()))
        core._requests_final.extend(state.requests_final)
        for event, answer in state.admin:
            core._admin_seen[event.request_id] = (event, answer)
            core._admin_order.append(event.request_id)
        core.check_invariants()
        return core, state.journal_position

    # -- read-only views for the shell, console and settlement -------------------------

    def transfer_outcome(self, payer_participant_id: int, transfer_id: str) -> TransferOutcome | None:
        record = self._transfers.get((payer_participant_id, transfer_id))
        return None if record is None else self._current_outcome(record)

    def transfer_record(self, payer_participant_id: int, transfer_id: str) -> TransferRecord | None:
        """The retained record of one transfer (read-only: the console's timeline), or None."""
        return self._transfers.get((payer_participant_id, transfer_id))

    def request_to_pay_outcome(self, payee_participant_id: int,
                               request_id: str) -> RequestToPayOutcome | None:
        record = self._requests.get((payee_participant_id, request_id))
        return None if record is None else self._request_outcome(record)

    def participant(self, participant_id: int) -> ParticipantView | None:
        participant = self._participants.get(participant_id)
        if participant is None:
            return None
        return ParticipantView(
            participant_id=participant.participant_id,
            name=participant.name,
            status=participant.status,
            currencies=tuple(participant.accounts),
        )

    def participant_ids(self) -> list[int]:
        return list(self._participants)

    def participant_id_by_name(self, name: str) -> int | None:
        return self._participant_names.get(name)

    def currency(self, currency: str) -> CurrencyState | None:
        return self._currencies.get(currency)

    def currencies(self) -> list[str]:
        return list(self._currencies)

    def account_id(self, participant_id: int, currency: str) -> int | None:
        participant = self._participants.get(participant_id)
        if participant is None:
            return None
        account = participant.accounts.get(currency)
        return None if account is None else account.account_id

    def daily_used_minor(self, participant_id: int, currency: str) -> int:
        account = self._participants[participant_id].accounts[currency]
        today = self._now_ns // _NS_PER_DAY
        return account.daily_used_minor if account.daily_day == today else 0

    def daily_max_minor(self, participant_id: int, currency: str) -> int:
        return self._participants[participant_id].accounts[currency].daily_max_minor()

    def net_debit_cap_minor(self, participant_id: int, currency: str) -> int:
        """The net debit cap currently credited (deferred-net currencies; 0 otherwise)."""
        return self._participants[participant_id].accounts[currency].cap_minor

    def live_timers(self) -> dict[int, int]:
        """timer_id -> deadline_ns of every armed timer."""
        result = {}
        for timer_id, record in self._timers.items():
            if isinstance(record, TransferRecord):
                result[timer_id] = record.deadline_ns
            else:
                result[timer_id] = record.event.request.expires_at_ns
        return result

    @property
    def in_flight_count(self) -> int:
        return self._in_flight

    @property
    def transfers_retained(self) -> int:
        return len(self._transfers)

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def transfer_records(self) -> Iterable[TransferRecord]:
        """Every retained transfer, oldest first (tests, simulator, console search)."""
        return self._transfers.values()

    def check_invariants(self) -> None:
        """The core's own bookkeeping agrees with itself and with the ledger."""
        self.ledger.check_invariants()
        forwarded = [r for r in self._transfers.values() if r.state == _FORWARDED]
        assert len(forwarded) == self._in_flight
        assert len(forwarded) <= self.config.in_flight_max
        assert len(self._transfers) <= self.config.transfers_retained_max
        assert len(self._requests) <= self.config.requests_to_pay_retained_max
        for record in forwarded:
            assert self._timers.get(record.seq) is record
        open_requests = [r for r in self._requests.values() if r.state == RequestToPayState.OPEN]
        assert len(self._timers) == len(forwarded) + len(open_requests)
        assert len(self._transfers_final) + len(forwarded) == len(self._transfers)

    # -- transfers -----------------------------------------------------------------------

    def _on_transfer(self, event: TransferRequested, now_ns: int,
                     request_to_pay_id: str = "") -> list[Command]:
        request = event.request
        payer_id = event.payer_participant_id
        transfer_id = request.transfer_id
        # The `Id` grammar again, for events built by hand (not decoded): an id outside it
        # would break HTTP status paths and `from_snapshot` (which decodes with the types).
        if not id_valid(transfer_id):
            return [_refuse(payer_id, "transfer", payer_id, transfer_id, Result.ID_INVALID)]
        key = (payer_id, transfer_id)
        record = self._transfers.get(key)
        if record is not None:
            return self._answer_resend(record, event, payer_id)
        amount_minor = request.amount_minor
        result = self._check_request(amount_minor, request.expires_at_ns, now_ns)
        if result is not _OK:
            return self._refuse_transfer(payer_id, transfer_id, result)
        payer = self._participants.get(payer_id)
        if payer is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYER_NOT_FOUND)
        payee_id = event.payee_participant_id
        payee = self._participants.get(payee_id)
        if payee is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYEE_NOT_FOUND)
        if payee is payer:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYER_AND_PAYEE_SAME)
        currency = self._currencies.get(request.currency)
        if currency is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.CURRENCY_NOT_SUPPORTED)
        if not self._room_for_transfer(now_ns):
            return self._refuse_transfer(payer_id, transfer_id, Result.SERVER_BUSY)
        record = self._record_transfer(
            key, event, payee_id, amount_minor, request.currency, request.expires_at_ns, now_ns
        )
        record.payee_account_ref = event.payee_account_ref
        record.request_to_pay_id = request_to_pay_id
        return self._admit(record, payer, payee, currency, None, now_ns)

    def _on_return(self, event: ReturnRequested, now_ns: int) -> list[Command]:
        request = event.request
        payer_id = event.payer_participant_id
        transfer_id = request.transfer_id
        original_ref = request.original
        if not id_valid(transfer_id) or not id_valid(original_ref.transfer_id):
            return [_refuse(payer_id, "return", payer_id, transfer_id, Result.ID_INVALID)]
        key = (payer_id, transfer_id)
        record = self._transfers.get(key)
        if record is not None:
            return self._answer_resend(record, event, payer_id)
        amount_minor = request.amount_minor
        result = self._check_request(amount_minor, request.expires_at_ns, now_ns)
        if result is not _OK:
            return self._refuse_transfer(payer_id, transfer_id, result, "return")
        payer = self._participants.get(payer_id)
        if payer is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYER_NOT_FOUND, "return")
        if not self._room_for_transfer(now_ns):
            return self._refuse_transfer(payer_id, transfer_id, Result.SERVER_BUSY, "return")
        original = self._transfers.get(
            (original_ref.payer_participant_id, original_ref.transfer_id)
        )
        # A participant that is neither party learns nothing about the original.
        if original is None or payer_id not in (
            original.payer_participant_id, original.payee_participant_id
        ) or not original.forwarded:
            return self._reject_recorded_return(key, event, 0, "", now_ns,
                                                Result.ORIGINAL_TRANSFER_NOT_FOUND)
        if original.state != _COMMITTED:
            return self._reject_recorded_return(
                key, event, original.payer_participant_id, original.currency, now_ns,
                Result.RETURN_ORIGINAL_NOT_COMMITTED,
            )
        if original.payee_participant_id != payer_id:
            return self._reject_recorded_return(
                key, event, original.payer_participant_id, original.currency, now_ns,
                Result.RETURN_PARTIES_MISMATCH,
            )
        payee = self._participants[original.payer_participant_id]
        record = self._record_transfer(
            key, event, payee.participant_id, amount_minor, original.currency,
            request.expires_at_ns, now_ns,
        )
        record.payee_account_ref = original.event.request.payer_account_ref if isinstance(
            original.event, TransferRequested) else ""
        currency = self._currencies[original.currency]
        return self._admit(record, payer, payee, currency, original, now_ns)

    def _check_request(self, amount_minor: int, expires_at_ns: int, now_ns: int) -> Result:
        """The checks that need no state beyond the request and the clock."""
        if not 1 <= amount_minor <= _AMOUNT_MINOR_MAX:
            return Result.AMOUNT_INVALID
        if expires_at_ns <= now_ns:
            return Result.TRANSFER_EXPIRED
        if expires_at_ns - now_ns > self._expiry_ns_max:
            return Result.EXPIRY_TOO_FAR
        return _OK

    def _refuse_transfer(self, payer_id: int, transfer_id: str, result: Result,
                         request_type: str = "transfer") -> list[Command]:
        if result is Result.TRANSFER_EXPIRED:
            # Unknown id, expiry passed: it may be a resend of a transfer older than the
            # retained window. The shell's store knows; if not, it really is expired.
            return [ConsultStore(participant_id=payer_id, payer_participant_id=payer_id,
                                 transfer_id=transfer_id, result_if_absent=result)]
        return [_refuse(payer_id, request_type, payer_id, transfer_id, result)]

    def _room_for_transfer(self, now_ns: int) -> bool:
        """Room for one more record. Drops the oldest final transfer if the table is full and
        that transfer's expiry has passed (a resend of it is then refused as expired)."""
        if self._in_flight >= self.config.in_flight_max:
            return False
        transfers = self._transfers
        if len(transfers) < self.config.transfers_retained_max:
            return True
        final = self._transfers_final
        if not final or transfers[final[0]].expires_at_ns > now_ns:
            return False
        del transfers[final.popleft()]
        assert len(transfers) < self.config.transfers_retained_max
        return True

    def _record_transfer(self, key: tuple[int, str], event, payee_id: int, amount_minor: int,
                         currency: str, expires_at_ns: int, now_ns: int) -> TransferRecord:
        self._seq += 1
        assert self._seq <= limits.SEQUENCE_MAX
        record = TransferRecord(
            seq=self._seq,
            event=event,
            payer_participant_id=key[0],
            transfer_id=key[1],
            payee_participant_id=payee_id,
            amount_minor=amount_minor,
            currency=currency,
            expires_at_ns=expires_at_ns,
            day=now_ns // _NS_PER_DAY,
        )
        self._transfers[key] = record
        self._transition(record, _RECEIVED, now_ns)
        return record

    def _reject_recorded_return(self, key, event: ReturnRequested, payee_id: int,
                                currency: str, now_ns: int, result: Result) -> list[Command]:
        record = self._record_transfer(key, event, payee_id, event.request.amount_minor,
                                       currency, event.request.expires_at_ns, now_ns)
        return self._reject_at_admission(record, result, now_ns)

    def _admit(self, record: TransferRecord, payer: Participant, payee: Participant,
               currency: CurrencyState, original: TransferRecord | None,
               now_ns: int) -> list[Command]:
        """The recorded checks, in `Result` order, then the ledger reserve and the forward."""
        if payer.status != _ACTIVE:
            return self._reject_at_admission(record, Result.PAYER_BLOCKED, now_ns)
        if payee.status != _ACTIVE:
            return self._reject_at_admission(record, Result.PAYEE_BLOCKED, now_ns)
        payer_account = payer.accounts.get(currency.currency)
        if payer_account is None:
            return self._reject_at_admission(record, Result.PAYER_CURRENCY_NOT_ENABLED, now_ns)
        payee_account = payee.accounts.get(currency.currency)
        if payee_account is None:
            return self._reject_at_admission(record, Result.PAYEE_CURRENCY_NOT_ENABLED, now_ns)
        amount_minor = record.amount_minor
        if original is not None and (
            original.returned_minor + amount_minor > original.amount_minor
        ):
            return self._reject_at_admission(record, Result.RETURN_EXCEEDS_ORIGINAL, now_ns)
        rules = currency.rules
        if amount_minor > rules.transfer_max_minor:
            return self._reject_at_admission(record, Result.AMOUNT_ABOVE_TRANSFER_MAX, now_ns)
        if amount_minor > payer_account.daily_room_minor(record.day):
            return self._reject_at_admission(record, Result.PAYER_DAILY_LIMIT_EXCEEDED, now_ns)
        fee = 0 if original is not None else fee_minor(rules, amount_minor)
        refusal = self._ledger_reserve(record, payer_account, payee_account, currency, fee,
                                       now_ns)
        if refusal is not _OK:
            return self._reject_at_admission(record, refusal, now_ns)
        # Reserved: the pending debit now counts against the payer's liquidity.
        self._transition(record, _RESERVED, now_ns)
        payer_account.daily_add(record.day, amount_minor)
        if original is not None:
            original.returned_minor += amount_minor
            record.original = original
        record.fee_minor = fee
        record.payer_account = payer_account
        deadline_ns = now_ns + rules.payee_timeout_ms * _NS_PER_MS
        record.deadline_ns = deadline_ns if deadline_ns < record.expires_at_ns else record.expires_at_ns
        record.forwarded = True
        self._in_flight += 1
        self._timers[record.seq] = record
        self._transition(record, _FORWARDED, now_ns)
        return [
            Send(participant_id=record.payee_participant_id, message=self._credit_request(record)),
            ArmTimer(timer_id=record.seq, deadline_ns=record.deadline_ns),
        ]

    def _reject_at_admission(self, record: TransferRecord, result: Result,
                             now_ns: int) -> list[Command]:
        """A recorded refusal: nothing reached the ledger; only the payer hears of it."""
        self._finish(record, _REJECTED, result, now_ns)
        return [Send(participant_id=record.payer_participant_id, message=record.outcome)]

    def _credit_request(self, record: TransferRecord) -> CreditRequest:
        request = record.event.request
        if type(request) is TransferRequest:
            alias, purpose, return_of = request.payee, request.purpose, None
            end_to_end_id = request.end_to_end_id
        else:  # a return: its reason travels as the purpose
            alias, purpose, return_of = None, request.reason, request.original
            end_to_end_id = ""
        return CreditRequest(
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
            payee_account_ref=record.payee_account_ref,
            amount_minor=record.amount_minor,
            currency=record.currency,
            expires_at_ns=record.deadline_ns,
            payee_alias=alias,
            end_to_end_id=end_to_end_id,
            purpose=purpose,
            return_of=return_of,
            request_to_pay_id=record.request_to_pay_id,
        )

    def _on_payee_answer(self, event: PayeeAnswered, now_ns: int) -> list[Command]:
        answer = event.answer
        sender = event.payee_participant_id
        transfer_id = answer.transfer_id
        if not id_valid(transfer_id):
            return [_refuse(sender, "payee_answer", answer.payer_participant_id, transfer_id,
                            Result.ID_INVALID)]
        record = self._transfers.get((answer.payer_participant_id, transfer_id))
        if record is None:
            return [ConsultStore(participant_id=sender,
                                 payer_participant_id=answer.payer_participant_id,
                                 transfer_id=transfer_id,
                                 result_if_absent=Result.TRANSFER_NOT_FOUND)]
        if record.payee_participant_id != sender or not record.forwarded:
            raise ProtocolError(sender, Result.TRANSFER_NOT_FOUND, 404,
                                "answer to a transfer this participant was never sent")
        if record.state != _FORWARDED:
            # A duplicate or late answer: harmless, the final state is repeated.
            return [Send(participant_id=sender, message=record.outcome)]
        if now_ns >= record.deadline_ns:
            # The deadline passed before the answer (its timer has not fired yet): expire
            # now, so the answer is the same whichever of the two the shell fed first.
            return self._expire(record, now_ns, cancel_timer=True)
        if answer.accepted:
            return self._commit(record, now_ns)
        self._ledger_void(record, now_ns)
        record.reason = answer.reason
        self._finish(record, _REJECTED, Result.PAYEE_REJECTED, now_ns)
        return self._tell_both(record, cancel_timer=True)

    def _tell_both(self, record: TransferRecord, cancel_timer: bool) -> list[Command]:
        """The final outcome, one object for both parties (and the timer's end)."""
        outcome = record.outcome
        commands: list[Command] = [
            Send(participant_id=record.payer_participant_id, message=outcome),
            Send(participant_id=record.payee_participant_id, message=outcome),
        ]
        if cancel_timer:
            commands.insert(0, CancelTimer(timer_id=record.seq))
        return commands

    def _commit(self, record: TransferRecord, now_ns: int) -> list[Command]:
        self._ledger_post(record, now_ns)
        self._finish(record, _COMMITTED, _OK, now_ns)
        commands = self._tell_both(record, cancel_timer=True)
        event = record.event
        if type(event) is TransferRequested:
            request = event.request
            if request.payee is not None and request.payer_user_ref:
                commands.append(RefundLookupToken(
                    payer_participant_id=record.payer_participant_id,
                    payer_user_ref=request.payer_user_ref,
                    payee_alias=request.payee,
                ))
        return commands

    def _expire(self, record: TransferRecord, now_ns: int, cancel_timer: bool) -> list[Command]:
        self._ledger_void(record, now_ns)
        self._finish(record, _EXPIRED, Result.TRANSFER_EXPIRED, now_ns)
        return self._tell_both(record, cancel_timer)

    def _finish(self, record: TransferRecord, state: TransferState, result: Result,
                now_ns: int) -> None:
        """Enter a final state: the one place that does, so a transfer ends exactly once."""
        assert record.state not in (_COMMITTED, _REJECTED, _EXPIRED), "final twice"
        if record.forwarded:
            assert record.state == _FORWARDED
            self._in_flight -= 1
            del self._timers[record.seq]
        record.state = state
        record.result = result
        record.decided_at_ns = now_ns
        # Needed only to void an in-flight reserve; dropping them keeps final records small
        # and identical to ones restored from a snapshot.
        record.payer_account = None
        record.original = None
        record.outcome = TransferOutcome(
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
            state=state,
            result=result,
            payee_participant_id=record.payee_participant_id,
            amount_minor=record.amount_minor,
            fee_minor=record.fee_minor,
            currency=record.currency,
            decided_at_ns=now_ns,
            reason=record.reason,
        )
        self._transfers_final.append((record.payer_participant_id, record.transfer_id))
        if self._observer is not None:
            self._observer(record.payer_participant_id, record.transfer_id, state, now_ns)

    def _transition(self, record: TransferRecord, state: TransferState, now_ns: int) -> None:
        record.state = state
        if self._observer is not None:
            self._observer(record.payer_participant_id, record.transfer_id, state, now_ns)

    def _answer_resend(self, record: TransferRecord, event, sender: int) -> list[Command]:
        result = _compare_requests(record.event, event)
        if result is not _OK:
            request_type = "transfer" if type(event) is TransferRequested else "return"
            return [_refuse(sender, request_type, sender, record.transfer_id, result)]
        return [Send(participant_id=sender, message=self._current_outcome(record))]

    def _current_outcome(self, record: TransferRecord) -> TransferOutcome:
        if record.outcome is not None:
            return record.outcome
        return TransferOutcome(
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
            state=record.state,
            result=_OK,
            payee_participant_id=record.payee_participant_id,
            amount_minor=record.amount_minor,
            fee_minor=record.fee_minor,
            currency=record.currency,
        )

    def _on_status(self, event: StatusQueried, now_ns: int) -> list[Command]:
        query = event.query
        sender = event.participant_id
        if not id_valid(query.transfer_id):
            return [_refuse(sender, "status_query", query.payer_participant_id,
                            query.transfer_id, Result.ID_INVALID)]
        record = self._transfers.get((query.payer_participant_id, query.transfer_id))
        if record is None:
            return [ConsultStore(participant_id=sender,
                                 payer_participant_id=query.payer_participant_id,
                                 transfer_id=query.transfer_id,
                                 result_if_absent=Result.TRANSFER_NOT_FOUND)]
        if sender != record.payer_participant_id and not (
            record.forwarded and sender == record.payee_participant_id
        ):
            # Not a party: answer as if it did not exist, so ids cannot be probed.
            return [_refuse(sender, "status_query", query.payer_participant_id,
                            query.transfer_id, Result.TRANSFER_NOT_FOUND)]
        return [Send(participant_id=sender, message=self._current_outcome(record))]

    def _on_timer(self, event: TimerFired, now_ns: int) -> list[Command]:
        record = self._timers.get(event.timer_id)
        if record is None:
            return []  # cancelled, already final, or a duplicate firing after a restart
        if type(record) is TransferRecord:
            if now_ns < record.deadline_ns:
                return [ArmTimer(timer_id=record.seq, deadline_ns=record.deadline_ns)]
            return self._expire(record, now_ns, cancel_timer=False)
        request = record.event.request
        if now_ns < request.expires_at_ns:
            return [ArmTimer(timer_id=record.seq, deadline_ns=request.expires_at_ns)]
        return self._request_finish(record, RequestToPayState.EXPIRED, Result.REQUEST_EXPIRED,
                                    notify_payer=True)

    # -- ledger legs -------------------------------------------------------------------

    def _ledger_reserve(self, record: TransferRecord, payer_account: ParticipantAccount,
                        payee_account: ParticipantAccount, currency: CurrencyState, fee: int,
                        now_ns: int) -> Result:
        """OK, or the refusal the ledger's answer means (`_RESERVE_REFUSALS`)."""
        base = record.seq << _SHIFT
        code = _CODE_PAYMENT if type(record.event) is TransferRequested else _CODE_RETURN
        if not fee:
            result = self.ledger.create_transfer(
                base | _LEG_RESERVE, payer_account.account_id, payee_account.account_id,
                record.amount_minor, 0, record.seq, record.payer_participant_id, 0,
                currency.ledger_id, code, _PENDING, now_ns,
            )
            if result == _RESULT_OK:
                return _OK
            # Nothing else can refuse a reserve: ids are fresh, accounts exist, and
            # pending_max covers in_flight_max (asserted at construction).
            refusal = _RESERVE_REFUSALS[0].get(result)
            assert refusal is not None, result
            return refusal
        pack = TRANSFER_STRUCT.pack_into
        buffer = self._buffer
        pack(buffer, 0, base | _LEG_RESERVE, payer_account.account_id, payee_account.account_id,
             record.amount_minor, 0, record.seq, 0, record.payer_participant_id, 0,
             currency.ledger_id, code, _PENDING | _LINKED)
        pack(buffer, TRANSFER_STRUCT.size, base | _LEG_RESERVE_FEE, payer_account.account_id,
             currency.hub_fees_account_id, fee, 0, record.seq, 0,
             record.payer_participant_id, 0, currency.ledger_id, _CODE_FEE, _PENDING)
        failures = self.ledger.create_transfers(buffer, now_ns)
        if not failures:
            return _OK
        # A linked pair fails whole: one leg names the cause, the other LINKED_EVENT_FAILED.
        causes = [(index, result) for index, result in failures if result != _LINKED_EVENT_FAILED]
        assert len(failures) == 2 and len(causes) == 1, failures
        index, result = causes[0]
        refusal = _RESERVE_REFUSALS[index].get(result)
        assert refusal is not None, failures
        return refusal

    def _ledger_finish(self, record: TransferRecord, leg: int, fee_leg: int, flag: int,
                       now_ns: int) -> None:
        base = record.seq << _SHIFT
        if not record.fee_minor:
            result = self.ledger.create_transfer(
                base | leg, 0, 0, 0, base | _LEG_RESERVE, record.seq, record.payer_participant_id,
                0, 0, 0, flag, now_ns,
            )
            # The core posts or voids each reserve exactly once and sets no ledger timeout.
            assert result == _RESULT_OK, result
            return
        pack = TRANSFER_STRUCT.pack_into
        buffer = self._buffer
        pack(buffer, 0, base | leg, 0, 0, 0, base | _LEG_RESERVE, record.seq, 0,
             record.payer_participant_id, 0, 0, 0, flag | _LINKED)
        pack(buffer, TRANSFER_STRUCT.size, base | fee_leg, 0, 0, 0, base | _LEG_RESERVE_FEE,
             record.seq, 0, record.payer_participant_id, 0, 0, 0, flag)
        failures = self.ledger.create_transfers(buffer, now_ns)
        assert not failures, failures

    def _ledger_post(self, record: TransferRecord, now_ns: int) -> None:
        self._ledger_finish(record, _LEG_POST, _LEG_POST_FEE, _POST, now_ns)

    def _ledger_void(self, record: TransferRecord, now_ns: int) -> None:
        self._ledger_finish(record, _LEG_VOID, _LEG_VOID_FEE, _VOID, now_ns)
        record.payer_account.daily_release(record.day, record.amount_minor)
        if record.original is not None:
            record.original.returned_minor -= record.amount_minor
            assert record.original.returned_minor >= 0

    # -- request-to-pay ----------------------------------------------------------------

    def _on_request_to_pay(self, event: RequestToPayRequested, now_ns: int) -> list[Command]:
        request = event.request
        payee_id = event.payee_participant_id
        request_id = request.request_id
        if not id_valid(request_id):
            return [_refuse(payee_id, "request_to_pay", payee_id, request_id, Result.ID_INVALID)]
        key = (payee_id, request_id)
        record = self._requests.get(key)
        if record is not None:
            result = _compare_requests(record.event, event)
            if result is not _OK:
                return [_refuse(payee_id, "request_to_pay", payee_id, request_id, result)]
            return [Send(participant_id=payee_id, message=self._request_outcome(record))]
        result = self._check_request(request.amount_minor, request.expires_at_ns, now_ns)
        if result is Result.TRANSFER_EXPIRED:
            result = Result.REQUEST_EXPIRED
        if result is _OK:
            result = self._check_request_parties(event)
        if result is not _OK:
            return [_refuse(payee_id, "request_to_pay", payee_id, request_id, result)]
        if not self._room_for_request(now_ns):
            return [_refuse(payee_id, "request_to_pay", payee_id, request_id, Result.SERVER_BUSY)]
        self._seq += 1
        record = RequestToPayRecord(
            seq=self._seq,
            event=event,
            payee_participant_id=payee_id,
            request_id=request_id,
            payer_participant_id=event.payer_participant_id,
        )
        self._requests[key] = record
        payer = self._participants[event.payer_participant_id]
        payee = self._participants[payee_id]
        currency = self._currencies[request.currency]
        result = _OK
        if payer.status != ParticipantStatus.ACTIVE:
            result = Result.PAYER_BLOCKED
        elif payee.status != ParticipantStatus.ACTIVE:
            result = Result.PAYEE_BLOCKED
        elif currency.currency not in payer.accounts:
            result = Result.PAYER_CURRENCY_NOT_ENABLED
        elif currency.currency not in payee.accounts:
            result = Result.PAYEE_CURRENCY_NOT_ENABLED
        elif request.amount_minor > currency.rules.transfer_max_minor:
            result = Result.AMOUNT_ABOVE_TRANSFER_MAX
        if result is not _OK:
            # Recorded, never shown to the payer: a resend gets the same refusal.
            record.state = RequestToPayState.REJECTED
            record.result = result
            record.outcome = self._request_outcome(record)
            self._requests_final.append(key)
            return [Send(participant_id=payee_id, message=record.outcome)]
        self._timers[record.seq] = record
        return [
            Send(participant_id=record.payer_participant_id,
                 message=self._request_to_pay_notice(record)),
            ArmTimer(timer_id=record.seq, deadline_ns=request.expires_at_ns),
            Send(participant_id=payee_id, message=self._request_outcome(record)),
        ]

    def _check_request_parties(self, event: RequestToPayRequested) -> Result:
        payer = self._participants.get(event.payer_participant_id)
        if payer is None:
            return Result.PAYER_NOT_FOUND
        payee = self._participants.get(event.payee_participant_id)
        if payee is None:
            return Result.PAYEE_NOT_FOUND
        if payer is payee:
            return Result.PAYER_AND_PAYEE_SAME
        if event.request.currency not in self._currencies:
            return Result.CURRENCY_NOT_SUPPORTED
        return _OK

    def _room_for_request(self, now_ns: int) -> bool:
        requests = self._requests
        if len(requests) < self.config.requests_to_pay_retained_max:
            return True
        final = self._requests_final
        if not final or requests[final[0]].event.request.expires_at_ns > now_ns:
            return False
        del requests[final.popleft()]
        return True

    def _request_to_pay_notice(self, record: RequestToPayRecord) -> RequestToPayNotice:
        request = record.event.request
        return RequestToPayNotice(
            payee_participant_id=record.payee_participant_id,
            request_id=record.request_id,
            payer_account_ref=record.event.payer_account_ref,
            amount_minor=request.amount_minor,
            currency=request.currency,
            expires_at_ns=request.expires_at_ns,
            end_to_end_id=request.end_to_end_id,
            purpose=request.purpose,
        )

    def _request_outcome(self, record: RequestToPayRecord) -> RequestToPayOutcome:
        if record.outcome is not None:
            return record.outcome
        # Built fresh while OPEN; the final one is built once and kept.
        return RequestToPayOutcome(
            payee_participant_id=record.payee_participant_id,
            request_id=record.request_id,
            state=record.state,
            result=record.result,
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
        )

    def _request_finish(self, record: RequestToPayRecord, state: RequestToPayState,
                        result: Result, notify_payer: bool,
                        cancel_timer: bool = False) -> list[Command]:
        assert record.state == RequestToPayState.OPEN
        del self._timers[record.seq]
        record.state = state
        record.result = result
        record.outcome = self._request_outcome(record)
        self._requests_final.append((record.payee_participant_id, record.request_id))
        commands: list[Command] = [
            Send(participant_id=record.payee_participant_id, message=record.outcome)
        ]
        if notify_payer:
            commands.append(Send(participant_id=record.payer_participant_id,
                                 message=record.outcome))
        if cancel_timer:
            commands.insert(0, CancelTimer(timer_id=record.seq))
        return commands

    def _on_request_to_pay_decision(self, event: RequestToPayDecided,
                                    now_ns: int) -> list[Command]:
        decision = event.decision
        sender = event.payer_participant_id
        request_id = decision.request_id
        scope = decision.payee_participant_id
        transfer_id = decision.transfer_id
        if not id_valid(request_id) or (decision.approved and not id_valid(transfer_id)):
            # Approving names the new transfer it creates: an id like any other (empty only
            # when declining).
            return [_refuse(sender, "request_to_pay_decision", scope, request_id,
                            Result.ID_INVALID)]
        record = self._requests.get((scope, request_id))
        if record is None or record.payer_participant_id != sender or (
            record.state == RequestToPayState.REJECTED
        ):
            # Unknown, or never shown to this participant: nothing to learn from the answer.
            return [_refuse(sender, "request_to_pay_decision", scope, request_id,
                            Result.REQUEST_NOT_FOUND)]
        if record.state != RequestToPayState.OPEN:
            return [Send(participant_id=sender, message=self._request_outcome(record))]
        if now_ns >= record.event.request.expires_at_ns:
            return self._request_finish(record, RequestToPayState.EXPIRED, Result.REQUEST_EXPIRED,
                                        notify_payer=True, cancel_timer=True)
        if not decision.approved:
            return self._request_finish(record, RequestToPayState.DECLINED,
                                        Result.PAYER_REJECTED_REQUEST, notify_payer=True,
                                        cancel_timer=True)
        rtp = record.event.request
        transfer = TransferRequested(
            payer_participant_id=sender,
            payee_participant_id=record.payee_participant_id,
            payee_account_ref=rtp.payee_account_ref,
            request=TransferRequest(
                transfer_id=transfer_id,
                payee=None,
                amount_minor=rtp.amount_minor,
                currency=rtp.currency,
                expires_at_ns=decision.expires_at_ns,
                end_to_end_id=rtp.end_to_end_id,
                purpose=rtp.purpose,
                payer_account_ref=decision.payer_account_ref,
                payer_user_ref=decision.payer_user_ref,
            ),
        )
        key = (sender, transfer_id)
        paid = self._transfers.get(key)
        if paid is not None:
            # An approval pays only with the new transfer it creates. The id is taken: by
            # this same approval earlier (its transfer was refused, or the request would not
            # be open) it is a resend, answered as before; by anything else (an earlier
            # transfer, a return, a refused transfer, another request's payment) it is
            # refused like any id reused with a different body. The request stays open.
            result = _compare_requests(paid.event, transfer)
            if result is _OK and paid.request_to_pay_id != request_id:
                result = Result.EXISTS_WITH_DIFFERENT_BODY
            if result is not _OK:
                return [_refuse(sender, "transfer", sender, transfer_id, result)]
            return [Send(participant_id=sender, message=self._current_outcome(paid))]
        commands = self._on_transfer(transfer, now_ns, request_id)
        paid = self._transfers.get(key)  # created by this step, if recorded at all
        if paid is None or not paid.forwarded:
            # The transfer was refused: the request stays open; the payer may approve again
            # (e.g. after funding) under a new transfer id.
            return commands
        record.transfer_id = transfer_id
        return self._request_finish(record, RequestToPayState.APPROVED, _OK,
                                    notify_payer=False, cancel_timer=True) + commands

    # -- operator requests ---------------------------------------------------------------

    def _admin(self, event, now_ns: int, act) -> list[Command]:
        """Validation and idempotency for every operator request, then `act(event, now_ns)`
        -> (Result, detail), which changes nothing unless it answers OK. Operator requests
        are rare: they are re-validated in full (the core may be fed Structs that were
        built, not decoded). Succeeded request ids are remembered for the last
        `admin_requests_retained_max` requests: a resend answers the same."""
        request_id = event.request_id
        try:
            msgspec.convert(msgspec.to_builtins(event), type(event))
        except msgspec.ValidationError as error:
            return [AdminAnswer(request_id=str(request_id)[: limits.ID_LENGTH_MAX],
                                result=Result.VALIDATION_ERROR, detail=str(error)[:140])]
        seen = self._admin_seen.get(request_id)
        if seen is not None:
            earlier, answer = seen
            if earlier != event:
                return [AdminAnswer(request_id=request_id,
                                    result=Result.EXISTS_WITH_DIFFERENT_BODY)]
            return [answer]
        result, detail = act(event, now_ns)
        answer = AdminAnswer(request_id=request_id, result=result, detail=detail)
        if result is not _OK:
            # A refused request changed nothing and is not remembered: the operator may fix
            # the cause and retry under the same id.
            return [answer]
        self._admin_seen[request_id] = (event, answer)
        self._admin_order.append(request_id)
        if len(self._admin_order) > self.config.admin_requests_retained_max:
            del self._admin_seen[self._admin_order.popleft()]
        return [answer]

    def _admin_act(self, act):
        """The handler for an operator request whose change is `act`: one event type per
        `act` would only repeat `_admin` (suspend and resume share `_set_status`, deposit
        and withdrawal share `_move_funds`)."""
        return lambda event, now_ns: self._admin(event, now_ns, act)

    def _currency_added(self, event: CurrencyAdded, now_ns: int) -> tuple[Result, str]:
        if event.currency in self._currencies or event.ledger_id in self._ledger_ids:
            return Result.ADMIN_CURRENCY_EXISTS, ""
        if len(self._currencies) >= limits.CURRENCIES_MAX:
            return Result.ADMIN_TABLE_FULL, "currencies"
        state = CurrencyState.build(event.currency, event.ledger_id, event.settlement_model,
                                    event.rules)
        codes = state.hub_account_codes()
        accounts = [
            Account(id=account_id(event.ledger_id, HUB_PARTICIPANT_ID, code),
                    ledger=event.ledger_id, code=code,
                    flags=int(AccountFlags.LINKED) if index < len(codes) - 1 else 0)
            for index, code in enumerate(codes)
        ]
        if not self._create_accounts(accounts, now_ns):
            return Result.ADMIN_TABLE_FULL, "ledger accounts"
        self._currencies[event.currency] = state
        self._ledger_ids.add(event.ledger_id)
        return _OK, ""

    def _admin_rules_changed(self, event: SchemeRulesChanged, now_ns: int) -> list[Command]:
        def act(event: SchemeRulesChanged, now_ns: int) -> tuple[Result, str]:
            currency = self._currencies.get(event.currency)
            if currency is None:
                return Result.ADMIN_CURRENCY_NOT_FOUND, ""
            currency.rules = event.rules
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _admin_participant_added(self, event: ParticipantAdded, now_ns: int) -> list[Command]:
        def act(event: ParticipantAdded, now_ns: int) -> tuple[Result, str]:
            if event.participant_id in self._participants or (
                event.name in self._participant_names
            ):
                return Result.ADMIN_PARTICIPANT_EXISTS, ""
            if len(self._participants) >= limits.PARTICIPANTS_MAX:
                return Result.ADMIN_TABLE_FULL, "participants"
            self._participants[event.participant_id] = Participant(
                participant_id=event.participant_id, name=event.name
            )
            self._participant_names[event.name] = event.participant_id
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _admin_account_opened(self, event: ParticipantAccountOpened,
                              now_ns: int) -> list[Command]:
        def act(event: ParticipantAccountOpened, now_ns: int) -> tuple[Result, str]:
            currency = self._currencies.get(event.currency)
            if currency is None:
                return Result.ADMIN_CURRENCY_NOT_FOUND, ""
            participant = self._participants.get(event.participant_id)
            if participant is None:
                return Result.ADMIN_PARTICIPANT_NOT_FOUND, ""
            if event.currency in participant.accounts:
                return Result.ADMIN_ACCOUNT_EXISTS, ""
            new_id = account_id(currency.ledger_id, participant.participant_id,
                                currency.participant_code)
            account = Account(
                id=new_id, ledger=currency.ledger_id, code=currency.participant_code,
                flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
                user_data_32=participant.participant_id,
            )
            if not self._create_accounts([account], now_ns):
                return Result.ADMIN_TABLE_FULL, "ledger accounts"
            participant.accounts[event.currency] = ParticipantAccount(
                account_id=new_id, currency=currency
            )
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _set_status(self, event, now_ns: int) -> tuple[Result, str]:
        participant = self._participants.get(event.participant_id)
        if participant is None:
            return Result.ADMIN_PARTICIPANT_NOT_FOUND, ""
        participant.status = (
            ParticipantStatus.SUSPENDED if type(event) is ParticipantSuspended
            else ParticipantStatus.ACTIVE
        )
        return _OK, ""

    def _participant_account(
        self, event, model: SettlementModel | None = None,
    ) -> tuple[Result, str, ParticipantAccount | None]:
        """(result, detail, account) for the account an operator request names; with
        `model`, only in a currency settled that way (funding is for prefunded RTGS, caps
        for deferred net)."""
        if event.currency not in self._currencies:
            return Result.ADMIN_CURRENCY_NOT_FOUND, "", None
        participant = self._participants.get(event.participant_id)
        if participant is None:
            return Result.ADMIN_PARTICIPANT_NOT_FOUND, "", None
        account = participant.accounts.get(event.currency)
        if account is None:
            return Result.ADMIN_ACCOUNT_NOT_FOUND, "", None
        if model is not None and account.currency.settlement_model != model:
            use = "NetDebitCapSet" if model == SettlementModel.PREFUNDED_RTGS else "FundsDeposited"
            return Result.ADMIN_SETTLEMENT_MODEL_MISMATCH, f"use {use}", None
        return _OK, "", account

    def _admin_daily_limit(self, event: ParticipantDailyLimitSet, now_ns: int) -> list[Command]:
        def act(event: ParticipantDailyLimitSet, now_ns: int) -> tuple[Result, str]:
            result, detail, account = self._participant_account(event)
            if account is None:
                return result, detail
            account.daily_total_max_minor = event.daily_total_max_minor
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _move_funds(self, event, now_ns: int) -> tuple[Result, str]:
        result, detail, account = self._participant_account(event, SettlementModel.PREFUNDED_RTGS)
        if account is None:
            return result, detail
        currency = account.currency
        if type(event) is FundsDeposited:
            return self._single_phase(currency.hub_liquidity_account_id, account.account_id,
                                      event.amount_minor, event.participant_id, currency,
                                      TransferCode.DEPOSIT, now_ns)
        if event.amount_minor > self._available_minor(account):
            return Result.ADMIN_FUNDS_INSUFFICIENT, ""
        return self._single_phase(account.account_id, currency.hub_liquidity_account_id,
                                  event.amount_minor, event.participant_id, currency,
                                  TransferCode.WITHDRAWAL, now_ns)

    def _available_minor(self, account: ParticipantAccount) -> int:
        """What the ledger would still let the account be debited (checked before asking the
        ledger, so a refused operator request leaves no failed transfer behind)."""
        (balances,) = self.ledger.lookup_accounts([account.account_id])
        return balances.credits_posted - balances.debits_posted - balances.debits_pending

    def _admin_cap(self, event: NetDebitCapSet, now_ns: int) -> list[Command]:
        def act(event: NetDebitCapSet, now_ns: int) -> tuple[Result, str]:
            result, detail, account = self._participant_account(event,
                                                                 SettlementModel.DEFERRED_NET)
            if account is None:
                return result, detail
            currency = account.currency
            delta = event.cap_minor - account.cap_minor
            if delta < 0 and -delta > self._available_minor(account):
                return Result.ADMIN_CAP_BELOW_POSITION, ""
            result, detail = _OK, ""
            if delta > 0:
                result, detail = self._single_phase(
                    currency.hub_liquidity_account_id, account.account_id, delta,
                    event.participant_id, currency, TransferCode.CAP_RAISE, now_ns)
            elif delta < 0:
                result, detail = self._single_phase(
                    account.account_id, currency.hub_liquidity_account_id, -delta,
                    event.participant_id, currency, TransferCode.CAP_LOWER, now_ns)
            if result is not _OK:
                return result, detail
            account.cap_minor = event.cap_minor
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _single_phase(self, debit: int, credit: int, amount_minor: int, participant_id: int,
                      currency: CurrencyState, code: TransferCode,
                      now_ns: int) -> tuple[Result, str]:
        """An operator's ledger transfer, already checked to fit the debited participant's
        funds (see `_available_minor`). Refused with ADMIN_ACCOUNT_OVERFLOW if either
        account's totals would pass 2**64-1 (they only grow: repeated deposits or cap
        changes get there), checked here before the ledger is asked, so a refusal leaves
        no failed ledger transfer or used sequence number behind. The ledger then has no
        reason left to refuse: any other answer is a core bug."""
        debit_balance, credit_balance = self.ledger.lookup_accounts([debit, credit])
        for side, account, total in (
            ("debits", debit_balance, debit_balance.debits_pending + debit_balance.debits_posted),
            ("credits", credit_balance,
             credit_balance.credits_pending + credit_balance.credits_posted),
        ):
            if total + amount_minor > U64_MAX:
                owner = ("hub" if account.id == currency.hub_liquidity_account_id
                         else f"participant {participant_id}")
                return Result.ADMIN_ACCOUNT_OVERFLOW, (
                    f"{side} of the {owner} {currency.currency} account would pass 2**64-1")
        self._seq += 1
        assert self._seq <= limits.SEQUENCE_MAX
        result = self.ledger.create_transfer(
            (self._seq << _SHIFT) | Leg.RESERVE, debit, credit, amount_minor, 0, self._seq,
            participant_id, 0, currency.ledger_id, code, 0, now_ns,
        )
        assert result == _RESULT_OK, result
        return _OK, ""

    def _create_accounts(self, accounts: list[Account], now_ns: int) -> bool:
        # Checked first so that a refusal leaves the ledger untouched (a failed batch would
        # still consume timestamps).
        if self.ledger.account_count + len(accounts) > self.ledger.config.accounts_max:
            return False
        failures = self.ledger.create_accounts(pack_accounts(accounts), now_ns)
        assert not failures, failures  # ids are derived from unique (ledger, participant, code)
        return True


def _refuse(participant_id: int, request_type: str, scope_participant_id: int, id_: str,
            result: Result) -> Send:
    return Send(participant_id=participant_id, message=Refused(
        request_type=request_type, scope_participant_id=scope_participant_id, id=id_,
        result=result,
    ))


def _compare_requests(earlier, later) -> Result:
    """Same id, same body -> OK (answer as before); otherwise the first difference. Only the
    participant's own message is compared, not what the shell added (a payee the directory
    now resolves elsewhere does not turn a resend into a conflict)."""
    if type(earlier) is not type(later):
        return Result.EXISTS_WITH_DIFFERENT_BODY
    a = earlier.request
    b = later.request
    if a == b:
        return _OK
    party = {TransferRequest: "payee", ReturnRequest: "original", RequestToPay: "payer"}[type(a)]
    if getattr(a, party) != getattr(b, party):
        return Result.EXISTS_WITH_DIFFERENT_PARTY
    if a.amount_minor != b.amount_minor:
        return Result.EXISTS_WITH_DIFFERENT_AMOUNT
    if type(a) is not ReturnRequest and a.currency != b.currency:
        return Result.EXISTS_WITH_DIFFERENT_CURRENCY
    return Result.EXISTS_WITH_DIFFERENT_BODY
