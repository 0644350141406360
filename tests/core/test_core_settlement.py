"""Settlement windows in the core: positions against a brute-force recomputation from every
committed transfer, the sum of positions, closes that open the next window in the same
step, confirmation and abort in the ledger, dues, schedules and timers, snapshots and
replay — on both ledger twins. Bad operator input changes nothing (the result table test
walks every member; here the settlement sequences around them)."""

from __future__ import annotations

import random

import pytest

from core_helpers import BANK_A, BANK_B, MS, S, T0, WALLET_C, World, fingerprint, only
from switch.core import SwitchCore
from switch.core.accounts import Leg, TransferCode, ledger_transfer_id
from switch.core.limits import SETTLEMENT_TIMER_BASE
from switch.core.messages import (
    AdminAnswer,
    ArmTimer,
    FundsDeposited,
    NetDebitCapSet,
    SettlementAborted,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    TimerFired,
)
from switch.core.results import Result, TransferState, WindowState
from switch.core.settlement import WINDOW_NEXT, next_cutoff_ns

KES_TIMER = SETTLEMENT_TIMER_BASE + 404


class Commits:
    """The core's observer: every committed transfer with the window open when it committed
    (the brute-force side of the comparison)."""

    def __init__(self) -> None:
        self.core = None
        self.rows: list[tuple[int, int, int, int, int, str]] = []

    def __call__(self, payer: int, transfer_id: str, state: TransferState, now_ns: int) -> None:
        if state != TransferState.COMMITTED:
            return
        record = self.core.transfer_record(payer, transfer_id)
        self.rows.append((self.core.open_window_id(record.currency), record.payer_participant_id,
                          record.payee_participant_id, record.amount_minor, record.fee_minor,
                          record.currency))

    def nets(self, window_id: int) -> tuple[dict[int, int], int, int, int]:
        """(net by participant, fees, transfers, volume) of one window, from the rows."""
        net: dict[int, int] = {}
        fees = count = volume = 0
        for window, payer, payee, amount, fee, _currency in self.rows:
            if window != window_id:
                continue
            net[payer] = net.get(payer, 0) - amount - fee
            net[payee] = net.get(payee, 0) + amount
            fees += fee
            count += 1
            volume += amount
        return {p: n for p, n in net.items() if n}, fees, count, volume


def window_transfer_ids(world: World) -> list[str]:
    """Ids of the transfers sent so far, in order (World numbers them t1, t2, ...)."""
    return [f"t{n}" for n in range(1, world.sequence + 1)]


def recorded_world(ledger_cls) -> tuple[World, Commits]:
    commits = Commits()
    world = World(ledger_cls, observer=commits)
    commits.core = world.core
    return world, commits


def close(world: World, currency: str, request_id: str) -> AdminAnswer:
    return world.admin(SettlementWindowClosed(request_id=request_id, currency=currency))


def pay(world: World, payer: int, payee: int, amount_minor: int, currency: str = "KES",
        accept: bool = True):
    event, commands = world.send_transfer(payer=payer, payee=payee, amount_minor=amount_minor,
                                          currency=currency)
    if accept is not None:
        world.answer(event, accept)
    return event


def traffic(world: World, rng: random.Random, count: int, currency: str) -> list:
    """Random payments, returns, rejections and transfers left in flight."""
    in_flight = []
    committed = []
    for _ in range(count):
        payer, payee = rng.sample((BANK_A, BANK_B, WALLET_C), 2)
        choice = rng.random()
        event, commands = world.send_transfer(payer=payer, payee=payee, currency=currency,
                                              amount_minor=rng.randint(1, 5_000))
        if not any(getattr(c, "message", None) and type(c.message).__name__ == "CreditRequest"
                   for c in commands):
            continue  # refused (liquidity): nothing to answer
        if choice < 0.6:
            world.answer(event, True)
            committed.append(event)
        elif choice < 0.75:
            world.answer(event, False)
        else:
            in_flight.append(event)
        if committed and rng.random() < 0.1:
            original = rng.choice(committed)
            payee_id = world.payee_of(original)
            ret = world.return_event(original, rng.randint(1, 50))
            answer = world.step(ret)
            if any(type(getattr(c, "message", None)).__name__ == "CreditRequest" for c in answer):
                world.answer(ret, True)
            del payee_id
        world.advance(rng.randint(1, 20) * MS)
    return in_flight


