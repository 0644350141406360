"""Every ledger result the core can receive is handled, at every place it asks the ledger.

The core moves money through the ledger in four places: the reserve of a transfer (one
pending leg, or a linked payment + fee pair), its post or void, and the operator's
single-phase transfers (deposit, withdrawal, net debit cap raise and lower); it opens
accounts in two (a currency's hub accounts, a participant's account). For each place, every
member of `CreateTransferResult` (or `CreateAccountResult`) is either

- a refusal: it can really happen (an account's totals near 2**64, a payer out of money), so
  it becomes a typed `Result` and changes nothing; or
- impossible short of a bug in the core (ids are fresh, accounts exist and are never closed,
  the pending pool is sized for `in_flight_max`, operator transfers are checked before the
  ledger is asked ...): the core stops with an AssertionError, which the server treats as
  fail-stop.

The tables below say which, and why. Real inputs produce every refusal that can happen (the
operator's own requests repeated, or an account preloaded near 2**64 behind the core's back
— `World.preload` — where ~18,000 operator requests would be needed). No real input can
produce the impossible ones: `forcing` wraps the real ledger and answers the one call under
test with the member under test, to show the core's handling of it.
"""

from __future__ import annotations

import pytest

from core_helpers import (
    BANK_A,
    BANK_B,
    BANK_D,
    U64_MAX,
    World,
    result_of,
)
from ledger.types import CreateAccountResult, CreateTransferResult
from switch.core import Result
from switch.core.limits import AMOUNT_MINOR_MAX, NET_DEBIT_CAP_MINOR_MAX
from switch.core.messages import (
    AdminAnswer,
    CreditRequest,
    CurrencyAdded,
    FundsDeposited,
    FundsWithdrawn,
    NetDebitCapSet,
    ParticipantAccountOpened,
    SchemeRules,
    Send,
)
from switch.core.results import SettlementModel

TR = CreateTransferResult
AR = CreateAccountResult
LIQUIDITY = Result.PAYER_INSUFFICIENT_LIQUIDITY

# -- the tables ------------------------------------------------------------------------------

# At the reserve: (result for the payment leg, result for the fee leg, why it can happen).
# The payment leg debits the payer and credits the payee; the fee leg debits the payer and
# credits the hub's fee account. A pending transfer runs the *_PENDING and total checks only.
RESERVE_REFUSALS = {
    TR.OVERFLOWS_DEBITS_PENDING: (
        LIQUIDITY, LIQUIDITY,
        "the payer's account may never be debited beyond its credits, themselves at most "
        "2**64-1: a debit that would pass 2**64-1 is one its funds cannot cover"),
    TR.OVERFLOWS_CREDITS_PENDING: (
        Result.PAYEE_ACCOUNT_OVERFLOW, Result.HUB_ACCOUNT_OVERFLOW,
        "credits are cumulative: a payee (or the fee account) that received ~2**64 minor "
        "units in its life cannot be credited more"),
    TR.OVERFLOWS_DEBITS: (LIQUIDITY, LIQUIDITY, "as OVERFLOWS_DEBITS_PENDING, pending + posted"),
    TR.OVERFLOWS_CREDITS: (
        Result.PAYEE_ACCOUNT_OVERFLOW, Result.HUB_ACCOUNT_OVERFLOW,
        "as OVERFLOWS_CREDITS_PENDING, pending + posted"),
    TR.EXCEEDS_CREDITS: (LIQUIDITY, LIQUIDITY, "the payer's prefunding or cap is used up"),
}

