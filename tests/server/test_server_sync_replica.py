"""The PostgreSQL journal on a primary with a synchronous streaming replica, for real: two
clusters made by the test (`switch.replica.ReplicaPair`: pg_createcluster + pg_basebackup)
and dropped after it. With `synchronous_standby_names` and `synchronous_commit =
remote_apply`, every record the switch acknowledged is already applied on the replica; the
database primary then crashes, the replica is promoted, and a switch started on it answers
every acknowledged outcome with the same books."""

from __future__ import annotations

import os

import asyncpg
import pytest

from switch.core.messages import CreditRequest, PayeeAnswer, StatusQuery
from switch.core.results import TransferState
from switch.replica import ReplicaPair, tools_available
from switch.testing import onboard, start_test_server

from test_server_recovery import ALIAS, Sink, transfer, until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


@pytest.fixture
def pair():
    if not tools_available():
        message = "pg_createcluster and friends are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " — CI requires them", pytrace=False)
        pytest.skip(message)
    with ReplicaPair() as made:
        yield made


async def fetchval(dsn: str, sql: str):
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


async def test_acknowledged_records_are_on_the_sync_replica_and_survive_the_primary(
        tmp_path, pair):
    pair.synchronous(True)
    assert pair.sync_state() == "sync"
    config = {"journal": "postgres", "store": "postgres", **SECRETS}
    server = await start_test_server(str(tmp_path / "first"), postgres_dsn=pair.dsn(),
                                     **config)
    try:
        assert await fetchval(pair.dsn(), "SHOW synchronous_commit") == "remote_apply"
        participants = await onboard(server, ["bank_a", "bank_b"])
        payer_id, payee_id = participants["bank_a"][0], participants["bank_b"][0]
        await server.gateway.register_alias(
            payee_id, alias_type="MSISDN", alias_value=ALIAS.alias_value,
            account_ref="acc-1", owner_national_id="1234567890", display_name="Jane Doe")
        payee = Sink()
        server.gateway.attach(payee_id, payee)
        transfer_ids = [f"sync-{i}" for i in range(10)]
        for transfer_id in transfer_ids:
            server.gateway.submit(payer_id, transfer(transfer_id))
        await until(lambda: sum(type(m) is CreditRequest for m in payee.messages) == 10, 30)
        for transfer_id in transfer_ids:
            server.gateway.submit(payee_id, PayeeAnswer(
                payer_participant_id=payer_id, transfer_id=transfer_id, accepted=True))
        await until(lambda: server.core.in_flight_count == 0, 30)
        acknowledged = [await server.gateway.status(payer_id, StatusQuery(
            payer_participant_id=payer_id, transfer_id=transfer_id))
            for transfer_id in transfer_ids]
        assert all(outcome.state is TransferState.COMMITTED for outcome in acknowledged)
        durable = server.durable_sequence
        positions = server.positions()
        # Acknowledged means applied on the replica already (remote_apply).
        on_replica = await fetchval(pair.replica_dsn(), "SELECT max(sequence) FROM "
                                    "ledger_journal WHERE journal_name = 'switch'")
        assert on_replica == durable
    finally:
        pair.crash_primary()  # the database machine is lost
        try:
            await server.stop(drain_s=0)
        except Exception:  # noqa: BLE001 - its database is gone; nothing more to write
            pass
    pair.promote_replica()
    survivor = await start_test_server(str(tmp_path / "second"),
                                       postgres_dsn=pair.replica_dsn(), **config)
    try:
        assert survivor.durable_sequence == durable
        assert survivor.positions() == positions
        answers = [await survivor.gateway.status(payer_id, StatusQuery(
            payer_participant_id=payer_id, transfer_id=transfer_id))
            for transfer_id in transfer_ids]
        assert answers == acknowledged
        assert survivor.epoch == 2  # a new writer of the same journal
    finally:
        await survivor.stop(drain_s=0)
