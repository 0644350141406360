"""One operator surface: every change of money, limits, currencies, participants, keys,
certificates, callback URLs and directory categories is a proposal that changes nothing
until a second operator holding the role it needs approves it; a new API key is shown once,
to that checker; work approved before a restart is finished without showing a key to
nobody. On the real core and both admin stores."""

from __future__ import annotations

import msgspec
import pytest

from admin_helpers import BANK_A, BANK_B, OPENING_MINOR
from switch.admin.local import LocalSwitch
from switch.admin.passwords import Passwords
from switch.admin.ports import AuditEntry
from switch.admin.service import AdminService
from switch.admin.types import (
    G2PBatchProposal,
    PROPOSAL_ROLES,
    AccountProposal,
    AdminRefusal,
    AdminResult,
    CallbackUrlProposal,
    CategoryProposal,
    CertificateProposal,
    CurrencyProposal,
    DailyLimitProposal,
    Decision,
    DefundProposal,
    FspiopParticipantProposal,
    FundProposal,
    KeyRotationProposal,
    MobileMoneyWalletProposal,
    NetDebitCapProposal,
    OnboardProposal,
    ProposalBody,
    ProposalState,
    Role,
)
from switch.core.messages import CurrencyAdded, SchemeRules
from switch.core.results import Result, SettlementModel
from switch.g2p.types import BatchState

FINGERPRINT = "ab" * 32


async def refused(awaitable, result: AdminResult) -> AdminRefusal:
    with pytest.raises(AdminRefusal) as caught:
        await awaitable
    assert caught.value.result is result, caught.value
    return caught.value


def state(world) -> tuple:
    """Everything a proposal could change, to compare before and after."""
    core, switch = world.switch.core, world.switch
    participants = {pid: (core.participant(pid).name, core.participant(pid).currencies,
                          switch.participant_settings(pid), switch.participant_category(pid),
                          frozenset(switch.certificates(pid)) if switch._settings.get(pid)
                          else frozenset(),
                          str(getattr(switch, "mobilemoney_wallets", {}).get(pid)),
                          str({key: value for key, value in switch.g2p_batches.items()
                               if key[0] == pid}),
                          str(getattr(switch, "fspiop_participants", {}).get(pid)))
                    for pid in core.participant_ids()}
    balances = {(pid, currency): world.balance(pid, currency)
                for pid in core.participant_ids() for currency in core.participant(pid).currencies}
    limits = {(pid, currency): (core.net_debit_cap_minor(pid, currency),
                                core.daily_max_minor(pid, currency))
              for pid in core.participant_ids() for currency in core.participant(pid).currencies}
    return participants, balances, limits, tuple(core.currencies())


# One of every kind, valid against the world (BRL prefunded, KES deferred net).
EVERY_KIND: list[ProposalBody] = [
    FundProposal(participant_id=BANK_A, currency="BRL", amount_minor=500),
    DefundProposal(participant_id=BANK_A, currency="BRL", amount_minor=500),
    NetDebitCapProposal(participant_id=BANK_A, currency="KES", cap_minor=9_000),
    DailyLimitProposal(participant_id=BANK_A, currency="BRL", daily_total_max_minor=77_000),
    CurrencyProposal(currency="USD", ledger_id=840, settlement_model="deferred_net",
                     rules=SchemeRules(fee_fixed_minor=3)),
    OnboardProposal(name="wallet-n", participant_kind="wallet", currencies=["BRL"],
                    funding_minor=1_000, category="C"),
    AccountProposal(participant_id=BANK_A, currency="USD"),
    CallbackUrlProposal(participant_id=BANK_A, callback_url="https://bank-a.example/ponte"),
    KeyRotationProposal(participant_id=BANK_A),
    CertificateProposal(participant_id=BANK_A, fingerprint_sha256=FINGERPRINT),
    CategoryProposal(participant_id=BANK_A, category="B"),
    MobileMoneyWalletProposal(participant_id=BANK_A, api_url="https://bank-a.example/mm"),
    G2PBatchProposal(participant_id=BANK_A, transaction_id="pension-1", action="pause"),
    FspiopParticipantProposal(participant_id=BANK_A, fsp_id="bank-a",
                              endpoint="https://bank-a.example/fspiop"),
]


def _maker_checker(body) -> tuple[str, str]:
    return ("alice", "ada") if PROPOSAL_ROLES[msgspec.inspect.type_info(
        type(body)).tag] is Role.ADMIN else ("bob", "carol")


def test_the_table_covers_every_kind():
    assert {type(body).__struct_config__.tag for body in EVERY_KIND} == set(PROPOSAL_ROLES)


