"""The console on a running `SwitchServer`: the `SwitchPort` over the server's public parts,
and `attach_console`, which starts the admin app in the server's own event loop.

Operator events go through `server.gateway.admin` (journaled by the sequencer, answered once
durable); participant settings through `server.credentials`; metrics from
`server.registry`; timelines are derived from the core's records and the ledger's legs (no
per-transfer work is added to the switch). The directory panel's
resolve counts come from a thin counting wrapper around the directory's resolve calls (the
gateway keeps no such counters). Nothing here reaches into the server's private state; it
must never bypass the sequencer to change the core.
"""

from __future__ import annotations

import os
import secrets

from switch.admin import limits
from switch.admin.app import ConsoleServer
from switch.admin.directory_stats import CachedCounts, postgres_counts, sqlite_counts
from switch.admin.ports import SwitchUnavailable
from switch.admin.service import AdminService, Caller
from switch.admin.timeline import TransferTrail
from switch.admin.types import Role, UserCreate
from switch.console.pages import create_console_app
from switch.core.messages import AdminAnswer
from switch.core.results import Result, TransferState
from switch.server.gateway import directory_participant_id
from switch.store.admin_store import open_admin_store

DIRECTORY_FILE = "directory.sqlite3"  # switch/app.py keeps the directory here
# Callback deliveries that failed for good (connectors/http/callbacks.py CallbackStats, when
# the server registers them): given up after retries, or refused by the participant.
CALLBACK_FAILURE_METRICS = ("ponte_http_callbacks_given_up_total",
                            "ponte_http_callbacks_refused_total")


class ResolveCounts:
    """Counts the directory's resolve answers: total, found, refused by the rate limiter."""

    def __init__(self, directory) -> None:
        self.total = 0
        self.found = 0
        self.rate_limited = 0
        from switch.directory.types import DirectoryResult, Rejection

        rejection, limited = Rejection, DirectoryResult.RATE_LIMITED
        resolve, resolve_many = directory.resolve, directory.resolve_many

        def count(answer) -> None:
            self.total += 1
            if type(answer) is rejection:
                if answer.result == limited:
                    self.rate_limited += 1
            else:
                self.found += 1

        async def counted_resolve(*args, **kwargs):
            answer = await resolve(*args, **kwargs)
            count(answer)
            return answer

        async def counted_resolve_many(*args, **kwargs):
            answers = await resolve_many(*args, **kwargs)
            for answer in answers:
                count(answer)
            return answers

        # Instance attributes shadow the methods for every caller holding this directory.
        directory.resolve = counted_resolve
        directory.resolve_many = counted_resolve_many


