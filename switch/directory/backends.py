"""Wire a Directory to its backends from plain settings (CLI, demo, server start-up).

The only place in `switch/directory/` that names the adapters in `switch/store/`; it
imports them lazily so the directory's rules stay free of drivers.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from switch.directory.buckets import LocalBuckets
from switch.directory.cache import LocalAliasCache
from switch.directory.config import DirectoryConfig, Secret
from switch.directory.service import Directory

@asynccontextmanager
async def open_directory(
    *,
    config: DirectoryConfig,
    secret: Secret,
    postgres_dsn: str | None = None,
    embedded_path: str | None = None,
    redis_url: str | None = None,
    redis_prefix: str = "ponte:dir:",
) -> AsyncIterator[Directory]:
    """A Directory on PostgreSQL when a DSN is given, else on the embedded SQLite file at
    `embedded_path` (no default: a file the switch does not read is no directory at all;
    the switch's is `<data_dir>/directory.sqlite3`); with Redis as the shared cache and
    bucket store when a URL is given, else in-process."""
    if not postgres_dsn and not embedded_path:
        raise ValueError("open_directory needs postgres_dsn or embedded_path")
    if postgres_dsn:
        from switch.store.postgres_directory import PostgresDirectoryStore

        store = await PostgresDirectoryStore.connect(postgres_dsn)
    else:
        from switch.store.embedded import EmbeddedDirectoryStore

        store = EmbeddedDirectoryStore(embedded_path)
    client = None
    try:
        if redis_url:
            import redis.asyncio as redis_async

            from switch.store.redis_buckets import RedisBuckets
            from switch.store.redis_cache import RedisAliasCache

            client = redis_async.Redis.from_url(redis_url, socket_timeout=5,
                                                socket_connect_timeout=5)
            cache, buckets = RedisAliasCache(client, redis_prefix), RedisBuckets(client,
                                                                                 redis_prefix)
        else:
            cache, buckets = LocalAliasCache(config.cache_entries_max), LocalBuckets()
        yield Directory(store=store, cache=cache, buckets=buckets, config=config, secret=secret)
    finally:
        if client is not None:
            await client.aclose()
        await store.close()