# -- positions -------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["KES", "BRL"])
def test_positions_equal_a_brute_force_recomputation_of_every_committed_transfer(
        ledger_cls, currency):
    world, commits = recorded_world(ledger_cls)
    rng = random.Random(12)
    closed = []
    for round_ in range(4):
        in_flight = traffic(world, rng, 60, currency)
        # Operator postings inside the window are not transfers: they must not count.
        if currency == "BRL":
            world.admin_ok(FundsDeposited(request_id=f"fund-round-{round_}", participant_id=WALLET_C,
                                          currency="BRL", amount_minor=5_000))
        else:
            world.admin_ok(NetDebitCapSet(request_id=f"cap-round-{round_}", participant_id=WALLET_C,
                                          currency="KES", cap_minor=5_000 * (round_ + 1)))
        window_id = world.core.open_window_id(currency)
        answer = close(world, currency, f"close-{round_}")
        assert answer.result == Result.OK, answer
        assert world.core.open_window_id(currency) > window_id  # a new one, same step
        closed.append(window_id)
        # Transfers in flight at the close commit in the next window.
        for event in in_flight:
            world.answer(event, rng.random() < 0.7)
        if currency == "KES":
            window = world.core.settlement_window(window_id)
            if window.state == WindowState.PENDING_SETTLEMENT:
                world.admin_ok(SettlementConfirmed(request_id=f"ok-{round_}",
                                                   window_id=window_id, rtgs_reference="R1"))
    for window_id in closed:
        window = world.core.settlement_window(window_id)
        net, fees, count, volume = commits.nets(window_id)
        assert window.net == net
        assert window.fees_minor == fees
        assert (window.transfers, window.volume_minor) == (count, volume)
        assert sum(window.net.values()) + window.fees_minor == 0
        gross_in: dict[int, int] = {}
        for payer, payee, amount in window.pairs():
            gross_in[payee] = gross_in.get(payee, 0) + amount
            gross_in[payer] = gross_in.get(payer, 0) - amount
        for participant, position in gross_in.items():  # the matrix behind the nets
            assert position - net.get(participant, 0) >= 0  # the difference is its fees
    assert {row[0] for row in commits.rows} <= set(closed) | {
        world.core.open_window_id(currency)}


def test_every_commit_is_in_exactly_one_window_across_closes(ledger_cls):
    world, commits = recorded_world(ledger_cls)
    rng = random.Random(3)
    for round_ in range(5):
        traffic(world, rng, 30, "KES")
        close(world, "KES", f"c{round_}")
    counted = sum(w.transfers for w in world.core.settlement_windows("KES"))
    assert counted == len([r for r in commits.rows if r[5] == "KES"])


def test_a_prefunded_window_settles_as_it_closes(ledger_cls):
    world, commits = recorded_world(ledger_cls)
    pay(world, BANK_A, BANK_B, 10_000, "BRL")
    window_id = world.core.open_window_id("BRL")
    ledger_before = world.ledger.totals()
    assert close(world, "BRL", "close-brl").result == Result.OK
    window = world.core.settlement_window(window_id)
    assert window.state == WindowState.SETTLED
    assert window.net == commits.nets(window_id)[0]
    assert window.postings == {}
    assert world.ledger.totals() == ledger_before  # gross: nothing to post


# -- deferred net: confirm, abort, dues ----------------------------------------------------


