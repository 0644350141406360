"""ISO 20022 documents of settlement: the RTGS instructions of a window (pacs.009.001.08),
the RTGS's answer to them (pacs.002.001.10), and the pieces of statements and intraday
reports (camt.053.001.08, camt.052.001.08) that `statements.py` streams.

Documents are written as text, element by element in the order the schemas require, so a
statement of millions of entries never exists as a tree; tests validate every kind with
lxml against the ISO 20022 schemas. The one document read, pacs.002, is parsed with a
parser that resolves no entity, loads no DTD and reaches no network, and is validated
against its schema (`xsd/pacs.002.001.10.xsd`) before any field is read.

Amounts are integer minor units written in the currency's units with its ISO 4217
exponent (switch/admin/money.py): integer arithmetic only, never a float. It must never
do I/O beyond reading its own schema file.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from lxml import etree

from switch.core.money import exponent
from switch.settlement import limits
from switch.settlement.config import SettlementConfig

NS_PER_S = 1_000_000_000
PACS_009 = "pacs.009.001.08"
PACS_002 = "pacs.002.001.10"
CAMT_053 = "camt.053.001.08"
CAMT_052 = "camt.052.001.08"
XSD_DIR = Path(__file__).resolve().parent / "xsd"
MESSAGE_PREFIX = "PONTE-W"  # the instruction message of window N is PONTE-W<N>

# RTGS statuses (ExternalPaymentTransactionStatus1Code / ...GroupStatus1Code).
SETTLED_STATUSES = frozenset({"ACSC"})
REJECTED_STATUSES = frozenset({"RJCT"})

_XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
# Characters XML 1.0 cannot carry at all (C0 controls but tab, CR, LF; surrogates; U+FFFE/F).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_XML_SPECIAL = re.compile("[&<>\"']")


class AmountTooLarge(ValueError):
    """An amount ISO 20022 cannot carry (more than 18 digits)."""


def xml_text(value: str) -> str:
    """`value` as XML character data: escaped, with characters XML cannot carry replaced by
    U+FFFD (references arrive from participants as any text)."""
    if _XML_INVALID.search(value):
        value = _XML_INVALID.sub("\ufffd", value)
    if _XML_SPECIAL.search(value):
        value = _XML_SPECIAL.sub(lambda m: _XML_ESCAPES[m.group(0)], value)
    return value


def iso_amount(amount_minor: int, currency: str) -> str:
    """12345, "BRL" -> "123.45" (non-negative; ISO 20022's 18-digit bound checked)."""
    assert amount_minor >= 0
    if amount_minor >= 10 ** limits.ISO_AMOUNT_DIGITS_MAX:
        raise AmountTooLarge(f"{amount_minor} minor units of {currency}")
    digits = exponent(currency)
    if not digits:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10 ** digits)
    return f"{whole}.{fraction:0{digits}d}"


