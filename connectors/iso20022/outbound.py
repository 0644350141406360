"""Outbound mapping: core messages -> ISO 20022 XML (head.001 + Document), written from
templates straight to bytes (no tree is built; tests validate every kind against the XSDs).

Ids: every message's BizMsgIdr and MsgId is `common.message_id(kind, ...)` of what it is
about, so the same message sent again (a retry, a redelivery after a restart) carries the
same id and a bank applies it once. A transfer sent to a payee bank carries InstrId = the
payer's participant id and TxId = the transfer id (or, for an id longer than ISO's 35
characters, a deterministic reference the connector remembers), so the bank's answers,
returns and recalls can name it.

It must never decide anything and never write a character XML cannot carry (`xml_text`).
"""

from __future__ import annotations

import functools
import re

from connectors.iso20022 import limits, xml
from connectors.iso20022.codes import NAMES, reason_for
from connectors.iso20022.common import (
    BATCH_NS,
    ENVELOPE_NS,
    HEAD_NS,
    Clock,
    Members,
    amount_text,
    message_id,
    uetr_for,
    xml_text as x,
)
from connectors.iso20022.inbound import OriginalRefs, Passthrough
from switch.core.messages import (
    CreditRequest,
    RequestToPayNotice,
    RequestToPayOutcome,
    TransferOutcome,
)
from switch.core.results import RequestToPayState, Result, TransferState

NS = xml.NS_PREFIX
PACS008 = "pacs.008.001.08"
PACS004 = "pacs.004.001.10"
PACS002 = "pacs.002.001.10"
_UETR = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-4[a-f0-9]{3}-[89ab][a-f0-9]{3}-[a-f0-9]{12}$")
_NOT_PROVIDED = "NOTPROVIDED"
ISO_ID_MAX = 35


def iso_id(transfer_id: str, *scope) -> str:
    """A transfer or request id as an ISO Max35Text id: itself when it fits, else a
    deterministic reference (remembered by the connector)."""
    if len(transfer_id) <= ISO_ID_MAX:
        return transfer_id
    return message_id("long-id", transfer_id, *scope)


@functools.lru_cache(maxsize=limits.MEMBER_TEXTS_MAX)
def _agent(member: str) -> str:
    """A FinInstnId naming `member` (a member id, configured, or a participant id)."""
    return f"<FinInstnId><ClrSysMmbId><MmbId>{x(member, 35)}</MmbId></ClrSysMmbId></FinInstnId>"


@functools.lru_cache(maxsize=limits.MEMBER_TEXTS_MAX)
def _head(switch_member: str, member: str) -> str:
    """An envelope up to its BizMsgIdr, from the switch to `member`."""
    return (f'<?xml version="1.0" encoding="UTF-8"?><Envelope xmlns="{ENVELOPE_NS}">'
            f'<AppHdr xmlns="{HEAD_NS}"><Fr><FIId>{_agent(switch_member)}</FIId></Fr>'
            f"<To><FIId>{_agent(member)}</FIId></To><BizMsgIdr>")


def _reason(code: str, additional: str, tag: str = "StsRsnInf") -> str:
    if not code:
        return ""
    extra = f"<AddtlInf>{x(additional, 105)}</AddtlInf>" if additional else ""
    return f"<{tag}><Rsn><Cd>{x(code, 4)}</Cd></Rsn>{extra}</{tag}>"


def _ponte_reason(result: Result, reason: str) -> str:
    """AddtlInf for a refusal: Ponte's result and the bank's own words, if any."""
    text = f"PONTE {int(result)} {result.name}"
    if reason:
        text += f": {reason}"
    return text


class Written:
    """One outbound message: its id, definition, receiver and bytes (an Envelope)."""

    __slots__ = ("biz_msg_id", "definition", "participant_id", "body")

    def __init__(self, biz_msg_id: str, definition: str, participant_id: int,
                 body: bytes) -> None:
        self.biz_msg_id = biz_msg_id
        self.definition = definition
        self.participant_id = participant_id
        self.body = body