def test_confirmation_posts_the_net_positions_and_restores_room_under_the_cap(ledger_cls):
    world, _commits = recorded_world(ledger_cls)
    pay(world, BANK_A, BANK_B, 300_000)
    pay(world, BANK_B, BANK_A, 100_000)
    room_before = world.available(BANK_A, "KES")
    window_id = world.core.open_window_id("KES")
    assert close(world, "KES", "close").result == Result.OK
    window = world.core.settlement_window(window_id)
    assert window.state == WindowState.PENDING_SETTLEMENT
    fee_a = world.record(BANK_A, window_transfer_ids(world)[0]).fee_minor
    fee_b = window.fees_minor - fee_a
    assert window.net == {BANK_A: -200_000 - fee_a, BANK_B: 200_000 - fee_b}
    # Nothing moves before the RTGS has settled.
    assert world.available(BANK_A, "KES") == room_before
    ledger_before = world.ledger.totals()
    answer = world.admin(SettlementConfirmed(request_id="rtgs-1", window_id=window_id,
                                             rtgs_reference="RTGS-0001"))
    assert answer.result == Result.OK
    assert window.state == WindowState.SETTLED and window.rtgs_reference == "RTGS-0001"
    # A's net debit (what it paid at the RTGS) is restored: its room is its cap again.
    assert world.available(BANK_A, "KES") == 1_000_000
    # ... and B gave back what the RTGS paid it: its room is its cap again too.
    assert world.available(BANK_B, "KES") == 1_000_000
    hub = world.ledger.lookup_accounts([world.core.currency("KES").hub_settlement_account_id])[0]
    assert hub.debits_posted - hub.credits_posted == window.fees_minor  # the scheme's fees
    assert world.ledger.totals()[1] == ledger_before[1] + sum(
        abs(n) for n in window.net.values())  # one posting per position, all at once
    for participant, posting in window.postings.items():
        (transfer,) = world.ledger.lookup_transfers([ledger_transfer_id(posting.seq, Leg.RESERVE)])
        assert transfer.amount_minor == abs(window.net[participant])
        assert transfer.code == (TransferCode.SETTLEMENT_CREDIT if posting.amount_minor > 0
                                 else TransferCode.SETTLEMENT_DEBIT)


def test_confirm_twice_confirm_an_open_window_and_an_unknown_one_change_nothing(ledger_cls):
    world, _ = recorded_world(ledger_cls)
    pay(world, BANK_A, BANK_B, 1_000)
    window_id = world.core.open_window_id("KES")
    close(world, "KES", "close")
    confirm = SettlementConfirmed(request_id="rtgs-1", window_id=window_id, rtgs_reference="R1")
    assert world.admin(confirm).result == Result.OK
    before = fingerprint(world.core)
    assert world.admin(confirm).result == Result.OK  # the same request: answered again
    again = SettlementConfirmed(request_id="rtgs-2", window_id=window_id, rtgs_reference="R2")
    assert world.admin(again).result == Result.SETTLEMENT_WINDOW_NOT_PENDING
    open_id = world.core.open_window_id("KES")
    assert world.admin(SettlementConfirmed(request_id="rtgs-3", window_id=open_id,
                                           rtgs_reference="R3")).result == (
        Result.SETTLEMENT_WINDOW_NOT_PENDING)
    assert world.admin(SettlementAborted(request_id="abort-1", window_id=window_id)).result == (
        Result.SETTLEMENT_WINDOW_NOT_PENDING)
    assert world.admin(SettlementConfirmed(request_id="rtgs-4", window_id=10**6,
                                           rtgs_reference="R4")).result == (
        Result.SETTLEMENT_WINDOW_NOT_FOUND)
    assert fingerprint(world.core) == before


def test_an_aborted_window_rolls_over_and_nothing_is_lost_or_counted_twice(ledger_cls):
    world, commits = recorded_world(ledger_cls)
    rng = random.Random(5)
    waiting = traffic(world, rng, 40, "KES")
    first = world.core.open_window_id("KES")
    close(world, "KES", "close-1")
    pending = world.core.settlement_window(first)
    assert pending.state == WindowState.PENDING_SETTLEMENT
    ledger_before = world.ledger.digest()
    assert world.admin(SettlementAborted(request_id="abort-1", window_id=first,
                                         reason="RTGS down")).result == Result.OK
    assert pending.state == WindowState.ABORTED and pending.postings == {}
    assert world.ledger.digest() == ledger_before  # nothing was posted, nothing is
    second = world.core.open_window_id("KES")
    assert world.core.settlement_window(second).rolled_from == [first]
    waiting += traffic(world, rng, 40, "KES")
    for event in waiting:  # nothing left in flight: every position ends settled
        world.answer(event, False)
    close(world, "KES", "close-2")
    rolled = world.core.settlement_window(second)
    own, own_fees, own_count, _ = commits.nets(second)
    old, old_fees, old_count, _ = commits.nets(first)
    expected = {p: own.get(p, 0) + old.get(p, 0) for p in set(own) | set(old)}
    assert rolled.net == {p: n for p, n in expected.items() if n}
    assert rolled.fees_minor == own_fees + old_fees
    assert (rolled.transfers, rolled.rolled_transfers) == (own_count, old_count)
    assert sum(rolled.net.values()) + rolled.fees_minor == 0
    world.admin_ok(SettlementConfirmed(request_id="ok-2", window_id=second,
                                       rtgs_reference="R2"))
    # Every position is settled: each account is back to its cap (A, B) or zero (C).
    for participant, cap in ((BANK_A, 1_000_000), (BANK_B, 1_000_000), (WALLET_C, 0)):
        debits_pending, debits_posted, _cp, credits_posted = world.balance(participant, "KES")
        assert (credits_posted - debits_posted, debits_pending) == (cap, 0), participant


