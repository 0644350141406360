"""The settlement flow of the switch core: settlement windows per currency, the net position
of every participant when one closes, and the ledger postings that settle it.

Windows (`WindowRecord`) move along `WINDOW_NEXT` (asserted on every transition):

    OPEN ─▶ CLOSED ─┬─▶ PENDING_SETTLEMENT ─┬─▶ SETTLED   the RTGS settled it (confirmed)
                    │                        └─▶ ABORTED   given up: positions roll over
                    └─▶ SETTLED   nothing to settle (prefunded gross, or every net zero)

Each currency has exactly one OPEN window at every instant: a close opens the next window
in the same step, so a committed transfer always belongs to exactly one window (the one
open when it committed) and closing never pauses traffic. Windows close on the currency's
schedule (`SettlementScheduleSet`; the core arms a timer for the next cut-off and closes
when it fires) or by an operator (`SettlementWindowClosed`).

What a close costs is O(participants), never O(transfers). A participant's net position in
a window is the change of its account's posted balance over the window, less the postings
that were not transfers (operator funding and caps, settlement postings, all recorded as
`Movement`s when they happen), plus what aborted windows rolled into it: the ledger keeps
those balances up to date as transfers commit, so a close reads one balance per
participant. Per committed transfer the core only counts it and adds its amount to the open
window's bilateral matrix (`TransferFlow._commit`: one counter, one dictionary update); the
window's volume comes from the ledger's debit totals the same way as the net positions.
Sum over participants of net + the hub's fees of the window = 0, exactly (asserted).

Deferred net: once the RTGS has settled a window (`SettlementConfirmed`), one ledger
transfer per participant with a net position moves it between its position account and
HUB_SETTLEMENT, all in one step: a net debtor is credited what it paid in (its room under
its cap is restored), a net creditor is debited what the RTGS paid it, as far as its account
allows — what it has already spent again is owed as a settlement *due*, collected as soon
as its account has the room (at every close and confirmation of the currency). The
postings are single-phase and checked to fit before any is made, so a confirmation posts
all or nothing, and they take no room in the ledger's pending table (which stays the
in-flight transfers'). `SettlementAborted` rolls the window's positions, matrix and fees
into the open window. Prefunded gross: money already moved; windows are the same reporting
boundaries and settle as they close.

A mixin of `SwitchCore` (switch/core/machine.py). It must never do I/O or read the clock;
RTGS instructions and statements are built outside the core (switch/settlement/).
"""

from __future__ import annotations

from collections import defaultdict, deque

import msgspec

from ledger.limits import BATCH_EVENTS_MAX, U64_MAX
from ledger.types import CreateTransferResult
from switch.core import legs, limits
from switch.core.accounts import HUB_PARTICIPANT_ID, TransferCode, account_owner
from switch.core.messages import (
    ArmTimer,
    CancelTimer,
    Command,
    CurrencyAdded,
    SettlementAborted,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    TimerFired,
)
from switch.core.participants import CurrencyState
from switch.core.results import Result, SettlementModel, WindowState

_W = WindowState
_OK = Result.OK
_RESULT_OK = CreateTransferResult.OK
_NS_PER_S = 1_000_000_000
_NS_PER_DAY = limits.NS_PER_DAY
_TIMER_BASE = limits.SETTLEMENT_TIMER_BASE
_PAIR_SHIFT = 24  # bilateral matrix keys: payer << 24 | payee (participant ids < 2**24)
_DEFERRED = SettlementModel.DEFERRED_NET
_BUFFER_LEGS = BATCH_EVENTS_MAX

CLOSED_BY_SCHEDULE = "schedule"