def batch(bodies: list[bytes]) -> bytes:
    """Several envelopes in one body, in order."""
    return b"".join((b'<?xml version="1.0" encoding="UTF-8"?><Batch xmlns="', BATCH_NS.encode(),
                     b'">', *(body[body.index(b"?>") + 2:] for body in bodies), b"</Batch>"))


def possible_duplicate(body: bytes) -> bytes:
    """The envelope marked `AppHdr/PssblDplct` true (head.001: it may have been sent
    before), as the switch re-sends what it owed a bank when it stopped: the bank applies
    it once by its BizMsgIdr either way; the flag tells its operators why they see it
    again. The AppHdr's own CreDt is the first in the envelope (its Rltd's comes after)."""
    if b"<PssblDplct>" in body[:body.index(b"</AppHdr>")]:
        return body
    end = body.index(b"</CreDt>") + len(b"</CreDt>")
    return body[:end] + b"<PssblDplct>true</PssblDplct>" + body[end:]


class Writer:
    """Builds every outbound message. `members` names participants; `clock` formats times."""

    def __init__(self, members: Members) -> None:
        self.members = members
        self.clock = Clock()

    # -- the envelope ---------------------------------------------------------------

    def _envelope(self, participant_id: int, biz_msg_id: str, definition: str, now_ns: int,
                  document: str, related=None) -> Written:
        clock = self.clock
        rel = ""
        if related is not None:
            sender, receiver, rel_id, rel_def, rel_created = related
            rel = (f"<Rltd><Fr><FIId>{_agent(sender)}</FIId></Fr><To><FIId>{_agent(receiver)}"
                   f"</FIId></To><BizMsgIdr>{x(rel_id, 35)}</BizMsgIdr><MsgDefIdr>{rel_def}"
                   f"</MsgDefIdr><CreDt>{x(rel_created)}</CreDt></Rltd>")
        members = self.members
        text = (
            f"{_head(members.switch, members.member(participant_id))}"
            f"{biz_msg_id}</BizMsgIdr><MsgDefIdr>{definition}</MsgDefIdr>"
            f"<CreDt>{clock.datetime(now_ns)}</CreDt>{rel}</AppHdr>"
            f'<Document xmlns="{NS}{definition}">{document}</Document></Envelope>')
        return Written(biz_msg_id, definition, participant_id, text.encode())

    # -- credits: pacs.008 and pacs.004 ------------------------------------------------

    def credit(self, message: CreditRequest, payee_id: int, now_ns: int,
               passthrough: Passthrough | None) -> Written:
        if message.return_of is not None:
            return self._return(message, payee_id, now_ns)
        payer = message.payer_participant_id
        members = self.members
        msg_id = message_id("pacs.008", payer, message.transfer_id)
        refs = passthrough.refs if passthrough is not None else None
        uetr = refs.uetr if refs is not None and _UETR.match(refs.uetr) else uetr_for(
            payer, message.transfer_id)
        end_to_end = message.end_to_end_id or _NOT_PROVIDED
        payer_member = members.member(payer)
        payee_member = members.member(payee_id)
        currency = message.currency
        clock = self.clock
        debtor = creditor = debtor_account = remittance = purpose = ""
        if passthrough is not None:
            debtor = _element(passthrough.debtor)
            debtor_account = _element(passthrough.debtor_account)
            creditor = _element(passthrough.creditor)
            remittance = _element(passthrough.remittance)
            purpose = _element(passthrough.purpose)
        if not remittance and message.purpose:
            remittance = f"<RmtInf><Ustrd>{x(message.purpose, 140)}</Ustrd></RmtInf>"
        proxy = ""
        alias = message.payee_alias
        if alias is not None and alias.alias_type != "ACCOUNT":
            proxy = (f"<Prxy><Tp><Prtry>{alias.alias_type}</Prtry></Tp>"
                     f"<Id>{x(alias.alias_value, 2048)}</Id></Prxy>")
        account = message.payee_account_ref
        document = (
            f"<FIToFICstmrCdtTrf><GrpHdr><MsgId>{msg_id}</MsgId>"
            f"<CreDtTm>{clock.datetime(now_ns)}</CreDtTm><NbOfTxs>1</NbOfTxs>"
            f"<SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf></GrpHdr><CdtTrfTxInf>"
            f"<PmtId><InstrId>{payer}</InstrId><EndToEndId>{x(end_to_end, 35)}</EndToEndId>"
            f"<TxId>{x(iso_id(message.transfer_id, payer))}</TxId><UETR>{uetr}</UETR></PmtId>"
            f'<IntrBkSttlmAmt Ccy="{currency}">{amount_text(message.amount_minor, currency)}'
            f"</IntrBkSttlmAmt><IntrBkSttlmDt>{clock.date(now_ns)}</IntrBkSttlmDt>"
            f"<ChrgBr>SLEV</ChrgBr>"
            f"<InstgAgt>{_agent(payer_member)}</InstgAgt><InstdAgt>{_agent(payee_member)}"
            f"</InstdAgt>{debtor or '<Dbtr><Nm>NOTPROVIDED</Nm></Dbtr>'}{debtor_account}"
            f"<DbtrAgt>{_agent(payer_member)}</DbtrAgt><CdtrAgt>{_agent(payee_member)}"
            f"</CdtrAgt>{creditor or '<Cdtr><Nm>NOTPROVIDED</Nm></Cdtr>'}"
            f"<CdtrAcct><Id><Othr><Id>{x(account or _NOT_PROVIDED, 34)}</Id></Othr></Id>"
            f"{proxy}</CdtrAcct>{purpose}{remittance}</CdtTrfTxInf></FIToFICstmrCdtTrf>")
        return self._envelope(payee_id, msg_id, PACS008, now_ns, document)

    def _return(self, message: CreditRequest, payee_id: int, now_ns: int) -> Written:
        """pacs.004 to the original payer bank (the return's payee)."""
        original = message.return_of
        returner = message.payer_participant_id
        msg_id = message_id("pacs.004", returner, message.transfer_id)
        currency = message.currency
        clock = self.clock
        members = self.members
        reason = message.purpose
        code = reason[:4] if len(reason) >= 4 and reason[:4] in NAMES else "NARR"
        additional = reason[5:] if code != "NARR" else reason
        original_msg = message_id("pacs.008", original.payer_participant_id,
                                  original.transfer_id)
        document = (
            f"<PmtRtr><GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>{clock.datetime(now_ns)}"
            f"</CreDtTm><NbOfTxs>1</NbOfTxs><SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf>"
            f"</GrpHdr><TxInf><RtrId>{x(iso_id(message.transfer_id, returner))}</RtrId>"
            f"<OrgnlGrpInf><OrgnlMsgId>{original_msg}</OrgnlMsgId><OrgnlMsgNmId>{PACS008}"
            f"</OrgnlMsgNmId></OrgnlGrpInf>"
            f"<OrgnlEndToEndId>{x(message.end_to_end_id or _NOT_PROVIDED, 35)}</OrgnlEndToEndId>"
            f"<OrgnlTxId>{x(iso_id(original.transfer_id, original.payer_participant_id))}"
            f"</OrgnlTxId>"
            f'<RtrdIntrBkSttlmAmt Ccy="{currency}">'
            f"{amount_text(message.amount_minor, currency)}</RtrdIntrBkSttlmAmt>"
            f"<IntrBkSttlmDt>{clock.date(now_ns)}</IntrBkSttlmDt><ChrgBr>SLEV</ChrgBr>"
            f"<InstgAgt>{_agent(members.member(returner))}</InstgAgt>"
            f"<InstdAgt>{_agent(members.member(payee_id))}</InstdAgt>"
            f"{_reason(code, additional, 'RtrRsnInf')}</TxInf></PmtRtr>")
        return self._envelope(payee_id, msg_id, PACS004, now_ns, document)

    # -- status: pacs.002 ----------------------------------------------------------------

    def status(self, participant_id: int, biz_msg_id: str, refs: OriginalRefs, status: str,
               code: str, additional: str, now_ns: int, related=None) -> Written:
        clock = self.clock
        group = (f"<OrgnlGrpInf><OrgnlMsgId>{x(refs.msg_id or _NOT_PROVIDED, 35)}"
                 f"</OrgnlMsgId><OrgnlMsgNmId>{x(refs.msg_name or PACS008, 35)}</OrgnlMsgNmId>"
                 + (f"<OrgnlCreDtTm>{x(refs.created)}</OrgnlCreDtTm>" if refs.created else "")
                 + "</OrgnlGrpInf>")
        ids = ""
        if refs.instr_id:
            ids += f"<OrgnlInstrId>{x(refs.instr_id, 35)}</OrgnlInstrId>"
        if refs.end_to_end_id:
            ids += f"<OrgnlEndToEndId>{x(refs.end_to_end_id, 35)}</OrgnlEndToEndId>"
        if refs.tx_id:
            ids += f"<OrgnlTxId>{x(refs.tx_id, 35)}</OrgnlTxId>"
        if refs.uetr and _UETR.match(refs.uetr):
            ids += f"<OrgnlUETR>{refs.uetr}</OrgnlUETR>"
        document = (
            f"<FIToFIPmtStsRpt><GrpHdr><MsgId>{biz_msg_id}</MsgId><CreDtTm>"
            f"{clock.datetime(now_ns)}</CreDtTm></GrpHdr><TxInfAndSts>{group}{ids}"
            f"<TxSts>{status}</TxSts>{_reason(code, additional)}</TxInfAndSts>"
            f"</FIToFIPmtStsRpt>")
        return self._envelope(participant_id, biz_msg_id, PACS002, now_ns, document, related)

    def outcome(self, participant_id: int, outcome: TransferOutcome, now_ns: int,
                passthrough: Passthrough | None, credit_kind: str, query: bool = False
                ) -> Written:
        """A transfer's state as a pacs.002: to its payer (quoting the payer bank's own
        message), to its payee (quoting the credit the switch sent), or in answer to a
        status request (`query`)."""
        payer = outcome.payer_participant_id
        transfer_id = outcome.transfer_id
        status, code, additional = transfer_status(outcome)
        if participant_id == payer and not query:
            refs = passthrough.refs if passthrough is not None else OriginalRefs(
                iso_id(transfer_id, payer), PACS004 if credit_kind == "pacs.004" else PACS008,
                tx_id=iso_id(transfer_id, payer))
            related = passthrough.related if passthrough is not None else None
            biz = message_id("pacs.002", "payer", payer, transfer_id, int(outcome.state))
            return self.status(participant_id, biz, refs, status, code, additional, now_ns,
                               related)
        refs = self.sent_refs(payer, transfer_id, credit_kind)
        biz = message_id("pacs.002", "payee" if not query else now_ns, payer, transfer_id,
                         int(outcome.state))
        return self.status(participant_id, biz, refs, status, code, additional, now_ns)

    def sent_refs(self, payer: int, transfer_id: str, credit_kind: str) -> OriginalRefs:
        """How the switch named a credit it sent (pacs.008 or pacs.004)."""
        if credit_kind == "pacs.004":
            return OriginalRefs(message_id("pacs.004", payer, transfer_id), PACS004,
                                tx_id=iso_id(transfer_id, payer))
        return OriginalRefs(message_id("pacs.008", payer, transfer_id), PACS008,
                            instr_id=str(payer), tx_id=iso_id(transfer_id, payer),
                            uetr=uetr_for(payer, transfer_id))

    def refusal(self, participant_id: int, refs: OriginalRefs, result: Result, now_ns: int,
                related=None, reason: str = "") -> Written:
        """pacs.002 RJCT for a transfer or return the switch did not take."""
        biz = message_id("pacs.002", "refused", participant_id, refs.msg_id, refs.tx_id,
                         int(result))
        return self.status(participant_id, biz, refs, "RJCT", reason_for(result, reason),
                           _ponte_reason(result, reason), now_ns, related)

    # -- admi.002 ----------------------------------------------------------------------

    def reject(self, participant_id: int, reference: str, code: str, detail: str,
               location: str, now_ns: int, biz_msg_id: str) -> Written:
        clock = self.clock
        where = f"<ErrLctn>{x(location, 140)}</ErrLctn>" if location else ""
        document = (
            f"<admi.002.001.01><RltdRef><Ref>{x(reference or 'NONREF', 35)}</Ref></RltdRef>"
            f"<Rsn><RjctgPtyRsn>{x(code, 35)}</RjctgPtyRsn><RjctnDtTm>"
            f"{clock.datetime(now_ns)}</RjctnDtTm>{where}<RsnDesc>{x(detail, 350)}</RsnDesc>"
            f"</Rsn></admi.002.001.01>")
        return self._envelope(participant_id, biz_msg_id, "admi.002.001.01", now_ns, document)

    # -- recalls: camt.056 forwarded, camt.029 forwarded back -------------------------------

    def recall(self, payee_id: int, payer: int, transfer_id: str, case_id: str,
               amount_minor: int, currency: str, reason_code: str, additional: str,
               now_ns: int) -> Written:
        clock = self.clock
        members = self.members
        biz = message_id("camt.056", payer, transfer_id, case_id)
        refs = self.sent_refs(payer, transfer_id, "pacs.008")
        extra = f"<AddtlInf>{x(additional, 105)}</AddtlInf>" if additional else ""
        document = (
            f"<FIToFIPmtCxlReq><Assgnmt><Id>{biz}</Id><Assgnr><Agt>{_agent(members.switch)}"
            f"</Agt></Assgnr><Assgne><Agt>{_agent(members.member(payee_id))}</Agt></Assgne>"
            f"<CreDtTm>{clock.datetime(now_ns)}</CreDtTm></Assgnmt>"
            f"<Case><Id>{biz}</Id><Cretr><Agt>{_agent(members.member(payer))}</Agt></Cretr>"
            f"</Case><Undrlyg><TxInf><CxlId>{biz}</CxlId><OrgnlGrpInf><OrgnlMsgId>"
            f"{refs.msg_id}</OrgnlMsgId><OrgnlMsgNmId>{PACS008}</OrgnlMsgNmId></OrgnlGrpInf>"
            f"<OrgnlInstrId>{payer}</OrgnlInstrId><OrgnlTxId>{x(refs.tx_id)}</OrgnlTxId>"
            f"<OrgnlUETR>{refs.uetr}</OrgnlUETR>"
            f'<OrgnlIntrBkSttlmAmt Ccy="{currency}">{amount_text(amount_minor, currency)}'
            f"</OrgnlIntrBkSttlmAmt><CxlRsnInf><Rsn><Cd>{x(reason_code, 4)}</Cd></Rsn>{extra}"
            f"</CxlRsnInf></TxInf></Undrlyg></FIToFIPmtCxlReq>")
        return self._envelope(payee_id, biz, "camt.056.001.08", now_ns, document)

    def recall_answer(self, requester_id: int, case_id: str, refs: OriginalRefs,
                      confirmation: str, status: str, reason_code: str, additional: str,
                      now_ns: int, answer_key: str) -> Written:
        """camt.029 to the bank that asked for the recall (quoting its own camt.056 case
        and the pacs.008 it had sent)."""
        clock = self.clock
        members = self.members
        biz = message_id("camt.029", requester_id, case_id, answer_key)
        conf = confirmation or ("CNCL" if status == "ACCR" else "RJCR")
        tx_status = status or ("ACCR" if conf == "CNCL" else "RJCR")
        ids = ""
        if refs.instr_id:
            ids += f"<OrgnlInstrId>{x(refs.instr_id, 35)}</OrgnlInstrId>"
        if refs.end_to_end_id:
            ids += f"<OrgnlEndToEndId>{x(refs.end_to_end_id, 35)}</OrgnlEndToEndId>"
        if refs.tx_id:
            ids += f"<OrgnlTxId>{x(refs.tx_id, 35)}</OrgnlTxId>"
        if refs.uetr and _UETR.match(refs.uetr):
            ids += f"<OrgnlUETR>{refs.uetr}</OrgnlUETR>"
        document = (
            f"<RsltnOfInvstgtn><Assgnmt><Id>{biz}</Id><Assgnr><Agt>{_agent(members.switch)}"
            f"</Agt></Assgnr><Assgne><Agt>{_agent(members.member(requester_id))}</Agt>"
            f"</Assgne><CreDtTm>{clock.datetime(now_ns)}</CreDtTm></Assgnmt>"
            f"<RslvdCase><Id>{x(case_id, 35)}</Id><Cretr><Agt>"
            f"{_agent(members.member(requester_id))}</Agt></Cretr></RslvdCase>"
            f"<Sts><Conf>{x(conf, 4)}</Conf></Sts><CxlDtls><TxInfAndSts>"
            f"<OrgnlGrpInf><OrgnlMsgId>{x(refs.msg_id or _NOT_PROVIDED, 35)}</OrgnlMsgId>"
            f"<OrgnlMsgNmId>{PACS008}</OrgnlMsgNmId></OrgnlGrpInf>{ids}"
            f"<TxCxlSts>{x(tx_status, 4)}</TxCxlSts>"
            f"{_reason(reason_code, additional, 'CxlStsRsnInf')}</TxInfAndSts></CxlDtls>"
            f"</RsltnOfInvstgtn>")
        return self._envelope(requester_id, biz, "camt.029.001.09", now_ns, document)

    # -- request-to-pay: pain.013 out, pain.014 out --------------------------------------

    def request_to_pay(self, payer_id: int, notice: RequestToPayNotice, now_ns: int
                       ) -> Written:
        clock = self.clock
        members = self.members
        payee = notice.payee_participant_id
        biz = message_id("pain.013", payee, notice.request_id)
        currency = notice.currency
        expiry = clock.datetime(notice.expires_at_ns)
        remittance = (f"<RmtInf><Ustrd>{x(notice.purpose, 140)}</Ustrd></RmtInf>"
                      if notice.purpose else "")
        document = (
            f"<CdtrPmtActvtnReq><GrpHdr><MsgId>{biz}</MsgId><CreDtTm>{clock.datetime(now_ns)}"
            f"</CreDtTm><NbOfTxs>1</NbOfTxs><InitgPty><Nm>{x(members.member(payee), 140)}</Nm>"
            f"</InitgPty></GrpHdr><PmtInf><PmtInfId>{x(iso_id(notice.request_id, payee))}"
            f"</PmtInfId><PmtMtd>TRF</PmtMtd><ReqdExctnDt><Dt>{clock.date(now_ns)}</Dt>"
            f"</ReqdExctnDt><XpryDt><DtTm>{expiry}</DtTm></XpryDt>"
            f"<Dbtr><Nm>NOTPROVIDED</Nm></Dbtr>"
            f"<DbtrAcct><Id><Othr><Id>{x(notice.payer_account_ref or _NOT_PROVIDED, 34)}</Id>"
            f"</Othr></Id></DbtrAcct><DbtrAgt>{_agent(members.member(payer_id))}</DbtrAgt>"
            f"<CdtTrfTx><PmtId><InstrId>{payee}</InstrId><EndToEndId>"
            f"{x(notice.end_to_end_id or _NOT_PROVIDED, 35)}</EndToEndId></PmtId>"
            f'<Amt><InstdAmt Ccy="{currency}">{amount_text(notice.amount_minor, currency)}'
            f"</InstdAmt></Amt><ChrgBr>SLEV</ChrgBr><CdtrAgt>{_agent(members.member(payee))}"
            f"</CdtrAgt><Cdtr><Nm>NOTPROVIDED</Nm></Cdtr>{remittance}</CdtTrfTx></PmtInf>"
            f"</CdtrPmtActvtnReq>")
        return self._envelope(payer_id, biz, "pain.013.001.07", now_ns, document)

    def request_to_pay_status(self, payee_id: int, outcome: RequestToPayOutcome,
                              passthrough: Passthrough | None, now_ns: int) -> Written:
        clock = self.clock
        members = self.members
        status, code, additional = _request_status(outcome)
        biz = message_id("pain.014", payee_id, outcome.request_id, int(outcome.state),
                         outcome.transfer_id)
        refs = passthrough.refs if passthrough is not None else OriginalRefs(
            iso_id(outcome.request_id, payee_id), "pain.013.001.07",
            tx_id=iso_id(outcome.request_id, payee_id))
        ids = ""
        if refs.instr_id:
            ids += f"<OrgnlInstrId>{x(refs.instr_id, 35)}</OrgnlInstrId>"
        if refs.end_to_end_id:
            ids += f"<OrgnlEndToEndId>{x(refs.end_to_end_id, 35)}</OrgnlEndToEndId>"
        if refs.uetr and _UETR.match(refs.uetr):
            ids += f"<OrgnlUETR>{refs.uetr}</OrgnlUETR>"
        reference = (f"<AcctSvcrRef>{x(outcome.transfer_id, 35)}</AcctSvcrRef>"
                     if outcome.transfer_id else "")
        document = (
            f"<CdtrPmtActvtnReqStsRpt><GrpHdr><MsgId>{biz}</MsgId><CreDtTm>"
            f"{clock.datetime(now_ns)}</CreDtTm><InitgPty><Nm>{x(members.switch, 140)}</Nm>"
            f"</InitgPty></GrpHdr><OrgnlGrpInfAndSts><OrgnlMsgId>"
            f"{x(refs.msg_id or _NOT_PROVIDED, 35)}</OrgnlMsgId><OrgnlMsgNmId>pain.013.001.07"
            f"</OrgnlMsgNmId></OrgnlGrpInfAndSts><OrgnlPmtInfAndSts><OrgnlPmtInfId>"
            f"{x(refs.tx_id or iso_id(outcome.request_id, payee_id), 35)}</OrgnlPmtInfId>"
            f"<TxInfAndSts>{ids}<TxSts>{status}</TxSts>{_reason(code, additional)}"
            f"{reference}</TxInfAndSts></OrgnlPmtInfAndSts></CdtrPmtActvtnReqStsRpt>")
        related = passthrough.related if passthrough is not None else None
        return self._envelope(payee_id, biz, "pain.014.001.07", now_ns, document, related)

    # -- notifications: camt.054 per entry, camt.052 intraday report --------------------

    def _entry(self, participant_id: int, outcome: TransferOutcome, now_ns: int) -> str:
        credit = outcome.payee_participant_id == participant_id
        currency = outcome.currency
        amount = outcome.amount_minor + (0 if credit else outcome.fee_minor)
        payer = outcome.payer_participant_id
        booked = self.clock.datetime(outcome.decided_at_ns or now_ns)
        return (
            f'<Ntry><Amt Ccy="{currency}">{amount_text(amount, currency)}</Amt>'
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>"
            f"<BookgDt><DtTm>{booked}</DtTm></BookgDt><BkTxCd><Prtry><Cd>PONTE</Cd></Prtry>"
            f"</BkTxCd><NtryDtls><TxDtls><Refs><InstrId>{payer}</InstrId>"
            f"<TxId>{x(iso_id(outcome.transfer_id, payer))}</TxId></Refs>"
            f'<Amt Ccy="{currency}">{amount_text(outcome.amount_minor, currency)}</Amt>'
            f"<CdtDbtInd>{'CRDT' if credit else 'DBIT'}</CdtDbtInd></TxDtls></NtryDtls></Ntry>")

    def _account(self, participant_id: int, currency: str) -> str:
        return (f"<Acct><Id><Othr><Id>{x(self.members.member(participant_id), 24)}-{currency}"
                f"</Id></Othr></Id><Ccy>{currency}</Ccy></Acct>")

    def notification(self, participant_id: int, outcome: TransferOutcome, now_ns: int
                     ) -> Written:
        clock = self.clock
        biz = message_id("camt.054", participant_id, outcome.payer_participant_id,
                         outcome.transfer_id)
        document = (
            f"<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>{biz}</MsgId><CreDtTm>"
            f"{clock.datetime(now_ns)}</CreDtTm></GrpHdr><Ntfctn><Id>{biz}</Id>"
            f"<CreDtTm>{clock.datetime(now_ns)}</CreDtTm>"
            f"{self._account(participant_id, outcome.currency)}"
            f"{self._entry(participant_id, outcome, now_ns)}</Ntfctn></BkToCstmrDbtCdtNtfctn>")
        return self._envelope(participant_id, biz, "camt.054.001.08", now_ns, document)

    def report(self, participant_id: int, currency: str, outcomes: list[TransferOutcome],
               sequence: int, now_ns: int) -> Written:
        clock = self.clock
        biz = message_id("camt.052", participant_id, currency, sequence)
        entries = "".join(self._entry(participant_id, outcome, now_ns) for outcome in outcomes)
        document = (
            f"<BkToCstmrAcctRpt><GrpHdr><MsgId>{biz}</MsgId><CreDtTm>{clock.datetime(now_ns)}"
            f"</CreDtTm></GrpHdr><Rpt><Id>{biz}</Id><ElctrncSeqNb>{sequence}</ElctrncSeqNb>"
            f"<CreDtTm>{clock.datetime(now_ns)}</CreDtTm>"
            f"{self._account(participant_id, currency)}{entries}</Rpt></BkToCstmrAcctRpt>")
        return self._envelope(participant_id, biz, "camt.052.001.08", now_ns, document)


