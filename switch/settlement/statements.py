"""Statements of one participant for one settlement window, streamed: camt.053.001.08 (a
closed window), camt.052.001.08 (an intraday report of the open window) and CSV with the
same entries.

`StatementInput` holds everything the document needs that lives in the core (balances, the
window's bounds, the participant's non-transfer postings), taken on the event loop between
two core steps; `statement_chunks(input)` then reads the window's entry log (entries.py) and
yields the document in chunks of about `STATEMENT_CHUNK_BYTES`, in a worker thread, with
one read chunk and one output chunk in memory whatever the window's size. Entries are the
committed transfers the participant paid (a debit, and the scheme fee as its own debit) or
received (a credit), merged in time order with the operator's and settlement's postings on
its account: opening balance + the entries = the closing balance, exactly. It must never
touch the core (the input is a copy).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from typing import Iterator, NamedTuple

from switch.core.accounts import Leg, TransferCode
from switch.settlement import iso, limits
from switch.settlement.config import SettlementConfig
from switch.settlement.entries import KIND_PAYMENT, read_entries

FORMATS = {"camt053": ("application/xml", "xml"), "camt052": ("application/xml", "xml"),
           "csv": ("text/csv; charset=utf-8", "csv")}
CSV_COLUMNS = ("window_id", "booked_at_utc", "entry", "direction", "amount_minor", "amount",
               "currency", "payer_participant_id", "transfer_id", "payee_participant_id",
               "end_to_end_id", "ledger_transfer_id")
_POST = int(Leg.POST)
_POST_FEE = int(Leg.POST_FEE)
_CODE_NAMES = {int(code): code.name for code in TransferCode}
_SETTLEMENT_LEGGED = {int(TransferCode.SETTLEMENT_CREDIT), int(TransferCode.SETTLEMENT_DEBIT)}


class Line(NamedTuple):
    """One statement entry."""

    at_ns: int
    reference: int  # the ledger transfer id that booked it
    booking: str  # a key of iso.BOOKINGS
    debit: bool
    amount_minor: int
    transfer_id: str = ""
    payer_participant_id: int = 0
    payee_participant_id: int = 0
    end_to_end_id: str = ""
    window_id: int = 0  # a settlement posting: the window it settles


class StatementInput(NamedTuple):
    format: str  # a key of FORMATS
    window_id: int
    currency: str
    participant_id: int
    participant_name: str
    account_id: int
    from_ns: int
    to_ns: int
    opening_minor: int
    closing_minor: int
    created_at_ns: int
    entries_path: str
    entries_end: int  # bytes of the entry log to read
    movements: tuple  # the participant's switch.core.settlement.Movement, in time order
    config: SettlementConfig


def lines(source: StatementInput) -> Iterator[Line]:
    """The participant's entries of the window, in time order."""
    participant_id = source.participant_id
    movements = iter(source.movements)
    movement = next(movements, None)

    def movement_line(item) -> Line:
        seq_leg = (item.seq << 3) | (_POST if item.code in _SETTLEMENT_LEGGED else 0)
        return Line(at_ns=item.at_ns, reference=seq_leg, booking=_CODE_NAMES[item.code],
                    debit=item.amount_minor < 0, amount_minor=abs(item.amount_minor),
                    window_id=item.window_id)

    for entry in read_entries(source.entries_path, participant_id, source.entries_end):
        while movement is not None and movement.at_ns <= entry.at_ns:
            yield movement_line(movement)
            movement = next(movements, None)
        booking = "PAYMENT" if entry.kind == KIND_PAYMENT else "RETURN"
        payer = entry.payer_participant_id == participant_id
        base = entry.seq << 3
        yield Line(entry.at_ns, base | _POST, booking, payer, entry.amount_minor,
                   entry.transfer_id, entry.payer_participant_id, entry.payee_participant_id,
                   entry.end_to_end_id)
        if payer and entry.fee_minor:
            yield Line(entry.at_ns, base | _POST_FEE, "FEE", True, entry.fee_minor,
                       entry.transfer_id, entry.payer_participant_id,
                       entry.payee_participant_id, entry.end_to_end_id)
    while movement is not None:
        yield movement_line(movement)
        movement = next(movements, None)


