"""Durable ledger throughput: the same workloads as the in-memory modes, with every batch
applied, appended to the journal and committed (fsync, or a PostgreSQL COPY transaction)
inside the measured time.

`run_file(...)` and `run_postgres(...)` each return one result object for
`ponte bench ledger --json` (`{"mode", "workload", "batch_size", "transfers",
"transfers_per_s", "peak_rss_bytes", ...}`); extra keys say how many commits carried the
batches and how long a batch waited to become durable.

Pipelined group commit, as the server does it: while the journal commits what is buffered
(an fsync on a worker thread, or a COPY awaited on the event loop), the next batches are
applied and appended; the commit after that takes everything buffered meanwhile. A batch's
results count as released only when a commit covering it has returned, and the clock stops
only after the last commit returned. Generating the input is done before the clock starts.
This module drives the ledger only through `ledger.recovery.DurableLedger` and the journal
classes; it must never reach into their internals.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

from bench.ledger_workloads import (
    ACCOUNTS_DEFAULT,
    make_accounts,
    pregenerate,
    split_batches,
)
from ledger.journal_format import JournalBufferFull
from ledger.recovery import DurableLedger

NOW_NS_START = 1_000_000_000
# Once this much is buffered behind a commit in flight, wait for that commit before applying
# more: at batch 8,189 (~590 KB) that is one batch applied while the previous one commits;
# small batches still group many per commit. It bounds how long a result waits unreleased.
PIPELINE_BUFFERED_BYTES_MAX = 512 * 1024


def _ledger(ledger_class):
    if ledger_class is None:
        from ledger import Ledger as ledger_class
    return ledger_class()


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


class _Latencies:
    """Per batch: from the start of its apply to the return of the commit covering it."""

    def __init__(self) -> None:
        self.started: list[tuple[int, float]] = []  # (sequence, start time)
        self.durable: list[tuple[int, float]] = []  # (durable sequence, time), in order

    def summary(self) -> dict:
        values = []
        durable_index = 0
        for sequence, started in self.started:
            while self.durable[durable_index][0] < sequence:
                durable_index += 1
            values.append((self.durable[durable_index][1] - started) * 1e3)
        values.sort()
        return {"durable_latency_ms_p50": round(_percentile(values, 0.50), 3),
                "durable_latency_ms_p99": round(_percentile(values, 0.99), 3),
                "durable_latency_ms_max": round(values[-1] if values else 0.0, 3)}


def _result(mode: str, workload: str, batch_size: int, transfers: int, seconds: float,
            commits: int, latencies: _Latencies, implementation: str, **extra) -> dict:
    return {
        "mode": mode,
        "workload": workload,
        "batch_size": batch_size,
        "transfers": transfers,
        "transfers_per_s": round(transfers / seconds) if seconds > 0 else 0,
        "peak_rss_bytes": _peak_rss_bytes(),
        "seconds": round(seconds, 4),
        "commits": commits,
        "batches_per_commit": round(len(latencies.started) / commits, 2) if commits else 0,
        "ledger": implementation,
        **latencies.summary(),
        **extra,
    }


# -- file journal -------------------------------------------------------------------------------


def run_file(workload: str, batch_size: int, transfers: int, seed: int, *,
             directory: str | None = None, accounts: int = ACCOUNTS_DEFAULT,
             ledger_class=None) -> dict:
    """Durable throughput with the file journal (fdatasync per group commit)."""
    from ledger.journal import FileJournal

    batches = pregenerate(workload, batch_size, transfers, seed, accounts=accounts)
    workdir = tempfile.mkdtemp(prefix="ponte-bench-journal-", dir=directory)
    journal = FileJournal.open(os.path.join(workdir, "ledger.journal"))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-commit")
    try:
        ledger = _ledger(ledger_class)
        durable = DurableLedger(ledger, journal)
        for batch in split_batches(make_accounts(accounts)):
            assert durable.create_accounts(batch, NOW_NS_START) == []
        durable.commit()

        latencies = _Latencies()
        durable_marks = latencies.durable
        lock = threading.Lock()

        def commit_and_mark() -> int:
            sequence = journal.commit()
            with lock:
                durable_marks.append((sequence, time.perf_counter()))
            return sequence

        commits = 0
        in_flight: Future | None = None
        now_ns = NOW_NS_START
        create_transfers = durable.create_transfers
        started = time.perf_counter()
        for batch in batches:
            now_ns += 1_000
            batch_started = time.perf_counter()
            while True:
                try:
                    create_transfers(batch, now_ns)
                    break
                except JournalBufferFull:
                    # Back-pressure: the disk is behind; wait for the commit in flight.
                    assert in_flight is not None
                    in_flight.result()
                    in_flight = executor.submit(commit_and_mark)
                    commits += 1
            latencies.started.append((journal.appended_position.sequence, batch_started))
            if (in_flight is not None and not in_flight.done()
                    and journal.buffered_bytes >= PIPELINE_BUFFERED_BYTES_MAX):
                in_flight.result()  # bound the pipeline: one commit behind, at most
            if in_flight is None or in_flight.done():
                if in_flight is not None:
                    in_flight.result()  # surfaces a failed commit
                in_flight = executor.submit(commit_and_mark)
                commits += 1
        if in_flight is not None:
            in_flight.result()
        if journal.buffered_records:
            commit_and_mark()
            commits += 1
        seconds = time.perf_counter() - started
        assert journal.position.sequence == journal.appended_position.sequence
        journal_bytes = journal.position.offset
        return _result("file", workload, batch_size, transfers, seconds, commits, latencies,
                       getattr(ledger, "implementation", "unknown"),
                       journal_bytes=journal_bytes)
    finally:
        executor.shutdown(wait=True)
        journal.close()
        shutil.rmtree(workdir, ignore_errors=True)


# -- PostgreSQL journal -------------------------------------------------------------------------


def run_postgres(workload: str, batch_size: int, transfers: int, seed: int, dsn: str, *,
                 accounts: int = ACCOUNTS_DEFAULT, ledger_class=None) -> dict:
    """Durable throughput with the PostgreSQL journal (one COPY transaction per group
    commit). Applies the migrations first; removes its journal rows afterwards."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # uvloop is a dependency; keep the bench usable without it
        runner = asyncio.run
    return runner(_run_postgres(workload, batch_size, transfers, seed, dsn, accounts,
                                ledger_class))


