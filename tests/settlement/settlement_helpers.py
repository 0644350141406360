"""Helpers for the settlement tests: the ISO 20022 schemas to validate against, a switch
with a deferred-net currency and paying participants, and RTGS answers as the RTGS writes
them."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from lxml import etree

from connectors.sdk import Decision
from connectors.sdk.stream_client import StreamClient
from switch.admin.bootstrap import add_currency, add_participant
from switch.core.messages import AliasRegistration, Party, SchemeRules, TransferRequest
from switch.core.results import SettlementModel

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI") == "true"
KES = "KES"
KES_LEDGER = 404
RULES = SchemeRules(fee_fixed_minor=2, fee_bps=10)


def xsd_dir() -> Path:
    """The ISO 20022 schemas: where PONTE_ISO20022_XSD_DIR says, else the shared copy beside
    the repository (`../shared/iso20022/xsd` from the main checkout, any ancestor's
    `shared/iso20022/xsd` from a worktree), else the copy the ISO 20022 connector ships
    (`connectors/iso20022/xsd`)."""
    named = os.environ.get("PONTE_ISO20022_XSD_DIR")
    if named:
        return Path(named)
    for parent in ROOT.parents:
        candidate = parent / "shared" / "iso20022" / "xsd"
        if (candidate / "pacs.009.001.08.xsd").exists():
            return candidate
    shipped = ROOT / "connectors" / "iso20022" / "xsd"
    if (shipped / "pacs.009.001.08.xsd").exists():
        return shipped
    message = "no ISO 20022 schemas (shared/iso20022/xsd, connectors/iso20022/xsd)"
    if IN_CI:
        pytest.fail(message + " — CI requires them", pytrace=False)
    pytest.skip(message + " — skipped outside CI")


_schemas: dict[str, etree.XMLSchema] = {}


def assert_valid(document: bytes, message: str) -> etree._Element:
    """`document` parsed and validated with lxml against the ISO 20022 schema `message`."""
    schema = _schemas.get(message)
    if schema is None:
        schema = _schemas[message] = etree.XMLSchema(etree.parse(str(xsd_dir() /
                                                                     f"{message}.xsd")))
    root = etree.fromstring(document)
    if not schema.validate(root):
        raise AssertionError(f"not valid against {message}: {schema.error_log}")
    return root


def pacs002(original_message_id: str, *, group: str = "", transactions=(),
            message_id: str = "RTGS-20240501-0001", group_reason: str = "") -> bytes:
    """An RTGS answer: `transactions` is [(instruction id, status, reason code)]."""
    group_status = f"<GrpSts>{group}</GrpSts>" if group else ""
    if group_reason:
        group_status += f"<StsRsnInf><Rsn><Cd>{group_reason}</Cd></Rsn></StsRsnInf>"
    rows = "".join(
        f"<TxInfAndSts><OrgnlInstrId>{ident}</OrgnlInstrId><OrgnlEndToEndId>{ident}"
        f"</OrgnlEndToEndId><TxSts>{status}</TxSts>"
        + (f"<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn></StsRsnInf>" if reason else "")
        + "</TxInfAndSts>" for ident, status, reason in transactions)
    return (f'<?xml version="1.0" encoding="UTF-8"?><Document xmlns="urn:iso:std:iso:20022:'
            f'tech:xsd:pacs.002.001.10"><FIToFIPmtStsRpt><GrpHdr><MsgId>{message_id}</MsgId>'
            f"<CreDtTm>2024-05-01T12:00:00.000Z</CreDtTm></GrpHdr><OrgnlGrpInfAndSts>"
            f"<OrgnlMsgId>{original_message_id}</OrgnlMsgId>"
            f"<OrgnlMsgNmId>pacs.009.001.08</OrgnlMsgNmId>{group_status}</OrgnlGrpInfAndSts>"
            f"{rows}</FIToFIPmtStsRpt></Document>").encode()


async def deferred_net_world(server, names=("bank_a", "bank_b", "bank_c"),
                             cap_minor: int = 10**9) -> dict[str, tuple[int, str]]:
    """KES as a deferred-net currency; participants with a cap; {name: (id, api key)}."""
    await add_currency(server, KES, KES_LEDGER, SettlementModel.DEFERRED_NET, rules=RULES)
    created = {}
    for name in names:
        participant = await add_participant(server, name, "bank", [KES],
                                            net_debit_cap_minor=cap_minor)
        created[name] = (participant.participant_id, participant.api_key)
    return created


def alias_of(participant_id: int) -> Party:
    return Party(alias_type="MSISDN", alias_value=f"+2547000{participant_id:05d}")


class Payers:
    """A stream connection per participant, each accepting every credit request, each with
    an alias: `pay(payer, payee, amount)` commits a transfer."""

    def __init__(self) -> None:
        self.clients: dict[str, StreamClient] = {}
        self.ids: dict[str, int] = {}
        self.sequence = 0

    @classmethod
    async def connect(cls, server, participants: dict[str, tuple[int, str]]) -> Payers:
        payers = cls()
        for name, (participant_id, api_key) in participants.items():
            client = await StreamClient.connect("127.0.0.1", server.stream_port, api_key=api_key,
                                                on_credit_request=lambda cr: Decision(True))
            answer = await client.register_aliases([AliasRegistration(
                alias_type="MSISDN", alias_value=alias_of(participant_id).alias_value,
                account_ref=f"acc-{participant_id}",
                owner_national_id=f"{1000000000 + participant_id}", display_name="Jane Doe")])
            assert answer.registered == 1, answer
            payers.clients[name] = client
            payers.ids[name] = participant_id
        return payers

    def submit(self, payer: str, payee: str, amount_minor: int, end_to_end_id: str = ""):
        self.sequence += 1
        return self.clients[payer].submit_transfer(TransferRequest(
            transfer_id=f"t-{payer}-{self.sequence}", payee=alias_of(self.ids[payee]),
            amount_minor=amount_minor, currency=KES, expires_at_ns=time.time_ns() + 30 * 10**9,
            end_to_end_id=end_to_end_id, payer_user_ref=f"user-{self.sequence % 7}"))

    async def pay(self, payer: str, payee: str, amount_minor: int, end_to_end_id: str = ""):
        return await asyncio.wait_for(self.submit(payer, payee, amount_minor, end_to_end_id),
                                      20)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()
