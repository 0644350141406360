"""The operator service on the real core and both real admin stores: roles, maker-checker,
login limits, sessions, bad input, and the audit trail each of them leaves."""

from __future__ import annotations

import pytest

from admin_helpers import BANK_A, BANK_B, PASSWORD, S
from switch.admin import limits
from switch.admin.types import (
    AdminRefusal,
    AdminResult,
    CallbackUrlProposal,
    DailyLimitProposal,
    Decision,
    DefundProposal,
    FundProposal,
    KeyRotationProposal,
    NetDebitCapProposal,
    OnboardProposal,
    ProposalState,
    TransferQuery,
    UserCreate,
)
from switch.core.messages import FundsDeposited, NetDebitCapSet, PayeeAnswer, PayeeAnswered
from switch.core.results import Result


async def refused(awaitable, result: AdminResult) -> AdminRefusal:
    with pytest.raises(AdminRefusal) as caught:
        await awaitable
    assert caught.value.result is result, caught.value
    return caught.value


# -- roles -----------------------------------------------------------------------------------


async def test_a_viewer_is_refused_every_action_and_nothing_reaches_the_switch(world):
    vic = world.caller("vic")
    submitted = len(world.switch.submitted)
    await refused(world.service.set_status(vic, BANK_A, suspend=True),
                  AdminResult.ROLE_INSUFFICIENT)
    await refused(world.service.propose(vic, FundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=100)), AdminResult.ROLE_INSUFFICIENT)
    await refused(world.service.propose(vic, CallbackUrlProposal(
        participant_id=BANK_A, callback_url="https://a.example/cb")),
        AdminResult.ROLE_INSUFFICIENT)
    assert len(world.switch.submitted) == submitted
    assert world.status(BANK_A) == "active"
    assert await world.service.proposals() == []
    # The refusals are themselves on the record.
    records = await world.service.audit_page(limit=3)
    assert [r.result for r in records] == ["ROLE_INSUFFICIENT"] * 3
    assert {r.actor for r in records} == {"vic"}


async def test_an_operator_may_suspend_but_not_onboard_rotate_or_manage_operators(world):
    bob = world.caller("bob")
    view = await world.service.set_status(bob, BANK_A, suspend=True)
    assert view.status == "suspended"
    assert world.status(BANK_A) == "suspended"
    await refused(world.service.propose(bob, OnboardProposal(participant_id=9, name="n")),
                  AdminResult.ROLE_INSUFFICIENT)
    await refused(world.service.propose(bob, KeyRotationProposal(participant_id=BANK_A)),
                  AdminResult.ROLE_INSUFFICIENT)
    # Nor check one: the checker needs the role the change needs.
    onboarding = await world.service.propose(world.caller("alice"), OnboardProposal(
        participant_id=9, name="n"))
    await refused(world.service.decide(bob, onboarding.proposal_id, Decision(approve=True)),
                  AdminResult.ROLE_INSUFFICIENT)
    assert (await world.service.proposal(onboarding.proposal_id)).state == "pending"
    await refused(world.service.create_user(bob, UserCreate(
        username="eve", password=PASSWORD, role="admin")), AdminResult.ROLE_INSUFFICIENT)
    assert world.switch.core.participant(9) is None
    assert await world.store.get_user("eve") is None


async def test_a_suspended_participant_has_its_transfers_rejected_and_resumes(world):
    bob = world.caller("bob")
    await world.service.set_status(bob, BANK_A, suspend=True)
    transfer_id, commands = world.send(payer=BANK_A, payee=BANK_B, accept=None)
    outcome = commands[0].message
    assert outcome.result == Result.PAYER_BLOCKED
    _, commands = world.send(payer=BANK_B, payee=BANK_A, accept=None)
    assert commands[0].message.result == Result.PAYEE_BLOCKED
    await world.service.set_status(bob, BANK_A, suspend=False)
    assert world.status(BANK_A) == "active"
    suspend, resume = (await world.service.audit_page(limit=2))[::-1]
    assert (suspend.action, resume.action) == ("participant.suspend", "participant.resume")