class ServerSwitch:
    """`SwitchPort` over a started `SwitchServer`."""

    def __init__(self, server, trail: TransferTrail | None = None):
        # `trail`: only if the caller built the core with it as its observer.
        self.server = server
        self.trail = trail
        self.resolves = ResolveCounts(server.directory) if server.directory is not None else None
        config = server.config
        if config.store == "postgres":
            self._directory_counts = CachedCounts(self._postgres_counts)
        else:
            path = os.path.join(config.data_dir, DIRECTORY_FILE)
            self._directory_counts = CachedCounts(lambda: sqlite_counts(path))
        self._pg_pool = None

    @property
    def core(self):
        return self.server.core

    @property
    def ledger(self):
        return self.server.ledger

    async def submit(self, event) -> AdminAnswer:
        gateway = self.server.gateway
        if gateway is None or not gateway.accepting:
            raise SwitchUnavailable("the switch is not accepting requests")
        answer = await gateway.admin(event)
        if answer.result == Result.SERVICE_UNAVAILABLE:
            raise SwitchUnavailable("the switch stopped accepting requests")
        return answer

    async def register_participant(self, participant_id: int, name: str, kind: str,
                                   callback_url: str) -> None:
        await self.server.credentials.put_participant(participant_id, name, kind, callback_url)

    def participant_settings(self, participant_id: int) -> tuple[str, str, list[str]]:
        record = self.server.credentials.record(participant_id)
        if record is None:
            return "", "", []
        return record.kind, record.callback_url, []

    async def _credentials_row(self, participant_id: int):
        credentials = self.server.credentials
        if credentials.record(participant_id) is None:
            # A participant onboarded before credentials existed: give it a row first.
            view = self.core.participant(participant_id)
            if view is None:
                raise ValueError("unknown participant")
            await credentials.put_participant(participant_id, view.name, "bank", "")
        return credentials

    async def set_callback_url(self, participant_id: int, callback_url: str) -> None:
        # CredentialError is a ValueError: a refused URL is the caller's VALIDATION_ERROR.
        credentials = await self._credentials_row(participant_id)
        await credentials.set_callback_url(participant_id, callback_url)

    async def issue_api_key(self, participant_id: int,
                            revoke_others: bool) -> tuple[str, str, int]:
        credentials = await self._credentials_row(participant_id)
        closed = 0
        if revoke_others:
            closed = await credentials.revoke_keys(participant_id, "API key revoked")
        api_key = await credentials.issue_key(participant_id)
        key_id = api_key.split("_")[1]  # ponte_<key id>_<secret>
        return key_id, api_key, closed

    def close_sessions(self, participant_id: int, reason: str) -> int:
        return self.server.gateway.close_sessions(participant_id, None, reason)

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None:
        credentials = await self._credentials_row(participant_id)
        await credentials.add_certificate(participant_id, fingerprint)

    def _directory(self):
        directory = self.server.directory
        if directory is None:
            raise ValueError("the switch runs without a directory")
        return directory

    def categories(self) -> tuple[dict[str, object], str]:
        config = self.server.config.directory
        return dict(config.participant_buckets), config.participant_category_default

    def participant_category(self, participant_id: int) -> str:
        directory = self.server.directory
        if directory is None:
            return ""
        return directory.participant_category(directory_participant_id(participant_id))

    async def g2p_batches(self, limit: int = 200) -> list[dict]:
        """Summaries of the newest G2P batches ([] when no G2P engine runs)."""
        from switch.g2p import reports

        engine = self.server.g2p_engine
        if engine is None:
            return []
        listed = []
        for record in await engine.store.list_batches(None, limit):
            view = await engine.batch_view(record.batch_id)
            if view is not None:
                listed.append(reports.summary(*view))
        return listed

    async def g2p_report(self, batch_id: int) -> dict | None:
        """Write a batch's report files (CSV, the spec's JSON, the summary) into the data
        directory, page by page; their paths, or None for no such batch."""
        from switch.g2p import reports

        engine = self.server.g2p_engine
        if engine is None:
            return None
        view = await engine.batch_view(batch_id)
        if view is None:
            return None
        record, counts, _rate = view
        return await reports.write_files(
            engine.store, record, counts,
            os.path.join(self.server.config.data_dir, "g2p-reports"))

    async def g2p_batch_action(self, participant_id: int, transaction_id: str,
                               action: str) -> Result:
        engine = self.server.g2p_engine
        if engine is None:
            return Result.SERVICE_UNAVAILABLE
        batch = await engine.store.find_batch(participant_id, transaction_id)
        if batch is None:
            return Result.G2P_BATCH_NOT_FOUND
        return await engine.batch_action(batch.batch_id, action)

    def set_participant_category(self, participant_id: int, category: str) -> None:
        self._directory().set_participant_category(directory_participant_id(participant_id),
                                                   category)

    def set_mobilemoney_wallet(self, participant_id: int, settings: dict) -> None:
        connector = self.server.mobilemoney_connector
        if connector is None:
            raise ValueError("the Mobile Money API hub is not enabled (mobilemoney_enabled)")
        connector.set_wallet_settings(participant_id, settings)

    def _fspiop(self):
        connector = self.server.fspiop_connector
        if connector is None:
            raise ValueError("the FSPIOP hub is not enabled (fspiop_enabled)")
        return connector

    def check_fspiop_participant(self, participant_id: int, settings: dict) -> None:
        connector = self._fspiop()
        connector.check_participant(connector.participant_entry(participant_id, settings))

    def set_fspiop_participant(self, participant_id: int, settings: dict) -> None:
        connector = self._fspiop()
        connector.set_participant(connector.participant_entry(participant_id, settings))

    def metrics_text(self) -> bytes:
        return self.server.registry.render().encode()

    def counters(self) -> dict:
        metrics = self.server.metrics
        by_result: dict[str, int] = {}
        finals = committed = 0
        for (state, result), count in metrics.transfers.values.items():
            count = int(count)
            finals += count
            if state == TransferState.COMMITTED.name:
                committed += count
            by_result[result] = by_result.get(result, 0) + count
        end_to_end = metrics.end_to_end  # [bucket counts + overflow, sum, count]
        from switch.server.metrics import LATENCY_BUCKETS_S

        counters = {
            "finals_total": finals,
            "committed_total": committed,
            "by_result": by_result,
            "latency_bounds_ms": tuple(bound * 1000 for bound in LATENCY_BUCKETS_S),
            "latency_counts": list(end_to_end[0]),
            "journal_lag_seconds": metrics.commit_lag_seconds.quantile(0.99),
        }
        failures = [self.server.registry.get(name) for name in CALLBACK_FAILURE_METRICS]
        if any(metric is not None for metric in failures):
            counters["callback_failures_total"] = sum(
                _sum_metric(metric) for metric in failures if metric is not None)
        if self.resolves is not None:
            counters["resolve_total"] = self.resolves.total
            counters["resolve_found_total"] = self.resolves.found
            counters["resolve_rate_limited_total"] = self.resolves.rate_limited
        return counters

    def replication(self) -> dict:
        """Role, epoch and the standbys' lag (the console's overview)."""
        status = self.server.replication_status()
        return {"role": status["role"], "epoch": status["epoch"],
                "standbys": [{key: entry[key] for key in ("standby", "applied_sequence",
                                                          "lag_records", "seen_s_ago")}
                             for entry in status["standbys"]]}

    def health(self) -> dict[str, str]:
        server = self.server
        gateway = server.gateway
        return {
            "sequencer": "failed" if server.failed else "ok",
            "gateway": "ok" if gateway is not None and gateway.accepting else "not accepting",
            "journal": "ok" if server.journal is not None else "closed",
            **self._durability_checks(),
        }

    def _durability_checks(self) -> dict[str, str]:
        """The durable state in the console's health card (the same figures as /health)."""
        if self.server.journal is None:
            return {}
        report = self.server.durability()
        checks = {"role": f"ok: {self.server.role}",
                  "journal position": f"ok: record {report['durable_sequence']}"}
        snapshot = report.get("snapshot")
        if snapshot is not None:
            if snapshot["failed"] or snapshot["skipped_at_start"]:
                checks["snapshots"] = (f"{snapshot['failed']} failed, "
                                       f"{snapshot['skipped_at_start']} skipped at start")
            elif snapshot["sequence"]:
                checks["snapshots"] = (f"ok: record {snapshot['sequence']}, "
                                       f"{snapshot['age_s']} s old, {snapshot['bytes']} bytes")
            else:
                checks["snapshots"] = "none yet"
        journal = report.get("journal")
        if journal is not None:
            checks["journal segments"] = (f"ok: {journal['segments']} "
                                          f"({journal['archived_segments']} archived), "
                                          f"{journal['bytes']} bytes")
        history = report.get("history")
        if history is not None:
            checks["transfer history"] = ("ok:" if not history["write_failures"]
                                          else f"{history['write_failures']} write failures,"
                                          ) + f" backlog {history['backlog_rows']} rows"
        return checks

    async def _postgres_counts(self):
        if self._pg_pool is None:
            import asyncpg

            self._pg_pool = await asyncpg.create_pool(
                self.server.config.postgres_dsn.reveal(), min_size=1, max_size=1)
        return await postgres_counts(self._pg_pool)

    async def directory_counts(self):
        return await self._directory_counts.get()

    async def close(self) -> None:
        if self._pg_pool is not None:
            await self._pg_pool.close()


