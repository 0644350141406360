"""`ponte bench directory`: load, resolve and memory figures for the alias directory.

Cases (one JSON result each, as issue 4 asks):
    load            N aliases into PostgreSQL through the store's fresh bulk load (one binary
                    COPY into the empty table, then the primary key, the indexes and the cap
                    check, in one transaction). `per_s` counts all of it, index builds
                    included; the rows (with their HMAC identity tokens) are generated in
                    primary-key order before the clock starts. `p99_ms` is the p99 of 10,000
                    single-alias reads from the loaded table afterwards (the cache-miss
                    path); `bytes_per_alias` is the table's total size (heap, TOAST, indexes)
                    divided by N.
    resolve-cache   Directory.resolve, one call at a time, on one core, from a warm in-process
                    cache with in-process buckets: per-call latency p99; `bytes_per_alias` is
                    the cache's own memory per entry, measured with tracemalloc while it fills.
    resolve-redis   Directory.resolve_many in batches of 256 through the Redis cache and the
                    Redis Lua buckets (two pipelined round trips per batch): `p99_ms` is the
                    p99 batch latency; `bytes_per_alias` is Redis's used_memory growth per entry.

The synthetic directory: one owner per four aliases (NATIONAL_ID, MSISDN, EMAIL, RANDOM, so
within the person cap), 32 participants, identity tokens really computed with the scheme
HMAC. Input is generated before any clock starts (the generation time of the load's rows is
printed beside the figures).
The database is created for the run and dropped after it; Redis keys live under a prefix
of their own and are deleted. This module drives the directory only through its public API.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import tracemalloc
import uuid
from array import array
from operator import itemgetter

import click

from switch.directory.buckets import LocalBuckets
from switch.directory.cache import LocalAliasCache, cache_key
from switch.directory.config import (
    PARTICIPANT_POLICIES_DEFAULT,
    BucketPolicy,
    DirectoryConfig,
    Secret,
)
from switch.directory.identity import account_key, identity_token, owner_key
from switch.directory.service import Directory
from switch.directory.types import AliasType, ResolvedAlias, ResolveRequest

POSTGRES_ADMIN_DSN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL_DEFAULT = "redis://127.0.0.1:6379/0"
CASES = ("load", "resolve-cache", "resolve-redis")
# (aliases loaded, aliases cached, lookups) per case.
FULL = {"load": 10_000_000, "resolve-cache": 1_000_000, "resolve-redis": 1_000_000}
QUICK = {"load": 200_000, "resolve-cache": 200_000, "resolve-redis": 200_000}
LOOKUPS_PER_ALIAS = 1
REDIS_BATCH = 256
PARTICIPANTS = tuple(f"bank-{n:02d}" for n in range(32))
PAYERS = tuple(f"payer-{n:02d}" for n in range(64))
# Each payer end user makes at most this many lookups, far inside the 100-token bucket:
# the bench measures lookups, not refusals (it checks that none was refused).
LOOKUPS_PER_USER = 40
NOW_NS = 1_700_000_000_000_000_000
SECRET = Secret(b"ponte-bench-directory-secret-0123456789")
TARGETS = {"load": {"per_s": 200_000}, "resolve-cache": {"per_s": 200_000, "p99_ms": 1.0,
                                                          "bytes_per_alias": 200}}
INITIALS = ("JD", "MS", "AB", "KO", "LTN", "PQ", "RS", "VW")


def bench_config() -> DirectoryConfig:
    """The default configuration, with the bench payers in a category of their own whose
    bucket is as large as the limits allow: the clock stands still during a run, so the
    default categories would refuse lookups and the bench would measure refusals."""
    bench = BucketPolicy(capacity_tokens=1_000_000, refill_tokens_per_minute=1_000_000,
                         hit_cost_tokens=1, miss_cost_tokens=3)
    return DirectoryConfig(
        participant_buckets={**PARTICIPANT_POLICIES_DEFAULT, "BENCH": bench},
        participant_categories={payer: "BENCH" for payer in PAYERS},
    )


# --- synthetic directory -----------------------------------------------------------------


def msisdn(owner: int) -> str:
    return f"+5511{owner:09d}"


def random_key(owner: int) -> str:
    return f"{owner:08x}-{owner >> 32 & 0xFFFF:04x}-4000-8000-{owner * 2654435761 % 2**48:012x}"


def load_rows(aliases: int) -> list[tuple]:
    """COPY tuples (`postgres_directory.COPY_COLUMNS` order) for `aliases` aliases, in
    primary-key order: MSISDN, EMAIL, NATIONAL_ID (sorted by token), RANDOM."""
    owners = (aliases + 3) // 4
    by_type: dict[int, list[tuple]] = {1: [], 2: [], 3: [], 5: []}
    for owner in range(owners):
        token = identity_token(SECRET, f"BR:{owner:011d}")
        participant = PARTICIPANTS[owner % len(PARTICIPANTS)]
        account = f"{owner:012d}"
        head = (NOW_NS, NOW_NS, owner_key(token), account_key(participant, account))
        tail = (participant, account, INITIALS[owner % len(INITIALS)], token)
        by_type[1].append((*head, 1, 1, 1, msisdn(owner), *tail))
        by_type[2].append((*head, 2, 1, 1, f"user{owner:09d}@example.com", *tail))
        by_type[3].append((*head, 3, 1, 1, token.hex(), *tail))
        by_type[5].append((*head, 5, 1, 1, random_key(owner), *tail))
    by_type[3].sort(key=itemgetter(7))
    rows = by_type[1] + by_type[2] + by_type[3] + by_type[5]
    del rows[aliases:]
    return rows


def cache_entries(aliases: int):
    """(cache key, cache value) of `aliases` MSISDN aliases, made as they are consumed."""
    for owner in range(aliases):
        participant = PARTICIPANTS[owner % len(PARTICIPANTS)]
        yield (cache_key(AliasType.MSISDN, msisdn(owner)),
               f"{participant}\x1f{owner:012d}\x1f{INITIALS[owner % len(INITIALS)]}".encode())


def lookups(aliases: int, count: int, seed: int) -> list[tuple[str, str, str]]:
    """(alias, payer participant, payer user) triples, drawn uniformly from the aliases."""
    rng = random.Random(seed)
    return [
        (msisdn(rng.randrange(aliases)), PAYERS[n % len(PAYERS)],
         f"user-{n // (LOOKUPS_PER_USER * len(PAYERS))}")
        for n in range(count)
    ]


def _percentile_ms(samples_ns, fraction: float) -> float:
    ordered = sorted(samples_ns)
    index = min(len(ordered) - 1, int(len(ordered) * fraction))
    return round(ordered[index] / 1e6, 4)


# --- cases -------------------------------------------------------------------------------


async def run_load(aliases: int, admin_dsn: str, progress) -> dict:
    import asyncpg

    from switch.store.postgres_directory import PostgresDirectoryStore

    generated = time.perf_counter()
    rows = load_rows(aliases)  # before the clock, as every bench here does
    generated = time.perf_counter() - generated
    progress(aliases // 4)
    name = f"ponte_bench_directory_{uuid.uuid4().hex[:8]}"
    base, _, _ = admin_dsn.rpartition("/")
    admin = await asyncpg.connect(admin_dsn, timeout=10)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = await PostgresDirectoryStore.connect(f"{base}/{name}", max_size=2)
        phases: dict[str, float] = {}
        try:
            started = time.perf_counter()
            result = await store.load_fresh_rows(
                rows, bench_config(), on_phase=lambda phase: phases.setdefault(
                    phase, time.perf_counter()))
            elapsed = time.perf_counter() - started
            assert result.name == "OK", result
            progress(aliases // 2)
            del rows
            reads = await _point_reads(store, aliases)
            async with store.pool.acquire() as connection:
                count = await connection.fetchval("SELECT count(*) FROM directory_aliases")
                size = await connection.fetchval(
                    "SELECT pg_total_relation_size('directory_aliases')")
            assert count == aliases, (count, aliases)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    order = ["copy", "primary_key", "indexes", "caps"]
    marks = [started] + [phases[p] for p in order] + [started + elapsed]
    return {
        "case": "load", "aliases": aliases, "per_s": round(aliases / elapsed),
        "p99_ms": _percentile_ms(reads, 0.99),
        "bytes_per_alias": round(size / aliases, 1),
        "phases_s": {p: round(marks[i + 1] - marks[i], 2)
                     for i, p in enumerate(["prepare"] + order)},
        "generate_s": round(generated, 2),
    }


async def _point_reads(store, aliases: int, reads: int = 10_000) -> list[int]:
    """Latencies of single-alias reads from the loaded table: the cache-miss path."""
    rng = random.Random(3)
    latencies = []
    clock = time.perf_counter_ns
    for _ in range(reads):
        owner = rng.randrange(aliases // 4)
        t0 = clock()
        record = await store.get_alias(AliasType.MSISDN, msisdn(owner))
        latencies.append(clock() - t0)
        assert record is not None and record.account_ref == f"{owner:012d}"
    return latencies


async def run_resolve_cache(aliases: int, progress) -> dict:
    from switch.store.embedded import EmbeddedDirectoryStore

    cache = LocalAliasCache(entries_max=2 * aliases + 2)  # the whole set stays in one generation
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for key, value in cache_entries(aliases):
        cache.fill_now(key, value, 0)
    cache_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    progress(aliases // 2)
    store = EmbeddedDirectoryStore(":memory:")  # never read: every lookup hits the cache
    directory = Directory(store=store, cache=cache, buckets=LocalBuckets(), config=bench_config(),
                          secret=SECRET)
    work = lookups(aliases, aliases * LOOKUPS_PER_ALIAS, seed=1)
    latencies = array("q", bytes(8 * len(work)))
    clock = time.perf_counter_ns
    resolve = directory.resolve
    refused = 0
    cpu_started = time.process_time()
    started = clock()
    for index, (alias, payer, user) in enumerate(work):
        t0 = clock()
        answer = await resolve(1, alias, payer, user, NOW_NS)
        latencies[index] = clock() - t0
        if type(answer) is not ResolvedAlias:
            refused += 1
    elapsed_ns = clock() - started
    cpu_s = time.process_time() - cpu_started
    progress(aliases - aliases // 2)
    await store.close()
    assert refused == 0, f"{refused} lookups were refused"
    assert cache.misses == 0
    return {
        "case": "resolve-cache", "aliases": aliases, "per_s": round(len(work) / elapsed_ns * 1e9),
        "p99_ms": _percentile_ms(latencies, 0.99),
        "bytes_per_alias": round(cache_bytes / aliases, 1),
        # Lookups per second of this process's CPU time: the one-core rate with the other
        # processes on the machine taken out (wall-clock per_s includes waiting for a core).
        "cpu_per_s": round(len(work) / cpu_s),
    }


async def run_resolve_redis(aliases: int, redis_url: str, progress) -> dict:
    import redis.asyncio as redis_async

    from switch.store.embedded import EmbeddedDirectoryStore
    from switch.store.redis_buckets import RedisBuckets
    from switch.store.redis_cache import RedisAliasCache

    prefix = f"ponte-bench:{uuid.uuid4().hex[:8]}:"
    client = redis_async.Redis.from_url(redis_url, socket_timeout=30)
    cache = RedisAliasCache(client, prefix)
    store = EmbeddedDirectoryStore(":memory:")
    try:
        used_before = (await client.info("memory"))["used_memory"]
        batch: list = []
        for pair in cache_entries(aliases):
            batch.append(pair)
            if len(batch) == 10_000:
                await cache.fill_many(batch)
                batch = []
        if batch:
            await cache.fill_many(batch)
        used_after = (await client.info("memory"))["used_memory"]
        progress(aliases // 4)
        directory = Directory(store=store, cache=cache, buckets=RedisBuckets(client, prefix),
                              config=bench_config(), secret=SECRET)
        work = [ResolveRequest(alias_type=1, alias_value=alias, payer_participant_id=payer,
                               payer_user_id=user)
                for alias, payer, user in lookups(aliases, aliases * LOOKUPS_PER_ALIAS, 2)]
        latencies = []
        refused = 0
        clock = time.perf_counter_ns
        started = clock()
        for first in range(0, len(work), REDIS_BATCH):
            t0 = clock()
            answers = await directory.resolve_many(work[first:first + REDIS_BATCH], NOW_NS)
            latencies.append(clock() - t0)
            refused += sum(type(a) is not ResolvedAlias for a in answers)
            if first % (REDIS_BATCH * 256) == 0:
                progress(min(REDIS_BATCH * 256, len(work) - first) * 3 // 4)
        elapsed_ns = clock() - started
        assert refused == 0, f"{refused} lookups were refused"
    finally:
        await store.close()
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=10_000)]
        for first in range(0, len(keys), 10_000):
            await client.delete(*keys[first:first + 10_000])
        await client.aclose()
    return {
        "case": "resolve-redis", "aliases": aliases,
        "per_s": round(len(work) / elapsed_ns * 1e9), "p99_ms": _percentile_ms(latencies, 0.99),
        "bytes_per_alias": round((used_after - used_before) / aliases, 1),
    }


# --- command -----------------------------------------------------------------------------


def _verdicts(result: dict) -> list[str]:
    out = []
    for key, target in TARGETS.get(result["case"], {}).items():
        value = result[key]
        ok = value >= target if key == "per_s" else value <= target
        out.append(f"{key} {'>=' if key == 'per_s' else '<='} {target:,}: "
                   f"{'met' if ok else 'NOT MET'}")
    return out


@click.command("directory")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, nothing else.")
@click.option("--quick", is_flag=True, help="200,000 aliases per case: under a minute.")
@click.option("--cases", default=",".join(CASES), show_default=True,
              help="Comma-separated subset of the cases.")
@click.option("--aliases", type=click.IntRange(1_000, 50_000_000), default=None,
              help="Override the number of aliases of every case.")
@click.option("--postgres-dsn", envvar="PONTE_BENCH_POSTGRES_DSN",
              default=POSTGRES_ADMIN_DSN_DEFAULT, show_default=True,
              help="Admin DSN: the bench creates a database of its own and drops it.")
@click.option("--redis-url", envvar="PONTE_BENCH_REDIS_URL", default=REDIS_URL_DEFAULT,
              show_default=True, help="Redis for the resolve-redis case (keys are deleted).")
def directory_command(as_json, quick, cases, aliases, postgres_dsn, redis_url):
    """Directory figures: PostgreSQL bulk load, resolves from the in-process cache and through
    Redis, bytes per alias. Targets (issue 4): load >= 200,000/s; cache resolve >= 200,000/s
    with p99 <= 1 ms; <= 200 bytes per cached alias."""
    chosen = [case.strip() for case in cases.split(",") if case.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        raise click.BadParameter(f"unknown case(s) {unknown}; choose from {CASES}",
                                 param_hint="--cases")
    sizes = {case: aliases or (QUICK if quick else FULL)[case] for case in chosen}
    results = asyncio.run(_run(chosen, sizes, postgres_dsn, redis_url, not as_json))
    if as_json:
        click.echo(json.dumps({"results": [
            {key: result[key] for key in ("case", "aliases", "per_s", "p99_ms",
                                          "bytes_per_alias")} for result in results]}))
        return
    for result in results:
        click.echo(f"{result['case']:<14} aliases={result['aliases']:>11,}  "
                   f"per_s={result['per_s']:>10,}  p99_ms={result['p99_ms']}  "
                   f"bytes_per_alias={result['bytes_per_alias']}")
        if "cpu_per_s" in result:
            click.echo(f"{'':<16}cpu_per_s={result['cpu_per_s']:,} (per second of CPU time)")
        if "phases_s" in result:
            click.echo(f"{'':<16}phases_s={result['phases_s']}  (rows generated untimed in "
                       f"{result['generate_s']} s)")
        for verdict in _verdicts(result):
            click.echo(f"{'':<16}{verdict}")


async def _run(chosen, sizes, postgres_dsn, redis_url, show_progress: bool) -> list[dict]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn

    progress_bar = Progress(TextColumn("{task.description:<14}"), BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(),
                            disable=not show_progress, transient=False)
    results = []
    with progress_bar:
        for case in chosen:
            task = progress_bar.add_task(case, total=sizes[case])

            def advance(rows: int, task=task) -> None:
                progress_bar.advance(task, rows)

            if case == "load":
                results.append(await run_load(sizes[case], postgres_dsn, advance))
            elif case == "resolve-cache":
                results.append(await run_resolve_cache(sizes[case], advance))
            else:
                results.append(await run_resolve_redis(sizes[case], redis_url, advance))
            progress_bar.update(task, completed=sizes[case])
    return results


if __name__ == "__main__":
    sys.exit(directory_command())  # pragma: no cover
