"""`SwitchServer`: one switch process's server — ledger, core, journal, gateway, deciding
shell, sequencer, timers — its recovery on start and its graceful shutdown. What it runs
on (directory, credential store) and what listens in front of it (connectors, the admin
surface, the console) are given to it by the composition root, `switch/app.py`: this module
imports no connector, no store and no console.

Start: open the journal and replay every record into a fresh core on a fresh ledger (a full
replay: no core snapshots yet), check the ledger's invariants, re-arm the core's timers and
hold the re-sent credit requests until their payees connect, then open the gateway and the
listeners. Stop: refuse new work, let transfers in flight finish for up to
`shutdown_drain_s` (payee answers and timers still run), then stop the listeners, drain
the queue, make the journal durable and close it. Whatever is still in flight then is
resumed by the next start (its timer is re-armed, its credit request re-sent).

A standby (`role = "standby"`, `start_standby` then `take_over`) builds the same core and
ledger, follows the primary's PostgreSQL journal record by record with the replay's own
step (`_replay_record`), and when the primary's lock is released takes the next epoch,
reads the last records and goes on exactly as a start does after its replay (`_open`):
timers re-armed, re-sent credit requests held, gateway opened.

It must never release anything before the sequencer does, never run with asserts stripped
unless the configuration says so, never change process-wide settings (the entry point
tunes the process: `switch.app.tune_process`), never write the journal as a standby, and
never print a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import msgspec

from switch.core import SwitchCore
from switch.core.messages import TimerFired
from switch.core.results import ProtocolError
from switch.server.config import Secret, ServerConfig
from switch.server.credentials import CredentialIndex
from switch.server.gateway import Gateway
from ledger.journal_format import GENESIS, JournalCorrupt, JournalLocked, JournalPosition
from switch.server.history import HistoryWriter
from switch.server.huge_pages import HugePages
from switch.server.journal import SwitchJournal, decode_tick, journal_directory
from switch.server.metrics import MetricsRegistry, ServerMetrics
from switch.server.sequencer import Sequencer, SequencerFailed
from switch.server.shell import OutcomeArchive, Shell
from switch.server.snapshots import (
    PostgresSnapshotTable,
    SnapshotWriter,
    decode_server_snapshot,
)
from switch.server.standby import (
    STANDBY_HISTORY_RESEND_S,
    StandbyWatch,
    check_secrets_digest,
    secrets_digest,
)
from switch.server.timers import TimerWheel

log = logging.getLogger("ponte.server")

SECRETS_FILE = "secrets.json"


class ServerSecrets(msgspec.Struct, kw_only=True):
    api_key_pepper: str
    directory_secret: str
    admin_token: str


@dataclass
class ServerBackends:
    """What a server runs on, opened by the composition root (`switch.app.open_backends`):
    the directory service, the credential store, and what to close at stop (newest last)."""

    directory: Any
    credential_store: Any
    history: Any = None  # switch.store.history.HistoryStore, or None (memory only)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # More observers of the core's transfer transitions, after the outcome archive (the
    # settlement entry log): each has observe(payer, transfer_id, state, now_ns) and
    # bind(core), and sees the replay at start too.
    observers: list[Any] = field(default_factory=list)


def _observers(first, more: list):
    """One observer calling `first`, then each of `more` (the archive alone when none);
    told of final states only when every one of them wants no more (`finals_only`)."""
    if not more:
        return first
    rest = tuple(observer.observe for observer in more)

    def observe(payer_participant_id, transfer_id, state, now_ns) -> None:
        first(payer_participant_id, transfer_id, state, now_ns)
        for each in rest:
            each(payer_participant_id, transfer_id, state, now_ns)

    observe.finals_only = all(getattr(each, "finals_only", False) for each in (first, *rest))
    return observe


class StartRefused(Exception):
    """The server will not start (asserts stripped, bad configuration, journal damage)."""


def _asserts_enabled() -> bool:
    try:
        assert False
    except AssertionError:
        return True
    return False


def load_or_create_secrets(data_dir: str) -> ServerSecrets:
    """Secrets kept in data_dir (mode 0600), generated at the first start. Losing the file
    invalidates every API key (the pepper) and every identity token (the directory)."""
    path = os.path.join(data_dir, SECRETS_FILE)
    if os.path.exists(path):
        with open(path, "rb") as file:
            return msgspec.json.decode(file.read(), type=ServerSecrets)
    created = ServerSecrets(
        api_key_pepper=secrets.token_urlsafe(32),
        directory_secret=secrets.token_urlsafe(32),
        admin_token=secrets.token_urlsafe(24),
    )
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.encode(created))
        file.flush()
        os.fsync(file.fileno())
    os.replace(path + ".tmp", path)
    return created


class SwitchServer:
    """One switch process's server. Built and started by `switch.app.start_switch`;
    `await stop()` shuts it down."""

    def __init__(self, config: ServerConfig, backends: ServerBackends) -> None:
        self.config = config
        self.backends = backends
        self.core: SwitchCore | None = None
        self.ledger = None
        self.gateway: Gateway | None = None
        self.sequencer: Sequencer | None = None
        self.journal: SwitchJournal | None = None
        self.directory = None
        self.credentials: CredentialIndex | None = None
        self.registry = MetricsRegistry()
        self.metrics = ServerMetrics(self.registry)
        self.timers: TimerWheel | None = None
        self.admin_token: Secret | None = None
        self.stream_server = None
        self.admin_server = None
        self.console = None  # switch.console.server_port.Console when console_enabled
        self.http_connector = None
        self.settlement = None  # switch.settlement.service.SettlementService (composition root)
        self.g2p_connector = None  # connectors.g2p.app.G2PConnector when g2p_enabled
        self.g2p_engine = None  # switch.g2p.engine.Engine, with it
        self.iso20022_connector = None  # connectors.iso20022 when iso20022_enabled
        self.mobilemoney_connector = None  # connectors/mobilemoney, when enabled
        self.fspiop_connector = None  # connectors/fspiop, when fspiop_enabled
        # Set by the composition root; stopped here in the order a shutdown needs.
        self.replayed_events = 0
        self.recovered_from_sequence = 0  # the snapshot's journal position (0: none)
        self.snapshots: SnapshotWriter | None = None
        self.history: HistoryWriter | None = None
        self.replay_seconds = 0.0  # the whole recovery: snapshot read and load, tail replay
        self.snapshot_load_seconds = 0.0  # of which: the snapshot read, checked and loaded
        self._loaded_at = 0.0
        self._sequencer_task: asyncio.Task | None = None
        self._closers: list = []
        self._stopped = asyncio.Event()
        self.started_ns = 0
        # "primary" or "standby"; a standby follows the journal until it takes over.
        self.role = "primary"
        self.follower = None  # ledger.journal_follow.PostgresFollower while a standby
        self.took_over_ns = 0
        self._pepper = ""
        self._directory_secret = ""
        self._archive: OutcomeArchive | None = None
        self.standby_watch: StandbyWatch | None = None  # a PostgreSQL primary's standbys
        # A standby's recent durable-history writes (the primary may not have stored them
        # yet when it dies): handed to its own history writer when it takes over.
        self._standby_writes: deque = deque()

    # -- start -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start as the primary: recover (snapshot + journal), then open."""
        archive = self._prepare()
        await self._recover(archive)
        await self._open()

    def _prepare(self) -> OutcomeArchive:
        """What a primary and a standby both do before reading the journal: the checks,
        the secrets, the outcome archive."""
        config = self.config
        if not _asserts_enabled() and not config.allow_optimized_python:
            raise StartRefused("python -O strips the asserts that guard the invariants; "
                               "set allow_optimized_python = true to run anyway")
        os.makedirs(config.data_dir, exist_ok=True)
        stored = load_or_create_secrets(config.data_dir)
        self._pepper = (config.api_key_pepper.reveal() if config.api_key_pepper
                        else stored.api_key_pepper)
        self._directory_secret = (config.directory_secret.reveal() if config.directory_secret
                                  else stored.directory_secret)
        self.admin_token = config.admin_token or Secret(stored.admin_token)
        self._closers.extend(self.backends.closers)
        # The archive of outcomes follows the core's transitions, replayed ones included,
        # so a restart rebuilds it as it was (from a snapshot of it, then the journal).
        self._archive = OutcomeArchive(config.outcomes_archived_max, config.core,
                                       durable=self.backends.history is not None)
        self._register_role_gauges()
        return self._archive

    async def _open(self) -> None:
        """After the recovery (or a standby's takeover): credentials, gateway, shell,
        sequencer; timers re-armed and re-sent credit requests held; then accept."""
        config = self.config
        for observer in self.backends.observers:
            observer.recovered()  # the replay is over: what it did not decide is not kept
        pepper = self._pepper
        archive = self._archive
        self.directory = self.backends.directory
        self.credentials = CredentialIndex(self.backends.credential_store, pepper.encode())
        await self.credentials.load()

        loop = asyncio.get_running_loop()
        self.gateway = Gateway(core=self.core, directory=self.directory,
                               credentials=self.credentials,
                               inbound_max=config.inbound_queue_max,
                               status_per_participant_max=config.status_per_participant_max,
                               status_rate_per_participant=config.status_rate_per_participant,
                               held_grace_s=config.held_grace_s)
        self.gateway.metrics = self.metrics
        # Revoked keys close the live sessions they opened (edge-defects branch).
        self.credentials.bind_sessions(self.gateway.close_sessions)
        self.timers = TimerWheel(loop, self._timer_fired)
        self.shell = Shell(self.core,
                           archive=archive,
                           metrics=self.metrics,
                           appended_sequence=self.journal.appended_sequence,
                           national_id_token=self.gateway.national_id_token)
        self.sequencer = Sequencer(
            shell=self.shell, gateway=self.gateway, journal=self.journal, timers=self.timers,
            metrics=self.metrics, tick_events_max=config.tick_events_max,
            commit_interval_s=config.commit_interval_ms / 1000.0,
        )
        timers, holds = self.shell.recovery()
        for command in timers:
            self.timers.arm(command.timer_id, command.deadline_ns)
        for participant_id, message in holds:
            self.gateway.hold(participant_id, message)
        if self.backends.history is not None:
            self.history = HistoryWriter(self.backends.history, archive,
                                         retention_days=config.history_retention_days)
            self.sequencer.history = self.backends.history
            self.gateway.overloaded = lambda: self.history.overloaded
            archive.requeue_writes(list(self._standby_writes))  # a standby's last ones
            self._standby_writes.clear()
            self.history.start()
        if self.snapshots is not None or self.journal.segmented:
            self.sequencer.maintenance = Maintenance(self)
        self._register_gauges()
        if config.journal == "postgres":
            self.standby_watch = StandbyWatch(config.postgres_dsn.reveal(), config.journal_name)
            self.standby_watch.start()
            self._closers.append(self.standby_watch.close)
        self._sequencer_task = asyncio.create_task(self._run_sequencer(), name="ponte-sequencer")
        self.gateway.open()
        self.gateway.open_held_grace()
        self.started_ns = time.time_ns()
        log.info("server_started replayed_events=%d replay_s=%.3f snapshot_load_s=%.3f "
                 "in_flight=%d", self.replayed_events, self.replay_seconds,
                 self.snapshot_load_seconds, self.core.in_flight_count)

    async def _recover(self, archive: OutcomeArchive) -> None:
        """The newest valid snapshot, then the journal after it; a damaged or off-chain
        snapshot is skipped, loudly, for the one before, and with none usable the whole
        journal is replayed (if its first segments are still there)."""
        config = self.config
        started = time.perf_counter()
        log.info("recovery_started journal=%s", config.journal)
        self.snapshots = None
        journal_dir = None
        if config.journal == "file":
            journal_dir = journal_directory(config.data_dir)
        else:  # the same secrets as every switch of this journal, or no start
            await self._check_secrets()
        self.snapshots = self._snapshot_writer(journal_dir)

        async def open_journal(start: JournalPosition) -> None:
            on_record = self._replay_record
            if config.journal == "file":
                self.journal = SwitchJournal.open_file(
                    journal_dir, on_record, start=start,
                    threaded_commit=config.journal_commit == "thread")
                return
            try:  # the composition root has applied the migrations
                self.journal = await SwitchJournal.open_postgres(
                    config.postgres_dsn.reveal(), config.journal_name, on_record,
                    start=start, holder=process_holder())
            except JournalLocked as error:
                raise StartRefused(
                    f"{error}: another switch is the primary of this journal; this process "
                    "will not write it (run it with --standby to follow and take over when "
                    "that primary is gone)") from None

        with _collector_paused():
            await self._recover_newest(archive, open_journal)
        self.replay_seconds = time.perf_counter() - started
        self.snapshot_load_seconds = self._loaded_at - started
        self.ledger.check_invariants()

    def _snapshot_writer(self, journal_dir: str | None) -> SnapshotWriter | None:
        config = self.config
        if not config.snapshots_enabled:
            return None
        table = None
        if config.journal == "postgres":  # shared by the primary and its standbys
            table = PostgresSnapshotTable(config.postgres_dsn.reveal(), config.journal_name,
                                          retained_max=config.snapshots_retained)
        return SnapshotWriter(config.data_dir, retained_max=config.snapshots_retained,
                              archive_policy=config.journal_archive,
                              journal_directory=journal_dir, table=table,
                              huge_pages=HugePages() if config.snapshot_huge_pages else None)

    async def _recover_newest(self, archive: OutcomeArchive, open_journal) -> None:
        """From the newest snapshot that loads and fits the journal (a damaged or off-chain
        one is skipped, loudly, for the one before), else from genesis: the core restored,
        then `open_journal(start)` replays what follows into it."""
        writer = self.snapshots
        if writer is not None:
            async with contextlib.aclosing(writer.candidates()) as candidates:
                async for source, snapshot in candidates:
                    if isinstance(snapshot, str):
                        log.error("snapshot_skipped source=%s reason=%s", source, snapshot)
                        writer.status.skipped_at_start += 1
                        continue
                    try:
                        await self._recover_from(snapshot, archive, open_journal)
                    except (JournalCorrupt, msgspec.DecodeError, ValueError,
                            AssertionError) as error:
                        log.error("snapshot_skipped source=%s reason=%r: falling back to the "
                                  "previous snapshot", source, error)
                        writer.status.skipped_at_start += 1
                        continue
                    writer.status.sequence = snapshot.position.sequence
                    return
        await self._recover_from(None, archive, open_journal)

    async def _recover_from(self, snapshot, archive: OutcomeArchive, open_journal) -> None:
        """A core from `snapshot` (or a fresh one), then the journal after it replayed."""
        import ledger as ledger_package

        config = self.config
        archive.reset()
        observer = _observers(archive.observe, self.backends.observers)
        if snapshot is None:
            start = GENESIS
            self.ledger = ledger_package.Ledger(config.ledger)
            self.core = SwitchCore(config.core, self.ledger, observer=observer)
        else:
            saved = decode_server_snapshot(snapshot.state)
            self.core, _position = SwitchCore.from_snapshot(
                config.core, ledger_package.Ledger, saved.core, observer=observer)
            self.ledger = self.core.ledger
            archive.restore(saved.archive)
            start = snapshot.position
        archive.bind(self.core)
        for more in self.backends.observers:  # the settlement entry log
            more.bind(self.core)
        self.replayed_events = 0
        self._loaded_at = time.perf_counter()  # the snapshot read, checked and loaded
        await open_journal(start)
        self.recovered_from_sequence = start.sequence

    def _replay_record(self, record) -> None:
        """One journal record into the core, as it was decided live: the replay at start
        and a standby's following both go through here."""
        step = self.core.step
        for now_ns, event in decode_tick(record):
            self.replayed_events += 1
            try:
                step(event, now_ns)
            except ProtocolError:
                pass  # not acted on live either (and not journaled by this server)
        if self.role == "standby" and self._archive.durable:
            self._standby_history()
        else:
            # As at the end of a live tick: memory keeps at most outcomes_archived_max
            # confirmed outcomes. Without this a long replay (or a standby following for
            # days) kept every final it saw, ~900 bytes a transfer.
            self._archive.forget_written()

    def _standby_history(self) -> None:
        """A standby stores no history (its primary does), yet its archive queues every
        final like the primary's: keep only the writes of the last
        STANDBY_HISTORY_RESEND_S (its primary may die before storing them; writes are
        upserts) and let memory forget the rest, as the primary's writer confirms them."""
        archive = self._archive
        kept = self._standby_writes
        kept.extend(archive.take_writes())
        cutoff_ns = self.core.now_ns - int(STANDBY_HISTORY_RESEND_S * 1e9)
        confirmed = 0
        while kept and (kept[0][2] < cutoff_ns
                        or len(kept) > self.config.outcomes_archived_max):
            kept.popleft()
            confirmed += 1
        if confirmed:
            archive.written(confirmed)
            archive.forget_written()

    async def _check_secrets(self) -> None:
        """Refuse to run on a PostgreSQL journal whose primary uses other secrets: after a
        takeover every API key and identity token would stop matching."""
        if not await check_secrets_digest(
                self.config.postgres_dsn.reveal(), self.config.journal_name,
                secrets_digest(self._pepper, self._directory_secret)):
            raise StartRefused(
                "api_key_pepper or directory_secret differ from those of the journal's "
                f"primary (journal {self.config.journal_name}): give every switch of a "
                "journal the same secrets (PONTE_API_KEY_PEPPER, PONTE_DIRECTORY_SECRET, "
                "or the same data_dir/secrets.json)")

    # -- standby ---------------------------------------------------------------------

    def listening(self) -> None:
        """The listeners are open (after a start or a takeover): collapse the heap into
        huge pages for the snapshots' forks now, in the background — not during recovery,
        whose page faults would wait on the collapse."""
        if self.snapshots is not None and self.snapshots.huge_pages is not None:
            self.snapshots.huge_pages.collapse_soon()

    async def start_standby(self) -> None:
        """Start as a standby: the same core and ledger as a start — from the newest
        snapshot in the shared table (the primary's), then the journal after it — and
        then `take_over()` follows until the primary is gone."""
        from ledger.journal_follow import PostgresFollower

        config = self.config
        assert config.role == "standby" and config.journal == "postgres"
        self.role = "standby"
        archive = self._prepare()
        await self._check_secrets()
        self.snapshots = self._snapshot_writer(None)  # taken once it is the primary
        started = time.perf_counter()

        async def open_follower(start: JournalPosition) -> None:
            self.follower = await PostgresFollower.open(
                config.postgres_dsn.reveal(), name=config.journal_name,
                on_record=self._replay_record, start=start,
                poll_interval_s=config.standby_poll_interval_ms / 1000.0,
                standby=process_holder())

        with _collector_paused():
            await self._recover_newest(archive, open_follower)
        self.replay_seconds = time.perf_counter() - started
        self.snapshot_load_seconds = self._loaded_at - started
        self.ledger.check_invariants()
        self.started_ns = time.time_ns()
        log.info("standby_started replayed_events=%d replay_s=%.3f sequence=%d",
                 self.replayed_events, self.replay_seconds, self.follower.durable_sequence)

    async def take_over(self, open_listeners=None) -> None:
        """Follow the primary's journal until its lock is ours (its process or machine is
        gone), then become the primary: the next epoch (the database now refuses the old
        primary's records), the last records, and the rest of a normal start.
        `open_listeners(server)` (the composition root's) runs before the role says
        primary, so /health never reports a primary whose ports are not open yet."""
        follower = self.follower
        assert follower is not None, "start_standby() first"
        await follower.follow()
        lock_taken_ns = time.time_ns()
        backend = await follower.promote(holder=process_holder())
        self.follower = None
        self.journal = SwitchJournal(backend, threaded_commit=False)
        self.ledger.check_invariants()
        await self._open()
        if open_listeners is not None:
            await open_listeners(self)
        self.role = "primary"
        self.took_over_ns = time.time_ns()
        log.warning("standby_took_over epoch=%d sequence=%d in_flight=%d takeover_ms=%.1f",
                    backend.epoch, backend.durable_sequence, self.core.in_flight_count,
                    (self.took_over_ns - lock_taken_ns) / 1e6)

    @property
    def durable_sequence(self) -> int:
        """The last journal record this process has: durable (primary) or applied
        (standby)."""
        if self.follower is not None:
            return self.follower.durable_sequence
        return 0 if self.journal is None else self.journal.durable_sequence

    @property
    def epoch(self) -> int:
        """The journal's epoch this process writes (primary) or last saw (standby); 0 for
        the file journal, which has no epochs (one process, one file lock)."""
        if self.follower is not None:
            return self.follower.epoch
        backend = None if self.journal is None else self.journal.backend
        return getattr(backend, "epoch", 0)

    def replication_status(self) -> dict:
        """Role, epoch and (standby) how far behind the journal's head: /health, console."""
        follower = self.follower
        watch = self.standby_watch
        durable = self.durable_sequence
        return {
            "role": self.role,
            "epoch": self.epoch,
            "replay_lag_records": 0 if follower is None else follower.lag_records,
            "replay_lag_seconds": 0.0 if follower is None else round(follower.lag_seconds, 3),
            # A primary's standbys, as they last reported (about once a second).
            "standbys": [] if watch is None else [
                {**entry, "lag_records": max(0, durable - entry["applied_sequence"])}
                for entry in watch.standbys],
        }

    def _register_role_gauges(self) -> None:
        registry = self.registry
        registry.gauge("ponte_server_role", "1 for this process's role (primary or standby).",
                       lambda: {(role,): int(role == self.role)
                                for role in ("primary", "standby")}, ("role",))
        registry.gauge("ponte_journal_epoch", "The journal epoch this process writes "
                       "(primary) or follows (standby); 0 for the file journal.",
                       lambda: self.epoch)
        registry.gauge("ponte_standby_replay_lag_records",
                       "Journal records committed by the primary and not yet applied here.",
                       lambda: self.replication_status()["replay_lag_records"])
        registry.gauge("ponte_standby_replay_lag_seconds",
                       "How long this standby has been behind the journal's head.",
                       lambda: self.replication_status()["replay_lag_seconds"])

    def _timer_fired(self, timer_id: int) -> None:
        self.gateway.timer_fired(TimerFired(timer_id=timer_id))

    def _register_gauges(self) -> None:
        registry = self.registry
        core = self.core
        registry.gauge("ponte_inbound_queue_depth", "Requests waiting for the sequencer.",
                       lambda: self.gateway.inbound_depth)
        registry.gauge("ponte_ticks_undisclosed", "Ticks decided and waiting for their commit.",
                       lambda: self.sequencer.held_ticks)
        registry.gauge("ponte_transfers_in_flight", "Transfers reserved and waiting for the payee.",
                       lambda: core.in_flight_count)
        registry.gauge("ponte_transfers_retained", "Transfers the core holds for idempotency.",
                       lambda: core.transfers_retained)
        registry.gauge("ponte_timers_armed", "Live core timers.", lambda: len(self.timers))
        registry.gauge("ponte_journal_durable_sequence", "Last durable journal record.",
                       lambda: self.journal.durable_sequence)
        registry.gauge("ponte_replayed_events", "Events replayed from the journal at start.",
                       lambda: self.replayed_events)
        if self.snapshots is not None:
            status = self.snapshots.status
            registry.gauge("ponte_snapshot_sequence", "Journal record the newest snapshot covers.",
                           lambda: status.sequence)
            registry.gauge("ponte_snapshot_age_seconds", "Age of the newest snapshot.",
                           lambda: (time.time_ns() - status.written_ns) / 1e9
                           if status.written_ns else 0.0)
            registry.gauge("ponte_snapshot_bytes", "Size of the newest snapshot file.",
                           lambda: status.bytes)
            registry.gauge("ponte_snapshots_total", "Snapshots written, by outcome.",
                           lambda: {("ok",): status.taken, ("failed",): status.failed},
                           ("outcome",), kind="counter")
        if self.journal.segmented:
            registry.gauge("ponte_journal_segment_bytes",
                           "Durable bytes of the journal segment being written.",
                           lambda: self.journal.segment_bytes)
        if self.history is not None:
            registry.gauge("ponte_history_backlog_rows",
                           "Final transfers waiting to reach the durable history.",
                           lambda: self.history.backlog)
        registry.gauge("ponte_participant_position_minor",
                       "Participant ledger balance (credits_posted - debits_posted) in minor "
                       "units, by participant name and currency.", self._positions,
                       ("participant", "currency"))
        registry.gauge("ponte_participant_pending_debits_minor",
                       "Participant debits reserved for transfers in flight.",
                       self._pending_debits, ("participant", "currency"))

    def durability(self) -> dict:
        """What an operator needs to judge the switch's durable state: the newest
        snapshot (journal sequence, age, size), the journal (position, segments, bytes on
        disk) and the transfer history's backlog. /health, metrics and the console show it."""
        journal = self.journal
        report: dict = {"durable_sequence": self.durable_sequence,
                        "recovered_from_sequence": self.recovered_from_sequence,
                        "replayed_events": self.replayed_events,
                        "replay_s": round(self.replay_seconds, 3),
                        "snapshot_load_s": round(self.snapshot_load_seconds, 3)}
        if self.snapshots is not None:
            status = self.snapshots.status
            report["snapshot"] = {
                "sequence": status.sequence,
                "age_s": round((time.time_ns() - status.written_ns) / 1e9, 1)
                if status.written_ns else None,
                "bytes": status.bytes, "taken": status.taken, "failed": status.failed,
                "writing": self.snapshots._child is not None,
                "skipped_at_start": status.skipped_at_start,
                "write_s": round(status.write_s, 3), "fork_ms": round(status.fork_s * 1e3, 2),
                "recent": msgspec.to_builtins(status.recent)}
            if self.snapshots.huge_pages is not None:
                report["snapshot"]["huge_pages"] = self.snapshots.huge_pages.report()
        if journal is not None and journal.segmented:  # a standby has none while following
            from ledger.journal_segments import list_segments, segments_bytes

            segments = list_segments(journal.backend.directory)
            report["journal"] = {
                "segments": len(segments),
                "archived_segments": sum(segment.archived for segment in segments),
                "bytes": segments_bytes(segments),
                "segment_bytes": journal.segment_bytes}
        if self.history is not None:
            report["history"] = {"backlog_rows": self.history.backlog,
                                 "unconfirmed": self._archive.unconfirmed,
                                 "refusing_new_work": self.history._overloaded,
                                 "rows_written": self.history.rows_written,
                                 "write_failures": self.history.failures}
        return report

    def positions(self) -> dict[int, dict[str, dict[str, int]]]:
        """participant_id -> currency -> the ledger account's balances."""
        core = self.core
        result: dict[int, dict[str, dict[str, int]]] = {}
        for participant_id in core.participant_ids():
            view = core.participant(participant_id)
            accounts = {}
            for currency in view.currencies:
                account_id = core.account_id(participant_id, currency)
                (account,) = self.ledger.lookup_accounts([account_id])
                accounts[currency] = {
                    "debits_pending": account.debits_pending,
                    "debits_posted": account.debits_posted,
                    "credits_pending": account.credits_pending,
                    "credits_posted": account.credits_posted,
                }
            result[participant_id] = accounts
        return result

    def _positions(self) -> dict:
        names = {pid: self.core.participant(pid).name for pid in self.core.participant_ids()}
        return {(names[pid], currency): b["credits_posted"] - b["debits_posted"]
                for pid, accounts in self.positions().items()
                for currency, b in accounts.items()}

    def _pending_debits(self) -> dict:
        names = {pid: self.core.participant(pid).name for pid in self.core.participant_ids()}
        return {(names[pid], currency): b["debits_pending"]
                for pid, accounts in self.positions().items()
                for currency, b in accounts.items()}

    async def _run_sequencer(self) -> None:
        try:
            await self.sequencer.run()
        except SequencerFailed as error:
            log.critical("server_failing reason=%s", error)
            self.sequencer.fail_pending()
            self._stopped.set()

    # -- addresses -------------------------------------------------------------------

    @property
    def stream_port(self) -> int | None:
        return None if self.stream_server is None else self.stream_server.port

    @property
    def http_port(self) -> int | None:
        connector = self.http_connector
        return None if connector is None else getattr(connector, "port", None)

    @property
    def fspiop_port(self) -> int | None:
        connector = self.fspiop_connector
        return None if connector is None else connector.port

    @property
    def admin_port(self) -> int | None:
        return None if self.admin_server is None else self.admin_server.port

    @property
    def failed(self) -> bool:
        return self.sequencer is not None and self.sequencer.failed is not None

    # -- stop ------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the process to stop (a signal handler): `wait_stopped` returns."""
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Until a stop is asked for, or the sequencer failed (then `failed` is True)."""
        await self._stopped.wait()

    async def stop(self, drain_s: float | None = None) -> None:
        """Graceful shutdown; see the module docstring. Safe to call twice."""
        if self.gateway is None:
            await self._stop_standby()
            return
        drain_s = self.config.shutdown_drain_s if drain_s is None else drain_s
        gateway = self.gateway
        # G2P first: no new batch rows while transfers in flight drain (rows submitted and
        # not final are submitted again, with the same ids, at the next start).
        if self.g2p_connector is not None:
            await self.g2p_connector.close()
        if self.g2p_engine is not None:
            await self.g2p_engine.close()
        gateway.drain()
        if self.stream_server is not None:
            self.stream_server.stop_accepting()
        deadline = time.monotonic() + drain_s
        while (self.core.in_flight_count and time.monotonic() < deadline
               and not self.failed):
            await asyncio.sleep(0.02)
        gateway.close()
        self.timers.stop()
        self.sequencer.stop()
        if self._sequencer_task is not None:
            await self._sequencer_task
        if self.stream_server is not None:
            await self.stream_server.close()
        if self.http_connector is not None:
            await self.http_connector.close()
        if self.iso20022_connector is not None:
            await self.iso20022_connector.close()
        if self.mobilemoney_connector is not None:
            await self.mobilemoney_connector.close()
        if self.fspiop_connector is not None:
            await self.fspiop_connector.close()
        if self.admin_server is not None:
            await self.admin_server.close()
        if self.console is not None:
            await self.console.stop()
        if self.history is not None:
            await self.history.stop()  # what the archive queued reaches the store
        if self.snapshots is not None:
            await asyncio.to_thread(self.snapshots.wait)  # a snapshot being written finishes
        # Commit anything still buffered (the sequencer's last release did, unless failed).
        try:
            if not self.failed and self.journal.buffered_records:
                await self.journal.commit()
        finally:
            await self.journal.close()
            for close in reversed(self._closers):
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing what we can
                    log.exception("close_failed")
            self.gateway = None
            self._stopped.set()
        log.info("server_stopped in_flight_left=%d", self.core.in_flight_count)

    async def _stop_standby(self) -> None:
        """A standby that never took over: nothing to drain, nothing of its own written."""
        follower, self.follower = self.follower, None
        if follower is None:
            return
        if self.admin_server is not None:
            await self.admin_server.close()
        await follower.close()
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:  # noqa: BLE001 - closing what we can
                log.exception("close_failed")
        self._stopped.set()
        log.info("standby_stopped sequence=%d", follower.durable_sequence)


@contextlib.contextmanager
def _collector_paused():
    """No cyclic collection while a snapshot is decoded and the journal replayed: they
    make millions of objects that live on, and the collector walking them again and again
    made loading a snapshot of a million retained transfers 5x slower (20 s against 4 s;
    measured by `ponte bench recovery`). Whatever cycles appear meanwhile are collected
    once it ends."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def process_holder() -> str:
    """Who this process is, for the journal's epoch row and a standby's progress row."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Maintenance:
    """What the sequencer runs at a quiet point (the core equals the durable journal): a
    snapshot every `snapshot_every_events` events or `snapshot_every_s` seconds, and the
    rotation of a journal segment past `journal_segment_bytes_max`."""

    def __init__(self, server: SwitchServer) -> None:
        self.server = server
        config = server.config
        self.every_events = config.snapshot_every_events
        self.every_ns = int(config.snapshot_every_s * 1e9)
        self.segment_bytes_max = config.journal_segment_bytes_max
        self.events_at_last = 0
        self.last_ns = time.monotonic_ns()

    def _snapshot_due(self, events_decided: int) -> bool:
        writer = self.server.snapshots
        if writer is None or writer.busy:
            return False
        events = events_decided - self.events_at_last
        return events >= self.every_events or (
            events > 0 and time.monotonic_ns() - self.last_ns >= self.every_ns)

    @property
    def snapshot_writing(self) -> bool:
        """A snapshot child is running (not reaped yet): for the tick latency metric."""
        writer = self.server.snapshots
        return writer is not None and writer._child is not None

    def _rotation_due(self) -> bool:
        journal = self.server.journal
        return journal.segmented and journal.segment_bytes >= self.segment_bytes_max

    def due(self, events_decided: int) -> bool:
        return self._rotation_due() or self._snapshot_due(events_decided)

    def run(self, events_decided: int) -> None:
        server = self.server
        if self._rotation_due():
            server.journal.rotate_segment()
        if self._snapshot_due(events_decided):
            self.events_at_last = events_decided
            self.last_ns = time.monotonic_ns()
            durable_first = [path for observer in server.backends.observers
                             if hasattr(observer, "before_snapshot")
                             for path in observer.before_snapshot()]
            history = server.backends.history
            if history is not None and hasattr(history, "durable_paths"):
                durable_first += history.durable_paths()
            server.snapshots.take(server.core, server.shell.archive, server.journal.position,
                                  durable_first)