def _chunked(parts: Iterator[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for part in parts:
        buffer.append(part)
        size += len(part)
        if size >= limits.STATEMENT_CHUNK_BYTES:
            yield "".join(buffer).encode("utf-8", "surrogatepass")
            buffer.clear()
            size = 0
    if buffer:
        yield "".join(buffer).encode("utf-8", "surrogatepass")


def _timestamps():
    """iso_datetime with the second's text cached: entries come in time order."""
    cache = [-1, ""]

    def stamp(at_ns: int) -> str:
        second = at_ns // iso.NS_PER_S
        if second != cache[0]:
            cache[0] = second
            cache[1] = datetime.fromtimestamp(second, tz=timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%S.")
        return f"{cache[1]}{at_ns // 1_000_000 % 1000:03d}Z"
    return stamp


def statement_chunks(source: StatementInput) -> Iterator[bytes]:
    """The document, in chunks. Raises iso.AmountTooLarge for an amount ISO 20022 cannot
    carry (before the first chunk for balances)."""
    if source.format == "csv":
        return _chunked(_csv_parts(source))
    return _chunked(_camt_parts(source))


def _camt_parts(source: StatementInput) -> Iterator[str]:
    kind = "053" if source.format == "camt053" else "052"
    prefix = "S" if kind == "053" else "R"
    message_id = f"PONTE-{prefix}{source.window_id}-P{source.participant_id}"
    yield iso.statement_head(
        kind=kind, message_id=message_id, created_at_ns=source.created_at_ns,
        window_id=source.window_id, from_ns=source.from_ns, to_ns=source.to_ns,
        account_id=source.account_id, currency=source.currency,
        owner_name=source.participant_name, config=source.config,
        opening_minor=source.opening_minor, closing_minor=source.closing_minor,
        closing_code="CLBD" if kind == "053" else "ITBD")
    currency = source.currency
    stamp = _timestamps()
    amount = iso.iso_amount
    text = iso.xml_text
    descriptions = iso.BOOKINGS
    for line in lines(source):
        direction = "DBIT" if line.debit else "CRDT"
        value = f"<Amt Ccy=\"{currency}\">{amount(line.amount_minor, currency)}</Amt>"
        details = ""
        if line.transfer_id:
            e2e = line.end_to_end_id
            tx_id = f"<TxId>{line.transfer_id}</TxId>" if len(line.transfer_id) <= 35 else ""
            info = (f"payer_participant_id={line.payer_participant_id} transfer_id="
                    f"{line.transfer_id} payee_participant_id={line.payee_participant_id}")
            if e2e:
                info += f" end_to_end_id={e2e}"
            details = (f"<NtryDtls><TxDtls><Refs><EndToEndId>"
                       f"{text(e2e) if 0 < len(e2e) <= 35 else 'NOTPROVIDED'}</EndToEndId>"
                       f"{tx_id}<Prtry><Tp>PAYER</Tp><Ref>{line.payer_participant_id}</Ref>"
                       f"</Prtry></Refs>{value}<CdtDbtInd>{direction}</CdtDbtInd>"
                       f"<AddtlTxInf>{text(info[:500])}</AddtlTxInf></TxDtls></NtryDtls>")
        elif line.window_id:
            details = (f"<NtryDtls><TxDtls><Refs><Prtry><Tp>WINDOW</Tp>"
                       f"<Ref>{line.window_id}</Ref></Prtry></Refs>{value}"
                       f"<CdtDbtInd>{direction}</CdtDbtInd><AddtlTxInf>settlement of window "
                       f"{line.window_id}</AddtlTxInf></TxDtls></NtryDtls>")
        yield (f"<Ntry><NtryRef>{line.reference}</NtryRef>{value}<CdtDbtInd>{direction}"
               f"</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><DtTm>{stamp(line.at_ns)}"
               f"</DtTm></BookgDt><AcctSvcrRef>{line.reference}</AcctSvcrRef><BkTxCd><Prtry>"
               f"<Cd>{line.booking}</Cd><Issr>PONTE</Issr></Prtry></BkTxCd>{details}"
               f"<AddtlNtryInf>{descriptions[line.booking]}</AddtlNtryInf></Ntry>")
    yield iso.statement_tail(kind)


def _csv_cell(value: str) -> str:
    """A participant-supplied text as a CSV cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _csv_parts(source: StatementInput) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    currency = source.currency
    stamp = _timestamps()
    window_id = source.window_id
    for line in lines(source):
        writer.writerow((window_id, stamp(line.at_ns), line.booking,
                         "DBIT" if line.debit else "CRDT", line.amount_minor,
                         iso.iso_amount(line.amount_minor, currency), currency,
                         line.payer_participant_id or "", line.transfer_id,
                         line.payee_participant_id or "", _csv_cell(line.end_to_end_id),
                         line.reference))
        if out.tell() >= limits.STATEMENT_CHUNK_BYTES:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