def _sum_metric(metric) -> int:
    values = getattr(metric, "values", None)
    if isinstance(values, dict):
        return int(sum(values.values()))
    read = getattr(metric, "read", None)
    if read is not None:
        value = read()
        return int(sum(value.values())) if isinstance(value, dict) else int(value)
    return 0


class Console:
    """The running console: its URL, service and store; `await stop()` to close it."""

    def __init__(self, server, service: AdminService, http: ConsoleServer, store, port_adapter):
        self.server = server
        self.service = service
        self.http = http
        self.store = store
        self._adapter = port_adapter
        self._stopped = False

    @property
    def url(self) -> str:
        return self.http.url

    async def stop(self) -> None:
        """Idempotent: the server stops its console, and so may whoever attached it."""
        if self._stopped:
            return
        self._stopped = True
        await self.http.stop()
        await self._adapter.close()
        await self.store.close()


async def _server_admin_store(server):
    config = server.config
    return await open_admin_store(
        config.data_dir,
        config.postgres_dsn.reveal() if config.store == "postgres" else None, migrate=True)


async def attach_console(server, host: str = "127.0.0.1", port: int = 0, *,
                         passwords=None, ssl_certfile: str = "", ssl_keyfile: str = "",
                         store=None) -> Console:
    """Start the operator console on a started `SwitchServer`, in its loop."""
    adapter = ServerSwitch(server)
    store = store or await _server_admin_store(server)
    service = AdminService(store, adapter, passwords=passwords,
                           settlement=getattr(server, "settlement", None))
    app = create_console_app(service, secure_cookies=bool(ssl_certfile))
    http = ConsoleServer(app, host, port, ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile)
    await http.start()
    console = Console(server, service, http, store, adapter)
    if getattr(server, "console", None) is None:
        # The server's in-process bootstrap audits through it, and stops it with itself.
        server.console = console
    return console


