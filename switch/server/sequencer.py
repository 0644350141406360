"""The sequencer: the one asyncio loop that carries out the deciding shell's ticks, with
group commit. It decides nothing (`switch/server/shell.py` does); it only awaits.

Each tick
  1. takes up to `tick_events_max` items from the gateway's bounded inbound queue;
  2. stamps them with ONE `now_ns` (time.time_ns(), read here only);
  3. asks the directory for the tick's routes (`shell.lookups`) in one round trip;
  4. has the shell decide (`shell.decide`), arms and cancels the tick's timers at once,
     starts its resolves, and appends its journal records.
A separate committer task makes the journal durable — one write + fdatasync (file, in a
thread) or one COPY (PostgreSQL) covering every tick appended since the last commit — and
carries out the ticks the shell then releases (`shell.released(durable)`), in order:
messages to the participants' sinks, answers to waiting status and admin calls,
`origin.sequenced(n)` to connectors, lookup refunds. While a commit runs, the next tick is
decided (at most `TICKS_IN_FLIGHT_MAX` ticks wait undisclosed).

It must never release anything the shell did not release, never read the clock anywhere
else, and never keep going after the core raised anything but ProtocolError or the journal
failed (state may be half-changed or not durable: fail-stop, restart, replay).
"""

from __future__ import annotations

import asyncio
import logging
import time

from switch.core.messages import ArmTimer, ErrorAnswer, RefundLookupToken
from switch.core.results import Result
from switch.server import limits
from switch.server.gateway import Gateway
from switch.server.metrics import LATENCY_BUCKETS_S, TICK_LATENCY_BUCKETS_S, ServerMetrics
from switch.server.shell import ITEM_ADMIN, ITEM_STATUS, Shell, Tick

log = logging.getLogger("ponte.server.sequencer")


class SequencerFailed(Exception):
    """The sequencer stopped: the core raised (a bug) or the journal failed."""


