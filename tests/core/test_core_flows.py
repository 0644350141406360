"""Returns, request-to-pay and operator requests, events in and commands out."""

from __future__ import annotations

import pytest

from core_helpers import (
    BANK_A,
    BANK_B,
    S,
    WALLET_C,
    World,
    fingerprint,
    only,
    outcome_to,
    refusal,
    result_of,
    sends,
)
from switch.core import RequestToPayState, Result, SwitchCore, TransferState
from switch.core.messages import (
    ArmTimer,
    CancelTimer,
    CreditRequest,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAdded,
    ParticipantResumed,
    ParticipantSuspended,
    RequestToPayNotice,
    RequestToPayOutcome,
    SchemeRules,
    SchemeRulesChanged,
    Send,
)

# -- returns -------------------------------------------------------------------------------


def test_return_goes_back_to_the_payer_without_a_fee_and_is_capped(world):
    original, _ = world.send_transfer(amount_minor=10_000)
    world.answer(original)
    a_before, b_before = world.available(BANK_A), world.available(BANK_B)
    first = world.return_event(original, 4_000)
    commands = world.step(first)
    credit = only(commands, type(commands[0]))
    assert credit.participant_id == BANK_A
    assert isinstance(credit.message, CreditRequest)
    assert credit.message.return_of.transfer_id == original.request.transfer_id
    assert credit.message.payee_account_ref == "payer-acc"  # the original payer's account
    world.answer(first)
    assert world.available(BANK_A) == a_before + 4_000
    assert world.available(BANK_B) == b_before - 4_000  # no fee on a return
    # A second return may take the rest, not more.
    assert outcome_to(world.step(world.return_event(original, 6_001)), BANK_B).result == (
        Result.RETURN_EXCEEDS_ORIGINAL)
    rest = world.return_event(original, 6_000)
    world.step(rest)
    assert outcome_to(world.answer(rest), BANK_B).state == TransferState.COMMITTED


def test_a_voided_return_gives_its_room_back(world):
    original, _ = world.send_transfer(amount_minor=1_000)
    world.answer(original)
    refused = world.return_event(original, 1_000)
    world.step(refused)
    world.answer(refused, accepted=False)  # the original payer refuses the return
    again = world.return_event(original, 1_000)
    world.step(again)
    assert outcome_to(world.answer(again), BANK_A).state == TransferState.COMMITTED


def test_pending_returns_count_against_the_original(world):
    original, _ = world.send_transfer(amount_minor=1_000)
    world.answer(original)
    world.step(world.return_event(original, 700))  # in flight
    assert outcome_to(world.step(world.return_event(original, 301)), BANK_B).result == (
        Result.RETURN_EXCEEDS_ORIGINAL)


def test_a_stranger_cannot_learn_of_a_transfer_by_returning_it(world):
    original, _ = world.send_transfer()
    world.answer(original)
    commands = world.step(world.return_event(original, 10, sender=WALLET_C))
    assert outcome_to(commands, WALLET_C).result == Result.ORIGINAL_TRANSFER_NOT_FOUND


def test_return_resend_is_idempotent_and_conflicts_are_typed(world):
    original, _ = world.send_transfer(amount_minor=1_000)
    world.answer(original)
    ret = world.return_event(original, 100, transfer_id="ret-1")
    world.step(ret)
    assert outcome_to(world.step(ret), BANK_B).state == TransferState.FORWARDED
    other = world.return_event(original, 200, transfer_id="ret-1")
    assert refusal(world.step(other)).result == Result.EXISTS_WITH_DIFFERENT_AMOUNT
    # A plain transfer under the id of a return is a different body.
    clash = world.transfer_event(payer=BANK_B, payee=BANK_A, transfer_id="ret-1")
    assert refusal(world.step(clash)).result == Result.EXISTS_WITH_DIFFERENT_BODY


# -- request-to-pay ------------------------------------------------------------------------


