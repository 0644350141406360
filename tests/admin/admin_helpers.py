"""A small world for the admin tests: the real core and ledger in-process (`LocalSwitch`),
a real admin store (SQLite or PostgreSQL), the real service, and operators of every role.

Nothing is mocked. The clock is an input (the service and the core both take `now_ns`
from it), so tests can move time forward instead of sleeping.
"""

from __future__ import annotations

import time

from switch.admin.local import LocalSwitch
from switch.admin.passwords import Passwords
from switch.admin.ratelimit import LoginLimiter
from switch.admin.service import AdminService, Caller
from switch.admin.types import Decision, Role, UserCreate
from switch.core import SettlementModel
from switch.core.messages import (
    CurrencyAdded,
    FundsDeposited,
    ParticipantAccountOpened,
    ParticipantAdded,
    Party,
    PayeeAnswer,
    PayeeAnswered,
    SchemeRules,
    TransferRequest,
    TransferRequested,
)

S = 1_000_000_000
PASSWORD = "correct horse battery staple"
USERS = {"alice": "admin", "ada": "admin", "bob": "operator", "carol": "operator",
         "vic": "viewer"}
BANK_A, BANK_B = 1, 2
OPENING_MINOR = 1_000_000

# The cheapest argon2id the service accepts: tests hash many passwords.
FAST_PASSWORDS = dict(time_cost=1, memory_kib=8 * 1024)


class Clock:
    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += int(seconds * S)


class World:
    def __init__(self, store, clock: Clock):
        self.clock = clock
        self.switch = LocalSwitch(clock_ns=clock)
        self.store = store
        self.service = AdminService(store, self.switch, passwords=Passwords(**FAST_PASSWORDS),
                                    limiter=LoginLimiter(), clock_ns=clock)
        self.root = Caller("cli:test", Role.ADMIN, "local")
        self._ids = 0

    async def setup(self) -> None:
        await self.switch.submit(CurrencyAdded(
            request_id="cur-brl", currency="BRL", ledger_id=986,
            settlement_model=SettlementModel.PREFUNDED_RTGS,
            rules=SchemeRules(payee_timeout_ms=10_000)))
        await self.switch.submit(CurrencyAdded(
            request_id="cur-kes", currency="KES", ledger_id=404,
            settlement_model=SettlementModel.DEFERRED_NET))
        for username, role in USERS.items():
            await self.service.create_user(self.root, UserCreate(
                username=username, password=PASSWORD, role=role))
        for participant_id, name in ((BANK_A, "bank-a"), (BANK_B, "bank-b")):
            # The in-process bootstrap (test setup, not an operator action): audited as
            # `system`, no maker-checker.
            target = f"participant:{participant_id}"
            await self.service.submit_as_system("setup", target, ParticipantAdded(
                request_id=f"setup-add-{participant_id}", participant_id=participant_id,
                name=name), {})
            for currency in ("BRL", "KES"):
                await self.service.submit_as_system("setup", target, ParticipantAccountOpened(
                    request_id=f"setup-open-{participant_id}-{currency}",
                    participant_id=participant_id, currency=currency), {})
            await self.switch.register_participant(participant_id, name, "bank", "")
            await self.service.submit_as_system("setup", target, FundsDeposited(
                request_id=f"setup-fund-{participant_id}", participant_id=participant_id,
                currency="BRL", amount_minor=OPENING_MINOR), {})

    async def carried_out(self, maker: str, checker: str, body):
        """A proposal by `maker` approved by `checker`: the approval's answer."""
        proposal = await self.service.propose(self.caller(maker), body)
        return await self.service.decide(self.caller(checker), proposal.proposal_id,
                                         Decision(approve=True))

    def caller(self, username: str) -> Caller:
        from switch.admin.types import ROLE_NAMES

        return Caller(username, ROLE_NAMES[USERS[username]], "10.0.0.1")

    def balance(self, participant_id: int, currency: str = "BRL") -> int:
        account_id = self.switch.core.account_id(participant_id, currency)
        (account,) = self.switch.ledger.lookup_accounts([account_id])
        return account.credits_posted - account.debits_posted

    def status(self, participant_id: int) -> str:
        return self.switch.core.participant(participant_id).status.name.lower()

    async def audit_count(self) -> int:
        return (await self.store.audit_head())[0]

    def send(self, payer: int = BANK_A, payee: int = BANK_B, amount_minor: int = 1_000,
             end_to_end_id: str = "", accept: bool | None = True,
             currency: str = "BRL") -> tuple[str, list]:
        """A transfer through the real core; the payee answers at once unless accept=None."""
        self._ids += 1
        transfer_id = f"t{self._ids}"
        event = TransferRequested(
            payer_participant_id=payer, payee_participant_id=payee, payee_account_ref="acc",
            request=TransferRequest(
                transfer_id=transfer_id,
                payee=Party(alias_type="MSISDN", alias_value="+5511990000001"),
                amount_minor=amount_minor, currency=currency,
                expires_at_ns=self.clock() + 60 * S, end_to_end_id=end_to_end_id))
        commands = self.switch.step(event)
        if accept is not None:
            commands += self.switch.step(PayeeAnswered(
                payee_participant_id=payee, answer=PayeeAnswer(
                    payer_participant_id=payer, transfer_id=transfer_id, accepted=accept,
                    reason="" if accept else "account closed")))
        return transfer_id, commands
