"""Core snapshots: the whole state of a core and its ledger as bytes, and a core rebuilt
from them, so recovery replays only the journal after the snapshot's position.

A mixin of `SwitchCore` (switch/core/machine.py). It must never do I/O.
"""

from __future__ import annotations

from typing import Callable

import msgspec

from switch.core.config import CoreConfig
from switch.core.messages import (
    AdminAnswer,
    AdminEvent,
)
from switch.core.participants import CurrencyState, Participant, ParticipantAccount
from switch.core.records import (
    RequestToPayRecord,
    TransferRecord,
)
from switch.core.results import (
    ParticipantStatus,
    RequestToPayState,
    TransferState,
)

_FORWARDED = TransferState.FORWARDED

Observer = Callable[[int, str, TransferState, int], None]


class _AccountState(msgspec.Struct, array_like=True, frozen=True):
    currency: str
    account_id: int
    daily_total_max_minor: int | None
    daily_day: int
    daily_used_minor: int
    cap_minor: int

class _ParticipantState(msgspec.Struct, array_like=True, frozen=True):
    participant_id: int
    name: str
    status: ParticipantStatus
    accounts: list[_AccountState]

class CoreSnapshot(msgspec.Struct, array_like=True, frozen=True, kw_only=True):
    """Everything a core holds, with its ledger's snapshot: restore it and replay only the
    journal after `journal_position` (the shell's record count when it was taken)."""

    version: int
    journal_position: int
    now_ns: int
    seq: int
    currencies: list[CurrencyState]
    participants: list[_ParticipantState]
    transfers: list[TransferRecord]  # with payer_account and original left out
    originals: list[tuple[int, str] | None]  # the original of each (returns), by key
    transfers_final: list[tuple[int, str]]
    requests: list[RequestToPayRecord]
    requests_final: list[tuple[int, str]]
    admin: list[tuple[AdminEvent, AdminAnswer]]
    ledger: bytes
    audit_anchor: tuple[int, str] | None = None  # the newest AuditAnchored (seq, hash)


SNAPSHOT_VERSION = 3  # 2: TransferRecord.request_to_pay_id; 3: records as arrays (30% smaller)
_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(CoreSnapshot)


class SnapshotFlow:
    """See the module docstring."""

    def snapshot(self, journal_position: int) -> bytes:
        """The whole state (core and ledger) as bytes, so recovery replays only the journal
        records after `journal_position` instead of all of them. Take it between steps."""
        transfers, originals = [], []
        for record in self._transfers.values():
            original = record.original
            originals.append(None if original is None else
                             (original.payer_participant_id, original.transfer_id))
            transfers.append(msgspec.structs.replace(record, payer_account=None, original=None))
        participants = [
            _ParticipantState(
                participant_id=p.participant_id, name=p.name, status=p.status,
                accounts=[_AccountState(
                    currency=code, account_id=a.account_id,
                    daily_total_max_minor=a.daily_total_max_minor, daily_day=a.daily_day,
                    daily_used_minor=a.daily_used_minor, cap_minor=a.cap_minor,
                ) for code, a in p.accounts.items()],
            )
            for p in self._participants.values()
        ]
        return _snapshot_encoder.encode(CoreSnapshot(
            version=SNAPSHOT_VERSION, journal_position=journal_position, now_ns=self._now_ns,
            seq=self._seq, currencies=list(self._currencies.values()),
            participants=participants, transfers=transfers, originals=originals,
            transfers_final=list(self._transfers_final), requests=list(self._requests.values()),
            requests_final=list(self._requests_final),
            admin=[self._admin_seen[request_id] for request_id in self._admin_order],
            ledger=self.ledger.snapshot(), audit_anchor=self._audit_anchor,
        ))

    @classmethod
    def from_snapshot(cls, config: CoreConfig, ledger_cls, data: bytes,
                      observer: Observer | None = None) -> tuple[SnapshotFlow, int]:
        """(core, journal_position) rebuilt from `snapshot()` bytes on a new `ledger_cls`
        ledger. Then `replay` the journal records after journal_position."""
        state = _snapshot_decoder.decode(data)
        assert state.version == SNAPSHOT_VERSION, state.version
        store = ledger_cls.from_snapshot(state.ledger)
        core = cls.__new__(cls)
        core._init_state(config, store, observer)
        core._now_ns = state.now_ns
        core._seq = state.seq
        for currency in state.currencies:
            core._currencies[currency.currency] = currency
            core._ledger_ids.add(currency.ledger_id)
        for saved in state.participants:
            participant = Participant(participant_id=saved.participant_id, name=saved.name,
                                      status=saved.status)
            for account in saved.accounts:
                participant.accounts[account.currency] = ParticipantAccount(
                    account_id=account.account_id, currency=core._currencies[account.currency],
                    daily_total_max_minor=account.daily_total_max_minor,
                    daily_day=account.daily_day, daily_used_minor=account.daily_used_minor,
                    cap_minor=account.cap_minor,
                )
            core._participants[saved.participant_id] = participant
            core._participant_names[saved.name] = saved.participant_id
        for record, original_key in zip(state.transfers, state.originals):
            key = (record.payer_participant_id, record.transfer_id)
            if record.state == _FORWARDED:
                record.payer_account = (
                    core._participants[record.payer_participant_id].accounts[record.currency])
                core._in_flight += 1
                core._timers[record.seq] = record
            if original_key is not None:
                # An in-flight return. If its original has been dropped from the table since,
                # no link is needed: it can no longer be returned, so its total is never read.
                record.original = core._transfers.get(original_key)
            core._transfers[key] = record
        core._transfers_final.extend(state.transfers_final)
        for record in state.requests:
            core._requests[(record.payee_participant_id, record.request_id)] = record
            if record.state == RequestToPayState.OPEN:
                core._timers[record.seq] = record
        core._timers = dict(sorted(core._timers.items()))
        core._requests_final.extend(state.requests_final)
        for event, answer in state.admin:
            core._admin_seen[event.request_id] = (event, answer)
            core._admin_order.append(event.request_id)
        core._audit_anchor = None if state.audit_anchor is None else tuple(state.audit_anchor)
        core.check_invariants()
        return core, state.journal_position
