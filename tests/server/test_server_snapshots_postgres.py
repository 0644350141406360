"""Server snapshots of a PostgreSQL journal live in the database (table switch_snapshot),
shared by every switch of the journal: a primary restarted on another machine (an empty
data_dir) and a standby both start from the newest one and replay only the journal after
it; a damaged newest row is skipped, loudly, for the one before. Real PostgreSQL, real
forked snapshot writers."""

from __future__ import annotations

import logging

import asyncpg
import pytest

from switch.core.messages import StatusQuery
from switch.core.results import TransferState
from switch.testing import onboard, start_test_server, start_test_standby

from test_server_snapshots import SMALL, pay, wait_for_snapshots

pytestmark = pytest.mark.postgres

SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


def backends(dsn: str) -> dict:
    settings = {key: value for key, value in SMALL.items()
                if not key.startswith("journal_")}  # segments are the file journal's
    return {"journal": "postgres", "store": "postgres", "postgres_dsn": dsn, **SECRETS,
            "standby_poll_interval_ms": 20, **settings}


async def snapshot_rows(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        return [row["sequence"] for row in await connection.fetch(
            "SELECT sequence FROM switch_snapshot WHERE journal_name = 'switch' "
            "ORDER BY sequence DESC")]
    finally:
        await connection.close()


async def first_life(tmp_path, dsn: str):
    """A primary pays 400 transfers while snapshots are taken into the table."""
    server = await start_test_server(str(tmp_path / "first"), **backends(dsn))
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        outcomes = await pay(server, participants, "first", 400)
        assert all(o.state is TransferState.COMMITTED for o in outcomes)
        await wait_for_snapshots(server, 3)
        positions = server.positions()
        head = server.durable_sequence
    finally:
        await server.stop(drain_s=0)
    return participants, positions, head


async def answers_first(server, payer_id: int) -> set:
    states = set()
    for transfer_id in ("first-0", "first-199", "first-399"):
        outcome = await server.gateway.status(payer_id, StatusQuery(
            payer_participant_id=payer_id, transfer_id=transfer_id))
        states.add(outcome.state)
    return states


async def test_a_primary_on_an_empty_data_dir_starts_from_the_newest_table_snapshot(
        tmp_path, postgres_dsn, caplog):
    participants, positions, head = await first_life(tmp_path, postgres_dsn)
    rows = await snapshot_rows(postgres_dsn)
    assert len(rows) == SMALL["snapshots_retained"] and 0 < rows[0] <= head

    # Another machine: nothing of the first one's data_dir.
    server = await start_test_server(str(tmp_path / "second"), **backends(postgres_dsn))
    try:
        assert server.recovered_from_sequence == rows[0]
        assert server.snapshots.status.skipped_at_start == 0
        assert server.positions() == positions
        assert await answers_first(server, participants["bank_a"][0]) == {
            TransferState.COMMITTED}
        more = await pay(server, participants, "second", 200)  # and snapshots again
        assert all(o.state is TransferState.COMMITTED for o in more)
        await wait_for_snapshots(server, 1)
        positions = server.positions()
    finally:
        await server.stop(drain_s=0)
    newer = await snapshot_rows(postgres_dsn)
    assert newer[0] > rows[0] and len(newer) == SMALL["snapshots_retained"]

    # The newest row damaged (one byte of its state): skipped, loudly, for the one before.
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(
            "UPDATE switch_snapshot SET data = overlay(data placing '\\xff'::bytea "
            "from octet_length(data) - 10) WHERE sequence = $1", newer[0])
    finally:
        await connection.close()
    caplog.set_level(logging.ERROR, logger="ponte.server")
    server = await start_test_server(str(tmp_path / "third"), **backends(postgres_dsn))
    try:
        assert server.recovered_from_sequence == newer[1]
        assert server.snapshots.status.skipped_at_start == 1
        assert server.positions() == positions
        assert await answers_first(server, participants["bank_a"][0]) == {
            TransferState.COMMITTED}
    finally:
        await server.stop(drain_s=0)
    skipped = [r.getMessage() for r in caplog.records if "snapshot_skipped" in r.getMessage()]
    assert any(f"switch_snapshot/switch/{newer[0]}" in m and "state hash mismatch" in m
               for m in skipped), skipped


async def test_a_standby_starts_from_the_primarys_table_snapshot(tmp_path, postgres_dsn):
    participants, positions, head = await first_life(tmp_path, postgres_dsn)
    rows = await snapshot_rows(postgres_dsn)
    primary = await start_test_server(str(tmp_path / "primary"), **backends(postgres_dsn))
    standby = None
    try:
        standby = await start_test_standby(str(tmp_path / "standby"), **backends(postgres_dsn))
        assert standby.role == "standby"
        assert standby.recovered_from_sequence == rows[0]
        assert standby.replayed_events < 400  # only the tail (the 400 paid made ≥ 1,200)
        assert standby.durable_sequence == primary.durable_sequence
        assert standby.positions() == primary.positions() == positions
    finally:
        if standby is not None:
            await standby.stop(drain_s=0)
        await primary.stop(drain_s=0)