async def test_a_key_rotation_is_shown_once_to_the_approving_admin(world):
    first = await world.carried_out("alice", "ada", KeyRotationProposal(participant_id=BANK_A))
    assert first.state == "executed" and first.api_key
    assert world.switch.authenticate(first.api_key) == BANK_A
    second = await world.carried_out("ada", "alice", KeyRotationProposal(participant_id=BANK_A))
    assert second.api_key != first.api_key
    assert world.switch.authenticate(second.api_key) == BANK_A
    assert world.switch.authenticate(first.api_key) is None  # revoked by default
    kept = await world.carried_out("alice", "ada", KeyRotationProposal(
        participant_id=BANK_A, revoke_others=False))
    assert world.switch.authenticate(second.api_key) == BANK_A
    assert world.switch.authenticate(kept.api_key) == BANK_A
    # Shown once: the stored proposal, the list and the audit name the key id, never the key.
    stored = await world.service.proposal(kept.proposal_id)
    assert stored.api_key == "" and kept.api_key_id in stored.detail
    assert all(p.api_key == "" for p in await world.service.proposals())
    records = await world.service.audit_page()
    assert kept.api_key_id in records[0].detail
    assert not any(key in r.detail for r in records
                   for key in (first.api_key, second.api_key, kept.api_key))


# -- maker-checker ---------------------------------------------------------------------------


async def test_maker_checker_needs_two_different_operators(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    before = world.balance(BANK_A)
    submitted = len(world.switch.submitted)
    proposal = await world.service.propose(bob, FundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=250_000, note="opening float"))
    assert proposal.state == "pending"
    assert world.balance(BANK_A) == before  # proposing moves no money
    assert len(world.switch.submitted) == submitted

    await refused(world.service.decide(bob, proposal.proposal_id, Decision(approve=True)),
                  AdminResult.CHECKER_MUST_DIFFER)
    assert world.balance(BANK_A) == before
    assert (await world.service.proposal(proposal.proposal_id)).state == "pending"

    approved = await world.service.decide(carol, proposal.proposal_id, Decision(approve=True))
    assert approved.state == "executed"
    assert (approved.proposed_by, approved.decided_by) == ("bob", "carol")
    assert world.balance(BANK_A) == before + 250_000
    deposits = [e for e in world.switch.submitted[submitted:] if isinstance(e, FundsDeposited)]
    assert [e.request_id for e in deposits] == [proposal.proposal_id]

    # Decided once: a second decision is refused and changes nothing.
    await refused(world.service.decide(world.caller("alice"), proposal.proposal_id,
                                       Decision(approve=True)), AdminResult.PROPOSAL_NOT_PENDING)
    assert world.balance(BANK_A) == before + 250_000
    # The refused second decision changed nothing, so it left no record either.
    actions = [(r.actor, r.action, r.result) for r in await world.service.audit_page(limit=3)]
    assert actions == [
        ("carol", "proposal.execute", "OK"),
        ("carol", "proposal.approve", "OK"),
        ("bob", "proposal.approve", "CHECKER_MUST_DIFFER"),
    ]


