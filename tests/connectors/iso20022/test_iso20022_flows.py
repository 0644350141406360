"""The ISO 20022 connector against a real switch: full payments between two ISO banks,
rejection, timeout, return, status request, recall accepted and refused, request-to-pay,
and payments across dialects (ISO bank <-> HTTP participant). Every message the switch
sends is validated against the XSDs by the receiving bank (`Iso.check_valid`)."""

from __future__ import annotations

import time

import pytest

from connectors.iso20022.bank import agent, envelope, new_id, now_text
from switch.core.messages import Party, TransferRequest
from switch.core.results import Result, TransferState

from iso_helpers import (
    ALIAS_A,
    ALIAS_B,
    ALIAS_C,
    CURRENCY,
    FUNDING_MINOR,
    MEMBER_A,
    MEMBER_B,
    SWITCH,
    eventually,
    sample,
)

P8 = "FIToFICstmrCdtTrf/CdtTrfTxInf/"
P2 = "FIToFIPmtStsRpt/TxInfAndSts/"


async def pay(iso, tx_id: str, amount: str = "25.00", proxy: str = ALIAS_B,
              creditor_agent: str = MEMBER_B) -> bytes:
    body = sample("pacs.008-proxy.xml", TX=tx_id, AMOUNT=amount, PROXY=proxy,
                  CDTR_AGT=creditor_agent)
    status, answer = await iso.a.post(body)
    assert status == 202, answer
    return body


def statuses(bank, definition="pacs.002.001.10"):
    return [(item.find(P2 + "OrgnlTxId"), item.find(P2 + "TxSts"),
             item.find(P2 + "StsRsnInf/Rsn/Cd")) for item in bank.of(definition)]


async def test_full_payment_between_two_iso_banks(iso):
    await pay(iso, "TX-1", "25.00")
    await eventually(lambda: iso.a.of("pacs.002.001.10") and len(iso.b.of("pacs.002.001.10")))
    (credit,) = iso.b.of("pacs.008.001.08")
    assert credit.find(P8 + "IntrBkSttlmAmt") == "25.00"
    assert credit.find(P8 + "PmtId/InstrId") == "1"
    assert credit.find(P8 + "PmtId/TxId") == "TX-1"
    assert credit.find(P8 + "PmtId/EndToEndId") == "E2E-TX-1"
    assert credit.find(P8 + "CdtrAcct/Id/Othr/Id") == "ACC-B-1"
    # The payer bank's parties and remittance reach the payee bank unchanged.
    assert credit.find(P8 + "Dbtr/Nm") == "Ana Costa & Filhos"
    assert credit.find(P8 + "Dbtr/PstlAdr/TwnNm") == "Sao Paulo"
    assert credit.find(P8 + "RmtInf/Ustrd") == "Invoice 2024-17"
    assert credit.find(P8 + "InstgAgt/FinInstnId/ClrSysMmbId/MmbId") == MEMBER_A
    (final,) = iso.a.of("pacs.002.001.10")
    assert final.find(P2 + "TxSts") == "ACSC"
    assert final.find(P2 + "OrgnlTxId") == "TX-1"
    assert final.find(P2 + "OrgnlGrpInf/OrgnlMsgNmId") == "pacs.008.001.08"
    # The answer's AppHdr relates it to the payer bank's message.
    assert final.root[0].findtext(
        "{urn:iso:std:iso:20022:tech:xsd:head.001.001.02}Rltd/"
        "{urn:iso:std:iso:20022:tech:xsd:head.001.001.02}MsgDefIdr") == "pacs.008.001.08"
    await eventually(lambda: any(s[1] == "ACSC" for s in statuses(iso.b)))
    (notice,) = iso.a.of("camt.054.001.08")  # bank A asked for debit notifications
    assert notice.find("BkToCstmrDbtCdtNtfctn/Ntfctn/Ntry/CdtDbtInd") == "DBIT"
    assert iso.position(1)["debits_posted"] == 2_500
    assert iso.position(2)["credits_posted"] == FUNDING_MINOR + 2_500
    iso.check_valid()


PERSON_ID = "52998224725"  # a national ID (Brazilian CPF form)


