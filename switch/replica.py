"""A local PostgreSQL primary with a synchronous streaming replica, made on this box for a
test or a bench and removed afterwards: `ReplicaPair`.

Two clusters of their own (Debian's `pg_createcluster`, trust authentication on 127.0.0.1
only, manual start): the primary, and a replica copied from it with `pg_basebackup` that
streams its WAL under the application name `ponte_sync`. `synchronous(True)` sets
`synchronous_standby_names` on this pair's primary (ALTER SYSTEM + reload) and the
database's `synchronous_commit = remote_apply`, so a commit returns only once the replica
has applied it: an acknowledged journal record is on both machines. The shared cluster the
other tests use is never touched — that is why the pair has a primary of its own, since
`synchronous_standby_names` is a server-wide setting.

It must never change a cluster it did not create, and `drop()` must leave nothing behind.
It imports nothing of the switch: tests and the bench use it beside a switch.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid

PG_VERSION = "15"
APPLICATION_NAME = "ponte_sync"
DATABASE = "ponte"
STREAMING_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0
# Small: two extra servers share the box with everything else.
SERVER_SETTINGS = """\
listen_addresses = '127.0.0.1'
shared_buffers = '32MB'
max_connections = 40
wal_level = replica
max_wal_senders = 4
hot_standby = on
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ReplicaUnavailable(RuntimeError):
    """The PostgreSQL cluster tools are not installed, or a command of theirs failed."""


def tools_available() -> bool:
    return all(shutil.which(tool) for tool in ("pg_createcluster", "pg_ctlcluster",
                                               "pg_dropcluster", "runuser"))