@pytest.mark.parametrize("body", EVERY_KIND, ids=lambda b: type(b).__struct_config__.tag)
async def test_every_change_waits_for_a_second_operator(world, body):
    if isinstance(body, AccountProposal):  # needs the currency it opens
        await world.switch.submit(CurrencyAdded(
            request_id="cur-usd", currency="USD", ledger_id=840,
            settlement_model=SettlementModel.PREFUNDED_RTGS))
    if isinstance(body, G2PBatchProposal):  # a batch to pause (no G2P engine runs here)
        world.switch.g2p_batches[(BANK_A, "pension-1")] = BatchState.ACTIVE
    maker, checker = _maker_checker(body)
    before = state(world)
    submitted = len(world.switch.submitted)
    proposal = await world.service.propose(world.caller(maker), body)
    assert proposal.state == "pending"
    assert state(world) == before  # proposing changed nothing
    assert len(world.switch.submitted) == submitted
    await refused(world.service.decide(world.caller(maker), proposal.proposal_id,
                                       Decision(approve=True)), AdminResult.CHECKER_MUST_DIFFER)
    assert state(world) == before
    done = await world.service.decide(world.caller(checker), proposal.proposal_id,
                                      Decision(approve=True))
    assert done.state == "executed", done
    if not isinstance(body, KeyRotationProposal):
        assert state(world) != before
    records = await world.service.audit_page(limit=3)
    assert [r.action for r in records][:2] == ["proposal.execute", "proposal.approve"]


async def test_onboarding_creates_the_participant_and_shows_its_key_once(world):
    proposal = await world.service.propose(world.caller("alice"), OnboardProposal(
        name="bank-n", participant_kind="wallet", currencies=["BRL", "KES"],
        callback_url="https://bank-n.example/cb", category="C", funding_minor=300_000,
        net_debit_cap_minor=200_000))
    new_id = proposal.participant_id
    assert new_id == max(BANK_A, BANK_B) + 1  # the next free id, fixed when proposed
    assert world.switch.core.participant(new_id) is None
    done = await world.service.decide(world.caller("ada"), proposal.proposal_id,
                                      Decision(approve=True))
    assert done.state == "executed"
    view = world.service.participant(new_id)
    assert (view.name, view.kind, view.callback_url, view.category) == (
        "bank-n", "wallet", "https://bank-n.example/cb", "C")
    assert world.balance(new_id, "BRL") == 300_000
    assert world.switch.core.net_debit_cap_minor(new_id, "KES") == 200_000
    assert world.switch.authenticate(done.api_key) == new_id
    assert (await world.service.proposal(proposal.proposal_id)).api_key == ""
    assert not any(done.api_key in r.detail for r in await world.service.audit_page())


async def test_a_pending_onboarding_holds_its_id_and_name(world):
    alice = world.caller("alice")
    first = await world.service.propose(alice, OnboardProposal(name="bank-p"))
    second = await world.service.propose(alice, OnboardProposal(name="bank-q"))
    assert second.participant_id == first.participant_id + 1
    await refused(world.service.propose(alice, OnboardProposal(name="bank-p")),
                  AdminResult.VALIDATION_ERROR)


async def test_an_onboarding_overtaken_before_approval_fails_without_a_key(world):
    alice, ada = world.caller("alice"), world.caller("ada")
    late = await world.service.propose(alice, OnboardProposal(participant_id=9, name="bank-r"))
    # Meanwhile the in-process bootstrap takes the name.
    from switch.core.messages import ParticipantAdded

    await world.service.submit_as_system("setup", "participant:10", ParticipantAdded(
        request_id="setup-r", participant_id=10, name="bank-r"), {})
    before = state(world)
    done = await world.service.decide(ada, late.proposal_id, Decision(approve=True))
    assert done.state == "failed" and done.api_key == ""
    assert done.core_result == Result.ADMIN_PARTICIPANT_EXISTS
    assert world.switch.core.participant(9) is None
    assert world.switch.participant_settings(9) == ("", "", [])  # no credentials either
    assert state(world) == before


async def test_a_refused_setting_fails_the_proposal_and_changes_nothing(world):
    # The directory no longer has the category by the time it is approved.
    proposal = await world.service.propose(world.caller("bob"), CategoryProposal(
        participant_id=BANK_A, category="B"))
    buckets = dict(world.switch.directory_config.participant_buckets)
    del buckets["B"]
    world.switch.directory_config = msgspec.structs.replace(
        world.switch.directory_config, participant_buckets=buckets)
    before = world.switch.participant_category(BANK_A)
    done = await world.service.decide(world.caller("carol"), proposal.proposal_id,
                                      Decision(approve=True))
    assert done.state == "failed" and done.core_result == Result.VALIDATION_ERROR
    assert world.switch.participant_category(BANK_A) == before


