"""The composition root: the one place that knows what a switch process is made of.

`open_backends(config)` opens what the server runs on — the directory (embedded SQLite or
PostgreSQL, with Redis or in-process cache and buckets), the credential store — after
applying PostgreSQL migrations; `start_switch(config)` starts a `SwitchServer` on them and
puts the listeners in front of it (stream and HTTP connectors, the small admin surface,
the operator console); `start_standby(config)` and `take_over(server)` do the same for a
standby (only the admin surface while it follows, everything once it is the primary);
`serve(config)` is the process: tuned, started, stopped on SIGINT/SIGTERM. The server, the admin surface, the CLI, the demo and the tests all build a
switch through here, so the embedded/PostgreSQL choice is made once.

Arrows point one way: this module imports the server, the stores, the connectors and the
console; none of them imports it (a test checks the package graph). It must never hold a
rule of the switch — only wiring.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import time
from typing import Awaitable, Callable

import msgspec

from switch.directory.buckets import LocalBuckets
from switch.directory.cache import LocalAliasCache
from switch.directory.config import Secret as DirectorySecret
from switch.directory.service import Directory
from switch.server.config import ServerConfig
from switch.server.metrics import LATENCY_BUCKETS_S
from switch.server.server import ServerBackends, SwitchServer, load_or_create_secrets

DIRECTORY_FILE = "directory.sqlite3"
CREDENTIALS_FILE = "credentials.sqlite3"
HISTORY_FILE = "history.sqlite3"
# The journal's commit thread needs the GIL back the moment fdatasync returns; with the
# default 5 ms switch interval it waits behind the deciding loop, and every reply waits
# with it. 0.2 ms costs a little throughput, buys latency.
GIL_SWITCH_INTERVAL_S = 0.0002
# Young collections every GC_YOUNG_THRESHOLD allocations: Python's 700 promotes
# short-lived request objects into the old generation, which then needs full collections
# (26 of ~27 ms a minute at 10,000/s); 50,000 makes each young pause ~20 ms.
GC_YOUNG_THRESHOLD = 10_000
EXIT_SOFTWARE = 70  # the sequencer failed: restart and replay


async def open_backends(config: ServerConfig) -> ServerBackends:
    """The directory and the credential store `config` names, opened (migrations applied
    first on PostgreSQL). Closed by the server's stop, newest first."""
    os.makedirs(config.data_dir, exist_ok=True)
    stored = load_or_create_secrets(config.data_dir)
    directory_secret = (config.directory_secret.reveal() if config.directory_secret
                        else stored.directory_secret)
    if config.journal == "postgres" or config.store == "postgres":
        from switch.store.migrate import migrate_dsn

        await migrate_dsn(config.postgres_dsn.reveal())  # idempotent, under a lock
    directory, closers = await open_directory(config, directory_secret)
    if config.store == "postgres":
        from switch.store.credentials import PostgresCredentialStore

        credential_store = await PostgresCredentialStore.connect(config.postgres_dsn.reveal())
    else:
        from switch.store.credentials import EmbeddedCredentialStore

        credential_store = EmbeddedCredentialStore(os.path.join(config.data_dir,
                                                                CREDENTIALS_FILE))
    closers.append(credential_store.close)
    history = None
    if config.history_enabled:
        if config.store == "postgres":
            from switch.store.history import PostgresHistoryStore

            history = await PostgresHistoryStore.connect(config.postgres_dsn.reveal())
        else:
            from switch.store.history import EmbeddedHistoryStore

            history = EmbeddedHistoryStore(os.path.join(config.data_dir, HISTORY_FILE))
        closers.append(history.close)
    backends = ServerBackends(directory=directory, credential_store=credential_store,
                              history=history, closers=closers)
    _settlement_entries(config, backends)
    return backends


async def open_directory(config: ServerConfig, directory_secret: str
                         ) -> tuple[Directory, list[Callable[[], Awaitable[None]]]]:
    """The directory service on the store `config` names (PostgreSQL, or the data
    directory's SQLite file), with Redis as the shared cache and buckets when configured,
    else in-process ones; and what closes it. The switch and `ponte directory import` both
    open it here, so they can never write and read different places."""
    closers = []
    if config.store == "postgres":
        from switch.store.postgres_directory import PostgresDirectoryStore

        store = await PostgresDirectoryStore.connect(config.postgres_dsn.reveal())
    else:
        from switch.store.embedded import EmbeddedDirectoryStore

        store = EmbeddedDirectoryStore(os.path.join(config.data_dir, DIRECTORY_FILE))
    closers.append(store.close)
    if config.redis_url is not None:
        from switch.store.redis_buckets import RedisBuckets
        from switch.store.redis_cache import RedisAliasCache

        cache = RedisAliasCache.from_url(config.redis_url.reveal(), config.redis_prefix)
        buckets = RedisBuckets.from_url(config.redis_url.reveal(), config.redis_prefix)
        for client in {id(cache.client): cache.client,
                       id(buckets.client): buckets.client}.values():
            closers.append(client.aclose)
    else:
        cache = LocalAliasCache(config.directory.cache_entries_max)
        buckets = LocalBuckets()
    directory = Directory(store=store, cache=cache, buckets=buckets, config=config.directory,
                          secret=DirectorySecret(directory_secret.encode()))
    return directory, closers


