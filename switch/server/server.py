"""`SwitchServer`: the wiring of one switch process — ledger, core, journal, directory,
credentials, gateway, sequencer, timers, listeners — its recovery on start and its graceful
shutdown.

Start: open the journal and replay every record into a fresh core on a fresh ledger (a full
replay: no core snapshots yet), check the ledger's invariants, re-arm the core's timers and
hold the re-sent credit requests until their payees connect, then open the gateway and the
listeners. Stop: refuse new work, let transfers in flight finish for up to
`shutdown_drain_s` (payee answers and timers still run), then stop the listeners, drain
the queue, make the journal durable and close it. Whatever is still in flight then is
resumed by the next start (its timer is re-armed, its credit request re-sent).

It must never release anything before the sequencer does, never run with asserts stripped
unless the configuration says so, and never print a secret.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
import time

import msgspec

from switch.core import SwitchCore
from switch.core.messages import ArmTimer, Send, TimerFired
from switch.core.results import ProtocolError
from switch.server.config import Secret, ServerConfig
from switch.server.credentials import CredentialIndex
from switch.server.gateway import Gateway
from switch.server.journal import SwitchJournal, decode_tick
from switch.server.metrics import LATENCY_BUCKETS_S, MetricsRegistry, ServerMetrics
from switch.server.sequencer import OutcomeArchive, Sequencer, SequencerFailed
from switch.server.timers import TimerWheel

log = logging.getLogger("ponte.server")

SECRETS_FILE = "secrets.json"
GIL_SWITCH_INTERVAL_S = 0.0002
GC_YOUNG_THRESHOLD = 10_000
JOURNAL_FILE = "switch.journal"
DIRECTORY_FILE = "directory.sqlite3"
CREDENTIALS_FILE = "credentials.sqlite3"


class ServerSecrets(msgspec.Struct, kw_only=True):
    api_key_pepper: str
    directory_secret: str
    admin_token: str


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
    """One switch process. `await start()`, then `await stop()` (or `serve_forever()`)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
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
        self.console = None  # switch.admin.server_port.Console when console_enabled
        self.http_connector = None
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
        # The journal's commit thread needs the GIL back the moment fdatasync returns;
        # with the default 5 ms switch interval it waits behind the deciding loop, and
        # every reply waits with it. 0.2 ms costs a little throughput, buys latency.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        stored = load_or_create_secrets(config.data_dir)
        pepper = (config.api_key_pepper.reveal() if config.api_key_pepper
                  else stored.api_key_pepper)
        directory_secret = (config.directory_secret.reveal() if config.directory_secret
                            else stored.directory_secret)
        self.admin_token = config.admin_token or Secret(stored.admin_token)

        import ledger as ledger_package

        self.ledger = ledger_package.Ledger(config.ledger)
        self.core = SwitchCore(config.core, self.ledger)
        await self._recover()

        self.directory = await self._open_directory(directory_secret.encode())
        self.credentials = CredentialIndex(await self._open_credential_store(),
                                           pepper.encode())
        await self.credentials.load()

        loop = asyncio.get_running_loop()
        self.gateway = Gateway(core=self.core, directory=self.directory,
                               credentials=self.credentials,
                               inbound_max=config.inbound_queue_max)
        self.gateway.metrics = self.metrics
        # Revoked keys close the live sessions they opened (edge-defects branch).
        self.credentials.bind_sessions(self.gateway.close_sessions)
        self.timers = TimerWheel(loop, self._timer_fired)
        self.sequencer = Sequencer(
            core=self.core, gateway=self.gateway, journal=self.journal, timers=self.timers,
            metrics=self.metrics,
            archive=OutcomeArchive(config.outcomes_archived_max, self.core),
            tick_events_max=config.tick_events_max,
            commit_interval_s=config.commit_interval_ms / 1000.0,
        )
        for command in self._recovery_commands:
            if type(command) is ArmTimer:
                self.timers.arm(command.timer_id, command.deadline_ns)
            elif type(command) is Send:
                self.gateway.hold(command.participant_id, command.message)
        self._recovery_commands = []
        self._register_gauges()
        self._watch_gc()
        # The core's and the archive's tables are a few big containers made by now. Frozen,
        # the cyclic collector never walks them again (they are roots, never garbage), so a
        # full collection costs what the live requests cost, not what the history costs.
        # Measured at 10,000/s with 512k transfers
        # retained: full collections of ~65 ms (p99 111 ms) before, see docs/operations.md.
        # Young collections every GC_YOUNG_THRESHOLD allocations: Python's 700 promotes
        # short-lived request objects into the old generation, which then needs full
        # collections (26 of ~27 ms a minute at 10,000/s); 50,000 makes each young pause
        # ~20 ms. 10,000 sits between.
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
        self._sequencer_task = asyncio.create_task(self._run_sequencer(), name="ponte-sequencer")
        self.gateway.open()
        if config.stream_enabled:
            from connectors.stream.server import start_stream_server

            self.stream_server = await start_stream_server(self.gateway, config,
                                                           self.registry)
        if config.http_enabled:
            from connectors.http.app import HttpConnectorConfig, start_http_connector

            self.http_connector = await start_http_connector(
                self.gateway, msgspec.convert(config.http, HttpConnectorConfig), self.registry)
        if config.admin_enabled:
            from switch.server.admin import start_admin_server

            self.admin_server = await start_admin_server(self, config.admin_host,
                                                         config.admin_port)
        if config.console_enabled:
            from switch.admin.server_port import attach_console

            self.console = await attach_console(self, config.console_host, config.console_port,
                                                ssl_certfile=config.console_tls_cert,
                                                ssl_keyfile=config.console_tls_key)
        self.started_ns = time.time_ns()
        log.info("server_started stream_port=%s admin_port=%s replayed_events=%d "
                 "replay_s=%.3f in_flight=%d", self.stream_port, self.admin_port,
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
        else:
            from switch.store.migrate import migrate_dsn

            await migrate_dsn(config.postgres_dsn.reveal())  # idempotent, under a lock
            self.journal = await SwitchJournal.open_postgres(
                config.postgres_dsn.reveal(), config.journal_name, on_record)
        self.replay_seconds = time.perf_counter() - started
        self.replayed_events = counter[0]
        self.ledger.check_invariants()
        self._recovery_commands = core.recovery_commands()

    async def _open_directory(self, secret: bytes):
        from switch.directory.cache import LocalAliasCache
        from switch.directory.buckets import LocalBuckets
        from switch.directory.config import Secret as DirectorySecret
        from switch.directory.service import Directory

        config = self.config
        if config.store == "postgres":
            from switch.store.postgres_directory import PostgresDirectoryStore

            store = await PostgresDirectoryStore.connect(config.postgres_dsn.reveal())
        else:
            from switch.store.embedded import EmbeddedDirectoryStore

            store = EmbeddedDirectoryStore(os.path.join(config.data_dir, DIRECTORY_FILE))
        self._closers.append(store.close)
        if config.redis_url is not None:
            from switch.store.redis_buckets import RedisBuckets
            from switch.store.redis_cache import RedisAliasCache

            cache = RedisAliasCache.from_url(config.redis_url.reveal(), config.redis_prefix)
            buckets = RedisBuckets.from_url(config.redis_url.reveal(), config.redis_prefix)
            for client in {id(cache.client): cache.client,
                           id(buckets.client): buckets.client}.values():
                self._closers.append(client.aclose)
        else:
            cache = LocalAliasCache(config.directory.cache_entries_max)
            buckets = LocalBuckets()
        return Directory(store=store, cache=cache, buckets=buckets, config=config.directory,
                         secret=DirectorySecret(secret))

    async def _open_credential_store(self):
        config = self.config
        if config.store == "postgres":
            from switch.store.credentials import PostgresCredentialStore

            store = await PostgresCredentialStore.connect(config.postgres_dsn.reveal())
        else:
            from switch.store.credentials import EmbeddedCredentialStore

            store = EmbeddedCredentialStore(os.path.join(config.data_dir, CREDENTIALS_FILE))
        self._closers.append(store.close)
        return store

    def _timer_fired(self, timer_id: int) -> None:
        self.gateway.timer_fired(TimerFired(timer_id=timer_id))

    def _watch_gc(self) -> None:
        """Time the cyclic garbage collector: a full collection walks every tracked object,
        and with a million transfers retained that is a pause every reply waits behind."""
        histogram = self.registry.histogram(
            "ponte_gc_pause_seconds", "Cyclic garbage collection pauses, by generation.",
            LATENCY_BUCKETS_S, ("generation",))
        started = [0.0]

        def callback(phase: str, info: dict) -> None:
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                histogram.observe(time.perf_counter() - started[0], str(info["generation"]))

        gc.callbacks.append(callback)
        self._closers.append(self._unwatch_gc(callback))

    @staticmethod
    def _unwatch_gc(callback):
        async def remove() -> None:
            if callback in gc.callbacks:
                gc.callbacks.remove(callback)
        return remove

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

    async def serve_forever(self) -> None:
        """Start, run until SIGINT/SIGTERM (or a sequencer failure), stop gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stopped.set)
        await self._stopped.wait()
        failed = self.failed
        await self.stop()
        if failed:
            sys.exit(70)  # EX_SOFTWARE: restart and replay

