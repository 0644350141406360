"""Operator password hashing: argon2id through argon2-cffi.

Hashing costs tens of milliseconds of CPU on purpose, and the console runs in the switch's
own process and loop: every hash runs in a worker thread (argon2 releases the GIL), at most
`HASHES_CONCURRENT_MAX` at once, so one slow hash never holds up every other login and a
login storm can slow logins but never the payments. At most `HASHES_WAITING_MAX` more wait
for a slot; past that `PasswordsBusy` is raised at once, before any hash, so the waiting
line (and the memory it holds) is bounded.
A password must never be logged, stored or compared other than through `verify`.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from switch.admin import limits

HASHES_CONCURRENT_MAX = limits.PASSWORD_HASHES_CONCURRENT_MAX
HASHES_WAITING_MAX = limits.PASSWORD_HASHES_WAITING_MAX


class PasswordsBusy(Exception):
    """Every hashing slot and every waiting place is taken: try again shortly."""


class Passwords:
    """argon2id with this deployment's cost. `memory_kib` may be lowered for tests, never
    below `limits.ARGON2_MEMORY_KIB_FLOOR`."""

    def __init__(self, time_cost: int = limits.ARGON2_TIME_COST,
                 memory_kib: int = limits.ARGON2_MEMORY_KIB,
                 parallelism: int = limits.ARGON2_PARALLELISM):
        assert time_cost >= 1
        assert memory_kib >= limits.ARGON2_MEMORY_KIB_FLOOR
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                      parallelism=parallelism, type=Type.ID)
        self._gate = asyncio.Semaphore(HASHES_CONCURRENT_MAX)
        self._queued = 0  # hashes running or waiting for a slot
        # Verified when the user is unknown, so a login costs the same whether or not the
        # name exists (no user enumeration by timing).
        self._decoy = self._hasher.hash("decoy password, never valid for anyone")

    def hash_now(self, password: str) -> str:
        """Blocking: for the CLI and tests, never on the server's loop."""
        return self._hasher.hash(password)

    def verify_now(self, password_hash: str | None, password: str) -> bool:
        try:
            self._hasher.verify(password_hash or self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return password_hash is not None

    async def _off_the_loop(self, function, *args):
        if self._queued >= HASHES_CONCURRENT_MAX + HASHES_WAITING_MAX:
            raise PasswordsBusy()
        self._queued += 1
        try:
            async with self._gate:
                return await asyncio.to_thread(function, *args)
        finally:
            self._queued -= 1

    async def hash(self, password: str) -> str:
        """Raises `PasswordsBusy` when too many hashes are running or waiting."""
        return await self._off_the_loop(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Raises `PasswordsBusy` when too many hashes are running or waiting."""
        return await self._off_the_loop(self.verify_now, password_hash, password)
