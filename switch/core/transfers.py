"""The transfer flow of the switch core: a payer's transfer from admission (checks in
`Result` order, the ledger reserve, the forward) to its one final state (the payee's answer,
a timer, a late answer), status queries, and the ledger legs behind it.

A mixin of `SwitchCore` (switch/core/machine.py) over the core's one shared state; every
state change goes through `_transition`/`_finish`, which assert the state graph
(`switch.core.records.TRANSFER_NEXT`). It must never do I/O or read the clock.
"""

from __future__ import annotations

import base64
import hashlib

from ledger.types import (
    CreateTransferResult,
)
from switch.core import legs, limits
from switch.core.accounts import TransferCode
from switch.core.fees import fee_minor
from switch.core.messages import (
    ArmTimer,
    CancelTimer,
    Command,
    ConsultStore,
    CreditRequest,
    PayeeAnswered,
    RefundLookupToken,
    RequestType,
    Send,
    StatusQueried,
    TimerFired,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
    id_valid,
)
from switch.core.participants import CurrencyState, Participant, ParticipantAccount
from switch.core.records import (
    TRANSFER_FINAL_NEXT as _TRANSFER_FINAL_NEXT,
)
from switch.core.records import (
    TRANSFER_NEXT as _TRANSFER_NEXT,
)
from switch.core.records import (
    TransferRecord,
)
from switch.core.records import (
    compare_requests as _compare_requests,
)
from switch.core.records import (
    refuse as _refuse,
)
from switch.core.results import (
    ParticipantStatus,
    ProtocolError,
    RequestToPayState,
    Result,
    TransferState,
)

_AMOUNT_MINOR_MAX = limits.AMOUNT_MINOR_MAX
_NS_PER_MS = limits.NS_PER_MS
_NS_PER_DAY = limits.NS_PER_DAY

_LINKED_EVENT_FAILED = CreateTransferResult.LINKED_EVENT_FAILED

# What a refused reserve becomes, per leg (payment, fee). The payer's account may never be
# debited beyond its credits, themselves at most 2**64-1, so a debit that would pass 2**64-1
# is one its funds cannot cover. Credits are cumulative: an account that received ~2**64
# minor units in its life (the payee's on the payment leg, the hub's fee account on the fee
# leg) cannot be credited more. A pending reserve runs only the *_PENDING and total checks.
# Any other result is a core bug (tests/core/test_core_ledger_results.py says why for each).
_RESERVE_REFUSALS: tuple[dict[int, Result], dict[int, Result]] = tuple(
    {
        CreateTransferResult.OVERFLOWS_DEBITS_PENDING: Result.PAYER_INSUFFICIENT_LIQUIDITY,
        CreateTransferResult.OVERFLOWS_CREDITS_PENDING: credit_full,
        CreateTransferResult.OVERFLOWS_DEBITS: Result.PAYER_INSUFFICIENT_LIQUIDITY,
        CreateTransferResult.OVERFLOWS_CREDITS: credit_full,
        CreateTransferResult.EXCEEDS_CREDITS: Result.PAYER_INSUFFICIENT_LIQUIDITY,
    }
    for credit_full in (Result.PAYEE_ACCOUNT_OVERFLOW, Result.HUB_ACCOUNT_OVERFLOW)
)

_RECEIVED = TransferState.RECEIVED
_RESERVED = TransferState.RESERVED
_FORWARDED = TransferState.FORWARDED
_COMMITTED = TransferState.COMMITTED
_REJECTED = TransferState.REJECTED
_EXPIRED = TransferState.EXPIRED
_OK = Result.OK
_PAYEE_REJECTED = Result.PAYEE_REJECTED
_SEQUENCE_MAX = limits.SEQUENCE_MAX
_ACTIVE = ParticipantStatus.ACTIVE
_CODE_PAYMENT, _CODE_RETURN = int(TransferCode.PAYMENT), int(TransferCode.RETURN)
_CODE_FEE = int(TransferCode.FEE)


def fulfils(fulfilment: str, condition: str) -> bool:
    """Whether `fulfilment` (base64url, 32 bytes) is the SHA-256 preimage of `condition`."""
    if len(fulfilment) != 43:
        return False
    try:
        preimage = base64.urlsafe_b64decode(fulfilment + "=")
    except ValueError:
        return False
    digest = hashlib.sha256(preimage).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == condition