# Why every other member cannot reach the core unless the core itself is wrong. These stay
# assertions at every place; the five above stay assertions everywhere but the reserve.
TRANSFER_BUGS = {
    TR.LINKED_EVENT_FAILED: "only the companion of another leg's failure; the core builds whole chains",
    TR.LINKED_EVENT_CHAIN_OPEN: "the core closes every chain it builds (last leg unlinked)",
    TR.TIMESTAMP_MUST_BE_ZERO: "the core never sets a timestamp",
    TR.RESERVED_FLAG: "the core sets only PENDING, LINKED, POST and VOID",
    TR.ID_MUST_NOT_BE_ZERO: "ids are seq << 3 | leg with seq >= 1",
    TR.ID_MUST_NOT_BE_INT_MAX: "seq <= SEQUENCE_MAX keeps ids below 2**64-1",
    TR.EXISTS_WITH_DIFFERENT_FLAGS: "every ledger id is fresh: seq is never reused",
    TR.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_AMOUNT: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_PENDING_ID: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_USER_DATA_64: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_USER_DATA_32: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_TIMEOUT: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_LEDGER: "every ledger id is fresh",
    TR.EXISTS_WITH_DIFFERENT_CODE: "every ledger id is fresh",
    TR.EXISTS: "every ledger id is fresh",
    TR.ID_ALREADY_FAILED: "every ledger id is fresh, a failed one included",
    TR.FLAGS_ARE_MUTUALLY_EXCLUSIVE: "the core never combines PENDING, POST and VOID",
    TR.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER: "the core sets no ledger timeout",
    TR.PENDING_ID_MUST_NOT_BE_ZERO: "a post or void names the reserve's id",
    TR.PENDING_ID_MUST_NOT_BE_INT_MAX: "a post or void names the reserve's id",
    TR.PENDING_ID_MUST_BE_DIFFERENT: "post and void legs differ from reserve legs",
    TR.PENDING_TRANSFER_NOT_FOUND: "a post or void follows its reserve; pending transfers never leave the pool before",
    TR.PENDING_TRANSFER_NOT_PENDING: "the reserve is a pending transfer",
    TR.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID: "post and void leave accounts 0",
    TR.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID: "post and void leave accounts 0",
    TR.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER: "post and void leave the ledger 0",
    TR.PENDING_TRANSFER_HAS_DIFFERENT_CODE: "post and void leave the code 0",
    TR.EXCEEDS_PENDING_TRANSFER_AMOUNT: "a post takes the whole pending amount (0)",
    TR.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT: "a void takes the whole pending amount (0)",
    TR.PENDING_TRANSFER_ALREADY_POSTED: "a transfer is finished exactly once (`_finish`)",
    TR.PENDING_TRANSFER_ALREADY_VOIDED: "a transfer is finished exactly once (`_finish`)",
    TR.PENDING_TRANSFER_EXPIRED: "the core sets no ledger timeout; it expires transfers itself",
    TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO: "account ids are derived, never 0",
    TR.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX: "account ids are derived, below 2**56",
    TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO: "account ids are derived, never 0",
    TR.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX: "account ids are derived, below 2**56",
    TR.ACCOUNTS_MUST_BE_DIFFERENT: "payer and payee differ (PAYER_AND_PAYEE_SAME); hub accounts are not a participant's",
    TR.PENDING_ID_MUST_BE_ZERO: "a reserve or operator transfer names no pending id",
    TR.AMOUNT_MUST_NOT_BE_ZERO: "amounts are >= 1; a zero fee or cap change sends no leg",
    TR.LEDGER_MUST_NOT_BE_ZERO: "ledger ids are >= 1",
    TR.CODE_MUST_NOT_BE_ZERO: "TransferCode starts at 1",
    TR.CLOSING_TRANSFER_MUST_BE_PENDING: "the core never closes accounts",
    TR.DEBIT_ACCOUNT_NOT_FOUND: "the core names only accounts it opened",
    TR.CREDIT_ACCOUNT_NOT_FOUND: "the core names only accounts it opened",
    TR.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER: "both accounts are of the transfer's currency",
    TR.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS: "both accounts are of the transfer's currency",
    TR.DEBIT_ACCOUNT_ALREADY_CLOSED: "the core never closes accounts",
    TR.CREDIT_ACCOUNT_ALREADY_CLOSED: "the core never closes accounts",
    TR.OVERFLOWS_TIMEOUT: "the core sets no ledger timeout",
    TR.OVERFLOWS_DEBITS_POSTED: "a reserve is pending; a post moves pending to posted (its "
                                "total was checked at the reserve); operator transfers are "
                                "checked before the ledger is asked",
    TR.OVERFLOWS_CREDITS_POSTED: "as OVERFLOWS_DEBITS_POSTED",
    TR.EXCEEDS_DEBITS: "no account of the core has CREDITS_MUST_NOT_EXCEED_DEBITS",
    TR.PENDING_TRANSFERS_FULL: "pending_max >= 2 * in_flight_max (asserted at construction)",
}
# At a post or void, and at an operator transfer: the reserve already checked the totals a
# post keeps (pending + posted), a void only lowers them, and the core checks an operator
# transfer before asking the ledger (ADMIN_ACCOUNT_OVERFLOW, ADMIN_FUNDS_INSUFFICIENT,
# ADMIN_CAP_BELOW_POSITION), so the ledger can only agree.
NOT_AT_RESERVE = ("post and void keep pending + posted, checked at the reserve; operator "
                  "transfers are checked before the ledger is asked")