DEMO_OPERATORS = (("admin", "admin"), ("checker", "operator"), ("viewer", "viewer"))
# Two admins for a launcher's own onboarding (`switch.launcher`): one proposes, the
# other approves, through the console like any operator.
LAUNCHER_OPERATORS = (("launcher-maker", "admin"), ("launcher-checker", "admin"))


async def bootstrap_operators(service: AdminService, operators, actor: str
                              ) -> list[tuple[str, str, str]]:
    """Create the given (username, role) operators that do not exist yet, with random
    passwords; return (username, password, role) of those created, to print or use once.
    Audited (actor `actor`); never used by `ponte run` itself."""
    system = Caller(actor, Role.ADMIN, "local")
    created = []
    for username, role in operators:
        if await service.store.get_user(username) is not None:
            continue
        password = secrets.token_urlsafe(12)
        await service.create_user(system, UserCreate(username=username, password=password,
                                                     role=role))
        created.append((username, password, role))
    return created


async def bootstrap_demo_operators(service: AdminService) -> list[tuple[str, str, str]]:
    """For `ponte demo` only: one operator per role (when they do not exist yet)."""
    return await bootstrap_operators(service, DEMO_OPERATORS, "demo")


def create_operators(data_dir: str, operators, actor: str, postgres_dsn: str = ""
                     ) -> list[tuple[str, str, str]]:
    """From another process than the switch's (the demo, a launcher): operators in the
    switch's admin store — embedded SQLite in WAL mode (the switch has it open too), or
    PostgreSQL. Blocking."""
    import asyncio

    async def create() -> list[tuple[str, str, str]]:
        store = await open_admin_store(data_dir, postgres_dsn or None, migrate=True)
        try:
            return await bootstrap_operators(AdminService(store, switch=None), operators, actor)
        finally:
            await store.close()

    return asyncio.run(create())


def create_demo_operators(data_dir: str) -> list[tuple[str, str, str]]:
    """`ponte demo`, from its own process: the demo operators in the switch's embedded admin
    store. Blocking."""
    return create_operators(data_dir, DEMO_OPERATORS, "demo")


assert limits.SESSION_LIFETIME_S > 0
