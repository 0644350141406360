"""The history writer: moves what the outcome archive queued (final transfers dropped from
the core's retained window) into the durable transfer history, in batches, off the
sequencer's path; confirms each batch back to the archive so memory may forget it; and
prunes rows older than the retention.

It must never block the loop, never confirm a batch the store did not take, and never lose
one: a failed write is retried (the archive keeps everything unconfirmed in memory, and the
journal could rebuild it anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time

from switch.server import limits

log = logging.getLogger("ponte.server.history")

NS_PER_DAY = 86_400 * 10**9


class HistoryWriter:
    def __init__(self, store, archive, *, retention_days: int) -> None:
        self.store = store
        self.archive = archive
        self.retention_ns = retention_days * NS_PER_DAY
        self._pending: list = []
        self._task: asyncio.Task | None = None
        # One flush at a time: two would store the same batch and each confirm it, and
        # the second would drop rows it never stored from the pending list.
        self._flushing = asyncio.Lock()
        self._stopping = False
        # Memory's bound on outcomes the store has not confirmed (see `overloaded`).
        self.unconfirmed_max = limits.HISTORY_UNCONFIRMED_FACTOR * archive.entries_max
        self._overloaded = False
        self.rows_written = 0
        self.rows_pruned = 0
        self.failures = 0

    @property
    def overloaded(self) -> bool:
        """Memory holds more unconfirmed outcomes than the bound: the store is down or slow.
        The gateway refuses new work meanwhile (answers and status queries still flow), so
        memory stays bounded and nothing is lost; it clears as the store catches up."""
        over = self.archive.unconfirmed > self.unconfirmed_max
        if over is not self._overloaded:
            self._overloaded = over
            (log.error if over else log.warning)(
                "history_%s unconfirmed=%d bound=%d", "overloaded_refusing_new_work" if over
                else "caught_up", self.archive.unconfirmed, self.unconfirmed_max)
        return over

    @property
    def backlog(self) -> int:
        """Rows taken from the archive (or still queued in it) not yet in the store."""
        return len(self._pending) + len(self.archive._writes)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ponte-history")

    async def _run(self) -> None:
        next_prune = time.monotonic()
        while not self._stopping:
            await self.flush()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + limits.HISTORY_PRUNE_INTERVAL_S
                await self._prune()
            await asyncio.sleep(limits.HISTORY_FLUSH_INTERVAL_S)

    async def flush(self) -> None:
        """Everything the archive queued, into the store; confirmed once stored."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        self._pending += self.archive.take_writes()
        while self._pending:
            batch = self._pending[:limits.HISTORY_BATCH_ROWS_MAX]
            try:
                await self.store.put_many(batch)
            except Exception as error:  # noqa: BLE001 - retried; the archive keeps them
                self.failures += 1
                log.error("history_write_failed rows=%d error=%r", len(batch), error)
                return
            del self._pending[:len(batch)]
            self.rows_written += len(batch)
            self.archive.written(len(batch))

    async def _prune(self) -> None:
        try:
            self.rows_pruned += await self.store.prune(time.time_ns() - self.retention_ns)
        except Exception as error:  # noqa: BLE001 - tried again at the next interval
            log.warning("history_prune_failed error=%r", error)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