ACCOUNT_BUGS = {
    AR.LINKED_EVENT_FAILED: "only the companion of another account's failure",
    AR.LINKED_EVENT_CHAIN_OPEN: "the last hub account is unlinked",
    AR.TIMESTAMP_MUST_BE_ZERO: "the core never sets a timestamp",
    AR.RESERVED_FIELD: "the core never sets it",
    AR.RESERVED_FLAG: "the core sets only LINKED and DEBITS_MUST_NOT_EXCEED_CREDITS",
    AR.ID_MUST_NOT_BE_ZERO: "account ids are derived, never 0",
    AR.ID_MUST_NOT_BE_INT_MAX: "account ids are derived, below 2**56",
    AR.EXISTS_WITH_DIFFERENT_FLAGS: "ids are unique per (ledger, participant, code): checked first",
    AR.EXISTS_WITH_DIFFERENT_USER_DATA_64: "as EXISTS_WITH_DIFFERENT_FLAGS",
    AR.EXISTS_WITH_DIFFERENT_USER_DATA_32: "as EXISTS_WITH_DIFFERENT_FLAGS",
    AR.EXISTS_WITH_DIFFERENT_LEDGER: "as EXISTS_WITH_DIFFERENT_FLAGS",
    AR.EXISTS_WITH_DIFFERENT_CODE: "as EXISTS_WITH_DIFFERENT_FLAGS",
    AR.EXISTS: "ADMIN_CURRENCY_EXISTS / ADMIN_ACCOUNT_EXISTS are checked first",
    AR.FLAGS_ARE_MUTUALLY_EXCLUSIVE: "the core sets one limit flag at most",
    AR.DEBITS_PENDING_MUST_BE_ZERO: "the core opens accounts empty",
    AR.DEBITS_POSTED_MUST_BE_ZERO: "the core opens accounts empty",
    AR.CREDITS_PENDING_MUST_BE_ZERO: "the core opens accounts empty",
    AR.CREDITS_POSTED_MUST_BE_ZERO: "the core opens accounts empty",
    AR.LEDGER_MUST_NOT_BE_ZERO: "ledger ids are >= 1",
    AR.CODE_MUST_NOT_BE_ZERO: "AccountCode starts at 1",
    AR.ACCOUNTS_FULL: "checked first (ADMIN_TABLE_FULL), so a refusal leaves the ledger untouched",
}


def test_the_tables_cover_every_member_once():
    assert set(RESERVE_REFUSALS).isdisjoint(TRANSFER_BUGS)
    assert set(RESERVE_REFUSALS) | set(TRANSFER_BUGS) == set(TR) - {TR.OK}
    assert set(ACCOUNT_BUGS) == set(AR) - {AR.OK}


# -- forcing one answer of the real ledger -----------------------------------------------------


def forcing(ledger_cls):
    """A ledger class: the real `ledger_cls`, except that `force(method, answer)` makes the
    next call of `method` answer `answer` without touching the books."""

    class Forcing:
        def __init__(self, config):
            self._real = ledger_cls(config)
            self._forced: dict[str, object] = {}

        def force(self, method: str, answer) -> None:
            self._forced[method] = answer

        def __getattr__(self, name):
            real = getattr(self._real, name)
            if name not in ("create_transfer", "create_transfers", "create_accounts"):
                return real

            def call(*args):
                if name in self._forced:
                    return self._forced.pop(name)
                return real(*args)
            return call

    return Forcing


NO_FEE = SchemeRules(transfer_max_minor=500_000, daily_total_max_minor=2_000_000,
                     payee_timeout_ms=10_000)


def _transfer(world):
    return world.transfer_event(amount_minor=1_000)


