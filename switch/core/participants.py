"""The core's in-memory state of currencies and participants: status, accounts, daily totals.

Mutated only by `SwitchCore` while it handles an event; everything here is rebuilt by
replaying the journaled events. This module must never import anything that does I/O.
"""

from __future__ import annotations

import msgspec

from switch.core import limits
from switch.core.accounts import HUB_PARTICIPANT_ID, AccountCode, account_id
from switch.core.messages import SchemeRules
from switch.core.results import ParticipantStatus, SettlementModel


class CurrencyState(msgspec.Struct, kw_only=True):
    """One currency the scheme carries: its ledger, settlement model, rules, hub accounts."""

    currency: str
    ledger_id: int
    settlement_model: SettlementModel
    rules: SchemeRules
    participant_code: AccountCode
    hub_fees_account_id: int
    # Prefunded RTGS: HUB_FUNDING (deposits and withdrawals). Deferred net: HUB_CAP.
    hub_liquidity_account_id: int
    hub_settlement_account_id: int  # deferred net only, else 0

    @classmethod
    def build(cls, currency: str, ledger_id: int, model: SettlementModel,
              rules: SchemeRules) -> CurrencyState:
        prefunded = model == SettlementModel.PREFUNDED_RTGS
        return cls(
            currency=currency,
            ledger_id=ledger_id,
            settlement_model=model,
            rules=rules,
            participant_code=(
                AccountCode.PARTICIPANT_SETTLEMENT if prefunded
                else AccountCode.PARTICIPANT_POSITION
            ),
            hub_fees_account_id=account_id(ledger_id, HUB_PARTICIPANT_ID, AccountCode.HUB_FEES),
            hub_liquidity_account_id=account_id(
                ledger_id, HUB_PARTICIPANT_ID,
                AccountCode.HUB_FUNDING if prefunded else AccountCode.HUB_CAP,
            ),
            hub_settlement_account_id=(
                0 if prefunded
                else account_id(ledger_id, HUB_PARTICIPANT_ID, AccountCode.HUB_SETTLEMENT)
            ),
        )

    def hub_account_codes(self) -> list[AccountCode]:
        if self.settlement_model == SettlementModel.PREFUNDED_RTGS:
            return [AccountCode.HUB_FEES, AccountCode.HUB_FUNDING]
        return [AccountCode.HUB_FEES, AccountCode.HUB_CAP, AccountCode.HUB_SETTLEMENT]


class ParticipantAccount(msgspec.Struct, kw_only=True):
    """A participant's account in one currency and its daily total (UTC day of now_ns)."""

    account_id: int
    currency: CurrencyState
    daily_total_max_minor: int | None = None  # None: the scheme's rule
    daily_day: int = -1
    daily_used_minor: int = 0  # reserved or committed today, as payer
    cap_minor: int = 0  # deferred net: the net debit cap currently credited

    def daily_max_minor(self) -> int:
        if self.daily_total_max_minor is not None:
            return self.daily_total_max_minor
        return self.currency.rules.daily_total_max_minor

    def daily_room_minor(self, day: int) -> int:
        # daily_max_minor() written out: this runs once per transfer.
        limit = self.daily_total_max_minor
        if limit is None:
            limit = self.currency.rules.daily_total_max_minor
        return limit - self.daily_used_minor if day == self.daily_day else limit

    def daily_add(self, day: int, amount_minor: int) -> None:
        if day != self.daily_day:
            assert day > self.daily_day  # now_ns never goes back (the core clamps it)
            self.daily_day = day
            self.daily_used_minor = 0
        self.daily_used_minor += amount_minor
        assert self.daily_used_minor <= limits.DAILY_TOTAL_MINOR_MAX

    def daily_release(self, day: int, amount_minor: int) -> None:
        """A reserved transfer was voided: it no longer counts, if it still counts today."""
        if day == self.daily_day:
            self.daily_used_minor -= amount_minor
            assert self.daily_used_minor >= 0


class Participant(msgspec.Struct, kw_only=True):
    participant_id: int
    name: str
    status: ParticipantStatus = ParticipantStatus.ACTIVE
    accounts: dict[str, ParticipantAccount] = {}

    @property
    def active(self) -> bool:
        return self.status == ParticipantStatus.ACTIVE
