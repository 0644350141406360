"""Bad input to the ISO 20022 connector: every refusal is an admi.002 (XSD-valid, naming
the rejected BizMsgIdr) or a typed HTTP error, and nothing is written: no transfer, no
credit sent, no money moved, the other bank unaffected. And well-formed messages the switch
itself refuses: a pacs.008 it cannot pay (a pacs.002 RJCT with the reason-code table's
code) and a pacs.004 in another currency than its original (admi.002 AM03)."""

from __future__ import annotations

import pytest

from connectors.iso20022.bank import agent, envelope, new_id, now_text
from connectors.iso20022.connector import outbound_problem
from connectors.iso20022.inbound import split_body
from connectors.iso20022.common import Invalid
from switch.core.messages import StatusQuery
from switch.core.results import Result

from iso_helpers import ALIAS_B, FUNDING_MINOR, MEMBER_B, SWITCH, eventually, sample

ADMI = "{urn:iso:std:iso:20022:tech:xsd:admi.002.001.01}"


def good(tx: str = "TX-OK", **values) -> bytes:
    return sample("pacs.008-proxy.xml", TX=tx, AMOUNT=values.pop("AMOUNT", "5.00"),
                  PROXY=ALIAS_B, CDTR_AGT=MEMBER_B, **values)


def admi(answer: bytes) -> tuple[str, str, str]:
    """(RltdRef/Ref, RjctgPtyRsn, RsnDesc) of an admi.002 answer, after checking its XSDs."""
    assert outbound_problem(answer) is None, answer
    from lxml import etree
    root = etree.fromstring(answer)
    document = root[1]
    return (document.findtext(f"{ADMI}admi.002.001.01/{ADMI}RltdRef/{ADMI}Ref"),
            document.findtext(f"{ADMI}admi.002.001.01/{ADMI}Rsn/{ADMI}RjctgPtyRsn"),
            document.findtext(f"{ADMI}admi.002.001.01/{ADMI}Rsn/{ADMI}RsnDesc"))


async def nothing_written(iso, tx_id: str = "TX-OK") -> None:
    answer = await iso.server.gateway.status(1, StatusQuery(payer_participant_id=1,
                                                            transfer_id=tx_id))
    assert answer.result is Result.TRANSFER_NOT_FOUND
    assert iso.b.of("pacs.008.001.08") == []
    assert iso.position(1)["debits_pending"] == 0
    assert iso.position(1)["debits_posted"] == 0


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                  b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                  b"<Envelope>&lol3;</Envelope>")
EXTERNAL = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
            b"<Envelope>&e;</Envelope>")
UNDECLARED = b'<?xml version="1.0"?><Envelope>&e;</Envelope>'
DEEP = b"<a>" * 5_000 + b"</a>" * 5_000


@pytest.mark.parametrize("body, words", [
    (b"<Envelope><unclosed></Envelope>", "malformed"),
    (b"not xml at all", "malformed"),
    (BILLION_LAUGHS, "DTD"),
    (EXTERNAL, "DTD"),
    (UNDECLARED, "malformed"),
    (DEEP, "malformed"),
])
async def test_malformed_xml_and_bombs_get_admi002_and_change_nothing(iso, body, words):
    status, answer = await iso.a.post(body)
    assert status == 400
    reference, code, detail = admi(answer)
    assert (reference, code) == ("NONREF", "FF01")
    assert words in detail
    await nothing_written(iso)


async def test_wrong_namespace_is_refused(iso):
    body = good().replace(b"urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08",
                          b"urn:iso:std:iso:20022:tech:xsd:pacs.008.001.99")
    status, answer = await iso.a.post(body)
    assert status == 400
    assert admi(answer)[1] == "FF01"
    assert "pacs.008.001.99" in admi(answer)[2]
    await nothing_written(iso)


@pytest.mark.parametrize("change, words", [
    ((b"<p:ChrgBr>SLEV</p:ChrgBr>", b""), "ChrgBr"),  # a mandatory element missing
    ((b'Ccy="BRL"', b'Ccy="brl"'), "Ccy"),  # the currency pattern
    ((b"<p:NbOfTxs>1</p:NbOfTxs>", b"<p:NbOfTxs>one</p:NbOfTxs>"), "NbOfTxs"),
    ((b"<h:MsgDefIdr>pacs.008.001.08", b"<h:MsgDefIdr>pacs.002.001.10"), "MsgDefIdr"),
])
async def test_xsd_invalid_and_inconsistent_messages_are_refused(iso, change, words):
    body = good().replace(*change)
    status, answer = await iso.a.post(body)
    assert status == 400, answer
    reference, code, detail = admi(answer)
    assert code == "FF01"
    assert words in detail
    assert reference.startswith("B")  # the rejected message's BizMsgIdr
    await nothing_written(iso)


