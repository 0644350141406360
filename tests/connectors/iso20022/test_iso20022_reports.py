"""The ISO 20022 connector's less travelled paths against a real switch: the periodic
camt.052 intraday report, a payer bank declining a request-to-pay (pain.014 RJCT), and an
answer the core cannot act on (ErrorAnswer) reaching the bank as an admi.002. Every
message the banks get is validated against the XSDs (`Iso.check_valid`)."""

from __future__ import annotations

import asyncio

import pytest

from switch.core.messages import StatusQuery
from switch.core.results import Result, TransferState

from iso_helpers import (
    ALIAS_A,
    ALIAS_B,
    ALIAS_C,
    FUNDING_MINOR,
    MEMBER_B,
    SWITCH,
    envelope,
    eventually,
    new_id,
    now_text,
    sample,
)

P2 = "FIToFIPmtStsRpt/TxInfAndSts/"
RPT = "BkToCstmrAcctRpt/Rpt/"
ADMI = "admi.002.001.01/"
STS = "CdtrPmtActvtnReqStsRpt/OrgnlPmtInfAndSts/TxInfAndSts/"


async def pay(iso, tx_id: str, amount: str, proxy: str = ALIAS_B,
              creditor_agent: str = MEMBER_B) -> None:
    status, answer = await iso.a.post(sample("pacs.008-proxy.xml", TX=tx_id, AMOUNT=amount,
                                             PROXY=proxy, CDTR_AGT=creditor_agent))
    assert status == 202, answer
    await eventually(lambda: any(item.find(P2 + "OrgnlTxId") == tx_id
                                 for item in iso.a.of("pacs.002.001.10")))


def entries(report) -> list[tuple[str, str, str]]:
    found = []
    for entry in report.root[1].iter("{*}Ntry"):
        found.append((entry.findtext("{*}Amt"), entry.findtext("{*}CdtDbtInd"),
                      entry.findtext("{*}NtryDtls/{*}TxDtls/{*}Refs/{*}TxId")))
    return found


@pytest.mark.parametrize("iso", [{"bank_a": {"notifications": ("camt.052",),
                                             "report_interval_ms": 1_000}}], indirect=True)
async def test_camt052_reports_what_settled_each_interval_in_sequence(iso):
    await pay(iso, "TX-R1", "1.50")
    await pay(iso, "TX-R2", "2.25")
    await eventually(lambda: iso.a.of("camt.052.001.08"))
    (first,) = iso.a.of("camt.052.001.08")
    assert first.find(RPT + "ElctrncSeqNb") == "1"
    assert first.find(RPT + "Acct/Ccy") == "BRL"
    assert entries(first) == [("1.50", "DBIT", "TX-R1"), ("2.25", "DBIT", "TX-R2")]
    assert iso.a.of("camt.054.001.08") == []  # bank A asked for the report only
    await pay(iso, "TX-R3", "3.00")
    await eventually(lambda: len(iso.a.of("camt.052.001.08")) == 2)
    second = iso.a.of("camt.052.001.08")[1]
    assert second.find(RPT + "ElctrncSeqNb") == "2"
    assert entries(second) == [("3.00", "DBIT", "TX-R3")]
    assert second.biz_msg_id != first.biz_msg_id
    # Nothing settled in an interval: no empty report.
    await asyncio.sleep(1.3)
    assert len(iso.a.of("camt.052.001.08")) == 2
    # A rejected transfer is not an entry.
    iso.b.answer, iso.b.reason = "RJCT", "AC04"
    await pay(iso, "TX-R4", "4.00")
    await asyncio.sleep(1.3)
    assert len(iso.a.of("camt.052.001.08")) == 2
    iso.check_valid()


