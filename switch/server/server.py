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

It must never release anything before the sequencer does, never run with asserts stripped
unless the configuration says so, never change process-wide settings (the entry point
tunes the process: `switch.app.tune_process`), and never print a secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import msgspec

from switch.core import SwitchCore
from switch.core.messages import TimerFired
from switch.core.results import ProtocolError
from switch.server.config import Secret, ServerConfig
from switch.server.credentials import CredentialIndex
from switch.server.gateway import Gateway
from switch.server.journal import SwitchJournal, decode_tick
from switch.server.metrics import MetricsRegistry, ServerMetrics
from switch.server.sequencer import Sequencer, SequencerFailed
from switch.server.shell import OutcomeArchive, Shell
from switch.server.timers import TimerWheel

log = logging.getLogger("ponte.server")

SECRETS_FILE = "secrets.json"
JOURNAL_FILE = "switch.journal"


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
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # More observers of the core's transfer transitions, after the outcome archive (the
    # settlement entry log): each has observe(payer, transfer_id, state, now_ns) and
    # bind(core), and sees the replay at start too.
    observers: list[Any] = field(default_factory=list)


def _observers(first, more: list):
    """One observer calling `first`, then each of `more` (the archive alone when none)."""
    if not more:
        return first
    rest = tuple(observer.observe for observer in more)

    def observe(payer_participant_id, transfer_id, state, now_ns) -> None:
        first(payer_participant_id, transfer_id, state, now_ns)
        for each in rest:
            each(payer_participant_id, transfer_id, state, now_ns)

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
        # Set by the composition root; stopped here in the order a shutdown needs.
        self.replayed_events = 0
        self.replay_seconds = 0.0
        self._sequencer_task: asyncio.Task | None = None
        self._closers: list = []
        self._stopped = asyncio.Event()
        self.started_ns = 0

    # -- start -----------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        if not _asserts_enabled() and not config.allow_optimized_python:
            raise StartRefused("python -O strips the asserts that guard the invariants; "
                               "set allow_optimized_python = true to run anyway")
        os.makedirs(config.data_dir, exist_ok=True)
        stored = load_or_create_secrets(config.data_dir)
        pepper = (config.api_key_pepper.reveal() if config.api_key_pepper
                  else stored.api_key_pepper)
        self.admin_token = config.admin_token or Secret(stored.admin_token)
        self._closers.extend(self.backends.closers)

        import ledger as ledger_package

        self.ledger = ledger_package.Ledger(config.ledger)
        # The archive of outcomes follows the core's transitions, replayed ones included,
        # so a restart rebuilds it as it was.
        archive = OutcomeArchive(config.outcomes_archived_max, config.core)
        self.core = SwitchCore(config.core, self.ledger,
                               observer=_observers(archive.observe, self.backends.observers))
        archive.bind(self.core)
        for observer in self.backends.observers:
            observer.bind(self.core)
        await self._recover()

        self.directory = self.backends.directory
        self.credentials = CredentialIndex(self.backends.credential_store, pepper.encode())
        await self.credentials.load()

        loop = asyncio.get_running_loop()
        self.gateway = Gateway(core=self.core, directory=self.directory,
                               credentials=self.credentials,
                               inbound_max=config.inbound_queue_max,
                               status_per_participant_max=config.status_per_participant_max,
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
        self._register_gauges()
        self._sequencer_task = asyncio.create_task(self._run_sequencer(), name="ponte-sequencer")
        self.gateway.open()
        self.gateway.open_held_grace()
        self.started_ns = time.time_ns()
        log.info("server_started replayed_events=%d replay_s=%.3f in_flight=%d",
                 self.replayed_events, self.replay_seconds, self.core.in_flight_count)

    async def _recover(self) -> None:
        """Full replay of the switch journal into the fresh core."""
        core = self.core
        step = core.step
        counter = [0]

        def on_record(record) -> None:
            for now_ns, event in decode_tick(record):
                counter[0] += 1
                try:
                    step(event, now_ns)
                except ProtocolError:
                    pass  # not acted on live either (and not journaled by this server)

        started = time.perf_counter()
        config = self.config
        if config.journal == "file":
            path = os.path.join(config.data_dir, JOURNAL_FILE)
            self.journal = SwitchJournal.open_file(
                path, on_record, threaded_commit=config.journal_commit == "thread")
        else:  # the composition root has applied the migrations
            self.journal = await SwitchJournal.open_postgres(
                config.postgres_dsn.reveal(), config.journal_name, on_record)
        self.replay_seconds = time.perf_counter() - started
        self.replayed_events = counter[0]
        self.ledger.check_invariants()

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
        registry.gauge("ponte_participant_position_minor",
                       "Participant ledger balance (credits_posted - debits_posted) in minor "
                       "units, by participant name and currency.", self._positions,
                       ("participant", "currency"))
        registry.gauge("ponte_participant_pending_debits_minor",
                       "Participant debits reserved for transfers in flight.",
                       self._pending_debits, ("participant", "currency"))

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
            return
        drain_s = self.config.shutdown_drain_s if drain_s is None else drain_s
        gateway = self.gateway
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
        if self.admin_server is not None:
            await self.admin_server.close()
        if self.console is not None:
            await self.console.stop()
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
