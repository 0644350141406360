"""A small world for core tests: one core on a real ledger, currencies, participants, money.

No mocks: the core, the ledger and the messages are the real ones. Helpers build events the
way the shell would and return the commands the core answered with.
"""

from __future__ import annotations

import msgspec

from ledger import LedgerConfig
from ledger.types import Account, pack_accounts
from switch.core import CoreConfig, SettlementModel, SwitchCore
from switch.core.accounts import account_id as ledger_account_id
from switch.core.limits import PARTICIPANT_ID_MAX
from switch.core.messages import (
    AdminAnswer,
    ConsultStore,
    CurrencyAdded,
    FundsDeposited,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    PayeeAnswer,
    PayeeAnswered,
    Refused,
    RequestToPay,
    RequestToPayDecided,
    RequestToPayDecision,
    RequestToPayRequested,
    ReturnRequest,
    ReturnRequested,
    SchemeRules,
    Send,
    StatusQueried,
    StatusQuery,
    TimerFired,
    TransferOutcome,
    TransferRef,
    TransferRequest,
    TransferRequested,
)

T0 = 1_700_000_000 * 10**9  # a fixed UTC instant (2023-11-14T22:13:20Z)
S = 10**9
MS = 10**6

BANK_A, BANK_B, WALLET_C, BANK_D = 1, 2, 3, 4
U64_MAX = 2**64 - 1
SCRATCH_CODE = 99  # ledger code of the scratch accounts `World.preload` posts against
PRELOAD_ID_BASE = 1 << 62  # far above the core's (seq << 3 | leg) ledger transfer ids