# -- the tables of the parts a config enables -----------------------------------------
# Each part reads its table through one of these, at start; `check_tables` runs them all
# first, so a bad table stops a start before anything opens (and never a standby's
# takeover, when the listeners would open).


def settlement_config(config: ServerConfig):
    from switch.settlement.config import SettlementConfig

    return msgspec.convert(config.settlement, SettlementConfig)


def http_config(config: ServerConfig):
    from connectors.http.app import HttpConnectorConfig

    return msgspec.convert(config.http, HttpConnectorConfig)


def iso20022_config(config: ServerConfig):
    from connectors.iso20022.connector import Iso20022Config

    return msgspec.convert(config.iso20022, Iso20022Config)


def mobilemoney_config(config: ServerConfig):
    from connectors.mobilemoney.hub import load_config

    return load_config(config.mobilemoney)


def fspiop_config(config: ServerConfig):
    from connectors.fspiop.app import FspiopConnectorConfig

    return msgspec.convert(config.fspiop, FspiopConnectorConfig)


def g2p_config(config: ServerConfig):
    from switch.g2p.types import G2PConfig

    return msgspec.convert(config.g2p, G2PConfig)


_TABLES: tuple[tuple[str, Callable[[ServerConfig], bool], Callable[[ServerConfig], object]],
               ...] = (
    ("settlement", lambda config: True, settlement_config),
    ("http", lambda config: config.http_enabled or bool(config.http.get("participant_keys")),
     http_config),
    ("iso20022", lambda config: config.iso20022_enabled, iso20022_config),
    ("mobilemoney", lambda config: config.mobilemoney_enabled, mobilemoney_config),
    ("fspiop", lambda config: config.fspiop_enabled, fspiop_config),
    ("g2p", lambda config: config.g2p_enabled, g2p_config),
)


def check_tables(config: ServerConfig) -> None:
    """ValueError naming the table (`[fspiop] ...`) if an enabled part's table is invalid:
    a wrong type, an unknown key, or a rule of the part's own (half a TLS setting)."""
    for name, enabled, convert in _TABLES:
        if enabled(config):
            try:
                convert(config)
            except (msgspec.ValidationError, ValueError) as error:
                raise ValueError(f"[{name}] {error}") from None


async def start_switch(config: ServerConfig) -> SwitchServer:
    """A started switch: backends opened, journal replayed, listeners accepting.
    ValueError, before anything is opened, for an invalid table (`check_tables`)."""
    check_tables(config)
    server = SwitchServer(config, await open_backends(config))
    try:
        await server.start()
        await _start_listeners(server)
    except BaseException:
        await server.stop(drain_s=0)
        raise
    server.listening()
    return server


async def start_standby(config: ServerConfig) -> SwitchServer:
    """A standby: backends opened, the primary's journal replayed and followed, only the
    admin surface (health, metrics) listening. `take_over(server)` makes it the primary.
    ValueError, before anything is opened, for an invalid table (`check_tables`)."""
    check_tables(config)
    server = SwitchServer(config, await open_backends(config))
    try:
        await server.start_standby()
        await _start_admin(server)
    except BaseException:
        await server.stop(drain_s=0)
        raise
    return server


async def take_over(server: SwitchServer) -> None:
    """Follow until the primary is gone, become the primary, then open the listeners a
    start opens (the clients' next address now answers)."""
    await server.take_over(_start_listeners)
    server.listening()


async def _start_admin(server: SwitchServer) -> None:
    config = server.config
    if config.admin_enabled and server.admin_server is None:
        from switch.admin.status_port import start_admin_server

        server.admin_server = await start_admin_server(server, config.admin_host,
                                                       config.admin_port)


def _settlement_entries(config: ServerConfig, backends: ServerBackends) -> None:
    """The settlement entry log (switch/settlement/entries.py): an observer of the core
    from the recovery on, a primary's and a standby's alike."""
    from switch.settlement.entries import EntryLog

    settlement = settlement_config(config)
    entries = EntryLog(settlement.entries_dir or os.path.join(config.data_dir, "settlement"))
    backends.observers.append(entries)

    async def close() -> None:
        entries.close()

    backends.closers.append(close)


