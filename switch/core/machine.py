"""The switch core: a deterministic state machine from events to commands.

`SwitchCore(config, ledger).step(event, now_ns) -> list[Command]` decides every transfer,
return, request-to-pay and operator request. It owns the participant and transfer state and
an in-process ledger (`ledger.Ledger`), which it calls synchronously: the ledger is sans-I/O
too. Given the same events with the same `now_ns`, a fresh core on a fresh ledger reaches
the identical state (`replay`), which is how the server recovers from its journal.

One class over one shared state, written by flow, a module each:

    transfers.py          TransferFlow       admission, reserve, forward, answer, expiry, status
    returns.py            ReturnFlow         a payee sends (part of) a committed transfer back
    requests_to_pay.py    RequestToPayFlow   a payee asks, the payer approves or declines
    operator.py           OperatorFlow       currencies, participants, limits, funds, caps
    settlement.py         SettlementFlow     settlement windows, net positions, postings
    snapshots.py          SnapshotFlow       the whole state as bytes, and back
    views.py              CoreViews          read-only views, invariants
    records.py            the records, their state graphs (asserted on every transition)
    legs.py               the ledger legs, built by keyword-only builders

This module holds the state itself, the dispatch of events to flows, replay and recovery.
It must never do I/O, read the clock, start threads or raise for a business outcome: those
are `Result` values in commands. It raises `ProtocolError` (state unchanged) for a peer that
breaks the protocol and `AssertionError` for its own bugs. See docs/core.md.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Iterable

from ledger.types import TRANSFER_STRUCT
from switch.core import limits
from switch.core.config import CoreConfig
from switch.core.messages import (
    AdminAnswer,
    ArmTimer,
    AuditAnchored,
    Command,
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
    PayeeAnswered,
    RequestToPayDecided,
    RequestToPayRequested,
    ReturnRequested,
    SchemeRulesChanged,
    SettlementAborted,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    Send,
    StatusQueried,
    TimerFired,
    TransferRequested,
)
from switch.core.operator import OperatorFlow
from switch.core.participants import CurrencyState, Participant
from switch.core.records import RequestToPayRecord, TransferRecord
from switch.core.requests_to_pay import RequestToPayFlow
from switch.core.results import ProtocolError, TransferState
from switch.core.returns import ReturnFlow
from switch.core.settlement import SettlementFlow
from switch.core.snapshots import CoreSnapshot, SnapshotFlow
from switch.core.transfers import TransferFlow
from switch.core.views import CoreViews

__all__ = ["CoreSnapshot", "Observer", "RequestToPayRecord", "SwitchCore", "TransferRecord"]

_NS_PER_MS = limits.NS_PER_MS
_COMMANDS_PER_STEP_MAX = limits.COMMANDS_PER_STEP_MAX

Observer = Callable[[int, str, TransferState, int], None]


class SwitchCore(TransferFlow, ReturnFlow, RequestToPayFlow, OperatorFlow, SettlementFlow,
                 SnapshotFlow, CoreViews):
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
        # An observer marked `finals_only` (an attribute set to True) is told of final states
        # only: the server's archive and entry log ignore the others, and a call per
        # intermediate transition costs a live switch ~3 % of its deciding thread.
        self._transition_observer = (None if getattr(observer, "finals_only", False)
                                     else observer)
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
        self._audit_anchor: tuple[int, str] | None = None
        self._buffer = bytearray(2 * TRANSFER_STRUCT.size)  # a linked payment + fee pair
        self._init_settlement()
        self._handlers = {
            TransferRequested: self._on_transfer,
            PayeeAnswered: self._on_payee_answer,
            TimerFired: self._on_timer,
            StatusQueried: self._on_status,
            ReturnRequested: self._on_return,
            RequestToPayRequested: self._on_request_to_pay,
            RequestToPayDecided: self._on_request_to_pay_decision,
            CurrencyAdded: self._admin_act(self._currency_added_with_window),
            SchemeRulesChanged: self._admin_rules_changed,
            ParticipantAdded: self._admin_participant_added,
            ParticipantAccountOpened: self._admin_account_opened,
            ParticipantSuspended: self._admin_act(self._set_status),
            ParticipantResumed: self._admin_act(self._set_status),
            ParticipantDailyLimitSet: self._admin_daily_limit,
            FundsDeposited: self._admin_act(self._move_funds),
            FundsWithdrawn: self._admin_act(self._move_funds),
            NetDebitCapSet: self._admin_cap,
            AuditAnchored: self._admin_act(self._anchor_audit),
            SettlementScheduleSet: self._admin_settlement_schedule,
            SettlementWindowClosed: self._admin_window_close,
            SettlementConfirmed: self._admin_settlement_confirmed,
            SettlementAborted: self._admin_settlement_aborted,
        }

    # -- the interface -----------------------------------------------------------------

    def step(self, event: Event, now_ns: int) -> list[Command]:
        """Decide one event. `now_ns` is UTC nanoseconds; it is clamped so it never goes
        back (a replay sees the same clamped values, so decisions are identical). A status
        query (never journaled) and a step that raises ProtocolError (not acted on) leave
        the core's clock where it was: only journaled events move it, so a snapshot equals
        a replay of the journal, byte for byte."""
        if now_ns < self._now_ns:
            now_ns = self._now_ns
        event_type = type(event)
        commands = self._handlers[event_type](event, now_ns)
        if event_type is not StatusQueried:
            self._now_ns = now_ns
        assert len(commands) <= _COMMANDS_PER_STEP_MAX
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
        commands.extend(self._settlement_recovery_commands())  # the currencies' cut-offs
        return commands