class TransferFlow:
    """See the module docstring."""

    def _on_transfer(self, event: TransferRequested, now_ns: int,
                     request_to_pay_id: str = "") -> list[Command]:
        request = event.request
        payer_id = event.payer_participant_id
        transfer_id = request.transfer_id
        # The `Id` grammar again, for events built by hand (not decoded): an id outside it
        # would break HTTP status paths and `from_snapshot` (which decodes with the types).
        if not id_valid(transfer_id):
            return [_refuse(payer_id, RequestType.TRANSFER, payer_id, transfer_id, Result.ID_INVALID)]
        key = (payer_id, transfer_id)
        record = self._transfers.get(key)
        if record is not None:
            return self._answer_resend(record, event, payer_id)
        amount_minor = request.amount_minor
        result = self._check_request(amount_minor, request.expires_at_ns, now_ns)
        if result is not _OK:
            return self._refuse_transfer(payer_id, transfer_id, result)
        payer = self._participants.get(payer_id)
        if payer is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYER_NOT_FOUND)
        payee_id = event.payee_participant_id
        payee = self._participants.get(payee_id)
        if payee is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYEE_NOT_FOUND)
        if payee is payer:
            return self._refuse_transfer(payer_id, transfer_id, Result.PAYER_AND_PAYEE_SAME)
        currency = self._currencies.get(request.currency)
        if currency is None:
            return self._refuse_transfer(payer_id, transfer_id, Result.CURRENCY_NOT_SUPPORTED)
        if not self._room_for_transfer(now_ns):
            return self._refuse_transfer(payer_id, transfer_id, Result.SERVER_BUSY)
        record = self._record_transfer(
            key, event, payee_id, amount_minor, request.currency, request.expires_at_ns, now_ns
        )
        record.payee_account_ref = event.payee_account_ref
        record.request_to_pay_id = request_to_pay_id
        return self._admit(record, payer, payee, currency, None, now_ns)

    def _check_request(self, amount_minor: int, expires_at_ns: int, now_ns: int) -> Result:
        """The checks that need no state beyond the request and the clock."""
        if not 1 <= amount_minor <= _AMOUNT_MINOR_MAX:
            return Result.AMOUNT_INVALID
        if expires_at_ns <= now_ns:
            return Result.TRANSFER_EXPIRED
        if expires_at_ns - now_ns > self._expiry_ns_max:
            return Result.EXPIRY_TOO_FAR
        return _OK

    def _refuse_transfer(self, payer_id: int, transfer_id: str, result: Result,
                         request_type: RequestType = RequestType.TRANSFER) -> list[Command]:
        if result is Result.TRANSFER_EXPIRED:
            # Unknown id, expiry passed: it may be a resend of a transfer older than the
            # retained window. The shell's store knows; if not, it really is expired.
            return [ConsultStore(participant_id=payer_id, payer_participant_id=payer_id,
                                 transfer_id=transfer_id, result_if_absent=result)]
        return [_refuse(payer_id, request_type, payer_id, transfer_id, result)]

    def _room_for_transfer(self, now_ns: int) -> bool:
        """Room for one more record. Drops the oldest final transfer if the table is full and
        that transfer's expiry has passed (a resend of it is then refused as expired) — or
        at once, when `finals_kept_until_expiry` is off (the shell answers for it then)."""
        config = self.config
        if self._in_flight >= config.in_flight_max:
            return False
        transfers = self._transfers
        if len(transfers) < config.transfers_retained_max:
            return True
        final = self._transfers_final
        if not final or (config.finals_kept_until_expiry
                         and transfers[final[0]].expires_at_ns > now_ns):
            return False
        del transfers[final.popleft()]
        assert len(transfers) < self.config.transfers_retained_max
        return True

    def _record_transfer(self, key: tuple[int, str], event, payee_id: int, amount_minor: int,
                         currency: str, expires_at_ns: int, now_ns: int) -> TransferRecord:
        self._seq += 1
        assert self._seq <= _SEQUENCE_MAX
        record = TransferRecord(
            seq=self._seq,
            event=event,
            payer_participant_id=key[0],
            transfer_id=key[1],
            payee_participant_id=payee_id,
            amount_minor=amount_minor,
            currency=currency,
            expires_at_ns=expires_at_ns,
            day=now_ns // _NS_PER_DAY,
        )
        self._transfers[key] = record
        observer = self._transition_observer
        if observer is not None:  # a transfer starts RECEIVED (TRANSFER_NEXT's root)
            observer(record.payer_participant_id, record.transfer_id, _RECEIVED, now_ns)
        return record

    def _admit(self, record: TransferRecord, payer: Participant, payee: Participant,
               currency: CurrencyState, original: TransferRecord | None,
               now_ns: int) -> list[Command]:
        """The recorded checks, in `Result` order, then the ledger reserve and the forward."""
        if payer.status != _ACTIVE:
            return self._reject_at_admission(record, Result.PAYER_BLOCKED, now_ns)
        if payee.status != _ACTIVE:
            return self._reject_at_admission(record, Result.PAYEE_BLOCKED, now_ns)
        payer_account = payer.accounts.get(currency.currency)
        if payer_account is None:
            return self._reject_at_admission(record, Result.PAYER_CURRENCY_NOT_ENABLED, now_ns)
        payee_account = payee.accounts.get(currency.currency)
        if payee_account is None:
            return self._reject_at_admission(record, Result.PAYEE_CURRENCY_NOT_ENABLED, now_ns)
        amount_minor = record.amount_minor
        if original is not None and (
            original.returned_minor + amount_minor > original.amount_minor
        ):
            return self._reject_at_admission(record, Result.RETURN_EXCEEDS_ORIGINAL, now_ns)
        rules = currency.rules
        if amount_minor > rules.transfer_max_minor:
            return self._reject_at_admission(record, Result.AMOUNT_ABOVE_TRANSFER_MAX, now_ns)
        if amount_minor > payer_account.daily_room_minor(record.day):
            return self._reject_at_admission(record, Result.PAYER_DAILY_LIMIT_EXCEEDED, now_ns)
        fee = (fee_minor(rules, amount_minor)
               if original is None and (rules.fee_fixed_minor or rules.fee_bps) else 0)
        refusal = self._ledger_reserve(record, payer_account, payee_account, currency, fee,
                                       now_ns)
        if refusal is not _OK:
            return self._reject_at_admission(record, refusal, now_ns)
        # Reserved: the pending debit now counts against the payer's liquidity.
        self._transition(record, _RESERVED, now_ns)
        payer_account.daily_add(record.day, amount_minor)
        if original is not None:
            original.returned_minor += amount_minor
            record.original = original
        record.fee_minor = fee
        record.payer_account = payer_account
        deadline_ns = now_ns + rules.payee_timeout_ms * _NS_PER_MS
        record.deadline_ns = deadline_ns if deadline_ns < record.expires_at_ns else record.expires_at_ns
        record.forwarded = True
        self._in_flight += 1
        self._timers[record.seq] = record
        self._transition(record, _FORWARDED, now_ns)
        return [
            Send(participant_id=record.payee_participant_id, message=self._credit_request(record)),
            ArmTimer(timer_id=record.seq, deadline_ns=record.deadline_ns),
        ]

    def _reject_at_admission(self, record: TransferRecord, result: Result,
                             now_ns: int) -> list[Command]:
        """A recorded refusal: nothing reached the ledger; only the payer hears of it."""
        self._finish(record, _REJECTED, result, now_ns)
        return [Send(participant_id=record.payer_participant_id, message=record.outcome)]

    def _credit_request(self, record: TransferRecord) -> CreditRequest:
        request = record.event.request
        if type(request) is TransferRequest:
            alias, purpose, return_of = request.payee, request.purpose, None
            end_to_end_id = request.end_to_end_id
        else:  # a return: its reason travels as the purpose
            alias, purpose, return_of = None, request.reason, request.original
            end_to_end_id = ""
        return CreditRequest(
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
            payee_account_ref=record.payee_account_ref,
            amount_minor=record.amount_minor,
            currency=record.currency,
            expires_at_ns=record.deadline_ns,
            payee_alias=alias,
            end_to_end_id=end_to_end_id,
            purpose=purpose,
            return_of=return_of,
            request_to_pay_id=record.request_to_pay_id,
            condition=request.condition if type(request) is TransferRequest else "",
        )

    def _on_payee_answer(self, event: PayeeAnswered, now_ns: int) -> list[Command]:
        answer = event.answer
        sender = event.payee_participant_id
        transfer_id = answer.transfer_id
        record = self._transfers.get((answer.payer_participant_id, transfer_id))
        if record is None:
            # Checked only here: every id the table holds passed the same check when recorded.
            if not id_valid(transfer_id):
                return [_refuse(sender, RequestType.PAYEE_ANSWER, answer.payer_participant_id,
                                transfer_id, Result.ID_INVALID)]
            return [ConsultStore(participant_id=sender,
                                 payer_participant_id=answer.payer_participant_id,
                                 transfer_id=transfer_id,
                                 result_if_absent=Result.TRANSFER_NOT_FOUND)]
        if record.payee_participant_id != sender or not record.forwarded:
            raise ProtocolError(sender, Result.TRANSFER_NOT_FOUND, 404,
                                "answer to a transfer this participant was never sent")
        if record.state != _FORWARDED:
            # A duplicate or late answer: harmless, the final state is repeated.
            return [Send(participant_id=sender, message=record.outcome)]
        if now_ns >= record.deadline_ns:
            # The deadline passed before the answer (its timer has not fired yet): expire
            # now, so the answer is the same whichever of the two the shell fed first.
            return self._expire(record, now_ns, cancel_timer=True)
        result = _PAYEE_REJECTED
        if answer.accepted:
            request = record.event.request  # a return carries no condition
            condition = request.condition if type(request) is TransferRequest else ""
            if not condition:
                return self._commit(record, now_ns)
            if fulfils(answer.fulfilment, condition):
                record.fulfilment = answer.fulfilment
                return self._commit(record, now_ns)
            result = Result.FULFILMENT_INVALID
        self._ledger_void(record, now_ns)
        record.reason = answer.reason
        self._finish(record, _REJECTED, result, now_ns)
        return self._tell_both(record, cancel_timer=True)

    def _tell_both(self, record: TransferRecord, cancel_timer: bool) -> list[Command]:
        """The final outcome, one object for both parties (and the timer's end)."""
        outcome = record.outcome
        to_payer = Send(participant_id=record.payer_participant_id, message=outcome)
        to_payee = Send(participant_id=record.payee_participant_id, message=outcome)
        if cancel_timer:
            return [CancelTimer(timer_id=record.seq), to_payer, to_payee]
        return [to_payer, to_payee]

    def _commit(self, record: TransferRecord, now_ns: int) -> list[Command]:
        self._ledger_post(record, now_ns)
        # It belongs to the settlement window open now: O(1) here, so closing a window
        # costs O(participants) (switch/core/settlement.py: net positions and volume come
        # from the ledger's balances, the count and the bilateral matrix from here).
        window = self._windows_open[record.currency]
        window.transfers += 1
        window.bilateral[(record.payer_participant_id << 24)
                         | record.payee_participant_id] += record.amount_minor
        self._finish(record, _COMMITTED, _OK, now_ns)
        commands = self._tell_both(record, cancel_timer=True)
        event = record.event
        if type(event) is TransferRequested:
            request = event.request
            if request.payee is not None and request.payer_user_ref:
                commands.append(RefundLookupToken(
                    payer_participant_id=record.payer_participant_id,
                    payer_user_ref=request.payer_user_ref,
                    payee_alias=request.payee,
                ))
        return commands

    def _expire(self, record: TransferRecord, now_ns: int, cancel_timer: bool) -> list[Command]:
        self._ledger_void(record, now_ns)
        self._finish(record, _EXPIRED, Result.TRANSFER_EXPIRED, now_ns)
        return self._tell_both(record, cancel_timer)

    def _finish(self, record: TransferRecord, state: TransferState, result: Result,
                now_ns: int) -> None:
        """Enter a final state: the one place that does, so a transfer ends exactly once."""
        assert state in _TRANSFER_FINAL_NEXT[record.state], (record.state, state)
        if record.forwarded:
            assert record.state == _FORWARDED
            self._in_flight -= 1
            del self._timers[record.seq]
        record.state = state
        record.result = result
        record.decided_at_ns = now_ns
        # Needed only to void an in-flight reserve; dropping them keeps final records small
        # and identical to ones restored from a snapshot.
        record.payer_account = None
        record.original = None
        record.outcome = TransferOutcome(
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
            state=state,
            result=result,
            payee_participant_id=record.payee_participant_id,
            amount_minor=record.amount_minor,
            fee_minor=record.fee_minor,
            currency=record.currency,
            decided_at_ns=now_ns,
            reason=record.reason,
            fulfilment=record.fulfilment,
        )
        self._transfers_final.append((record.payer_participant_id, record.transfer_id))
        if self._observer is not None:
            self._observer(record.payer_participant_id, record.transfer_id, state, now_ns)

    def _transition(self, record: TransferRecord, state: TransferState, now_ns: int) -> None:
        """Enter a state that is not final (`_finish` enters those): along the graph only."""
        assert state in _TRANSFER_NEXT[record.state], (record.state, state)
        record.state = state
        observer = self._transition_observer
        if observer is not None:
            observer(record.payer_participant_id, record.transfer_id, state, now_ns)

    def _answer_resend(self, record: TransferRecord, event, sender: int) -> list[Command]:
        result = _compare_requests(record.event, event)
        if result is not _OK:
            request_type = RequestType.TRANSFER if type(event) is TransferRequested else RequestType.RETURN
            return [_refuse(sender, request_type, sender, record.transfer_id, result)]
        return [Send(participant_id=sender, message=self._current_outcome(record))]

    def _current_outcome(self, record: TransferRecord) -> TransferOutcome:
        if record.outcome is not None:
            return record.outcome
        return TransferOutcome(
            payer_participant_id=record.payer_participant_id,
            transfer_id=record.transfer_id,
            state=record.state,
            result=_OK,
            payee_participant_id=record.payee_participant_id,
            amount_minor=record.amount_minor,
            fee_minor=record.fee_minor,
            currency=record.currency,
        )

    def _on_status(self, event: StatusQueried, now_ns: int) -> list[Command]:
        query = event.query
        sender = event.participant_id
        if not id_valid(query.transfer_id):
            return [_refuse(sender, RequestType.STATUS_QUERY, query.payer_participant_id,
                            query.transfer_id, Result.ID_INVALID)]
        record = self._transfers.get((query.payer_participant_id, query.transfer_id))
        if record is None:
            return [ConsultStore(participant_id=sender,
                                 payer_participant_id=query.payer_participant_id,
                                 transfer_id=query.transfer_id,
                                 result_if_absent=Result.TRANSFER_NOT_FOUND)]
        if sender != record.payer_participant_id and not (
            record.forwarded and sender == record.payee_participant_id
        ):
            # Not a party: answer as if it did not exist, so ids cannot be probed.
            return [_refuse(sender, RequestType.STATUS_QUERY, query.payer_participant_id,
                            query.transfer_id, Result.TRANSFER_NOT_FOUND)]
        return [Send(participant_id=sender, message=self._current_outcome(record))]

    def _on_timer(self, event: TimerFired, now_ns: int) -> list[Command]:
        record = self._timers.get(event.timer_id)
        if record is None:
            # A settlement cut-off; or cancelled, already final, or a duplicate firing
            # after a restart.
            return self._on_settlement_timer(event, now_ns)
        if type(record) is TransferRecord:
            if now_ns < record.deadline_ns:
                return [ArmTimer(timer_id=record.seq, deadline_ns=record.deadline_ns)]
            return self._expire(record, now_ns, cancel_timer=False)
        request = record.event.request
        if now_ns < request.expires_at_ns:
            return [ArmTimer(timer_id=record.seq, deadline_ns=request.expires_at_ns)]
        return self._request_finish(record, RequestToPayState.EXPIRED, Result.REQUEST_EXPIRED,
                                    notify_payer=True)

    def _ledger_reserve(self, record: TransferRecord, payer_account: ParticipantAccount,
                        payee_account: ParticipantAccount, currency: CurrencyState, fee: int,
                        now_ns: int) -> Result:
        """OK, or the refusal the ledger's answer means (`_RESERVE_REFUSALS`)."""
        failures = legs.reserve(
            self.ledger, self._buffer, seq=record.seq,
            payer_participant_id=record.payer_participant_id,
            payer_account_id=payer_account.account_id, payee_account_id=payee_account.account_id,
            fees_account_id=currency.hub_fees_account_id, amount_minor=record.amount_minor,
            fee_minor=fee, ledger_id=currency.ledger_id,
            code=_CODE_PAYMENT if type(record.event) is TransferRequested else _CODE_RETURN,
            fee_code=_CODE_FEE, now_ns=now_ns)
        if not failures:
            return _OK
        # Nothing else can refuse a reserve: ids are fresh, accounts exist, and pending_max
        # covers in_flight_max (asserted at construction). A linked pair fails whole: one
        # leg names the cause, the other LINKED_EVENT_FAILED.
        causes = [(index, result) for index, result in failures if result != _LINKED_EVENT_FAILED]
        assert len(causes) == 1 and len(failures) == (2 if fee else 1), failures
        index, result = causes[0]
        refusal = _RESERVE_REFUSALS[index].get(result)
        assert refusal is not None, failures
        return refusal

    def _ledger_post(self, record: TransferRecord, now_ns: int) -> None:
        legs.finish(self.ledger, self._buffer, seq=record.seq,
                    payer_participant_id=record.payer_participant_id,
                    with_fee=record.fee_minor > 0, post=True, now_ns=now_ns)

    def _ledger_void(self, record: TransferRecord, now_ns: int) -> None:
        legs.finish(self.ledger, self._buffer, seq=record.seq,
                    payer_participant_id=record.payer_participant_id,
                    with_fee=record.fee_minor > 0, post=False, now_ns=now_ns)
        record.payer_account.daily_release(record.day, record.amount_minor)
        if record.original is not None:
            record.original.returned_minor -= record.amount_minor
            assert record.original.returned_minor >= 0