def test_a_creditor_that_spent_what_it_is_owed_owes_a_due_collected_later(ledger_cls):
    world, _ = recorded_world(ledger_cls)
    pay(world, BANK_A, WALLET_C, 50_000)  # C (cap 0) is owed 50,000
    spend, _ = world.send_transfer(payer=WALLET_C, payee=BANK_B, amount_minor=30_000,
                                   currency="KES")  # ... and spends 30,000 of it, in flight
    window_id = world.core.open_window_id("KES")
    close(world, "KES", "close")
    world.answer(spend, True)  # commits in the next window
    world.admin_ok(SettlementConfirmed(request_id="ok", window_id=window_id,
                                       rtgs_reference="R1"))
    posting = world.core.settlement_window(window_id).postings[WALLET_C]
    spent = 30_000 + world.record(WALLET_C, spend.request.transfer_id).fee_minor
    assert posting.net_minor == 50_000 and posting.amount_minor == -(50_000 - spent)  # free
    assert world.core.settlement_dues("KES") == {WALLET_C: spent}
    _dp, debits_posted, _cp, credits_posted = world.balance(WALLET_C, "KES")
    assert credits_posted - debits_posted == 0  # of 50,000: the free part paid out, the rest spent
    pay(world, BANK_B, WALLET_C, 45_000)
    close(world, "KES", "close-2")  # collected as far as C's account allows: all of it
    assert world.core.settlement_dues("KES") == {}
    open_window = world.core.settlement_open_window("KES")
    assert [(m.participant_id, m.amount_minor, m.code) for m in open_window.movements] == [
        (WALLET_C, -spent, int(TransferCode.SETTLEMENT_DUE))]
    _dp, debits_posted, _cp, credits_posted = world.balance(WALLET_C, "KES")
    assert credits_posted - debits_posted == 45_000 - spent  # received since, less the due


def test_a_window_with_nothing_to_settle_settles_as_it_closes(ledger_cls):
    world, _ = recorded_world(ledger_cls)
    window_id = world.core.open_window_id("KES")
    close(world, "KES", "close-empty")
    assert world.core.settlement_window(window_id).state == WindowState.SETTLED


def test_transitions_follow_the_window_graph(ledger_cls):
    world, _ = recorded_world(ledger_cls)
    seen = set()
    for round_, end in enumerate(("confirm", "abort", "confirm")):
        pay(world, BANK_A, BANK_B, 1_000 + round_)
        window_id = world.core.open_window_id("KES")
        close(world, "KES", f"c{round_}")
        window = world.core.settlement_window(window_id)
        seen.add((WindowState.OPEN, WindowState.CLOSED))
        seen.add((WindowState.CLOSED, window.state))
        event = (SettlementConfirmed(request_id=f"ok{round_}", window_id=window_id,
                                     rtgs_reference="R") if end == "confirm" else
                 SettlementAborted(request_id=f"ab{round_}", window_id=window_id))
        world.admin_ok(event)
        seen.add((WindowState.PENDING_SETTLEMENT, window.state))
    close(world, "BRL", "brl")
    seen.add((WindowState.CLOSED, WindowState.SETTLED))
    assert seen == {(a, b) for a, nxt in WINDOW_NEXT.items() for b in nxt}


# -- schedules and timers ------------------------------------------------------------------


DAY = 86_400 * S


