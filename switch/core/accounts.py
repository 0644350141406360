"""The switch's layout of ledger accounts and ledger transfer ids (docs/ledger-accounts.md).

Pure arithmetic: an account id is derived from (ledger id, participant id, account code),
so the core, the settlement code and an auditor reading the ledger all find the same
account without a lookup table. This module must never import anything that does I/O.
"""

from __future__ import annotations

from enum import IntEnum

from switch.core import limits

HUB_PARTICIPANT_ID = 0  # the hub's own accounts use participant id 0


class AccountCode(IntEnum):
    """The ledger `code` of each kind of account. Stable numbers: they are in the ledger."""

    PARTICIPANT_SETTLEMENT = 1  # prefunded RTGS: the participant's money at the hub
    PARTICIPANT_POSITION = 2  # deferred net: cap credits minus net debits since settlement
    HUB_FEES = 10  # scheme fees collected
    HUB_FUNDING = 11  # prefunded RTGS: counterpart of every deposit/withdrawal
    HUB_CAP = 12  # deferred net: counterpart of every net debit cap credit
    HUB_SETTLEMENT = 13  # deferred net: counterpart of settlement (used by switch/settlement)


class TransferCode(IntEnum):
    """The ledger `code` of each kind of ledger transfer."""

    PAYMENT = 1
    FEE = 2
    RETURN = 3
    DEPOSIT = 4
    WITHDRAWAL = 5
    CAP_RAISE = 6
    CAP_LOWER = 7
    SETTLEMENT_CREDIT = 8  # HUB_SETTLEMENT -> a net debtor's position: it paid at the RTGS
    SETTLEMENT_DEBIT = 9  # a net creditor's position -> HUB_SETTLEMENT: the RTGS paid it
    SETTLEMENT_DUE = 10  # a settlement debit that did not fit at confirmation, collected later


class Leg(IntEnum):
    """Ledger transfers of one core transfer: id = (seq << LEDGER_ID_SHIFT) | leg."""

    RESERVE = 0  # pending payer -> payee (or the single-phase admin transfer)
    RESERVE_FEE = 1  # pending payer -> hub fees, linked to RESERVE
    POST = 2
    POST_FEE = 3
    VOID = 4
    VOID_FEE = 5


_PARTICIPANT_SHIFT = 8
_LEDGER_SHIFT = 32


def account_owner(account_id_: int) -> tuple[int, int]:
    """(participant id, account code) of a derived account id (the inverse of `account_id`)."""
    return (account_id_ >> _PARTICIPANT_SHIFT) & limits.PARTICIPANT_ID_MAX, account_id_ & 0xFF


def account_id(ledger_id: int, participant_id: int, code: AccountCode) -> int:
    """`ledger_id << 32 | participant_id << 8 | code`: never 0 (ledger ids start at 1)."""
    assert 1 <= ledger_id <= limits.LEDGER_ID_MAX
    assert 0 <= participant_id <= limits.PARTICIPANT_ID_MAX
    return (ledger_id << _LEDGER_SHIFT) | (participant_id << _PARTICIPANT_SHIFT) | int(code)


def ledger_transfer_id(seq: int, leg: Leg) -> int:
    assert 1 <= seq <= limits.SEQUENCE_MAX
    return (seq << limits.LEDGER_ID_SHIFT) | int(leg)


assert limits.PARTICIPANT_ID_MAX < (1 << (_LEDGER_SHIFT - _PARTICIPANT_SHIFT))
assert max(AccountCode) < (1 << _PARTICIPANT_SHIFT)
assert max(Leg) < (1 << limits.LEDGER_ID_SHIFT)