def _pending(world):
    event, _ = world.send_transfer(amount_minor=1_000)
    return event


# place -> (fee?, setup(world) -> state, trigger(world, state) -> event, method, leg index)
# (leg None: one leg, create_transfer; 0 / 1: the linked pair, create_transfers)
TRANSFER_PLACES = {
    "reserve": (False, lambda w: None, lambda w, s: _transfer(w), "create_transfer", None),
    "reserve payment leg": (True, lambda w: None, lambda w, s: _transfer(w), "create_transfers", 0),
    "reserve fee leg": (True, lambda w: None, lambda w, s: _transfer(w), "create_transfers", 1),
    "post": (False, _pending, lambda w, s: w.transfer_answer_event(s, True), "create_transfer", None),
    "post payment leg": (True, _pending, lambda w, s: w.transfer_answer_event(s, True),
                         "create_transfers", 0),
    "post fee leg": (True, _pending, lambda w, s: w.transfer_answer_event(s, True),
                     "create_transfers", 1),
    "void": (False, _pending, lambda w, s: w.transfer_answer_event(s, False), "create_transfer", None),
    "void payment leg": (True, _pending, lambda w, s: w.transfer_answer_event(s, False),
                         "create_transfers", 0),
    "void fee leg": (True, _pending, lambda w, s: w.transfer_answer_event(s, False),
                     "create_transfers", 1),
    "deposit": (True, lambda w: None, lambda w, s: FundsDeposited(
        request_id="dep", participant_id=BANK_A, currency="BRL", amount_minor=10),
        "create_transfer", None),
    "withdrawal": (True, lambda w: None, lambda w, s: FundsWithdrawn(
        request_id="wd", participant_id=BANK_A, currency="BRL", amount_minor=10),
        "create_transfer", None),
    "cap raise": (True, lambda w: None, lambda w, s: NetDebitCapSet(
        request_id="up", participant_id=BANK_A, currency="KES", cap_minor=2_000_000),
        "create_transfer", None),
    "cap lower": (True, lambda w: None, lambda w, s: NetDebitCapSet(
        request_id="down", participant_id=BANK_A, currency="KES", cap_minor=10),
        "create_transfer", None),
}
RESERVES = ("reserve", "reserve payment leg", "reserve fee leg")


def expected(place: str, member: TR) -> Result | None:
    """The typed refusal `member` becomes at `place`, or None: it is a bug there."""
    if member in RESERVE_REFUSALS and place in RESERVES:
        payment, fee, _why = RESERVE_REFUSALS[member]
        return fee if place == "reserve fee leg" else payment
    return None


def _answer(member: TR, leg: int | None):
    if leg is None:
        return member
    other = TR.LINKED_EVENT_FAILED
    return [(0, member), (1, other)] if leg == 0 else [(0, other), (1, member)]


@pytest.mark.parametrize("place", list(TRANSFER_PLACES))
@pytest.mark.parametrize("member", [m for m in TR if m is not TR.OK], ids=lambda m: m.name)
def test_every_transfer_result_at_every_place(ledger_cls, place, member):
    fee, setup, trigger, method, leg = TRANSFER_PLACES[place]
    world = World(forcing(ledger_cls), rules=None if fee else NO_FEE)
    state = setup(world)
    event = trigger(world, state)
    world.ledger.force(method, _answer(member, leg))
    refusal = expected(place, member)
    if refusal is None:
        reason = TRANSFER_BUGS.get(member, NOT_AT_RESERVE)
        with pytest.raises(AssertionError):  # fail-stop: `reason` says why it is a bug
            world.step(event)
        assert reason
        return
    ledger_before = world.ledger.digest()
    commands = world.step(event)
    assert result_of(commands) == refusal
    assert world.ledger.digest() == ledger_before  # no money moved


@pytest.mark.parametrize("place", list(TRANSFER_PLACES))
def test_every_place_succeeds_when_the_ledger_says_ok(ledger_cls, place):
    fee, setup, trigger, _method, _leg = TRANSFER_PLACES[place]
    world = World(forcing(ledger_cls), rules=None if fee else NO_FEE)
    event = trigger(world, setup(world))
    commands = world.step(event)
    if place in RESERVES:  # reserved and forwarded to the payee
        assert any(isinstance(c, Send) and isinstance(c.message, CreditRequest) for c in commands)
    else:
        assert result_of(commands) in (Result.OK, Result.PAYEE_REJECTED)


