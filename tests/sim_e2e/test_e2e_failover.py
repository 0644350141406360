"""A primary switch killed with SIGKILL under load while a standby follows its PostgreSQL
journal: the standby takes over, the simulators (SDK with both addresses) move to it on
their own, every outcome a participant was told is still there, no transfer is decided
twice (every book reconciles with the new primary's ledger), and the old primary,
restarted, cannot write: as a primary it refuses to start, as a standby it follows."""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg
import pytest

from e2e_helpers import assert_books_reconcile, pay_and_collect, payee_aliases, statuses
from switch.core.messages import TransferOutcome
from switch.launcher import SwitchProcess, sim_server_config

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SECRETS = {"api_key_pepper": "pepper-" + "p" * 32, "directory_secret": "dir-" + "d" * 32,
           "admin_token": "admin-" + "a" * 24}


async def journal_epochs(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        return [row["epoch"] for row in await connection.fetch(
            "SELECT epoch FROM ledger_journal WHERE journal_name = 'switch' ORDER BY sequence")]
    finally:
        await connection.close()


def test_kill_the_primary_under_load_and_the_standby_takes_over(rig, tmp_path, postgres_dsn):
    shared = {"journal": "postgres", "store": "postgres", "postgres_dsn": postgres_dsn,
              **SECRETS, "standby_poll_interval_ms": 50}
    primary = rig.switch(**shared)
    credentials = rig.onboard(primary)
    tester = primary.onboard_participant("bank_t", "bank", ["KES"], funding_minor=10**12)
    standby = SwitchProcess(sim_server_config(os.path.join(str(tmp_path), "standby"),
                                              role="standby", **shared))
    rig.processes.append(standby)
    standby.start()
    assert standby.get("/health")["role"] == "standby"
    ports = [primary.stream_port, standby.stream_port]
    sims = rig.sims(primary, credentials, tps=400, seconds=8,
                    fallback_ports=[standby.stream_port],
                    options={"reject_rate": 0.03, "answer_latency_ms": 1.0, "expiry_s": 30.0})
    sims.wait_for("ready", 120)
    payer_id, acknowledged = asyncio.run(pay_and_collect(
        ports, tester["api_key"], payee_aliases(20), "before"))
    assert all(type(o) is TransferOutcome for o in acknowledged)
    sims.wait_for("stats", 30)
    sims.wait_for("stats", 30)  # traffic is flowing
    following = standby.get("/health")
    assert following["role"] == "standby" and following["epoch"] == 1

    primary.kill()
    killed = time.monotonic()
    health = standby.wait_role("primary", 60)
    takeover_s = time.monotonic() - killed
    assert health["epoch"] == 2
    print(f"takeover_s={takeover_s:.3f}")

    # Every outcome a participant was told survived; the simulators came back on their own.
    answers = asyncio.run(statuses(standby.stream_port, tester["api_key"], payer_id,
                                   [o.transfer_id for o in acknowledged]))
    assert answers == acknowledged
    final = sims.wait_for("final", 180)
    assert "LOST" not in final["results"]
    assert final["done"] == final["sent"]
    assert standby.get("/health")["in_flight"] == 0
    assert_books_reconcile(standby, final)  # decided once each: the books agree
    assert final["results"].get("COMMITTED", 0) > 0

    # The old primary, restarted as a primary, refuses: it never writes.
    durable = standby.get("/health")["durable_sequence"]
    with pytest.raises(RuntimeError, match="exited with 1"):
        primary.start()
    assert "another switch is the primary" in primary.log_tail(60)
    epochs = asyncio.run(journal_epochs(postgres_dsn))
    assert epochs == sorted(epochs) and epochs[-1] == 2 and len(epochs) == durable
    # Restarted as a standby, it follows the new primary.
    primary.stop()
    primary.config = dict(primary.config, role="standby")
    primary.start()
    for _ in range(600):
        view = primary.get("/health")
        if view["durable_sequence"] == standby.get("/health")["durable_sequence"]:
            break
        time.sleep(0.05)
    assert view["role"] == "standby" and view["epoch"] == 2
    assert ({pid: row["accounts"] for pid, row in primary.positions().items()}
            == {pid: row["accounts"] for pid, row in standby.positions().items()})
    # The new primary's console shows its role, epoch and the standby following it.
    standby._operator_passwords = primary._operator_passwords  # the launcher's operators
    maker, _checker = standby.operators()
    for _ in range(100):
        replication = maker.get("/api/admin/overview")["replication"]
        if replication["standbys"]:
            break
        time.sleep(0.1)
    assert replication["role"] == "primary" and replication["epoch"] == 2
    (follower,) = replication["standbys"]
    assert follower["lag_records"] >= 0 and follower["seen_s_ago"] < 60
    assert standby.get("/health")["standbys"][0]["standby"] == follower["standby"]