def test_request_to_pay_approved_becomes_a_transfer(world):
    rtp = world.rtp_event(amount_minor=2_500)
    commands = world.step(rtp)
    notice = [s for s in sends(commands) if isinstance(s.message, RequestToPayNotice)]
    assert len(notice) == 1 and notice[0].participant_id == BANK_A
    ack = [s.message for s in sends(commands) if isinstance(s.message, RequestToPayOutcome)]
    assert ack[0].state == RequestToPayState.OPEN
    timer = only(commands, ArmTimer)
    assert timer.deadline_ns == rtp.request.expires_at_ns

    commands = world.decide(rtp, approved=True, transfer_id="pay-rtp-1")
    assert only(commands, CancelTimer).timer_id == timer.timer_id
    credit = [s for s in sends(commands) if isinstance(s.message, CreditRequest)]
    assert credit[0].participant_id == BANK_B
    assert credit[0].message.request_to_pay_id == rtp.request.request_id
    approved = [s.message for s in sends(commands) if isinstance(s.message, RequestToPayOutcome)]
    assert approved[0].state == RequestToPayState.APPROVED
    assert approved[0].transfer_id == "pay-rtp-1"

    transfer = world.record(BANK_A, "pay-rtp-1")
    assert transfer.amount_minor == 2_500
    answer = world.answer(transfer.event)
    assert outcome_to(answer, BANK_A).state == TransferState.COMMITTED
    # A resent decision gets the request's (final) state.
    again = world.decide(rtp, approved=True, transfer_id="pay-rtp-1")
    assert again[0].message.state == RequestToPayState.APPROVED
    assert world.core.request_to_pay_outcome(BANK_B, rtp.request.request_id).transfer_id == (
        "pay-rtp-1")


def test_request_to_pay_declined(world):
    rtp = world.rtp_event()
    world.step(rtp)
    commands = world.decide(rtp, approved=False)
    outcomes = [s for s in sends(commands) if isinstance(s.message, RequestToPayOutcome)]
    assert {s.participant_id for s in outcomes} == {BANK_A, BANK_B}
    assert outcomes[0].message.state == RequestToPayState.DECLINED
    assert outcomes[0].message.result == Result.PAYER_REJECTED_REQUEST
    assert world.decide(rtp, approved=True, transfer_id="late")[0].message.state == (
        RequestToPayState.DECLINED)
    assert world.core.transfer_outcome(BANK_A, "late") is None


def test_request_to_pay_expires_and_late_decisions_are_told(world):
    rtp = world.rtp_event(expires_in_ns=5 * S)
    world.step(rtp)
    world.advance(5 * S)
    commands = world.decide(rtp, approved=True, transfer_id="too-late")
    outcome = [s.message for s in sends(commands) if isinstance(s.message, RequestToPayOutcome)]
    assert outcome[0].state == RequestToPayState.EXPIRED
    assert outcome[0].result == Result.REQUEST_EXPIRED
    assert world.core.transfer_outcome(BANK_A, "too-late") is None


def test_request_to_pay_stays_open_when_its_transfer_is_refused(world):
    rtp = world.rtp_event(payer=WALLET_C, amount_minor=5_000)  # WALLET_C has no money
    world.step(rtp)
    commands = world.decide(rtp, approved=True, transfer_id="try-1")
    assert outcome_to(commands, WALLET_C).result == Result.PAYER_INSUFFICIENT_LIQUIDITY
    assert world.core.request_to_pay_outcome(BANK_B, rtp.request.request_id).state == (
        RequestToPayState.OPEN)
    world.admin_ok(FundsDeposited(request_id="fund-c", participant_id=WALLET_C, currency="BRL",
                                  amount_minor=100_000))
    commands = world.decide(rtp, approved=True, transfer_id="try-2")
    assert world.core.request_to_pay_outcome(BANK_B, rtp.request.request_id).state == (
        RequestToPayState.APPROVED)
    assert world.record(WALLET_C, "try-2").state == TransferState.FORWARDED


def test_request_to_pay_refused_at_creation_is_recorded_and_hidden_from_the_payer(world):
    world.admin_ok(ParticipantSuspended(request_id="susp-a", participant_id=BANK_A))
    rtp = world.rtp_event()
    commands = world.step(rtp)
    assert len(commands) == 1
    assert commands[0].participant_id == BANK_B
    assert commands[0].message.state == RequestToPayState.REJECTED
    assert commands[0].message.result == Result.PAYER_BLOCKED
    assert world.step(rtp) == commands  # a resend answers the same
    assert refusal(world.decide(rtp, approved=False)).result == Result.REQUEST_NOT_FOUND


