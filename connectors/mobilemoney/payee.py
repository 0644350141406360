"""Ponte -> wallet: the payee side. A credit request for a wallet on this API becomes a call
to the wallet's own GSMA API, and the wallet's answer becomes the core's PayeeAnswer.

For each `CreditRequest`: optionally GET .../accounts/accountid/{account}/accountname (a 404
rejects the credit at once), then POST .../transactions/type/{credit_type} with an
X-CorrelationID derived from the transfer (a credit re-sent after a restart is the same
request to the wallet), asking for a callback to the hub (PUT /callbacks/credits/{id}) or
polling the wallet's GET /requeststates/{serverCorrelationId}. The wallet's final state
decides: `completed` accepts, `failed` or an error object rejects. A wallet that does not
answer in time leaves the transfer to expire as usual (the core voids the reserve). A
wallet that completes a credit Ponte did not commit (it answered after the deadline, or
the transfer was voided) is asked to reverse it (POST .../transactions/{ref}/reversals).

It must never accept a credit on a wallet's behalf, and never act on an answer from any
wallet but the one the credit was sent to.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from urllib.parse import quote

import msgspec

from connectors.http.client import ClientResponse
from connectors.mobilemoney import limits
from connectors.mobilemoney.config import WalletSettings
from connectors.mobilemoney.lanes import Lanes
from connectors.mobilemoney.wire import (
    Metadata,
    PartyEntry,
    WalletError,
    WalletRequestState,
    WalletTransaction,
    amount_text,
    date_time,
    derived_uuid,
    transaction_reference,
)
from switch.core import limits as core_limits
from switch.core.messages import CreditRequest, PayeeAnswer, TransferOutcome
from switch.core.results import TransferState

log = logging.getLogger("ponte.mobilemoney.payee")

_encode = msgspec.json.Encoder().encode
_transaction_decoder = msgspec.json.Decoder(WalletTransaction)
_error_decoder = msgspec.json.Decoder(WalletError)
_state_decoder = msgspec.json.Decoder(WalletRequestState)
_COMPLETED = frozenset({"completed", "success", "successful", "accepted"})
_FAILED = frozenset({"failed", "rejected", "declined", "cancelled", "expired"})


def content_hash(body: bytes) -> bytes:
    return hashlib.sha256(body).hexdigest().encode()


class _Credit:
    """A credit sent to a wallet and not decided yet."""

    __slots__ = ("wallet_id", "credit", "correlation_id", "server_correlation_id", "polls",
                 "settled", "wallet_reference")

    def __init__(self, wallet_id: int, credit: CreditRequest, correlation_id: str) -> None:
        self.wallet_id = wallet_id
        self.credit = credit
        self.correlation_id = correlation_id
        self.server_correlation_id = ""
        self.polls = 0
        self.settled = False  # an answer was submitted (or the transfer ended)
        self.wallet_reference = ""


class PayeeSide:
    """The credits of every wallet on this API. Built by the connector."""

    def __init__(self, gateway, lanes: Lanes, callback_root: str) -> None:
        self.gateway = gateway
        self.lanes = lanes
        self.callback_root = callback_root.rstrip("/")  # the hub as wallets reach it
        # correlation id -> credit, and (payer, transfer id) -> correlation id.
        self.awaiting: OrderedDict[str, _Credit] = OrderedDict()
        self.by_transfer: dict[tuple[int, str], str] = {}
        # (payer, transfer id) -> (wallet id, the wallet's transactionReference) of credits
        # the wallet completed: kept until the outcome says whether to reverse them.
        self.completed: OrderedDict[tuple[int, str], tuple[int, str]] = OrderedDict()
        self.reversals_requested_total = 0
        self.loop = None

    # -- a credit request arrives for a wallet ----------------------------------------------

    def credit(self, wallet: WalletSettings, credit: CreditRequest) -> None:
        key = (credit.payer_participant_id, credit.transfer_id)
        known = self.by_transfer.get(key)
        if known is not None and known in self.awaiting:
            return  # re-sent while the wallet is still deciding: it will answer once
        if not wallet.api_url:
            self._answer(wallet.participant_id, credit, False, "wallet has no API URL")
            return
        correlation_id = derived_uuid("credit", str(credit.payer_participant_id),
                                      credit.transfer_id)
        pending = _Credit(wallet.participant_id, credit, correlation_id)
        self.awaiting[correlation_id] = pending
        self.by_transfer[key] = correlation_id
        while len(self.awaiting) > limits.CREDITS_AWAITING_MAX:
            _, dropped = self.awaiting.popitem(last=False)
            self.by_transfer.pop((dropped.credit.payer_participant_id,
                                  dropped.credit.transfer_id), None)
        if wallet.account_check:
            self._check_account(wallet, pending)
        else:
            self._post(wallet, pending)

    def _headers(self, wallet: WalletSettings, correlation_id: str,
                 body: bytes | None) -> tuple[tuple[bytes, bytes], ...]:
        headers = [(b"x-correlationid", correlation_id.encode()),
                   (b"x-date", date_time(time.time_ns()).encode())]
        if wallet.outbound_api_key:
            headers.append((b"x-api-key", wallet.outbound_api_key.encode()))
        if body is not None:
            headers.append((b"x-content-hash", content_hash(body)))
        return tuple(headers)

    def _check_account(self, wallet: WalletSettings, pending: _Credit) -> None:
        account = quote(pending.credit.payee_account_ref, safe="")
        url = f"{wallet.api_url.rstrip('/')}/accounts/accountid/{account}/accountname"

        def checked(response: ClientResponse | None) -> None:
            if pending.settled:
                return
            if response is not None and response.status == 404:
                self._settle(pending, False, "account not found at the wallet")
                return
            self._post(wallet, pending)  # found, or the check is inconclusive: ask anyway

        headers = self._headers(wallet, pending.correlation_id, None)
        if not self.lanes.send(wallet.participant_id, url, b"GET", None, headers, checked):
            self._post(wallet, pending)

    def _post(self, wallet: WalletSettings, pending: _Credit) -> None:
        credit = pending.credit
        reference = transaction_reference(credit.payer_participant_id, credit.transfer_id)
        body = _encode({
            "amount": amount_text(credit.amount_minor, credit.currency),
            "currency": credit.currency,
            "debitParty": [PartyEntry(key="organisationid",
                                      value=str(credit.payer_participant_id))],
            "creditParty": [PartyEntry(key="accountid", value=credit.payee_account_ref)],
            "descriptionText": credit.purpose[:limits.DESCRIPTION_TEXT_MAX],
            "requestingOrganisationTransactionReference": reference,
            "requestDate": date_time(time.time_ns()),
            "metadata": [Metadata(key="ponteTransactionReference", value=reference),
                         Metadata(key="ponteExpiryTime",
                                  value=date_time(credit.expires_at_ns))],
        } if credit.purpose else {
            "amount": amount_text(credit.amount_minor, credit.currency),
            "currency": credit.currency,
            "debitParty": [PartyEntry(key="organisationid",
                                      value=str(credit.payer_participant_id))],
            "creditParty": [PartyEntry(key="accountid", value=credit.payee_account_ref)],
            "requestingOrganisationTransactionReference": reference,
            "requestDate": date_time(time.time_ns()),
            "metadata": [Metadata(key="ponteTransactionReference", value=reference),
                         Metadata(key="ponteExpiryTime",
                                  value=date_time(credit.expires_at_ns))],
        })
        headers = self._headers(wallet, pending.correlation_id, body)
        if wallet.notification == "callback":
            callback = f"{self.callback_root}/callbacks/credits/{pending.correlation_id}"
            headers += ((b"x-callback-url", callback.encode()),)
        url = f"{wallet.api_url.rstrip('/')}/transactions/type/{wallet.credit_type}"

        def answered(response: ClientResponse | None) -> None:
            self._posted(wallet, pending, response)

        self.lanes.send(wallet.participant_id, url, b"POST", body, headers, answered)

    def _posted(self, wallet: WalletSettings, pending: _Credit,
                response: ClientResponse | None) -> None:
        if pending.settled or response is None:
            return  # given up: the transfer expires at its deadline, voided
        status = response.status
        try:
            if status in (200, 201):
                self._final(pending, _transaction_decoder.decode(response.body))
            elif status == 202:
                state = _state_decoder.decode(response.body)
                pending.server_correlation_id = state.server_correlation_id
                self._state(wallet, pending, state)
            elif 400 <= status < 500:
                error = _error_decoder.decode(response.body)
                self._settle(pending, False, f"{error.error_category}/{error.error_code}")
            else:
                log.warning("mobilemoney.credit_answer_unexpected status=%d", status)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            log.warning("mobilemoney.credit_answer_unreadable participant_id=%d error=%s",
                        pending.wallet_id, str(error)[:120])

    def _state(self, wallet: WalletSettings, pending: _Credit,
               state: WalletRequestState) -> None:
        if state.status == "completed":
            pending.wallet_reference = state.object_reference
            self._settle(pending, True, "")
        elif state.status == "failed":
            error = state.error
            self._settle(pending, False, f"{error.error_category}/{error.error_code}"
                         if error is not None else "failed at the wallet")
        elif state.notification_method == "polling" or wallet.notification == "polling":
            self._poll_later(wallet, pending)

    def _final(self, pending: _Credit, transaction: WalletTransaction) -> None:
        status = transaction.transaction_status.lower()
        if status in _COMPLETED:
            pending.wallet_reference = transaction.transaction_reference
            self._settle(pending, True, "")
        elif status in _FAILED:
            self._settle(pending, False, f"wallet status {status}")

    # -- polling -----------------------------------------------------------------------------

    def _poll_later(self, wallet: WalletSettings, pending: _Credit) -> None:
        if pending.polls >= limits.POLLS_PER_CREDIT_MAX or (
                time.time_ns() > pending.credit.expires_at_ns):
            return  # the transfer's deadline decides now
        pending.polls += 1
        asyncio.get_running_loop().call_later(limits.POLL_INTERVAL_MS / 1000, self._poll,
                                              wallet, pending)

    def _poll(self, wallet: WalletSettings, pending: _Credit) -> None:
        if pending.settled or not pending.server_correlation_id:
            return
        url = f"{wallet.api_url.rstrip('/')}/requeststates/{pending.server_correlation_id}"

        def polled(response: ClientResponse | None) -> None:
            if pending.settled:
                return
            if response is not None and response.status == 200:
                try:
                    self._state(wallet, pending, _state_decoder.decode(response.body))
                    return
                except (msgspec.ValidationError, msgspec.DecodeError):
                    pass
            self._poll_later(wallet, pending)

        self.lanes.send(wallet.participant_id, url, b"GET", None,
                        self._headers(wallet, pending.correlation_id, None), polled)

    # -- the wallet's callback (PUT /callbacks/credits/{correlation id}) ---------------------

    def callback(self, caller: int, correlation_id: str, body: bytes) -> bool:
        """A wallet's callback for a credit; False when no credit of this caller's has that
        correlation id (nothing changes)."""
        pending = self.awaiting.get(correlation_id)
        if pending is None or pending.wallet_id != caller:
            return False
        if pending.settled:
            return True
        try:
            self._final(pending, _transaction_decoder.decode(body))
        except (msgspec.ValidationError, msgspec.DecodeError):
            try:
                error = _error_decoder.decode(body)
            except (msgspec.ValidationError, msgspec.DecodeError):
                return False
            self._settle(pending, False, f"{error.error_category}/{error.error_code}")
        return True

    # -- answers and outcomes ----------------------------------------------------------------

    def _settle(self, pending: _Credit, accepted: bool, reason: str) -> None:
        pending.settled = True
        credit = pending.credit
        key = (credit.payer_participant_id, credit.transfer_id)
        self.awaiting.pop(pending.correlation_id, None)
        self.by_transfer.pop(key, None)
        if accepted:
            self.completed[key] = (pending.wallet_id, pending.wallet_reference)
            while len(self.completed) > limits.REVERSALS_AWAITING_MAX:
                self.completed.popitem(last=False)
        self._answer(pending.wallet_id, credit, accepted, reason)

    def _answer(self, wallet_id: int, credit: CreditRequest, accepted: bool,
                reason: str) -> None:
        answer = msgspec.convert({
            "payer_participant_id": credit.payer_participant_id,
            "transfer_id": credit.transfer_id, "accepted": accepted,
            "reason": reason[:core_limits.TEXT_LENGTH_MAX]}, PayeeAnswer)
        result = self.gateway.submit(wallet_id, answer)
        if int(result):
            # Not queued (busy or stopping): the transfer expires at its deadline.
            log.warning("mobilemoney.payee_answer_not_queued participant_id=%d result=%s",
                        wallet_id, result.name)

    def outcome(self, wallet: WalletSettings, outcome: TransferOutcome) -> None:
        """The final state of a transfer this wallet was credited for."""
        key = (outcome.payer_participant_id, outcome.transfer_id)
        if outcome.state == TransferState.COMMITTED:
            self.completed.pop(key, None)
            return
        correlation_id = self.by_transfer.get(key)
        if correlation_id is not None:
            pending = self.awaiting.get(correlation_id)
            if pending is not None and outcome.state in (TransferState.EXPIRED,
                                                         TransferState.REJECTED):
                # Still deciding at the wallet: stop polling; a late completion is met by
                # the core's EXPIRED answer, which brings us back here to reverse it.
                pending.polls = limits.POLLS_PER_CREDIT_MAX
            return
        done = self.completed.pop(key, None)
        if done is None or outcome.state not in (TransferState.EXPIRED, TransferState.REJECTED):
            return
        self._reverse(wallet, outcome, done[1])

    def _reverse(self, wallet: WalletSettings, outcome: TransferOutcome,
                 wallet_reference: str) -> None:
        """The wallet completed a credit the switch did not commit: ask it to reverse."""
        if not wallet.api_url or not wallet_reference:
            log.warning("mobilemoney.reversal_impossible participant_id=%d",
                        wallet.participant_id)
            return
        body = _encode({"type": "reversal", "descriptionText":
                        "Ponte did not commit this credit (expired or rejected)"})
        correlation_id = derived_uuid("reversal", str(outcome.payer_participant_id),
                                      outcome.transfer_id)
        headers = self._headers(wallet, correlation_id, body)
        url = (f"{wallet.api_url.rstrip('/')}/transactions/"
               f"{quote(wallet_reference, safe='')}/reversals")
        self.reversals_requested_total += 1
        self.lanes.send(wallet.participant_id, url, b"POST", body, headers, None)
