"""A deterministic simulation of the switch (model: TigerBeetle's VOPR).

The real `SwitchCore`, the real ledger AND the server's real deciding shell
(`switch/server/shell.py`: routing, refusals, store answers, what is journaled, release
after durability) run against a fake journal (group commit in two steps: a commit starts,
its fsync ends later), fake timers, a fake directory, simulated participants with their own
books, a simulated network (loss, duplication, reordering, delay) and a simulated clock.
Only the sockets, the disk and the clock are fakes: this file holds no copy of the shell's
rules. Everything random comes from one `random.Random(seed)`, so a seed replays exactly.

Faults: message loss, duplication, reordering and delay; slow, silent, crashing,
double-answering, flip-flopping and late participants; conditional transfers (some payers
attach an Interledger condition, as FSPIOP does) whose payees answer with the right
fulfilment, a wrong one or none; at the shell's seams a commit that
is delayed (the next ticks are decided meanwhile), a commit that fails (fail-stop), a
connection lost just before a release, a directory outage for a tick; switch crashes that
lose every undurable record and unreleased tick, followed by recovery from the journal (all
of it, or a core snapshot taken when the core equalled the journal, plus the tail).

After every core step the invariants are checked (see `Sim.check_step`); after a fault-free
drain at the end, every transfer must be final and everyone's books must agree with the
ledger (`Sim.check_end`). A broken invariant raises `SimFailure` naming the seed and the
one-line command that replays it. It must never read the real clock or draw from anything
but the seed's generator, or a seed would stop replaying.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
from collections import deque
import random
from dataclasses import dataclass, field

import msgspec

from ledger import LedgerConfig, PendingStatus
from switch.core import (
    CoreConfig,
    RequestToPayState,
    Result,
    SettlementModel,
    SwitchCore,
    TransferState,
)
from switch.core import codec
from switch.core.accounts import Leg, ledger_transfer_id
from ledger.limits import U64_MAX
from switch.core.limits import NET_DEBIT_CAP_MINOR_MAX, NS_PER_DAY
from switch.core.messages import (
    AdminAnswer,
    ArmTimer,
    ConsultStore,
    CreditRequest,
    CurrencyAdded,
    ErrorAnswer,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    ParticipantDailyLimitSet,
    ParticipantResumed,
    ParticipantSuspended,
    Party,
    PayeeAnswer,
    Refused,
    RequestToPay,
    RequestToPayDecision,
    RequestToPayNotice,
    RequestToPayOutcome,
    ReturnRequest,
    SchemeRules,
    SchemeRulesChanged,
    Send,
    SettlementAborted,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    StatusQuery,
    TimerFired,
    TransferOutcome,
    TransferRef,
    TransferRequest,
    TransferRequested,
)
from switch.core.accounts import TransferCode
from switch.core.results import SHELL_ONLY, WindowState
from switch.server.limits import TICKS_IN_FLIGHT_MAX
from switch.server.metrics import MetricsRegistry, ServerMetrics
from switch.server.shell import (
    ITEM_ADMIN,
    ITEM_STATUS,
    ITEM_SUBMIT,
    ITEM_TIMER,
    OutcomeArchive,
    Shell,
)

MS = 1_000_000
S = 1_000_000_000
T0 = 1_700_000_000 * S
FINAL = (TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED)
CURRENCIES = (("BRL", 986, SettlementModel.PREFUNDED_RTGS), ("KES", 404, SettlementModel.DEFERRED_NET))
PROFILES = ("normal", "normal", "slow", "silent", "crashing", "double", "flip", "late")
NONE = "none"  # a participant's view of a transfer the switch never recorded
ARCHIVE_MAX = 1 << 16
CONDITIONAL_RATE = 0.3  # payments that carry a condition (FSPIOP's, through its hub)
# A payee's answer to a conditional credit: the right fulfilment, a wrong one, none at all.
FULFILMENT_RIGHT_RATE, FULFILMENT_WRONG_RATE = 0.8, 0.1


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def condition_of(fulfilment: str) -> str:
    """SHA-256 of the fulfilment's 32 bytes (computed here, not by the core's code); "" for
    anything that is not 32 bytes of base64url."""
    try:
        preimage = base64.urlsafe_b64decode(fulfilment + "=")
    except ValueError:
        return ""
    return b64url(hashlib.sha256(preimage).digest()) if len(preimage) == 32 else ""


def fake_national_id_token(national_id: str) -> str:
    """The simulated directory's identity token (the real one is an HMAC)."""
    return hashlib.sha256(national_id.encode()).hexdigest()
CAP_OVERFLOW_ROUNDS_MAX = 40  # raises of NET_DEBIT_CAP_MINOR_MAX that fill 2**64-1: ~19


class SimFailure(AssertionError):
    pass


def replay_command(seed: int) -> str:
    return f"python -m pytest tests/sim -k replay --seed {seed}"


# -- participants ----------------------------------------------------------------------------


@dataclass
class Sent:
    """A transfer (or return, or RTP-approval transfer) this participant is the payer of."""

    transfer_id: str
    frame: bytes  # the exact request, resent as is
    expires_at_ns: int
    kind: str  # "transfer", "return" or "rtp"
    next_try_ns: int = 0
    view: object = None  # TransferState when final, or NONE
    # rtp: when this participant learnt the request-to-pay can no longer create it
    request_gone_ns: int | None = None
    condition: str = ""  # a conditional transfer: its outcome must carry the fulfilment


@dataclass
class Received:
    """A credit request this participant (the payee) was sent."""

    payer_participant_id: int
    transfer_id: str
    accepted: bool
    deadline_ns: int
    next_try_ns: int = 0
    view: object = None
    fulfilment: str = ""  # what it answers a conditional credit with (right, wrong or "")


@dataclass
class Participant:
    participant_id: int
    profile: str
    up: bool = True
    sequence: int = 0
    sent: dict = field(default_factory=dict)  # transfer_id -> Sent
    received: dict = field(default_factory=dict)  # (payer, transfer_id) -> Received
    views: dict = field(default_factory=dict)  # (payer, transfer_id) -> final TransferOutcome
    books: dict = field(default_factory=dict)  # currency -> [in, out, fees]
    committed_in: list = field(default_factory=list)  # outcomes returnable by this payee
    returned: dict = field(default_factory=dict)  # original key -> amount returned (tried)
    requests: dict = field(default_factory=dict)  # rtp id -> state (as requester)
    decided: dict = field(default_factory=dict)  # (payee, rtp id) -> transfer id or ""

    def book(self, currency: str) -> list:
        return self.books.setdefault(currency, [0, 0, 0])

    def next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}{self.participant_id}-{self.sequence}"


# -- the simulation ------------------------------------------------------------------------