async def test_a_persons_identification_is_never_forwarded(iso):
    # The payer bank names its customer, the creditor and the invoicer with their national
    # IDs (PrvtId) and the debtor account by a national-ID proxy: the payee bank gets the
    # names, not the IDs (Ponte never forwards or stores a raw national ID); an
    # organisation's id (OrgId) would still travel.
    person = (f"<p:Id><p:PrvtId><p:Othr><p:Id>{PERSON_ID}</p:Id><p:SchmeNm><p:Cd>NIDN"
              f"</p:Cd></p:SchmeNm></p:Othr></p:PrvtId></p:Id>")
    body = sample("pacs.008-proxy.xml", TX="TX-PERSON", AMOUNT="2.00", PROXY=ALIAS_B,
                  CDTR_AGT=MEMBER_B)
    start = body.index(b"<p:Id><p:OrgId>")
    body = body[:start] + person.encode() + body[body.index(b"</p:OrgId></p:Id>") + 17:]
    body = body.replace(b"<p:Cdtr><p:Nm>Maria Silva</p:Nm></p:Cdtr>",
                        f"<p:Cdtr><p:Nm>Maria Silva</p:Nm>{person}</p:Cdtr>".encode())
    body = body.replace(b"<p:Tp><p:Cd>CACC</p:Cd></p:Tp></p:DbtrAcct>",
                        f"<p:Tp><p:Cd>CACC</p:Cd></p:Tp><p:Prxy><p:Tp><p:Cd>NIDN</p:Cd>"
                        f"</p:Tp><p:Id>{PERSON_ID}</p:Id></p:Prxy></p:DbtrAcct>".encode())
    body = body.replace(b"<p:Ustrd>Invoice 2024-17</p:Ustrd>",
                        f"<p:Ustrd>Invoice 2024-17</p:Ustrd><p:Strd><p:Invcr><p:Nm>Ana Costa"
                        f"</p:Nm>{person}</p:Invcr></p:Strd>".encode())
    assert body.count(PERSON_ID.encode()) == 4
    status, answer = await iso.a.post(body)
    assert status == 202, answer
    await eventually(lambda: iso.b.of("pacs.008.001.08"))
    (credit,) = iso.b.of("pacs.008.001.08")
    assert PERSON_ID.encode() not in credit.body
    assert credit.find(P8 + "Dbtr/Nm") == "Ana Costa & Filhos"
    assert credit.find(P8 + "Cdtr/Nm") == "Maria Silva"
    assert credit.find(P8 + "DbtrAcct/Id/Othr/Id") == "ACC-A-1"
    assert credit.find(P8 + "RmtInf/Strd/Invcr/Nm") == "Ana Costa"
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    assert statuses(iso.a) == [("TX-PERSON", "ACSC", None)]
    # Nor is it in the connector's store.
    with open(iso.connector.state._file.path, "rb") as file:
        assert PERSON_ID.encode() not in file.read()
    iso.check_valid()


async def test_payee_bank_rejection_carries_its_reason_to_the_payer_bank(iso):
    iso.b.answer, iso.b.reason = "RJCT", "AC04"
    await pay(iso, "TX-REJ")
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    assert statuses(iso.a) == [("TX-REJ", "RJCT", "AC04")]
    assert iso.position(1)["debits_posted"] == 0
    assert iso.position(1)["debits_pending"] == 0
    iso.check_valid()


@pytest.mark.parametrize("iso", [{"payee_timeout_ms": 300}], indirect=True)
async def test_payee_bank_that_never_answers_times_out(iso):
    iso.b.answer = None
    await pay(iso, "TX-LATE")
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    ((tx_id, status, reason),) = statuses(iso.a)
    assert (tx_id, status, reason) == ("TX-LATE", "RJCT", "AB05")
    assert iso.position(1)["debits_pending"] == 0
    # The payee bank hears of it too (the credit it was sent is void).
    await eventually(lambda: iso.b.of("pacs.002.001.10"))
    assert statuses(iso.b)[0][1] == "RJCT"
    iso.check_valid()


def pacs004(sender: str, original_msg: str, original_tx: str, return_id: str,
            amount: str, reason: str = "AC04") -> bytes:
    document = (
        f"<PmtRtr><GrpHdr><MsgId>{new_id('R')}</MsgId><CreDtTm>{now_text()}</CreDtTm>"
        f"<NbOfTxs>1</NbOfTxs><SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf></GrpHdr>"
        f"<TxInf><RtrId>{return_id}</RtrId><OrgnlGrpInf><OrgnlMsgId>{original_msg}</OrgnlMsgId>"
        f"<OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId></OrgnlGrpInf>"
        f"<OrgnlInstrId>1</OrgnlInstrId><OrgnlTxId>{original_tx}</OrgnlTxId>"
        f'<RtrdIntrBkSttlmAmt Ccy="BRL">{amount}</RtrdIntrBkSttlmAmt><ChrgBr>SLEV</ChrgBr>'
        f"<InstgAgt>{agent(sender)}</InstgAgt><InstdAgt>{agent(SWITCH)}</InstdAgt>"
        f"<RtrRsnInf><Rsn><Cd>{reason}</Cd></Rsn></RtrRsnInf></TxInf></PmtRtr>")
    return envelope(sender, SWITCH, new_id("B"), "pacs.004.001.10", document)