class World:
    """A core with currency BRL (prefunded RTGS) and KES (deferred net), participants A, B, C
    with accounts in both, D with none; A and B funded / capped with 1,000,000 minor units."""

    def __init__(self, ledger_cls, config: CoreConfig | None = None, rules: SchemeRules | None = None,
                 ledger_config: LedgerConfig | None = None, observer=None):
        self.ledger = ledger_cls(ledger_config or LedgerConfig(
            accounts_max=1_000, transfers_retained_max=1 << 14, pending_max=1 << 12,
        ))
        self.config = config or CoreConfig(
            transfers_retained_max=1_000, in_flight_max=100, debug_checks=True,
        )
        self.core = SwitchCore(self.config, self.ledger, observer=observer)
        self.now_ns = T0
        self.events: list[tuple[int, object]] = []
        rules = rules or SchemeRules(
            transfer_max_minor=500_000, daily_total_max_minor=2_000_000, fee_fixed_minor=2,
            fee_bps=10, payee_timeout_ms=10_000,
        )
        self.admin_ok(CurrencyAdded(request_id="cur-brl", currency="BRL", ledger_id=986,
                                    settlement_model=SettlementModel.PREFUNDED_RTGS, rules=rules))
        self.admin_ok(CurrencyAdded(request_id="cur-kes", currency="KES", ledger_id=404,
                                    settlement_model=SettlementModel.DEFERRED_NET, rules=rules))
        for participant_id, name in ((BANK_A, "bank-a"), (BANK_B, "bank-b"),
                                     (WALLET_C, "wallet-c"), (BANK_D, "bank-d")):
            self.admin_ok(ParticipantAdded(request_id=f"add-{name}",
                                           participant_id=participant_id, name=name))
        for participant_id in (BANK_A, BANK_B, WALLET_C):
            for currency in ("BRL", "KES"):
                self.admin_ok(ParticipantAccountOpened(
                    request_id=f"open-{participant_id}-{currency}",
                    participant_id=participant_id, currency=currency))
        for participant_id in (BANK_A, BANK_B):
            self.admin_ok(FundsDeposited(request_id=f"fund-{participant_id}",
                                         participant_id=participant_id, currency="BRL",
                                         amount_minor=1_000_000))
            self.admin_ok(NetDebitCapSet(request_id=f"cap-{participant_id}",
                                         participant_id=participant_id, currency="KES",
                                         cap_minor=1_000_000))
        self.sequence = 0
        self.preloaded = 0

    # -- stepping ------------------------------------------------------------------------

    def step(self, event, at_ns: int | None = None) -> list:
        if at_ns is not None:
            self.now_ns = at_ns
        self.events.append((self.now_ns, event))
        return self.core.step(event, self.now_ns)

    def advance(self, delta_ns: int) -> None:
        self.now_ns += delta_ns

    def admin(self, event) -> AdminAnswer:
        commands = self.step(event)
        assert len(commands) == 1 and isinstance(commands[0], AdminAnswer), commands
        return commands[0]

    def admin_ok(self, event) -> None:
        answer = self.admin(event)
        assert answer.result == 0, answer

    # -- building events -----------------------------------------------------------------

    def next_id(self, prefix: str = "t") -> str:
        self.sequence += 1
        return f"{prefix}{self.sequence}"

    def transfer_event(self, payer: int = BANK_A, payee: int = BANK_B, amount_minor: int = 1_000,
                       currency: str = "BRL", transfer_id: str | None = None,
                       expires_in_ns: int = 60 * S, **fields) -> TransferRequested:
        request = TransferRequest(
            transfer_id=self.next_id() if transfer_id is None else transfer_id,
            payee=fields.pop("payee_alias", Party(alias_type="MSISDN", alias_value="+5511990000001")),
            amount_minor=amount_minor,
            currency=currency,
            expires_at_ns=fields.pop("expires_at_ns", self.now_ns + expires_in_ns),
            payer_user_ref=fields.pop("payer_user_ref", "user-1"),
            payer_account_ref=fields.pop("payer_account_ref", "payer-acc"),
            **fields,
        )
        return TransferRequested(payer_participant_id=payer, payee_participant_id=payee,
                                 payee_account_ref="payee-acc", request=request)

    def send_transfer(self, **kwargs) -> tuple[TransferRequested, list]:
        event = self.transfer_event(**kwargs)
        return event, self.step(event)

    def transfer_answer_event(self, event, accepted: bool = True, sender: int | None = None,
                              reason: str = "") -> PayeeAnswered:
        payee = sender if sender is not None else self.payee_of(event)
        return PayeeAnswered(payee_participant_id=payee, answer=PayeeAnswer(
            payer_participant_id=event.payer_participant_id,
            transfer_id=event.request.transfer_id, accepted=accepted, reason=reason))

    def answer(self, event, accepted: bool = True, sender: int | None = None,
               reason: str = "") -> list:
        return self.step(self.transfer_answer_event(event, accepted, sender, reason))

    def payee_of(self, event) -> int:
        if isinstance(event, TransferRequested):
            return event.payee_participant_id
        record = self.record(event.payer_participant_id, event.request.transfer_id)
        return record.payee_participant_id

    def status(self, sender: int, payer: int, transfer_id: str) -> list:
        return self.step(StatusQueried(participant_id=sender, query=StatusQuery(
            payer_participant_id=payer, transfer_id=transfer_id)))

    def return_event(self, original: TransferRequested, amount_minor: int,
                     transfer_id: str | None = None, sender: int | None = None,
                     expires_in_ns: int = 60 * S) -> ReturnRequested:
        return ReturnRequested(
            payer_participant_id=sender if sender is not None else original.payee_participant_id,
            request=ReturnRequest(
                transfer_id=self.next_id("r") if transfer_id is None else transfer_id,
                original=TransferRef(payer_participant_id=original.payer_participant_id,
                                     transfer_id=original.request.transfer_id),
                amount_minor=amount_minor,
                expires_at_ns=self.now_ns + expires_in_ns,
            ),
        )

    def rtp_event(self, payee: int = BANK_B, payer: int = BANK_A, amount_minor: int = 1_000,
                  currency: str = "BRL", request_id: str | None = None,
                  expires_in_ns: int = 120 * S) -> RequestToPayRequested:
        return RequestToPayRequested(
            payee_participant_id=payee, payer_participant_id=payer, payer_account_ref="payer-acc",
            request=RequestToPay(
                request_id=self.next_id("q") if request_id is None else request_id,
                payer=Party(alias_type="MSISDN", alias_value="+5511990000002"),
                amount_minor=amount_minor, currency=currency,
                expires_at_ns=self.now_ns + expires_in_ns, payee_account_ref="payee-acc",
            ),
        )

    def decide(self, rtp: RequestToPayRequested, approved: bool, transfer_id: str = "",
               sender: int | None = None, expires_in_ns: int = 60 * S) -> list:
        return self.step(self.decision_event(rtp, approved, transfer_id, sender, expires_in_ns))

    def decision_event(self, rtp: RequestToPayRequested, approved: bool, transfer_id: str = "",
                       sender: int | None = None,
                       expires_in_ns: int = 60 * S) -> RequestToPayDecided:
        return (RequestToPayDecided(
            payer_participant_id=sender if sender is not None else rtp.payer_participant_id,
            decision=RequestToPayDecision(
                payee_participant_id=rtp.payee_participant_id,
                request_id=rtp.request.request_id, approved=approved, transfer_id=transfer_id,
                expires_at_ns=self.now_ns + expires_in_ns if approved else 0,
            ),
        ))

    def fire(self, timer_id: int) -> list:
        return self.step(TimerFired(timer_id=timer_id))

    def preload(self, account_id: int, *, credits_minor: int = 0, debits_minor: int = 0) -> None:
        """Post straight to the ledger, behind the core's back, between `account_id` and a
        fresh scratch account of its ledger: how a test brings an account's totals near
        2**64 without ~18,000 operator requests (each is bounded by AMOUNT_MINOR_MAX). The
        books still balance; the core never sees the scratch accounts."""
        (account,) = self.ledger.lookup_accounts([account_id])
        for amount_minor, outgoing in ((credits_minor, False), (debits_minor, True)):
            if not amount_minor:
                continue
            self.preloaded += 1
            scratch = ledger_account_id(account.ledger, PARTICIPANT_ID_MAX - self.preloaded,
                                        SCRATCH_CODE)
            failures = self.ledger.create_accounts(pack_accounts([Account(
                id=scratch, ledger=account.ledger, code=SCRATCH_CODE)]), self.now_ns)
            assert not failures, failures
            debit, credit = (account_id, scratch) if outgoing else (scratch, account_id)
            result = self.ledger.create_transfer(
                PRELOAD_ID_BASE + self.preloaded, debit, credit, amount_minor, 0, 0, 0, 0,
                account.ledger, SCRATCH_CODE, 0, self.now_ns)
            assert result == 0, result

    # -- reading -------------------------------------------------------------------------

    def record(self, payer: int, transfer_id: str):
        return self.core._transfers[(payer, transfer_id)]

    def balance(self, participant_id: int, currency: str = "BRL") -> tuple[int, int, int, int]:
        (account,) = self.ledger.lookup_accounts([self.core.account_id(participant_id, currency)])
        return (account.debits_pending, account.debits_posted, account.credits_pending,
                account.credits_posted)

    def available(self, participant_id: int, currency: str = "BRL") -> int:
        dp, dpo, _cp, cpo = self.balance(participant_id, currency)
        return cpo - dp - dpo

    def fingerprint(self) -> bytes:
        """Everything the core and the ledger hold, as bytes: equal before/after means a
        step changed nothing."""
        return fingerprint(self.core)