async def _run_postgres(workload: str, batch_size: int, transfers: int, seed: int, dsn: str,
                        accounts: int, ledger_class) -> dict:
    from ledger.journal_postgres import PostgresJournal
    from switch.store.migrate import migrate_dsn

    await migrate_dsn(dsn)
    batches = pregenerate(workload, batch_size, transfers, seed, accounts=accounts)
    name = f"bench-{uuid.uuid4().hex[:12]}"
    journal = await PostgresJournal.open(dsn, name=name)
    try:
        ledger = _ledger(ledger_class)
        durable = DurableLedger(ledger, journal)
        for batch in split_batches(make_accounts(accounts)):
            assert durable.create_accounts(batch, NOW_NS_START) == []
        await durable.commit()

        latencies = _Latencies()
        durable_marks = latencies.durable

        async def commit_and_mark() -> int:
            sequence = await journal.commit()
            durable_marks.append((sequence, time.perf_counter()))
            return sequence

        commits = 0
        in_flight: asyncio.Task | None = None
        now_ns = NOW_NS_START
        create_transfers = durable.create_transfers
        started = time.perf_counter()
        for batch in batches:
            now_ns += 1_000
            batch_started = time.perf_counter()
            while True:
                try:
                    create_transfers(batch, now_ns)
                    break
                except JournalBufferFull:
                    assert in_flight is not None
                    await in_flight
                    in_flight = asyncio.ensure_future(commit_and_mark())
                    commits += 1
            latencies.started.append((journal.appended_position.sequence, batch_started))
            if (in_flight is not None and not in_flight.done()
                    and journal.buffered_bytes >= PIPELINE_BUFFERED_BYTES_MAX):
                await in_flight  # bound the pipeline: one commit behind, at most
            if in_flight is None or in_flight.done():
                if in_flight is not None:
                    in_flight.result()
                in_flight = asyncio.ensure_future(commit_and_mark())
                commits += 1
            # Let the COPY in flight move its bytes while the next batch is prepared.
            await asyncio.sleep(0)
        if in_flight is not None:
            await in_flight
        if journal.buffered_records:
            await commit_and_mark()
            commits += 1
        seconds = time.perf_counter() - started
        assert journal.position.sequence == journal.appended_position.sequence
        return _result("postgres", workload, batch_size, transfers, seconds, commits,
                       latencies, getattr(ledger, "implementation", "unknown"))
    finally:
        connection = journal.connection
        if not journal.failed:
            await connection.execute("DELETE FROM ledger_journal WHERE journal_name = $1",
                                     name)
        await journal.close()


if __name__ == "__main__":  # a quick look without the CLI: python -m bench.ledger_durable
    import json
    import sys

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    print(json.dumps(run_file("uniform", 8_189, size, 1)))
    postgres_dsn = os.environ.get("PONTE_POSTGRES_DSN")
    if postgres_dsn:
        print(json.dumps(run_postgres("uniform", 8_189, size, 1, postgres_dsn)))
