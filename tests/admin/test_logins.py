"""Logins under concurrency: the rate limit holds for a burst of simultaneous guesses, and one
slow password hash does not hold up other operators' logins.

The hasher is the real argon2id (cheapest accepted cost) wrapped to count the hashes it
runs and to hold chosen ones, so a test can see what reached it and keep one in progress.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from admin_helpers import FAST_PASSWORDS, PASSWORD
from switch.admin import limits
from switch.admin.passwords import Passwords
from switch.admin.ratelimit import LoginLimiter
from switch.admin.service import AdminService
from switch.admin.types import AdminRefusal, AdminResult

HELD_PASSWORD = "held while the test looks around"
WAIT_S = 20.0  # a hang detector, never a measured time


class CountingPasswords(Passwords):
    """argon2id that counts the hashes it verifies and holds those of HELD_PASSWORD until
    `release` is set."""

    def __init__(self) -> None:
        super().__init__(**FAST_PASSWORDS)
        self.verified = 0
        self.held = threading.Event()  # a held hash is running
        self.release = threading.Event()
        self._lock = threading.Lock()

    def verify_now(self, password_hash, password) -> bool:
        with self._lock:
            self.verified += 1
        if password == HELD_PASSWORD:
            self.held.set()
            assert self.release.wait(WAIT_S), "the test never released the held hash"
        return super().verify_now(password_hash, password)


@pytest.fixture
def counting(embedded_world):
    passwords = CountingPasswords()
    service = AdminService(embedded_world.store, embedded_world.switch, passwords=passwords,
                           limiter=LoginLimiter(), clock_ns=embedded_world.clock)
    yield service, passwords
    passwords.release.set()


async def _outcome(awaitable) -> AdminResult:
    try:
        await awaitable
    except AdminRefusal as refusal:
        return refusal.result
    return AdminResult.OK


async def test_a_concurrent_burst_gets_no_more_guesses_than_the_limit(counting):
    service, passwords = counting
    guesses = 40
    results = await asyncio.gather(*(
        _outcome(service.login("bob", f"guess number {index:04d}", "10.1.1.1"))
        for index in range(guesses)))
    assert passwords.verified <= limits.LOGIN_FAILURES_PER_USER_MAX
    assert results.count(AdminResult.LOGIN_FAILED) == passwords.verified
    assert results.count(AdminResult.LOGIN_RATE_LIMITED) == guesses - passwords.verified
    # The budget is spent: the right password is refused too, without a hash.
    before = passwords.verified
    assert await _outcome(service.login("bob", PASSWORD, "10.1.1.2")) is (
        AdminResult.LOGIN_RATE_LIMITED)
    assert passwords.verified == before


async def test_a_burst_across_users_from_one_address_stops_at_the_address_limit(counting):
    service, passwords = counting
    guesses = 60
    await asyncio.gather(*(
        _outcome(service.login(f"nobody{index}", "wrong password!!", "10.2.2.2"))
        for index in range(guesses)))
    assert passwords.verified <= limits.LOGIN_FAILURES_PER_ADDRESS_MAX


async def test_a_successful_login_gives_its_reserved_attempt_back(counting):
    service, passwords = counting
    # Many right logins from one address never use up its failure budget.
    for _ in range(limits.LOGIN_FAILURES_PER_ADDRESS_MAX + 2):
        await service.login("bob", PASSWORD, "10.3.3.3")
    assert await _outcome(service.login("carol", PASSWORD, "10.3.3.3")) is AdminResult.OK


async def test_other_operators_log_in_while_one_hash_is_in_progress(counting):
    service, passwords = counting
    held = asyncio.ensure_future(_outcome(service.login("carol", HELD_PASSWORD, "10.4.4.4")))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, passwords.held.wait, WAIT_S)
    # carol's hash is running and will not finish until released; bob's login must not wait.
    bob = asyncio.ensure_future(service.login("bob", PASSWORD, "10.4.4.5"))
    done, _ = await asyncio.wait({bob}, timeout=WAIT_S)
    assert bob in done, "bob's login waited behind another operator's password hash"
    assert (await bob)[1].username == "bob"
    assert not held.done()
    passwords.release.set()
    assert await held is AdminResult.LOGIN_FAILED


async def test_logins_waiting_for_a_hash_are_bounded_and_refused_at_once_past_it(counting):
    service, passwords = counting
    passwords_module = __import__("switch.admin.passwords", fromlist=["x"])
    busy = passwords_module.HASHES_CONCURRENT_MAX + passwords_module.HASHES_WAITING_MAX
    # Occupy every hashing slot and every waiting place with held hashes, each for its own
    # user and address so no rate limit is involved.
    tasks = [asyncio.ensure_future(_outcome(service.login(
        f"user{index}", HELD_PASSWORD, f"10.5.{index}.1"))) for index in range(busy)]
    # Every hashing slot's hash has started (each counts as it starts; they run in threads,
    # so one may start after the first is seen held), and the rest wait for a slot.
    deadline = time.monotonic() + WAIT_S
    while passwords.verified < passwords_module.HASHES_CONCURRENT_MAX:
        assert time.monotonic() < deadline, "the hashing slots never filled"
        await asyncio.sleep(0.01)
    for _ in range(100):
        await asyncio.sleep(0)
    verified = passwords.verified
    refusal = None
    try:
        await service.login("bob", PASSWORD, "10.5.99.1")
    except AdminRefusal as caught:
        refusal = caught
    assert refusal is not None and refusal.result is AdminResult.LOGIN_BUSY
    assert refusal.retry_after_s >= 1 and refusal.http_status == 503
    assert passwords.verified == verified  # refused before any hash
    passwords.release.set()
    assert set(await asyncio.gather(*tasks)) == {AdminResult.LOGIN_FAILED}
    # The refused login used none of bob's budget: he logs in now.
    assert (await service.login("bob", PASSWORD, "10.5.99.1"))[1].username == "bob"