ACCOUNT_PLACES = {
    "currency hub accounts": CurrencyAdded(request_id="cur-usd", currency="USD", ledger_id=840,
                                           settlement_model=SettlementModel.DEFERRED_NET),
    "participant account": ParticipantAccountOpened(request_id="open-d", participant_id=BANK_D,
                                                    currency="BRL"),
}


@pytest.mark.parametrize("place", list(ACCOUNT_PLACES))
@pytest.mark.parametrize("member", [m for m in AR if m is not AR.OK], ids=lambda m: m.name)
def test_every_account_result_at_every_place_is_a_bug(ledger_cls, place, member):
    world = World(forcing(ledger_cls))
    world.ledger.force("create_accounts", [(0, member)])
    assert ACCOUNT_BUGS[member]
    with pytest.raises(AssertionError):
        world.step(ACCOUNT_PLACES[place])


# -- real inputs: every refusal that can happen, changing nothing ---------------------------------


def _account(world: World, participant_id: int, currency: str = "BRL") -> int:
    return world.core.account_id(participant_id, currency)


def _hub(world: World, currency: str, name: str) -> int:
    return getattr(world.core.currency(currency), name)


def _money(world: World) -> tuple:
    return world.ledger.totals(), world.ledger.digest()


@pytest.mark.parametrize("fee", [False, True])
def test_a_payee_account_full_to_2_64_refuses_every_transfer_to_it(ledger_cls, fee):
    """The issue: OVERFLOWS_CREDITS on the payee made the core assert a different code and
    crash, again on every later transfer to that account."""
    world = World(ledger_cls, rules=None if fee else NO_FEE)
    world.preload(_account(world, BANK_B), credits_minor=U64_MAX - 1_000_000 - 500)
    for _ in range(2):
        event = world.transfer_event(amount_minor=600)  # credits 2**64-1-500, + 600
        totals = world.ledger.totals()
        commands = world.step(event)
        assert result_of(commands) == Result.PAYEE_ACCOUNT_OVERFLOW
        assert world.ledger.totals() == totals  # nothing moved
        record = world.record(BANK_A, event.request.transfer_id)
        assert not record.forwarded
    # What still fits goes through, and others are unaffected.
    fits, commands = world.send_transfer(amount_minor=400)
    assert result_of(world.answer(fits)) == Result.OK
    other, _ = world.send_transfer(payer=BANK_B, payee=BANK_A)
    assert result_of(world.answer(other)) == Result.OK


def test_a_hub_fee_account_full_to_2_64_refuses_transfers_with_a_fee(ledger_cls):
    world = World(ledger_cls)
    world.preload(_hub(world, "BRL", "hub_fees_account_id"), credits_minor=U64_MAX - 2)
    totals = world.ledger.totals()
    commands = world.step(world.transfer_event(amount_minor=1_000))  # fee 2 + 1 = 3
    assert result_of(commands) == Result.HUB_ACCOUNT_OVERFLOW
    assert world.ledger.totals() == totals


def test_a_payer_debit_past_2_64_is_insufficient_liquidity(ledger_cls):
    world = World(ledger_cls, rules=NO_FEE)
    account = _account(world, BANK_A)
    world.preload(account, credits_minor=U64_MAX - 1_000_000 - 10)  # credits: 2**64-11
    world.preload(account, debits_minor=U64_MAX - 10 - 500)  # 500 available
    totals = world.ledger.totals()
    commands = world.step(world.transfer_event(amount_minor=600))  # debits would pass 2**64
    assert result_of(commands) == LIQUIDITY
    assert world.ledger.totals() == totals


def _admin_overflows(world: World, event) -> AdminAnswer:
    before = world.fingerprint()
    answer = world.admin(event)
    assert answer.result == Result.ADMIN_ACCOUNT_OVERFLOW, answer
    assert world.fingerprint() == before  # nothing changed, not even the ledger's clock
    return answer


