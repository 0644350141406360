"""Bad input to the ISO 20022 connector: every refusal is an admi.002 (XSD-valid, naming
the rejected BizMsgIdr) or a typed HTTP error, and nothing is written: no transfer, no
credit sent, no money moved, the other bank unaffected."""

from __future__ import annotations

import pytest

from connectors.iso20022.connector import outbound_problem
from connectors.iso20022.inbound import split_body
from connectors.iso20022.common import Invalid
from switch.core.messages import StatusQuery
from switch.core.results import Result

from iso_helpers import ALIAS_B, MEMBER_B, SWITCH, eventually, sample

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
