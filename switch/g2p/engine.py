"""The G2P batch engine: turns a programme's batches into ordinary Ponte transfers, paced,
and keeps each row's status.

How a row is paid (docs/g2p.md, "The batch life cycle"):
1. The connector adds validated rows to a batch in the store (`add_rows`); a row names its
   beneficiary by identity token (national ID) or by financial address.
2. The pump takes PENDING rows in row order, a page at a time (never the whole batch in
   memory), resolves national IDs through the directory's mapper in one read, marks the
   page SUBMITTED in the store with the route and the transfer's expiry, then submits each
   row to the gateway as a transfer from the programme, with the id `g2p.<batch>.<row>.
   <attempt>` (`types.transfer_id`). Unmapped rows fail there and then.
3. Outcomes arrive through the programme's sink (`_ProgrammeSink`); the flusher writes them
   to the store in batches. A funding refusal (the programme's account cannot cover the
   row) sends the row back to PENDING under its next attempt and pauses the batch; the
   pause is probed again after `funding_probe_s` with a window of one row.
4. After a restart, SUBMITTED rows are submitted again first, with the same id, route and
   expiry: the core answers what it holds (in flight, final, or archived), so no row is
   paid twice. The engine's window (`in_flight_rows_max`) is far smaller than the core's
   tables, so a row's transfer is always still held when it is asked again.

Pacing: at most `rate_rows_per_s`, at most the window's rows in flight, and nothing while
the switch's inbound queue is deeper than `live_queue_depth_max` (live payments first). The
window (`switch/g2p/window.py`, up to `in_flight_rows_max`) follows the rows' round trips:
it shrinks when they slow down (a queue is building, in which live payments wait too) and
halves when a row's transfer expired (its payee did not answer in time); such a row is
tried again under its next attempt, up to `PAYEE_UNAVAILABLE_ATTEMPTS_MAX` attempts.

It must never hold a raw national ID (rows carry identity tokens), never hold a batch's
rows in memory beyond one page and the window, and never submit a row whose attempt could
already have been paid.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import msgspec

from switch.core.messages import Refused, TransferOutcome, TransferRequest
from switch.core.results import TRANSFER_FINAL_STATES, Result, TransferState
from switch.g2p import limits
from switch.g2p.types import (
    BATCH_ACTIONS,
    FUNDING_RESULTS,
    RETRY_RESULTS,
    REASON_NAMES,
    BatchCounts,
    BatchRecord,
    BatchState,
    G2PConfig,
    PayeeKind,
    PendingRow,
    RowReason,
    RowStatus,
    reason_for,
    transfer_id,
)
from switch.g2p.window import Window

log = logging.getLogger("ponte.g2p")

_NS_PER_MS = 1_000_000
_RATE_WINDOW_S = 10.0


class _Open:
    """An open batch in memory: its record, counters and cursor — never its rows."""

    __slots__ = ("record", "counts", "cursor", "in_flight", "drained", "probe", "probe_at",
                 "completing", "samples")

    def __init__(self, record: BatchRecord, counts: BatchCounts) -> None:
        self.record = record
        self.counts = counts
        self.cursor = 0  # rows up to here were taken from the store
        self.in_flight = 0
        self.drained = False  # no PENDING row after the cursor
        self.probe = False  # after a funding pause: one row at a time until one is paid
        self.probe_at = 0.0  # monotonic time of the next funding probe
        self.completing = False
        self.samples: deque[tuple[float, int]] = deque(maxlen=64)  # (monotonic, finals)

    def finals(self) -> int:
        counts = self.counts
        return counts.paid + counts.failed + counts.cancelled

    def rate_per_s(self, now: float) -> float:
        samples = self.samples
        while samples and now - samples[0][0] > _RATE_WINDOW_S:
            samples.popleft()
        if not samples:
            return 0.0
        elapsed = now - samples[0][0]
        return (self.finals() - samples[0][1]) / elapsed if elapsed > 0 else 0.0


class _ProgrammeSink:
    """The gateway sink (and origin) the engine attaches for each programme: every outcome
    of the programme's G2P transfers comes back here."""

    __slots__ = ("engine", "participant_id")

    def __init__(self, engine: Engine, participant_id: int) -> None:
        self.engine = engine
        self.participant_id = participant_id

    def deliver(self, message) -> None:
        self.engine._delivered(message)

    def flush(self) -> None:
        pass

    def sequenced(self, count: int) -> None:
        pass

    def close(self, reason: str) -> None:
        log.warning("g2p.sink_closed participant_id=%d reason=%s", self.participant_id, reason)


