"""A minimal ISO 20022 bank for tests, the bench and demos: an endpoint that receives the
switch's messages (and acknowledges them), answers credits with a pacs.002 by its policy,
and a client that POSTs messages to the switch. Its messages are written from plain
templates, independently of the connector's writer.

For tests and the bench only: the switch never imports it.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
import uuid
from datetime import datetime, timezone

from lxml import etree

from connectors.http.client import ConnectionPool, HttpClientError
from connectors.http.jws import JwsError, VerifyKey, signature_from_headers, verify_detached
from connectors.http.server import HttpServer, Request, Response
from connectors.iso20022 import xml

HEAD = "urn:iso:std:iso:20022:tech:xsd:head.001.001.02"


def now_text(offset_s: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def new_id(prefix: str = "M") -> str:
    return prefix + uuid.uuid4().hex[:30]


def envelope(sender: str, receiver: str, biz_msg_id: str, definition: str, document: str,
             created: str | None = None) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Envelope xmlns="urn:example:bank">'
        f'<AppHdr xmlns="{HEAD}"><Fr><FIId><FinInstnId><ClrSysMmbId><MmbId>{sender}</MmbId>'
        f"</ClrSysMmbId></FinInstnId></FIId></Fr><To><FIId><FinInstnId><ClrSysMmbId>"
        f"<MmbId>{receiver}</MmbId></ClrSysMmbId></FinInstnId></FIId></To>"
        f"<BizMsgIdr>{biz_msg_id}</BizMsgIdr><MsgDefIdr>{definition}</MsgDefIdr>"
        f"<CreDt>{created or now_text()}</CreDt></AppHdr>"
        f'<Document xmlns="urn:iso:std:iso:20022:tech:xsd:{definition}">{document}'
        f"</Document></Envelope>").encode()


def agent(member: str) -> str:
    return f"<FinInstnId><ClrSysMmbId><MmbId>{member}</MmbId></ClrSysMmbId></FinInstnId>"


def pacs008(sender: str, switch: str, payee_member: str, tx_id: str, amount: str,
            currency: str, proxy: tuple[str, str] | None = None, account: str = "",
            msg_id: str | None = None, debtor_account: str = "") -> tuple[str, bytes]:
    """A FedNow-style customer credit transfer; the creditor by proxy or by account; the
    debtor's account `debtor_account` (default `ACC-<sender>-1`)."""
    msg_id = msg_id or new_id()
    creditor_account = (
        f"<CdtrAcct><Id><Othr><Id>{account or 'NOTPROVIDED'}</Id></Othr></Id>"
        + (f"<Prxy><Tp><Prtry>{proxy[0]}</Prtry></Tp><Id>{proxy[1]}</Id></Prxy>" if proxy
           else "") + "</CdtrAcct>")
    document = (
        f"<FIToFICstmrCdtTrf><GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>{now_text()}</CreDtTm>"
        f"<NbOfTxs>1</NbOfTxs><SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf></GrpHdr>"
        f"<CdtTrfTxInf><PmtId><EndToEndId>E2E-{tx_id}</EndToEndId><TxId>{tx_id}</TxId>"
        f"<UETR>{uuid.uuid4()}</UETR></PmtId>"
        f'<IntrBkSttlmAmt Ccy="{currency}">{amount}</IntrBkSttlmAmt>'
        f"<IntrBkSttlmDt>{today()}</IntrBkSttlmDt><ChrgBr>SLEV</ChrgBr>"
        f"<InstgAgt>{agent(sender)}</InstgAgt><InstdAgt>{agent(switch)}</InstdAgt>"
        f"<Dbtr><Nm>Ana Costa</Nm></Dbtr><DbtrAcct><Id><Othr><Id>"
        f"{debtor_account or f'ACC-{sender}-1'}</Id></Othr>"
        f"</Id></DbtrAcct><DbtrAgt>{agent(sender)}</DbtrAgt><CdtrAgt>{agent(payee_member)}"
        f"</CdtrAgt><Cdtr><Nm>Maria Silva</Nm></Cdtr>{creditor_account}"
        f"<RmtInf><Ustrd>Invoice {tx_id}</Ustrd></RmtInf></CdtTrfTxInf></FIToFICstmrCdtTrf>")
    return msg_id, envelope(sender, switch, msg_id, "pacs.008.001.08", document)


def pacs002(sender: str, switch: str, original_msg_id: str, original_instr_id: str,
            original_tx_id: str, status: str, reason: str = "",
            original_name: str = "pacs.008.001.08") -> bytes:
    msg_id = new_id("S")
    why = f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn></StsRsnInf>" if reason else ""
    instr = f"<OrgnlInstrId>{original_instr_id}</OrgnlInstrId>" if original_instr_id else ""
    document = (
        f"<FIToFIPmtStsRpt><GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>{now_text()}</CreDtTm>"
        f"</GrpHdr><TxInfAndSts><OrgnlGrpInf><OrgnlMsgId>{original_msg_id}</OrgnlMsgId>"
        f"<OrgnlMsgNmId>{original_name}</OrgnlMsgNmId></OrgnlGrpInf>{instr}"
        f"<OrgnlTxId>{original_tx_id}</OrgnlTxId><TxSts>{status}</TxSts>{why}"
        f"</TxInfAndSts></FIToFIPmtStsRpt>")
    return envelope(sender, switch, msg_id, "pacs.002.001.10", document)