def transfer_status(outcome: TransferOutcome) -> tuple[str, str, str]:
    """TxSts, reason code and AddtlInf of a transfer's state."""
    state = outcome.state
    if state is TransferState.COMMITTED:
        return "ACSC", "", ""
    if state is TransferState.REJECTED or state is TransferState.EXPIRED:
        return ("RJCT", reason_for(outcome.result, outcome.reason),
                _ponte_reason(outcome.result, outcome.reason))
    return "PDNG", "", ""


def _request_status(outcome: RequestToPayOutcome) -> tuple[str, str, str]:
    state = outcome.state
    if state is RequestToPayState.OPEN:
        return "PDNG", "", ""
    if state is RequestToPayState.APPROVED:
        return "ACCP", "", ""
    result = outcome.result
    if state is RequestToPayState.EXPIRED and result is Result.OK:
        result = Result.REQUEST_EXPIRED
    if state is RequestToPayState.DECLINED and result is Result.OK:
        result = Result.PAYER_REJECTED_REQUEST
    return "RJCT", reason_for(result), _ponte_reason(result, "")


def _element(element: bytes) -> str:
    """An element forwarded from the payer bank's pacs.008 (the same definition), with its
    own namespace declarations, so whatever prefixes the bank used stay bound."""
    return element.decode() if element else ""
