"""A standby in the same event loop as its primary, both real servers on one PostgreSQL
database: the standby follows every tick into a warm core and ledger, takes over when the
primary's lock is released — re-sending held credit requests and answering every earlier
outcome — and a second primary is refused while one runs. A standby with other secrets
refuses to start. Operator view: /health and metrics give role, epoch and lag."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import json

import asyncpg
import pytest

from switch.app import take_over
from switch.core.messages import CreditRequest, FundsDeposited, PayeeAnswer, StatusQuery
from switch.core.results import TransferState
from switch.server.server import StartRefused
from switch.testing import onboard, start_test_server, start_test_standby

from test_server_recovery import ALIAS, Sink, transfer, until

pytestmark = pytest.mark.postgres

SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


def backends(dsn: str, **extra) -> dict:
    return {"journal": "postgres", "store": "postgres", "postgres_dsn": dsn, **SECRETS,
            "standby_poll_interval_ms": 20, **extra}


def fetch(server, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.admin_port}{path}",
                                timeout=10) as answer:
        return answer.read()


async def health(server) -> dict:
    # The admin port runs on this test's loop: read it from a thread.
    return json.loads(await asyncio.to_thread(fetch, server, "/health"))


async def metrics(server) -> str:
    return (await asyncio.to_thread(fetch, server, "/metrics")).decode()


async def test_a_standby_follows_and_takes_over_when_the_primary_is_gone(tmp_path,
                                                                         postgres_dsn):
    primary = await start_test_server(str(tmp_path / "primary"), **backends(postgres_dsn))
    standby = following = None
    try:
        participants = await onboard(primary, ["bank_a", "bank_b"])
        payer_id, payer_key = participants["bank_a"]
        payee_id = participants["bank_b"][0]
        await primary.gateway.register_alias(
            payee_id, alias_type="MSISDN", alias_value=ALIAS.alias_value,
            account_ref="acc-1", owner_national_id="1234567890", display_name="Jane Doe")
        payee = Sink()
        primary.gateway.attach(payee_id, payee)
        primary.gateway.submit(payer_id, transfer("before"))
        await until(lambda: len(payee.messages) == 1)
        primary.gateway.submit(payee_id, PayeeAnswer(payer_participant_id=payer_id,
                                                     transfer_id="before", accepted=True))
        await until(lambda: primary.core.in_flight_count == 0)

        standby = await start_test_standby(str(tmp_path / "standby"),
                                           **backends(postgres_dsn))
        assert standby.role == "standby" and standby.gateway is None
        assert standby.stream_port is None  # nothing listens for clients while following
        assert standby.durable_sequence == primary.durable_sequence
        assert standby.positions() == primary.positions()
        view = await health(standby)
        assert view["role"] == "standby" and view["accepting"] is False
        assert view["epoch"] == primary.epoch == 1
        following = asyncio.ensure_future(take_over(standby))

        # Live traffic on the primary reaches the standby's core and ledger.
        for transfer_id in ("in-flight", "done-live"):
            primary.gateway.submit(payer_id, transfer(transfer_id))
        await until(lambda: sum(type(m) is CreditRequest for m in payee.messages) == 3)
        primary.gateway.submit(payee_id, PayeeAnswer(payer_participant_id=payer_id,
                                                     transfer_id="done-live", accepted=True))
        await until(lambda: primary.core.in_flight_count == 1)
        # (The primary's core runs ahead of its durable journal by a tick or two.)
        await until(lambda: standby.durable_sequence == primary.durable_sequence
                    and standby.positions() == primary.positions())
        assert standby.core.in_flight_count == 1
        assert (await health(standby))["replay_lag_records"] == 0
        assert 'ponte_server_role{role="standby"} 1' in await metrics(standby)
        # The primary sees its standby's progress (reported about once a second).
        await until(lambda: primary.replication_status()["standbys"], 10)
        (seen,) = primary.replication_status()["standbys"]
        assert seen["applied_sequence"] <= primary.durable_sequence
        assert seen["lag_records"] == primary.durable_sequence - seen["applied_sequence"]
        assert not following.done()

        # A second primary is refused while this one holds the journal.
        with pytest.raises(StartRefused, match="--standby"):
            await start_test_server(str(tmp_path / "second"), **backends(postgres_dsn))

        # The primary is gone (its session ends, its lock with it): the standby takes over.
        positions = primary.positions()
        await primary.stop(drain_s=0)
        await asyncio.wait_for(following, 20)
        assert standby.role == "primary" and standby.epoch == 2
        assert standby.positions() == positions
        view = await health(standby)
        assert view["role"] == "primary" and view["accepting"] is True
        assert standby.stream_port  # listeners opened by the takeover
        gateway = standby.gateway
        assert gateway.authenticate(payer_key) == payer_id  # same pepper, same keys
        for transfer_id, state in (("before", TransferState.COMMITTED),
                                   ("done-live", TransferState.COMMITTED),
                                   ("in-flight", TransferState.FORWARDED)):
            outcome = await gateway.status(payer_id, StatusQuery(
                payer_participant_id=payer_id, transfer_id=transfer_id))
            assert outcome.state is state, transfer_id
        # The transfer in flight resumes: its credit request is held for the payee.
        payee_again = Sink()
        gateway.attach(payee_id, payee_again)
        assert [type(m) for m in payee_again.messages] == [CreditRequest]
        gateway.submit(payee_id, PayeeAnswer(payer_participant_id=payer_id,
                                             transfer_id="in-flight", accepted=True))
        await until(lambda: standby.core.in_flight_count == 0)
        # A resend of an old transfer is answered with its outcome, never decided again.
        resent = await gateway.status(payer_id, StatusQuery(payer_participant_id=payer_id,
                                                            transfer_id="in-flight"))
        assert resent.state is TransferState.COMMITTED
        connection = await asyncpg.connect(postgres_dsn)
        try:
            epochs = [row["epoch"] for row in await connection.fetch(
                "SELECT epoch FROM ledger_journal ORDER BY sequence")]
        finally:
            await connection.close()
        assert epochs == sorted(epochs) and epochs[-1] == 2
    finally:
        if following is not None:
            following.cancel()
            await asyncio.gather(following, return_exceptions=True)
        await primary.stop(drain_s=0)
        if standby is not None:
            await standby.stop(drain_s=0)


async def test_a_standby_with_other_secrets_refuses_to_start(tmp_path, postgres_dsn):
    primary = await start_test_server(str(tmp_path / "primary"), **backends(postgres_dsn))
    try:
        other = dict(backends(postgres_dsn), api_key_pepper="another-pepper-" + "x" * 20)
        with pytest.raises(StartRefused, match="api_key_pepper or directory_secret differ"):
            await start_test_standby(str(tmp_path / "standby"), **other)
    finally:
        await primary.stop(drain_s=0)


async def test_a_standby_stopped_before_a_takeover_writes_nothing(tmp_path, postgres_dsn):
    primary = await start_test_server(str(tmp_path / "primary"), **backends(postgres_dsn))
    standby = await start_test_standby(str(tmp_path / "standby"), **backends(postgres_dsn))
    following = asyncio.ensure_future(take_over(standby))
    await asyncio.sleep(0.2)
    following.cancel()
    await asyncio.gather(following, return_exceptions=True)
    await standby.stop()
    sequence = primary.durable_sequence
    assert primary.epoch == 1
    await primary.stop(drain_s=0)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        assert await connection.fetchval("SELECT epoch FROM journal_epochs") == 1
        assert await connection.fetchval("SELECT coalesce(max(sequence), 0) FROM "
                                         "ledger_journal") == sequence
    finally:
        await connection.close()
    _ = time  # the module's clock helpers come from test_server_recovery


async def test_a_primary_whose_epoch_was_taken_cannot_commit_and_stops(tmp_path,
                                                                       postgres_dsn):
    """The database refuses the fenced primary's next commit: nothing of it is written or
    released, and the server fails (a real process exits 70)."""
    primary = await start_test_server(str(tmp_path / "primary"), **backends(postgres_dsn))
    try:
        participants = await onboard(primary, ["bank_a", "bank_b"])
        payer_id = participants["bank_a"][0]
        durable = primary.durable_sequence
        connection = await asyncpg.connect(postgres_dsn)
        try:
            # Another writer took the journal (what a standby's promotion does).
            await connection.execute("UPDATE journal_epochs SET epoch = epoch + 1")
            # A deposit is journaled: its commit is the one the database refuses.
            deposit = asyncio.ensure_future(primary.gateway.admin(FundsDeposited(
                request_id="after-the-takeover", participant_id=payer_id, currency="KES",
                amount_minor=5)))
            await asyncio.wait_for(primary.wait_stopped(), 10)
            assert primary.failed
            assert "JournalFenced" in repr(primary.sequencer.failed)
            assert (await asyncio.wait_for(deposit, 10)).result.name == "INTERNAL_SERVER_ERROR"
            assert await connection.fetchval(
                "SELECT max(sequence) FROM ledger_journal") == durable
        finally:
            await connection.close()
    finally:
        await primary.stop(drain_s=0)


async def test_a_standby_with_a_bad_connector_table_is_refused_at_its_start(tmp_path):
    """Not at its takeover, when the listeners open: the table is checked before anything
    (no database is contacted: the DSN here points nowhere)."""
    data_dir = tmp_path / "standby"
    with pytest.raises(ValueError, match=r"^\[fspiop\] .*tls_cert and tls_key go together"):
        await start_test_standby(str(data_dir), **backends("postgresql://127.0.0.1:1/none"),
                                 fspiop_enabled=True,
                                 fspiop={"port": 0, "tls_cert": "server.pem"})
    assert not data_dir.exists()