@pytest.mark.parametrize("values, code", [
    ({"AMOUNT": "5.001"}, "AM12"),  # more decimals than BRL has
    ({"AMOUNT": "0.00"}, "AM12"),
    ({"TODAY": "2001-01-01"}, "DT01"),  # settlement date not today
    ({"NOW": "2001-01-01T00:00:00Z"}, "DT01"),  # stale creation time
    ({"TX": "TX WITH SPACES"}, "FF01"),  # not of Ponte's id grammar
])
async def test_scheme_rules_refuse_before_anything_is_decided(iso, values, code):
    tx = values.pop("TX", "TX-OK")
    status, answer = await iso.a.post(good(tx, **values))
    assert status == 400, answer
    assert admi(answer)[1] == code
    if tx == "TX-OK":
        await nothing_written(iso)


async def test_forwarded_groups_past_their_bound_are_refused(iso):
    # RmtInf may repeat Ustrd without end (the XSD allows it, inside a 2 MiB body): what the
    # switch keeps and forwards is bounded, a larger one refused before anything is decided.
    lines = b"".join(b"<p:Ustrd>" + b"x" * 140 + b"</p:Ustrd>" for _ in range(200))
    body = good().replace(b"<p:Ustrd>Invoice 2024-17</p:Ustrd>", lines)
    status, answer = await iso.a.post(body)
    assert status == 400, answer
    reference, code, detail = admi(answer)
    assert code == "FF01" and "forwarded" in detail
    await nothing_written(iso)


async def test_forged_sender_is_refused(iso):
    # The AppHdr claims to be bank B, but the key is bank A's.
    status, answer = await iso.a.post(good().replace(b"<h:MmbId>BANKA001</h:MmbId>",
                                                     b"<h:MmbId>BANKB002</h:MmbId>"))
    assert status == 400
    assert admi(answer)[1] == "RC01"
    # The header is right, but the instructing agent is another bank.
    status, answer = await iso.a.post(good().replace(
        b"<p:InstgAgt><p:FinInstnId><p:ClrSysMmbId><p:MmbId>BANKA001",
        b"<p:InstgAgt><p:FinInstnId><p:ClrSysMmbId><p:MmbId>BANKB002"))
    assert status == 400
    assert admi(answer)[1] == "RC01"
    # Addressed to someone else than the switch.
    status, answer = await iso.a.post(good().replace(
        b"<h:To><h:FIId><h:FinInstnId><h:ClrSysMmbId><h:MmbId>PONTE",
        b"<h:To><h:FIId><h:FinInstnId><h:ClrSysMmbId><h:MmbId>OTHER"))
    assert status == 400
    assert admi(answer)[1] == "RC01"
    await nothing_written(iso)


async def test_no_or_unknown_key_is_a_typed_401(iso):
    from connectors.http.client import ConnectionPool
    pool = ConnectionPool(f"http://127.0.0.1:{iso.connector.port}",
                          content_type=b"application/xml")
    try:
        response = await pool.request(b"POST", b"/iso20022", good())
        assert response.status == 401
        assert b"VALIDATION_ERROR" in response.body
        response = await pool.request(b"POST", b"/iso20022", good(),
                                      ((b"x-api-key", b"ponte_unknown_key_0000000"),))
        assert response.status == 401
        json = ConnectionPool(f"http://127.0.0.1:{iso.connector.port}",
                              headers=((b"x-api-key", iso.a.api_key.encode()),))
        response = await json.request(b"POST", b"/iso20022", good())
        assert response.status == 415
        await json.close()
    finally:
        await pool.close()
    await nothing_written(iso)


async def test_an_http_participant_key_cannot_speak_iso(iso):
    from connectors.http.client import ConnectionPool
    pool = ConnectionPool(f"http://127.0.0.1:{iso.connector.port}",
                          headers=((b"x-api-key", iso.c.api_key.encode()),),
                          content_type=b"application/xml")
    try:
        response = await pool.request(b"POST", b"/iso20022", good())
        assert response.status == 403
    finally:
        await pool.close()
    await nothing_written(iso)


async def test_duplicate_biz_msg_id_resend_is_acknowledged_other_content_refused(iso):
    body = good("TX-DUP", BIZ="B-DUP-1")
    status, _ = await iso.a.post(body)
    assert status == 202
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    status, answer = await iso.a.post(body)  # the same message again: taken once
    assert (status, answer) == (202, b"")
    other = good("TX-DUP-2", BIZ="B-DUP-1")  # same BizMsgIdr, another payment
    status, answer = await iso.a.post(other)
    assert status == 400
    assert admi(answer)[:2] == ("B-DUP-1", "DUPL")
    assert len(iso.b.of("pacs.008.001.08")) == 1
    assert iso.position(1)["debits_posted"] == 500
    answer = await iso.server.gateway.status(1, StatusQuery(payer_participant_id=1,
                                                            transfer_id="TX-DUP-2"))
    assert answer.result is Result.TRANSFER_NOT_FOUND


