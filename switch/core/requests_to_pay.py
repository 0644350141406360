"""The request-to-pay flow of the switch core: a payee asks, the payer approves (with a new
transfer the approval creates) or declines, or the request expires.

A mixin of `SwitchCore` (switch/core/machine.py); request states change only through
`_request_transition`, which asserts `switch.core.records.REQUEST_TO_PAY_NEXT`. It must
never do I/O or read the clock.
"""

from __future__ import annotations

from switch.core.messages import (
    ArmTimer,
    CancelTimer,
    Command,
    RequestToPayDecided,
    RequestToPayNotice,
    RequestToPayOutcome,
    RequestToPayRequested,
    RequestType,
    Send,
    TransferRequest,
    TransferRequested,
    id_valid,
)
from switch.core.records import (
    REQUEST_TO_PAY_NEXT as _REQUEST_TO_PAY_NEXT,
)
from switch.core.records import (
    RequestToPayRecord,
)
from switch.core.records import (
    compare_requests as _compare_requests,
)
from switch.core.records import (
    refuse as _refuse,
)
from switch.core.results import (
    ParticipantStatus,
    RequestToPayState,
    Result,
)

_OK = Result.OK


class RequestToPayFlow:
    """See the module docstring."""

    def _on_request_to_pay(self, event: RequestToPayRequested, now_ns: int) -> list[Command]:
        request = event.request
        payee_id = event.payee_participant_id
        request_id = request.request_id
        if not id_valid(request_id):
            return [_refuse(payee_id, RequestType.REQUEST_TO_PAY, payee_id, request_id, Result.ID_INVALID)]
        key = (payee_id, request_id)
        record = self._requests.get(key)
        if record is not None:
            result = _compare_requests(record.event, event)
            if result is not _OK:
                return [_refuse(payee_id, RequestType.REQUEST_TO_PAY, payee_id, request_id, result)]
            return [Send(participant_id=payee_id, message=self._request_outcome(record))]
        result = self._check_request(request.amount_minor, request.expires_at_ns, now_ns)
        if result is Result.TRANSFER_EXPIRED:
            result = Result.REQUEST_EXPIRED
        if result is _OK:
            result = self._check_request_parties(event)
        if result is not _OK:
            return [_refuse(payee_id, RequestType.REQUEST_TO_PAY, payee_id, request_id, result)]
        if not self._room_for_request(now_ns):
            return [_refuse(payee_id, RequestType.REQUEST_TO_PAY, payee_id, request_id, Result.SERVER_BUSY)]
        payer = self._participants[event.payer_participant_id]
        payee = self._participants[payee_id]
        currency = self._currencies[request.currency]
        result = _OK
        if payer.status != ParticipantStatus.ACTIVE:
            result = Result.PAYER_BLOCKED
        elif payee.status != ParticipantStatus.ACTIVE:
            result = Result.PAYEE_BLOCKED
        elif currency.currency not in payer.accounts:
            result = Result.PAYER_CURRENCY_NOT_ENABLED
        elif currency.currency not in payee.accounts:
            result = Result.PAYEE_CURRENCY_NOT_ENABLED
        elif request.amount_minor > currency.rules.transfer_max_minor:
            result = Result.AMOUNT_ABOVE_TRANSFER_MAX
        self._seq += 1
        # Recorded either way: OPEN (shown to the payer) or REJECTED (refused, never shown;
        # a resend gets the same refusal). The two states a request may start in.
        record = RequestToPayRecord(
            seq=self._seq,
            event=event,
            payee_participant_id=payee_id,
            request_id=request_id,
            payer_participant_id=event.payer_participant_id,
            state=RequestToPayState.OPEN if result is _OK else RequestToPayState.REJECTED,
            result=result,
        )
        self._requests[key] = record
        if result is not _OK:
            record.outcome = self._request_outcome(record)
            self._requests_final.append(key)
            return [Send(participant_id=payee_id, message=record.outcome)]
        self._timers[record.seq] = record
        return [
            Send(participant_id=record.payer_participant_id,
                 message=self._request_to_pay_notice(record)),
            ArmTimer(timer_id=record.seq, deadline_ns=request.expires_at_ns),
            Send(participant_id=payee_id, message=self._request_outcome(record)),
        ]

    def _check_request_parties(self, event: RequestToPayRequested) -> Result:
        payer = self._participants.get(event.payer_participant_id)
        if payer is None:
            return Result.PAYER_NOT_FOUND
        payee = self._participants.get(event.payee_participant_id)
        if payee is None:
            return Result.PAYEE_NOT_FOUND
        if payer is payee:
            return Result.PAYER_AND_PAYEE_SAME
        if event.request.currency not in self._currencies:
            return Result.CURRENCY_NOT_SUPPORTED
        return _OK

    def _room_for_request(self, now_ns: int) -> bool:
        requests = self._requests
        if len(requests) < self.config.requests_to_pay_retained_max:
            return True
        final = self._requests_final
        if not final or requests[final[0]].event.request.expires_at_ns > now_ns:
            return False
        del requests[final.popleft()]
        return True

    def _request_to_pay_notice(self, record: RequestToPayRecord) -> RequestToPayNotice:
        request = record.event.request
        return RequestToPayNotice(
            payee_participant_id=record.payee_participant_id,
            request_id=record.request_id,
            payer_account_ref=record.event.payer_account_ref,
            amount_minor=request.amount_minor,
            currency=request.currency,
            expires_at_ns=request.expires_at_ns,
            end_to_end_id=request.end_to_end_id,
            purpose=request.purpose,
        )

    def _request_outcome(self, record: RequestToPayRecord) -> RequestToPayOutcome:
        if record.outcome is not None:
            return record.outcome
        # Built fresh while OPEN; the final one is built once and kept.
        return RequestToPayOutcome(
            payee_participant_id=record.payee_participant_id,
            request_id=record.request_id,
            state=record.state,
            result=record.result,
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
        )

    def _request_finish(self, record: RequestToPayRecord, state: RequestToPayState,
                        result: Result, notify_payer: bool,
                        cancel_timer: bool = False) -> list[Command]:
        assert state in _REQUEST_TO_PAY_NEXT[record.state], (record.state, state)
        del self._timers[record.seq]
        record.state = state
        record.result = result
        record.outcome = self._request_outcome(record)
        self._requests_final.append((record.payee_participant_id, record.request_id))
        commands: list[Command] = [
            Send(participant_id=record.payee_participant_id, message=record.outcome)
        ]
        if notify_payer:
            commands.append(Send(participant_id=record.payer_participant_id,
                                 message=record.outcome))
        if cancel_timer:
            commands.insert(0, CancelTimer(timer_id=record.seq))
        return commands

    def _on_request_to_pay_decision(self, event: RequestToPayDecided,
                                    now_ns: int) -> list[Command]:
        decision = event.decision
        sender = event.payer_participant_id
        request_id = decision.request_id
        scope = decision.payee_participant_id
        transfer_id = decision.transfer_id
        if not id_valid(request_id) or (decision.approved and not id_valid(transfer_id)):
            # Approving names the new transfer it creates: an id like any other (empty only
            # when declining).
            return [_refuse(sender, RequestType.REQUEST_TO_PAY_DECISION, scope, request_id,
                            Result.ID_INVALID)]
        record = self._requests.get((scope, request_id))
        if record is None or record.payer_participant_id != sender or (
            record.state == RequestToPayState.REJECTED
        ):
            # Unknown, or never shown to this participant: nothing to learn from the answer.
            return [_refuse(sender, RequestType.REQUEST_TO_PAY_DECISION, scope, request_id,
                            Result.REQUEST_NOT_FOUND)]
        if record.state != RequestToPayState.OPEN:
            return [Send(participant_id=sender, message=self._request_outcome(record))]
        if now_ns >= record.event.request.expires_at_ns:
            return self._request_finish(record, RequestToPayState.EXPIRED, Result.REQUEST_EXPIRED,
                                        notify_payer=True, cancel_timer=True)
        if not decision.approved:
            return self._request_finish(record, RequestToPayState.DECLINED,
                                        Result.PAYER_REJECTED_REQUEST, notify_payer=True,
                                        cancel_timer=True)
        rtp = record.event.request
        transfer = TransferRequested(
            payer_participant_id=sender,
            payee_participant_id=record.payee_participant_id,
            payee_account_ref=rtp.payee_account_ref,
            request=TransferRequest(
                transfer_id=transfer_id,
                payee=None,
                amount_minor=rtp.amount_minor,
                currency=rtp.currency,
                expires_at_ns=decision.expires_at_ns,
                end_to_end_id=rtp.end_to_end_id,
                purpose=rtp.purpose,
                payer_account_ref=decision.payer_account_ref,
                payer_user_ref=decision.payer_user_ref,
            ),
        )
        key = (sender, transfer_id)
        paid = self._transfers.get(key)
        if paid is not None:
            # An approval pays only with the new transfer it creates. The id is taken: by
            # this same approval earlier (its transfer was refused, or the request would not
            # be open) it is a resend, answered as before; by anything else (an earlier
            # transfer, a return, a refused transfer, another request's payment) it is
            # refused like any id reused with a different body. The request stays open.
            result = _compare_requests(paid.event, transfer)
            if result is _OK and paid.request_to_pay_id != request_id:
                result = Result.EXISTS_WITH_DIFFERENT_BODY
            if result is not _OK:
                return [_refuse(sender, RequestType.TRANSFER, sender, transfer_id, result)]
            return [Send(participant_id=sender, message=self._current_outcome(paid))]
        commands = self._on_transfer(transfer, now_ns, request_id)
        paid = self._transfers.get(key)  # created by this step, if recorded at all
        if paid is None or not paid.forwarded:
            # The transfer was refused: the request stays open; the payer may approve again
            # (e.g. after funding) under a new transfer id.
            return commands
        record.transfer_id = transfer_id
        return self._request_finish(record, RequestToPayState.APPROVED, _OK,
                                    notify_payer=False, cancel_timer=True) + commands