async def settled(iso, tx_id: str, amount: str = "25.00"):
    await pay(iso, tx_id, amount)
    await eventually(lambda: any(s[0] == tx_id and s[1] == "ACSC" for s in statuses(iso.b)))
    credit = [item for item in iso.b.of("pacs.008.001.08")
              if item.find(P8 + "PmtId/TxId") == tx_id][0]
    return credit.find("FIToFICstmrCdtTrf/GrpHdr/MsgId")


async def test_return_is_linked_to_the_original_and_capped_by_it(iso):
    original_msg = await settled(iso, "TX-RET", "25.00")
    status, answer = await iso.b.post(pacs004(MEMBER_B, original_msg, "TX-RET", "RT-1", "10.00"))
    assert status == 202, answer
    await eventually(lambda: iso.a.of("pacs.004.001.10"))
    (returned,) = iso.a.of("pacs.004.001.10")
    assert returned.find("PmtRtr/TxInf/OrgnlTxId") == "TX-RET"
    assert returned.find("PmtRtr/TxInf/RtrdIntrBkSttlmAmt") == "10.00"
    assert returned.find("PmtRtr/TxInf/RtrRsnInf/Rsn/Cd") == "AC04"
    await eventually(lambda: any(s[0] == "RT-1" for s in statuses(iso.b)))
    assert [s for s in statuses(iso.b) if s[0] == "RT-1"] == [("RT-1", "ACSC", None)]
    assert iso.position(2)["debits_posted"] == 1_000
    # A second return over what is left of the original is refused (AM09), nothing moves.
    status, _ = await iso.b.post(pacs004(MEMBER_B, original_msg, "TX-RET", "RT-2", "20.00"))
    assert status == 202
    await eventually(lambda: any(s[0] == "RT-2" for s in statuses(iso.b)))
    assert [s for s in statuses(iso.b) if s[0] == "RT-2"] == [("RT-2", "RJCT", "AM09")]
    assert iso.position(2)["debits_posted"] == 1_000
    iso.check_valid()


async def test_status_request_is_answered_with_a_pacs002(iso):
    await settled(iso, "TX-ASK")
    seen = len(iso.a.of("pacs.002.001.10"))
    status, answer = await iso.a.post(sample("pacs.028.xml", TX="TX-ASK", ORIGINAL="M-TX-ASK"))
    assert status == 202, answer
    await eventually(lambda: len(iso.a.of("pacs.002.001.10")) > seen)
    answer = iso.a.of("pacs.002.001.10")[-1]
    assert (answer.find(P2 + "OrgnlTxId"), answer.find(P2 + "TxSts")) == ("TX-ASK", "ACSC")
    assert answer.find(P2 + "OrgnlGrpInf/OrgnlMsgId") == "M-TX-ASK"
    # A transfer it never sent: RJCT NOOR, still a pacs.002.
    await iso.a.post(sample("pacs.028.xml", TX="TX-NEVER", ORIGINAL="M-NEVER"))
    await eventually(lambda: len(iso.a.of("pacs.002.001.10")) > seen + 1)
    last = iso.a.of("pacs.002.001.10")[-1]
    assert (last.find(P2 + "TxSts"), last.find(P2 + "StsRsnInf/Rsn/Cd")) == ("RJCT", "NOOR")
    iso.check_valid()


async def recall(iso, tx_id: str) -> str:
    await settled(iso, tx_id)
    status, answer = await iso.a.post(sample("camt.056.xml", TX=tx_id, CASE=f"CASE-{tx_id}"))
    assert status == 202, answer
    await eventually(lambda: iso.b.of("camt.056.001.08"))
    (forwarded,) = iso.b.of("camt.056.001.08")
    assert forwarded.find("FIToFIPmtCxlReq/Undrlyg/TxInf/OrgnlTxId") == tx_id
    assert forwarded.find("FIToFIPmtCxlReq/Undrlyg/TxInf/OrgnlInstrId") == "1"
    assert forwarded.find("FIToFIPmtCxlReq/Undrlyg/TxInf/CxlRsnInf/Rsn/Cd") == "DUPL"
    return forwarded.find("FIToFIPmtCxlReq/Case/Id")


