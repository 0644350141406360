"""The transfer state machine: events in, commands out, for every state and transition."""

from __future__ import annotations

import pytest

from core_helpers import (
    BANK_A,
    BANK_B,
    MS,
    S,
    WALLET_C,
    World,
    only,
    outcome_to,
    refusal,
    sends,
)
from ledger import PendingStatus
from switch.core import ProtocolError, Result, TransferState
from switch.core.accounts import Leg, ledger_transfer_id
from switch.core.messages import (
    ArmTimer,
    CancelTimer,
    ConsultStore,
    CreditRequest,
    Party,
    RefundLookupToken,
    Send,
    TransferOutcome,
)


def test_an_observer_marked_finals_only_is_told_the_final_state_alone(ledger_cls):
    """The server's observers (archive, settlement entry log) want final states only and
    say so (`finals_only`): the core does not call them for the others."""
    every, finals = [], []

    def final_observer(payer, tid, state, now):
        finals.append(state)

    final_observer.finals_only = True
    for observer, seen in ((lambda p, t, state, n: every.append(state), every),
                           (final_observer, finals)):
        world = World(ledger_cls, observer=observer)
        event, _ = world.send_transfer(amount_minor=10_000)
        world.advance(5 * MS)
        world.answer(event, accepted=True)
    assert every == [TransferState.RECEIVED, TransferState.RESERVED, TransferState.FORWARDED,
                     TransferState.COMMITTED]
    assert finals == [TransferState.COMMITTED]


def test_commit_path_goes_through_every_live_state_and_moves_money(ledger_cls):
    seen = []
    world = World(ledger_cls, observer=lambda payer, tid, state, now: seen.append(state))
    before_a, before_b = world.available(BANK_A), world.available(BANK_B)
    event, commands = world.send_transfer(amount_minor=10_000)
    assert seen == [TransferState.RECEIVED, TransferState.RESERVED, TransferState.FORWARDED]
    credit = only(commands, Send)
    assert credit.participant_id == BANK_B
    assert isinstance(credit.message, CreditRequest)
    assert credit.message.amount_minor == 10_000
    assert credit.message.payee_account_ref == "payee-acc"
    timer = only(commands, ArmTimer)
    assert timer.deadline_ns == world.now_ns + 10 * S  # the payee timeout, before the expiry
    # Reserved: the payer's available money already dropped by amount + fee (2 + 10 bps).
    assert world.available(BANK_A) == before_a - 10_000 - 12
    assert world.available(BANK_B) == before_b
    record = world.record(BANK_A, event.request.transfer_id)
    assert world.ledger.pending_status(ledger_transfer_id(record.seq, Leg.RESERVE)) == (
        PendingStatus.PENDING)

    world.advance(5 * MS)
    commands = world.answer(event, accepted=True)
    assert seen[-1] == TransferState.COMMITTED
    assert only(commands, CancelTimer).timer_id == timer.timer_id
    for party in (BANK_A, BANK_B):
        outcome = outcome_to(commands, party)
        assert outcome.state == TransferState.COMMITTED
        assert outcome.result == Result.OK
        assert outcome.fee_minor == 12
    refund = only(commands, RefundLookupToken)
    assert refund.payer_user_ref == "user-1"
    assert refund.payee_alias == event.request.payee
    assert world.available(BANK_A) == before_a - 10_012
    assert world.available(BANK_B) == before_b + 10_000
    assert world.ledger.pending_status(ledger_transfer_id(record.seq, Leg.RESERVE)) == (
        PendingStatus.POSTED)
    hub_fees = world.core.currency("BRL").hub_fees_account_id
    (fees,) = world.ledger.lookup_accounts([hub_fees])
    assert fees.credits_posted == 12


