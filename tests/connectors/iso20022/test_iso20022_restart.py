"""What a bank would notice after the switch restarts must not break: the parties and
references a payer bank's pacs.008 carried, the references of what the switch sent (a
credit's MsgId, a long id's reference), recalls waiting for their answer, the BizMsgIdr
window and the camt.052 sequence all survive, in the connector's store
(connectors/iso20022/state.py) under the data directory.

An in-process switch (switch.testing) stopped and started again on its data directory, or
with PostgreSQL in another data directory; and a real switch process
(switch.launcher.SwitchProcess) killed with SIGKILL and started again."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from connectors.iso20022.bank import Bank, pacs002
from switch.core.messages import Party, StatusQuery, TransferRequest
from switch.core.results import Result, TransferState
from switch.launcher import SwitchProcess, free_port, sim_server_config
from switch.testing import onboard, start_test_server

from iso_helpers import SWITCH, eventually, sample

MEMBER_A = "BANKA001"
MEMBER_B = "BANKB002"
ALIAS_B = "+254711000002"
P8 = "FIToFICstmrCdtTrf/CdtTrfTxInf/"
P2 = "FIToFIPmtStsRpt/TxInfAndSts/"
RPT = "BkToCstmrAcctRpt/Rpt/"
LONG_ID = "wallet-c-transfer-with-an-id-longer-than-thirty-five-chars"


def iso_table(port: int, bank_a: Bank, bank_b: Bank) -> dict:
    return {"port": port, "switch_member_id": SWITCH, "validate_outbound": True,
            "banks": [{"participant_id": 1, "member_id": MEMBER_A,
                       "endpoint_url": bank_a.endpoint_url, "notifications": ["camt.052"],
                       "report_interval_ms": 1_000},
                      {"participant_id": 2, "member_id": MEMBER_B,
                       "endpoint_url": bank_b.endpoint_url}],
            "delivery": {"backoff_ms_min": 10, "backoff_ms_max": 200}}


def kes(body: bytes) -> bytes:
    return body.replace(b'Ccy="BRL"', b'Ccy="KES"')


def pacs008(tx_id: str, **values) -> bytes:
    return kes(sample("pacs.008-proxy.xml", TX=tx_id, AMOUNT="25.00", PROXY=ALIAS_B,
                      CDTR_AGT=MEMBER_B, **values))


def credit_of(bank: Bank, tx_id: str):
    found = [item for item in bank.of("pacs.008.001.08") if item.find(P8 + "PmtId/TxId") == tx_id]
    return found


def answer(credit, status: str = "ACCP") -> bytes:
    """Bank B's pacs.002 naming the credit by its MsgId and TxId only (no InstrId: the
    switch must remember what it sent)."""
    return pacs002(MEMBER_B, SWITCH, credit.find("FIToFICstmrCdtTrf/GrpHdr/MsgId"), "",
                   credit.find(P8 + "PmtId/TxId"), status)


def camt029(case_id: str) -> bytes:
    return kes(sample("camt.029.xml", CASE=case_id, CONF="CNCL", STS="ACCR", REASON=""))


def final_status(bank: Bank, tx_id: str):
    for item in bank.of("pacs.002.001.10"):
        if item.find(P2 + "OrgnlTxId") == tx_id and item.find(P2 + "TxSts") in ("ACSC", "RJCT"):
            return item
    return None


# -- an in-process switch, stopped and started again ---------------------------------------


SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


@pytest.fixture(params=["file", pytest.param("postgres", marks=pytest.mark.postgres)])
def backends(request) -> dict:
    """The switch's backends: the data directory's files, or PostgreSQL for the journal
    and the stores (fixed secrets: a switch in another data directory shares them)."""
    if request.param == "file":
        return {}
    return {"journal": "postgres", "store": "postgres",
            "postgres_dsn": request.getfixturevalue("postgres_dsn"), **SECRETS}


async def test_what_banks_rely_on_survives_a_restart(tmp_path, backends):
    # On PostgreSQL the switch starts again in another data directory, as a standby or a
    # primary on another machine would: the store must be in the database.
    data_dirs = iter([str(tmp_path / "switch"),
                      str(tmp_path / ("elsewhere" if backends else "switch"))])
    bank_a = Bank(MEMBER_A, SWITCH)
    bank_b = Bank(MEMBER_B, SWITCH, answer=None)  # answers by hand
    await bank_a.start()
    await bank_b.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    async def start():
        return await start_test_server(next(data_dirs), iso20022_enabled=True,
                                       iso20022=iso_table(port, bank_a, bank_b), **backends)

    server = await start()
    try:
        participants = await onboard(server, ["bank_a", "bank_b", "wallet_c"])
        assert [participants[name][0] for name in ("bank_a", "bank_b", "wallet_c")] == [1, 2, 3]
        bank_a.connect(url, participants["bank_a"][1])
        bank_b.connect(url, participants["bank_b"][1])
        registered = await server.gateway.register_alias(
            2, alias_type="MSISDN", alias_value=ALIAS_B, account_ref="ACC-B-1",
            owner_national_id="1234567890", display_name="Maria Silva")
        assert registered.result is Result.OK

        # A settled transfer, reported in camt.052 #1, and a recall of it now with bank B.
        status, body = await bank_a.post(pacs008("TX-SETTLED"))
        assert status == 202, body
        await eventually(lambda: credit_of(bank_b, "TX-SETTLED"))
        status, body = await bank_b.post(answer(credit_of(bank_b, "TX-SETTLED")[0]))
        assert status == 202, body
        await eventually(lambda: final_status(bank_a, "TX-SETTLED"))
        await eventually(lambda: bank_a.of("camt.052.001.08"))
        (report,) = bank_a.of("camt.052.001.08")
        assert report.find(RPT + "ElctrncSeqNb") == "1"
        recall = kes(sample("camt.056.xml", TX="TX-SETTLED", CASE="CASE-1"))
        status, body = await bank_a.post(recall)
        assert status == 202, body
        await eventually(lambda: bank_b.of("camt.056.001.08"))
        case_id = bank_b.of("camt.056.001.08")[0].find("FIToFIPmtCxlReq/Case/Id")

        # A transfer bank B has not answered yet, with the payer bank's parties.
        pending = pacs008("TX-PENDING")
        status, body = await bank_a.post(pending)
        assert status == 202, body
        await eventually(lambda: credit_of(bank_b, "TX-PENDING"))
        (before,) = credit_of(bank_b, "TX-PENDING")
        assert before.find(P8 + "Dbtr/Nm") == "Ana Costa & Filhos"

        # A transfer from a participant whose ids do not fit ISO's 35 characters.
        result = server.gateway.submit(3, TransferRequest(
            transfer_id=LONG_ID, payee=Party(alias_type="MSISDN", alias_value=ALIAS_B),
            amount_minor=700, currency="KES", expires_at_ns=time.time_ns() + 60 * 10**9))
        assert result is Result.OK
        await eventually(lambda: len(bank_b.of("pacs.008.001.08")) == 3)
        (long_credit,) = [item for item in bank_b.of("pacs.008.001.08")
                          if item.find(P8 + "PmtId/InstrId") == "3"]
        assert len(long_credit.find(P8 + "PmtId/TxId")) <= 35
    finally:
        await server.stop(drain_s=0.2)

    bank_b.received.clear()
    server = await start()
    try:
        # The credit still waiting is sent again, as before: same BizMsgIdr, same parties.
        await eventually(lambda: credit_of(bank_b, "TX-PENDING"))
        (again,) = credit_of(bank_b, "TX-PENDING")
        assert again.biz_msg_id == before.biz_msg_id
        assert again.find(P8 + "Dbtr/Nm") == "Ana Costa & Filhos"
        assert again.find(P8 + "Dbtr/PstlAdr/TwnNm") == "Sao Paulo"
        assert again.find(P8 + "RmtInf/Ustrd") == "Invoice 2024-17"
        # Bank B answers it by MsgId: the payer bank's pacs.002 quotes its own message.
        status, body = await bank_b.post(answer(again))
        assert status == 202, body
        await eventually(lambda: final_status(bank_a, "TX-PENDING"))
        final = final_status(bank_a, "TX-PENDING")
        assert final.find(P2 + "TxSts") == "ACSC"
        assert final.find(P2 + "OrgnlGrpInf/OrgnlMsgId").startswith("M")  # bank A's MsgId
        assert final.find(P2 + "OrgnlEndToEndId") == "E2E-TX-PENDING"
        assert final.root[0].findtext("{*}Rltd/{*}BizMsgIdr") is not None
        # The long id's reference still names its transfer.
        long_again = [item for item in bank_b.of("pacs.008.001.08")
                      if item.find(P8 + "PmtId/InstrId") == "3"][0]
        status, body = await bank_b.post(answer(long_again))
        assert status == 202, body
        await eventually(lambda: server.positions()[2]["KES"]["credits_posted"] > 10**12 + 5_000)
        outcome = await server.gateway.status(3, StatusQuery(payer_participant_id=3,
                                                             transfer_id=LONG_ID))
        assert outcome.state is TransferState.COMMITTED
        # The recall asked before the restart is answered after it.
        status, body = await bank_b.post(camt029(case_id))
        assert status == 202, body
        await eventually(lambda: bank_a.of("camt.029.001.09"))
        assert bank_a.of("camt.029.001.09")[0].find(
            "RsltnOfInvstgtn/RslvdCase/Id") == "CASE-1"
        # The BizMsgIdr window: the recall sent again is acknowledged, not forwarded again;
        # the pending transfer's BizMsgIdr on another payment is refused.
        status, body = await bank_a.post(recall)
        assert (status, body) == (202, b"")
        reused_biz = pending.split(b"<h:BizMsgIdr>")[1].split(b"<")[0].decode()
        status, body = await bank_a.post(pacs008("TX-OTHER", BIZ=reused_biz))
        assert status == 400 and b"DUPL" in body
        answer_other = await server.gateway.status(1, StatusQuery(payer_participant_id=1,
                                                                  transfer_id="TX-OTHER"))
        assert answer_other.result is Result.TRANSFER_NOT_FOUND
        # camt.052 goes on counting: #2, not a second #1 the bank would drop as a resend.
        await eventually(lambda: len(bank_a.of("camt.052.001.08")) == 2)
        second = bank_a.of("camt.052.001.08")[1]
        assert second.find(RPT + "ElctrncSeqNb") == "2"
        assert second.biz_msg_id != report.biz_msg_id
        await asyncio.sleep(0.1)
        assert bank_b.of("camt.056.001.08") == []
        # Pruned once no longer needed: no passthrough, no open recall, no credit kind.
        state = server.iso20022_connector.state
        assert (len(state.passthrough), len(state.recalls), len(state.credits)) == (0, 0, 0)
        assert bank_a.invalid == [] and bank_b.invalid == []
    finally:
        await bank_a.close()
        await bank_b.close()
        await server.stop(drain_s=0.2)


# -- a real switch process, killed -------------------------------------------------------


async def onboard_banks(switch: SwitchProcess, config: dict, url: str, bank_a: Bank,
                        bank_b: Bank) -> None:
    """KES, bank A (participant 1) and bank B (2), funded, connected to the switch's ISO
    port at `url`; bank B's customer's alias ALIAS_B registered through the HTTP API."""
    from connectors.sdk.http_client import HttpClient

    await asyncio.to_thread(switch.add_currency, "KES", 404)
    keys = {}
    for name in ("bank_a", "bank_b"):
        created = await asyncio.to_thread(switch.onboard_participant, name, "bank",
                                          ["KES"], funding_minor=10**12)
        keys[created["participant_id"]] = created["api_key"]
    assert sorted(keys) == [1, 2]
    bank_a.connect(url, keys[1])
    bank_b.connect(url, keys[2])
    client = HttpClient(f"http://127.0.0.1:{config['http']['port']}", keys[2])
    await client.connect()
    await client.register_alias(alias_type="MSISDN", alias_value=ALIAS_B,
                                account_ref="ACC-B-1", owner_national_id="1234567890",
                                display_name="Maria Silva")
    await client.close()


@pytest.mark.slow
async def test_what_banks_rely_on_survives_a_sigkill(tmp_path):
    bank_a = Bank(MEMBER_A, SWITCH)
    bank_b = Bank(MEMBER_B, SWITCH, answer=None)
    await bank_a.start()
    await bank_b.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = sim_server_config(str(tmp_path / "switch"), iso20022_enabled=True,
                               iso20022=iso_table(port, bank_a, bank_b), http_enabled=True,
                               http={"port": free_port()})
    switch = SwitchProcess(config)
    try:
        await asyncio.to_thread(switch.start)
        await onboard_banks(switch, config, url, bank_a, bank_b)
        # Settled, then recalled (the recall waits for bank B); another one pending.
        status, body = await bank_a.post(pacs008("TX-K1"))
        assert status == 202, body
        await eventually(lambda: credit_of(bank_b, "TX-K1"))
        status, body = await bank_b.post(answer(credit_of(bank_b, "TX-K1")[0]))
        assert status == 202, body
        await eventually(lambda: final_status(bank_a, "TX-K1"))
        recall = kes(sample("camt.056.xml", TX="TX-K1", CASE="CASE-K1"))
        status, body = await bank_a.post(recall)
        assert status == 202, body
        await eventually(lambda: bank_b.of("camt.056.001.08"))
        case_id = bank_b.of("camt.056.001.08")[0].find("FIToFIPmtCxlReq/Case/Id")
        status, body = await bank_a.post(pacs008("TX-K2"))
        assert status == 202, body
        await eventually(lambda: credit_of(bank_b, "TX-K2"))
        (before,) = credit_of(bank_b, "TX-K2")

        await asyncio.to_thread(switch.kill)  # no shutdown, no flush
        bank_b.received.clear()
        await asyncio.to_thread(switch.start)

        await eventually(lambda: credit_of(bank_b, "TX-K2"), seconds=30)
        (again,) = credit_of(bank_b, "TX-K2")
        assert again.biz_msg_id == before.biz_msg_id
        assert again.find(P8 + "Dbtr/Nm") == "Ana Costa & Filhos"
        status, body = await bank_b.post(answer(again))
        assert status == 202, body
        await eventually(lambda: final_status(bank_a, "TX-K2"))
        assert final_status(bank_a, "TX-K2").find(P2 + "OrgnlEndToEndId") == "E2E-TX-K2"
        status, body = await bank_b.post(camt029(case_id))
        assert status == 202, body
        await eventually(lambda: bank_a.of("camt.029.001.09"))
        status, body = await bank_a.post(recall)  # a resend: acknowledged, not forwarded
        assert (status, body) == (202, b"")
        await asyncio.sleep(0.1)
        assert bank_b.of("camt.056.001.08") == []
        positions = await asyncio.to_thread(switch.positions)
        assert positions[2]["accounts"]["KES"]["credits_posted"] == 10**12 + 5_000
        assert bank_a.invalid == [] and bank_b.invalid == []
        with open(os.path.join(config["data_dir"], "iso20022", "state.log"), "rb") as file:
            assert b"1234567890" not in file.read()  # no national ID in the store
    finally:
        await bank_a.close()
        await bank_b.close()
        await asyncio.to_thread(switch.stop)