class Received:
    """One envelope the switch delivered: its definition and parsed tree."""

    __slots__ = ("definition", "root", "body")

    def __init__(self, definition: str, root, body: bytes) -> None:
        self.definition = definition
        self.root = root
        self.body = body

    def find(self, path: str) -> str | None:
        """Text at a '/'-separated path under the Document (namespace added)."""
        ns = "{urn:iso:std:iso:20022:tech:xsd:%s}" % self.definition
        document = self.root[1]
        return document.findtext("/".join(ns + step for step in path.split("/")))

    @property
    def biz_msg_id(self) -> str:
        return self.root[0].findtext("{%s}BizMsgIdr" % HEAD)


class Bank:
    """An ISO bank: `endpoint_url` receives the switch's messages; `post` sends one."""

    def __init__(self, member: str, switch_member: str, *, answer: str | None = "ACCP",
                 reason: str = "", validate: bool = True, fail_first: int = 0,
                 record: bool = True) -> None:
        self.member = member
        self.switch_member = switch_member
        self.answer = answer  # a credit's automatic pacs.002 status, None: do not answer
        self.reason = reason
        self.validate = validate  # check every received envelope against the XSDs
        self.fail_first = fail_first  # answer 503 to this many deliveries first
        self.record = record  # keep every envelope received (tests); else count them
        self.received: list[Received] = []
        self.counts: dict[str, int] = {}  # envelopes received per definition
        self.invalid: list[str] = []
        self.requests = 0
        self.server: HttpServer | None = None
        self.pool: ConnectionPool | None = None
        self.api_key = ""
        self.waiters: list = []
        self.scheme = "http"
        self.switch_key: VerifyKey | None = None  # set: every delivery must be signed
        self.certificates: list[bytes | None] = []  # the switch's TLS client certificates

    async def start(self, ssl: ssl_module.SSLContext | None = None, port: int = 0) -> str:
        """Listen for the switch's deliveries (HTTPS with `ssl`: a server context, which
        may ask for the switch's client certificate)."""
        self.server = HttpServer(self.handle, request_body_bytes_max=4 * 1024 * 1024)
        await self.server.start("127.0.0.1", port, ssl=ssl)
        self.scheme = "https" if ssl is not None else "http"
        return self.endpoint_url

    @property
    def endpoint_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.port}/iso"

    def connect(self, switch_url: str, api_key: str = "",
                ssl: ssl_module.SSLContext | None = None) -> None:
        """Where this bank POSTs: with its API key, or (empty key) its TLS client
        certificate alone (`ssl`, a client context holding it)."""
        self.api_key = api_key
        headers = ((b"x-api-key", api_key.encode()),) if api_key else ()
        self.pool = ConnectionPool(switch_url, connections_max=4, headers=headers, ssl=ssl,
                                   content_type=b"application/xml")

    async def post(self, body: bytes, headers=()) -> tuple[int, bytes]:
        response = await self.pool.request(b"POST", b"/iso20022", body, headers)
        return response.status, response.body

    def handle(self, request: Request):
        self.requests += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            return Response(503, b"busy")
        self.certificates.append(request.certificate)
        if self.switch_key is not None:  # the switch signs what it delivers
            try:
                found = signature_from_headers(request.headers)
                if found is None:
                    raise JwsError("no signature")
                verify_detached(found[0], found[1], request.body, self.switch_key)
            except JwsError as error:
                self.invalid.append(f"signature: {error}")
        root = etree.fromstring(request.body)
        envelopes = list(root) if root.tag.endswith("}Batch") else [root]
        answers = []
        for item in envelopes:
            document = item[1]
            definition = xml.DEFINITION_BY_NAMESPACE[document.tag[1:].partition("}")[0]]
            if self.validate:
                problem = (xml.validate(xml.HEAD, item[0])
                           or xml.validate(definition, document))
                if problem is not None:
                    self.invalid.append(f"{definition}: {problem}")
            self.counts[definition] = self.counts.get(definition, 0) + 1
            received = Received(definition, item, etree.tostring(item) if self.record else b"")
            if self.record:
                self.received.append(received)
            if definition in ("pacs.008.001.08", "pacs.004.001.10") and self.answer:
                answers.append(self._credit_answer(received))
        if answers:
            asyncio.ensure_future(self._send_answers(answers))
        return Response(200, b"")

    def _credit_answer(self, credit: Received) -> bytes:
        if credit.definition == "pacs.004.001.10":
            return pacs002(self.member, self.switch_member, credit.find("PmtRtr/GrpHdr/MsgId"),
                           "", credit.find("PmtRtr/TxInf/RtrId"), self.answer, self.reason,
                           "pacs.004.001.10")
        return pacs002(self.member, self.switch_member,
                       credit.find("FIToFICstmrCdtTrf/GrpHdr/MsgId"),
                       credit.find("FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/InstrId"),
                       credit.find("FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/TxId"), self.answer,
                       self.reason)

    async def _send_answers(self, answers: list[bytes]) -> None:
        # What one delivery asked for goes back as one request (a batch when several).
        try:
            await self._post_answers(answers)
        except HttpClientError:
            pass  # closed meanwhile (the end of a test or bench): the switch's timer decides

    async def _post_answers(self, answers: list[bytes]) -> None:
        if len(answers) == 1:
            await self.post(answers[0])
        else:
            await self.post(b'<Batch xmlns="urn:ponte:xsd:batch">' + b"".join(
                body[body.index(b"?>") + 2:] for body in answers) + b"</Batch>")

    def of(self, definition: str) -> list[Received]:
        return [item for item in self.received if item.definition == definition]

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self.server is not None:
            await self.server.close(500)