def fingerprint(core) -> bytes:
    state = msgspec.msgpack.encode([
        core._seq, core._in_flight, core._now_ns, sorted(core._timers),
        [msgspec.to_builtins(r) for r in core._transfers.values()],
        list(core._transfers_final),
        [msgspec.to_builtins(r) for r in core._requests.values()],
        list(core._requests_final),
        [msgspec.to_builtins(p) for p in core._participants.values()],
        [msgspec.to_builtins(c) for c in core._currencies.values()],
        sorted(core._admin_seen), list(core._admin_order),
        msgspec.to_builtins(core._settlement_snapshot()),
    ])
    return state + core.ledger.digest()


def only(commands: list, kind):
    found = [c for c in commands if isinstance(c, kind)]
    assert len(found) == 1, commands
    return found[0]


def sends(commands: list) -> list[Send]:
    return [c for c in commands if isinstance(c, Send)]


def outcome_to(commands: list, participant_id: int) -> TransferOutcome:
    found = [c.message for c in sends(commands)
             if c.participant_id == participant_id and isinstance(c.message, TransferOutcome)]
    assert len(found) == 1, commands
    return found[0]


def refusal(commands: list) -> Refused:
    assert len(commands) == 1, commands
    assert isinstance(commands[0], Send) and isinstance(commands[0].message, Refused), commands
    return commands[0].message


def result_of(commands: list) -> int:
    """The result code a single-answer step produced, whatever carried it."""
    for command in commands:
        if isinstance(command, AdminAnswer):
            return command.result
        if isinstance(command, ConsultStore):
            return command.result_if_absent
        if isinstance(command, Send) and hasattr(command.message, "result"):
            return command.message.result
    raise AssertionError(f"no result in {commands}")