class Sim:
    def __init__(self, seed: int, ledger_cls):
        self.seed = seed
        self.rng = rng = random.Random(seed)
        self.ledger_cls = ledger_cls
        self.steps = 0
        self.results_seen: set[int] = set()
        self.planted: dict[str, int] = {}  # hostile behaviours tried (issue 10), by name
        # The world for this seed: how many, how faulty, how big.
        self.participant_count = rng.randint(3, 5)
        self.loss = rng.choice((0.0, 0.02, 0.05, 0.1))
        self.duplication = rng.choice((0.0, 0.02, 0.05, 0.1))
        self.delay_ms = (1, rng.choice((5, 20, 80)))
        self.run_ns = rng.randint(3, 8) * S
        self.crashes_max = rng.choice((0, 1, 1, 2, 3))
        self.commit_interval_ns = rng.choice((1, 2, 5)) * MS
        # A question's answer arrives at most this long after it was asked (two network
        # legs and a group commit), unless a crash loses it.
        self.answer_delay_max_ns = 2 * (self.delay_ms[1] + 1) * MS + self.commit_interval_ns + MS
        retained = rng.choice((40, 200, 5_000))
        in_flight = min(retained, rng.choice((8, 50, 1_000)))
        self.core_config = CoreConfig(
            transfers_retained_max=retained, in_flight_max=in_flight,
            requests_to_pay_retained_max=rng.choice((20, 1_000)),
            admin_requests_retained_max=1_000, expiry_ms_max=30_000,
        )
        self.ledger_config = LedgerConfig(accounts_max=256, transfers_retained_max=1 << 16,
                                          pending_max=max(1 << 10, 2 * in_flight))
        start = T0 + rng.randrange(NS_PER_DAY)
        if rng.random() < 0.25:  # straddle a UTC midnight: daily totals must reset
            start = (start // NS_PER_DAY + 1) * NS_PER_DAY - rng.randint(1, 3) * S
        self.now_ns = self.start_ns = start
        self.queue: list = []
        self.queue_seq = 0
        # The switch and its shell.
        self.up = True
        self.journal: list[tuple[int, bytes]] = []  # durable records: (now_ns, payload)
        self.uncommitted: list[tuple[int, bytes]] = []  # appended, not durable yet
        self.committing = 0  # records of uncommitted that the running commit covers
        self.commit_running = False
        self.decide_scheduled = False
        self.inbound_items: list = []  # the gateway's queue
        self.tick_events_max = rng.choice((1, 4, 64, 4_096))
        self.commit_delay_rate = rng.choice((0.0, 0.05, 0.2))  # an fsync that takes long
        self.commit_failure_rate = rng.choice((0.0, 0.0, 0.005))  # a commit that fails
        self.connection_loss_rate = rng.choice((0.0, 0.01, 0.05))  # lost before a release
        self.directory_outage_rate = rng.choice((0.0, 0.0, 0.02))
        self.releases = 0
        self.snapshot_checks = 0  # restarts from a snapshot checked against a full replay
        self.commit_failures = 0
        self.connections_lost = 0
        self.directory_outages = 0
        self.pipelined_ticks = 0  # ticks decided while an earlier one waited for its commit
        self.tick_states: deque = deque()  # (journal sequence, core state) of undurable ticks
        self.timers: dict[int, int] = {}
        self.store: dict[tuple[int, str], TransferOutcome] = {}  # outcomes released
        self.refunds = 0
        self.crashes = 0
        self.restored_from_snapshot = 0
        self.snapshot = None  # (bytes, tracking) taken at some commit
        self.snapshot_rate = rng.choice((0.0, 0.01, 0.05))
        self.last_commit = None
        self.directory: dict[tuple[str, str], tuple[int, str]] = {}
        self.participants: dict[int, Participant] = {}
        # condition -> its fulfilment: what payer and payee agreed (FSPIOP's quote).
        self.fulfilments: dict[str, str] = {}
        self.conditional_answers: dict[str, int] = {"right": 0, "wrong": 0, "none": 0}
        # Expectations derived from what the core decided (rebuilt on recovery).
        self.admin_durable: dict[tuple[int, str], int] = {}  # net admin credit per account
        self.admin_posted_durable = 0
        self.admin_uncommitted: list = []  # (key, net, posted) of uncommitted admin steps
        self.admin_applied: set[str] = set()
        self.admin_pending: dict[str, object] = {}
        self.admin_sent: dict[str, object] = {}  # every operator request, by id
        self.rules: dict[str, SchemeRules] = {}
        self.caps: dict[tuple[int, str], int] = {}
        self.account_ids: list[int] = []
        self._new_core()
        self._setup()

    # -- plumbing --------------------------------------------------------------------

    def fail(self, what: str) -> None:
        raise SimFailure(
            f"simulation seed {self.seed} failed at t={(self.now_ns - self.start_ns) / S:.3f} s, "
            f"step {self.steps}: "
            f"{what}\nreplay: {replay_command(self.seed)}"
        )

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            self.fail(what)

    def at(self, time_ns: int, kind: str, *payload) -> None:
        self.queue_seq += 1
        heapq.heappush(self.queue, (time_ns, self.queue_seq, kind, payload))

    def network(self, kind: str, *payload) -> None:
        """One message over the simulated network: maybe lost, maybe twice, any order."""
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.duplication else 1
        for _ in range(copies):
            delay = self.rng.randint(*self.delay_ms) * MS + self.rng.randrange(MS)
            self.at(self.now_ns + delay, kind, *payload)

    def _new_core(self) -> None:
        self.ledger = self.ledger_cls(self.ledger_config)
        self._reset_tracking()
        self.archive = OutcomeArchive(ARCHIVE_MAX, self.core_config)
        self._use_core(SwitchCore(self.core_config, self.ledger, observer=self._observe))

    def _use_core(self, core: SwitchCore) -> None:
        """Run `core` behind a new deciding shell (a restarted switch), every step checked."""
        self.core = core
        self.ledger = core.ledger
        real_step = core.step

        def checked_step(event, now_ns):
            commands = real_step(event, now_ns)  # a ProtocolError goes to the shell
            self.after_step(commands)
            return commands

        core.step = checked_step  # the shell calls core.step: every step is checked
        self.shell = Shell(core, archive=self.archive.bind(core),
                           metrics=ServerMetrics(MetricsRegistry()),
                           appended_sequence=len(self.journal),
                           national_id_token=fake_national_id_token)

    def _reset_tracking(self) -> None:
        self.in_flight_minor = 0  # expected ledger pending total (payment + fee legs)
        self.committed_minor = 0  # expected ledger posted total from payments
        self.reserved: dict[tuple[int, str], int] = {}
        self.daily: dict[tuple[int, str, int], int] = {}
        self.finals: dict[tuple[int, str], TransferState] = {}
        # Settlement, brute force: what every committed transfer did, by the window open
        # when it committed (the core's figures come from ledger balances instead).
        self.window_nets: dict[int, dict[int, int]] = {}
        self.window_fees: dict[int, int] = {}
        self.window_counts: dict[int, int] = {}

    # -- the core's transitions, observed ----------------------------------------------

    def _observe(self, payer: int, transfer_id: str, state: TransferState, now_ns: int) -> None:
        key = (payer, transfer_id)
        record = self.core._transfers[key]
        if key in self.finals:
            self.fail(f"transfer {key} left final state {self.finals[key].name} for {state.name}")
        if state == TransferState.RESERVED:
            # Limits, checked here independently of the core's own counters.
            rules = self.core.currency(record.currency).rules
            self.check(record.amount_minor <= rules.transfer_max_minor,
                       f"{key} reserved above the per-transfer maximum")
            day_key = (payer, record.currency, now_ns // NS_PER_DAY)
            used = self.daily.get(day_key, 0) + record.amount_minor
            self.daily[day_key] = used
            limit = self.core.daily_max_minor(payer, record.currency)
            self.check(used <= limit, f"payer {payer} daily total {used} above its limit {limit} "
                                      f"in {record.currency} after {key}")
        elif state == TransferState.FORWARDED:
            fee = record.fee_minor
            self.reserved[key] = record.amount_minor + fee
            self.in_flight_minor += record.amount_minor + fee
        elif state in FINAL:
            self.finals[key] = state
            held = self.reserved.pop(key, None)
            if held is not None:
                self.in_flight_minor -= held
                if state == TransferState.COMMITTED:
                    self.committed_minor += held
                    self.check(now_ns < record.deadline_ns and now_ns < record.expires_at_ns,
                               f"{key} committed at or after its deadline")
                    window_id = self.core.open_window_id(record.currency)
                    nets = self.window_nets.setdefault(window_id, {})
                    payee = record.payee_participant_id
                    nets[payer] = nets.get(payer, 0) - record.amount_minor - record.fee_minor
                    nets[payee] = nets.get(payee, 0) + record.amount_minor
                    self.window_fees[window_id] = (self.window_fees.get(window_id, 0)
                                                   + record.fee_minor)
                    self.window_counts[window_id] = self.window_counts.get(window_id, 0) + 1
                    condition = getattr(record.event.request, "condition", "")
                    if condition:
                        self.check(record.fulfilment == self.fulfilments.get(condition)
                                   and condition_of(record.fulfilment) == condition,
                                   f"{key} committed without its condition's fulfilment "
                                   f"(got {record.fulfilment!r})")
                else:
                    day_key = (payer, record.currency, record.day)
                    if day_key in self.daily:
                        self.daily[day_key] -= record.amount_minor
            else:
                self.check(state == TransferState.REJECTED,
                           f"{key} reached {state.name} without a reserve")
        self.archive.observe(payer, transfer_id, state, now_ns)  # as the server chains it

    # -- the switch: the real deciding shell on a fake journal, clock and network -----------

    def after_step(self, commands: list) -> None:
        """After every core step the shell takes: the invariants, the results seen, the
        operator's effects on the books."""
        self.steps += 1
        for command in commands:
            if isinstance(command, AdminAnswer) and command.result == Result.OK:
                self._admin_effect(command.request_id)
            result = getattr(command, "result", None)
            if result is None and isinstance(command, Send):
                result = getattr(command.message, "result", None)
            if isinstance(command, ConsultStore):
                result = command.result_if_absent
            if result is not None:
                self.results_seen.add(int(result))
                self.check(result not in SHELL_ONLY, f"core emitted shell-only {result!r}")
        self.check_step()

    def enqueue(self, item) -> None:
        """The gateway's queue: the sequencer takes it in ticks."""
        self.inbound_items.append(item)
        self.schedule_decide()

    def schedule_decide(self) -> None:
        if self.up and not self.decide_scheduled and self.inbound_items:
            self.decide_scheduled = True
            self.at(self.now_ns + self.rng.randrange(MS), "decide")

    def decide(self) -> None:
        """One sequencer tick: routes from the directory, the shell decides, timers armed,
        records appended (not durable yet)."""
        self.decide_scheduled = False
        if not self.up or not self.inbound_items:
            return
        if self.shell.held_ticks >= TICKS_IN_FLIGHT_MAX:
            return  # waits for a commit to release one (the commit reschedules)
        items = self.inbound_items[:self.tick_events_max]
        del self.inbound_items[:self.tick_events_max]
        lookups = self.shell.lookups(items)
        if self.shell.held_ticks:
            self.pipelined_ticks += 1
        if lookups and self.rng.random() < self.directory_outage_rate:
            self.directory_outages += 1
            routes = [Result.SERVICE_UNAVAILABLE] * len(lookups)
        else:
            routes = [self.route(alias) for _participant, alias, _user in lookups]
        tick = self.shell.decide(items, routes, self.now_ns)
        for command in tick.timers:
            if isinstance(command, ArmTimer):
                self.arm_timer(command)
            else:
                self.timers.pop(command.timer_id, None)
        for payload in tick.records:
            self.uncommitted.append((tick.now_ns, payload))
        # What a restart must rebuild once this tick's records are durable.
        self.tick_states.append((tick.sequence, self.core_state()))
        self.check(tick.sequence == len(self.journal) + len(self.uncommitted),
                   f"shell expects record {tick.sequence}, the journal holds "
                   f"{len(self.journal) + len(self.uncommitted)}")
        self.schedule_commit()
        self.schedule_decide()

    def route(self, alias: Party):
        found = self.directory.get((alias.alias_type, alias.alias_value))
        return Result.PARTY_NOT_FOUND if found is None else found

    def arm_timer(self, command: ArmTimer) -> None:
        self.timers[command.timer_id] = command.deadline_ns
        lateness = self.rng.randrange(5 * MS)
        self.at(max(command.deadline_ns, self.now_ns) + lateness, "timer",
                command.timer_id, command.deadline_ns)

    def schedule_commit(self) -> None:
        if self.up and not self.commit_running and (self.uncommitted or self.shell.held_ticks):
            self.commit_running = True
            self.at(self.now_ns + self.commit_interval_ns, "commit_start")

    def commit_start(self) -> None:
        """The group commit starts: it covers the records appended so far; its fsync ends
        later (sometimes much later), while the next ticks are decided."""
        if not self.up:
            return
        self.committing = len(self.uncommitted)
        delay = self.rng.randrange(MS)
        if self.rng.random() < self.commit_delay_rate:
            delay = self.rng.randint(20, 300) * MS
        self.at(self.now_ns + delay, "commit_done")

    def commit_done(self) -> None:
        """The fsync returned (or failed: fail-stop). Then the shell says what to release."""
        if not self.up:
            return
        self.commit_running = False
        if self.committing and self.rng.random() < self.commit_failure_rate:
            self.commit_failures += 1
            self.crash()  # the journal refuses further work: the server stops, restarts
            return
        self.journal.extend(self.uncommitted[:self.committing])
        del self.uncommitted[:self.committing]
        self.committing = 0
        durable = len(self.journal)
        while self.tick_states and self.tick_states[0][0] <= durable:
            self.last_commit = self.tick_states.popleft()[1]
        for tick in self.shell.released(durable):
            self.check(tick.sequence <= durable,
                       f"a tick waiting for record {tick.sequence} was released with "
                       f"{durable} durable")
            self.release(tick)
        if not self.shell.held_ticks and not self.uncommitted:
            # The core equals the durable journal: a snapshot may be taken.
            if self.rng.random() < self.snapshot_rate:
                self.snapshot = (self.core.snapshot(len(self.journal)), self.archive.snapshot(),
                                 self._tracking())
        self.schedule_commit()
        self.schedule_decide()

    def release(self, tick) -> None:
        """Carry out a released tick as the sequencer does: messages, answers, refunds."""
        self.releases += 1
        lost = None  # a connection lost just before the release: its messages are gone
        if tick.sends and self.rng.random() < self.connection_loss_rate:
            lost = self.rng.choice(list(self.participants))
            self.connections_lost += 1
        for participant_id, message, _origin in tick.sends:
            if isinstance(message, TransferOutcome) and message.state in FINAL:
                key = (message.payer_participant_id, message.transfer_id)
                earlier = self.store.get(key)
                self.check(earlier is None or earlier.state == message.state,
                           f"{key} told {message.state.name} after {earlier and earlier.state.name}")
                self.store[key] = message
            if participant_id != lost:
                self.network("deliver", participant_id, codec.encode_outbound_msgpack(message))
        for reply_to, answer in tick.replies:
            kind, key = reply_to
            if kind == "admin":
                self.admin_pending.pop(key, None)
                if answer.result == Result.OK:
                    self._admin_durable(key)
            elif key != lost:
                self.network("deliver", key, codec.encode_outbound_msgpack(answer))
        self.refunds += len(tick.refunds)

    def crash(self) -> None:
        """Lose everything not durable: records, undecided and unreleased ticks, timers."""
        self.crashes += 1
        self.up = False
        self.uncommitted.clear()
        self.committing = 0
        self.commit_running = False
        self.decide_scheduled = False
        self.inbound_items.clear()
        self.tick_states.clear()
        self.timers.clear()
        # Newest first, so a key changed twice ends at the cap before the first change.
        for request_id, key, _net, _posted, cap_before in reversed(self.admin_uncommitted):
            self.admin_applied.discard(request_id)  # the core forgot it too: it will redo it
            if cap_before is not None:
                self.caps[key] = cap_before
        self.admin_uncommitted.clear()
        self.at(self.now_ns + self.rng.randint(20, 400) * MS, "restart")

    def core_state(self) -> tuple:
        return (self.ledger.totals(), self.core.in_flight_count, self.core.transfers_retained,
                self.core._seq)

    def _tracking(self) -> tuple:
        return (self.in_flight_minor, self.committed_minor, dict(self.reserved),
                dict(self.daily), dict(self.finals),
                {w: dict(n) for w, n in self.window_nets.items()}, dict(self.window_fees),
                dict(self.window_counts))

    def restart(self) -> None:
        """A new process: the core from a snapshot or from nothing, the journal's tail
        replayed, then a new shell re-arms the timers and re-sends what waits."""
        if self.snapshot is not None and self.rng.random() < 0.5:
            data, archived, tracking = self.snapshot
            self.archive = OutcomeArchive(ARCHIVE_MAX, self.core_config).restore(archived)
            core, position = SwitchCore.from_snapshot(
                self.core_config, self.ledger_cls, data, observer=self._observe)
            self.archive.bind(core)
            (self.in_flight_minor, self.committed_minor, reserved, daily, finals, nets, fees,
             counts) = tracking
            self.reserved, self.daily, self.finals = dict(reserved), dict(daily), dict(finals)
            self.window_nets = {w: dict(n) for w, n in nets.items()}
            self.window_fees, self.window_counts = dict(fees), dict(counts)
            self.restored_from_snapshot += 1
        else:
            self._reset_tracking()
            self.archive = OutcomeArchive(ARCHIVE_MAX, self.core_config)
            core = SwitchCore(self.core_config, self.ledger_cls(self.ledger_config),
                              observer=self._observe)
            self.archive.bind(core)
            position = 0
        self.ledger = core.ledger
        self.core = core
        core.replay((now_ns, event) for now_ns, payload in self.journal[position:]
                    for event in codec.decode_tick(payload))
        if self.last_commit is not None:
            now = self.core_state()
            self.check(now == self.last_commit,
                       f"recovery rebuilt {now}, the last commit had {self.last_commit}")
        if position:
            self.check_snapshot_equals_full_replay(core)
        self._use_core(core)
        self.up = True
        self.check_step()
        timers, holds = self.shell.recovery()
        for command in timers:
            self.arm_timer(command)
        for participant_id, message in holds:  # they restate durable decisions
            self.network("deliver", participant_id, codec.encode_outbound_msgpack(message))
        self.schedule_decide()

    def check_snapshot_equals_full_replay(self, core: SwitchCore) -> None:
        """Snapshot + the journal's tail must be the very state a replay of the whole
        journal gives: the core, its ledger and the outcome archive, byte for byte."""
        archive = OutcomeArchive(ARCHIVE_MAX, self.core_config)
        full = SwitchCore(self.core_config, self.ledger_cls(self.ledger_config),
                          observer=archive.observe)
        archive.bind(full)
        full.replay((now_ns, event) for now_ns, payload in self.journal
                    for event in codec.decode_tick(payload))
        position = len(self.journal)
        self.check(full.snapshot(position) == core.snapshot(position),
                   "snapshot + tail replay differs from a full replay of the journal")
        self.check(archive.snapshot() == self.archive.snapshot(),
                   "the outcome archive after snapshot + tail differs from a full replay")
        self.snapshot_checks += 1

    def inbound(self, sender: int, frame: bytes) -> None:
        """A frame from a participant reaches the connector: decode it (a bad one is
        answered here, as the stream connector does), then the gateway's queue."""
        if not self.up:
            return
        try:
            message = codec.decode_inbound_msgpack(frame)
        except msgspec.DecodeError as error:
            result = Result.VALIDATION_ERROR if isinstance(error, msgspec.ValidationError) else (
                Result.MALFORMED_SYNTAX)
            self.network("deliver", sender, codec.encode_outbound_msgpack(
                ErrorAnswer(result=result, detail=str(error)[:140])))
            return
        if isinstance(message, StatusQuery):  # the stream connector awaits gateway.status
            self.enqueue((ITEM_STATUS, sender, message, ("status", sender)))
        else:
            self.enqueue((ITEM_SUBMIT, sender, message, ("connection", sender)))

    def admin(self, event) -> None:
        """The operator: requests go straight to the gateway (no network), resent until
        answered (an answer is lost if the switch crashes before committing it)."""
        self.admin_pending[event.request_id] = event
        self.admin_sent[event.request_id] = event  # a resent copy may be decided after
        if self.up:
            self.enqueue((ITEM_ADMIN, 0, event, ("admin", event.request_id)))

    def _admin_durable(self, request_id: str) -> None:
        """An operator request's answer was released: what it moved is durable."""
        kept = []
        for entry in self.admin_uncommitted:
            if entry[0] == request_id:
                _request_id, key, net, posted, _cap_before = entry
                self.admin_durable[key] = self.admin_durable.get(key, 0) + net
                self.admin_posted_durable += posted
            else:
                kept.append(entry)
        self.admin_uncommitted = kept

    def _admin_effect(self, request_id: str) -> None:
        """What an operator request that answered OK did to the ledger, for the books."""
        if request_id in self.admin_applied:
            return  # an idempotent resend: nothing moved
        event = self.admin_sent.get(request_id)
        if event is None:
            return
        self.admin_applied.add(request_id)
        key = (getattr(event, "participant_id", 0), getattr(event, "currency", ""))
        if isinstance(event, FundsDeposited):
            entry = (request_id, key, event.amount_minor, event.amount_minor, None)
        elif isinstance(event, FundsWithdrawn):
            entry = (request_id, key, -event.amount_minor, event.amount_minor, None)
        elif isinstance(event, NetDebitCapSet):
            before = self.caps.get(key, 0)
            delta = event.cap_minor - before
            self.caps[key] = event.cap_minor
            entry = (request_id, key, delta, abs(delta), before)
        else:
            if isinstance(event, SchemeRulesChanged):
                self.rules[event.currency] = event.rules
            return
        self.admin_uncommitted.append(entry)

    # -- invariants ------------------------------------------------------------------------

    def check_step(self) -> None:
        ledger = self.ledger
        try:
            ledger.check_invariants()
        except AssertionError as error:
            self.fail(f"ledger invariant: {error}")
        debits_pending, debits_posted, credits_pending, credits_posted = ledger.totals()
        self.check(debits_pending == credits_pending and debits_posted == credits_posted,
                   "sum of debits != sum of credits")
        settlement_pending, settlement_posted = self.check_settlement()
        self.check(debits_pending == self.in_flight_minor + settlement_pending,
                   f"ledger holds {debits_pending} pending, in-flight transfers "
                   f"{self.in_flight_minor} + settlement postings {settlement_pending}")
        admin_posted = self.admin_posted_durable + sum(e[3] for e in self.admin_uncommitted)
        self.check(debits_posted == self.committed_minor + admin_posted + settlement_posted,
                   f"ledger posted {debits_posted}, commits {self.committed_minor} + operator "
                   f"{admin_posted} + settlement {settlement_posted}: something was posted "
                   f"twice or not at all")
        for account in ledger.lookup_accounts(self.account_ids):
            self.check(account.debits_pending + account.debits_posted <= account.credits_posted,
                       f"account {account.id} beyond its limit")
        self.check_positions()

    def _window_settled(self, window_id: int, windows: dict, rolled_into: dict) -> bool:
        """Whether a window's positions have been settled: it was, or it was aborted into
        one that was."""
        while True:
            window = windows[window_id]
            if window.state == WindowState.SETTLED:
                return True
            if window.state != WindowState.ABORTED:
                return False
            target = rolled_into.get(window_id)
            self.check(target is not None,
                       f"aborted window {window_id} rolled into no window: positions lost")
            window_id = target

    def _expected_net(self, window_id: int, windows: dict) -> dict[int, int]:
        """A window's net positions by brute force: its own commits plus those of the
        aborted windows that rolled into it (and theirs)."""
        net = dict(self.window_nets.get(window_id, {}))
        for source in windows[window_id].rolled_from:
            for participant, amount in self._expected_net(source, windows).items():
                net[participant] = net.get(participant, 0) + amount
        return {p: n for p, n in net.items() if n}

    def _expected_fees(self, window_id: int, windows: dict) -> int:
        return self.window_fees.get(window_id, 0) + sum(
            self._expected_fees(source, windows) for source in windows[window_id].rolled_from)

    def check_settlement(self) -> tuple[int, int]:
        """The settlement invariants after every step: one open window per currency;
        every closed window's positions equal a brute-force recomputation from the commits
        seen in it (and in the aborted windows rolled into it), and sum to zero with the
        fees; only settled windows have postings, each in the ledger. Returns the (pending,
        posted) settlement minor units the ledger must hold (`check_positions` follows, per
        participant)."""
        core = self.core
        windows = {w.window_id: w for w in core.settlement_windows()}
        pending = posted = 0
        carried = [c for c, _ledger_id, _model in CURRENCIES if core.currency(c) is not None]
        for currency in carried:
            open_ids = [w.window_id for w in windows.values()
                        if w.currency == currency and w.state == WindowState.OPEN]
            self.check(open_ids == [core.open_window_id(currency)],
                       f"{currency}: open windows {open_ids}")
        for window in windows.values():
            for movement in window.movements:
                if movement.code == TransferCode.SETTLEMENT_DUE:
                    posted -= movement.amount_minor
            if window.state == WindowState.OPEN:
                continue
            expected = self._expected_net(window.window_id, windows)
            self.check(window.net == expected,
                       f"window {window.window_id} net {window.net}, brute force {expected}")
            self.check(window.fees_minor == self._expected_fees(window.window_id, windows),
                       f"window {window.window_id} fees {window.fees_minor}")
            self.check(window.transfers == self.window_counts.get(window.window_id, 0),
                       f"window {window.window_id} counted {window.transfers} transfers")
            self.check(sum(window.net.values()) + window.fees_minor == 0,
                       f"window {window.window_id}: positions and fees do not sum to zero")
            self.check(window.state == WindowState.SETTLED or not window.postings,
                       f"window {window.window_id} {window.state.name} has postings")
            for participant, posting in window.postings.items():
                if not posting.seq:
                    continue
                found = self.ledger.lookup_transfers([ledger_transfer_id(posting.seq,
                                                                         Leg.RESERVE)])
                self.check(len(found) == 1 and found[0].amount_minor == abs(
                    posting.amount_minor), f"window {window.window_id}: the ledger does not "
                                           f"hold the posting of {participant}")
                posted += abs(posting.amount_minor)
        return pending, posted

    def check_positions(self) -> None:
        """Every participant's posted balance is its operator credits plus the positions
        not yet settled (deferred net: plus what it still owes) or all of them (prefunded
        gross), its positions recomputed from every commit seen."""
        core = self.core
        windows = {w.window_id: w for w in core.settlement_windows()}
        rolled_into = {source: w.window_id for w in windows.values() for source in w.rolled_from}
        carried = [c for c, _ledger_id, _model in CURRENCIES if core.currency(c) is not None]
        for participant_id in self.participants:
            for currency, _ledger_id, model in CURRENCIES:
                if currency not in carried:
                    continue
                key = (participant_id, currency)
                admin = self.admin_durable.get(key, 0) + sum(
                    e[2] for e in self.admin_uncommitted if e[1] == key)
                positions = 0
                for window_id, nets in self.window_nets.items():
                    if windows[window_id].currency != currency:
                        continue
                    if model == SettlementModel.PREFUNDED_RTGS or not self._window_settled(
                            window_id, windows, rolled_into):
                        positions += nets.get(participant_id, 0)
                due = core.settlement_dues(currency).get(participant_id, 0)
                account_id = core.account_id(participant_id, currency)
                if account_id is None:
                    continue
                (account,) = self.ledger.lookup_accounts([account_id])
                actual = account.credits_posted - account.debits_posted
                self.check(actual == admin + positions + due,
                           f"participant {participant_id} {currency}: posted {actual}, operator "
                           f"{admin} + unsettled positions {positions} + due {due}")

    def view_agrees(self, participant: Participant, outcome: TransferOutcome) -> None:
        """A final outcome a participant received agrees with the core and the ledger."""
        key = (outcome.payer_participant_id, outcome.transfer_id)
        record = self.core._transfers.get(key)
        stored = self.store.get(key)
        if record is not None:
            self.check(record.state == outcome.state,
                       f"participant {participant.participant_id} sees {key} {outcome.state.name}, "
                       f"the core {record.state.name}")
            reserve = ledger_transfer_id(record.seq, Leg.RESERVE)
            status = self.ledger.pending_status(reserve)
            if outcome.state == TransferState.COMMITTED:
                self.check(status == PendingStatus.POSTED, f"{key} committed, ledger {status!r}")
            elif record.forwarded:
                self.check(status == PendingStatus.VOIDED, f"{key} {outcome.state.name}, ledger {status!r}")
            else:
                self.check(self.ledger.lookup_transfers([reserve]) == [],
                           f"{key} refused at admission but the ledger holds its reserve")
        self.check(stored is None or stored.state == outcome.state,
                   f"{key}: store {stored and stored.state.name}, participant {outcome.state.name}")

    def check_end(self) -> None:
        self.check(self.core.in_flight_count == 0, "transfers still in flight after the drain")
        self.check(not self.core.live_timers(), "timers still armed after the drain")
        self.check(self.ledger.totals()[0] == self.check_settlement()[0],
                   "pending ledger transfers after the drain besides settlement postings")
        for record in self.core.transfer_records():
            key = (record.payer_participant_id, record.transfer_id)
            self.check(record.state in FINAL, f"{key} ended {record.state.name}")
            payer = self.participants[record.payer_participant_id]
            sent = payer.sent.get(record.transfer_id)
            if sent is not None:
                self.check(sent.view == record.state,
                           f"payer view of {key} is {sent.view}, core {record.state.name}")
            if record.forwarded:
                received = self.participants[record.payee_participant_id].received.get(key)
                if received is not None and record.state == TransferState.COMMITTED:
                    self.check(received.view == record.state,
                               f"payee view of {key} is {received.view}, core COMMITTED")
        for participant in self.participants.values():
            for sent in participant.sent.values():
                self.check(sent.view is not None,
                           f"participant {participant.participant_id} never learnt {sent.transfer_id}")
            for key, received in participant.received.items():
                self.check(received.view is not None,
                           f"payee {participant.participant_id} never learnt {key}")
        # Books: each participant's own record of money in and out equals the ledger.
        fees_total = {}
        for participant in self.participants.values():
            for currency, _ledger_id, _model in CURRENCIES:
                money_in, money_out, fees = participant.book(currency)
                fees_total[currency] = fees_total.get(currency, 0) + fees
                account_id = self.core.account_id(participant.participant_id, currency)
                (account,) = self.ledger.lookup_accounts([account_id])
                expected = (self.admin_durable.get((participant.participant_id, currency), 0)
                            + money_in - money_out - fees
                            + self.settled_minor(participant.participant_id, currency))
                actual = account.credits_posted - account.debits_posted
                self.check(actual == expected,
                           f"participant {participant.participant_id} {currency}: ledger {actual}, "
                           f"books {expected} (in {money_in}, out {money_out}, fees {fees})")
        for currency in fees_total:
            (fees_account,) = self.ledger.lookup_accounts(
                [self.core.currency(currency).hub_fees_account_id])
            self.check(fees_account.credits_posted == fees_total[currency],
                       f"hub fees {currency}: ledger {fees_account.credits_posted}, "
                       f"payers' books {fees_total[currency]}")

    def settled_minor(self, participant_id: int, currency: str) -> int:
        """What settlement posted to a deferred-net participant's account: minus its
        settled positions, plus what it still owes (the books count every transfer)."""
        state = self.core.currency(currency)
        if state.settlement_model != SettlementModel.DEFERRED_NET:
            return 0
        windows = {w.window_id: w for w in self.core.settlement_windows()}
        rolled_into = {source: w.window_id for w in windows.values() for source in w.rolled_from}
        settled = sum(nets.get(participant_id, 0) for window_id, nets in self.window_nets.items()
                      if windows[window_id].currency == currency
                      and self._window_settled(window_id, windows, rolled_into))
        return -settled + self.core.settlement_dues(currency).get(participant_id, 0)

    # -- setup and the operator --------------------------------------------------------------

    def _setup(self) -> None:
        rng = self.rng
        for currency, ledger_id, model in CURRENCIES:
            rules = SchemeRules(
                transfer_max_minor=rng.choice((20_000, 50_000)),
                daily_total_max_minor=rng.choice((200_000, 1_000_000)),
                fee_fixed_minor=rng.choice((0, 1, 5)), fee_bps=rng.choice((0, 10, 25)),
                payee_timeout_ms=rng.choice((500, 2_000, 10_000)),
            )
            self.rules[currency] = rules
            self.admin(CurrencyAdded(request_id=f"cur-{currency}", currency=currency,
                                     ledger_id=ledger_id, settlement_model=model, rules=rules))
        for participant_id in range(1, self.participant_count + 1):
            profile = rng.choice(PROFILES)
            self.participants[participant_id] = Participant(participant_id, profile)
            self.admin(ParticipantAdded(request_id=f"add-{participant_id}",
                                        participant_id=participant_id, name=f"dfsp-{participant_id}"))
            for customer in range(3):
                self.directory[("MSISDN", f"+{participant_id}00{customer}")] = (
                    participant_id, f"acc-{participant_id}-{customer}")
            for currency, _ledger_id, model in CURRENCIES:
                self.admin(ParticipantAccountOpened(request_id=f"open-{participant_id}-{currency}",
                                                    participant_id=participant_id, currency=currency))
                amount = rng.choice((0, 20_000, 100_000, 500_000))
                if model == SettlementModel.PREFUNDED_RTGS and amount:
                    self.admin(FundsDeposited(request_id=f"fund-{participant_id}-{currency}",
                                              participant_id=participant_id, currency=currency,
                                              amount_minor=amount))
                elif amount:
                    self.admin(NetDebitCapSet(request_id=f"cap-{participant_id}-{currency}",
                                              participant_id=participant_id, currency=currency,
                                              cap_minor=amount))
                if rng.random() < 0.3:  # a tight daily limit, so limits are really exercised
                    self.admin(ParticipantDailyLimitSet(
                        request_id=f"daily-{participant_id}-{currency}",
                        participant_id=participant_id, currency=currency,
                        daily_total_max_minor=rng.choice((5_000, 30_000))))
        for currency, _ledger_id, _model in CURRENCIES:  # cut-offs inside the run
            local_s = (self.now_ns // S) % 86_400
            self.admin(SettlementScheduleSet(
                request_id=f"sched-{currency}", currency=currency,
                interval_s=rng.choice((0, 1, 2, 3)),
                cutoffs_s=tuple(sorted({(local_s + rng.randint(2, 6)) % 86_400
                                        for _ in range(rng.randint(0, 2))}))))
        self._settle_setup()
        self.account_ids = [self.core.account_id(p, c) for p in self.participants
                            for c, _l, _m in CURRENCIES]
        for participant_id in self.participants:
            self.at(self.now_ns + self.rng.randint(1, 50) * MS, "tick", participant_id)
        self.at(self.now_ns + self.rng.randint(100, 1_000) * MS, "operator")
        for _ in range(self.crashes_max):
            self.at(self.now_ns + self.rng.randrange(self.run_ns), "crash")

    def _settle_setup(self) -> None:
        """Run the switch to rest at once, without faults: every setup request decided,
        durable and answered before the participants start."""
        failure_rate, self.commit_failure_rate = self.commit_failure_rate, 0.0
        while self.inbound_items or self.uncommitted or self.shell.held_ticks:
            self.decide()
            self.committing = len(self.uncommitted)
            self.commit_done()
        self.commit_failure_rate = failure_rate
        self.queue.clear()  # the switch events scheduled meanwhile: all done already
        self.decide_scheduled = self.commit_running = False
        self.check(not self.admin_pending, f"setup requests unanswered: {list(self.admin_pending)}")

    def operator(self) -> None:
        rng = self.rng
        for event in list(self.admin_pending.values()):  # resend what a crash swallowed
            self.admin(event)
        if self.now_ns >= self.end_of_run_ns:
            self.at(self.now_ns + rng.randint(200, 1_500) * MS, "operator")
            return
        participant_id = rng.choice(list(self.participants))
        currency, _ledger_id, model = rng.choice(CURRENCIES)
        request_id = f"op-{self.queue_seq}"
        choice = rng.random()
        if choice < 0.15:
            self.admin(ParticipantSuspended(request_id=request_id, participant_id=participant_id))
            self.at(self.now_ns + rng.randint(200, 2_000) * MS, "resume", participant_id)
        elif choice < 0.45:
            amount = rng.choice((10_000, 50_000))
            if model == SettlementModel.PREFUNDED_RTGS:
                event_type = FundsDeposited if rng.random() < 0.7 else FundsWithdrawn
                self.admin(event_type(request_id=request_id, participant_id=participant_id,
                                      currency=currency, amount_minor=amount))
            else:
                cap = max(0, self.caps.get((participant_id, currency), 0)
                          + rng.choice((-1, 1, 1)) * amount)
                self.admin(NetDebitCapSet(request_id=request_id, participant_id=participant_id,
                                          currency=currency, cap_minor=cap))
        elif choice < 0.6:
            self.admin(ParticipantDailyLimitSet(
                request_id=request_id, participant_id=participant_id, currency=currency,
                daily_total_max_minor=rng.choice((None, 10_000, 100_000))))
        elif choice < 0.7:
            old = self.rules[currency]
            self.admin(SchemeRulesChanged(request_id=request_id, currency=currency, rules=SchemeRules(
                transfer_max_minor=rng.choice((10_000, 50_000)),
                daily_total_max_minor=old.daily_total_max_minor,
                fee_fixed_minor=rng.choice((0, 3)), fee_bps=rng.choice((0, 15)),
                payee_timeout_ms=rng.choice((500, 3_000)))))
        elif choice < 0.76 and model == SettlementModel.DEFERRED_NET and self.up and (
                "cap_overflow" not in self.planted):
            self.overflow_by_cap_changes(currency)
        elif choice < 0.88:
            self.bump("window_close")
            window_id = self.core.open_window_id(currency)
            if rng.random() < 0.1:  # a stale proposal: the window it saw closed already
                window_id = max(1, window_id - 1)
            self.admin(SettlementWindowClosed(request_id=request_id, currency=currency,
                                              window_id=window_id))
        elif choice < 0.97:
            pending = [w for w in self.core.settlement_windows()
                       if w.state == WindowState.PENDING_SETTLEMENT]
            if pending and rng.random() < 0.9:
                window_id = rng.choice(pending).window_id
                if rng.random() < 0.7:
                    self.bump("window_confirm")
                    self.admin(SettlementConfirmed(request_id=request_id, window_id=window_id,
                                                   rtgs_reference=f"RTGS-{self.queue_seq}"))
                else:
                    self.bump("window_abort")
                    self.admin(SettlementAborted(request_id=request_id, window_id=window_id,
                                                 reason="sim"))
            else:  # confirm a window that is open or settled: refused, nothing changes
                self.bump("window_confirm_refused")
                window = self.rng.choice(self.core.settlement_windows())
                self.admin(SettlementConfirmed(request_id=request_id,
                                               window_id=window.window_id, rtgs_reference="X"))
        self.at(self.now_ns + rng.randint(200, 1_500) * MS, "operator")

    # -- participants' behaviour -------------------------------------------------------------

    def send(self, participant: Participant, message) -> None:
        if participant.up:
            self.network("inbound", participant.participant_id, codec.encode_inbound_msgpack(message))

    def alias_of(self, participant_id: int) -> Party:
        customer = self.rng.randrange(3)
        return Party(alias_type="MSISDN", alias_value=f"+{participant_id}00{customer}")

    def tick(self, participant: Participant) -> None:
        rng = self.rng
        running = self.now_ns < self.end_of_run_ns
        if participant.profile == "crashing" and running and rng.random() < 0.05:
            participant.up = False
            self.at(self.now_ns + rng.randint(100, 1_500) * MS, "participant_up",
                    participant.participant_id)
        if participant.up:
            if running:
                self.act(participant)
            self.follow_up(participant)
        self.at(self.now_ns + rng.randint(20, 150 if running else 400) * MS, "tick",
                participant.participant_id)

    def act(self, participant: Participant) -> None:
        rng = self.rng
        others = [p for p in self.participants if p != participant.participant_id]
        choice = rng.random()
        if choice < 0.55:
            currency = rng.choice(CURRENCIES)[0]
            amount = rng.choice((rng.randint(1, 2_000), rng.randint(1, 20_000),
                                 rng.randint(10_000, 60_000)))
            payee = self.alias_of(rng.choice(others))
            if rng.random() < 0.02:
                payee = Party(alias_type="MSISDN", alias_value="+0unknown")
            condition = self.new_condition() if rng.random() < CONDITIONAL_RATE else ""
            request = TransferRequest(
                transfer_id=participant.next_id("t"), payee=payee, amount_minor=amount,
                currency=currency, expires_at_ns=self.now_ns + rng.randint(1, 30) * S,
                payer_account_ref=f"acc-{participant.participant_id}-0",
                payer_user_ref=f"user-{rng.randrange(5)}", condition=condition,
            )
            self.send_transfer(participant, request, "transfer")
        elif choice < 0.65 and participant.committed_in:
            original = rng.choice(participant.committed_in)
            key = (original.payer_participant_id, original.transfer_id)
            remaining = original.amount_minor - participant.returned.get(key, 0)
            amount = rng.randint(1, max(1, remaining + (5 if rng.random() < 0.2 else 0)))
            participant.returned[key] = participant.returned.get(key, 0) + amount
            request = ReturnRequest(transfer_id=participant.next_id("r"),
                                    original=TransferRef(payer_participant_id=key[0], transfer_id=key[1]),
                                    amount_minor=amount,
                                    expires_at_ns=self.now_ns + rng.randint(2, 20) * S)
            self.send_transfer(participant, request, "return")
        elif choice < 0.72:
            request_id = participant.next_id("q")
            participant.requests[request_id] = RequestToPayState.OPEN
            self.send(participant, RequestToPay(
                request_id=request_id, payer=self.alias_of(rng.choice(others)),
                amount_minor=rng.randint(1, 5_000), currency=rng.choice(CURRENCIES)[0],
                expires_at_ns=self.now_ns + rng.randint(1, 10) * S,
                payee_account_ref=f"acc-{participant.participant_id}-1"))
        elif choice < 0.74 and participant.sent:
            # A buggy client: same id, different body. Must be refused, change nothing.
            sent = rng.choice(list(participant.sent.values()))
            if sent.kind == "transfer":
                request = codec.decode_inbound_msgpack(sent.frame)
                self.send(participant, msgspec.structs.replace(
                    request, amount_minor=request.amount_minor + 1))
        elif choice < 0.75:
            self.network("inbound", participant.participant_id, b"\x92\x01garbage")
        elif choice < 0.76 and participant.sent:
            # A rogue answer to its own transfer, as if it were the payee: a protocol error
            # (or, for an id the switch does not hold, a question to the store).
            sent = rng.choice(list(participant.sent.values()))
            self.send(participant, PayeeAnswer(payer_participant_id=participant.participant_id,
                                               transfer_id=sent.transfer_id, accepted=True))

    def new_condition(self) -> str:
        """A fulfilment the payee will know (FSPIOP: the payee's quote makes it) and its
        condition, which the payer attaches."""
        fulfilment = b64url(self.rng.getrandbits(256).to_bytes(32, "big"))
        condition = condition_of(fulfilment)
        self.fulfilments[condition] = fulfilment
        return condition

    def send_transfer(self, participant: Participant, request, kind: str) -> None:
        frame = codec.encode_inbound_msgpack(request)
        participant.sent[request.transfer_id] = Sent(
            request.transfer_id, frame, request.expires_at_ns, kind,
            next_try_ns=self.now_ns + self.rng.randint(300, 2_000) * MS,
            condition=getattr(request, "condition", ""))
        if participant.up:
            self.network("inbound", participant.participant_id, frame)

    def follow_up(self, participant: Participant) -> None:
        """Resend or ask about anything still unknown, with back-off."""
        rng = self.rng
        pid = participant.participant_id
        for sent in participant.sent.values():
            if sent.view is not None or self.now_ns < sent.next_try_ns:
                continue
            sent.next_try_ns = self.now_ns + rng.randint(500, 3_000) * MS
            if rng.random() < 0.5:
                self.send(participant, StatusQuery(payer_participant_id=pid,
                                                   transfer_id=sent.transfer_id))
            else:
                self.network("inbound", pid, sent.frame)
        for key, received in participant.received.items():
            if received.view is None and self.now_ns >= received.next_try_ns:
                received.next_try_ns = self.now_ns + rng.randint(500, 3_000) * MS
                self.send(participant, StatusQuery(payer_participant_id=key[0], transfer_id=key[1]))

    def deliver(self, participant: Participant, frame: bytes) -> None:
        if not participant.up:
            return
        message = codec.decode_outbound_msgpack(frame)
        if isinstance(message, CreditRequest):
            self.on_credit_request(participant, message)
        elif isinstance(message, TransferOutcome):
            self.on_outcome(participant, message)
        elif isinstance(message, Refused):
            self.on_refused(participant, message)
        elif isinstance(message, RequestToPayNotice):
            self.on_request_to_pay(participant, message)
        elif isinstance(message, RequestToPayOutcome):
            self.on_request_outcome(participant, message)
        elif isinstance(message, ErrorAnswer):
            pass  # our garbage frame, or a protocol error we provoked
        else:
            self.fail(f"participant got {message!r}")

    def on_credit_request(self, participant: Participant, message: CreditRequest) -> None:
        rng = self.rng
        key = (message.payer_participant_id, message.transfer_id)
        received = participant.received.get(key)
        if received is None:
            received = Received(key[0], key[1], accepted=rng.random() < 0.85,
                                deadline_ns=message.expires_at_ns,
                                next_try_ns=message.expires_at_ns + rng.randint(100, 1_000) * MS)
            if message.condition:
                roll = rng.random()
                if roll < FULFILMENT_RIGHT_RATE:
                    choice, received.fulfilment = "right", self.fulfilments.get(
                        message.condition, "")
                elif roll < FULFILMENT_RIGHT_RATE + FULFILMENT_WRONG_RATE:
                    choice = "wrong"
                    received.fulfilment = b64url(rng.getrandbits(256).to_bytes(32, "big"))
                else:
                    choice = "none"
                self.conditional_answers[choice] += 1
            participant.received[key] = received
            known = participant.views.get(key)  # the outcome overtook the request
            if known is not None:
                received.view = known.state
        profile = participant.profile
        if profile == "silent" and rng.random() < 0.7:
            return
        remaining = max(0, message.expires_at_ns - self.now_ns)
        if profile == "slow":
            delay = rng.randint(0, int(remaining * 1.3) + MS)
        elif profile == "late":
            delay = remaining + rng.randint(0, 500) * MS
        else:
            delay = rng.randint(0, 50) * MS
        answer = PayeeAnswer(payer_participant_id=key[0], transfer_id=key[1],
                             accepted=received.accepted, reason="" if received.accepted else "no",
                             fulfilment=received.fulfilment)
        self.at(self.now_ns + delay, "answer", participant.participant_id, answer)
        if profile == "double" or (profile == "flip" and rng.random() < 0.5):
            second = answer if profile == "double" else msgspec.structs.replace(
                answer, accepted=not answer.accepted)
            self.at(self.now_ns + delay + rng.randint(0, 30) * MS, "answer",
                    participant.participant_id, second)

    def on_outcome(self, participant: Participant, outcome: TransferOutcome) -> None:
        if outcome.state not in FINAL:
            return
        self.view_agrees(participant, outcome)
        key = (outcome.payer_participant_id, outcome.transfer_id)
        pid = participant.participant_id
        earlier = participant.views.get(key)
        if earlier is not None:
            self.check(earlier.state == outcome.state,
                       f"participant {pid} told {key} {earlier.state.name} then {outcome.state.name}")
        else:
            participant.views[key] = outcome
            if outcome.state == TransferState.COMMITTED:  # the books move once, on the first
                if outcome.payer_participant_id == pid:
                    book = participant.book(outcome.currency)
                    book[1] += outcome.amount_minor
                    book[2] += outcome.fee_minor
                if outcome.payee_participant_id == pid:
                    participant.book(outcome.currency)[0] += outcome.amount_minor
                    participant.committed_in.append(outcome)
        if outcome.payer_participant_id == pid:
            sent = participant.sent.get(outcome.transfer_id)
            if sent is not None:
                sent.view = outcome.state
                if sent.condition and outcome.state == TransferState.COMMITTED:
                    # The payer's proof that the payee accepted: the condition's preimage.
                    self.check(condition_of(outcome.fulfilment) == sent.condition,
                               f"{key} COMMITTED to its payer without the fulfilment")
        if outcome.payee_participant_id == pid:
            received = participant.received.get(key)
            if received is not None:
                received.view = outcome.state

    def on_refused(self, participant: Participant, refused: Refused) -> None:
        if refused.result == Result.REQUEST_NOT_FOUND:
            transfer_id = participant.decided.get((refused.scope_participant_id, refused.id))
            sent = participant.sent.get(transfer_id) if transfer_id else None
            if sent is not None and sent.request_gone_ns is None:
                sent.request_gone_ns = self.now_ns
            return
        if refused.scope_participant_id != participant.participant_id:
            return  # about someone else's id (a status query we made as payee): ask again later
        sent = participant.sent.get(refused.id)
        if sent is None or sent.view is not None:
            return
        result = refused.result
        if result == Result.TRANSFER_NOT_FOUND and sent.kind == "rtp" and (
                sent.request_gone_ns is not None
                and self.now_ns >= sent.request_gone_ns + self.answer_delay_max_ns):
            # The request-to-pay can no longer create it and a query made after that did not
            # find it: it never will exist.
            sent.view = NONE
        elif result in (Result.SERVER_BUSY, Result.SERVICE_UNAVAILABLE,
                        Result.TRANSFER_NOT_FOUND):
            # Not recorded (yet), and transient: the follow-up resends the request itself
            # (another copy may be recorded meanwhile).
            return
        if result in (Result.EXISTS_WITH_DIFFERENT_AMOUNT, Result.EXISTS_WITH_DIFFERENT_BODY):
            return  # our deliberately modified resend
        sent.view = NONE  # refused before being recorded: the switch will never have it
        self.check(self.core._transfers.get((participant.participant_id, refused.id)) is None
                   or not self.up,
                   f"{refused.id} refused with {result!r} but the core recorded it")

    def on_request_to_pay(self, participant: Participant, notice: RequestToPayNotice) -> None:
        rng = self.rng
        key = (notice.payee_participant_id, notice.request_id)
        if key not in participant.decided:
            roll = rng.random()
            if roll < 0.1:
                return  # ignore it: it expires
            if roll < 0.13:
                self.pay_request_out_of_band(participant, notice)
                return
            if rng.random() < 0.15:
                self.approve_with_a_used_id(participant, notice)
            participant.decided[key] = participant.next_id("p") if roll < 0.75 else ""
        transfer_id = participant.decided[key]
        decision = RequestToPayDecision(
            payee_participant_id=key[0], request_id=key[1], approved=bool(transfer_id),
            transfer_id=transfer_id,
            expires_at_ns=self.now_ns + rng.randint(2, 20) * S if transfer_id else 0)
        if transfer_id and transfer_id not in participant.sent:
            participant.sent[transfer_id] = Sent(
                transfer_id, codec.encode_inbound_msgpack(decision), decision.expires_at_ns, "rtp",
                next_try_ns=self.now_ns + rng.randint(500, 2_000) * MS)
        self.send(participant, decision)

    def on_request_outcome(self, participant: Participant, outcome: RequestToPayOutcome) -> None:
        pid = participant.participant_id
        if outcome.payee_participant_id == pid:
            participant.requests[outcome.request_id] = outcome.state
            if outcome.state == RequestToPayState.APPROVED:
                self.check_request_paid(outcome)
            return
        key = (outcome.payee_participant_id, outcome.request_id)
        transfer_id = participant.decided.get(key)
        if transfer_id and outcome.state != RequestToPayState.OPEN and (
                outcome.transfer_id != transfer_id):
            # The request ended without our transfer (never created, or refused when it
            # was): status queries from now on tell which.
            sent = participant.sent.get(transfer_id)
            if sent is not None and sent.request_gone_ns is None:
                sent.request_gone_ns = self.now_ns

    # -- hostile participants and operators (issue 10) -----------------------------------------

    def bump(self, name: str) -> None:
        self.planted[name] = self.planted.get(name, 0) + 1

    def approve_with_a_used_id(self, participant: Participant, notice: RequestToPayNotice) -> None:
        """A payer approves a request-to-pay naming a transfer id it already used — an
        earlier transfer, a return, a refused transfer, another request's payment — that
        the switch still holds (its expiry is ahead, so it cannot have been dropped). The
        switch must refuse it as a reused id and change nothing; the payer's honest decision
        follows. A core reading `request_to_pay_id` from a return crashed here."""
        used = [sent for sent in participant.sent.values()
                if sent.view in FINAL and sent.expires_at_ns > self.now_ns + S]
        if not used:
            return
        sent = self.rng.choice(used)
        self.bump(f"approve_with_used_{sent.kind}_id")
        self.send(participant, RequestToPayDecision(
            payee_participant_id=notice.payee_participant_id, request_id=notice.request_id,
            approved=True, transfer_id=sent.transfer_id,
            expires_at_ns=self.now_ns + self.rng.randint(2, 20) * S))

    def pay_request_out_of_band(self, participant: Participant, notice: RequestToPayNotice) -> None:
        """A payer tries to close a request-to-pay without paying it: it sends an ordinary
        transfer (to anyone, for any amount) carrying `request_to_pay_id`, then approves the
        request naming that transfer. Participants cannot set the field, so the frame is
        refused at decode and the approval creates the transfer itself; a switch that took
        the field marked the request APPROVED, caught by `check_request_paid`."""
        rng = self.rng
        pid = participant.participant_id
        key = (notice.payee_participant_id, notice.request_id)
        transfer_id = participant.next_id("p")
        others = [p for p in self.participants if p != pid]
        payee = self.alias_of(rng.choice(others))
        self.bump("pay_request_out_of_band")
        if participant.up:
            self.network("inbound", pid, msgspec.msgpack.encode({
                "type": "transfer", "transfer_id": transfer_id,
                "payee": {"alias_type": payee.alias_type, "alias_value": payee.alias_value},
                "amount_minor": rng.randint(1, 5_000), "currency": notice.currency,
                "expires_at_ns": self.now_ns + rng.randint(2, 20) * S,
                "request_to_pay_id": notice.request_id}))
        # The approval, tracked like any other (its transfer is this payer's to follow up),
        # sent once the transfer above has surely reached the switch.
        participant.decided[key] = transfer_id
        decision = RequestToPayDecision(
            payee_participant_id=key[0], request_id=key[1], approved=True,
            transfer_id=transfer_id, expires_at_ns=self.now_ns + rng.randint(2, 20) * S)
        participant.sent[transfer_id] = Sent(
            transfer_id, codec.encode_inbound_msgpack(decision), decision.expires_at_ns, "rtp",
            next_try_ns=self.now_ns + rng.randint(500, 2_000) * MS)
        self.at(self.now_ns + (self.delay_ms[1] + 2) * MS, "answer", pid, decision)

    def check_request_paid(self, outcome: RequestToPayOutcome) -> None:
        """An APPROVED request-to-pay was paid by the transfer its approval created: one the
        switch built (no payee alias), forwarded, to the requester, for the requested amount."""
        request = self.core._requests.get((outcome.payee_participant_id, outcome.request_id))
        record = self.core._transfers.get((outcome.payer_participant_id, outcome.transfer_id))
        if request is None or record is None:
            return  # dropped from the core's tables since (final and expired)
        paid_by_approval = (isinstance(record.event, TransferRequested)
                            and record.event.request.payee is None)
        self.check(paid_by_approval and record.forwarded
                   and record.payee_participant_id == outcome.payee_participant_id
                   and record.amount_minor == request.event.request.amount_minor,
                   f"request-to-pay {outcome.request_id} of {outcome.payee_participant_id} "
                   f"APPROVED by {outcome.transfer_id}, which its approval did not create "
                   f"(to {record.payee_participant_id}, {record.amount_minor} minor units)")

    def overflow_by_cap_changes(self, currency: str) -> None:
        """The operator raises one participant's net debit cap by up to
        NET_DEBIT_CAP_MINOR_MAX and lowers it back, over and over. Ledger totals only grow,
        so the hub's cap account (or the participant's) fills up: the last raise takes
        exactly the room left and is kept, and the next must be refused
        (ADMIN_ACCOUNT_OVERFLOW). The participant's account is then full or within a few
        payments of 2**64-1, so payments to it must be refused too (PAYEE_ACCOUNT_OVERFLOW).
        A core that asserted on OVERFLOWS_* crashed here, and again after every restart.
        (Deposits are bounded at AMOUNT_MINOR_MAX: ~18,400 of them would be needed;
        tests/core/test_core_ledger_results.py does that instead.)

        It picks the participant with the most credits: the one the hub's account, once
        full, leaves the least room (the hub's debits count every participant's caps, a
        participant's credits also what it was paid)."""
        self.bump("cap_overflow")
        ids = sorted(self.participants)
        credits = [a.credits_pending + a.credits_posted for a in self.ledger.lookup_accounts(
            [self.core.account_id(pid, currency) for pid in ids])]
        participant_id = ids[credits.index(max(credits))]
        self.at(self.now_ns, "cap_round", participant_id, currency, 0)

    def cap_round(self, participant_id: int, currency: str, round_: int) -> None:
        """One round of `overflow_by_cap_changes`, once the previous round's requests are
        answered (operator requests go through the shell's ticks like everything else)."""
        if self.admin_pending or not self.up:
            self.at(self.now_ns + 20 * MS, "cap_round", participant_id, currency, round_)
            return
        self.check(round_ < CAP_OVERFLOW_ROUNDS_MAX,
                   f"{CAP_OVERFLOW_ROUNDS_MAX} cap rounds did not fill an account")
        key = (participant_id, currency)
        accounts = [self.core.currency(currency).hub_liquidity_account_id,
                    self.core.account_id(participant_id, currency)]
        (hub, own) = self.ledger.lookup_accounts(accounts)
        # A raise debits the hub's cap account and credits the participant's (which may
        # have received payments the hub's account never saw): the fuller one binds.
        room = min(U64_MAX - hub.debits_pending - hub.debits_posted,
                   U64_MAX - own.credits_pending - own.credits_posted)
        before = self.caps.get(key, 0)
        if before >= NET_DEBIT_CAP_MINOR_MAX:
            return
        raise_minor = min(NET_DEBIT_CAP_MINOR_MAX - before, room)
        request_id = f"whale-{self.queue_seq}-{round_}"
        if raise_minor == 0:  # full: this raise must be refused, changing nothing
            self.admin(NetDebitCapSet(request_id=f"{request_id}-up",
                                      participant_id=participant_id, currency=currency,
                                      cap_minor=before + 1))
            return
        self.admin(NetDebitCapSet(request_id=f"{request_id}-up", participant_id=participant_id,
                                  currency=currency, cap_minor=before + raise_minor))
        if raise_minor < room:
            self.admin(NetDebitCapSet(request_id=f"{request_id}-down",
                                      participant_id=participant_id, currency=currency,
                                      cap_minor=before))
        self.at(self.now_ns + 20 * MS, "cap_round", participant_id, currency, round_ + 1)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> "Sim":
        self.end_of_run_ns = self.now_ns + self.run_ns
        self.at(self.end_of_run_ns, "drain")
        deadline = self.end_of_run_ns + 180 * S
        while self.queue:
            time_ns, _seq, kind, payload = heapq.heappop(self.queue)
            self.now_ns = max(self.now_ns, time_ns)
            if self.now_ns > deadline:
                self.fail(f"the drain did not settle within 180 s of simulated time: {self.unsettled()}")
            self.dispatch(kind, payload)
            if kind == "tick" and self.now_ns > self.end_of_run_ns and self.settled():
                break
        self.check_end()
        return self

    def unsettled(self) -> str:
        waiting = [f"up={self.up} in_flight={self.core.in_flight_count} "
                   f"timers={len(self.core.live_timers())} admin={list(self.admin_pending)}"]
        for participant in self.participants.values():
            waiting += [f"{participant.participant_id}:{s.kind}:{s.transfer_id}"
                        for s in participant.sent.values() if s.view is None]
            waiting += [f"{participant.participant_id}:payee:{k}"
                        for k, r in participant.received.items() if r.view is None]
        return ", ".join(waiting[:12])

    def settled(self) -> bool:
        if not self.up or self.uncommitted or self.inbound_items or self.shell.held_ticks:
            return False
        if self.core.in_flight_count:
            return False
        if self.core.live_timers() or self.admin_pending:
            return False
        for participant in self.participants.values():
            if any(s.view is None for s in participant.sent.values()):
                return False
            if any(r.view is None for r in participant.received.values()):
                return False
        return True

    def dispatch(self, kind: str, payload: tuple) -> None:
        if kind == "inbound":
            self.inbound(*payload)
        elif kind == "deliver":
            self.deliver(self.participants[payload[0]], payload[1])
        elif kind == "decide":
            self.decide()
        elif kind == "commit_start":
            self.commit_start()
        elif kind == "commit_done":
            self.commit_done()
        elif kind == "timer":
            timer_id, deadline_ns = payload
            if self.up and self.timers.get(timer_id) == deadline_ns:
                del self.timers[timer_id]
                self.enqueue((ITEM_TIMER, 0, TimerFired(timer_id=timer_id), None))
        elif kind == "tick":
            self.tick(self.participants[payload[0]])
        elif kind == "answer":
            participant = self.participants[payload[0]]
            self.send(participant, payload[1])
        elif kind == "participant_up":
            self.participants[payload[0]].up = True
        elif kind == "operator":
            self.operator()
        elif kind == "resume":
            self.admin(ParticipantResumed(request_id=f"resume-{self.queue_seq}",
                                          participant_id=payload[0]))
        elif kind == "crash":
            if self.up and self.now_ns < self.end_of_run_ns:
                self.crash()
        elif kind == "restart":
            self.restart()
        elif kind == "cap_round":
            self.cap_round(*payload)
        elif kind == "drain":
            # Faults stop; everyone comes back; work already started must now finish.
            self.loss = 0.0
            self.duplication = 0.0
            for participant in self.participants.values():
                participant.up = True
                if participant.profile in ("silent", "late", "slow"):
                    participant.profile = "normal"
            for event in list(self.admin_pending.values()):
                self.admin(event)
        else:
            self.fail(f"unknown sim event {kind}")


def run_seed(seed: int, ledger_cls) -> Sim:
    return Sim(seed, ledger_cls).run()