async def test_a_resend_with_a_new_app_hdr_is_acknowledged_once(iso):
    # The bank's hub resends with a new CreDt and PssblDplct in the AppHdr (head.001's
    # possible duplicate): the same message as the switch reads it, acknowledged and not
    # taken again.
    body = good("TX-RESEND", BIZ="B-RESEND-1")
    status, _ = await iso.a.post(body)
    assert status == 202
    header_end = body.index(b"</h:CreDt>")
    created = body[body.index(b"<h:CreDt>") + 9:header_end]
    resend = (body[:header_end].replace(created, now_text(1).encode())
              + b"</h:CreDt><h:PssblDplct>true</h:PssblDplct>"
              + body[header_end + len(b"</h:CreDt>"):])
    status, answer = await iso.a.post(resend)
    assert (status, answer) == (202, b"")
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    assert len(iso.b.of("pacs.008.001.08")) == 1
    assert iso.position(1)["debits_posted"] == 500


async def test_a_used_biz_msg_id_on_a_message_that_fails_is_refused_as_used(iso):
    # A pacs.002 under the BizMsgIdr the bank used for its pacs.008, pointing at nothing
    # the switch sent: DUPL (the id is taken), nothing taken.
    status, _ = await iso.a.post(good("TX-USED", BIZ="B-USED-1"))
    assert status == 202
    document = (
        f"<FIToFIPmtStsRpt><GrpHdr><MsgId>S-USED</MsgId><CreDtTm>{now_text()}</CreDtTm>"
        f"</GrpHdr><TxInfAndSts><OrgnlGrpInf><OrgnlMsgId>PNOTHING</OrgnlMsgId>"
        f"<OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId></OrgnlGrpInf>"
        f"<OrgnlTxId>NOTHING</OrgnlTxId><TxSts>ACCP</TxSts></TxInfAndSts></FIToFIPmtStsRpt>")
    status, answer = await iso.a.post(envelope("BANKA001", SWITCH, "B-USED-1",
                                               "pacs.002.001.10", document))
    assert status == 400
    assert admi(answer)[:2] == ("B-USED-1", "DUPL")
    # Under a fresh BizMsgIdr the same message is refused for what it is.
    status, answer = await iso.a.post(envelope("BANKA001", SWITCH, "B-USED-2",
                                               "pacs.002.001.10", document))
    assert admi(answer)[:2] == ("B-USED-2", "NOOR")


async def test_a_batch_takes_its_valid_messages_and_refuses_the_others(iso):
    bodies = [good("TX-V1"), good("TX-V2", AMOUNT="1.234")]
    batch = b'<Batch xmlns="urn:ponte:xsd:batch">' + b"".join(
        body[body.index(b"?>") + 2:] for body in bodies) + b"</Batch>"
    status, answer = await iso.a.post(batch)
    assert status == 202
    assert outbound_problem(answer) is None
    assert b"AM12" in answer
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    assert [item.find("FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/TxId")
            for item in iso.b.of("pacs.008.001.08")] == ["TX-V1"]


def test_split_body_bounds_a_batch():
    envelope = good()[good().index(b"?>") + 2:]
    with pytest.raises(Invalid):
        split_body(b'<Batch xmlns="urn:ponte:xsd:batch">' + envelope * 101 + b"</Batch>")
    with pytest.raises(Invalid):
        split_body(b'<Batch xmlns="urn:ponte:xsd:batch"></Batch>')


# -- what the switch itself refuses -------------------------------------------------------

P2 = "FIToFIPmtStsRpt/TxInfAndSts/"
UNKNOWN_PROXY = "+5511900000000"  # no bank registered it


