"""A PostgreSQL journal through days of traffic, for real: a switch process writes into
small partitions while it takes snapshots into switch_snapshot; `ponte journal archive`
moves the partitions those snapshots cover out to segment files while it keeps paying;
`ponte journal verify` checks the chain (from the genesis through the files, or from the
table's anchored first row), every snapshot row and the ledger's invariants on a core it
rebuilds, and names a damaged segment or snapshot row; a switch restarted on an empty
data_dir recovers from the snapshot row; `ponte journal restore` puts the archive back into
another database so a full replay from the genesis works again.

Real PostgreSQL, real switch processes, the real `ponte` command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import asyncpg
import pytest

from ledger.journal_segments import list_segments
from switch.launcher import SwitchProcess, sim_server_config
from switch.store.migrate import migrate_dsn

from test_server_snapshots import pay

pytestmark = pytest.mark.postgres

SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}
PARTITION_RECORDS = 16  # the least allowed: a few hundred transfers fill several
SNAPSHOTS = {"snapshot_every_events": 150, "snapshot_every_s": 3600.0,
             "snapshots_retained": 2}


def ponte(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switch.cli", *args], capture_output=True,
                          text=True, timeout=300)


async def rows(dsn: str, query: str, *args):
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetch(query, *args)
    finally:
        await connection.close()


async def prepared_database(dsn: str) -> None:
    """Migrated, with partitions small enough for a few hundred transfers to fill several."""
    await migrate_dsn(dsn)
    await rows(dsn, "UPDATE ledger_journal_settings SET journal_partition_records = $1",
               PARTITION_RECORDS)


def start_switch(tmp_path, name: str, dsn: str) -> SwitchProcess:
    config = sim_server_config(str(tmp_path / name), journal="postgres", store="postgres",
                               postgres_dsn=dsn, **SECRETS, **SNAPSHOTS)
    switch = SwitchProcess(config).start()
    # The console opens last, just before the process takes SIGTERM for a graceful stop:
    # once it answers, a stop is graceful (exit 0).
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(switch.console_url, timeout=5).close()
            return switch
        except urllib.error.HTTPError:
            return switch
        except OSError:
            assert time.monotonic() < deadline, switch.log_tail()
            time.sleep(0.05)


def onboard(switch: SwitchProcess) -> dict[str, tuple[int, str]]:
    switch.add_currency("KES", 404)
    participants = {}
    for name in ("bank_a", "bank_b"):
        created = switch.onboard_participant(name, "bank", ["KES"], funding_minor=10**12)
        participants[name] = (created["participant_id"], created["api_key"])
    return participants


def wait_for_snapshot_rows(dsn: str, count: int, after: int = 0) -> list[int]:
    deadline = time.monotonic() + 60
    while True:
        found = [row["sequence"] for row in asyncio.run(rows(
            dsn, "SELECT sequence FROM switch_snapshot WHERE journal_name = 'switch' "
                 "AND sequence > $1 ORDER BY sequence DESC", after))]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def verify(dsn: str, *extra: str) -> subprocess.CompletedProcess:
    return ponte("journal", "verify", "--postgres-dsn", dsn, *extra)


def verified(dsn: str, *extra: str) -> dict:
    result = verify(dsn, "--json", *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["invariants"], report
    assert report["snapshots"] and not any(s["problem"] for s in report["snapshots"])
    return report


def paid(switch: SwitchProcess, participants, prefix: str, count: int) -> None:
    outcomes = asyncio.run(pay(switch, participants, prefix, count))
    assert all(outcome.state.name == "COMMITTED" for outcome in outcomes)


def test_archive_under_traffic_then_verify_and_a_restart_from_the_snapshot_row(
        tmp_path, postgres_dsn):
    asyncio.run(prepared_database(postgres_dsn))
    archive_dir = str(tmp_path / "archive")
    switch = start_switch(tmp_path, "first", postgres_dsn)
    try:
        participants = onboard(switch)
        paid(switch, participants, "first", 800)
        wait_for_snapshot_rows(postgres_dsn, 2)
        # Archived while the switch is running (and it pays on after).
        archived = ponte("journal", "archive", "--postgres-dsn", postgres_dsn,
                         "--to", archive_dir)
        assert archived.returncode == 0, archived.stdout + archived.stderr
        assert "detached and kept ledger_journal_detached_" in archived.stdout
        # The switch snapshots on while idle, dropping its oldest: what was retained when
        # the archive ran is at least as old as what is retained now.
        retained = wait_for_snapshot_rows(postgres_dsn, 1)
        paid(switch, participants, "second", 100)
        positions = switch.positions()
    finally:
        assert switch.stop() == 0
    segments = list_segments(os.path.join(archive_dir, "switch"))
    assert len(segments) >= 2 and all(segment.archived for segment in segments)
    first_row = asyncio.run(rows(postgres_dsn, "SELECT min(sequence) AS first FROM "
                                               "ledger_journal"))[0]["first"]
    assert first_row > 1 and first_row - 1 <= min(retained)

    # The table alone (anchored on the archive's record of its last segment), then from the
    # genesis through the files: the same head, snapshots checked, a core rebuilt.
    alone = verified(postgres_dsn)
    assert "archived segment seg-" in alone["anchor"]
    through = verified(postgres_dsn, "--archive", archive_dir)
    assert through["anchor"].startswith("genesis")
    assert through["head_hash"] == alone["head_hash"]
    assert through["records"] == alone["head_sequence"] == alone["records"] + first_row - 1
    assert through["rebuilt_from"] == alone["rebuilt_from"] > 0
    inspect = ponte("journal", "inspect", "--postgres-dsn", postgres_dsn, "--archive",
                    archive_dir, "--count", "2")
    assert inspect.returncode == 0, inspect.stderr
    assert "#1 " in inspect.stdout and "CurrencyAdded" in inspect.stdout

    # Another machine (an empty data_dir): it starts from the newest snapshot row, whose
    # tail is all in the table, and goes on paying.
    again = start_switch(tmp_path, "second", postgres_dsn)
    try:
        health = again.get("/health")
        newest = wait_for_snapshot_rows(postgres_dsn, 1)[0]
        assert health["recovered_from_sequence"] == newest
        assert again.positions() == positions
        paid(again, participants, "third", 50)
    finally:
        assert again.stop() == 0
    verified(postgres_dsn, "--archive", archive_dir)

    # A damaged archived segment is named; a damaged snapshot row is named by its sequence.
    segment = segments[0]
    data = bytearray(open(segment.path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    with open(segment.path, "wb") as file:
        file.write(bytes(data))
    broken = verify(postgres_dsn, "--archive", archive_dir)
    assert broken.returncode == 1
    assert segment.name in broken.stderr
    newest = wait_for_snapshot_rows(postgres_dsn, 1)[0]
    asyncio.run(rows(postgres_dsn, "UPDATE switch_snapshot SET data = overlay(data placing "
                                   "'\\xff'::bytea from octet_length(data) - 10) "
                                   "WHERE sequence = $1", newest))
    damaged = verify(postgres_dsn)
    assert damaged.returncode == 1
    assert f"postgresql:switch_snapshot/switch/{newest}" in damaged.stdout
    assert "state hash mismatch" in damaged.stdout


@pytest.fixture
def other_database():
    """A second empty database (the 'fresh' one a restore goes into), dropped afterwards."""
    admin = os.environ.get("PONTE_TEST_POSTGRES_DSN",
                           "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"ponte_test_{uuid.uuid4().hex[:12]}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield f"{admin.rpartition('/')[0]}/{name}"
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_restore_into_a_fresh_database_replays_from_the_genesis_again(
        tmp_path, postgres_dsn, other_database):
    asyncio.run(prepared_database(postgres_dsn))
    archive_dir = str(tmp_path / "archive")
    switch = start_switch(tmp_path, "first", postgres_dsn)
    try:
        participants = onboard(switch)
        paid(switch, participants, "first", 600)
        wait_for_snapshot_rows(postgres_dsn, 2)
        positions = switch.positions()
    finally:
        assert switch.stop() == 0
    archived = ponte("journal", "archive", "--postgres-dsn", postgres_dsn, "--to",
                     archive_dir, "--delete")
    assert archived.returncode == 0, archived.stdout + archived.stderr
    assert "dropped ledger_journal_detached_" in archived.stdout
    before = verified(postgres_dsn, "--archive", archive_dir)

    # The database as its backup holds it (the archived partitions are gone from it) ...
    dump = subprocess.run(["pg_dump", "--no-owner", postgres_dsn], capture_output=True,
                          check=True, timeout=120)
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", other_database], input=dump.stdout,
                   capture_output=True, check=True, timeout=120)
    # ... plus the archive: the journal reads from the genesis again.
    restored = ponte("journal", "restore", "--postgres-dsn", other_database, "--from",
                     archive_dir)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restored" in restored.stdout and "of journal switch" in restored.stdout
    after = verified(other_database)
    assert after["anchor"] == "genesis"
    assert (after["head_sequence"], after["head_hash"]) == (before["head_sequence"],
                                                           before["head_hash"])
    # A full replay from the genesis: no snapshot to start from.
    asyncio.run(rows(other_database, "DELETE FROM switch_snapshot"))
    replayed = start_switch(tmp_path, "restored", other_database)
    try:
        assert replayed.get("/health")["recovered_from_sequence"] == 0
        assert replayed.positions() == positions
    finally:
        assert replayed.stop() == 0


def test_archive_refuses_with_exit_1_when_no_snapshot_covers_anything(tmp_path, postgres_dsn):
    from ledger.journal_postgres import PostgresJournal

    async def journal_without_snapshots():
        await prepared_database(postgres_dsn)
        journal = await PostgresJournal.open(postgres_dsn, name="switch")
        try:
            for index in range(3 * PARTITION_RECORDS):
                journal.append(16, index, b"")
                await journal.commit()
        finally:
            await journal.close()

    asyncio.run(journal_without_snapshots())
    refused = ponte("journal", "archive", "--postgres-dsn", postgres_dsn, "--to",
                    str(tmp_path / "archive"))
    assert refused.returncode == 1
    assert "archive refused: nothing to archive" in refused.stderr
    assert "'switch' has no usable snapshot" in refused.stderr
    assert os.listdir(tmp_path / "archive") == []  # nothing written


def test_journal_commands_fail_with_a_message_and_change_nothing_on_bad_input(
        tmp_path, postgres_dsn):
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = ponte("journal", "restore", "--postgres-dsn", postgres_dsn, "--from", str(empty))
    assert nothing.returncode == 1
    assert "restore refused:" in nothing.stderr and "holds no journal's segments" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    tables = asyncio.run(rows(postgres_dsn, "SELECT count(*) FROM pg_tables "
                                            "WHERE schemaname = 'public'"))
    assert tables[0]["count"] == 0  # not even migrated
    asyncio.run(prepared_database(postgres_dsn))
    unreachable = "postgresql://postgres@127.0.0.1:1/nowhere"
    archive = tmp_path / "archive" / "switch"
    archive.mkdir(parents=True)
    (archive / f"seg-{0:020d}-{'0' * 64}.journal.xz").write_bytes(b"")
    for command in (["archive", "--to", str(tmp_path / "archive")],
                    ["restore", "--from", str(tmp_path / "archive")], ["partitions"],
                    ["verify"]):
        failed = ponte("journal", *command, "--postgres-dsn", unreachable)
        assert failed.returncode == 1, (command, failed.stdout, failed.stderr)
        assert "failed:" in failed.stderr and "Traceback" not in failed.stderr, failed.stderr
    too_small = ponte("journal", "partitions", "--postgres-dsn", postgres_dsn, "--records", "3")
    assert too_small.returncode == 2 and "--records" in too_small.stderr
    size = asyncio.run(rows(postgres_dsn, "SELECT journal_partition_records FROM "
                                          "ledger_journal_settings"))
    assert size[0]["journal_partition_records"] == PARTITION_RECORDS