async def test_a_rejected_proposal_never_reaches_the_switch(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    proposal = await world.service.propose(bob, NetDebitCapProposal(
        participant_id=BANK_A, currency="KES", cap_minor=5_000_000))
    decided = await world.service.decide(carol, proposal.proposal_id,
                                         Decision(approve=False, note="too high"))
    assert decided.state == "rejected"
    assert decided.detail == "too high"
    assert not any(isinstance(e, NetDebitCapSet) for e in world.switch.submitted)
    pending = await world.service.proposals(ProposalState.PENDING)
    assert pending == []


async def test_an_approved_change_the_switch_refuses_is_recorded_as_failed(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    before = world.balance(BANK_A)
    proposal = await world.service.propose(bob, DefundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=before + 1))
    decided = await world.service.decide(carol, proposal.proposal_id, Decision(approve=True))
    assert decided.state == "failed"
    assert decided.core_result == Result.ADMIN_FUNDS_INSUFFICIENT
    assert world.balance(BANK_A) == before


async def test_net_debit_cap_and_daily_limit_changes_apply_on_approval(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    cap = await world.service.propose(bob, NetDebitCapProposal(
        participant_id=BANK_A, currency="KES", cap_minor=700_000))
    limit = await world.service.propose(carol, DailyLimitProposal(
        participant_id=BANK_A, currency="BRL", daily_total_max_minor=123_456))
    assert world.service.positions(BANK_A)[1].net_debit_cap_minor == 0
    await world.service.decide(carol, cap.proposal_id, Decision(approve=True))
    await world.service.decide(bob, limit.proposal_id, Decision(approve=True))
    brl, kes = world.service.positions(BANK_A)
    assert kes.net_debit_cap_minor == 700_000
    assert kes.available_minor == 700_000
    assert brl.daily_max_minor == 123_456


async def test_a_proposal_the_switch_would_refuse_is_refused_when_made(world):
    bob = world.caller("bob")
    audit_before = await world.audit_count()
    refusal = await refused(world.service.propose(bob, FundProposal(
        participant_id=BANK_A, currency="KES", amount_minor=5)), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_SETTLEMENT_MODEL_MISMATCH
    await refused(world.service.propose(bob, FundProposal(
        participant_id=77, currency="BRL", amount_minor=5)), AdminResult.PARTICIPANT_NOT_FOUND)
    refusal = await refused(world.service.propose(bob, NetDebitCapProposal(
        participant_id=BANK_A, currency="USD", cap_minor=5)), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_CURRENCY_NOT_FOUND
    assert await world.service.proposals() == []
    assert await world.audit_count() == audit_before


async def test_a_proposal_nobody_checks_in_time_expires(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    proposal = await world.service.propose(bob, FundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=10))
    world.clock.advance(limits.PROPOSAL_TTL_S + 1)
    before = world.balance(BANK_A)
    await refused(world.service.decide(carol, proposal.proposal_id, Decision(approve=True)),
                  AdminResult.PROPOSAL_EXPIRED)
    assert (await world.service.proposal(proposal.proposal_id)).state == "expired"
    assert world.balance(BANK_A) == before


async def test_an_approval_interrupted_before_the_switch_answered_is_resumed(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    before = world.balance(BANK_B)
    proposal = await world.service.propose(bob, FundProposal(
        participant_id=BANK_B, currency="BRL", amount_minor=42))
    world.switch.available = False  # the switch is restarting
    await refused(world.service.decide(carol, proposal.proposal_id, Decision(approve=True)),
                  AdminResult.SWITCH_UNAVAILABLE)
    assert (await world.service.proposal(proposal.proposal_id)).state == "approved"
    assert world.balance(BANK_B) == before
    world.switch.available = True
    assert await world.service.resume_approved() == 1
    assert (await world.service.proposal(proposal.proposal_id)).state == "executed"
    assert world.balance(BANK_B) == before + 42
    # Resuming again finds nothing left to do: the money moved exactly once.
    assert await world.service.resume_approved() == 0
    assert world.balance(BANK_B) == before + 42


# -- logins and sessions ---------------------------------------------------------------------


async def test_login_stores_only_an_argon2id_hash_and_a_token_hash(world):
    token, session = await world.service.login("bob", PASSWORD, "10.0.0.9")
    user = await world.store.get_user("bob")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    stored = await world.store.get_session(session.token_hash)
    assert stored is not None
    assert token.encode() not in stored.token_hash
    assert (await world.service.session(token)).username == "bob"
    assert await world.service.session(token + "x") is None


async def test_login_is_rate_limited_per_user_even_with_the_right_password(world):
    for _ in range(limits.LOGIN_FAILURES_PER_USER_MAX):
        await refused(world.service.login("bob", "wrong password!!", "10.0.0.2"),
                      AdminResult.LOGIN_FAILED)
    refusal = await refused(world.service.login("bob", PASSWORD, "10.0.0.3"),
                            AdminResult.LOGIN_RATE_LIMITED)
    assert 0 < refusal.retry_after_s <= limits.LOGIN_WINDOW_S
    assert refusal.http_status == 429
    # Another user is not affected.
    await world.service.login("carol", PASSWORD, "10.0.0.3")
    world.clock.advance(limits.LOGIN_WINDOW_S + 1)
    _token, session = await world.service.login("bob", PASSWORD, "10.0.0.3")
    assert session.username == "bob"


async def test_login_is_rate_limited_per_client_address(world):
    for index in range(limits.LOGIN_FAILURES_PER_ADDRESS_MAX):
        await refused(world.service.login(f"nobody{index}", "wrong password!!", "10.9.9.9"),
                      AdminResult.LOGIN_FAILED)
    await refused(world.service.login("carol", PASSWORD, "10.9.9.9"),
                  AdminResult.LOGIN_RATE_LIMITED)
    await world.service.login("carol", PASSWORD, "10.9.9.10")


async def test_failed_and_successful_logins_are_audited_without_the_password(world):
    await refused(world.service.login("bob", "not the password", "10.0.0.4"),
                  AdminResult.LOGIN_FAILED)
    await world.service.login("bob", PASSWORD, "10.0.0.4")
    ok, failed = await world.service.audit_page(limit=2)
    assert (failed.action, failed.result, failed.client) == ("login", "LOGIN_FAILED", "10.0.0.4")
    assert (ok.action, ok.actor, ok.result) == ("login", "bob", "OK")
    dump = " ".join(r.detail + r.target for r in await world.service.audit_page())
    assert PASSWORD not in dump and "not the password" not in dump


async def test_sessions_end_when_idle_when_logged_out_and_when_the_user_is_disabled(world):
    token, _ = await world.service.login("bob", PASSWORD, "10.0.0.5")
    world.clock.advance(limits.SESSION_IDLE_S + 1)
    assert await world.service.session(token) is None

    token, session = await world.service.login("bob", PASSWORD, "10.0.0.5")
    await world.service.logout(session, "10.0.0.5")
    assert await world.service.session(token) is None

    token, _ = await world.service.login("bob", PASSWORD, "10.0.0.5")
    await world.service.set_user_disabled(world.caller("alice"), "bob", True)
    assert await world.service.session(token) is None
    await refused(world.service.login("bob", PASSWORD, "10.0.0.5"), AdminResult.LOGIN_FAILED)


async def test_csrf_check_accepts_only_the_sessions_token(world):
    _token, session = await world.service.login("bob", PASSWORD, "10.0.0.6")
    await world.service.check_csrf(session, session.csrf_token, "10.0.0.6", "POST /x")
    for supplied in (None, "", session.csrf_token + "0", "x" * 43):
        await refused(world.service.check_csrf(session, supplied, "10.0.0.6", "POST /x"),
                      AdminResult.CSRF_TOKEN_INVALID)


# -- bad input changes nothing ----------------------------------------------------------------


async def test_onboarding_refusals_leave_no_half_participant(world):
    alice = world.caller("alice")
    participants = world.switch.core.participant_ids()
    submitted = len(world.switch.submitted)
    audit_before = await world.audit_count()
    refusal = await refused(world.service.propose(alice, OnboardProposal(
        participant_id=5, name="bank-e", currencies=["BRL", "XYZ"])), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_CURRENCY_NOT_FOUND
    refusal = await refused(world.service.propose(alice, OnboardProposal(
        participant_id=6, name="bank-a")), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_PARTICIPANT_EXISTS
    for bad in (OnboardProposal(participant_id=7, name="bank-g", currencies=["BRL", "BRL"]),
                OnboardProposal(name="bank-h", currencies=["KES"], funding_minor=5),
                OnboardProposal(name="bank-i", currencies=["BRL"], net_debit_cap_minor=5),
                OnboardProposal(name="bank-j", currencies=["BRL"], category="Z")):
        await refused(world.service.propose(alice, bad), AdminResult.VALIDATION_ERROR)
    assert world.switch.core.participant_ids() == participants
    assert len(world.switch.submitted) == submitted
    assert await world.audit_count() == audit_before
    assert await world.service.proposals() == []


async def test_a_duplicate_user_is_refused_and_keeps_the_first_password(world):
    alice = world.caller("alice")
    before = (await world.store.get_user("bob")).password_hash
    await refused(world.service.create_user(alice, UserCreate(
        username="bob", password="another long password", role="admin")),
        AdminResult.USER_EXISTS)
    user = await world.store.get_user("bob")
    assert user.password_hash == before
    assert user.role.name == "OPERATOR"


async def test_unknown_participant_and_transfer_are_typed_refusals(world):
    bob = world.caller("bob")
    await refused(world.service.set_status(bob, 404, suspend=True),
                  AdminResult.PARTICIPANT_NOT_FOUND)
    with pytest.raises(AdminRefusal) as caught:
        world.service.timeline(BANK_A, "never-sent")
    assert caught.value.result is AdminResult.TRANSFER_NOT_FOUND


# -- transfers -------------------------------------------------------------------------------


async def test_search_by_id_end_to_end_id_participant_state_and_time(world):
    first, _ = world.send(end_to_end_id="E2E-1")
    world.clock.advance(10)
    middle = world.clock()
    rejected, _ = world.send(payer=BANK_B, payee=BANK_A, accept=False)
    world.clock.advance(10)
    pending, _ = world.send(accept=None)
    search = world.service.search

    direct = search(TransferQuery(payer_participant_id=BANK_A, transfer_id=first))
    assert [t.transfer_id for t in direct.transfers] == [first]
    by_e2e = search(TransferQuery(end_to_end_id="E2E-1"))
    assert [t.transfer_id for t in by_e2e.transfers] == [first]
    assert [t.transfer_id for t in search(TransferQuery(state="rejected")).transfers] == [rejected]
    assert [t.transfer_id for t in search(TransferQuery(state="forwarded")).transfers] == [pending]
    by_payee = search(TransferQuery(participant_id=BANK_B))
    assert {t.transfer_id for t in by_payee.transfers} == {first, rejected, pending}
    ranged = search(TransferQuery(from_ns=middle - 1, to_ns=middle + S))
    assert [t.transfer_id for t in ranged.transfers] == [rejected]
    assert search(TransferQuery(transfer_id="nope")).transfers == []
    newest_first = search(TransferQuery())
    assert [t.transfer_id for t in newest_first.transfers] == [pending, rejected, first]
    assert newest_first.complete


async def test_a_timeline_lists_messages_states_and_ledger_legs_in_order(world):
    transfer_id, _ = world.send(amount_minor=5_000, accept=None)
    world.clock.advance(0.5)
    world.switch.step(PayeeAnswered(payee_participant_id=BANK_B, answer=PayeeAnswer(
        payer_participant_id=BANK_A, transfer_id=transfer_id, accepted=True)))
    timeline = world.service.timeline(BANK_A, transfer_id)
    assert timeline.transfer.state == "committed"
    names = [(step.kind, step.name) for step in timeline.steps]
    assert names == [
        ("message", "received"), ("state", "reserved"), ("message", "forwarded"),
        ("ledger", "reserve (pending)"), ("message", "committed"), ("ledger", "post"),
    ]
    times = [step.at_ns for step in timeline.steps]
    assert times == sorted(times)
    assert times[-1] - times[0] >= S // 2
    assert timeline.transfer.received_ns == times[0]


async def test_a_resume_while_the_switch_is_still_down_keeps_the_proposal_approved(world):
    bob, carol = world.caller("bob"), world.caller("carol")
    proposal = await world.service.propose(bob, FundProposal(
        participant_id=BANK_B, currency="BRL", amount_minor=7))
    world.switch.available = False
    await refused(world.service.decide(carol, proposal.proposal_id, Decision(approve=True)),
                  AdminResult.SWITCH_UNAVAILABLE)
    assert await world.service.resume_approved() == 0
    assert (await world.service.proposal(proposal.proposal_id)).state == "approved"


async def test_alerts_name_a_participant_near_its_liquidity_and_a_suspended_one(world):
    assert world.service.alerts() == []
    world.send(payer=BANK_A, payee=BANK_B, amount_minor=450_000)
    world.send(payer=BANK_A, payee=BANK_B, amount_minor=400_000)
    alerts = world.service.alerts()
    assert [(a.kind, a.severity) for a in alerts] == [("near_limit", "warning")]
    assert "bank-a" in alerts[0].text and "85%" in alerts[0].text
    await world.service.set_status(world.caller("bob"), BANK_B, suspend=True)
    kinds = {a.kind for a in world.service.alerts()}
    assert kinds == {"near_limit", "suspended"}
