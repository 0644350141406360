"""The settlement documents on their own: every XML message produced validates with lxml
against the ISO 20022 schemas (pacs.009, camt.053, camt.052), statements add up (opening +
entries = closing) and carry every transfer's ids, text that XML cannot carry is made safe,
a statement's memory stays flat whatever the window's size, the entry log survives chunk
boundaries, pacs.002 answers are read strictly (no DTD, no entity, schema first), and
reconciliation names every difference."""

from __future__ import annotations

import os
import tracemalloc

import pytest
from lxml import etree

from settlement_helpers import assert_valid, pacs002
from switch.core.messages import ReconciliationRow
from switch.settlement import entries as entry_log
from switch.settlement import iso, limits
from switch.settlement.config import SettlementConfig
from switch.settlement.entries import Entry, encode_entry, read_entries
from switch.settlement.reconcile import reconcile
from switch.settlement.statements import StatementInput, statement_chunks

T0 = 1_714_564_800_000_000_000  # 2024-05-01T12:00:00Z
CONFIG = SettlementConfig()
CAMT = {"camt053": "camt.053.001.08", "camt052": "camt.052.001.08"}
NS = {"c": "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"}


def write_log(path: str, entries: list[Entry]) -> int:
    with open(path, "wb") as file:
        for entry in entries:
            file.write(encode_entry(entry))
    return os.path.getsize(path)


def entries_of(count: int, participant: int = 1, other: int = 2) -> list[Entry]:
    """`count` entries, alternately paid and received by `participant`, a fee on each
    payment, ids of every length and awkward end-to-end ids."""
    found = []
    for n in range(count):
        pays = n % 2 == 0
        found.append(Entry(
            seq=100 + n, at_ns=T0 + n * 1_000_000, kind=entry_log.KIND_PAYMENT if n % 5 else
            entry_log.KIND_RETURN, payer_participant_id=participant if pays else other,
            payee_participant_id=other if pays else participant, amount_minor=1 + n * 37,
            fee_minor=(2 if pays and n % 5 else 0),
            transfer_id=(f"t-{n}" if n % 3 else "x" * 64),
            end_to_end_id=("" if n % 4 else f"E2E <{n}> & 'q' \x01" + "z" * (n % 50))))
    return found


def source(tmp_path, entries: list[Entry], fmt: str, participant: int = 1,
           movements=()) -> StatementInput:
    path = str(tmp_path / "9.entries")
    end = write_log(path, entries)
    delta = sum((-e.amount_minor - e.fee_minor) if e.payer_participant_id == participant
                else e.amount_minor for e in entries) + sum(m.amount_minor for m in movements)
    opening = 10**9
    return StatementInput(
        format=fmt, window_id=9, currency="KES", participant_id=participant,
        participant_name="Bank & Co <A>", account_id=(404 << 32) | (participant << 8) | 2,
        from_ns=T0 - 1, to_ns=T0 + 10**12, opening_minor=opening,
        closing_minor=opening + delta, created_at_ns=T0 + 10**12 + 5,
        entries_path=path, entries_end=end, movements=tuple(movements), config=CONFIG)