def iso_datetime(at_ns: int) -> str:
    """UTC ns -> ISODateTime with milliseconds, "2023-11-14T22:13:20.123Z"."""
    moment = datetime.fromtimestamp(at_ns // NS_PER_S, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at_ns // 1_000_000 % 1000:03d}Z"


def iso_date(at_ns: int) -> str:
    return datetime.fromtimestamp(at_ns // NS_PER_S, tz=timezone.utc).strftime("%Y-%m-%d")


def instruction_message_id(window_id: int) -> str:
    return f"{MESSAGE_PREFIX}{window_id}"


def instruction_id(window_id: int, participant_id: int, pays: bool) -> str:
    """One instruction of a window: W<window>-P<participant>-D (it pays in) or -C (paid)."""
    return f"W{window_id}-P{participant_id}-{'D' if pays else 'C'}"


# -- pacs.009: the RTGS instructions of a window ------------------------------------------


def _participant_agent(config: SettlementConfig, participant_id: int, name: str) -> str:
    bic = config.participant_bics.get(str(participant_id), "")
    return ("<FinInstnId>" + (f"<BICFI>{bic}</BICFI>" if bic else "")
            + f"<ClrSysMmbId><ClrSysId><Prtry>{xml_text(config.clearing_system)}</Prtry>"
            f"</ClrSysId><MmbId>{participant_id}</MmbId></ClrSysMmbId>"
            f"<Nm>{xml_text(name[:140])}</Nm></FinInstnId>")


def _settlement_agent(config: SettlementConfig) -> str:
    return (f"<FinInstnId><BICFI>{config.settlement_agent_bic}</BICFI>"
            f"<Nm>{xml_text(config.settlement_agent_name)}</Nm></FinInstnId>")


def _settlement_account(config: SettlementConfig) -> str:
    return f"<Id><Othr><Id>{xml_text(config.settlement_account_id[:34])}</Id></Othr></Id>"


def instructions_document(*, window_id: int, currency: str, net: dict[int, int],
                          names: dict[int, str], config: SettlementConfig,
                          created_at_ns: int) -> bytes:
    """The pacs.009.001.08 message the RTGS needs to settle a deferred-net window: one
    credit transfer per net debtor (participant -> the scheme's settlement account) and one
    per net creditor (settlement account -> participant), for its whole net position. The
    fees stay on the settlement account (the scheme's). Raises AmountTooLarge."""
    agent = _settlement_agent(config)
    account = _settlement_account(config)
    date = iso_date(created_at_ns)
    transactions = []
    for participant_id in sorted(net):
        position = net[participant_id]
        pays = position < 0
        ident = instruction_id(window_id, participant_id, pays)
        participant = _participant_agent(config, participant_id, names.get(participant_id,
                                                                           str(participant_id)))
        if pays:
            parties = (f"<Dbtr>{participant}</Dbtr><Cdtr>{agent}</Cdtr>"
                       f"<CdtrAcct>{account}</CdtrAcct>")
        else:
            parties = (f"<Dbtr>{agent}</Dbtr><DbtrAcct>{account}</DbtrAcct>"
                       f"<Cdtr>{participant}</Cdtr>")
        transactions.append(
            f"<CdtTrfTxInf><PmtId><InstrId>{ident}</InstrId><EndToEndId>{ident}</EndToEndId>"
            f"<TxId>{ident}</TxId></PmtId>"
            f"<IntrBkSttlmAmt Ccy=\"{currency}\">{iso_amount(abs(position), currency)}"
            f"</IntrBkSttlmAmt><IntrBkSttlmDt>{date}</IntrBkSttlmDt>{parties}"
            f"<RmtInf><Ustrd>Ponte settlement window {window_id} {currency}</Ustrd></RmtInf>"
            f"</CdtTrfTxInf>")
    header = (
        f"<GrpHdr><MsgId>{instruction_message_id(window_id)}</MsgId>"
        f"<CreDtTm>{iso_datetime(created_at_ns)}</CreDtTm><NbOfTxs>{len(transactions)}</NbOfTxs>"
        f"<IntrBkSttlmDt>{date}</IntrBkSttlmDt>"
        f"<SttlmInf><SttlmMtd>CLRG</SttlmMtd><ClrSys><Prtry>{xml_text(config.clearing_system)}"
        f"</Prtry></ClrSys></SttlmInf>"
        f"<InstgAgt>{agent}</InstgAgt>"
        f"<InstdAgt><FinInstnId><BICFI>{config.central_bank_bic}</BICFI></FinInstnId></InstdAgt>"
        f"</GrpHdr>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:'
            f'tech:xsd:{PACS_009}"><FICdtTrf>{header}{"".join(transactions)}</FICdtTrf>'
            f"</Document>\n").encode("utf-8")


# -- pacs.002: the RTGS's answer --------------------------------------------------------------


class DocumentInvalid(ValueError):
    """Not a well-formed, schema-valid document of the expected message."""


class TransactionStatus(NamedTuple):
    instruction_id: str  # OrgnlInstrId, else OrgnlEndToEndId, else OrgnlTxId
    status: str
    reason: str


class RtgsAnswer(NamedTuple):
    """What a pacs.002 says about one instruction message."""

    message_id: str  # the RTGS's own message id (GrpHdr/MsgId): the RTGS reference
    original_message_id: str
    group_status: str  # "" when absent
    group_reason: str
    transactions: tuple[TransactionStatus, ...]


_schemas: dict[str, etree.XMLSchema] = {}


def schema(message: str, directory: Path = XSD_DIR) -> etree.XMLSchema:
    key = f"{directory}/{message}"
    found = _schemas.get(key)
    if found is None:
        found = _schemas[key] = etree.XMLSchema(etree.parse(str(directory / f"{message}.xsd")))
    return found


def _safe_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True)


def parse_document(data: bytes, message: str) -> etree._Element:
    """The root of `data` once it is a schema-valid `message` document, with no DTD."""
    if len(data) > limits.RTGS_DOCUMENT_BYTES_MAX:
        raise DocumentInvalid(f"larger than {limits.RTGS_DOCUMENT_BYTES_MAX} bytes")
    try:
        root = etree.fromstring(data, _safe_parser())
    except etree.XMLSyntaxError as error:
        raise DocumentInvalid(f"not well-formed XML: {error}") from None
    if root.getroottree().docinfo.doctype:
        raise DocumentInvalid("a DOCTYPE is not accepted")
    expected = f"{{urn:iso:std:iso:20022:tech:xsd:{message}}}Document"
    if root.tag != expected:
        raise DocumentInvalid(f"expected a {message} Document, got {str(root.tag)[:100]}")
    validator = schema(message)
    if not validator.validate(root):
        first = validator.error_log.filter_from_errors()[0] if validator.error_log else None
        raise DocumentInvalid(f"not valid against {message}: "
                              f"{first.message[:200] if first is not None else 'invalid'}")
    return root


def _reason(element, ns: dict) -> str:
    parts = []
    for info in element.findall("p:StsRsnInf", ns):
        code = info.findtext("p:Rsn/p:Cd", default="", namespaces=ns) or info.findtext(
            "p:Rsn/p:Prtry", default="", namespaces=ns)
        extra = " ".join(text or "" for text in (t.text for t in info.findall("p:AddtlInf", ns)))
        parts.append(" ".join(part for part in (code, extra) if part))
    return "; ".join(part for part in parts if part)[:140]


def read_pacs002(data: bytes) -> list[RtgsAnswer]:
    """Every original message a pacs.002.001.10 reports on, with its statuses. Raises
    DocumentInvalid for anything that is not a schema-valid pacs.002."""
    root = parse_document(data, PACS_002)
    ns = {"p": f"urn:iso:std:iso:20022:tech:xsd:{PACS_002}"}
    report = root.find("p:FIToFIPmtStsRpt", ns)
    message_id = report.findtext("p:GrpHdr/p:MsgId", namespaces=ns)
    groups: dict[str, list] = {}
    for group in report.findall("p:OrgnlGrpInfAndSts", ns):
        original = group.findtext("p:OrgnlMsgId", namespaces=ns)
        name = group.findtext("p:OrgnlMsgNmId", namespaces=ns)
        if name != PACS_009:
            raise DocumentInvalid(f"reports on a {name[:35]}, not on {PACS_009} instructions")
        groups[original] = [group.findtext("p:GrpSts", default="", namespaces=ns),
                            _reason(group, ns), []]
    for transaction in report.findall("p:TxInfAndSts", ns):
        original_group = transaction.find("p:OrgnlGrpInf", ns)
        if original_group is not None:
            original = original_group.findtext("p:OrgnlMsgId", namespaces=ns)
            if original_group.findtext("p:OrgnlMsgNmId", namespaces=ns) != PACS_009:
                raise DocumentInvalid(f"a transaction reports on something else than {PACS_009}")
        elif len(groups) == 1:
            original = next(iter(groups))
        else:
            raise DocumentInvalid("a transaction status names no original message")
        ident = (transaction.findtext("p:OrgnlInstrId", namespaces=ns)
                 or transaction.findtext("p:OrgnlEndToEndId", namespaces=ns)
                 or transaction.findtext("p:OrgnlTxId", namespaces=ns) or "")
        groups.setdefault(original, ["", "", []])[2].append(TransactionStatus(
            ident, transaction.findtext("p:TxSts", default="", namespaces=ns),
            _reason(transaction, ns)))
    if not groups:
        raise DocumentInvalid("reports on no original message")
    return [RtgsAnswer(message_id=message_id, original_message_id=original,
                       group_status=status, group_reason=reason, transactions=tuple(found))
            for original, (status, reason, found) in groups.items()]


class Verdict(NamedTuple):
    outcome: str  # "settled", "rejected" or "not_final"
    detail: str


def judge(answer: RtgsAnswer, expected_ids: set[str]) -> Verdict:
    """What an RTGS answer means for a window whose instructions are `expected_ids`:
    settled only when every instruction is (the group settled with no transaction
    reporting otherwise, or each instruction settled); rejected when the group or any
    instruction is; otherwise not final yet."""
    group = answer.group_status
    unknown = [t.instruction_id for t in answer.transactions
               if t.instruction_id not in expected_ids]
    if unknown:
        return Verdict("invalid", f"names instructions the window does not have: "
                                  f"{', '.join(unknown[:3])[:100]}")
    rejected = [t for t in answer.transactions if t.status in REJECTED_STATUSES]
    if group in REJECTED_STATUSES or rejected:
        parts = ([f"group {answer.group_reason or group}"] if group in REJECTED_STATUSES else [])
        parts += [f"{t.instruction_id}: {t.reason or t.status}" for t in rejected[:3]]
        return Verdict("rejected", "; ".join(parts)[:140])
    statuses = {t.instruction_id: t.status for t in answer.transactions}
    if group in SETTLED_STATUSES and all(s in SETTLED_STATUSES for s in statuses.values()):
        return Verdict("settled", "")
    if not group and statuses and set(statuses) == expected_ids and all(
            s in SETTLED_STATUSES for s in statuses.values()):
        return Verdict("settled", "")
    waiting = sorted(expected_ids - {i for i, s in statuses.items() if s in SETTLED_STATUSES})
    return Verdict("not_final", f"group {group or '-'}; not settled yet: "
                                f"{', '.join(waiting[:3])}"[:140])


# -- camt.053 / camt.052 pieces ---------------------------------------------------------------

# Statement entries: (bank transaction code, debit?) by what booked them.
BOOKINGS = {
    "PAYMENT": "payment", "RETURN": "return", "FEE": "scheme fee", "DEPOSIT": "funding",
    "WITHDRAWAL": "defunding", "CAP_RAISE": "net debit cap raised",
    "CAP_LOWER": "net debit cap lowered", "SETTLEMENT_CREDIT": "settlement: paid in at the RTGS",
    "SETTLEMENT_DEBIT": "settlement: paid out by the RTGS",
    "SETTLEMENT_DUE": "settlement: debit collected",
}


def statement_head(*, kind: str, message_id: str, created_at_ns: int, window_id: int,
                   from_ns: int, to_ns: int, account_id: int, currency: str,
                   owner_name: str, config: SettlementConfig, opening_minor: int,
                   closing_minor: int, closing_code: str) -> str:
    """Everything of a camt.053 (kind "053") or camt.052 ("052") before its entries."""
    message = CAMT_053 if kind == "053" else CAMT_052
    outer, inner = ("BkToCstmrStmt", "Stmt") if kind == "053" else ("BkToCstmrAcctRpt", "Rpt")

    def balance(code: str, amount_minor: int, at_ns: int) -> str:
        direction = "CRDT" if amount_minor >= 0 else "DBIT"
        return (f"<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp>"
                f"<Amt Ccy=\"{currency}\">{iso_amount(abs(amount_minor), currency)}</Amt>"
                f"<CdtDbtInd>{direction}</CdtDbtInd><Dt><DtTm>{iso_datetime(at_ns)}</DtTm></Dt>"
                f"</Bal>")

    created = iso_datetime(created_at_ns)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Document xmlns="urn:iso:std:iso:20022:'
            f'tech:xsd:{message}"><{outer}><GrpHdr><MsgId>{message_id}</MsgId>'
            f"<CreDtTm>{created}</CreDtTm></GrpHdr><{inner}><Id>{message_id}</Id>"
            f"<ElctrncSeqNb>{window_id}</ElctrncSeqNb><CreDtTm>{created}</CreDtTm>"
            f"<FrToDt><FrDtTm>{iso_datetime(from_ns)}</FrDtTm><ToDtTm>{iso_datetime(to_ns)}"
            f"</ToDtTm></FrToDt><Acct><Id><Othr><Id>{account_id}</Id></Othr></Id>"
            f"<Ccy>{currency}</Ccy><Nm>{xml_text(owner_name[:70])}</Nm>"
            f"<Svcr>{_settlement_agent(config)}</Svcr></Acct>"
            + balance("OPBD", opening_minor, from_ns) + balance(closing_code, closing_minor, to_ns))


def statement_tail(kind: str) -> str:
    outer, inner = ("BkToCstmrStmt", "Stmt") if kind == "053" else ("BkToCstmrAcctRpt", "Rpt")
    return f"</{inner}></{outer}></Document>\n"