async def test_recall_accepted_is_forwarded_and_the_return_moves_the_money(iso):
    case = await recall(iso, "TX-RCL")
    debits_before = iso.position(2)["debits_posted"]
    status, answer = await iso.b.post(sample("camt.029.xml", CASE=case, CONF="CNCL",
                                             STS="ACCR", REASON=""))
    assert status == 202, answer
    await eventually(lambda: iso.a.of("camt.029.001.09"))
    (answered,) = iso.a.of("camt.029.001.09")
    assert answered.find("RsltnOfInvstgtn/Sts/Conf") == "CNCL"
    assert answered.find("RsltnOfInvstgtn/RslvdCase/Id") == "CASE-TX-RCL"
    assert answered.find("RsltnOfInvstgtn/CxlDtls/TxInfAndSts/OrgnlTxId") == "TX-RCL"
    assert iso.position(2)["debits_posted"] == debits_before  # a recall moves nothing
    original_msg = [item for item in iso.b.of("pacs.008.001.08")][0].find(
        "FIToFICstmrCdtTrf/GrpHdr/MsgId")
    await iso.b.post(pacs004(MEMBER_B, original_msg, "TX-RCL", "RT-RCL", "25.00", "FOCR"))
    await eventually(lambda: iso.a.of("pacs.004.001.10"))
    await eventually(lambda: any(s[0] == "RT-RCL" for s in statuses(iso.b)))
    assert iso.position(2)["debits_posted"] == debits_before + 2_500
    # The same case cannot be answered twice.
    status, answer = await iso.b.post(sample("camt.029.xml", CASE=case, CONF="CNCL",
                                             STS="ACCR", REASON=""))
    assert status == 400 and b"NOOR" in answer
    iso.check_valid()


async def test_recall_refused_is_forwarded_with_its_reason(iso):
    case = await recall(iso, "TX-RCL2")
    status, _ = await iso.b.post(sample(
        "camt.029.xml", CASE=case, CONF="RJCR", STS="RJCR",
        REASON="<CxlStsRsnInf><Rsn><Cd>CUST</Cd></Rsn><AddtlInf>customer refuses</AddtlInf>"
               "</CxlStsRsnInf>"))
    assert status == 202
    await eventually(lambda: iso.a.of("camt.029.001.09"))
    (answered,) = iso.a.of("camt.029.001.09")
    assert answered.find("RsltnOfInvstgtn/Sts/Conf") == "RJCR"
    assert answered.find("RsltnOfInvstgtn/CxlDtls/TxInfAndSts/CxlStsRsnInf/Rsn/Cd") == "CUST"
    assert iso.position(2)["debits_posted"] == 0
    iso.check_valid()


async def test_recall_of_a_transfer_to_an_http_participant_is_refused_at_once(iso):
    await pay(iso, "TX-RCL3", proxy=ALIAS_C, creditor_agent="3")
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    await iso.a.post(sample("camt.056.xml", TX="TX-RCL3", CASE="CASE-3"))
    await eventually(lambda: iso.a.of("camt.029.001.09"))
    (answered,) = iso.a.of("camt.029.001.09")
    assert answered.find("RsltnOfInvstgtn/Sts/Conf") == "RJCR"
    assert answered.find("RsltnOfInvstgtn/CxlDtls/TxInfAndSts/CxlStsRsnInf/Rsn/Cd") == "AGNT"
    iso.check_valid()


