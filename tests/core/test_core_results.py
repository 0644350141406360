"""Every `Result` member, in declaration order, produced by a real input to a real core.

`SCENARIOS` maps each member the core emits to a function that prepares a world and returns
the event that must produce exactly that member. Members the shell answers are listed in
`results.SHELL_ONLY`; the test checks the core never emits them. For every member whose
check runs before anything is recorded, the step must leave core and ledger unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core_helpers import (
    BANK_A,
    BANK_B,
    BANK_D,
    S,
    U64_MAX,
    WALLET_C,
    World,
    only,
    result_of,
)
from ledger import LedgerConfig
from switch.core.limits import NS_PER_DAY
from switch.core import CoreConfig, Result
from switch.core.messages import (
    AdminAnswer,
    ArmTimer,
    ConsultStore,
    CurrencyAdded,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    ParticipantDailyLimitSet,
    ParticipantSuspended,
    Party,
    SchemeRules,
    Send,
    SettlementConfirmed,
    SettlementScheduleSet,
    SettlementWindowClosed,
    TimerFired,
)
from switch.core.limits import SETTLEMENT_WINDOWS_PENDING_MAX
from switch.core.results import SHELL_ONLY, markdown_table
from switch.core.results import SettlementModel

ROOT = Path(__file__).resolve().parents[2]


def _timer_of(commands) -> ArmTimer:
    return only(commands, ArmTimer)


def s_ok(w):
    event, _ = w.send_transfer()
    return w.transfer_answer_event(event, True)


def s_validation_error(w):
    return CurrencyAdded(request_id="bad-usd", currency="usd", ledger_id=840,
                         settlement_model=SettlementModel.PREFUNDED_RTGS)


def s_id_invalid(w):
    return w.transfer_event(transfer_id="")


def s_transfer_not_found(w):
    from switch.core.messages import StatusQueried, StatusQuery

    return StatusQueried(participant_id=BANK_A, query=StatusQuery(
        payer_participant_id=BANK_A, transfer_id="nobody-sent-this"))


def s_request_not_found(w):
    rtp = w.rtp_event()  # never stepped
    return w.decision_event(rtp, approved=False)


def _resend(w, **change):
    event, _ = w.send_transfer(transfer_id="same-id")
    fields = dict(transfer_id="same-id", expires_at_ns=event.request.expires_at_ns)
    fields.update(change)
    return w.transfer_event(**fields)


def s_exists_party(w):
    return _resend(w, payee_alias=Party(alias_type="EMAIL", alias_value="a@b.org"))


def s_exists_amount(w):
    return _resend(w, amount_minor=999)


def s_exists_currency(w):
    return _resend(w, currency="KES")


def s_exists_body(w):
    return _resend(w, end_to_end_id="E2E-OTHER")


def s_amount_invalid(w):
    return w.transfer_event(amount_minor=0)


def s_transfer_expired(w):
    _event, commands = w.send_transfer()
    timer = _timer_of(commands)
    w.now_ns = timer.deadline_ns
    return TimerFired(timer_id=timer.timer_id)


def s_request_expired(w):
    rtp = w.rtp_event(expires_in_ns=5 * S)
    commands = w.step(rtp)
    timer = _timer_of(commands)
    w.now_ns = timer.deadline_ns
    return TimerFired(timer_id=timer.timer_id)


def s_expiry_too_far(w):
    return w.transfer_event(expires_in_ns=3600 * S)


def s_payer_not_found(w):
    return w.transfer_event(payer=99)


def s_payee_not_found(w):
    return w.transfer_event(payee=99)


def s_payer_and_payee_same(w):
    return w.transfer_event(payer=BANK_A, payee=BANK_A)


def s_currency_not_supported(w):
    return w.transfer_event(currency="USD")


def s_server_busy(w):
    for _ in range(w.config.in_flight_max):
        w.send_transfer(amount_minor=1)
    return w.transfer_event(amount_minor=1)


def s_original_not_found(w):
    ghost = w.transfer_event()  # never stepped
    return w.return_event(ghost, 10)


def s_return_original_not_committed(w):
    original, _ = w.send_transfer()  # still waiting for the payee
    return w.return_event(original, 10)


def s_return_parties_mismatch(w):
    original, _ = w.send_transfer()
    w.answer(original)
    return w.return_event(original, 10, sender=BANK_A)  # the payer cannot "return" it


def s_return_window_closed(w):
    original, _ = w.send_transfer()
    w.answer(original)
    w.advance(2 * NS_PER_DAY)  # make_world gives this scenario a one-day return window
    return w.return_event(original, 10)


def s_payer_blocked(w):
    w.admin_ok(ParticipantSuspended(request_id="susp-a", participant_id=BANK_A))
    return w.transfer_event()


def s_payee_blocked(w):
    w.admin_ok(ParticipantSuspended(request_id="susp-b", participant_id=BANK_B))
    return w.transfer_event()


def s_payer_currency_not_enabled(w):
    return w.transfer_event(payer=BANK_D, payee=WALLET_C)


def s_payee_currency_not_enabled(w):
    return w.transfer_event(payee=BANK_D)


def s_return_exceeds_original(w):
    original, _ = w.send_transfer(amount_minor=1_000)
    w.answer(original)
    first = w.return_event(original, 600)
    w.step(first)
    w.answer(first)
    return w.return_event(original, 401)


def s_amount_above_transfer_max(w):
    return w.transfer_event(amount_minor=500_001)


def s_payer_daily_limit(w):
    w.admin_ok(ParticipantDailyLimitSet(request_id="daily-a", participant_id=BANK_A,
                                        currency="BRL", daily_total_max_minor=5_000))
    w.send_transfer(amount_minor=3_000)
    return w.transfer_event(amount_minor=2_001)


def s_payee_account_overflow(w):
    w.preload(w.core.account_id(BANK_B, "BRL"), credits_minor=U64_MAX - 1_000_000 - 500)
    return w.transfer_event(amount_minor=600)


def s_hub_account_overflow(w):
    w.preload(w.core.currency("BRL").hub_fees_account_id, credits_minor=U64_MAX - 2)
    return w.transfer_event(amount_minor=1_000)  # fee 3


def s_payer_insufficient_liquidity(w):
    return w.transfer_event(payer=WALLET_C, amount_minor=1)


CONDITION_FULFILMENT = "A" * 43  # a well-formed fulfilment; its condition is computed below


def s_fulfilment_invalid(w):
    import msgspec

    from switch.core.messages import PayeeAnswered

    event, _ = w.send_transfer(condition="B" * 43)  # nobody knows a preimage of this
    answer = w.transfer_answer_event(event, True)
    return PayeeAnswered(payee_participant_id=answer.payee_participant_id,
                         answer=msgspec.structs.replace(answer.answer,
                                                        fulfilment=CONDITION_FULFILMENT))


def s_payee_rejected(w):
    event, _ = w.send_transfer()
    return w.transfer_answer_event(event, False)


def s_payer_rejected_request(w):
    rtp = w.rtp_event()
    w.step(rtp)
    return w.decision_event(rtp, approved=False)


def s_admin_currency_exists(w):
    return CurrencyAdded(request_id="brl-again", currency="BRL", ledger_id=9,
                         settlement_model=SettlementModel.PREFUNDED_RTGS)


def s_admin_currency_not_found(w):
    return ParticipantAccountOpened(request_id="open-usd", participant_id=BANK_A, currency="USD")


def s_admin_participant_exists(w):
    return ParticipantAdded(request_id="add-a-again", participant_id=BANK_A, name="bank-a2")


def s_admin_participant_not_found(w):
    return ParticipantAccountOpened(request_id="open-99", participant_id=99, currency="BRL")


def s_admin_account_exists(w):
    return ParticipantAccountOpened(request_id="open-a-again", participant_id=BANK_A,
                                    currency="BRL")


def s_admin_account_not_found(w):
    return FundsDeposited(request_id="fund-d", participant_id=BANK_D, currency="BRL",
                          amount_minor=10)


def s_admin_settlement_model_mismatch(w):
    return FundsDeposited(request_id="fund-a-kes", participant_id=BANK_A, currency="KES",
                          amount_minor=10)


def s_admin_table_full(w):
    # The small-ledger world has room for exactly the accounts it made so far.
    return ParticipantAccountOpened(request_id="open-d", participant_id=BANK_D, currency="BRL")


def s_admin_funds_insufficient(w):
    return FundsWithdrawn(request_id="drain-a", participant_id=BANK_A, currency="BRL",
                          amount_minor=1_000_001)


def s_admin_cap_below_position(w):
    event, _ = w.send_transfer(currency="KES", amount_minor=400_000)
    w.answer(event)
    return NetDebitCapSet(request_id="cap-a-low", participant_id=BANK_A, currency="KES",
                          cap_minor=300_000)


def s_admin_account_overflow(w):
    w.preload(w.core.account_id(BANK_A, "BRL"), credits_minor=U64_MAX - 1_000_000)
    return FundsDeposited(request_id="fund-a-more", participant_id=BANK_A, currency="BRL",
                          amount_minor=1)


def _kes_debtor(w, amount_minor: int = 1_000):
    """A committed KES transfer A -> B: A owes, B is owed, in the open KES window."""
    event, _ = w.send_transfer(currency="KES", amount_minor=amount_minor)
    w.answer(event)


def s_settlement_window_not_found(w):
    return SettlementConfirmed(request_id="confirm-999", window_id=999, rtgs_reference="R1")


def s_settlement_window_not_open(w):
    first = w.core.open_window_id("KES")
    w.admin_ok(SettlementWindowClosed(request_id="close-kes", currency="KES"))
    return SettlementWindowClosed(request_id="close-kes-again", currency="KES",
                                  window_id=first)


def s_settlement_window_not_pending(w):
    return SettlementConfirmed(request_id="confirm-open", window_id=w.core.open_window_id("KES"),
                               rtgs_reference="R1")


def s_settlement_schedule_invalid(w):
    return SettlementScheduleSet(request_id="sched-kes", currency="KES", cutoffs_s=(3600, 60))


def s_settlement_windows_full(w):
    for index in range(SETTLEMENT_WINDOWS_PENDING_MAX):
        _kes_debtor(w, 100)
        w.admin_ok(SettlementWindowClosed(request_id=f"close-{index}", currency="KES"))
    _kes_debtor(w, 100)
    return SettlementWindowClosed(request_id="close-one-too-many", currency="KES")


def s_settlement_account_overflow(w):
    w.preload(w.core.currency("KES").hub_settlement_account_id, debits_minor=U64_MAX - 500)
    _kes_debtor(w, 1_000)  # A's settlement credit would debit the hub's account past 2**64-1
    window_id = w.core.open_window_id("KES")
    w.admin_ok(SettlementWindowClosed(request_id="close-kes", currency="KES"))
    return SettlementConfirmed(request_id="confirm-kes", window_id=window_id,
                               rtgs_reference="R1")


SCENARIOS = {
    Result.OK: s_ok,
    Result.VALIDATION_ERROR: s_validation_error,
    Result.ID_INVALID: s_id_invalid,
    Result.TRANSFER_NOT_FOUND: s_transfer_not_found,
    Result.REQUEST_NOT_FOUND: s_request_not_found,
    Result.EXISTS_WITH_DIFFERENT_PARTY: s_exists_party,
    Result.EXISTS_WITH_DIFFERENT_AMOUNT: s_exists_amount,
    Result.EXISTS_WITH_DIFFERENT_CURRENCY: s_exists_currency,
    Result.EXISTS_WITH_DIFFERENT_BODY: s_exists_body,
    Result.AMOUNT_INVALID: s_amount_invalid,
    Result.TRANSFER_EXPIRED: s_transfer_expired,
    Result.REQUEST_EXPIRED: s_request_expired,
    Result.EXPIRY_TOO_FAR: s_expiry_too_far,
    Result.PAYER_NOT_FOUND: s_payer_not_found,
    Result.PAYEE_NOT_FOUND: s_payee_not_found,
    Result.PAYER_AND_PAYEE_SAME: s_payer_and_payee_same,
    Result.CURRENCY_NOT_SUPPORTED: s_currency_not_supported,
    Result.SERVER_BUSY: s_server_busy,
    Result.ORIGINAL_TRANSFER_NOT_FOUND: s_original_not_found,
    Result.RETURN_ORIGINAL_NOT_COMMITTED: s_return_original_not_committed,
    Result.RETURN_PARTIES_MISMATCH: s_return_parties_mismatch,
    Result.RETURN_WINDOW_CLOSED: s_return_window_closed,
    Result.PAYER_BLOCKED: s_payer_blocked,
    Result.PAYEE_BLOCKED: s_payee_blocked,
    Result.PAYER_CURRENCY_NOT_ENABLED: s_payer_currency_not_enabled,
    Result.PAYEE_CURRENCY_NOT_ENABLED: s_payee_currency_not_enabled,
    Result.RETURN_EXCEEDS_ORIGINAL: s_return_exceeds_original,
    Result.AMOUNT_ABOVE_TRANSFER_MAX: s_amount_above_transfer_max,
    Result.PAYER_DAILY_LIMIT_EXCEEDED: s_payer_daily_limit,
    Result.PAYEE_ACCOUNT_OVERFLOW: s_payee_account_overflow,
    Result.HUB_ACCOUNT_OVERFLOW: s_hub_account_overflow,
    Result.PAYER_INSUFFICIENT_LIQUIDITY: s_payer_insufficient_liquidity,
    Result.FULFILMENT_INVALID: s_fulfilment_invalid,
    Result.PAYEE_REJECTED: s_payee_rejected,
    Result.PAYER_REJECTED_REQUEST: s_payer_rejected_request,
    Result.ADMIN_CURRENCY_EXISTS: s_admin_currency_exists,
    Result.ADMIN_CURRENCY_NOT_FOUND: s_admin_currency_not_found,
    Result.ADMIN_PARTICIPANT_EXISTS: s_admin_participant_exists,
    Result.ADMIN_PARTICIPANT_NOT_FOUND: s_admin_participant_not_found,
    Result.ADMIN_ACCOUNT_EXISTS: s_admin_account_exists,
    Result.ADMIN_ACCOUNT_NOT_FOUND: s_admin_account_not_found,
    Result.ADMIN_SETTLEMENT_MODEL_MISMATCH: s_admin_settlement_model_mismatch,
    Result.ADMIN_TABLE_FULL: s_admin_table_full,
    Result.ADMIN_FUNDS_INSUFFICIENT: s_admin_funds_insufficient,
    Result.ADMIN_CAP_BELOW_POSITION: s_admin_cap_below_position,
    Result.ADMIN_ACCOUNT_OVERFLOW: s_admin_account_overflow,
    Result.SETTLEMENT_WINDOW_NOT_FOUND: s_settlement_window_not_found,
    Result.SETTLEMENT_WINDOW_NOT_OPEN: s_settlement_window_not_open,
    Result.SETTLEMENT_WINDOW_NOT_PENDING: s_settlement_window_not_pending,
    Result.SETTLEMENT_SCHEDULE_INVALID: s_settlement_schedule_invalid,
    Result.SETTLEMENT_WINDOWS_FULL: s_settlement_windows_full,
    Result.SETTLEMENT_ACCOUNT_OVERFLOW: s_settlement_account_overflow,
}

# Checks that run before anything is recorded: the step must change nothing at all.
UNRECORDED = {
    Result.VALIDATION_ERROR, Result.ID_INVALID, Result.TRANSFER_NOT_FOUND,
    Result.REQUEST_NOT_FOUND, Result.EXISTS_WITH_DIFFERENT_PARTY,
    Result.EXISTS_WITH_DIFFERENT_AMOUNT, Result.EXISTS_WITH_DIFFERENT_CURRENCY,
    Result.EXISTS_WITH_DIFFERENT_BODY, Result.AMOUNT_INVALID, Result.EXPIRY_TOO_FAR,
    Result.PAYER_NOT_FOUND, Result.PAYEE_NOT_FOUND, Result.PAYER_AND_PAYEE_SAME,
    Result.CURRENCY_NOT_SUPPORTED, Result.SERVER_BUSY,
} | {member for member in Result if member.name.startswith(("ADMIN_", "SETTLEMENT_"))
     and member not in SHELL_ONLY}

# Recorded refusals: the transfer is kept (a resend gets the same answer) but no money moves.
# All but the reserve's own refusals (account overflows, liquidity) decide before the ledger
# is asked; the ledger refuses those itself (it still consumes a timestamp and remembers the
# failed id, but moves nothing).
LEDGER_REFUSED = {Result.PAYEE_ACCOUNT_OVERFLOW, Result.HUB_ACCOUNT_OVERFLOW,
                  Result.PAYER_INSUFFICIENT_LIQUIDITY}
REFUSED_AT_ADMISSION = {
    Result.ORIGINAL_TRANSFER_NOT_FOUND, Result.RETURN_ORIGINAL_NOT_COMMITTED,
    Result.RETURN_PARTIES_MISMATCH, Result.RETURN_WINDOW_CLOSED, Result.PAYER_BLOCKED,
    Result.PAYEE_BLOCKED,
    Result.PAYER_CURRENCY_NOT_ENABLED, Result.PAYEE_CURRENCY_NOT_ENABLED,
    Result.RETURN_EXCEEDS_ORIGINAL, Result.AMOUNT_ABOVE_TRANSFER_MAX,
    Result.PAYER_DAILY_LIMIT_EXCEEDED,
} | LEDGER_REFUSED


def make_world(ledger_cls, member: Result) -> World:
    if member is Result.RETURN_WINDOW_CLOSED:
        return World(ledger_cls, rules=SchemeRules(return_window_days=1))
    if member is Result.ADMIN_TABLE_FULL:
        # 2 currencies x 2-3 hub accounts + 3 participants x 2 currencies = 11 accounts.
        return World(ledger_cls, ledger_config=LedgerConfig(
            accounts_max=11, transfers_retained_max=1 << 12, pending_max=1 << 10))
    if member is Result.SERVER_BUSY:
        return World(ledger_cls, config=CoreConfig(
            transfers_retained_max=100, in_flight_max=5, debug_checks=True))
    return World(ledger_cls)


def test_scenarios_walk_the_enum_in_declaration_order():
    core_members = [member for member in Result if member not in SHELL_ONLY]
    assert list(SCENARIOS) == core_members
    assert UNRECORDED <= set(SCENARIOS)
    assert REFUSED_AT_ADMISSION <= set(SCENARIOS) - UNRECORDED


@pytest.mark.parametrize("member", list(SCENARIOS), ids=lambda m: m.name)
def test_each_result_is_produced_by_a_real_input(ledger_cls, member):
    world = make_world(ledger_cls, member)
    event = SCENARIOS[member](world)
    before = world.fingerprint()
    ledger_before, balances_before = world.ledger.digest(), _balances(world)
    commands = world.step(event)
    assert result_of(commands) == member, commands
    if member in UNRECORDED:
        assert world.fingerprint() == before, f"{member.name} changed state"
    if member in REFUSED_AT_ADMISSION:
        assert _balances(world) == balances_before, f"{member.name} moved money"
        if member not in LEDGER_REFUSED:
            assert world.ledger.digest() == ledger_before, f"{member.name} reached the ledger"
    emitted = {result_of([c]) for c in commands if _carries_result(c)}
    assert not emitted & SHELL_ONLY


def _balances(world: World) -> list:
    """The ledger's totals and the balances of every participant and hub account."""
    accounts = world.ledger.lookup_accounts(
        [world.core.account_id(p, c) for p in (BANK_A, BANK_B, WALLET_C) for c in ("BRL", "KES")]
        + [getattr(world.core.currency(c), name) for c in ("BRL", "KES")
           for name in ("hub_fees_account_id", "hub_liquidity_account_id")])
    assert len(accounts) == 10
    return [world.ledger.totals()] + [
        (a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in accounts]


def _carries_result(command) -> bool:
    return isinstance(command, (AdminAnswer, ConsultStore)) or (
        isinstance(command, Send) and hasattr(command.message, "result"))


def test_check_order_earlier_check_wins(world):
    """A request failing several checks gets the one declared first."""
    cases = [
        (world.transfer_event(transfer_id="", amount_minor=0), Result.ID_INVALID),
        (world.transfer_event(amount_minor=0, expires_in_ns=3600 * S), Result.AMOUNT_INVALID),
        (world.transfer_event(payer=99, currency="USD"), Result.PAYER_NOT_FOUND),
        (world.transfer_event(payee=BANK_A, currency="USD"), Result.PAYER_AND_PAYEE_SAME),
    ]
    for event, expected in cases:
        assert result_of(world.step(event)) == expected
    world.admin_ok(ParticipantSuspended(request_id="s-a", participant_id=BANK_A))
    world.admin_ok(ParticipantSuspended(request_id="s-b", participant_id=BANK_B))
    assert result_of(world.step(world.transfer_event(amount_minor=600_000))) == (
        Result.PAYER_BLOCKED)


def test_check_order_limits_before_liquidity(ledger_cls):
    world = World(ledger_cls, rules=SchemeRules(transfer_max_minor=100, daily_total_max_minor=150))
    assert result_of(world.step(world.transfer_event(payer=WALLET_C, amount_minor=101))) == (
        Result.AMOUNT_ABOVE_TRANSFER_MAX)
    world.send_transfer(amount_minor=100)
    assert result_of(world.step(world.transfer_event(amount_minor=100))) == (
        Result.PAYER_DAILY_LIMIT_EXCEEDED)


def test_docs_table_is_generated_from_the_enum():
    # The ISO 20022 connector adds its reason-code column (connectors/iso20022/codes.py).
    from connectors.iso20022.codes import result_codes_markdown

    text = (ROOT / "docs" / "result-codes.md").read_text()
    assert text == result_codes_markdown()
    assert text.startswith(markdown_table().split("| code |")[0])


def test_numbers_follow_the_fspiop_families():
    from switch.core.results import family

    assert family(Result.PAYER_INSUFFICIENT_LIQUIDITY) == "payer"
    assert family(Result.PAYEE_REJECTED) == "payee"
    assert family(Result.TRANSFER_EXPIRED) == "expired"
    assert family(Result.TRANSFER_NOT_FOUND) == "not found"
    assert family(Result.AMOUNT_INVALID) == "validation"
    for member in Result:
        if member.name.startswith(("ADMIN_", "SETTLEMENT_")):
            assert 6000 <= member < 7000
        elif member is not Result.OK:
            assert 1000 <= member < 6000


def test_the_state_graphs_in_docs_core_md_are_generated_from_the_records():
    from switch.core.records import state_graphs_markdown

    text = (ROOT / "docs" / "core.md").read_text()
    start = text.index("<!-- state graphs: generated -->\n") + len("<!-- state graphs: generated -->\n")
    end = text.index("<!-- end state graphs -->")
    assert text[start:end] == state_graphs_markdown()


def test_every_transition_the_core_takes_is_an_edge_of_its_graph(ledger_cls):
    """Drive transfers and requests-to-pay through every edge and watch each transition
    through the observer: each one is in TRANSFER_NEXT (the core also asserts it)."""
    from core_helpers import S, World

    from switch.core.records import TRANSFER_NEXT
    from switch.core.results import TransferState

    seen: dict[tuple[int, str], TransferState] = {}
    edges = set()

    def observe(payer, transfer_id, state, now_ns):
        before = seen.get((payer, transfer_id))
        if before is not None:
            assert state in TRANSFER_NEXT[before], (before, state)
            edges.add((before, state))
        seen[(payer, transfer_id)] = state

    world = World(ledger_cls, observer=observe)
    for accepted in (True, False):
        event, _ = world.send_transfer()
        world.answer(event, accepted=accepted)
    event, _ = world.send_transfer(expires_in_ns=S)  # expires: the timer fires after it
    record = world.record(event.payer_participant_id, event.request.transfer_id)
    world.advance(2 * S)
    world.fire(record.seq)
    world.send_transfer(amount_minor=10**14)  # beyond the payer's funds: refused, recorded
    assert edges == {(a, b) for a, nxt in TRANSFER_NEXT.items() for b in nxt}
