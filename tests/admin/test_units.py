"""Small pure pieces: result codes, the login limiter's window, money formatting, the live
numbers' arithmetic, and the two admin schemas staying in step."""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

import asyncpg

from switch.admin.live import LiveStats
from switch.admin.money import exponent, format_minor
from switch.admin.ratelimit import FailureWindow, LoginLimiter
from switch.admin.timeline import LATENCY_BOUNDS_MS, TransferTrail, quantile_ms
from switch.admin.types import HTTP_STATUS, AdminResult, ProposalState, Role
from switch.core.results import TransferState
from switch.store.admin_embedded import SCHEMA

S = 1_000_000_000


def test_result_codes_are_stable_and_in_check_order():
    # Declaration order is check order; numbers only ever grow along it.
    values = [int(member) for member in AdminResult]
    assert values == sorted(values)
    assert AdminResult.OK == 0
    assert [m.name for m in AdminResult][:5] == [
        "OK", "NOT_AUTHENTICATED", "CSRF_TOKEN_INVALID", "ROLE_INSUFFICIENT", "VALIDATION_ERROR"]
    for member in AdminResult:
        assert 200 <= HTTP_STATUS[member] < 600
    assert Role.VIEWER < Role.OPERATOR < Role.ADMIN
    assert [int(s) for s in ProposalState] == list(range(1, len(ProposalState) + 1))


def test_the_failure_window_slides():
    window = FailureWindow(failures_max=2, window_s=10, keys_max=100)
    window.fail("k", 0)
    assert window.retry_after_s("k", 0) == 0
    window.fail("k", 4 * S)
    assert window.retry_after_s("k", 4 * S) == 6  # the first failure leaves at t=10 s
    assert window.retry_after_s("k", 10 * S) == 0
    window.fail("k", 10 * S)
    assert window.retry_after_s("k", 10 * S) == 4
    window.clear("k")
    assert window.retry_after_s("k", 10 * S) == 0


def test_the_limiter_forgets_the_stalest_key_past_its_bound():
    window = FailureWindow(failures_max=1, window_s=60, keys_max=3)
    for index in range(4):
        window.fail(f"k{index}", index)
    assert len(window) == 3
    assert window.retry_after_s("k0", 10) == 0
    assert window.retry_after_s("k3", 10) > 0


def test_a_successful_login_clears_the_user_but_not_the_address():
    limiter = LoginLimiter(user_failures_max=2, address_failures_max=3, window_s=60)
    assert limiter.reserve("bob", "1.1.1.1", 0) == 0  # a wrong guess: kept
    assert limiter.reserve("bob", "1.1.1.1", 1) == 0
    assert limiter.reserve("bob", "2.2.2.2", 2) > 0  # bob's budget is spent
    assert limiter.reserve("bob", "2.2.2.2", 3) > 0  # refused attempts are not counted
    limiter.succeeded("bob", "1.1.1.1", 1)
    assert limiter.retry_after_s("bob", "2.2.2.2", 3) == 0
    assert limiter.reserve("eve", "1.1.1.1", 4) == 0
    # 1.1.1.1 holds two failures (bob's first guess, eve's): the success took back one.
    assert limiter.reserve("carol", "1.1.1.1", 5) == 0
    assert limiter.retry_after_s("dave", "1.1.1.1", 5) > 0


def test_a_reserved_attempt_that_never_ran_is_refunded():
    limiter = LoginLimiter(user_failures_max=1, address_failures_max=1, window_s=60)
    assert limiter.reserve("bob", "1.1.1.1", 7) == 0
    assert limiter.retry_after_s("bob", "1.1.1.1", 7) > 0
    limiter.refund("bob", "1.1.1.1", 7)
    assert limiter.retry_after_s("bob", "1.1.1.1", 7) == 0
    limiter.refund("bob", "1.1.1.1", 7)  # twice: nothing left to take back
    assert limiter.retry_after_s("bob", "1.1.1.1", 7) == 0


def test_amounts_use_the_iso_4217_exponent_with_integer_arithmetic():
    assert format_minor(123_456, "BRL") == "1,234.56 BRL"
    assert format_minor(5, "BRL") == "0.05 BRL"
    assert format_minor(-5, "USD") == "-0.05 USD"
    assert format_minor(123_456, "JPY") == "123,456 JPY"
    assert format_minor(1_234_567, "KWD") == "1,234.567 KWD"
    assert format_minor(10**18 + 1, "KES") == "10,000,000,000,000,000.01 KES"
    assert (exponent("XOF"), exponent("BHD"), exponent("EUR")) == (0, 3, 2)


def test_live_numbers_come_from_differences_between_samples():
    trail = TransferTrail()
    live = LiveStats()
    live.sample(0, trail.counters())
    for index in range(10):
        trail(1, f"t{index}", TransferState.RECEIVED, index * S // 10)
        final = TransferState.COMMITTED if index < 8 else TransferState.EXPIRED
        trail(1, f"t{index}", final, index * S // 10 + 3_000_000)  # 3 ms each
    live.sample(5 * S, trail.counters())
    assert live.transfers_per_s() == 2.0  # 10 over 5 s
    assert live.success_rate() == 0.8
    assert 3.0 <= live.latency_ms(0.5) <= 3.7
    assert live.outcomes()["OK"] == 8
    assert live.transfers_total() == 10
    live.sample(10 * S, trail.counters())  # nothing new: the rate falls to zero
    assert live.transfers_per_s() == 0.0
    assert [round(v, 1) for _t, v in live.series(10)] == [2.0, 0.0]


def test_quantiles_come_from_the_histogram_buckets():
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    counts[3] = 99
    counts[-1] = 1
    assert LATENCY_BOUNDS_MS[2] < quantile_ms(counts, 0.5) < LATENCY_BOUNDS_MS[3]
    assert quantile_ms(counts, 0.999) == LATENCY_BOUNDS_MS[-1]
    assert quantile_ms([0] * len(counts), 0.5) == 0.0


def test_the_trail_is_bounded_and_forgets_the_oldest_transfer():
    trail = TransferTrail(transfers_max=2)
    for name in ("a", "b", "c"):
        trail(1, name, TransferState.RECEIVED, 1)
    assert len(trail) == 2
    assert trail.steps(1, "a") == []
    assert [step[2] for step in trail.steps(1, "c")] == ["received"]
    trail.note(1, "c", "outcome released", 2)
    assert trail.steps(1, "c")[-1] == (2, "message", "outcome released")


def _sqlite_columns() -> dict[str, list[str]]:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    tables = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'admin_%' "
        "AND name != 'admin_schema'")]
    return {t: [row[1] for row in db.execute(f"PRAGMA table_info({t})")] for t in tables}


async def test_the_embedded_schema_and_the_postgres_migration_have_the_same_columns(postgres_dsn):
    from switch.store.migrate import migrate_dsn

    await migrate_dsn(postgres_dsn)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name LIKE 'admin\\_%' "
            "ORDER BY table_name, ordinal_position")
    finally:
        await connection.close()
    postgres: dict[str, list[str]] = {}
    for row in rows:
        postgres.setdefault(row["table_name"], []).append(row["column_name"])
    assert postgres == _sqlite_columns()
    migration = resources.files("switch.store.migrations").joinpath("0004_admin.sql").read_text()
    assert re.search(r"CREATE TRIGGER admin_audit_no_update", migration)