def test_request_to_pay_decision_from_someone_else_learns_nothing(world):
    rtp = world.rtp_event()
    world.step(rtp)
    before = world.fingerprint()
    assert refusal(world.decide(rtp, approved=True, transfer_id="x", sender=WALLET_C)).result == (
        Result.REQUEST_NOT_FOUND)
    assert world.fingerprint() == before


def test_request_to_pay_resend_and_conflict(world):
    rtp = world.rtp_event(request_id="rq-1")
    world.step(rtp)
    assert world.step(rtp)[0].message.state == RequestToPayState.OPEN
    other = world.rtp_event(request_id="rq-1", amount_minor=7)
    assert refusal(world.step(other)).result == Result.EXISTS_WITH_DIFFERENT_AMOUNT



# -- a request-to-pay approval is bound to a new transfer ---------------------------------
# Approving names a transfer id; the request becomes APPROVED only when that approval itself
# created the transfer (to the requester, for the requested amount). An id the payer already
# used — an earlier transfer, a return, a refused transfer, another request's payment — is
# refused with a typed result, changes nothing and leaves the request OPEN.


def _used_ids(world: World) -> dict[str, str]:
    """One id of each kind BANK_A (the payer of the requests below) already used."""
    paid, _ = world.send_transfer(payer=BANK_A, payee=BANK_B, amount_minor=1_000,
                                  transfer_id="earlier")
    world.answer(paid)  # committed, to the requester, for the amount it will request
    refused, _ = world.send_transfer(payer=BANK_A, payee=BANK_B, amount_minor=1_000,
                                     transfer_id="refused-by-payee")
    world.answer(refused, accepted=False)
    world.send_transfer(payer=BANK_A, payee=BANK_B, amount_minor=600_000,
                        transfer_id="refused-at-admission")  # above the transfer maximum
    incoming, _ = world.send_transfer(payer=BANK_B, payee=BANK_A, amount_minor=5_000)
    world.answer(incoming)
    ret = world.return_event(incoming, 1_000, transfer_id="a-return")  # BANK_A pays it
    world.step(ret)
    world.answer(ret)
    other = world.rtp_event(payee=BANK_B, payer=BANK_A, amount_minor=1_000)
    world.step(other)
    world.decide(other, approved=True, transfer_id="paid-another-request")
    return {
        "earlier transfer": "earlier",
        "transfer refused by its payee": "refused-by-payee",
        "transfer refused at admission": "refused-at-admission",
        "return": "a-return",
        "another request's payment": "paid-another-request",
    }


@pytest.mark.parametrize("kind", ["earlier transfer", "transfer refused by its payee",
                                  "transfer refused at admission", "return",
                                  "another request's payment"])
def test_approval_naming_a_used_id_is_refused_and_leaves_the_request_open(world, kind):
    transfer_id = _used_ids(world)[kind]
    rtp = world.rtp_event(payee=BANK_B, payer=BANK_A, amount_minor=1_000)
    world.step(rtp)
    before = world.fingerprint()
    commands = world.decide(rtp, approved=True, transfer_id=transfer_id)
    refused = refusal(commands)
    assert (refused.request_type, refused.scope_participant_id, refused.id) == (
        "transfer", BANK_A, transfer_id)
    assert refused.result in (Result.EXISTS_WITH_DIFFERENT_PARTY,
                              Result.EXISTS_WITH_DIFFERENT_AMOUNT,
                              Result.EXISTS_WITH_DIFFERENT_BODY)
    assert world.fingerprint() == before  # nothing changed, the request is still OPEN
    assert world.core.request_to_pay_outcome(BANK_B, rtp.request.request_id).state == (
        RequestToPayState.OPEN)
    # Replaying the journal (this event included) rebuilds the same core: no fail-stop.
    replayed = SwitchCore(world.config, type(world.ledger)(world.ledger.config))
    replayed.replay(world.events)
    assert fingerprint(replayed) == world.fingerprint()
    # The payer can still pay it, under a new id.
    world.decide(rtp, approved=True, transfer_id="fresh-id")
    outcome = world.core.request_to_pay_outcome(BANK_B, rtp.request.request_id)
    assert (outcome.state, outcome.transfer_id) == (RequestToPayState.APPROVED, "fresh-id")