# A window's states and what may follow each (CLOSED is passed within the closing step).
WINDOW_NEXT: dict[WindowState, frozenset[WindowState]] = {
    _W.OPEN: frozenset({_W.CLOSED}),
    _W.CLOSED: frozenset({_W.PENDING_SETTLEMENT, _W.SETTLED}),
    _W.PENDING_SETTLEMENT: frozenset({_W.SETTLED, _W.ABORTED}),
    _W.SETTLED: frozenset(),
    _W.ABORTED: frozenset(),
}
WINDOW_EDGES: dict[tuple[WindowState, WindowState], str] = {
    (_W.OPEN, _W.CLOSED): "its cut-off passed, or an operator closed it: the next window opens "
                          "in the same step; net positions are fixed",
    (_W.CLOSED, _W.PENDING_SETTLEMENT): "deferred net with a position to settle: the RTGS "
                                        "instructions can be produced",
    (_W.CLOSED, _W.SETTLED): "nothing to settle: prefunded gross (already settled), or every "
                             "net position is zero",
    (_W.PENDING_SETTLEMENT, _W.SETTLED): "the RTGS settled it (an accepted pacs.002, or an "
                                         "operator's confirmation): the positions are posted",
    (_W.PENDING_SETTLEMENT, _W.ABORTED): "an operator gave up settling it: its positions "
                                         "roll into the open window",
}
WINDOW_FINAL_STATES = frozenset(state for state, nxt in WINDOW_NEXT.items() if not nxt)

assert set(WINDOW_NEXT) == set(WindowState)
assert set(WINDOW_EDGES) == {(a, b) for a, nxt in WINDOW_NEXT.items() for b in nxt}


def window_graph_markdown() -> str:
    """The window state graph as docs/settlement.md shows it (between generated markers)."""
    lines = ["| window: from | to | when |", "|---|---|---|"]
    lines += [f"| {a.name} | {b.name} | {why} |" for (a, b), why in WINDOW_EDGES.items()]
    finals = ", ".join(state.name for state in WINDOW_NEXT if not WINDOW_NEXT[state])
    lines += ["", f"Final window states: {finals}."]
    return "\n".join(lines) + "\n"