async def test_request_to_pay_from_one_iso_bank_to_another(iso):
    status, answer = await iso.b.post(sample("pain.013.xml", REQUEST="RTP-1", PROXY=ALIAS_A))
    assert status == 202, answer
    await eventually(lambda: iso.a.of("pain.013.001.07"))
    (notice,) = iso.a.of("pain.013.001.07")
    assert notice.find("CdtrPmtActvtnReq/PmtInf/CdtTrfTx/Amt/InstdAmt") == "12.34"
    await eventually(lambda: iso.b.of("pain.014.001.07"))  # PDNG: forwarded to the payer
    original = notice.find("CdtrPmtActvtnReq/GrpHdr/MsgId")
    status, answer = await iso.a.post(sample("pain.014.xml", ORIGINAL=original,
                                             PMTINF=notice.find("CdtrPmtActvtnReq/PmtInf/PmtInfId"),
                                             STATUS="ACCP", PAYMENT="PAY-RTP-1"))
    assert status == 202, answer
    await eventually(lambda: iso.b.of("pacs.008.001.08"))
    (credit,) = iso.b.of("pacs.008.001.08")
    assert credit.find(P8 + "IntrBkSttlmAmt") == "12.34"
    await eventually(lambda: any(item.find(
        "CdtrPmtActvtnReqStsRpt/OrgnlPmtInfAndSts/TxInfAndSts/TxSts") == "ACCP"
        for item in iso.b.of("pain.014.001.07")))
    await eventually(lambda: iso.position(2)["credits_posted"] == FUNDING_MINOR + 1_234)
    iso.check_valid()


async def test_iso_bank_pays_an_http_participant(iso):
    await pay(iso, "TX-X1", "7.00", proxy=ALIAS_C, creditor_agent="3")
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    (credit,) = iso.c_handler.credit_requests
    assert (credit.payer_participant_id, credit.transfer_id, credit.amount_minor) == (
        1, "TX-X1", 700)
    assert statuses(iso.a) == [("TX-X1", "ACSC", None)]
    await eventually(lambda: iso.c_handler.outcomes)
    assert iso.c_handler.outcomes[0].state is TransferState.COMMITTED
    iso.check_valid()


async def test_http_participant_pays_an_iso_bank(iso):
    outcome = await iso.c.transfer(TransferRequest(
        transfer_id="http-to-iso-with-an-id-longer-than-thirty-five-characters",
        payee=Party(alias_type="MSISDN", alias_value=ALIAS_B), amount_minor=990,
        currency=CURRENCY, expires_at_ns=time.time_ns() + 60 * 10**9, purpose="rent"),
        timeout_s=10)
    assert outcome.state is TransferState.COMMITTED, outcome
    (credit,) = iso.b.of("pacs.008.001.08")
    assert credit.find(P8 + "PmtId/InstrId") == "3"
    assert credit.find(P8 + "IntrBkSttlmAmt") == "9.90"
    assert credit.find(P8 + "Dbtr/Nm") == "NOTPROVIDED"
    assert credit.find(P8 + "RmtInf/Ustrd") == "rent"
    assert len(credit.find(P8 + "PmtId/TxId")) <= 35
    await eventually(lambda: iso.b.of("pacs.002.001.10"))
    assert statuses(iso.b)[0][1] == "ACSC"
    iso.check_valid()


async def test_creditor_named_by_member_id_and_account_fednow_envelope(iso):
    answer = await iso.server.gateway.register_alias(
        2, alias_type="ACCOUNT", alias_value="2:1234567", account_ref="ACC-B-7",
        owner_national_id="52998224725", display_name="Maria Silva")
    assert answer.result is Result.OK, answer
    body = sample("pacs.008-fednow-account.xml", AMOUNT="3.50", ACCOUNT="1234567")
    status, answer = await iso.a.post(body)
    assert status == 202, answer
    await eventually(lambda: iso.b.of("pacs.008.001.08"))
    (credit,) = iso.b.of("pacs.008.001.08")
    assert credit.find(P8 + "CdtrAcct/Id/Othr/Id") == "ACC-B-7"
    assert credit.find(P8 + "IntrBkSttlmAmt") == "3.50"
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    assert statuses(iso.a)[0][1] == "ACSC"
    iso.check_valid()


async def test_a_batch_is_taken_in_order_and_deliveries_are_retried(iso):
    iso.b.fail_first = 2  # the payee bank's endpoint answers 503 twice
    bodies = [sample("pacs.008-proxy.xml", TX=f"TX-B{n}", AMOUNT="1.00", PROXY=ALIAS_B,
                     CDTR_AGT=MEMBER_B) for n in range(3)]
    batch = b'<Batch xmlns="urn:ponte:xsd:batch">' + b"".join(
        body[body.index(b"?>") + 2:] for body in bodies) + b"</Batch>"
    status, answer = await iso.a.post(batch)
    assert status == 202, answer
    await eventually(lambda: len(iso.a.of("pacs.002.001.10")) == 3)
    assert [item.find(P8 + "PmtId/TxId") for item in iso.b.of("pacs.008.001.08")] == [
        "TX-B0", "TX-B1", "TX-B2"]
    assert iso.connector.delivery.stats.retried_total >= 2
    iso.check_valid()