def test_approval_names_a_new_transfer_to_the_requester_for_the_requested_amount(world):
    rtp = world.rtp_event(payee=BANK_B, payer=BANK_A, amount_minor=2_345)
    world.step(rtp)
    commands = world.decide(rtp, approved=True, transfer_id="pays-it")
    credit = only([s for s in sends(commands) if isinstance(s.message, CreditRequest)], Send)
    assert credit.participant_id == BANK_B
    assert (credit.message.amount_minor, credit.message.request_to_pay_id) == (
        2_345, rtp.request.request_id)
    record = world.record(BANK_A, "pays-it")
    assert (record.payee_participant_id, record.amount_minor, record.forwarded) == (
        BANK_B, 2_345, True)
    assert record.request_to_pay_id == rtp.request.request_id


def test_resent_approval_answers_as_before(world):
    """An identical approval of an APPROVED request gets the same outcome; one of an OPEN
    request whose transfer was refused gets that transfer's outcome again."""
    rtp = world.rtp_event(payee=BANK_B, payer=BANK_A, amount_minor=1_000)
    world.step(rtp)
    decision = world.decision_event(rtp, approved=True, transfer_id="pay-1")
    first = world.step(decision)
    approved = [s for s in sends(first) if isinstance(s.message, RequestToPayOutcome)]
    before = world.fingerprint()
    assert world.step(decision) == [Send(participant_id=BANK_A, message=approved[0].message)]
    assert world.fingerprint() == before

    poor = world.rtp_event(payee=BANK_B, payer=WALLET_C, amount_minor=1_000)  # no money
    world.step(poor)
    decision = world.decision_event(poor, approved=True, transfer_id="try-1")
    first = world.step(decision)
    assert outcome_to(first, WALLET_C).result == Result.PAYER_INSUFFICIENT_LIQUIDITY
    before = world.fingerprint()
    assert world.step(decision) == first
    assert world.fingerprint() == before
    assert world.core.request_to_pay_outcome(BANK_B, poor.request.request_id).state == (
        RequestToPayState.OPEN)


@pytest.mark.parametrize("transfer_id", ["", "a/b", "a b", "line\n", "caf\u00e9", "x" * 65])
def test_approving_without_a_valid_transfer_id_is_refused_and_changes_nothing(world,
                                                                              transfer_id):
    rtp = world.rtp_event()
    world.step(rtp)
    before = world.fingerprint()
    refused = refusal(world.decide(rtp, approved=True, transfer_id=transfer_id))
    assert (refused.request_type, refused.id, refused.result) == (
        "request_to_pay_decision", rtp.request.request_id, Result.ID_INVALID)
    assert world.fingerprint() == before
    # Declining needs no transfer id.
    assert world.decide(rtp, approved=False)[-1].message.state == RequestToPayState.DECLINED


# -- operator requests ---------------------------------------------------------------------


def test_operator_requests_are_idempotent_by_request_id(world):
    deposit = FundsDeposited(request_id="dep-1", participant_id=WALLET_C, currency="BRL",
                             amount_minor=500)
    first = world.admin(deposit)
    assert first.result == Result.OK
    assert world.admin(deposit) == first
    assert world.available(WALLET_C) == 500  # credited once
    changed = FundsDeposited(request_id="dep-1", participant_id=WALLET_C, currency="BRL",
                             amount_minor=501)
    assert world.admin(changed).result == Result.EXISTS_WITH_DIFFERENT_BODY
    assert world.available(WALLET_C) == 500


def test_a_refused_operator_request_can_be_retried_under_the_same_id(world):
    withdraw = FundsWithdrawn(request_id="wd-1", participant_id=WALLET_C, currency="BRL",
                              amount_minor=100)
    assert world.admin(withdraw).result == Result.ADMIN_FUNDS_INSUFFICIENT
    world.admin_ok(FundsDeposited(request_id="dep-c", participant_id=WALLET_C, currency="BRL",
                                  amount_minor=100))
    assert world.admin(withdraw).result == Result.OK
    assert world.available(WALLET_C) == 0


