"""A hypothesis RuleBasedStateMachine over each twin: random accounts (some with limits),
funding, single-phase, pending, post, void, balancing, linked chains and expiry, with the
ledger's invariants checked after every step: sum of debits == sum of credits (pending
and posted), no account with a *_must_not_exceed_* flag beyond its limit, every open
pending transfer accounted for, and a failed event changes no balance."""

from __future__ import annotations

import unittest

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from ledger.config import LedgerConfig
from ledger.reference import Ledger as PureLedger
from ledger.types import (
    Account,
    AccountFlags,
    CreateTransferResult,
    PendingStatus,
    Transfer,
    TransferFlags,
    pack_accounts,
    pack_transfers,
)
from ledger_helpers import LEDGER_HYPOTHESIS, compiled_ledger_cls

AF = AccountFlags
TF = TransferFlags
TR = CreateTransferResult
MS = 1_000_000
AMOUNTS = st.integers(1, 200)


class LedgerMachine(RuleBasedStateMachine):
    ledger_cls = PureLedger

    accounts = Bundle("accounts")
    pendings = Bundle("pendings")

    def __init__(self):
        super().__init__()
        self.ledger = self.ledger_cls(LedgerConfig(
            transfers_retained_max=64, pending_max=8, history_retained_max=16,
            debug_checks=True,
        ))
        self.now_ns = 1_000
        self.next_account_id = 1
        self.next_transfer_id = 1

    def _tick(self, step_ns: int = 1) -> int:
        self.now_ns += step_ns
        return self.now_ns

    def _new_id(self) -> int:
        self.next_transfer_id += 1
        return self.next_transfer_id

    def _apply(self, *transfers: Transfer, step_ns: int = 1):
        """Create transfers; a failing batch of one must not move any balance."""
        before = self.ledger.totals()
        failures = self.ledger.create_transfers(pack_transfers(transfers), self._tick(step_ns))
        if len(failures) == len(transfers):
            assert self.ledger.totals() == before, failures
        return failures

    @initialize(target=accounts)
    def funding_account(self):
        return self._open(0)

    def _open(self, flags: int) -> int:
        account_id = self.next_account_id
        self.next_account_id += 1
        failures = self.ledger.create_accounts(
            pack_accounts([Account(id=account_id, ledger=1, code=1, flags=flags)]),
            self._tick())
        assert failures == []
        return account_id

    @rule(target=accounts, flags=st.sampled_from([
        0, AF.DEBITS_MUST_NOT_EXCEED_CREDITS, AF.CREDITS_MUST_NOT_EXCEED_DEBITS,
        AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.HISTORY]))
    def open_account(self, flags):
        return self._open(flags)

    @rule(debit=accounts, credit=accounts, amount=AMOUNTS,
          flags=st.sampled_from([0, 0, TF.BALANCING_DEBIT, TF.BALANCING_CREDIT]))
    def single_phase(self, debit, credit, amount, flags):
        failures = self._apply(Transfer(id=self._new_id(), debit_account_id=debit,
                                        credit_account_id=credit, amount_minor=amount,
                                        ledger=1, code=1, flags=flags))
        if debit == credit:
            assert failures == [(0, TR.ACCOUNTS_MUST_BE_DIFFERENT)]

    @rule(target=pendings, debit=accounts, credit=accounts, amount=AMOUNTS,
          timeout_ms=st.sampled_from([0, 1, 10]))
    def pending(self, debit, credit, amount, timeout_ms):
        transfer_id = self._new_id()
        failures = self._apply(Transfer(id=transfer_id, debit_account_id=debit,
                                        credit_account_id=credit, amount_minor=amount,
                                        timeout_ms=timeout_ms, ledger=1, code=1,
                                        flags=TF.PENDING))
        if not failures:
            assert self.ledger.pending_status(transfer_id) == PendingStatus.PENDING
        return transfer_id

    @rule(pending_id=consumes(pendings), post=st.booleans(), amount=st.integers(0, 200),
          step_ms=st.integers(0, 3))
    def resolve(self, pending_id, post, amount, step_ms):
        was_open = self.ledger.pending_status(pending_id) == PendingStatus.PENDING
        failures = self._apply(Transfer(
            id=self._new_id(), pending_id=pending_id, amount_minor=amount if post else 0,
            flags=TF.POST_PENDING_TRANSFER if post else TF.VOID_PENDING_TRANSFER,
        ), step_ns=step_ms * MS)
        if not failures:
            assert was_open
            assert self.ledger.pending_status(pending_id) == (
                PendingStatus.POSTED if post else PendingStatus.VOIDED)

    @rule(debit=accounts, middle=accounts, credit=accounts, amount=AMOUNTS,
          second_amount=st.integers(0, 400))
    def linked_chain(self, debit, middle, credit, amount, second_amount):
        first, second = self._new_id(), self._new_id()
        before = self.ledger.totals()
        failures = self._apply(
            Transfer(id=first, debit_account_id=debit, credit_account_id=middle,
                     amount_minor=amount, ledger=1, code=1, flags=TF.LINKED),
            Transfer(id=second, debit_account_id=middle, credit_account_id=credit,
                     amount_minor=second_amount, ledger=1, code=1))
        if failures:
            assert self.ledger.totals() == before
            assert self.ledger.lookup_transfers([first, second]) == []
        else:
            assert len(self.ledger.lookup_transfers([first, second])) == 2

    @rule(step_ms=st.integers(0, 20))
    def expire(self, step_ms):
        before = self.ledger.pending_count
        expired = self.ledger.expire_pending(self._tick(step_ms * MS))
        assert self.ledger.pending_count == before - len(expired)
        for transfer_id in expired:
            assert self.ledger.pending_status(transfer_id) in (PendingStatus.EXPIRED,
                                                              PendingStatus.NONE)

    @invariant()
    def debits_equal_credits(self):
        debits_pending, debits_posted, credits_pending, credits_posted = self.ledger.totals()
        assert debits_pending == credits_pending
        assert debits_posted == credits_posted

    @invariant()
    def limits_hold(self):
        for account in self.ledger.lookup_accounts(range(1, self.next_account_id)):
            if account.flags & AF.DEBITS_MUST_NOT_EXCEED_CREDITS:
                assert account.debits_pending + account.debits_posted <= account.credits_posted
            if account.flags & AF.CREDITS_MUST_NOT_EXCEED_DEBITS:
                assert account.credits_pending + account.credits_posted <= account.debits_posted

    @invariant()
    def ledger_agrees(self):
        self.ledger.check_invariants()


class PureLedgerMachine(LedgerMachine):
    ledger_cls = PureLedger


PureLedgerMachine.TestCase.settings = LEDGER_HYPOTHESIS
TestPureLedgerMachine = PureLedgerMachine.TestCase


class TestCompiledLedgerMachine(unittest.TestCase):
    def test_state_machine(self):
        class CompiledLedgerMachine(LedgerMachine):
            ledger_cls = compiled_ledger_cls()

        CompiledLedgerMachine.TestCase.settings = LEDGER_HYPOTHESIS
        CompiledLedgerMachine.TestCase("runTest").runTest()
