"""The operator flow of the switch core: currencies, participants, accounts, suspension,
limits, funding and caps, audit anchors — validated, idempotent by request id, and refused
without changing anything unless they answer OK.

A mixin of `SwitchCore` (switch/core/machine.py). It must never do I/O or read the clock.
"""

from __future__ import annotations

import msgspec

from ledger.limits import U64_MAX
from ledger.types import (
    Account,
    AccountFlags,
    CreateTransferResult,
    pack_accounts,
)
from switch.core import legs, limits
from switch.core.accounts import HUB_PARTICIPANT_ID, TransferCode, account_id
from switch.core.messages import (
    AdminAnswer,
    AuditAnchored,
    Command,
    CurrencyAdded,
    FundsDeposited,
    NetDebitCapSet,
    ParticipantAccountOpened,
    ParticipantAdded,
    ParticipantDailyLimitSet,
    ParticipantSuspended,
    SchemeRulesChanged,
)
from switch.core.participants import CurrencyState, Participant, ParticipantAccount
from switch.core.results import (
    ParticipantStatus,
    Result,
    SettlementModel,
)

_RESULT_OK = CreateTransferResult.OK


_OK = Result.OK


class OperatorFlow:
    """See the module docstring."""

    def _admin(self, event, now_ns: int, act) -> list[Command]:
        """Validation and idempotency for every operator request, then `act(event, now_ns)`
        -> (Result, detail), which changes nothing unless it answers OK. Operator requests
        are rare: they are re-validated in full (the core may be fed Structs that were
        built, not decoded). Succeeded request ids are remembered for the last
        `admin_requests_retained_max` requests: a resend answers the same."""
        request_id = event.request_id
        try:
            msgspec.convert(msgspec.to_builtins(event), type(event))
        except msgspec.ValidationError as error:
            return [AdminAnswer(request_id=str(request_id)[: limits.ID_LENGTH_MAX],
                                result=Result.VALIDATION_ERROR, detail=str(error)[:140])]
        seen = self._admin_seen.get(request_id)
        if seen is not None:
            earlier, answer = seen
            if earlier != event:
                return [AdminAnswer(request_id=request_id,
                                    result=Result.EXISTS_WITH_DIFFERENT_BODY)]
            return [answer]
        result, detail = act(event, now_ns)
        answer = AdminAnswer(request_id=request_id, result=result, detail=detail)
        if result is not _OK:
            # A refused request changed nothing and is not remembered: the operator may fix
            # the cause and retry under the same id.
            return [answer]
        self._admin_seen[request_id] = (event, answer)
        self._admin_order.append(request_id)
        if len(self._admin_order) > self.config.admin_requests_retained_max:
            del self._admin_seen[self._admin_order.popleft()]
        return [answer]

    def _admin_act(self, act):
        """The handler for an operator request whose change is `act`: one event type per
        `act` would only repeat `_admin` (suspend and resume share `_set_status`, deposit
        and withdrawal share `_move_funds`)."""
        return lambda event, now_ns: self._admin(event, now_ns, act)

    def _currency_added(self, event: CurrencyAdded, now_ns: int) -> tuple[Result, str]:
        if event.currency in self._currencies or event.ledger_id in self._ledger_ids:
            return Result.ADMIN_CURRENCY_EXISTS, ""
        if len(self._currencies) >= limits.CURRENCIES_MAX:
            return Result.ADMIN_TABLE_FULL, "currencies"
        state = CurrencyState.build(event.currency, event.ledger_id, event.settlement_model,
                                    event.rules)
        codes = state.hub_account_codes()
        accounts = [
            Account(id=account_id(event.ledger_id, HUB_PARTICIPANT_ID, code),
                    ledger=event.ledger_id, code=code,
                    flags=int(AccountFlags.LINKED) if index < len(codes) - 1 else 0)
            for index, code in enumerate(codes)
        ]
        if not self._create_accounts(accounts, now_ns):
            return Result.ADMIN_TABLE_FULL, "ledger accounts"
        self._currencies[event.currency] = state
        self._ledger_ids.add(event.ledger_id)
        return _OK, ""

    def _anchor_audit(self, event: AuditAnchored, now_ns: int) -> tuple[Result, str]:
        anchor = self._audit_anchor
        if anchor is not None and (event.audit_seq < anchor[0] or (
                event.audit_seq == anchor[0] and event.audit_hash != anchor[1])):
            return Result.VALIDATION_ERROR, f"behind or forking the anchor at {anchor[0]}"
        self._audit_anchor = (event.audit_seq, event.audit_hash)
        return _OK, ""

    def _admin_rules_changed(self, event: SchemeRulesChanged, now_ns: int) -> list[Command]:
        def act(event: SchemeRulesChanged, now_ns: int) -> tuple[Result, str]:
            currency = self._currencies.get(event.currency)
            if currency is None:
                return Result.ADMIN_CURRENCY_NOT_FOUND, ""
            currency.rules = event.rules
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _admin_participant_added(self, event: ParticipantAdded, now_ns: int) -> list[Command]:
        def act(event: ParticipantAdded, now_ns: int) -> tuple[Result, str]:
            if event.participant_id in self._participants or (
                event.name in self._participant_names
            ):
                return Result.ADMIN_PARTICIPANT_EXISTS, ""
            if len(self._participants) >= limits.PARTICIPANTS_MAX:
                return Result.ADMIN_TABLE_FULL, "participants"
            self._participants[event.participant_id] = Participant(
                participant_id=event.participant_id, name=event.name
            )
            self._participant_names[event.name] = event.participant_id
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _admin_account_opened(self, event: ParticipantAccountOpened,
                              now_ns: int) -> list[Command]:
        def act(event: ParticipantAccountOpened, now_ns: int) -> tuple[Result, str]:
            currency = self._currencies.get(event.currency)
            if currency is None:
                return Result.ADMIN_CURRENCY_NOT_FOUND, ""
            participant = self._participants.get(event.participant_id)
            if participant is None:
                return Result.ADMIN_PARTICIPANT_NOT_FOUND, ""
            if event.currency in participant.accounts:
                return Result.ADMIN_ACCOUNT_EXISTS, ""
            new_id = account_id(currency.ledger_id, participant.participant_id,
                                currency.participant_code)
            account = Account(
                id=new_id, ledger=currency.ledger_id, code=currency.participant_code,
                flags=int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
                user_data_32=participant.participant_id,
            )
            if not self._create_accounts([account], now_ns):
                return Result.ADMIN_TABLE_FULL, "ledger accounts"
            participant.accounts[event.currency] = ParticipantAccount(
                account_id=new_id, currency=currency
            )
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _set_status(self, event, now_ns: int) -> tuple[Result, str]:
        participant = self._participants.get(event.participant_id)
        if participant is None:
            return Result.ADMIN_PARTICIPANT_NOT_FOUND, ""
        participant.status = (
            ParticipantStatus.SUSPENDED if type(event) is ParticipantSuspended
            else ParticipantStatus.ACTIVE
        )
        return _OK, ""

    def _participant_account(
        self, event, model: SettlementModel | None = None,
    ) -> tuple[Result, str, ParticipantAccount | None]:
        """(result, detail, account) for the account an operator request names; with
        `model`, only in a currency settled that way (funding is for prefunded RTGS, caps
        for deferred net)."""
        if event.currency not in self._currencies:
            return Result.ADMIN_CURRENCY_NOT_FOUND, "", None
        participant = self._participants.get(event.participant_id)
        if participant is None:
            return Result.ADMIN_PARTICIPANT_NOT_FOUND, "", None
        account = participant.accounts.get(event.currency)
        if account is None:
            return Result.ADMIN_ACCOUNT_NOT_FOUND, "", None
        if model is not None and account.currency.settlement_model != model:
            use = "NetDebitCapSet" if model == SettlementModel.PREFUNDED_RTGS else "FundsDeposited"
            return Result.ADMIN_SETTLEMENT_MODEL_MISMATCH, f"use {use}", None
        return _OK, "", account

    def _admin_daily_limit(self, event: ParticipantDailyLimitSet, now_ns: int) -> list[Command]:
        def act(event: ParticipantDailyLimitSet, now_ns: int) -> tuple[Result, str]:
            result, detail, account = self._participant_account(event)
            if account is None:
                return result, detail
            account.daily_total_max_minor = event.daily_total_max_minor
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _move_funds(self, event, now_ns: int) -> tuple[Result, str]:
        result, detail, account = self._participant_account(event, SettlementModel.PREFUNDED_RTGS)
        if account is None:
            return result, detail
        currency = account.currency
        if type(event) is FundsDeposited:
            return self._single_phase(currency.hub_liquidity_account_id, account.account_id,
                                      event.amount_minor, event.participant_id, currency,
                                      TransferCode.DEPOSIT, now_ns)
        if event.amount_minor > self._available_minor(account):
            return Result.ADMIN_FUNDS_INSUFFICIENT, ""
        return self._single_phase(account.account_id, currency.hub_liquidity_account_id,
                                  event.amount_minor, event.participant_id, currency,
                                  TransferCode.WITHDRAWAL, now_ns)

    def _available_minor(self, account: ParticipantAccount) -> int:
        """What the ledger would still let the account be debited (checked before asking the
        ledger, so a refused operator request leaves no failed transfer behind)."""
        (balances,) = self.ledger.lookup_accounts([account.account_id])
        return balances.credits_posted - balances.debits_posted - balances.debits_pending

    def _admin_cap(self, event: NetDebitCapSet, now_ns: int) -> list[Command]:
        def act(event: NetDebitCapSet, now_ns: int) -> tuple[Result, str]:
            result, detail, account = self._participant_account(event,
                                                                 SettlementModel.DEFERRED_NET)
            if account is None:
                return result, detail
            currency = account.currency
            delta = event.cap_minor - account.cap_minor
            if delta < 0 and -delta > self._available_minor(account):
                return Result.ADMIN_CAP_BELOW_POSITION, ""
            result, detail = _OK, ""
            if delta > 0:
                result, detail = self._single_phase(
                    currency.hub_liquidity_account_id, account.account_id, delta,
                    event.participant_id, currency, TransferCode.CAP_RAISE, now_ns)
            elif delta < 0:
                result, detail = self._single_phase(
                    account.account_id, currency.hub_liquidity_account_id, -delta,
                    event.participant_id, currency, TransferCode.CAP_LOWER, now_ns)
            if result is not _OK:
                return result, detail
            account.cap_minor = event.cap_minor
            return _OK, ""
        return self._admin(event, now_ns, act)

    def _single_phase(self, debit: int, credit: int, amount_minor: int, participant_id: int,
                      currency: CurrencyState, code: TransferCode,
                      now_ns: int) -> tuple[Result, str]:
        """An operator's ledger transfer, already checked to fit the debited participant's
        funds (see `_available_minor`). Refused with ADMIN_ACCOUNT_OVERFLOW if either
        account's totals would pass 2**64-1 (they only grow: repeated deposits or cap
        changes get there), checked here before the ledger is asked, so a refusal leaves
        no failed ledger transfer or used sequence number behind. The ledger then has no
        reason left to refuse: any other answer is a core bug."""
        debit_balance, credit_balance = self.ledger.lookup_accounts([debit, credit])
        for side, account, total in (
            ("debits", debit_balance, debit_balance.debits_pending + debit_balance.debits_posted),
            ("credits", credit_balance,
             credit_balance.credits_pending + credit_balance.credits_posted),
        ):
            if total + amount_minor > U64_MAX:
                owner = ("hub" if account.id == currency.hub_liquidity_account_id
                         else f"participant {participant_id}")
                return Result.ADMIN_ACCOUNT_OVERFLOW, (
                    f"{side} of the {owner} {currency.currency} account would pass 2**64-1")
        self._seq += 1
        assert self._seq <= limits.SEQUENCE_MAX
        result = legs.operator_transfer(
            self.ledger, seq=self._seq, debit_account_id=debit, credit_account_id=credit,
            amount_minor=amount_minor, participant_id=participant_id,
            ledger_id=currency.ledger_id, code=code, now_ns=now_ns)
        assert result == _RESULT_OK, result
        # Not a transfer: the open settlement window notes it (switch/core/settlement.py).
        self._settlement_moved(currency, debit, credit, amount_minor, int(code), self._seq,
                               now_ns)
        return _OK, ""

    def _create_accounts(self, accounts: list[Account], now_ns: int) -> bool:
        # Checked first so that a refusal leaves the ledger untouched (a failed batch would
        # still consume timestamps).
        if self.ledger.account_count + len(accounts) > self.ledger.config.accounts_max:
            return False
        failures = self.ledger.create_accounts(pack_accounts(accounts), now_ns)
        assert not failures, failures  # ids are derived from unique (ledger, participant, code)
        return True
