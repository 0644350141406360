"""Batch reports: the summary (rows and amounts paid, failed by reason, cancelled, pending),
the per-row report as CSV and as G2P Connect's DisburseResponse JSON, by page or written
whole to files.

Rows are read from the store a page at a time (`limits.REPORT_PAGE_ROWS`), so a report of
1,000,000 rows takes the memory of one page. A beneficiary named by national ID appears
only as its identity token (`token:<hex>@nid`); the raw ID is nowhere to be written.
"""

from __future__ import annotations

import datetime
import functools
import os
import time

import msgspec

from switch.core.money import exponent
from switch.g2p import limits
from switch.g2p.types import (
    BATCH_STATE_NAMES,
    REASON_NAMES,
    BatchCounts,
    BatchRecord,
    RowStatus,
    RowView,
)

CSV_HEADER = ("row_no,reference_id,payee,amount_minor,currency,status,reason,result,attempt,"
              "payee_participant_id,transfer_id,updated_at\n")
_SPEC_STATUS = {RowStatus.PENDING: "pdng", RowStatus.SUBMITTED: "pdng", RowStatus.PAID: "succ",
                RowStatus.FAILED: "rjct", RowStatus.CANCELLED: "rjct"}
_encode = msgspec.json.Encoder().encode


def rfc3339(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def summary(record: BatchRecord, counts: BatchCounts, rate_per_s: float = 0.0) -> dict:
    """The batch's summary. `paid_minor` is what left the programme's account for this
    batch (plus the scheme's fees, if any): the reconciliation figure against the ledger."""
    finals = counts.paid + counts.failed + counts.cancelled
    return {
        "transaction_id": record.transaction_id,
        "batch_id": record.batch_id,
        "programme_id": record.programme_id,
        "currency": record.currency,
        "state": BATCH_STATE_NAMES[record.state],
        "rows_total": record.rows_total,
        "amount_total_minor": record.amount_total_minor,
        "paid": counts.paid,
        "paid_minor": counts.paid_minor,
        "failed": counts.failed,
        "failed_minor": counts.failed_minor,
        "failed_by_reason": dict(sorted(counts.by_reason.items())),
        "cancelled": counts.cancelled,
        "pending": max(0, counts.pending),
        "in_flight": max(0, counts.submitted),
        "progress": (finals / record.rows_total) if record.rows_total else 0.0,
        "rows_per_s": round(rate_per_s, 1),
        "created_at": rfc3339(record.created_ns),
        "updated_at": rfc3339(record.updated_ns),
    }


def _transfer_id(record: BatchRecord, row: RowView) -> str:
    if row.status in (RowStatus.PENDING, RowStatus.CANCELLED) or (
            row.status == RowStatus.FAILED and not row.payee_participant_id):
        return ""
    return f"g2p.{record.batch_id}.{row.row_no}.{row.attempt}"


def csv_lines(record: BatchRecord, rows: list[RowView]) -> str:
    """CSV lines for rows (no header). Fields are ids, numbers and names: none needs
    quoting except the reference, which the id grammar keeps free of commas and quotes."""
    currency = record.currency
    return "".join(
        f"{row.row_no},{row.reference_id},{row.payee},{row.amount_minor},{currency},"
        f"{row.status.name.lower()},{REASON_NAMES[row.reason]},{row.result},{row.attempt},"
        f"{row.payee_participant_id},{_transfer_id(record, row)},{rfc3339(row.updated_ns)}\n"
        for row in rows)


@functools.lru_cache(maxsize=4_096)
def amount_text(amount_minor: int, currency: str) -> str:
    """G2P Connect's decimal amount ("12.50") from integer minor units (the currency's
    ISO 4217 exponent, switch/core/money.py); cached, as a batch repeats a few amounts."""
    digits = exponent(currency)
    if digits == 0:
        return f"{amount_minor}.0"
    whole, fraction = divmod(amount_minor, 10 ** digits)
    return f"{whole}.{fraction:0{digits}d}"


def spec_row(record: BatchRecord, row: RowView) -> dict:
    """One `disbursements_status` item of the spec's DisburseResponse."""
    item = {
        "reference_id": row.reference_id,
        "timestamp": rfc3339(row.updated_ns),
        "status": _SPEC_STATUS[row.status],
        "amount": amount_text(row.amount_minor, record.currency),
        "currency_code": record.currency,
    }
    if row.status in (RowStatus.FAILED, RowStatus.CANCELLED):
        item["status_reason_message"] = REASON_NAMES[row.reason]
        if row.reason == 1 or row.reason == 7:  # unmapped, invalid payee
            item["status_reason_code"] = "rjct.payee_fa.invalid"
    return item


async def write_files(store, record: BatchRecord, counts: BatchCounts,
                      directory: str) -> dict:
    """Write `<batch>.csv`, `<batch>.json` (the spec's DisburseResponse, every row) and
    `<batch>.summary.json` into `directory`, streaming page by page; returns the summary
    with the files' paths and the seconds it took."""
    started = time.perf_counter()
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"g2p-{record.batch_id}")
    csv_path, json_path, summary_path = base + ".csv", base + ".json", base + ".summary.json"
    after = 0
    rows_written = 0
    with open(csv_path + ".tmp", "w", encoding="ascii") as csv_file, \
            open(json_path + ".tmp", "wb") as json_file:
        csv_file.write(CSV_HEADER)
        json_file.write(b'{"transaction_id":' + _encode(record.transaction_id)
                        + b',"disbursements_status":[')
        while True:
            rows = await store.rows_page(record.batch_id, after, limits.REPORT_PAGE_ROWS)
            if not rows:
                break
            csv_file.write(csv_lines(record, rows))
            items = b",".join(_encode(spec_row(record, row)) for row in rows)
            json_file.write((b"," if rows_written else b"") + items)
            rows_written += len(rows)
            after = rows[-1].row_no
        json_file.write(b"]}")
    os.replace(csv_path + ".tmp", csv_path)
    os.replace(json_path + ".tmp", json_path)
    result = summary(record, counts)
    result["report_rows"] = rows_written
    result["report_seconds"] = round(time.perf_counter() - started, 3)
    with open(summary_path, "wb") as file:
        file.write(_encode(result))
    result["files"] = {"csv": csv_path, "json": json_path, "summary": summary_path}
    return result


__all__ = ["CSV_HEADER", "amount_text", "csv_lines", "rfc3339", "spec_row", "summary",
           "write_files"]
