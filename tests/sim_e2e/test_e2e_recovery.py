"""A switch killed with SIGKILL in the middle of traffic and restarted resumes: every
outcome a participant was told is still there, transfers in flight complete or expire,
the simulators reconnect and resend under the same ids, and every book reconciles. The
same on PostgreSQL (journal, directory, credentials) with Redis (alias cache, buckets)."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.sdk.stream_client import StreamClient
from e2e_helpers import assert_books_reconcile, pay_and_collect, payee_aliases, statuses
from switch.core.messages import TransferOutcome

pytestmark = pytest.mark.slow


def test_sigkill_mid_traffic_then_restart_resumes_and_reconciles(rig):
    switch = rig.switch()
    credentials = rig.onboard(switch)
    tester = switch.onboard_participant("bank_t", "bank", ["KES"], funding_minor=10**12)
    sims = rig.sims(switch, credentials, tps=400, seconds=6,
                    options={"reject_rate": 0.03, "answer_latency_ms": 1.0, "expiry_s": 20.0})
    sims.wait_for("ready", 120)
    payer_id, acknowledged = asyncio.run(pay_and_collect(
        switch.stream_port, tester["api_key"], payee_aliases(20), "before"))
    assert all(type(o) is TransferOutcome for o in acknowledged)
    sims.wait_for("stats", 30)
    sims.wait_for("stats", 30)  # traffic is flowing
    switch.kill()
    time.sleep(0.5)
    switch.start()  # same data directory, same ports: replay the journal
    health = switch.get("/health")
    assert health["replayed_events"] > 0
    answers = asyncio.run(statuses(switch.stream_port, tester["api_key"], payer_id,
                                   [o.transfer_id for o in acknowledged]))
    assert answers == acknowledged  # every outcome we were told survived the crash
    final = sims.wait_for("final", 120)
    assert "LOST" not in final["results"]
    assert final["done"] == final["sent"]
    assert switch.get("/health")["in_flight"] == 0
    assert_books_reconcile(switch, final)
    # The crash broke the simulators' connections; they came back on their own.
    assert final["results"].get("COMMITTED", 0) > 0


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_journal_and_directory_with_redis(rig, postgres_dsn, redis_url,
                                                   redis_prefix):
    backends = {"journal": "postgres", "store": "postgres", "postgres_dsn": postgres_dsn,
                "redis_url": redis_url, "redis_prefix": redis_prefix}
    switch = rig.switch(**backends)
    credentials = rig.onboard(switch)
    sims = rig.sims(switch, credentials, tps=200, seconds=3,
                    options={"reject_rate": 0.05, "expiry_s": 20.0})
    sims.wait_for("ready", 120)
    final = sims.wait_for("final", 120)
    assert final["results"].get("COMMITTED", 0) > 0
    assert_books_reconcile(switch, final)
    positions = switch.positions()
    # Graceful restart: everything comes back from PostgreSQL.
    assert switch.stop() == 0
    switch.start()
    assert switch.get("/health")["replayed_events"] > 0
    assert switch.positions() == positions

    # The directory (PostgreSQL) still routes and the keys (PostgreSQL) still authenticate.
    async def taken():
        client = await StreamClient.connect("127.0.0.1", switch.stream_port,
                                            api_key=credentials["bank_b"]["api_key"])
        answer = await client.resolve("MSISDN", payee_aliases(1)[0].alias_value, "p1")
        await client.close()
        return answer

    answer = asyncio.run(taken())
    assert answer.result.name == "OK"
    assert answer.payee_participant_id == credentials["wallet_a"]["participant_id"]
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert any(True for _ in client.scan_iter(match=redis_prefix + "*", count=1000))
    finally:
        client.close()


def test_sigkill_after_snapshots_and_rotations_recovers_from_the_newest_snapshot(rig):
    """Issue 11 (a): snapshots and segment rotations while traffic flows, then SIGKILL:
    the restart starts from the newest snapshot, every acknowledged transfer is there (those
    from before every snapshot included), and every book reconciles."""
    switch = rig.switch(snapshot_every_events=2_000, snapshot_every_s=3_600.0,
                        journal_segment_bytes_max=256 * 1024, journal_archive="compress",
                        snapshots_retained=2)
    credentials = rig.onboard(switch)
    tester = switch.onboard_participant("bank_t", "bank", ["KES"], funding_minor=10**12)
    sims = rig.sims(switch, credentials, tps=600, seconds=8,
                    options={"reject_rate": 0.03, "answer_latency_ms": 1.0, "expiry_s": 20.0})
    sims.wait_for("ready", 120)  # the wallets' aliases are registered
    payer_id, before = asyncio.run(pay_and_collect(
        switch.stream_port, tester["api_key"], payee_aliases(20), "before-snapshots"))
    assert all(type(o) is TransferOutcome for o in before)
    deadline = time.monotonic() + 60
    while True:
        health = switch.get("/health")
        if (health.get("snapshot", {}).get("taken", 0) >= 3
                and health.get("journal", {}).get("segments", 0) >= 3):
            break
        assert time.monotonic() < deadline, health
        time.sleep(0.2)
    _payer_id, during = asyncio.run(pay_and_collect(
        switch.stream_port, tester["api_key"], payee_aliases(20), "during"))
    switch.kill()
    time.sleep(0.5)
    switch.start()
    health = switch.get("/health")
    assert health["recovered_from_sequence"] > 0, health  # from a snapshot, not genesis
    assert health["journal"]["archived_segments"] >= 1, health
    answers = asyncio.run(statuses(switch.stream_port, tester["api_key"], payer_id,
                                   [o.transfer_id for o in before + during]))
    assert answers == before + during  # every outcome we were told survived the crash
    final = sims.wait_for("final", 120)
    assert "LOST" not in final["results"]
    assert final["done"] == final["sent"]
    assert switch.get("/health")["in_flight"] == 0
    assert_books_reconcile(switch, final)