def test_a_deposit_that_would_overflow_the_participant_account_is_refused(ledger_cls):
    world = World(ledger_cls)
    world.preload(_account(world, BANK_A), credits_minor=U64_MAX - 1_000_000 - 5)
    answer = _admin_overflows(world, FundsDeposited(
        request_id="dep-big", participant_id=BANK_A, currency="BRL", amount_minor=6))
    assert "participant 1 BRL" in answer.detail and "credits" in answer.detail
    world.admin_ok(FundsDeposited(request_id="dep-big", participant_id=BANK_A, currency="BRL",
                                  amount_minor=5))  # the same id, once it fits: not remembered


def test_deposits_overflowing_the_hub_funding_account_are_refused(ledger_cls):
    """The operator's own path, no preloading: deposits of AMOUNT_MINOR_MAX until the hub's
    funding account (debited by every deposit) is full."""
    world = World(ledger_cls)
    count = 0
    while True:
        event = FundsDeposited(request_id=f"big-{count}", participant_id=BANK_A + count % 2,
                               currency="BRL", amount_minor=AMOUNT_MINOR_MAX)
        answer = world.admin(event)
        if answer.result != Result.OK:
            break
        count += 1
    assert count == (U64_MAX - 2_000_000) // AMOUNT_MINOR_MAX
    assert answer.result == Result.ADMIN_ACCOUNT_OVERFLOW and "hub BRL" in answer.detail
    _admin_overflows(world, event)  # refused again, still nothing changed
    # Every other operation goes on.
    world.admin_ok(FundsWithdrawn(request_id="out", participant_id=BANK_A, currency="BRL",
                                  amount_minor=AMOUNT_MINOR_MAX))
    event, _ = world.send_transfer(amount_minor=1_000)
    assert result_of(world.answer(event)) == Result.OK


def test_a_withdrawal_that_would_overflow_the_hub_funding_account_is_refused(ledger_cls):
    world = World(ledger_cls)
    world.preload(_hub(world, "BRL", "hub_liquidity_account_id"), credits_minor=U64_MAX - 10)
    answer = _admin_overflows(world, FundsWithdrawn(
        request_id="wd", participant_id=BANK_A, currency="BRL", amount_minor=11))
    assert "hub BRL" in answer.detail


def test_cap_changes_overflowing_an_account_are_refused_and_keep_the_cap(ledger_cls):
    """The operator's own path: raising and lowering a net debit cap by NET_DEBIT_CAP_MINOR_MAX
    piles up the totals of the participant's and the hub's cap accounts."""
    world = World(ledger_cls)
    cycles = 0
    answer = None
    while answer is None or answer.result == Result.OK:
        cycles += 1
        answer = world.admin(NetDebitCapSet(request_id=f"up-{cycles}", participant_id=BANK_A,
                                            currency="KES", cap_minor=NET_DEBIT_CAP_MINOR_MAX))
        if answer.result == Result.OK:
            world.admin_ok(NetDebitCapSet(request_id=f"down-{cycles}", participant_id=BANK_A,
                                          currency="KES", cap_minor=0))
    assert cycles == 19  # 18 raises of 10**18 fit in 2**64-1 (with the two initial caps)
    assert answer.result == Result.ADMIN_ACCOUNT_OVERFLOW and "debits" in answer.detail
    assert world.core.net_debit_cap_minor(BANK_A, "KES") == 0  # the refused cap is not set
    _admin_overflows(world, NetDebitCapSet(request_id="again", participant_id=BANK_A,
                                           currency="KES", cap_minor=NET_DEBIT_CAP_MINOR_MAX))
    world.admin_ok(NetDebitCapSet(request_id="small", participant_id=BANK_A, currency="KES",
                                  cap_minor=1_000))
    assert world.core.net_debit_cap_minor(BANK_A, "KES") == 1_000


def test_a_cap_lower_that_would_overflow_the_hub_cap_account_is_refused(ledger_cls):
    world = World(ledger_cls)
    world.preload(_hub(world, "KES", "hub_liquidity_account_id"), credits_minor=U64_MAX - 10)
    answer = _admin_overflows(world, NetDebitCapSet(
        request_id="lower", participant_id=BANK_A, currency="KES", cap_minor=1_000_000 - 11))
    assert "hub KES" in answer.detail and "credits" in answer.detail
    assert world.core.net_debit_cap_minor(BANK_A, "KES") == 1_000_000