def test_withdrawal_cannot_touch_reserved_money(world):
    world.send_transfer(amount_minor=400_000)  # reserved, not committed
    available = world.available(BANK_A)
    assert world.admin(FundsWithdrawn(request_id="wd-a", participant_id=BANK_A, currency="BRL",
                                      amount_minor=available + 1)).result == (
        Result.ADMIN_FUNDS_INSUFFICIENT)
    world.admin_ok(FundsWithdrawn(request_id="wd-a2", participant_id=BANK_A, currency="BRL",
                                  amount_minor=available))
    assert world.available(BANK_A) == 0


def test_net_debit_cap_raise_and_lower(world):
    world.admin_ok(NetDebitCapSet(request_id="cap-c", participant_id=WALLET_C, currency="KES",
                                  cap_minor=50_000))
    event, _ = world.send_transfer(payer=WALLET_C, currency="KES", amount_minor=30_000)
    world.answer(event)
    assert world.available(WALLET_C, "KES") == 50_000 - 30_000 - 32
    assert world.admin(NetDebitCapSet(request_id="cap-c2", participant_id=WALLET_C,
                                      currency="KES", cap_minor=30_000)).result == (
        Result.ADMIN_CAP_BELOW_POSITION)
    world.admin_ok(NetDebitCapSet(request_id="cap-c3", participant_id=WALLET_C, currency="KES",
                                  cap_minor=30_032))
    assert world.available(WALLET_C, "KES") == 0


def test_suspend_and_resume(world):
    world.admin_ok(ParticipantSuspended(request_id="s1", participant_id=BANK_B))
    assert world.core.participant(BANK_B).status.name == "SUSPENDED"
    _, commands = world.send_transfer(payer=BANK_B, payee=BANK_A)
    assert outcome_to(commands, BANK_B).result == Result.PAYER_BLOCKED
    world.admin_ok(ParticipantResumed(request_id="r1", participant_id=BANK_B))
    _, commands = world.send_transfer(payer=BANK_B, payee=BANK_A)
    assert only(commands, ArmTimer)


def test_rule_changes_apply_to_new_transfers_only(world):
    in_flight, _ = world.send_transfer(amount_minor=10_000)
    world.admin_ok(SchemeRulesChanged(request_id="rules-2", currency="BRL", rules=SchemeRules(
        transfer_max_minor=5_000, fee_fixed_minor=100, payee_timeout_ms=1_000)))
    assert outcome_to(world.answer(in_flight), BANK_A).fee_minor == 12  # the old fee
    _, commands = world.send_transfer(amount_minor=10_000)
    assert outcome_to(commands, BANK_A).result == Result.AMOUNT_ABOVE_TRANSFER_MAX
    event, commands = world.send_transfer(amount_minor=5_000)
    assert only(commands, ArmTimer).deadline_ns == world.now_ns + 1 * S
    assert world.record(BANK_A, event.request.transfer_id).fee_minor == 100


def test_daily_total_resets_on_the_next_utc_day(ledger_cls):
    world = World(ledger_cls, rules=SchemeRules(daily_total_max_minor=1_000))
    event, _ = world.send_transfer(amount_minor=1_000)
    world.answer(event)
    assert result_of(world.step(world.transfer_event(amount_minor=1))) == (
        Result.PAYER_DAILY_LIMIT_EXCEEDED)
    next_day = (world.now_ns // (86_400 * S) + 1) * 86_400 * S
    world.now_ns = next_day
    _, commands = world.send_transfer(amount_minor=1_000)
    assert only(commands, ArmTimer)
    assert world.core.daily_used_minor(BANK_A, "BRL") == 1_000


def test_participant_name_and_id_are_unique(world):
    assert world.admin(ParticipantAdded(request_id="dup-name", participant_id=50,
                                        name="bank-a")).result == Result.ADMIN_PARTICIPANT_EXISTS
    world.admin_ok(ParticipantAdded(request_id="new", participant_id=50, name="bank-e"))
    assert world.core.participant_id_by_name("bank-e") == 50


def test_clock_going_back_is_clamped(world):
    world.send_transfer()
    now = world.core.now_ns
    event = world.transfer_event()
    world.step(event, at_ns=now - 10 * S)  # a skewed shell clock
    assert world.core.now_ns == now
    record = world.record(BANK_A, event.request.transfer_id)
    assert record.deadline_ns == now + 10 * S  # decided with the clamped clock
