"""The return flow of the switch core: a payee sends back (part of) a committed transfer,
as a new transfer in the opposite direction, capped by the original.

A mixin of `SwitchCore` (switch/core/machine.py): a return is admitted, forwarded and ended
by the transfer flow (switch/core/transfers.py) once its own checks pass. It must never do
I/O or read the clock.
"""

from __future__ import annotations

from switch.core import limits
from switch.core.messages import (
    Command,
    FinalTransfer,
    RequestType,
    ReturnRequested,
    TransferRequested,
    id_valid,
)
from switch.core.records import TransferRecord
from switch.core.records import refuse as _refuse
from switch.core.results import TRANSFER_FINAL_STATES, Result, TransferState

_COMMITTED = TransferState.COMMITTED
_NS_PER_DAY = limits.NS_PER_DAY
_OK = Result.OK


class ReturnFlow:
    """See the module docstring."""

    def _on_return(self, event: ReturnRequested, now_ns: int) -> list[Command]:
        request = event.request
        payer_id = event.payer_participant_id
        transfer_id = request.transfer_id
        original_ref = request.original
        if not id_valid(transfer_id) or not id_valid(original_ref.transfer_id):
            return [_refuse(payer_id, RequestType.RETURN, payer_id, transfer_id, Result.ID_INVALID)]
        key = (payer_id, transfer_id)
        record = self._transfers.get(key)
        if record is not None:
            return self._answer_resend(record, event, payer_id)
        amount_minor = request.amount_minor
        result = self._check_request(amount_minor, request.expires_at_ns, now_ns)
        if result is not _OK:
            return self._refuse_transfer(payer_id, transfer_id, result, RequestType.RETURN)
        payer = self._participants.get(payer_id)
        if payer is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYER_NOT_FOUND, RequestType.RETURN)
        if not self._room_for_transfer(now_ns):
            return self._refuse_transfer(payer_id, transfer_id, Result.SERVER_BUSY, RequestType.RETURN)
        original_key = (original_ref.payer_participant_id, original_ref.transfer_id)
        original = self._transfers.get(original_key)
        if original is None and event.original is not None:
            # Older than the retained window: the shell brought it from the history. It
            # comes back into the table (as the newest final transfer) so that every
            # return of it from now on counts against one returned total.
            original = self._restore_final(original_key, event.original)
            if not self._room_for_transfer(now_ns):  # and one more for the return itself
                return self._refuse_transfer(payer_id, transfer_id, Result.SERVER_BUSY,
                                             RequestType.RETURN)
        # A participant that is neither party learns nothing about the original.
        if original is None or payer_id not in (
            original.payer_participant_id, original.payee_participant_id
        ) or not original.forwarded:
            return self._reject_recorded_return(key, event, 0, "", now_ns,
                                                Result.ORIGINAL_TRANSFER_NOT_FOUND)
        if original.state != _COMMITTED:
            return self._reject_recorded_return(
                key, event, original.payer_participant_id, original.currency, now_ns,
                Result.RETURN_ORIGINAL_NOT_COMMITTED,
            )
        if original.payee_participant_id != payer_id:
            return self._reject_recorded_return(
                key, event, original.payer_participant_id, original.currency, now_ns,
                Result.RETURN_PARTIES_MISMATCH,
            )
        window_ns = self._currencies[original.currency].rules.return_window_days * _NS_PER_DAY
        if now_ns - original.decided_at_ns > window_ns:
            return self._reject_recorded_return(
                key, event, original.payer_participant_id, original.currency, now_ns,
                Result.RETURN_WINDOW_CLOSED,
            )
        payee = self._participants[original.payer_participant_id]
        record = self._record_transfer(
            key, event, payee.participant_id, amount_minor, original.currency,
            request.expires_at_ns, now_ns,
        )
        record.payee_account_ref = original.event.request.payer_account_ref if isinstance(
            original.event, TransferRequested) else ""
        currency = self._currencies[original.currency]
        return self._admit(record, payer, payee, currency, original, now_ns)

    def _restore_final(self, key: tuple[int, str], final: FinalTransfer) -> TransferRecord:
        """A final transfer from the history back into the table, as it was when dropped."""
        assert key not in self._transfers
        outcome = final.outcome
        assert outcome.payer_participant_id == key[0] and outcome.transfer_id == key[1]
        assert outcome.state in TRANSFER_FINAL_STATES, outcome.state
        request = final.event.request
        record = TransferRecord(
            seq=0, event=final.event, payer_participant_id=key[0], transfer_id=key[1],
            payee_participant_id=outcome.payee_participant_id,
            amount_minor=outcome.amount_minor, currency=outcome.currency,
            expires_at_ns=request.expires_at_ns, state=outcome.state, result=outcome.result,
            fee_minor=outcome.fee_minor, payee_account_ref=final.event.payee_account_ref
            if type(final.event) is TransferRequested else "",
            returned_minor=final.returned_minor, forwarded=final.forwarded,
            decided_at_ns=outcome.decided_at_ns, reason=outcome.reason, outcome=outcome,
        )
        self._transfers[key] = record
        self._transfers_final.append(key)
        return record

    def _reject_recorded_return(self, key, event: ReturnRequested, payee_id: int,
                                currency: str, now_ns: int, result: Result) -> list[Command]:
        record = self._record_transfer(key, event, payee_id, event.request.amount_minor,
                                       currency, event.request.expires_at_ns, now_ns)
        return self._reject_at_admission(record, result, now_ns)