# -- statements ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["camt053", "camt052"])
def test_statements_are_schema_valid_and_add_up(tmp_path, fmt):
    from switch.core.settlement import Movement

    movements = [Movement(at_ns=T0 + 5_500_000, seq=900, participant_id=1,
                          amount_minor=-40_000, code=9, window_id=8),
                 Movement(at_ns=T0 + 10**11, seq=901, participant_id=1, amount_minor=7,
                          code=6)]
    entries = entries_of(40)
    data = b"".join(statement_chunks(source(tmp_path, entries, fmt, movements=movements)))
    root = assert_valid(data, CAMT[fmt])
    ns = {"c": f"urn:iso:std:iso:20022:tech:xsd:{CAMT[fmt]}"}
    balances = {b.findtext("c:Tp/c:CdOrPrtry/c:Cd", namespaces=ns):
                (b.findtext("c:Amt", namespaces=ns), b.findtext("c:CdtDbtInd", namespaces=ns))
                for b in root.iter(f"{{{ns['c']}}}Bal")}
    closing = "CLBD" if fmt == "camt053" else "ITBD"
    assert set(balances) == {"OPBD", closing}
    total = 0
    references = []
    for entry in root.iter(f"{{{ns['c']}}}Ntry"):
        amount = int(entry.findtext("c:Amt", namespaces=ns).replace(".", ""))
        total += -amount if entry.findtext("c:CdtDbtInd", namespaces=ns) == "DBIT" else amount
        references.append(entry.findtext("c:NtryRef", namespaces=ns))
    opening = int(balances["OPBD"][0].replace(".", ""))
    assert opening + total == int(balances[closing][0].replace(".", ""))
    payments = sum(1 for e in entries)
    fees = sum(1 for e in entries if e.payer_participant_id == 1 and e.fee_minor)
    assert len(references) == payments + fees + len(movements)
    # Every transfer's ids are in its entry: the full id (64 characters ride in AddtlTxInf).
    text = data.decode()
    for entry in entries:
        assert f"transfer_id={entry.transfer_id} " in text
    assert "\x01" not in text and "&amp;" in text


def test_csv_statement_has_the_same_entries(tmp_path):
    import csv
    import io

    entries = entries_of(30)
    camt = b"".join(statement_chunks(source(tmp_path, entries, "camt053")))
    rows = list(csv.DictReader(io.StringIO(
        b"".join(statement_chunks(source(tmp_path, entries, "csv"))).decode())))
    ntries = etree.fromstring(camt).findall(".//c:Ntry", NS)
    assert len(rows) == len(ntries)
    assert [row["ledger_transfer_id"] for row in rows] == [
        n.findtext("c:NtryRef", namespaces=NS) for n in ntries]
    # A cell starting like a formula is quoted so a spreadsheet shows it as text.
    risky = entries_of(1)[0]._replace(end_to_end_id="=HYPERLINK(1)")
    text = b"".join(statement_chunks(source(tmp_path, [risky], "csv"))).decode()
    assert "'=HYPERLINK(1)" in text


def test_csv_statement_quotes_what_a_participant_wrote_and_nothing_else_breaks_a_row(tmp_path):
    """End-to-end ids are the one free text in a row: commas, quotes and line breaks in
    them are quoted (RFC 4180), so a CSV reader gets every row back whole, with the id as
    sent (formula starts guarded)."""
    import csv
    import io

    sent = ["a,b", 'say "hi"', "two\nlines", "cr\rhere", "-1,2", "plain", "ünïcode"]
    entries = [entry._replace(end_to_end_id=value)
               for entry, value in zip(entries_of(len(sent)), sent)]
    text = b"".join(statement_chunks(source(tmp_path, entries, "csv"))).decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    payments = [row for row in rows if row["entry"] != "FEE"]  # one per entry sent
    assert [row["end_to_end_id"] for row in payments] == [
        "'" + value if value.startswith("-") else value for value in sent]
    assert all(len(row) == len(rows[0]) and None not in row for row in rows)


def test_a_participant_sees_only_its_own_entries(tmp_path):
    mixed = entries_of(20, participant=1, other=2) + entries_of(20, participant=3, other=4)
    data = b"".join(statement_chunks(source(tmp_path, mixed, "camt053", participant=3)))
    root = assert_valid(data, "camt.053.001.08")
    for info in root.iter(f"{{{NS['c']}}}AddtlTxInf"):
        assert "participant_id=3 " in info.text + " " or "=3 " in info.text, info.text