async def test_approved_before_a_restart_is_finished_without_showing_a_key(world):
    onboarding = await world.service.propose(world.caller("alice"), OnboardProposal(
        name="bank-s", currencies=["BRL"], funding_minor=10))
    rotation = await world.service.propose(world.caller("alice"), KeyRotationProposal(
        participant_id=BANK_B))
    world.switch.available = False  # the switch is restarting
    await refused(world.service.decide(world.caller("ada"), onboarding.proposal_id,
                                       Decision(approve=True)), AdminResult.SWITCH_UNAVAILABLE)
    world.switch.available = True
    # Its first step had been journaled before the switch went away: resuming answers it.
    from switch.core.messages import ParticipantAdded

    await world.switch.submit(ParticipantAdded(
        request_id=f"{onboarding.proposal_id}.add", participant_id=onboarding.participant_id,
        name="bank-s"))
    # The console process died between recording the rotation's approval and carrying it out.
    stored = await world.store.get_proposal(rotation.proposal_id)
    approved = msgspec.structs.replace(stored, state=ProposalState.APPROVED, decided_by="ada",
                                       decided_ns=world.clock())
    assert await world.store.decide_proposal(approved, ProposalState.PENDING, AuditEntry(
        at_ns=world.clock(), actor="ada", action="proposal.approve",
        target=rotation.proposal_id, result="OK"))
    keys_before = world.switch.participant_settings(BANK_B)[2]
    await world.service.resume_approved()
    finished = await world.service.proposal(onboarding.proposal_id)
    assert finished.state == "executed" and "no API key" in finished.detail
    assert world.balance(onboarding.participant_id, "BRL") == 10
    assert world.switch.participant_settings(onboarding.participant_id)[2] == []
    rotated = await world.service.proposal(rotation.proposal_id)
    assert rotated.state == "failed" and "propose it again" in rotated.detail
    assert world.switch.participant_settings(BANK_B)[2] == keys_before


async def test_categories_chosen_by_operators_come_back_after_a_restart(world):
    await world.carried_out("bob", "carol", CategoryProposal(participant_id=BANK_A,
                                                             category="A"))
    world.clock.advance(1)  # the later decision wins
    await world.carried_out("carol", "bob", CategoryProposal(participant_id=BANK_A,
                                                             category="D"))
    await world.carried_out("alice", "ada", OnboardProposal(name="bank-t", category="G"))
    # A new process: a fresh switch port, the same admin store.
    restarted = LocalSwitch(clock_ns=world.clock)
    service = AdminService(world.store, restarted, passwords=Passwords(time_cost=1,
                                                                       memory_kib=8192),
                           clock_ns=world.clock)
    assert restarted.participant_category(BANK_A) == "E"  # the directory's default
    assert await service.restore_settings() == 2
    assert restarted.participant_category(BANK_A) == "D"
    assert restarted.participant_category(BANK_B + 1) == "G"


async def test_bad_proposals_are_typed_refusals_that_record_nothing(world):
    bob, alice = world.caller("bob"), world.caller("alice")
    audit_before = await world.audit_count()
    await refused(world.service.propose(bob, CategoryProposal(participant_id=BANK_A,
                                                              category="Q")),
                  AdminResult.VALIDATION_ERROR)
    await refused(world.service.propose(bob, CallbackUrlProposal(participant_id=99,
                                                                 callback_url="")),
                  AdminResult.PARTICIPANT_NOT_FOUND)
    refusal = await refused(world.service.propose(alice, CurrencyProposal(
        currency="BRL", ledger_id=1)), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_CURRENCY_EXISTS
    refusal = await refused(world.service.propose(alice, CurrencyProposal(
        currency="USD", ledger_id=986)), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_CURRENCY_EXISTS
    refusal = await refused(world.service.propose(alice, AccountProposal(
        participant_id=BANK_A, currency="BRL")), AdminResult.SWITCH_REFUSED)
    assert refusal.core_result == Result.ADMIN_ACCOUNT_EXISTS
    assert await world.service.proposals() == []
    assert await world.audit_count() == audit_before
    assert world.balance(BANK_A) == OPENING_MINOR
    for bad in ({"kind": "certificate", "participant_id": BANK_A, "fingerprint_sha256": "xy"},
                {"kind": "callback_url", "participant_id": BANK_A, "callback_url": "ftp://x"},
                {"kind": "onboard", "name": "x", "participant_kind": "bakery"},
                {"kind": "currency", "currency": "usd", "ledger_id": 840},
                {"kind": "fund", "participant_id": BANK_A, "currency": "BRL",
                 "amount_minor": 0},
                {"kind": "no_such_kind", "participant_id": BANK_A}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, ProposalBody)