def test_payee_rejection_voids_and_tells_both(world):
    before = world.available(BANK_A)
    event, _ = world.send_transfer(amount_minor=7_000)
    commands = world.answer(event, accepted=False, reason="account closed")
    for party in (BANK_A, BANK_B):
        outcome = outcome_to(commands, party)
        assert outcome.state == TransferState.REJECTED
        assert outcome.result == Result.PAYEE_REJECTED
        assert outcome.reason == "account closed"
    assert only(commands, CancelTimer)
    assert not [c for c in commands if isinstance(c, RefundLookupToken)]
    assert world.available(BANK_A) == before
    assert world.core.daily_used_minor(BANK_A, "BRL") == 0  # a voided transfer does not count


def test_payee_timeout_expires_and_a_late_accept_is_answered_expired(world):
    before = world.available(BANK_A)
    event, commands = world.send_transfer()
    timer = only(commands, ArmTimer)
    world.now_ns = timer.deadline_ns
    commands = world.fire(timer.timer_id)
    for party in (BANK_A, BANK_B):
        outcome = outcome_to(commands, party)
        assert outcome.state == TransferState.EXPIRED
        assert outcome.result == Result.TRANSFER_EXPIRED
    assert world.available(BANK_A) == before
    world.advance(1 * S)
    late = world.answer(event, accepted=True)
    assert outcome_to(late, BANK_B).state == TransferState.EXPIRED
    assert len(late) == 1  # only the payee is told again; nothing else happens
    assert world.available(BANK_A) == before


def test_accept_after_deadline_before_the_timer_fires_expires(world):
    event, commands = world.send_transfer()
    timer = only(commands, ArmTimer)
    world.now_ns = timer.deadline_ns  # the answer and the deadline coincide: too late
    commands = world.answer(event, accepted=True)
    assert only(commands, CancelTimer).timer_id == timer.timer_id
    assert outcome_to(commands, BANK_B).state == TransferState.EXPIRED
    assert world.fire(timer.timer_id) == []  # the stale firing is harmless


def test_payer_expiry_shorter_than_payee_timeout_sets_the_deadline(world):
    event, commands = world.send_transfer(expires_in_ns=3 * S)
    assert only(commands, ArmTimer).deadline_ns == event.request.expires_at_ns
    assert only(commands, Send).message.expires_at_ns == event.request.expires_at_ns


def test_early_timer_firing_re_arms(world):
    _event, commands = world.send_transfer()
    timer = only(commands, ArmTimer)
    world.advance(1 * S)
    assert world.fire(timer.timer_id) == [timer]


def test_duplicate_payee_answers_are_harmless(world):
    event, _ = world.send_transfer()
    world.answer(event, accepted=True)
    balances = world.balance(BANK_A), world.balance(BANK_B)
    for accepted in (True, False, True):
        again = world.answer(event, accepted=accepted)
        assert len(again) == 1
        assert outcome_to(again, BANK_B).state == TransferState.COMMITTED
    assert (world.balance(BANK_A), world.balance(BANK_B)) == balances


def test_resend_same_body_gets_same_answer_in_flight_and_final(world):
    event, first = world.send_transfer()
    fingerprint = world.fingerprint()
    again = world.step(event)
    assert outcome_to(again, BANK_A).state == TransferState.FORWARDED
    assert world.fingerprint() == fingerprint  # no second reserve, no second credit request
    world.answer(event)
    final = outcome_to(world.step(event), BANK_A)
    assert final.state == TransferState.COMMITTED
    assert final == outcome_to(world.step(event), BANK_A)


@pytest.mark.parametrize("change, result", [
    (dict(payee_alias=Party(alias_type="EMAIL", alias_value="x@example.org")),
     Result.EXISTS_WITH_DIFFERENT_PARTY),
    (dict(amount_minor=1_001), Result.EXISTS_WITH_DIFFERENT_AMOUNT),
    (dict(currency="KES"), Result.EXISTS_WITH_DIFFERENT_CURRENCY),
    (dict(purpose="rent"), Result.EXISTS_WITH_DIFFERENT_BODY),
])
def test_same_id_different_body_is_a_typed_conflict_and_changes_nothing(world, change, result):
    event, _ = world.send_transfer(transfer_id="dup-1")
    fingerprint = world.fingerprint()
    fields = dict(transfer_id="dup-1", expires_at_ns=event.request.expires_at_ns)
    fields.update(change)
    commands = world.step(world.transfer_event(**fields))
    assert refusal(commands).result == result
    assert world.fingerprint() == fingerprint