def test_next_cutoff_by_interval_and_local_times():
    midnight = T0 // DAY * DAY
    four_h = 4 * 3600
    assert next_cutoff_ns(four_h, (), 0, midnight) == midnight + 4 * 3600 * S
    assert next_cutoff_ns(four_h, (), 0, midnight + 1) == midnight + 4 * 3600 * S
    assert next_cutoff_ns(four_h, (), 0, midnight + 23 * 3600 * S) == midnight + DAY
    # 17:00 at UTC-3 is 20:00 UTC.
    assert next_cutoff_ns(0, (17 * 3600,), -3 * 3600, midnight) == midnight + 20 * 3600 * S
    assert next_cutoff_ns(0, (17 * 3600,), -3 * 3600, midnight + 20 * 3600 * S) == (
        midnight + DAY + 20 * 3600 * S)
    # Both: the earlier wins.
    assert next_cutoff_ns(7 * 3600, (17 * 3600,), 0, midnight + 15 * 3600 * S) == (
        midnight + 17 * 3600 * S)
    # A day that the interval does not divide restarts at midnight.
    assert next_cutoff_ns(5 * 3600, (), 0, midnight + 21 * 3600 * S) == midnight + DAY
    assert next_cutoff_ns(0, (), 0, midnight) == 0


def test_a_schedule_closes_windows_at_its_cut_offs_through_the_core_timer(ledger_cls):
    world, _ = recorded_world(ledger_cls)
    commands = world.step(SettlementScheduleSet(request_id="sched", currency="KES",
                                                interval_s=3600))
    timer = only(commands, ArmTimer)
    assert timer.timer_id == KES_TIMER
    first = world.core.open_window_id("KES")
    pay(world, BANK_A, BANK_B, 1_000)
    early = world.step(TimerFired(timer_id=KES_TIMER), timer.deadline_ns - 1)
    assert only(early, ArmTimer).deadline_ns == timer.deadline_ns  # early: armed again
    assert world.core.open_window_id("KES") == first
    fired = world.step(TimerFired(timer_id=KES_TIMER), timer.deadline_ns)
    assert only(fired, ArmTimer).deadline_ns == timer.deadline_ns + 3600 * S
    window = world.core.settlement_window(first)
    assert window.state == WindowState.PENDING_SETTLEMENT and window.closed_by == "schedule"
    # A duplicate firing after a restart changes nothing.
    before = fingerprint(world.core)
    again = world.step(TimerFired(timer_id=KES_TIMER), timer.deadline_ns)
    assert only(again, ArmTimer).deadline_ns == timer.deadline_ns + 3600 * S
    assert fingerprint(world.core) == before
    # The restart re-arms it.
    assert ArmTimer(timer_id=KES_TIMER, deadline_ns=timer.deadline_ns + 3600 * S) in (
        world.core.recovery_commands())


# -- snapshots and replay -----------------------------------------------------------------


def test_replay_and_snapshot_rebuild_windows_exactly(ledger_cls):
    world, _ = recorded_world(ledger_cls)
    rng = random.Random(9)
    commands = world.step(SettlementScheduleSet(request_id="sched", currency="KES",
                                                interval_s=60))
    assert commands[0].result == Result.OK
    traffic(world, rng, 30, "KES")
    first = world.core.open_window_id("KES")
    close(world, "KES", "c1")
    traffic(world, rng, 30, "KES")
    snapshot = world.core.snapshot(len(world.events))
    # From the snapshot: confirm the pending window and keep going; so does the original.
    restored, position = SwitchCore.from_snapshot(world.config, ledger_cls, snapshot)
    assert position == len(world.events)
    assert fingerprint(restored) == fingerprint(world.core)
    tail = [SettlementConfirmed(request_id="ok", window_id=first, rtgs_reference="R")]
    for event in tail:
        world.step(event)
        restored.step(event, world.now_ns)
    assert fingerprint(restored) == fingerprint(world.core)
    replayed = SwitchCore(world.config, ledger_cls(world.ledger.config))
    replayed.replay(world.events)
    assert fingerprint(replayed) == fingerprint(world.core)


def test_the_window_graph_in_docs_settlement_md_is_generated_from_the_core():
    from pathlib import Path

    from switch.core.settlement import window_graph_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "settlement.md").read_text()
    start = text.index("<!-- window graph: generated -->\n") + len(
        "<!-- window graph: generated -->\n")
    end = text.index("<!-- end window graph -->")
    assert text[start:end] == window_graph_markdown()