class Engine:
    """See the module docstring. `start()` recovers and runs; `close()` stops."""

    def __init__(self, gateway, store, config: G2PConfig, *, on_batch_done=None) -> None:
        self.gateway = gateway
        self.store = store
        self.config = config
        # Called (batch record, counts) when a batch completes: the connector's callback.
        self.on_batch_done = on_batch_done
        self.open: dict[int, _Open] = {}
        self._sinks: dict[int, _ProgrammeSink] = {}
        # transfer id -> (batch id, row, route, monotonic time submitted): rows submitted
        # and not final (the window).
        self._flying: dict[str, tuple[int, PendingRow, tuple[int, str], float]] = {}
        self._resubmit: deque[tuple[int, PendingRow, tuple[int, str]]] = deque()
        self._outcomes: list[tuple] = []
        self._unsubmitted: list[tuple] = []
        self._next_batch = deque()  # round robin of open batch ids
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._lock = asyncio.Lock()  # one pump step or batch action at a time
        self.rows_submitted_total = 0
        self.rows_paid_total = 0
        self.rows_failed_total = 0
        self.yields_total = 0  # pump steps skipped for live traffic
        self.rows_retried_total = 0  # rows tried again after their payee did not answer
        self.window_control = Window(limits.WINDOW_ROWS_MIN, config.in_flight_rows_max,
                                     time.monotonic())

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Load the open batches and their in-flight rows (after a restart), then run."""
        for record in await self.store.list_batches(None, limits.BATCHES_LISTED_MAX):
            if record.state is BatchState.COMPLETED:
                continue
            counts = await self.store.counts(record.batch_id)
            batch = self._adopt(record, counts)
            if counts.submitted:
                rows = await self.store.submitted_rows(record.batch_id,
                                                       limits.IN_FLIGHT_ROWS_MAX_CEILING)
                for row in rows:
                    self._resubmit.append((record.batch_id, row,
                                           (row.payee_participant_id, row.payee_account_ref)))
                log.info("g2p.recovering batch_id=%d rows_submitted=%d", record.batch_id,
                         len(rows))
            if record.state is BatchState.PAUSED_FUNDING:
                batch.probe_at = time.monotonic() + self.config.funding_probe_s
        self._tasks = [asyncio.create_task(self._pump(), name="ponte-g2p-pump"),
                       asyncio.create_task(self._flusher(), name="ponte-g2p-flush")]

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        self._tasks = []
        await self._flush()
        for participant_id, sink in self._sinks.items():
            self.gateway.detach(participant_id, sink)
        self._sinks.clear()

    @property
    def window(self) -> int:
        """Rows the engine may have in flight now."""
        return self.window_control.size

    def _adopt(self, record: BatchRecord, counts: BatchCounts) -> _Open:
        batch = self.open.get(record.batch_id)
        if batch is None:
            batch = self.open[record.batch_id] = _Open(record, counts)
            self._next_batch.append(record.batch_id)
            batch.samples.append((time.monotonic(), batch.finals()))
        self._sink(record.programme_id)
        return batch

    def _sink(self, participant_id: int) -> _ProgrammeSink:
        sink = self._sinks.get(participant_id)
        if sink is None:
            sink = self._sinks[participant_id] = _ProgrammeSink(self, participant_id)
            self.gateway.attach(participant_id, sink)
        return sink

    # -- rows arrive -----------------------------------------------------------------

    async def rows_added(self, record: BatchRecord, added: int) -> None:
        """The connector added `added` rows to a batch: (re)open it and wake the pump.
        The counters of an open batch are kept in memory from here on, never read back
        from the store while outcomes may still be buffered (they would be stale)."""
        async with self._lock:
            batch = self.open.get(record.batch_id)
            if batch is None:
                counts = await self.store.counts(record.batch_id)
                batch = self._adopt(record, counts)
            else:
                batch.counts.pending += added
            batch.record.rows_total = record.rows_total
            batch.record.amount_total_minor = record.amount_total_minor
            batch.drained = False
            if batch.record.state is BatchState.COMPLETED:
                await self._set_state(batch, BatchState.ACTIVE)
        self._wake.set()

    # -- the pump --------------------------------------------------------------------

    async def _pump(self) -> None:
        config = self.config
        rate = config.rate_rows_per_s
        burst = min(float(limits.SUBMIT_CHUNK_MAX), max(1.0, rate * 0.01))
        tokens = 0.0
        last = time.monotonic()
        while not self._closing:
            now = time.monotonic()
            tokens = min(burst, tokens + (now - last) * rate)
            last = now
            room = self.window - len(self._flying)
            gateway = self.gateway
            if not self.open and not self._resubmit:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
                last = time.monotonic()
                continue
            if gateway.inbound_depth > config.live_queue_depth_max:
                self.yields_total += 1
                await asyncio.sleep(limits.PUMP_INTERVAL_S)
                continue
            if (tokens < 1.0 or room <= 0 or not gateway.accepting
                    or len(self._outcomes) >= limits.OUTCOMES_BUFFERED_MAX):
                # (a store that cannot keep up holds the pump back: bounded buffers)
                await asyncio.sleep(limits.PUMP_INTERVAL_S)
                continue
            count = int(min(tokens, room, limits.SUBMIT_CHUNK_MAX))
            try:
                async with self._lock:
                    submitted = await self._submit_some(count)
            except Exception:  # noqa: BLE001 - a store or directory failure: try again later
                log.exception("g2p.pump_failed")
                submitted = 0
                await asyncio.sleep(0.5)
            tokens -= submitted
            self.window_control.used(len(self._flying))
            if submitted == 0:
                await asyncio.sleep(limits.PUMP_INTERVAL_S)

    async def _submit_some(self, count: int) -> int:
        submitted = 0
        resubmit = self._resubmit
        while resubmit and submitted < count:
            batch_id, row, route = resubmit[0]
            if not self._submit(batch_id, row, route):
                return submitted
            resubmit.popleft()
            submitted += 1
        if submitted >= count:
            return submitted
        batch = self._choose_batch()
        if batch is None:
            return submitted
        if batch.probe:
            count = min(count - submitted, 1 - batch.in_flight) + submitted
            if count <= submitted:
                return submitted
        rows = await self.store.pending_rows(batch.record.batch_id, batch.cursor,
                                             count - submitted)
        if not rows:
            batch.drained = True
            self._check_done(batch)
            return submitted
        routes = await self._routes(batch, rows)
        expires_at_ns = time.time_ns() + self.config.transfer_expiry_ms * _NS_PER_MS
        marked = []
        ready = []
        for row, route in zip(rows, routes):
            if route is None:
                continue
            row.payee_participant_id, row.payee_account_ref = route
            row.expires_at_ns = expires_at_ns
            marked.append((row.row_no, row.attempt, route[0], route[1], expires_at_ns))
            ready.append((row, route))
        if marked:
            await self.store.mark_submitted(batch.record.batch_id, marked, time.time_ns())
        batch.cursor = rows[-1].row_no  # only now: a failure above retries the same page
        batch_id = batch.record.batch_id
        counts = batch.counts
        for row, route in ready:
            counts.pending -= 1
            counts.submitted += 1
            if not self._submit(batch_id, row, route):
                resubmit.append((batch_id, row, route))
            else:
                submitted += 1
        return submitted

    def _choose_batch(self) -> _Open | None:
        """The next open batch that may submit (round robin), probing funding pauses."""
        order = self._next_batch
        now = time.monotonic()
        for _ in range(len(order)):
            batch_id = order[0]
            order.rotate(-1)
            batch = self.open.get(batch_id)
            if batch is None:
                continue
            state = batch.record.state
            if state is BatchState.PAUSED_FUNDING and now >= batch.probe_at:
                batch.record.state = BatchState.ACTIVE
                batch.probe = True
                batch.cursor = 0
                batch.drained = False
                self._spawn_state_write(batch)
                state = BatchState.ACTIVE
            if state is BatchState.ACTIVE and not batch.drained and not batch.completing:
                return batch
        return None

    async def _routes(self, batch: _Open, rows: list[PendingRow]) -> list:
        """(payee participant id, account reference) per row, or None for a row that
        failed here (unmapped national ID)."""
        routes: list = [None] * len(rows)
        tokens, positions = [], []
        for index, row in enumerate(rows):
            if row.payee_kind == PayeeKind.NATIONAL_ID:
                tokens.append(bytes.fromhex(row.payee_key))
                positions.append(index)
            else:
                account_ref, _, participant = row.payee_key.rpartition("@")
                routes[index] = (int(participant), account_ref)
        if tokens:
            answers = await self.gateway.mapper_resolve_tokens(tokens)
            for index, answer in zip(positions, answers):
                if type(answer) is tuple:
                    routes[index] = answer
                    continue
                row = rows[index]
                self._unsubmitted.append((batch.record.batch_id, row.row_no,
                                          int(RowReason.UNMAPPED),
                                          int(Result.G2P_PAYEE_UNMAPPED)))
                self._count_failed(batch, RowReason.UNMAPPED, row.amount_minor, pending=True)
        return routes

    def _submit(self, batch_id: int, row: PendingRow, route: tuple[int, str]) -> bool:
        """Hand one row's transfer to the gateway; False when the switch is busy."""
        batch = self.open[batch_id]
        record = batch.record
        if row.payee_kind == PayeeKind.NATIONAL_ID:
            payee = {"alias_type": "NATIONAL_ID", "alias_value": row.payee_key}
        else:
            payee = {"alias_type": "ACCOUNT", "alias_value": f"{route[0]}:{route[1]}"}
        tid = transfer_id(batch_id, row.row_no, row.attempt)
        message = msgspec.convert({
            "transfer_id": tid, "payee": payee, "amount_minor": row.amount_minor,
            "currency": record.currency, "expires_at_ns": row.expires_at_ns,
            "end_to_end_id": record.transaction_id,
        }, TransferRequest)
        sink = self._sink(record.programme_id)
        result = self.gateway.submit_routed(record.programme_id, message, route, sink)
        if result is not Result.OK:
            return False
        self._flying[tid] = (batch_id, row, route, time.monotonic())
        batch.in_flight += 1
        self.rows_submitted_total += 1
        return True

    # -- outcomes ----------------------------------------------------------------------

    def _delivered(self, message) -> None:
        """Everything the gateway delivers to a programme: G2P transfers' outcomes (the
        rest — credit requests, other transfers — are not the engine's)."""
        message_type = type(message)
        if message_type is TransferOutcome:
            if message.state not in TRANSFER_FINAL_STATES:
                return
            self._final(message.transfer_id, message.state, message.result, message.reason)
        elif message_type is Refused:
            self._refused(message.id, message.result)

    def _final(self, tid: str, state: TransferState, result: Result, payee_reason: str) -> None:
        entry = self._flying.pop(tid, None)
        if entry is None:
            return  # a repeated answer, or not a G2P transfer
        batch_id, row, _route, submitted_at = entry
        batch = self.open[batch_id]
        batch.in_flight -= 1
        if state is TransferState.COMMITTED:
            now = time.monotonic()
            self.window_control.paid(now - submitted_at, now)
            self._outcomes.append((batch_id, row.row_no, row.attempt, int(RowStatus.PAID), 0,
                                   0, row.attempt))
            batch.counts.submitted -= 1
            batch.counts.paid += 1
            batch.counts.paid_minor += row.amount_minor
            self.rows_paid_total += 1
            batch.probe = False
        elif result in FUNDING_RESULTS:
            self._back_to_pending(batch, row, result)
        elif result is Result.TRANSFER_EXPIRED and (
                row.attempt + 1 < limits.PAYEE_UNAVAILABLE_ATTEMPTS_MAX):
            # Its payee did not answer in time; nothing was paid. Fewer rows at once, and
            # this one again under its next attempt.
            self.window_control.expired(time.monotonic())
            self.rows_retried_total += 1
            self._back_to_pending(batch, row, result, pause=False)
        else:
            if result is Result.TRANSFER_EXPIRED:
                self.window_control.expired(time.monotonic())
            reason = reason_for(result, payee_reason)
            self._outcomes.append((batch_id, row.row_no, row.attempt, int(RowStatus.FAILED),
                                   int(reason), int(result), row.attempt))
            self._count_failed(batch, reason, row.amount_minor, pending=False)
        self._after_outcome(batch)

    def _refused(self, tid: str, result: Result) -> None:
        entry = self._flying.get(tid)
        if entry is None:
            return
        batch_id, row, route, _submitted_at = entry
        batch = self.open[batch_id]
        if result in RETRY_RESULTS:
            # Nothing was recorded: the same id is submitted again.
            del self._flying[tid]
            batch.in_flight -= 1
            self._resubmit.append((batch_id, row, route))
            return
        if result is Result.TRANSFER_EXPIRED:
            # A re-submission after a restart whose transfer the switch never recorded: the
            # row was not paid; a fresh attempt pays it.
            del self._flying[tid]
            batch.in_flight -= 1
            self._back_to_pending(batch, row, result, pause=False)
            self._after_outcome(batch)
            return
        self._final(tid, TransferState.REJECTED, result, "")

    def _back_to_pending(self, batch: _Open, row: PendingRow, result: Result,
                         pause: bool = True) -> None:
        self._outcomes.append((batch.record.batch_id, row.row_no, row.attempt,
                               int(RowStatus.PENDING), 0, int(result), row.attempt + 1))
        batch.counts.submitted -= 1
        batch.counts.pending += 1
        batch.cursor = 0
        batch.drained = False
        if pause and batch.record.state is BatchState.ACTIVE:
            batch.record.state = BatchState.PAUSED_FUNDING
            batch.probe_at = time.monotonic() + self.config.funding_probe_s
            self._spawn_state_write(batch)
            log.info("g2p.batch_paused_funding batch_id=%d", batch.record.batch_id)

    def _count_failed(self, batch: _Open, reason: RowReason, amount_minor: int,
                      pending: bool) -> None:
        counts = batch.counts
        if pending:
            counts.pending -= 1
        else:
            counts.submitted -= 1
        counts.failed += 1
        counts.failed_minor += amount_minor
        name = REASON_NAMES[reason]
        counts.by_reason[name] = counts.by_reason.get(name, 0) + 1
        self.rows_failed_total += 1

    def _after_outcome(self, batch: _Open) -> None:
        if len(self._outcomes) >= limits.FLUSH_ROWS_MAX:
            self._wake.set()
        self._check_done(batch)

    def _check_done(self, batch: _Open) -> None:
        counts = batch.counts
        if (batch.drained and batch.in_flight == 0 and counts.pending <= 0
                and counts.submitted <= 0 and batch.record.state is BatchState.ACTIVE
                and not any(batch_id == batch.record.batch_id
                            for batch_id, _row, _route in self._resubmit)):
            batch.completing = True

    # -- the flusher -----------------------------------------------------------------

    async def _flusher(self) -> None:
        while not self._closing:
            await asyncio.sleep(limits.FLUSH_INTERVAL_S)
            try:
                await self._flush()
                await self._complete()
            except Exception:  # noqa: BLE001 - the store failed: keep the buffer, retry
                log.exception("g2p.flush_failed")
                await asyncio.sleep(0.5)

    async def _flush(self) -> None:
        """Write the buffered outcomes (one transaction each kind)."""
        now_ns = time.time_ns()
        if self._unsubmitted:
            unsubmitted, self._unsubmitted = self._unsubmitted, []
            try:
                await self.store.fail_unsubmitted(unsubmitted, now_ns)
            except BaseException:
                self._unsubmitted[:0] = unsubmitted
                raise
        if self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            try:
                await self.store.record_outcomes(outcomes, now_ns)
            except BaseException:
                self._outcomes[:0] = outcomes
                raise
        now = time.monotonic()
        for batch in self.open.values():
            if batch.drained and batch.counts.pending > 0:
                # Rows sent back to PENDING (funding) are in the store now: read them again.
                batch.drained = False
                batch.cursor = 0
            if not batch.samples or now - batch.samples[-1][0] >= 1.0:
                batch.samples.append((now, batch.finals()))

    async def _complete(self) -> None:
        done = [batch for batch in self.open.values() if batch.completing]
        for batch in done:
            batch.completing = False
            async with self._lock:
                if batch.record.state is not BatchState.ACTIVE:
                    continue
                stored = await self.store.counts(batch.record.batch_id)
                if stored.pending or stored.submitted or batch.in_flight:
                    # Rows arrived meanwhile, or outcomes are still buffered: look again
                    # (the pump finds the batch drained and asks once more).
                    batch.drained = False
                    batch.cursor = 0
                    continue
                batch.counts = stored  # exact: everything is flushed and nothing flies
                await self._set_state(batch, BatchState.COMPLETED)
            log.info("g2p.batch_completed batch_id=%d rows=%d paid=%d failed=%d",
                     batch.record.batch_id, batch.record.rows_total, batch.counts.paid,
                     batch.counts.failed)
            if self.on_batch_done is not None:
                try:
                    self.on_batch_done(batch.record, batch.counts)
                except Exception:  # noqa: BLE001 - a callback bug must not stop batches
                    log.exception("g2p.batch_done_callback_failed")

    async def _set_state(self, batch: _Open, state: BatchState) -> None:
        batch.record.state = state
        await self.store.set_state(batch.record.batch_id, state, time.time_ns())

    def _spawn_state_write(self, batch: _Open) -> None:
        task = asyncio.ensure_future(self.store.set_state(
            batch.record.batch_id, batch.record.state, time.time_ns()))
        task.add_done_callback(_log_failure)

    # -- operator actions (maker-checker, through the admin service) -----------------

    async def batch_action(self, batch_id: int, action: str) -> Result:
        """pause, resume or cancel a batch; G2P_BATCH_NOT_FOUND or G2P_BATCH_STATE when it
        cannot be done (nothing changes then)."""
        if action not in BATCH_ACTIONS:
            return Result.VALIDATION_ERROR
        async with self._lock:
            batch = self.open.get(batch_id)
            if batch is None:
                record = await self.store.get_batch(batch_id)
                if record is None:
                    return Result.G2P_BATCH_NOT_FOUND
                batch = self._adopt(record, await self.store.counts(batch_id))
            allowed, target = BATCH_ACTIONS[action]
            if batch.record.state not in allowed:
                return Result.G2P_BATCH_STATE
            await self._flush()
            if action == "cancel":
                await self._set_state(batch, BatchState.CANCELLED)
                cancelled = await self.store.cancel_pending(batch_id, time.time_ns())
                batch.counts.pending -= cancelled
                batch.counts.cancelled += cancelled
            else:
                batch.cursor = 0
                batch.drained = False
                batch.probe = False
                await self._set_state(batch, target)
        log.info("g2p.batch_%s batch_id=%d", action, batch_id)
        self._wake.set()
        return Result.OK

    # -- views -----------------------------------------------------------------------

    async def batch_view(self, batch_id: int) -> tuple[BatchRecord, BatchCounts, float] | None:
        """(record, counts, finals per second over the last seconds), from memory for an
        open batch, else from the store."""
        batch = self.open.get(batch_id)
        if batch is not None:
            return batch.record, batch.counts, batch.rate_per_s(time.monotonic())
        record = await self.store.get_batch(batch_id)
        if record is None:
            return None
        return record, await self.store.counts(batch_id), 0.0

    @property
    def in_flight(self) -> int:
        return len(self._flying)

    async def wait_idle(self, timeout_s: float) -> bool:
        """Until every open batch is completed, cancelled or paused by an operator (a
        funding pause is waited for: it probes again) (tests, the bench)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy = [batch for batch in self.open.values()
                    if batch.record.state in (BatchState.ACTIVE, BatchState.PAUSED_FUNDING)
                    or batch.in_flight]
            if not busy and not self._resubmit:
                await self._flush()
                return True
            await asyncio.sleep(0.02)
        return False


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("g2p.state_write_failed error=%r", task.exception())


__all__ = ["Engine"]
