"""The shared alias cache in Redis, for several switch processes in front of one store.

Entries use the compact format of `switch.directory.cache` (never an owner token). Fills use
SET NX with a TTL, and an invalidation writes a short-lived empty tombstone instead of
deleting: a resolve that read the store just before an update cannot then put the old
record back, because its SET NX finds the tombstone. The TTL bounds what a lost
invalidation (a crash between the store write and the tombstone) can leave behind.
This module must never hold a raw national ID: NATIONAL_ID aliases are keyed by token.
"""

from __future__ import annotations

import redis.asyncio as redis_async

from switch.directory import limits

TOMBSTONE = b""  # a real entry is never empty


class RedisAliasCache:
    shared = True

    def __init__(
        self,
        client: redis_async.Redis,
        prefix: str = "ponte:dir:",
        ttl_ms: int = limits.REDIS_CACHE_TTL_MS_DEFAULT,
        tombstone_ms: int = limits.REDIS_CACHE_TOMBSTONE_MS_DEFAULT,
    ) -> None:
        assert 0 < tombstone_ms < ttl_ms
        self.client = client
        self._prefix = prefix.encode() + b"a:"
        self.ttl_ms = ttl_ms
        self.tombstone_ms = tombstone_ms

    @classmethod
    def from_url(cls, url: str, prefix: str = "ponte:dir:", **options) -> RedisAliasCache:
        client = redis_async.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, prefix, **options)

    async def get(self, key: bytes) -> bytes | None:
        value = await self.client.get(self._prefix + key)
        return value or None

    async def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        prefix = self._prefix
        values = await self.client.mget([prefix + key for key in keys])
        return [value or None for value in values]

    def fill_token(self) -> int:
        return 0  # the tombstones do this job across processes

    async def fill(self, key: bytes, value: bytes, token: int) -> None:
        assert value
        await self.client.set(self._prefix + key, value, px=self.ttl_ms, nx=True)

    async def fill_many(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """Warm the cache with many entries in one pipeline (bench, start-up)."""
        prefix, ttl_ms = self._prefix, self.ttl_ms
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in pairs:
                pipe.set(prefix + key, value, px=ttl_ms, nx=True)
            await pipe.execute()

    async def invalidate(self, key: bytes) -> None:
        await self.client.set(self._prefix + key, TOMBSTONE, px=self.tombstone_ms)

    async def close(self) -> None:
        await self.client.aclose()