@pytest.mark.parametrize("proxy, amount, code, result", [
    (UNKNOWN_PROXY, "5.00", "AC01", Result.PARTY_NOT_FOUND),
    # One centavo more than bank A's whole prefunding (FUNDING_MINOR).
    (ALIAS_B, "10000000.01", "AM04", Result.PAYER_INSUFFICIENT_LIQUIDITY),
])
async def test_a_pacs008_the_switch_refuses_gets_a_pacs002_rjct_with_the_tables_code(
        iso, proxy, amount, code, result):
    # Valid ISO and the scheme's rules: taken (202), then refused by the directory or the
    # ledger, which the payer bank learns from a pacs.002 RJCT quoting its own MsgId.
    status, answer = await iso.a.post(sample("pacs.008-proxy.xml", TX="TX-NO", MSG="M-TX-NO",
                                             AMOUNT=amount, PROXY=proxy, CDTR_AGT=MEMBER_B))
    assert (status, answer) == (202, b"")
    await eventually(lambda: iso.a.of("pacs.002.001.10"))
    (final,) = iso.a.of("pacs.002.001.10")
    assert outbound_problem(final.body) is None
    assert final.find(P2 + "OrgnlGrpInf/OrgnlMsgId") == "M-TX-NO"
    assert final.find(P2 + "OrgnlTxId") == "TX-NO"
    assert final.find(P2 + "TxSts") == "RJCT"
    assert final.find(P2 + "StsRsnInf/Rsn/Cd") == code
    ponte = f"PONTE {int(result)} {result.name}"
    assert final.find(P2 + "StsRsnInf/AddtlInf").startswith(ponte)
    # No money moved, the payee bank was never asked.
    assert iso.position(1)["debits_pending"] == 0
    assert iso.position(1)["debits_posted"] == 0
    assert iso.position(2)["credits_posted"] == FUNDING_MINOR
    assert iso.b.of("pacs.008.001.08") == []
    iso.check_valid()


def return_of(original_msg: str, original_tx: str, return_id: str, amount: str,
              currency: str, biz_msg_id: str) -> bytes:
    """Bank B's pacs.004 returning (part of) a credit the switch sent it."""
    document = (
        f"<PmtRtr><GrpHdr><MsgId>{new_id('R')}</MsgId><CreDtTm>{now_text()}</CreDtTm>"
        f"<NbOfTxs>1</NbOfTxs><SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf></GrpHdr>"
        f"<TxInf><RtrId>{return_id}</RtrId><OrgnlGrpInf><OrgnlMsgId>{original_msg}</OrgnlMsgId>"
        f"<OrgnlMsgNmId>pacs.008.001.08</OrgnlMsgNmId></OrgnlGrpInf>"
        f"<OrgnlInstrId>1</OrgnlInstrId><OrgnlTxId>{original_tx}</OrgnlTxId>"
        f'<RtrdIntrBkSttlmAmt Ccy="{currency}">{amount}</RtrdIntrBkSttlmAmt>'
        f"<ChrgBr>SLEV</ChrgBr><InstgAgt>{agent(MEMBER_B)}</InstgAgt>"
        f"<InstdAgt>{agent(SWITCH)}</InstdAgt>"
        f"<RtrRsnInf><Rsn><Cd>AC04</Cd></Rsn></RtrRsnInf></TxInf></PmtRtr>")
    return envelope(MEMBER_B, SWITCH, biz_msg_id, "pacs.004.001.10", document)


async def test_a_return_in_another_currency_than_the_original_is_refused_am03(iso):
    status, _ = await iso.a.post(good("TX-CCY", AMOUNT="25.00"))
    assert status == 202
    await eventually(lambda: any(item.find(P2 + "TxSts") == "ACSC"
                                 for item in iso.b.of("pacs.002.001.10")))
    (credit,) = iso.b.of("pacs.008.001.08")
    original_msg = credit.find("FIToFICstmrCdtTrf/GrpHdr/MsgId")
    # "1000 JPY" of a BRL transfer: JPY has no decimals, so it reads as 1000 minor units;
    # unchecked, the switch took it and returned 10.00 BRL.
    status, answer = await iso.b.post(return_of(original_msg, "TX-CCY", "RT-CCY", "1000",
                                                "JPY", "B-RT-CCY-1"))
    assert status == 400, answer
    reference, code, detail = admi(answer)
    assert (reference, code) == ("B-RT-CCY-1", "AM03")
    assert "JPY" in detail and "BRL" in detail
    assert iso.a.of("pacs.004.001.10") == []
    assert iso.position(2)["debits_posted"] == 0
    answer = await iso.server.gateway.status(2, StatusQuery(payer_participant_id=2,
                                                            transfer_id="RT-CCY"))
    assert answer.result is Result.TRANSFER_NOT_FOUND
    # The same return in the original's currency is taken and moves the money.
    status, answer = await iso.b.post(return_of(original_msg, "TX-CCY", "RT-CCY", "10.00",
                                                "BRL", "B-RT-CCY-2"))
    assert (status, answer) == (202, b"")
    await eventually(lambda: iso.a.of("pacs.004.001.10"))
    (returned,) = iso.a.of("pacs.004.001.10")
    assert returned.find("PmtRtr/TxInf/RtrdIntrBkSttlmAmt") == "10.00"
    await eventually(lambda: iso.position(2)["debits_posted"] == 1_000)
    iso.check_valid()