def test_payee_resolution_change_does_not_make_a_resend_a_conflict(world):
    event, _ = world.send_transfer()
    moved = type(event)(payer_participant_id=event.payer_participant_id,
                        payee_participant_id=WALLET_C, payee_account_ref="elsewhere",
                        request=event.request)
    assert outcome_to(world.step(moved), BANK_A).payee_participant_id == BANK_B


def test_status_query_from_every_state(world):
    # FORWARDED
    event, _ = world.send_transfer()
    tid = event.request.transfer_id
    for party in (BANK_A, BANK_B):
        assert outcome_to(world.status(party, BANK_A, tid), party).state == TransferState.FORWARDED
    # COMMITTED
    world.answer(event)
    assert outcome_to(world.status(BANK_B, BANK_A, tid), BANK_B).state == TransferState.COMMITTED
    # REJECTED by the payee
    rejected, _ = world.send_transfer()
    world.answer(rejected, accepted=False)
    assert outcome_to(world.status(BANK_A, BANK_A, rejected.request.transfer_id),
                      BANK_A).state == TransferState.REJECTED
    # REJECTED at admission (never forwarded): the payee is not a party to it
    refused, commands = world.send_transfer(amount_minor=600_000)
    assert outcome_to(commands, BANK_A).result == Result.AMOUNT_ABOVE_TRANSFER_MAX
    assert outcome_to(world.status(BANK_A, BANK_A, refused.request.transfer_id),
                      BANK_A).state == TransferState.REJECTED
    assert refusal(world.status(BANK_B, BANK_A, refused.request.transfer_id)).result == (
        Result.TRANSFER_NOT_FOUND)
    # EXPIRED
    expired, commands = world.send_transfer()
    timer = only(commands, ArmTimer)
    world.now_ns = timer.deadline_ns
    world.fire(timer.timer_id)
    assert outcome_to(world.status(BANK_B, BANK_A, expired.request.transfer_id),
                      BANK_B).state == TransferState.EXPIRED


def test_status_query_by_a_stranger_or_for_an_unknown_id(world):
    event, _ = world.send_transfer()
    stranger = world.status(WALLET_C, BANK_A, event.request.transfer_id)
    assert refusal(stranger).result == Result.TRANSFER_NOT_FOUND
    unknown = world.status(BANK_A, BANK_A, "never-sent")
    consult = only(unknown, ConsultStore)
    assert consult.result_if_absent == Result.TRANSFER_NOT_FOUND
    assert consult.participant_id == BANK_A


def test_answer_from_a_participant_that_is_not_the_payee_is_a_protocol_error(world):
    event, _ = world.send_transfer()
    fingerprint = world.fingerprint()
    with pytest.raises(ProtocolError) as caught:
        world.answer(event, accepted=True, sender=WALLET_C)
    assert caught.value.result == Result.TRANSFER_NOT_FOUND
    assert caught.value.http_status == 404
    assert caught.value.participant_id == WALLET_C
    assert world.fingerprint() == fingerprint


def test_answer_to_a_transfer_refused_at_admission_is_a_protocol_error(world):
    event, commands = world.send_transfer(amount_minor=600_000)
    assert outcome_to(commands, BANK_A).state == TransferState.REJECTED
    with pytest.raises(ProtocolError):
        world.answer(event, accepted=True)


def test_answer_for_an_unknown_transfer_asks_the_store(world):
    event = world.transfer_event()
    consult = only(world.answer(event, accepted=True), ConsultStore)
    assert consult.participant_id == BANK_B
    assert consult.result_if_absent == Result.TRANSFER_NOT_FOUND