def test_statement_memory_is_flat_whatever_the_window_size(tmp_path, monkeypatch):
    # Small read and output chunks, so a few thousand entries already span many of them.
    monkeypatch.setattr(limits, "ENTRY_READ_CHUNK_BYTES", 64 * 1024)
    monkeypatch.setattr(limits, "STATEMENT_CHUNK_BYTES", 16 * 1024)

    def peak(count: int) -> int:
        path = str(tmp_path / f"{count}.entries")
        with open(path, "wb") as file:  # written in pieces: the test holds no big list
            for start in range(0, count, 5_000):
                file.write(b"".join(encode_entry(e) for e in entries_of(
                    min(5_000, count - start))))
        statement = source(tmp_path, entries_of(1), "camt053")._replace(
            entries_path=path, entries_end=os.path.getsize(path), closing_minor=0,
            opening_minor=0)
        tracemalloc.start()
        written = 0
        try:
            for chunk in statement_chunks(statement):
                written += len(chunk)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    # Both read the log in several chunks (~850 entries a chunk): five times the entries,
    # the same memory (a chunk read, one output chunk, the second's text).
    small, large = peak(5_000), peak(25_000)
    assert large < small * 1.25, (small, large)


# -- the entry log -------------------------------------------------------------------------


def test_entries_are_read_back_across_chunk_boundaries(tmp_path, monkeypatch):
    entries = entries_of(200)
    path = str(tmp_path / "1.entries")
    end = write_log(path, entries)
    monkeypatch.setattr(limits, "ENTRY_READ_CHUNK_BYTES", 97)  # splits most records
    assert list(read_entries(path, None, end)) == entries
    assert list(read_entries(path, 2, end)) == entries  # participant 2 is in every one
    assert list(read_entries(path, 5, end)) == []
    with pytest.raises(ValueError):
        list(read_entries(path, None, end - 3))  # a partial record is an error


# -- pacs.009 --------------------------------------------------------------------------------