class Sequencer:
    def __init__(self, *, shell: Shell, gateway: Gateway, journal, timers,
                 metrics: ServerMetrics, tick_events_max: int,
                 commit_interval_s: float = limits.COMMIT_INTERVAL_S_DEFAULT) -> None:
        assert 1 <= tick_events_max <= limits.TICK_EVENTS_MAX_CEILING
        assert 0.0 <= commit_interval_s <= limits.COMMIT_INTERVAL_S_MAX
        assert shell.appended_sequence == journal.appended_sequence
        self.shell = shell
        self.gateway = gateway
        self.journal = journal
        self.timers = timers
        self.metrics = metrics
        self.tick_events_max = tick_events_max
        self.commit_interval_s = commit_interval_s
        self._committed = asyncio.Event()  # set whenever a commit releases ticks
        self._work = asyncio.Event()  # wakes the committer
        self._stop_event = asyncio.Event()
        self._stopping = False
        self.failed: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()  # resolves and refunds under way
        self.events_decided = 0
        # Work that needs the core to equal the durable journal (snapshots, segment
        # rotation): `due()` is asked between ticks, `run()` called once everything decided
        # is durable and released. Set by the server; None: no maintenance.
        self.maintenance = None
        # The durable transfer history (switch/store/history.py), looked up once per tick
        # for the ids the core and the memory archive no longer hold; None: memory only.
        self.history = None
        self._history_down_until = 0.0
        self.history_read_failures = 0

    @property
    def ticks(self) -> int:
        return self.shell.ticks

    @property
    def held_ticks(self) -> int:
        return self.shell.held_ticks

    # -- running ---------------------------------------------------------------------

    async def run(self) -> None:
        """Decide ticks until stop() and the queue is empty. Raises SequencerFailed."""
        committer = asyncio.create_task(self._commit_loop(), name="ponte-committer")
        gateway = self.gateway
        try:
            while True:
                if self.failed is not None:
                    raise SequencerFailed(str(self.failed)) from self.failed
                maintenance = self.maintenance
                if maintenance is not None and maintenance.due(self.events_decided):
                    await self._quiesce()
                    if self.failed is None:
                        maintenance.run(self.events_decided)
                    continue
                if not gateway.inbound_depth:
                    if self._stopping:
                        break
                    waiter = asyncio.ensure_future(gateway.wait_for_items())
                    stopper = asyncio.ensure_future(self._stop_event.wait())
                    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED,
                                       timeout=limits.IDLE_WAKE_S)
                    waiter.cancel()
                    stopper.cancel()
                    continue
                while self.shell.held_ticks >= limits.TICKS_IN_FLIGHT_MAX and self.failed is None:
                    self._committed.clear()
                    await self._committed.wait()
                if self.failed is not None:
                    continue
                await self._tick(gateway.take(self.tick_events_max))
            # Everything decided: wait for the last ticks to be durable and released.
            while self.shell.held_ticks and self.failed is None:
                self._committed.clear()
                self._work.set()
                await self._committed.wait()
            if self.failed is not None:
                raise SequencerFailed(str(self.failed)) from self.failed
        finally:
            committer.cancel()
            try:
                await committer
            except (asyncio.CancelledError, SequencerFailed):
                pass

    async def _quiesce(self) -> None:
        """Until everything decided is durable and released: the core equals the journal."""
        while (self.shell.held_ticks or self.journal.buffered_records) and self.failed is None:
            self._committed.clear()
            self._work.set()
            await self._committed.wait()

    def stop(self) -> None:
        """Finish what is queued, release it, and return from run()."""
        self._stopping = True
        self._stop_event.set()

    def _fail(self, error: BaseException) -> None:
        self.failed = error
        self._committed.set()
        # Wake run() even when no request is queued: it must raise now, so the process
        # stops (exit 70) instead of idling on a journal that refuses every commit.
        self._stop_event.set()
        self.gateway.close()

    # -- deciding --------------------------------------------------------------------

    async def _history_rows(self, wanted: list) -> dict | None:
        """The history's rows for this tick's unknown ids; None when the store cannot say
        (down, slow): the shell then refuses what it cannot decide safely
        (SERVICE_UNAVAILABLE) — never a crash of the sequencer, never a second transfer.
        After a failure the store is left alone for HISTORY_RETRY_S: ticks fail fast."""
        loop_time = time.monotonic()
        if loop_time < self._history_down_until:
            return None
        try:
            return await asyncio.wait_for(self.history.get_many(wanted),
                                          limits.HISTORY_READ_TIMEOUT_S)
        except Exception as error:  # noqa: BLE001 - any store failure: refuse, go on
            self._history_down_until = time.monotonic() + limits.HISTORY_RETRY_S
            self.history_read_failures += 1
            log.error("history_read_failed error=%r: refusing what needs it for %.1f s",
                      error, limits.HISTORY_RETRY_S)
            return None

    async def _tick(self, items: list) -> None:
        now_ns = time.time_ns()
        shell = self.shell
        lookups = shell.lookups(items)
        wanted = shell.history_wanted
        routes: list = []
        rows: dict | None = {}
        if lookups and wanted and self.history is not None:
            routes, rows = await asyncio.gather(self._routes(lookups),
                                                self._history_rows(wanted))
        elif lookups:
            routes = await self._routes(lookups)
        elif wanted and self.history is not None:
            rows = await self._history_rows(wanted)
        try:
            tick = shell.decide(items, routes, now_ns, rows or {},
                                history_unavailable=rows is None)
        except Exception as error:
            # A bug in the core (or the shell): its state may be half-changed. Nothing of
            # this tick was journaled or released; stop, and let a restart replay.
            log.critical("sequencer_failed error=%r", error, exc_info=True)
            self._fail(error)
            return
        timers = self.timers
        for command in tick.timers:
            if type(command) is ArmTimer:
                timers.arm(command.timer_id, command.deadline_ns)
            else:
                timers.cancel(command.timer_id)
        for participant_id, request, origin in tick.resolves:
            self._resolve(participant_id, request, origin)
        if tick.records:
            sequence = self.journal.append_tick(tick.now_ns, tick.records)
            assert sequence == tick.sequence, (sequence, tick.sequence)
            self.metrics.journal_bytes.values[()] = (
                self.metrics.journal_bytes.values.get((), 0) + sum(map(len, tick.records)))
        self.metrics.tick_events.observe(tick.items)
        self.events_decided += tick.items
        self._work.set()

    async def _routes(self, lookups: list) -> list:
        try:
            return await self.gateway.route_many(lookups)
        except Exception as error:  # noqa: BLE001 - a directory outage refuses, never stops
            log.warning("directory_route_failed error=%r", error)
            return [Result.SERVICE_UNAVAILABLE] * len(lookups)

    def _resolve(self, participant_id: int, request, origin) -> None:
        """A resolve submitted like a request: answered through the sink when done. It
        reveals no ledger state, so it need not wait for a commit."""
        if len(self._tasks) >= limits.RESOLVES_IN_FLIGHT_MAX:
            self.gateway.deliver([(participant_id, ErrorAnswer(result=Result.SERVER_BUSY,
                                                               detail="resolve"), origin)])
            return

        async def resolve() -> None:
            answer = await self.gateway.resolve(participant_id, request)
            self.gateway.deliver([(participant_id, answer, origin)])

        self._spawn(resolve())

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- committing and releasing ----------------------------------------------------

    async def _commit_loop(self) -> None:
        journal = self.journal
        metrics = self.metrics
        loop = asyncio.get_running_loop()
        interval_s = self.commit_interval_s
        last_started = 0.0
        while True:
            await self._work.wait()
            self._work.clear()
            if not self.shell.held_ticks:
                continue
            # Pace commits: each one costs a thread hand-off, an fsync and a socket write
            # per connection, whatever it carries. Under load, waiting to the next slot
            # lets one commit carry several ticks; when idle, there is no wait at all.
            wait_s = last_started + interval_s - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
            last_started = loop.time()
            if journal.buffered_records:
                started = time.perf_counter()
                records = journal.buffered_records
                try:
                    durable = await journal.commit()
                except Exception as error:  # noqa: BLE001 - fail-stop, see the docstring
                    log.critical("journal_commit_failed error=%r", error)
                    self._fail(error)
                    return
                metrics.commit_seconds.observe(time.perf_counter() - started)
                metrics.journal_records.values[()] = (
                    metrics.journal_records.values.get((), 0) + records)
            else:
                durable = journal.durable_sequence
            released = self.shell.released(durable)
            if released:
                released_ns = time.time_ns()
                for tick in released:
                    self._release(tick, released_ns)
                self._committed.set()
            if self.shell.held_ticks:
                self._work.set()

    def _release(self, tick: Tick, released_ns: int) -> None:
        metrics = self.metrics
        latency_s = (released_ns - tick.now_ns) / 1e9
        metrics.commit_lag_seconds.observe(latency_s)
        maintenance = self.maintenance
        ServerMetrics.observe_series(
            metrics.tick_latency_writing if maintenance is not None
            and maintenance.snapshot_writing else metrics.tick_latency_idle,
            TICK_LATENCY_BUCKETS_S, latency_s)
        if tick.sends:
            self.gateway.deliver(tick.sends)
        for future, answer in tick.replies:
            if not future.done():
                future.set_result(answer)
        for origin, count in tick.origins.values():
            try:
                origin.sequenced(count)
            except Exception:  # noqa: BLE001 - a connector bug must not stop the switch
                log.exception("origin_sequenced_failed")
        if tick.finals_ns:
            series = metrics.end_to_end
            for forwarded_ns in tick.finals_ns:
                ServerMetrics.observe_series(series, LATENCY_BUCKETS_S,
                                             (released_ns - forwarded_ns) / 1e9)
        if tick.refunds:
            self._spawn(self._refund(tick.refunds))

    async def _refund(self, refunds: list[RefundLookupToken]) -> None:
        for refund in refunds:
            try:
                await self.gateway.refund_lookup(refund.payer_participant_id,
                                                 refund.payer_user_ref)
            except Exception as error:  # noqa: BLE001 - a lost refund costs one token
                log.warning("refund_lookup_failed error=%r", error)
                return

    def fail_pending(self) -> None:
        """After a failure: answer every waiting caller so nothing hangs (decided but not
        durable, or still queued)."""
        waiting = [future for tick in self.shell.abandon() for future, _answer in tick.replies]
        waiting += [extra for kind, _pid, _message, extra in
                    self.gateway.take(limits.INBOUND_QUEUE_MAX_CEILING)
                    if kind in (ITEM_STATUS, ITEM_ADMIN)]
        for future in waiting:
            if not future.done():
                future.set_result(ErrorAnswer(result=Result.INTERNAL_SERVER_ERROR))
