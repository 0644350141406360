"""Read-only views of the switch core for the shell, the console, settlement and tests,
and the core's own invariant check.

A mixin of `SwitchCore` (switch/core/machine.py). Nothing here may change the core.
"""

from __future__ import annotations

from typing import Iterable

from switch.core import limits
from switch.core.messages import (
    ParticipantView,
    RequestToPayOutcome,
    TransferOutcome,
)
from switch.core.participants import CurrencyState
from switch.core.records import (
    TransferRecord,
)
from switch.core.results import (
    RequestToPayState,
    TransferState,
)

_NS_PER_DAY = limits.NS_PER_DAY


_FORWARDED = TransferState.FORWARDED


class CoreViews:
    """See the module docstring."""

    def transfer_outcome(self, payer_participant_id: int, transfer_id: str) -> TransferOutcome | None:
        record = self._transfers.get((payer_participant_id, transfer_id))
        return None if record is None else self._current_outcome(record)

    def transfer_record(self, payer_participant_id: int, transfer_id: str) -> TransferRecord | None:
        """The retained record of one transfer (read-only: the console's timeline), or None."""
        return self._transfers.get((payer_participant_id, transfer_id))

    def request_to_pay_outcome(self, payee_participant_id: int,
                               request_id: str) -> RequestToPayOutcome | None:
        record = self._requests.get((payee_participant_id, request_id))
        return None if record is None else self._request_outcome(record)

    def participant(self, participant_id: int) -> ParticipantView | None:
        participant = self._participants.get(participant_id)
        if participant is None:
            return None
        return ParticipantView(
            participant_id=participant.participant_id,
            name=participant.name,
            status=participant.status,
            currencies=tuple(participant.accounts),
        )

    def open_window_id(self, currency: str) -> int:
        """The settlement window open now in `currency` (a commit observed now is in it)."""
        return self._windows_open[currency].window_id

    def audit_anchor(self) -> tuple[int, str] | None:
        """(seq, hex hash) of the operator audit record last anchored, or None."""
        return self._audit_anchor

    def participant_ids(self) -> list[int]:
        return list(self._participants)

    def participant_id_by_name(self, name: str) -> int | None:
        return self._participant_names.get(name)

    def currency(self, currency: str) -> CurrencyState | None:
        return self._currencies.get(currency)

    def currencies(self) -> list[str]:
        return list(self._currencies)

    def account_id(self, participant_id: int, currency: str) -> int | None:
        participant = self._participants.get(participant_id)
        if participant is None:
            return None
        account = participant.accounts.get(currency)
        return None if account is None else account.account_id

    def daily_used_minor(self, participant_id: int, currency: str) -> int:
        account = self._participants[participant_id].accounts[currency]
        today = self._now_ns // _NS_PER_DAY
        return account.daily_used_minor if account.daily_day == today else 0

    def daily_max_minor(self, participant_id: int, currency: str) -> int:
        return self._participants[participant_id].accounts[currency].daily_max_minor()

    def net_debit_cap_minor(self, participant_id: int, currency: str) -> int:
        """The net debit cap currently credited (deferred-net currencies; 0 otherwise)."""
        return self._participants[participant_id].accounts[currency].cap_minor

    def live_timers(self) -> dict[int, int]:
        """timer_id -> deadline_ns of every armed timer."""
        result = {}
        for timer_id, record in self._timers.items():
            if isinstance(record, TransferRecord):
                result[timer_id] = record.deadline_ns
            else:
                result[timer_id] = record.event.request.expires_at_ns
        return result

    @property
    def in_flight_count(self) -> int:
        return self._in_flight

    @property
    def transfers_retained(self) -> int:
        return len(self._transfers)

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def transfer_records(self) -> Iterable[TransferRecord]:
        """Every retained transfer, oldest first (tests, simulator, console search)."""
        return self._transfers.values()

    def check_invariants(self) -> None:
        """The core's own bookkeeping agrees with itself and with the ledger."""
        self.ledger.check_invariants()
        forwarded = [r for r in self._transfers.values() if r.state == _FORWARDED]
        assert len(forwarded) == self._in_flight
        assert len(forwarded) <= self.config.in_flight_max
        assert len(self._transfers) <= self.config.transfers_retained_max
        assert len(self._requests) <= self.config.requests_to_pay_retained_max
        for record in forwarded:
            assert self._timers.get(record.seq) is record
        open_requests = [r for r in self._requests.values() if r.state == RequestToPayState.OPEN]
        assert len(self._timers) == len(forwarded) + len(open_requests)
        assert len(self._transfers_final) + len(forwarded) == len(self._transfers)
        self.check_settlement_invariants()