def _run(*command: str, as_postgres: bool = False) -> str:
    if as_postgres:
        command = ("runuser", "-u", "postgres", "--", *command)
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        raise ReplicaUnavailable(f"{' '.join(command)} exited {done.returncode}: "
                                 f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


class ReplicaPair:
    """See the module docstring. `with ReplicaPair() as pair:` creates and starts both
    clusters (replica streaming) and drops them at the end, whatever happened."""

    def __init__(self, prefix: str = "ponte") -> None:
        tag = uuid.uuid4().hex[:8]
        self.primary_name = f"{prefix}_sync_{tag}"
        self.replica_name = f"{prefix}_replica_{tag}"
        self.primary_port = 0
        self.replica_port = 0
        self._created: list[str] = []

    # -- addresses -------------------------------------------------------------------------

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/{database}"

    def replica_dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.replica_port}/{database}"

    def _psql(self, port: int, sql: str, database: str = "postgres") -> str:
        return _run("psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d",
                    database, "-v", "ON_ERROR_STOP=1", "-Atc", sql).strip()

    # -- life ------------------------------------------------------------------------------

    def __enter__(self) -> ReplicaPair:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.drop()

    def start(self) -> ReplicaPair:
        if not tools_available():
            raise ReplicaUnavailable("pg_createcluster / pg_ctlcluster / runuser not found")
        try:
            self.primary_port = self._create(self.primary_name)
            _run("pg_ctlcluster", PG_VERSION, self.primary_name, "start")
            self._psql(self.primary_port, f"CREATE DATABASE {DATABASE}")
            self.replica_port = self._create(self.replica_name)
            self._copy_primary_into_replica()
            _run("pg_ctlcluster", PG_VERSION, self.replica_name, "start")
            self._wait_streaming()
        except BaseException:
            self.drop()
            raise
        return self

    def _create(self, name: str) -> int:
        port = free_port()
        _run("pg_createcluster", PG_VERSION, name, "-p", str(port), "--start-conf=manual",
             "--", "--auth=trust")
        self._created.append(name)
        with open(f"/etc/postgresql/{PG_VERSION}/{name}/conf.d/ponte.conf", "w") as file:
            file.write(SERVER_SETTINGS)
        return port

    def _copy_primary_into_replica(self) -> None:
        data_dir = f"/var/lib/postgresql/{PG_VERSION}/{self.replica_name}"
        for entry in os.listdir(data_dir):  # emptied, kept: its parent belongs to root
            path = os.path.join(data_dir, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        _run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U",
             "postgres", "-D", data_dir, "--checkpoint=fast", "--wal-method=stream",
             as_postgres=True)
        # Its own primary_conninfo (pg_basebackup -R would write one without the
        # application name the primary's synchronous_standby_names names).
        conf = f"/etc/postgresql/{PG_VERSION}/{self.replica_name}/conf.d/ponte-replica.conf"
        with open(conf, "w") as file:
            file.write(f"primary_conninfo = 'host=127.0.0.1 port={self.primary_port} "
                       f"user=postgres application_name={APPLICATION_NAME}'\n")
        signal_path = os.path.join(data_dir, "standby.signal")
        open(signal_path, "w").close()
        shutil.chown(signal_path, "postgres", "postgres")

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + STREAMING_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self._psql(self.primary_port, "SELECT state FROM pg_stat_replication "
                               f"WHERE application_name = '{APPLICATION_NAME}'")
            if state == "streaming":
                return
            time.sleep(0.1)
        raise ReplicaUnavailable(f"replica {self.replica_name} not streaming after "
                                 f"{STREAMING_TIMEOUT_S}s")

    # -- settings --------------------------------------------------------------------------

    def create_database(self, database: str) -> str:
        """A new database on the pair's primary (replicated like everything); its DSN."""
        assert database.isidentifier(), database
        self._psql(self.primary_port, f"CREATE DATABASE {database}")
        return self.dsn(database)

    def synchronous(self, on: bool, database: str = DATABASE) -> None:
        """Commits on `database` wait for the replica to apply them (on), or only for the
        primary's own disk (off). This pair's primary only."""
        assert database.isidentifier(), database
        names = APPLICATION_NAME if on else ""
        self._psql(self.primary_port, f"ALTER SYSTEM SET synchronous_standby_names = "
                                      f"'{names}'")
        self._psql(self.primary_port, "SELECT pg_reload_conf()")
        level = "remote_apply" if on else "local"
        self._psql(self.primary_port, f"ALTER DATABASE {database} SET synchronous_commit = "
                                      f"'{level}'")
        deadline = time.monotonic() + STREAMING_TIMEOUT_S
        wanted = "sync" if on else "async"
        while self.sync_state() != wanted:
            if time.monotonic() > deadline:
                raise ReplicaUnavailable(f"replica not {wanted} after reload")
            time.sleep(0.05)

    def sync_state(self) -> str:
        """pg_stat_replication.sync_state of the replica: 'sync' or 'async'."""
        return self._psql(self.primary_port, "SELECT sync_state FROM pg_stat_replication "
                          f"WHERE application_name = '{APPLICATION_NAME}'")

    # -- failures --------------------------------------------------------------------------

    def crash_primary(self) -> None:
        """Stop the primary as a crash would (immediate: no checkpoint, no goodbye)."""
        _run("pg_ctlcluster", PG_VERSION, self.primary_name, "stop", "-m", "immediate")

    def promote_replica(self) -> None:
        """Make the replica a primary (what an operator or a failover manager does)."""
        _run("pg_ctlcluster", PG_VERSION, self.replica_name, "promote")
        deadline = time.monotonic() + STREAMING_TIMEOUT_S
        while self._psql(self.replica_port, "SELECT pg_is_in_recovery()") != "f":
            if time.monotonic() > deadline:
                raise ReplicaUnavailable("replica still in recovery after promote")
            time.sleep(0.05)

    def drop(self) -> None:
        """Stop and remove both clusters (data, configuration, logs)."""
        for name in reversed(self._created):
            subprocess.run(("pg_dropcluster", "--stop", PG_VERSION, name),
                           capture_output=True, timeout=COMMAND_TIMEOUT_S)
            # pg_dropcluster leaves files it did not make (our conf.d entries).
            for leftover in (f"/etc/postgresql/{PG_VERSION}/{name}",
                             f"/var/lib/postgresql/{PG_VERSION}/{name}"):
                shutil.rmtree(leftover, ignore_errors=True)
        self._created.clear()
