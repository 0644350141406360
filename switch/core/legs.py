"""The ledger legs of the core's transfers, built by keyword-only builders.

The ledger takes a transfer as twelve unsigned integers (`ledger.types.TRANSFER_STRUCT`
for a batch; `Ledger.create_transfer` takes them in another order, without the timestamp).
Nothing else in the core writes them positionally: a flow asks for `reserve`, `finish` or
`operator_transfer` by name and keyword, and only this module knows the two orders. Leg ids are derived from the core's sequence number (`seq << LEDGER_ID_SHIFT |
leg`), so the same events always produce the same ledger ids (docs/ledger-accounts.md).

It must never do I/O; it only calls the (sans-I/O) ledger it is given.
"""

from __future__ import annotations

from ledger.types import TRANSFER_STRUCT, CreateTransferResult, TransferFlags
from switch.core import limits
from switch.core.accounts import Leg

_SHIFT = limits.LEDGER_ID_SHIFT
_PENDING = int(TransferFlags.PENDING)
_LINKED = int(TransferFlags.LINKED)
_POST = int(TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(TransferFlags.VOID_PENDING_TRANSFER)
_RESULT_OK = CreateTransferResult.OK
# Leg numbers as plain ints: an IntEnum attribute read costs ~50 ns on the per-transfer path.
_LEG_RESERVE, _LEG_RESERVE_FEE = int(Leg.RESERVE), int(Leg.RESERVE_FEE)
_LEG_POST, _LEG_POST_FEE = int(Leg.POST), int(Leg.POST_FEE)
_LEG_VOID, _LEG_VOID_FEE = int(Leg.VOID), int(Leg.VOID_FEE)
_SIZE = TRANSFER_STRUCT.size
_pack_into = TRANSFER_STRUCT.pack_into


def leg_id(seq: int, leg: int) -> int:
    return (seq << _SHIFT) | leg


# The field orders, written once (the flows never see them):
#   TRANSFER_STRUCT:  id, debit_account_id, credit_account_id, amount_minor, pending_id,
#                     user_data_64, timestamp, user_data_32, timeout_ms, ledger, code, flags
#   create_transfer:  id, debit_account_id, credit_account_id, amount_minor, pending_id,
#                     user_data_64, user_data_32, timeout_ms, ledger, code, flags, now_ns
# user_data_64 carries the core's sequence number and user_data_32 the paying participant;
# timestamp and timeout are the ledger's (0 here). Positional on purpose: this is the
# per-transfer path, and a keyword call per leg costs ~0.4 µs.


def reserve(ledger, buffer: bytearray, *, seq: int, payer_participant_id: int,
            payer_account_id: int, payee_account_id: int, fees_account_id: int,
            amount_minor: int, fee_minor: int, ledger_id: int, code: int, fee_code: int,
            now_ns: int) -> list[tuple[int, int]]:
    """Reserve a payment (and its fee, linked to it): pending transfers from the payer's
    account. The ledger's failures, [(leg index: 0 payment, 1 fee, result)]; empty when
    reserved. `buffer` holds two packed transfers (the core's own, reused)."""
    payment_id = (seq << _SHIFT) | _LEG_RESERVE
    if not fee_minor:
        result = ledger.create_transfer(
            payment_id, payer_account_id, payee_account_id, amount_minor, 0, seq,
            payer_participant_id, 0, ledger_id, code, _PENDING, now_ns)
        return [] if result == _RESULT_OK else [(0, result)]
    _pack_into(buffer, 0, payment_id, payer_account_id, payee_account_id, amount_minor, 0, seq,
               0, payer_participant_id, 0, ledger_id, code, _PENDING | _LINKED)
    _pack_into(buffer, _SIZE, (seq << _SHIFT) | _LEG_RESERVE_FEE, payer_account_id,
               fees_account_id, fee_minor, 0, seq, 0, payer_participant_id, 0, ledger_id,
               fee_code, _PENDING)
    return ledger.create_transfers(buffer, now_ns)


def finish(ledger, buffer: bytearray, *, seq: int, payer_participant_id: int, with_fee: bool,
           post: bool, now_ns: int) -> None:
    """Post (the payee accepted) or void (rejected, expired) a reserve made by `reserve`,
    with its fee leg when it has one. The core finishes each reserve exactly once and sets
    no ledger timeout, so the ledger has no reason to refuse: a refusal is a core bug."""
    base = seq << _SHIFT
    flag = _POST if post else _VOID
    leg = _LEG_POST if post else _LEG_VOID
    if not with_fee:
        result = ledger.create_transfer(base | leg, 0, 0, 0, base | _LEG_RESERVE, seq,
                                        payer_participant_id, 0, 0, 0, flag, now_ns)
        assert result == _RESULT_OK, result
        return
    _pack_into(buffer, 0, base | leg, 0, 0, 0, base | _LEG_RESERVE, seq, 0,
               payer_participant_id, 0, 0, 0, flag | _LINKED)
    _pack_into(buffer, _SIZE, base | (_LEG_POST_FEE if post else _LEG_VOID_FEE), 0, 0, 0,
               base | _LEG_RESERVE_FEE, seq, 0, payer_participant_id, 0, 0, 0, flag)
    failures = ledger.create_transfers(buffer, now_ns)
    assert not failures, failures


def operator_transfer(ledger, *, seq: int, debit_account_id: int, credit_account_id: int,
                      amount_minor: int, participant_id: int, ledger_id: int, code: int,
                      now_ns: int) -> int:
    """A single-phase transfer an operator request makes (deposit, withdrawal, cap change),
    already checked to fit; the ledger's result."""
    return ledger.create_transfer((seq << _SHIFT) | _LEG_RESERVE, debit_account_id,
                                  credit_account_id, amount_minor, 0, seq, participant_id, 0,
                                  ledger_id, code, 0, now_ns)


# -- settlement postings (switch/core/settlement.py) ---------------------------------------
# A window's settlement postings are single-phase transfers made when the RTGS has settled
# it: one per participant with a net position, between its account and HUB_SETTLEMENT,
# checked to fit first and sent to the ledger in linked batches.


def settlement_posting(buffer: bytearray, offset: int, *, seq: int, participant_id: int,
                       debit_account_id: int, credit_account_id: int, amount_minor: int,
                       ledger_id: int, code: int, linked: bool) -> None:
    """Pack one settlement posting into `buffer` at `offset` (for create_packed)."""
    _pack_into(buffer, offset, (seq << _SHIFT) | _LEG_RESERVE, debit_account_id,
               credit_account_id, amount_minor, 0, seq, 0, participant_id, 0, ledger_id, code,
               _LINKED if linked else 0)


def create_packed(ledger, buffer: bytearray, count: int, now_ns: int) -> list[tuple[int, int]]:
    """Create the first `count` transfers packed in `buffer`; the ledger's failures."""
    return ledger.create_transfers(buffer[:count * _SIZE], now_ns)