async def test_a_payer_bank_declining_a_request_to_pay_creates_nothing(iso):
    status, answer = await iso.b.post(sample("pain.013.xml", REQUEST="RTP-NO", PROXY=ALIAS_A))
    assert status == 202, answer
    await eventually(lambda: iso.a.of("pain.013.001.07"))
    (notice,) = iso.a.of("pain.013.001.07")
    await eventually(lambda: iso.b.of("pain.014.001.07"))  # PDNG: forwarded to the payer
    decline = sample("pain.014.xml", ORIGINAL=notice.find("CdtrPmtActvtnReq/GrpHdr/MsgId"),
                     PMTINF=notice.find("CdtrPmtActvtnReq/PmtInf/PmtInfId"),
                     STATUS="RJCT", PAYMENT="DECLINE-1")
    status, answer = await iso.a.post(decline)
    assert status == 202, answer
    await eventually(lambda: any(item.find(STS + "TxSts") == "RJCT"
                                 for item in iso.b.of("pain.014.001.07")))
    final = [item for item in iso.b.of("pain.014.001.07") if item.find(STS + "TxSts") == "RJCT"]
    assert len(final) == 1
    # The payer declined: MS02 (customer generated), and Ponte's result in AddtlInf.
    assert final[0].find(STS + "StsRsnInf/Rsn/Cd") == "MS02"
    assert "PAYER_REJECTED_REQUEST" in final[0].find(STS + "StsRsnInf/AddtlInf")
    # A late approval under the same request changes nothing: the request is final.
    approve = sample("pain.014.xml", ORIGINAL=notice.find("CdtrPmtActvtnReq/GrpHdr/MsgId"),
                     PMTINF=notice.find("CdtrPmtActvtnReq/PmtInf/PmtInfId"),
                     STATUS="ACCP", PAYMENT="LATE-APPROVAL-1")
    status, answer = await iso.a.post(approve)
    assert status == 202, answer
    answer = await iso.server.gateway.status(1, StatusQuery(payer_participant_id=1,
                                                            transfer_id="LATE-APPROVAL-1"))
    assert answer.result is Result.TRANSFER_NOT_FOUND
    assert iso.b.of("pacs.008.001.08") == []
    assert iso.position(1)["debits_posted"] == 0 and iso.position(1)["debits_pending"] == 0
    assert iso.position(2)["credits_posted"] == FUNDING_MINOR
    iso.check_valid()


async def test_an_answer_the_core_cannot_act_on_reaches_the_bank_as_admi002(iso):
    # Bank A pays the HTTP participant; bank B then "accepts" that transfer, which it was
    # never sent. The pacs.002 is well formed and names the transfer by InstrId + TxId, so
    # it is taken; the core refuses it (ErrorAnswer), and bank B hears why in an admi.002.
    await pay(iso, "TX-NOT-B", "6.00", proxy=ALIAS_C, creditor_agent="3")
    document = (
        f"<FIToFIPmtStsRpt><GrpHdr><MsgId>{new_id('S')}</MsgId><CreDtTm>{now_text()}"
        f"</CreDtTm></GrpHdr><TxInfAndSts><OrgnlGrpInf><OrgnlMsgId>PUNKNOWN</OrgnlMsgId>"
        f"<OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId></OrgnlGrpInf>"
        f"<OrgnlInstrId>1</OrgnlInstrId><OrgnlTxId>TX-NOT-B</OrgnlTxId><TxSts>ACCP</TxSts>"
        f"</TxInfAndSts></FIToFIPmtStsRpt>")
    status, answer = await iso.b.post(envelope(MEMBER_B, SWITCH, new_id("B"),
                                               "pacs.002.001.10", document))
    assert status == 202, answer
    await eventually(lambda: iso.b.of("admi.002.001.01"))
    (rejection,) = iso.b.of("admi.002.001.01")
    # An ISO reason code like every other admi.002, Ponte's result and the detail in words.
    assert rejection.find(ADMI + "Rsn/RjctgPtyRsn") == "NOOR"
    description = rejection.find(ADMI + "Rsn/RsnDesc")
    assert "TRANSFER_NOT_FOUND" in description and "never sent" in description
    # Nothing changed: the transfer to the HTTP participant stands as it was.
    outcome = await iso.server.gateway.status(1, StatusQuery(payer_participant_id=1,
                                                             transfer_id="TX-NOT-B"))
    assert outcome.state is TransferState.COMMITTED
    assert iso.position(2)["credits_posted"] == FUNDING_MINOR
    iso.check_valid()