def _start_settlement(server: SwitchServer) -> None:
    """Settlement's documents, once the server is open (a start, or a standby's takeover):
    the operator surface and the connectors reach it through `server.settlement` and
    `gateway.settlement`."""
    from switch.settlement.entries import EntryLog
    from switch.settlement.service import SettlementService

    if server.settlement is not None:
        return
    (entries,) = [o for o in server.backends.observers if isinstance(o, EntryLog)]
    server.settlement = SettlementService(
        server, entries, settlement_config(server.config))
    server.gateway.settlement = server.settlement


async def _start_listeners(server: SwitchServer) -> None:
    config = server.config
    _start_settlement(server)
    server.gateway.signature_policy = SignaturePolicy(server)
    if config.stream_enabled:
        from connectors.stream.server import start_stream_server

        server.stream_server = await start_stream_server(server.gateway, config, server.registry)
    if config.http_enabled:
        from connectors.http.app import start_http_connector

        server.http_connector = await start_http_connector(
            server.gateway, http_config(config), server.registry)
    if config.g2p_enabled:
        await _start_g2p(server)
    if config.iso20022_enabled:
        from connectors.iso20022.connector import start_iso20022_connector
        from switch.store.iso20022_state import open_state_log

        dsn = config.postgres_dsn.reveal() if "postgres" in (config.journal,
                                                              config.store) else ""
        server.iso20022_connector = await start_iso20022_connector(
            server.gateway, iso20022_config(config), server.registry,
            state_log=await open_state_log(config.data_dir, dsn),
            outbox_log=await open_state_log(config.data_dir, dsn, "outbox"))
    if config.mobilemoney_enabled:
        from connectors.mobilemoney.hub import start_mobilemoney_connector

        server.mobilemoney_connector = await start_mobilemoney_connector(
            server.gateway, mobilemoney_config(config), server.registry)
    if config.fspiop_enabled:
        from connectors.fspiop.app import start_fspiop_connector
        from switch.store.fspiop_prepares import open_prepare_store

        server.fspiop_connector = await start_fspiop_connector(
            server.gateway, fspiop_config(config),
            server.registry, store=await open_prepare_store(
                config.data_dir, config.postgres_dsn.reveal() if "postgres" in (
                    config.journal, config.store) else ""))
    if config.console_enabled:
        from switch.console.server_port import attach_console

        server.console = await attach_console(server, config.console_host,
                                              config.console_port,
                                              ssl_certfile=config.console_tls_cert,
                                              ssl_keyfile=config.console_tls_key)
    # Last: /health answers once every other door listens (a launcher that waited for it
    # once logged in to a console that was not listening yet).
    await _start_admin(server)


G2P_FILE = "g2p.sqlite3"
G2P_REPORTS = "g2p-reports"


async def _start_g2p(server: SwitchServer) -> None:
    """The G2P batch store (PostgreSQL when the switch's store is, else SQLite in the
    data directory), the batch engine and the G2P Connect API (docs/g2p.md)."""
    from connectors.g2p.app import start_g2p

    config = server.config
    table = g2p_config(config)
    if config.store == "postgres":
        from switch.store.g2p_store import PostgresG2PStore

        store = await PostgresG2PStore.connect(config.postgres_dsn.reveal())
    else:
        from switch.store.g2p_store import EmbeddedG2PStore

        store = EmbeddedG2PStore(os.path.join(config.data_dir, G2P_FILE))
    server._closers.append(store.close)
    server.g2p_connector, server.g2p_engine = await start_g2p(
        server.gateway, table, store, os.path.join(config.data_dir, G2P_REPORTS))
    engine = server.g2p_engine
    registry = server.registry
    registry.gauge("ponte_g2p_rows_submitted_total", "G2P rows submitted as transfers.",
                   lambda: engine.rows_submitted_total, kind="counter")
    registry.gauge("ponte_g2p_rows_paid_total", "G2P rows paid.",
                   lambda: engine.rows_paid_total, kind="counter")
    registry.gauge("ponte_g2p_rows_failed_total", "G2P rows that could not be paid.",
                   lambda: engine.rows_failed_total, kind="counter")
    registry.gauge("ponte_g2p_rows_in_flight", "G2P rows submitted and not final.",
                   lambda: engine.in_flight)
    registry.gauge("ponte_g2p_pacing_yields_total", "G2P pump steps skipped for live "
                   "traffic.", lambda: engine.yields_total, kind="counter")
    registry.gauge("ponte_g2p_rows_retried_total", "G2P rows tried again because their "
                   "payee did not answer in time.", lambda: engine.rows_retried_total,
                   kind="counter")
    registry.gauge("ponte_g2p_window_rows", "G2P rows the engine lets be in flight now "
                   "(adapts to the payees).", lambda: engine.window)