def test_instructions_are_schema_valid_one_per_position():
    net = {1: -1_234_567, 2: 1_000_000, 3: 234_000, 7: -1}
    names = {1: "Banco & Filhos <SA>", 2: "Wallet Two", 3: "Bank Three", 7: "x" * 140}
    config = SettlementConfig(participant_bics={"2": "WALLKENAXXX"})
    data = iso.instructions_document(window_id=41, currency="KES", net=net, names=names,
                                     config=config, created_at_ns=T0)
    root = assert_valid(data, "pacs.009.001.08")
    ns = {"p": "urn:iso:std:iso:20022:tech:xsd:pacs.009.001.08"}
    assert root.findtext(".//p:GrpHdr/p:MsgId", namespaces=ns) == "PONTE-W41"
    transactions = root.findall(".//p:CdtTrfTxInf", ns)
    assert root.findtext(".//p:GrpHdr/p:NbOfTxs", namespaces=ns) == "4"
    found = {}
    for tx in transactions:
        ident = tx.findtext("p:PmtId/p:InstrId", namespaces=ns)
        amount = tx.findtext("p:IntrBkSttlmAmt", namespaces=ns)
        debtor = tx.findtext("p:Dbtr/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=ns)
        creditor = tx.findtext("p:Cdtr/p:FinInstnId/p:ClrSysMmbId/p:MmbId", namespaces=ns)
        found[ident] = (amount, debtor, creditor)
    assert found == {"W41-P1-D": ("12345.67", "1", None), "W41-P2-C": ("10000.00", None, "2"),
                     "W41-P3-C": ("2340.00", None, "3"), "W41-P7-D": ("0.01", "7", None)}
    assert b"WALLKENAXXX" in data and b"Banco &amp; Filhos &lt;SA&gt;" in data


def test_an_amount_iso_cannot_carry_is_refused():
    with pytest.raises(iso.AmountTooLarge):
        iso.iso_amount(10**18, "KES")
    assert iso.iso_amount(10**18 - 1, "JPY") == "999999999999999999"
    assert iso.iso_amount(5, "BHD") == "0.005"


# -- pacs.002 --------------------------------------------------------------------------------

EXPECTED = {"W41-P1-D", "W41-P2-C"}


def test_an_rtgs_answer_is_read_and_judged():
    settled = iso.read_pacs002(pacs002("PONTE-W41", group="ACSC"))
    assert iso.judge(settled[0], EXPECTED).outcome == "settled"
    each = iso.read_pacs002(pacs002("PONTE-W41", transactions=[
        ("W41-P1-D", "ACSC", ""), ("W41-P2-C", "ACSC", "")]))
    assert iso.judge(each[0], EXPECTED).outcome == "settled"
    partly = iso.read_pacs002(pacs002("PONTE-W41", transactions=[("W41-P1-D", "ACSC", "")]))
    assert iso.judge(partly[0], EXPECTED).outcome == "not_final"
    pending = iso.read_pacs002(pacs002("PONTE-W41", group="ACSP"))
    assert iso.judge(pending[0], EXPECTED).outcome == "not_final"
    rejected = iso.read_pacs002(pacs002("PONTE-W41", group="PART", transactions=[
        ("W41-P1-D", "RJCT", "AM04"), ("W41-P2-C", "ACSC", "")]))
    verdict = iso.judge(rejected[0], EXPECTED)
    assert verdict.outcome == "rejected" and "AM04" in verdict.detail
    stranger = iso.read_pacs002(pacs002("PONTE-W41", transactions=[("W9-P1-D", "ACSC", "")]))
    assert iso.judge(stranger[0], EXPECTED).outcome == "invalid"


@pytest.mark.parametrize("document", [
    b"not xml at all",
    b"<Document xmlns='urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08'/>",
    pacs002("PONTE-W41", group="ACSC").replace(b"<MsgId>RTGS-20240501-0001</MsgId>", b""),
    pacs002("PONTE-W41", group="ACSC").replace(b"pacs.009.001.08</OrgnlMsgNmId>",
                                               b"pacs.008.001.08</OrgnlMsgNmId>"),
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    + pacs002("PONTE-W41", group="ACSC").split(b"?>", 1)[1].replace(
        b"RTGS-20240501-0001", b"&x;"),
    b"<a>" * 100_000,
], ids=["not-xml", "other-message", "schema-invalid", "answers-a-pacs008",
        "external-entity", "deep"])
def test_anything_but_a_valid_pacs002_is_refused(document):
    with pytest.raises(iso.DocumentInvalid):
        iso.read_pacs002(document)


# -- reconciliation ------------------------------------------------------------------------


def test_reconciliation_names_every_difference(monkeypatch):
    entries = [Entry(seq=n, at_ns=T0, kind=1, payer_participant_id=1 if n % 2 else 2,
                     payee_participant_id=2 if n % 2 else 1, amount_minor=100 + n, fee_minor=0,
                     transfer_id=f"t{n}", end_to_end_id="") for n in range(10)]
    rows = [ReconciliationRow(payer_participant_id=e.payer_participant_id,
                              transfer_id=e.transfer_id, amount_minor=e.amount_minor)
            for e in entries[:6]]
    rows[2] = ReconciliationRow(payer_participant_id=rows[2].payer_participant_id,
                                transfer_id=rows[2].transfer_id, amount_minor=1)
    rows.append(ReconciliationRow(payer_participant_id=1, transfer_id="ghost", amount_minor=5))
    rows.append(rows[0])  # listed twice
    report = reconcile(7, 1, rows, iter(entries))
    assert report.matched == 5
    assert [t.transfer_id for t in report.missing_at_participant] == ["t6", "t7", "t8", "t9"]
    assert [t.transfer_id for t in report.missing_at_switch] == ["ghost"]
    assert [(m.transfer_id, m.switch_amount_minor, m.participant_amount_minor)
            for m in report.amount_mismatches] == [("t2", 102, 1)]
    assert report.duplicate_rows_count == 1 and not report.truncated
    monkeypatch.setattr(limits, "RECONCILIATION_DIFFERENCES_MAX", 2)
    capped = reconcile(7, 1, [], iter(entries))
    assert capped.missing_at_participant_count == 10
    assert len(capped.missing_at_participant) == 2 and capped.truncated