@pytest.mark.parametrize("transfer_id", ["", "-x", "a\n", "x" * 65, "tx/1", "tx 1", "é"])
def test_answer_naming_an_id_outside_the_grammar_is_refused_and_changes_nothing(world,
                                                                             transfer_id):
    """Built by hand (not decoded), an answer can carry any string: the core refuses it
    ID_INVALID, after its table lookup (which cannot hold such an id), and nothing moves."""
    from switch.core.messages import PayeeAnswer, PayeeAnswered, RequestType

    event, _ = world.send_transfer()
    before = (world.available(BANK_A, "BRL"), world.available(BANK_B, "BRL"))
    commands = world.step(PayeeAnswered(payee_participant_id=BANK_B, answer=PayeeAnswer(
        payer_participant_id=BANK_A, transfer_id=transfer_id, accepted=True)))
    refused = refusal(commands)
    assert refused.result == Result.ID_INVALID
    assert refused.request_type == RequestType.PAYEE_ANSWER
    assert (world.available(BANK_A, "BRL"), world.available(BANK_B, "BRL")) == before
    # The transfer in flight is untouched: its own answer still commits it.
    assert outcome_to(world.answer(event), BANK_A).state == TransferState.COMMITTED


def test_suspended_payee_still_finishes_in_flight_transfers(world):
    from switch.core.messages import ParticipantSuspended

    event, _ = world.send_transfer()
    world.admin_ok(ParticipantSuspended(request_id="susp-b", participant_id=BANK_B))
    commands = world.answer(event, accepted=True)
    assert outcome_to(commands, BANK_A).state == TransferState.COMMITTED
    _, refused = world.send_transfer()
    assert outcome_to(refused, BANK_A).result == Result.PAYEE_BLOCKED


def test_deferred_net_transfer_moves_positions_within_the_cap(world):
    event, _ = world.send_transfer(currency="KES", amount_minor=250_000)
    world.answer(event)
    assert world.available(BANK_A, "KES") == 1_000_000 - 250_000 - 252
    assert world.available(BANK_B, "KES") == 1_000_000 + 250_000
    # WALLET_C has no cap: its position cannot go into debit at all.
    _, commands = world.send_transfer(payer=WALLET_C, currency="KES", amount_minor=1)
    assert outcome_to(commands, WALLET_C).result == Result.PAYER_INSUFFICIENT_LIQUIDITY


def test_insufficient_liquidity_rejects_and_records(world):
    event, commands = world.send_transfer(payer=WALLET_C, amount_minor=1)
    outcome = outcome_to(commands, WALLET_C)
    assert outcome.state == TransferState.REJECTED
    assert outcome.result == Result.PAYER_INSUFFICIENT_LIQUIDITY
    assert world.available(WALLET_C) == 0
    # Recorded: a resend answers the same, even after funding arrives.
    from switch.core.messages import FundsDeposited

    world.admin_ok(FundsDeposited(request_id="fund-c", participant_id=WALLET_C,
                                  currency="BRL", amount_minor=10_000))
    assert outcome_to(world.step(event), WALLET_C) == outcome


def test_zero_fee_scheme_uses_a_single_ledger_leg(ledger_cls):
    from switch.core.messages import SchemeRules

    world = World(ledger_cls, rules=SchemeRules(payee_timeout_ms=10_000))
    event, _ = world.send_transfer(amount_minor=500)
    record = world.record(BANK_A, event.request.transfer_id)
    assert record.fee_minor == 0
    assert world.ledger.lookup_transfers([ledger_transfer_id(record.seq, Leg.RESERVE_FEE)]) == []
    world.answer(event)
    assert world.available(BANK_B) == 1_000_500


def test_every_send_is_to_a_party_and_outcomes_are_shared(world):
    event, _ = world.send_transfer()
    commands = world.answer(event)
    outcomes = [s.message for s in sends(commands) if isinstance(s.message, TransferOutcome)]
    assert outcomes[0] is outcomes[1]  # one object, built once, sent to both parties
    assert {s.participant_id for s in sends(commands)} == {BANK_A, BANK_B}