class SignaturePolicy:
    """`participant_id in policy`: must this participant sign its requests? A participant's
    security policy is declared with its keys in one connector's table — `[http]
    participant_keys` (`signature_required`), an FSPIOP participant registered with a key
    (required by default), an `[iso20022]` bank (`signature_required`) — and holds on every
    door: a door that can check the signature checks it, the stream asks for mTLS + key at
    Hello, and a door with no key for it (or none at all, G2P) refuses. Read live from the
    connectors, so an FSPIOP registration approved at run time holds at once."""

    __slots__ = ("server", "declared")

    def __init__(self, server: SwitchServer) -> None:
        self.server = server
        # Known before the HTTP connector starts, so the stream applies it from the start.
        self.declared = signature_required_participants(server.config.http)

    def __contains__(self, participant_id: object) -> bool:
        server = self.server
        if participant_id in self.declared:
            return True
        http = server.http_connector
        if http is not None and participant_id in http.signature_required:
            return True
        fspiop = server.fspiop_connector
        if fspiop is not None:
            dfsp = fspiop.dfsps.get(participant_id)
            if dfsp is not None and dfsp.signature_required:
                return True
        iso = server.iso20022_connector
        return iso is not None and participant_id in iso.inbound.signature_required


def signature_required_participants(http_table: dict) -> frozenset[int]:
    """The participants whose security policy requires signed requests. The policy is
    declared once, with their JWS keys, in the HTTP connector's table (`[http]
    participant_keys`, `signature_required = true`), and holds on every door: the HTTP
    connector refuses their unsigned bodies, the stream their Hello without mTLS + key."""
    if not http_table.get("participant_keys"):
        return frozenset()
    from connectors.http.app import HttpConnectorConfig

    http = msgspec.convert(http_table, HttpConnectorConfig)  # checked by check_tables
    return frozenset(entry.participant_id for entry in http.participant_keys
                     if entry.signature_required)



def tune_process(server: SwitchServer) -> None:
    """Process-wide settings for a switch process (not for a switch started inside another
    program, such as a test): the GIL switch interval, and the cyclic collector."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    histogram = server.registry.histogram(
        "ponte_gc_pause_seconds", "Cyclic garbage collection pauses, by generation.",
        LATENCY_BUCKETS_S, ("generation",))
    started = [0.0]

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            histogram.observe(time.perf_counter() - started[0], str(info["generation"]))

    gc.callbacks.append(timed)
    # The core's and the archive's tables are a few big containers made by now. Frozen,
    # the cyclic collector never walks them again (they are roots, never garbage), so a
    # full collection costs what the live requests cost, not what the history costs.
    # Measured at 10,000/s with 512k transfers retained: full collections of ~65 ms
    # (p99 111 ms) before, see docs/operations.md.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)


async def serve(config: ServerConfig) -> int:
    """The switch process: start (or, as a standby, follow until the primary is gone and
    take over), tune, run until SIGINT/SIGTERM (or a sequencer failure), stop gracefully.
    The exit status: 0, or EXIT_SOFTWARE after a failure."""
    loop = asyncio.get_running_loop()
    # Handlers first: a SIGTERM while the journal replays (its /health already answers)
    # stops the switch gracefully as soon as it has started, instead of killing it.
    started: list[SwitchServer] = []
    stop_asked = []

    def ask_stop() -> None:
        stop_asked.append(True)
        if started:
            started[0].request_stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, ask_stop)
    if config.role == "standby":
        server = await start_standby(config)
        started.append(server)
        if stop_asked:
            server.request_stop()
        if not await _follow_until_primary(server):
            await server.stop()  # stopped while a standby: nothing was written
            return 0
    else:
        server = await start_switch(config)
        started.append(server)
        if stop_asked:
            server.request_stop()
    tune_process(server)
    await server.wait_stopped()
    failed = server.failed
    await server.stop()
    return EXIT_SOFTWARE if failed else 0


async def _follow_until_primary(server: SwitchServer) -> bool:
    """Run the standby until it has taken over (True) or a stop was asked for (False)."""
    takeover = asyncio.ensure_future(take_over(server))
    stopped = asyncio.ensure_future(server.wait_stopped())
    try:
        await asyncio.wait({takeover, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not takeover.done():
        takeover.cancel()
        await asyncio.gather(takeover, return_exceptions=True)
        return False
    try:
        takeover.result()
    except BaseException:
        await server.stop(drain_s=0)
        raise
    return True