class Movement(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A posting on a participant's account that is not a transfer: operator funding and
    caps, settlement postings, settlement dues collected."""

    at_ns: int
    seq: int  # ledger transfer id = seq << 3 (| 2 for a posted settlement leg)
    participant_id: int
    amount_minor: int  # signed: + credits the participant's account, - debits it
    code: int  # TransferCode
    window_id: int = 0  # a settlement posting: the window it settles


class Posting(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One participant's settlement posting of a settled deferred-net window."""

    seq: int  # its ledger transfer is seq << 3; 0 when nothing could be posted
    amount_minor: int  # posted, signed: + credit (a net debtor), - debit (a net creditor)
    net_minor: int  # its net position: what the RTGS moved (- paid in, + was paid)


class Schedule(msgspec.Struct, kw_only=True, frozen=True):
    currency: str
    interval_s: int
    cutoffs_s: tuple[int, ...]
    utc_offset_s: int
    next_ns: int  # the next cut-off (the armed timer's deadline); 0: none


class WindowRecord(msgspec.Struct, kw_only=True):
    """One settlement window. Never leaves the core; read through the core's views."""

    window_id: int
    currency: str
    state: WindowState
    opened_at_ns: int
    # Posted balance (credits - debits) and posted debits of every participant account
    # when it opened, and the hub's fees account's credits; shared with the previous
    # window's closing figures.
    opening_posted: dict[int, int]
    opening_debits: dict[int, int]
    hub_fees_opening: int
    transfers: int = 0  # committed in this window
    # payer << 24 | payee -> minor units (rolled included); a defaultdict(int) while OPEN
    bilateral: dict[int, int] = {}
    movements: list[Movement] = []
    rolled_from: list[int] = []  # aborted windows whose positions roll into this one
    rolled_net: dict[int, int] = {}
    rolled_fees_minor: int = 0
    rolled_transfers: int = 0
    rolled_volume_minor: int = 0
    # Set when it closes.
    closed_at_ns: int = 0
    closed_by: str = ""  # "schedule", or the operator request's id
    ledger_timestamp_closed: int = 0  # the ledger's last timestamp in the window
    closing_posted: dict[int, int] = {}
    closing_debits: dict[int, int] = {}
    hub_fees_closing: int = 0
    volume_minor: int = 0  # of its own transfers
    net: dict[int, int] = {}  # participant -> net position (rolled included); no zeros
    fees_minor: int = 0  # the hub's fees of the window (rolled included)
    # Set when it is settled or aborted.
    postings: dict[int, Posting] = {}
    decided_at_ns: int = 0
    rtgs_reference: str = ""
    abort_reason: str = ""

    def pairs(self) -> list[tuple[int, int, int]]:
        """The bilateral matrix as (payer, payee, minor units)."""
        mask = (1 << _PAIR_SHIFT) - 1
        return [(key >> _PAIR_SHIFT, key & mask, amount) for key, amount in self.bilateral.items()]


class SettlementState(msgspec.Struct, array_like=True, frozen=True):
    """The settlement part of a core snapshot."""

    window_seq: int
    windows: list[WindowRecord]
    final: list[int]
    schedules: list[Schedule]
    due: dict[str, dict[int, int]]


def next_cutoff_ns(interval_s: int, cutoffs_s: tuple[int, ...], utc_offset_s: int,
                   now_ns: int) -> int:
    """The first cut-off strictly after `now_ns` (UTC ns), or 0 when there is none: every
    `interval_s` from local midnight, and each of `cutoffs_s` (seconds after local
    midnight), local time being UTC + `utc_offset_s`. Integer arithmetic only."""
    if not interval_s and not cutoffs_s:
        return 0
    offset_ns = utc_offset_s * _NS_PER_S
    local_ns = now_ns + offset_ns
    day_start = local_ns // _NS_PER_DAY * _NS_PER_DAY
    candidates = []
    if interval_s:
        step = interval_s * _NS_PER_S
        candidate = day_start + ((local_ns - day_start) // step + 1) * step
        candidates.append(min(candidate, day_start + _NS_PER_DAY))  # each day restarts at 0
    for cutoff_s in cutoffs_s:
        candidate = day_start + cutoff_s * _NS_PER_S
        candidates.append(candidate if candidate > local_ns else candidate + _NS_PER_DAY)
    found = min(candidates) - offset_ns
    assert found > now_ns
    return found


class SettlementFlow:
    """See the module docstring."""

    def _init_settlement(self) -> None:
        self._windows: dict[int, WindowRecord] = {}
        self._windows_open: dict[str, WindowRecord] = {}  # currency -> its OPEN window
        self._windows_final: deque[int] = deque()  # settled or aborted, oldest first
        self._window_seq = 0
        self._schedules: dict[str, Schedule] = {}
        self._settlement_due: dict[str, dict[int, int]] = {}  # currency -> participant -> minor
        self._settlement_buffer = bytearray(_BUFFER_LEGS * legs._SIZE)

    # -- windows ---------------------------------------------------------------------

    def _window_transition(self, window: WindowRecord, state: WindowState) -> None:
        assert state in WINDOW_NEXT[window.state], (window.window_id, window.state, state)
        window.state = state

    def _open_window(self, currency: str, now_ns: int, opening_posted: dict[int, int],
                     opening_debits: dict[int, int], hub_fees_opening: int) -> WindowRecord:
        self._window_seq += 1
        window = WindowRecord(window_id=self._window_seq, currency=currency, state=_W.OPEN,
                              opened_at_ns=now_ns, opening_posted=opening_posted,
                              opening_debits=opening_debits, hub_fees_opening=hub_fees_opening,
                              bilateral=defaultdict(int))
        self._windows[window.window_id] = window
        self._windows_open[currency] = window
        return window

    def _currency_added_with_window(self, event: CurrencyAdded, now_ns: int) -> tuple[Result, str]:
        """`CurrencyAdded`: the operator flow adds it, then its first window opens."""
        result, detail = self._currency_added(event, now_ns)
        if result is _OK:
            self._open_window(event.currency, now_ns, {}, {}, 0)
        return result, detail

    def _window_final(self, window: WindowRecord, state: WindowState, now_ns: int) -> None:
        self._window_transition(window, state)
        window.decided_at_ns = now_ns
        self._windows_final.append(window.window_id)
        while len(self._windows_final) > limits.SETTLEMENT_WINDOWS_RETAINED_MAX:
            del self._windows[self._windows_final.popleft()]

    def _pending_windows(self, currency: str) -> int:
        return sum(1 for w in self._windows.values()
                   if w.currency == currency and w.state == _W.PENDING_SETTLEMENT)

    def _participant_accounts(self, currency: str) -> list[tuple[int, int]]:
        """(participant id, account id) of every participant with an account in `currency`."""
        found = []
        for participant_id, participant in self._participants.items():
            account = participant.accounts.get(currency)
            if account is not None:
                found.append((participant_id, account.account_id))
        return found

    def _balances(self, currency: CurrencyState, accounts: list[tuple[int, int]]):
        """(participant -> its ledger Account, the hub's fees Account)."""
        ids = [account_id for _pid, account_id in accounts] + [currency.hub_fees_account_id]
        found = {account.id: account for account in self.ledger.lookup_accounts(ids)}
        by_participant = {pid: found[account_id] for pid, account_id in accounts}
        return by_participant, found[currency.hub_fees_account_id]

    def _net_positions(self, window: WindowRecord, balances: dict,
                       fees_credits: int) -> tuple[dict, dict, dict, int]:
        """(posted balance now, posted debits now, net position, volume of its own
        transfers) by participant, of `window` as if it closed now. O(participants + the
        window's movements): the ledger keeps the balances as transfers commit."""
        moved: dict[int, int] = {}
        debited = 0  # by movements (operator debits, settlement debits, dues)
        for movement in window.movements:
            moved[movement.participant_id] = (moved.get(movement.participant_id, 0)
                                              + movement.amount_minor)
            if movement.amount_minor < 0:
                debited -= movement.amount_minor
        opening = window.opening_posted
        opening_debits = window.opening_debits
        rolled = window.rolled_net
        posted: dict[int, int] = {}
        debits: dict[int, int] = {}
        net: dict[int, int] = {}
        debits_moved = 0
        for participant_id, account in balances.items():
            now_minor = account.credits_posted - account.debits_posted
            posted[participant_id] = now_minor
            debits[participant_id] = account.debits_posted
            debits_moved += account.debits_posted - opening_debits.get(participant_id, 0)
            position = (now_minor - opening.get(participant_id, 0)
                        - moved.get(participant_id, 0) + rolled.get(participant_id, 0))
            if position:
                net[participant_id] = position
        # Transfers debit their payer amount + fee; fees are the hub's fee credits.
        volume = debits_moved - debited - (fees_credits - window.hub_fees_opening)
        return posted, debits, net, volume

    def settlement_live(self, currency: str) -> tuple[dict[int, int], int]:
        """(net positions, hub fees) of the currency's OPEN window as if it closed now."""
        state = self._currencies[currency]
        window = self._windows_open[currency]
        balances, fees_account = self._balances(state, self._participant_accounts(currency))
        _posted, _debits, net, _volume = self._net_positions(window, balances,
                                                             fees_account.credits_posted)
        fees = fees_account.credits_posted - window.hub_fees_opening + window.rolled_fees_minor
        return net, fees

    # -- closing ---------------------------------------------------------------------

    def _close_window(self, currency: str, now_ns: int, closed_by: str) -> tuple[Result, str]:
        """Close the currency's open window and open the next, in this one step. Checked
        in full before anything changes: a refusal leaves the window open, traffic flowing."""
        state = self._currencies[currency]
        window = self._windows_open[currency]
        deferred = state.settlement_model == _DEFERRED
        accounts = self._participant_accounts(currency)
        balances, fees_account = self._balances(state, accounts)
        fees_closing = fees_account.credits_posted
        posted, debits, net, volume = self._net_positions(window, balances, fees_closing)
        fees = fees_closing - window.hub_fees_opening + window.rolled_fees_minor
        assert sum(net.values()) + fees == 0, (window.window_id, net, fees)
        if deferred and net and (
                self._pending_windows(currency) >= limits.SETTLEMENT_WINDOWS_PENDING_MAX):
            return Result.SETTLEMENT_WINDOWS_FULL, (
                f"{limits.SETTLEMENT_WINDOWS_PENDING_MAX} {currency} windows wait for settlement")
        # Checked: from here on nothing can refuse.
        window.ledger_timestamp_closed = self.ledger.last_timestamp
        self._window_transition(window, _W.CLOSED)
        window.closed_at_ns = now_ns
        window.closed_by = closed_by
        window.closing_posted = posted
        window.closing_debits = debits
        window.volume_minor = volume
        window.bilateral = dict(window.bilateral)
        window.hub_fees_closing = fees_closing
        window.net = net
        window.fees_minor = fees
        self._open_window(currency, now_ns, posted, debits, fees_closing)
        if deferred and net:
            self._window_transition(window, _W.PENDING_SETTLEMENT)
        else:
            self._window_final(window, _W.SETTLED, now_ns)
        self._collect_dues(state, now_ns)
        return _OK, f"window {window.window_id}"

    def _plan_postings(self, window: WindowRecord) -> tuple[list, dict, str]:
        """(planned transfers, postings with nothing to post, refusal) for settling
        `window`: each planned as (participant, debit, credit, amount, code, net). A
        non-empty refusal names an account a posting would take past 2**64-1 (then nothing
        may be posted)."""
        state = self._currencies[window.currency]
        hub_id = state.hub_settlement_account_id
        accounts = dict(self._participant_accounts(window.currency))
        ids = [accounts[pid] for pid in window.net] + [hub_id]
        found = {account.id: account for account in self.ledger.lookup_accounts(ids)}
        hub = found[hub_id]
        hub_debits = hub.debits_pending + hub.debits_posted
        hub_credits = hub.credits_pending + hub.credits_posted
        plan: list[tuple[int, int, int, int, int, int]] = []
        empty: dict[int, Posting] = {}
        for participant_id in sorted(window.net):
            position = window.net[participant_id]
            account_id = accounts[participant_id]
            balance = found[account_id]
            if position < 0:  # a net debtor paid in at the RTGS: credited
                amount = -position
                if balance.credits_pending + balance.credits_posted + amount > U64_MAX:
                    return [], {}, f"credits of participant {participant_id}'s account"
                hub_debits += amount
                plan.append((participant_id, hub_id, account_id, amount,
                             int(TransferCode.SETTLEMENT_CREDIT), position))
                continue
            # A net creditor was paid at the RTGS: debited, as far as its account allows.
            available = balance.credits_posted - balance.debits_posted - balance.debits_pending
            amount = min(position, max(available, 0))
            if not amount:
                empty[participant_id] = Posting(seq=0, amount_minor=0, net_minor=position)
                continue
            hub_credits += amount
            plan.append((participant_id, account_id, hub_id, amount,
                         int(TransferCode.SETTLEMENT_DEBIT), position))
        if hub_debits > U64_MAX or hub_credits > U64_MAX:
            return [], {}, f"the hub's {window.currency} settlement account"
        return plan, empty, ""

    def _post_settlement(self, window: WindowRecord, plan: list, postings: dict,
                         now_ns: int) -> dict[int, Posting]:
        """Make the planned postings in linked batches (checked to fit already)."""
        state = self._currencies[window.currency]
        buffer = self._settlement_buffer
        size = legs._SIZE
        for start in range(0, len(plan), _BUFFER_LEGS):
            chunk = plan[start:start + _BUFFER_LEGS]
            for index, (participant_id, debit, credit, amount, code, position) in enumerate(chunk):
                self._seq += 1
                assert self._seq <= limits.SEQUENCE_MAX
                legs.settlement_posting(
                    buffer, index * size, seq=self._seq, participant_id=participant_id,
                    debit_account_id=debit, credit_account_id=credit, amount_minor=amount,
                    ledger_id=state.ledger_id, code=code, linked=index < len(chunk) - 1)
                signed = amount if code == TransferCode.SETTLEMENT_CREDIT else -amount
                postings[participant_id] = Posting(seq=self._seq, amount_minor=signed,
                                                   net_minor=position)
            failures = legs.create_packed(self.ledger, buffer, len(chunk), now_ns)
            # Fresh ids, existing accounts, amounts checked against the limits and 2**64-1:
            # a refusal is a core bug.
            assert not failures, failures
        return dict(sorted(postings.items()))

    def _collect_dues(self, state: CurrencyState, now_ns: int) -> None:
        """Post what net creditors still owe from settled windows, as far as their accounts
        now allow (single-phase transfers to HUB_SETTLEMENT)."""
        dues = self._settlement_due.get(state.currency)
        if not dues:
            return
        window = self._windows_open[state.currency]
        hub_id = state.hub_settlement_account_id
        for participant_id in sorted(dues):
            account = self._participants[participant_id].accounts[state.currency]
            (balance, hub) = self.ledger.lookup_accounts([account.account_id, hub_id])
            available = balance.credits_posted - balance.debits_posted - balance.debits_pending
            take = min(dues[participant_id], max(available, 0))
            if not take or hub.credits_pending + hub.credits_posted + take > U64_MAX:
                continue
            self._seq += 1
            assert self._seq <= limits.SEQUENCE_MAX
            result = legs.operator_transfer(
                self.ledger, seq=self._seq, debit_account_id=account.account_id,
                credit_account_id=hub_id, amount_minor=take, participant_id=participant_id,
                ledger_id=state.ledger_id, code=int(TransferCode.SETTLEMENT_DUE), now_ns=now_ns)
            assert result == _RESULT_OK, result
            window.movements.append(Movement(at_ns=now_ns, seq=self._seq,
                                             participant_id=participant_id,
                                             amount_minor=-take,
                                             code=int(TransferCode.SETTLEMENT_DUE)))
            left = dues[participant_id] - take
            if left:
                dues[participant_id] = left
            else:
                del dues[participant_id]
        if not dues:
            del self._settlement_due[state.currency]

    def _settlement_moved(self, currency: CurrencyState, debit_account_id: int,
                          credit_account_id: int, amount_minor: int, code: int, seq: int,
                          now_ns: int) -> None:
        """An operator's ledger transfer posted (funding, caps): the open window notes it,
        so net positions count only transfers."""
        window = self._windows_open[currency.currency]
        for account_id, sign in ((debit_account_id, -1), (credit_account_id, 1)):
            participant_id, _code = account_owner(account_id)
            if participant_id != HUB_PARTICIPANT_ID:
                window.movements.append(Movement(at_ns=now_ns, seq=seq,
                                                 participant_id=participant_id,
                                                 amount_minor=sign * amount_minor, code=code))

    # -- operator requests -----------------------------------------------------------

    def _admin_window_close(self, event: SettlementWindowClosed, now_ns: int) -> list[Command]:
        def act(event: SettlementWindowClosed, now_ns: int) -> tuple[Result, str]:
            if event.currency not in self._currencies:
                return Result.ADMIN_CURRENCY_NOT_FOUND, event.currency
            window = self._windows_open[event.currency]
            if event.window_id and event.window_id != window.window_id:
                named = self._windows.get(event.window_id)
                if named is None or named.currency != event.currency:
                    return Result.SETTLEMENT_WINDOW_NOT_FOUND, f"window {event.window_id}"
                return Result.SETTLEMENT_WINDOW_NOT_OPEN, (
                    f"window {event.window_id} is {named.state.name}; "
                    f"{window.window_id} is open")
            return self._close_window(event.currency, now_ns, event.request_id)
        return self._admin(event, now_ns, act)

    def _pending_window(self, window_id: int) -> tuple[Result, str, WindowRecord | None]:
        window = self._windows.get(window_id)
        if window is None:
            return Result.SETTLEMENT_WINDOW_NOT_FOUND, f"window {window_id}", None
        if window.state != _W.PENDING_SETTLEMENT:
            return Result.SETTLEMENT_WINDOW_NOT_PENDING, (
                f"window {window_id} is {window.state.name}"), None
        return _OK, "", window

    def _admin_settlement_confirmed(self, event: SettlementConfirmed,
                                    now_ns: int) -> list[Command]:
        def act(event: SettlementConfirmed, now_ns: int) -> tuple[Result, str]:
            result, detail, window = self._pending_window(event.window_id)
            if window is None:
                return result, detail
            state = self._currencies[window.currency]
            plan, empty, refusal = self._plan_postings(window)
            if refusal:
                return Result.SETTLEMENT_ACCOUNT_OVERFLOW, refusal
            window.postings = self._post_settlement(window, plan, empty, now_ns)
            open_window = self._windows_open[window.currency]
            dues = self._settlement_due.setdefault(window.currency, {})
            for participant_id, posting in window.postings.items():
                if posting.seq:
                    code = (TransferCode.SETTLEMENT_CREDIT if posting.amount_minor > 0
                            else TransferCode.SETTLEMENT_DEBIT)
                    open_window.movements.append(Movement(
                        at_ns=now_ns, seq=posting.seq, participant_id=participant_id,
                        amount_minor=posting.amount_minor, code=int(code),
                        window_id=window.window_id))
                short = posting.net_minor + posting.amount_minor  # creditors: owed - posted
                if posting.net_minor > 0 and short:
                    dues[participant_id] = dues.get(participant_id, 0) + short
            if not dues:
                del self._settlement_due[window.currency]
            window.rtgs_reference = event.rtgs_reference
            self._window_final(window, _W.SETTLED, now_ns)
            self._collect_dues(state, now_ns)
            return _OK, f"window {window.window_id} settled"
        return self._admin(event, now_ns, act)

    def _admin_settlement_aborted(self, event: SettlementAborted, now_ns: int) -> list[Command]:
        def act(event: SettlementAborted, now_ns: int) -> tuple[Result, str]:
            result, detail, window = self._pending_window(event.window_id)
            if window is None:
                return result, detail
            target = self._windows_open[window.currency]
            for participant_id, position in window.net.items():
                rolled = target.rolled_net.get(participant_id, 0) + position
                if rolled:
                    target.rolled_net[participant_id] = rolled
                else:
                    target.rolled_net.pop(participant_id, None)
            for key, amount in window.bilateral.items():
                target.bilateral[key] = target.bilateral.get(key, 0) + amount
            target.rolled_fees_minor += window.fees_minor
            target.rolled_transfers += window.transfers + window.rolled_transfers
            target.rolled_volume_minor += window.volume_minor + window.rolled_volume_minor
            target.rolled_from.append(window.window_id)
            window.abort_reason = event.reason
            self._window_final(window, _W.ABORTED, now_ns)
            return _OK, f"window {window.window_id} aborted; positions roll into {target.window_id}"
        return self._admin(event, now_ns, act)

    def _admin_settlement_schedule(self, event: SettlementScheduleSet,
                                   now_ns: int) -> list[Command]:
        def act(event: SettlementScheduleSet, now_ns: int) -> tuple[Result, str]:
            if event.currency not in self._currencies:
                return Result.ADMIN_CURRENCY_NOT_FOUND, event.currency
            cutoffs = event.cutoffs_s
            if any(later <= earlier for earlier, later in zip(cutoffs, cutoffs[1:])):
                return Result.SETTLEMENT_SCHEDULE_INVALID, "cut-offs not strictly increasing"
            self._schedules[event.currency] = Schedule(
                currency=event.currency, interval_s=event.interval_s, cutoffs_s=tuple(cutoffs),
                utc_offset_s=event.utc_offset_s,
                next_ns=next_cutoff_ns(event.interval_s, tuple(cutoffs), event.utc_offset_s,
                                       now_ns))
            return _OK, ""
        commands = self._admin(event, now_ns, act)
        if commands[0].result is _OK and event.currency in self._schedules:
            commands.append(self._schedule_timer(self._schedules[event.currency]))
        return commands

    def _schedule_timer(self, schedule: Schedule) -> ArmTimer | CancelTimer:
        timer_id = _TIMER_BASE + self._currencies[schedule.currency].ledger_id
        if not schedule.next_ns:
            return CancelTimer(timer_id=timer_id)
        return ArmTimer(timer_id=timer_id, deadline_ns=schedule.next_ns)

    def _on_settlement_timer(self, event: TimerFired, now_ns: int) -> list[Command]:
        """A timer the transfer flow does not hold: a currency's cut-off, or stale."""
        ledger_id = event.timer_id - _TIMER_BASE
        if ledger_id <= 0:
            return []
        schedule = next((s for s in self._schedules.values()
                         if self._currencies[s.currency].ledger_id == ledger_id), None)
        if schedule is None or not schedule.next_ns:
            return []
        if now_ns < schedule.next_ns:
            return [self._schedule_timer(schedule)]  # early: the shell arms it again
        # A refused scheduled close (windows full, an account full) leaves the window open;
        # the next cut-off tries again.
        self._close_window(schedule.currency, now_ns, CLOSED_BY_SCHEDULE)
        schedule = msgspec.structs.replace(schedule, next_ns=next_cutoff_ns(
            schedule.interval_s, schedule.cutoffs_s, schedule.utc_offset_s, now_ns))
        self._schedules[schedule.currency] = schedule
        return [self._schedule_timer(schedule)]

    def _settlement_recovery_commands(self) -> list[Command]:
        return [self._schedule_timer(s) for s in self._schedules.values() if s.next_ns]

    # -- views -----------------------------------------------------------------------

    def settlement_windows(self, currency: str = "") -> list[WindowRecord]:
        """Retained windows, newest first (read only), of one currency or all."""
        return [w for w in reversed(self._windows.values())
                if not currency or w.currency == currency]

    def settlement_window(self, window_id: int) -> WindowRecord | None:
        return self._windows.get(window_id)

    def settlement_open_window(self, currency: str) -> WindowRecord | None:
        return self._windows_open.get(currency)

    def settlement_schedule(self, currency: str) -> Schedule | None:
        return self._schedules.get(currency)

    def settlement_dues(self, currency: str) -> dict[int, int]:
        """participant -> settlement debit still owed from settled windows."""
        return dict(self._settlement_due.get(currency, {}))

    def check_settlement_invariants(self) -> None:
        assert set(self._windows_open) == set(self._currencies)
        for currency, window in self._windows_open.items():
            assert window.state == _W.OPEN and self._windows[window.window_id] is window
        for window in self._windows.values():
            if window.state == _W.OPEN:
                assert self._windows_open[window.currency] is window
                continue
            assert sum(window.net.values()) + window.fees_minor == 0, window.window_id
            assert sum(window.bilateral.values()) == (window.volume_minor
                                                      + window.rolled_volume_minor)
            if window.state == _W.SETTLED and window.postings:
                assert set(window.postings) == set(window.net), window.window_id
        assert len(self._windows_final) <= limits.SETTLEMENT_WINDOWS_RETAINED_MAX

    # -- snapshots -------------------------------------------------------------------

    def _settlement_snapshot(self) -> SettlementState:
        return SettlementState(
            window_seq=self._window_seq, windows=list(self._windows.values()),
            final=list(self._windows_final), schedules=list(self._schedules.values()),
            due=self._settlement_due)

    def _settlement_restore(self, state: SettlementState | None, now_ns: int) -> None:
        if state is None:  # a snapshot from before settlement: open a window per currency
            for currency in self._currencies:
                self._open_window(currency, now_ns, {}, {}, 0)
            return
        self._window_seq = state.window_seq
        for window in state.windows:
            self._windows[window.window_id] = window
            if window.state == _W.OPEN:
                window.bilateral = defaultdict(int, window.bilateral)
                self._windows_open[window.currency] = window
        self._windows_final.extend(state.final)
        for schedule in state.schedules:
            self._schedules[schedule.currency] = schedule
        self._settlement_due = {currency: dict(dues) for currency, dues in state.due.items()}


__all__ = [
    "CLOSED_BY_SCHEDULE", "Movement", "Posting", "Schedule", "SettlementFlow",
    "SettlementState", "WINDOW_EDGES", "WINDOW_FINAL_STATES", "WINDOW_NEXT", "WindowRecord",
    "next_cutoff_ns", "window_graph_markdown",
]
