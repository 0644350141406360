"""POST /batchtransactions: a wallet's bulk payments, kept small and bounded.

Each row of a batch is decoded and translated on its own (`translate.payment`): a row that
cannot be carried is a rejection of the batch at once, with its reason; every other row
becomes an ordinary transfer with a deterministic id (`batch-{X-CorrelationID}.{row}`), so
a batch sent again after a restart re-submits the same transfers and the switch answers
the ones it already has instead of paying twice. Rows are submitted at a bounded rate
(BATCH_ROWS_PER_S_MAX) with a bounded number in flight (BATCH_ROWS_IN_FLIGHT_MAX); each
row's outcome is a completion (committed) or a rejection (anything else). When every row
is final the batch is `completed` and its callback (if any) is sent.

Batches live in memory (BATCHES_MAX, BATCH_ROWS_TOTAL_MAX): a 202 for a batch means it was
read and queued, not journaled; the rows' transfers are journaled one by one as they are
submitted. It must never submit a row twice under two ids, nor let one batch hold more
than its in-flight bound.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import msgspec

from connectors.mobilemoney import limits, translate
from connectors.mobilemoney.wire import (
    BatchAnswer,
    BatchCompletion,
    BatchRejection,
    PartyEntry,
    TransactionRequest,
    date_time,
    transaction_reference,
)
from switch.core.messages import Refused, TransferOutcome
from switch.core.results import Result, TransferState

log = logging.getLogger("ponte.mobilemoney.batches")

_row_decoder = msgspec.json.Decoder(TransactionRequest)
_loose_row = msgspec.json.Decoder()


def batch_id_for(correlation_id: str) -> str:
    return f"batch-{correlation_id}"


def _placeholder(index: int) -> list[PartyEntry]:
    # Rejections need both parties (minItems 1); a row too broken to name them says which.
    return [PartyEntry(key="batchRow", value=str(index))]


class Row:
    __slots__ = ("index", "transfer", "debit", "credit", "org_reference", "final")

    def __init__(self, index: int, transfer, debit, credit, org_reference: str) -> None:
        self.index = index
        self.transfer = transfer  # the TransferRequest, None when rejected at reading
        self.debit = debit
        self.credit = credit
        self.org_reference = org_reference
        self.final = False


class Batch:
    __slots__ = ("batch_id", "owner", "correlation_id", "body_hash", "callback_url",
                 "title", "description", "created_ns", "modified_ns", "rows", "next_row",
                 "in_flight", "completions", "rejections", "parsed", "finished_ns")

    def __init__(self, batch_id: str, owner: int, correlation_id: str, body_hash: bytes,
                 callback_url: str, title: str, description: str, now_ns: int) -> None:
        self.batch_id = batch_id
        self.owner = owner
        self.correlation_id = correlation_id
        self.body_hash = body_hash
        self.callback_url = callback_url
        self.title = title
        self.description = description
        self.created_ns = now_ns
        self.modified_ns = now_ns
        self.rows: list[Row] = []
        self.next_row = 0
        self.in_flight = 0
        self.completions: list[BatchCompletion] = []
        self.rejections: list[BatchRejection] = []
        self.parsed = 0
        self.finished_ns = 0

    @property
    def done(self) -> bool:
        return self.finished_ns != 0

    def answer(self) -> BatchAnswer:
        created = date_time(self.created_ns)
        return BatchAnswer(
            batch_id=self.batch_id, batch_status="completed" if self.done else "approved",
            creation_date=created, approval_date=created,
            completion_date=date_time(self.finished_ns or self.modified_ns),
            batch_title=self.title, batch_description=self.description,
            processing_flag=not self.done, rejection_count=len(self.rejections),
            parsing_success_count=self.parsed, completed_count=len(self.completions))

    def reject(self, row: Row, reason: str, now_ns: int, reference: str = "") -> None:
        row.final = True
        self.modified_ns = now_ns
        self.rejections.append(BatchRejection(
            rejection_date=date_time(now_ns), rejection_reason=reason[:limits.TEXT_256_MAX]
            or "rejected", debit_party=row.debit, credit_party=row.credit,
            transaction_reference=reference,
            requesting_organisation_transaction_reference=row.org_reference))

    def complete(self, row: Row, reference: str, now_ns: int) -> None:
        row.final = True
        self.modified_ns = now_ns
        self.completions.append(BatchCompletion(
            transaction_reference=reference, completion_date=date_time(now_ns),
            link=f"/transactions/{reference}", debit_party=row.debit, credit_party=row.credit,
            requesting_organisation_transaction_reference=row.org_reference))


class Batches:
    """Every remembered batch, and the rows in flight by (owner, transfer id)."""

    def __init__(self, gateway, on_finished) -> None:
        self.gateway = gateway
        self.on_finished = on_finished  # on_finished(batch): the connector's callback
        self.batches: OrderedDict[tuple[int, str], Batch] = OrderedDict()  # (owner, id)
        self.rows_total = 0
        self.active: list[Batch] = []
        self.in_flight: dict[tuple[int, str], tuple[Batch, Row]] = {}

    def get(self, owner: int, batch_id: str) -> Batch | None:
        return self.batches.get((owner, batch_id))

    def room_for(self, rows: int) -> bool:
        """Whether a batch of `rows` fits after forgetting finished batches, oldest first."""
        while self.batches and (len(self.batches) >= limits.BATCHES_MAX or
                                self.rows_total + rows > limits.BATCH_ROWS_TOTAL_MAX):
            key, oldest = next(iter(self.batches.items()))
            if not oldest.done:
                return False
            del self.batches[key]
            self.rows_total -= len(oldest.rows)
        return self.rows_total + rows <= limits.BATCH_ROWS_TOTAL_MAX

    def add(self, batch: Batch, raw_rows: list[msgspec.Raw], expires_at_ns: int,
            now_ns: int) -> None:
        """Read every row (rejecting those that cannot be carried) and start the batch."""
        for index, raw in enumerate(raw_rows):
            transfer_id = f"{batch.batch_id}.{index}"
            try:
                body = _row_decoder.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError) as error:
                refusal = translate.decode_error(error, bytes(raw))
                row = Row(index, None, *self._loose_parties(raw, index))
                batch.rows.append(row)
                batch.reject(row, refusal.detail, now_ns)
                continue
            debit = body.debit_party or _placeholder(index)
            credit = body.credit_party or _placeholder(index)
            transfer = translate.payment(body, None, transfer_id, expires_at_ns)
            row = Row(index, None, debit, credit,
                      body.requesting_organisation_transaction_reference)
            batch.rows.append(row)
            if type(transfer) is translate.Refusal:
                batch.reject(row, transfer.detail, now_ns)
                continue
            row.transfer = transfer
            batch.parsed += 1
        self.batches[(batch.owner, batch.batch_id)] = batch
        self.rows_total += len(batch.rows)
        self.active.append(batch)
        self._maybe_finished(batch, now_ns)

    @staticmethod
    def _loose_parties(raw: msgspec.Raw, index: int):
        """The parties of a row that broke its schema, if they can be read at all."""
        try:
            loose = _loose_row.decode(raw)
            debit = msgspec.convert(loose.get("debitParty"), list[PartyEntry])
            credit = msgspec.convert(loose.get("creditParty"), list[PartyEntry])
            if debit and credit:
                reference = loose.get("requestingOrganisationTransactionReference", "")
                return debit[:10], credit[:10], reference if isinstance(
                    reference, str) and len(reference) <= limits.TEXT_256_MAX else ""
        except (msgspec.ValidationError, msgspec.DecodeError, AttributeError, TypeError):
            pass
        return _placeholder(index), _placeholder(index), ""

    def tick(self, now_ns: int) -> None:
        """Submit each active batch's next rows within its rate and in-flight bounds."""
        per_tick = max(1, limits.BATCH_ROWS_PER_S_MAX * limits.BATCH_TICK_MS // 1000)
        still = []
        for batch in self.active:
            budget = min(per_tick, limits.BATCH_ROWS_IN_FLIGHT_MAX - batch.in_flight)
            rows = batch.rows
            while budget > 0 and batch.next_row < len(rows):
                row = rows[batch.next_row]
                if row.transfer is None:
                    batch.next_row += 1
                    continue
                result = self.gateway.submit(batch.owner, row.transfer)
                if result is Result.SERVER_BUSY or result is Result.SERVICE_UNAVAILABLE:
                    break  # the switch is full or not taking new work: next tick
                batch.next_row += 1
                if result is not Result.OK:
                    batch.reject(row, result.name, now_ns)
                    continue
                batch.in_flight += 1
                budget -= 1
                self.in_flight[(batch.owner, row.transfer.transfer_id)] = (batch, row)
            if not self._maybe_finished(batch, now_ns):
                still.append(batch)
        self.active = still

    def outcome(self, owner: int, message, now_ns: int) -> bool:
        """A row's outcome (TransferOutcome or Refused); False if it is not a batch row's."""
        transfer_id = message.transfer_id if type(message) is TransferOutcome else message.id
        found = self.in_flight.get((owner, transfer_id))
        if found is None:
            return False
        if type(message) is TransferOutcome and message.state not in (
                TransferState.COMMITTED, TransferState.REJECTED, TransferState.EXPIRED):
            return True  # not final yet (an answer to a resend)
        del self.in_flight[(owner, transfer_id)]
        batch, row = found
        batch.in_flight -= 1
        reference = transaction_reference(owner, transfer_id)
        if type(message) is TransferOutcome and message.state == TransferState.COMMITTED:
            batch.complete(row, reference, now_ns)
        elif type(message) is Refused:
            batch.reject(row, message.result.name, now_ns)
        else:
            batch.reject(row, f"{message.state.name} {message.result.name}", now_ns,
                         reference)
        self._maybe_finished(batch, now_ns)
        return True

    def _maybe_finished(self, batch: Batch, now_ns: int) -> bool:
        if batch.done:
            return True
        if batch.next_row < len(batch.rows):
            return False  # rows left to submit (the next tick skips rejected ones)
        if batch.in_flight:
            return False
        batch.finished_ns = now_ns
        batch.modified_ns = now_ns
        self.on_finished(batch)
        return True
