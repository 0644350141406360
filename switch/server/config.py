"""The server's configuration: one frozen Struct read once from a TOML file and `PONTE_*`
environment variables, with bounds in the types and secrets that never print.

Precedence: defaults < TOML file < environment. An environment variable names a top-level
field in upper case (`PONTE_STREAM_PORT=7400`) or a nested one with a double underscore
(`PONTE_CORE__IN_FLIGHT_MAX=1000`, `PONTE_LEDGER__ACCOUNTS_MAX=4096`). Secrets
(`api_key_pepper`, `admin_token`, `directory_secret`, `postgres_dsn`, `redis_url`) are
`Secret` values: their repr is redacted, so a config dump or a log line cannot leak them.

This module reads files and the environment only when asked (`load_config`); it must never
open a socket or keep a global configuration.
"""

from __future__ import annotations

import os
import secrets
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from ledger.config import LedgerConfig
from switch.core.config import CoreConfig
from switch.directory.config import DirectoryConfig
from switch.server import limits

ENV_PREFIX = "PONTE_"
_NESTED = {"core", "ledger", "directory"}


class Secret:
    """A secret string. `reveal()` is the only way to read it; it never prints."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret is text")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(
            self._value.encode(), other._value.encode()
        )

    def __hash__(self) -> int:
        return hash(("Secret", len(self._value)))

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __reduce__(self):  # refuse pickling: it would write the secret somewhere
        raise TypeError("Secret cannot be pickled")


Port = Annotated[int, Meta(ge=0, le=65535)]  # 0: pick a free port (tests), see bound ports
Host = Annotated[str, Meta(min_length=1, max_length=255)]


class ServerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything `ponte run` needs. Defaults run an embedded, single-box switch."""

    # Where the embedded backends live: the journal file, SQLite directory and credentials.
    data_dir: Annotated[str, Meta(min_length=1, max_length=4096)] = "./ponte-data"
    # "file": the hash-chained journal file with fdatasync; "postgres": COPY into
    # ledger_journal (needs postgres_dsn and `ponte db migrate`).
    journal: Literal["file", "postgres"] = "file"
    journal_name: Annotated[str, Meta(min_length=1, max_length=64)] = "switch"
    # File journal: "thread" writes and fsyncs in a thread while the next tick is decided
    # (slow disks); "inline" does it on the loop (fast disks, busy CPUs: no hand-offs).
    journal_commit: Literal["thread", "inline"] = "thread"
    # Snapshots (docs/operations.md): every this many events or seconds, whichever first, by
    # a forked child; recovery replays only the journal after the newest valid one.
    snapshots_enabled: bool = True
    snapshot_every_events: Annotated[int, Meta(ge=1)] = limits.SNAPSHOT_EVERY_EVENTS_DEFAULT
    snapshot_every_s: Annotated[float, Meta(ge=limits.SNAPSHOT_EVERY_S_MIN)] = (
        limits.SNAPSHOT_EVERY_S_DEFAULT)
    snapshots_retained: Annotated[int, Meta(ge=2, le=limits.SNAPSHOTS_RETAINED_MAX)] = (
        limits.SNAPSHOTS_RETAINED_DEFAULT)
    # The heap collapsed into transparent huge pages (MADV_COLLAPSE, in the background once
    # the listeners are open): a snapshot's fork pause is ~4x shorter.
    snapshot_huge_pages: bool = True
    # File journal segments: rotate past this size; sealed segments every retained snapshot
    # covers are compressed (lzma), deleted, or kept.
    journal_segment_bytes_max: Annotated[int, Meta(ge=limits.JOURNAL_SEGMENT_BYTES_MIN,
                                                   le=limits.JOURNAL_SEGMENT_BYTES_MAX)] = (
        limits.JOURNAL_SEGMENT_BYTES_DEFAULT)
    journal_archive: Literal["compress", "delete", "keep"] = "compress"
    # The durable transfer history (switch/store/history.py): final transfers older than the
    # core's retained window, answered for this long (docs/operations.md).
    history_enabled: bool = True
    history_retention_days: Annotated[int, Meta(ge=1, le=limits.HISTORY_RETENTION_DAYS_MAX)] = (
        limits.HISTORY_RETENTION_DAYS_DEFAULT)
    # "embedded": SQLite in data_dir; "postgres": the directory and credential tables.
    store: Literal["embedded", "postgres"] = "embedded"
    # "primary": take the journal's writer lock at start, or refuse if another process
    # holds it; "standby": follow the primary's PostgreSQL journal into a warm core and
    # ledger, and take over when the primary's lock is released (docs/operations.md,
    # "Primary and standby"). A standby needs journal and store in PostgreSQL.
    role: Literal["primary", "standby"] = "primary"
    # A standby looks for new records and for the primary's lock this often when no
    # notification woke it: the bound on its detection time once the lock is free.
    standby_poll_interval_ms: Annotated[float, Meta(ge=1.0, le=10_000.0)] = 100.0
    postgres_dsn: Secret | None = None
    # With a Redis URL the directory's alias cache and anti-enumeration buckets live there.
    redis_url: Secret | None = None
    redis_prefix: Annotated[str, Meta(max_length=64)] = "ponte:dir:"

    # Secrets. Empty means "generate one at first start and keep it in data_dir" (embedded
    # only): a pepper that changes invalidates every API key, so it must persist.
    api_key_pepper: Secret | None = None
    directory_secret: Secret | None = None
    admin_token: Secret | None = None

    # Listeners.
    stream_host: Host = "127.0.0.1"
    stream_port: Port = 7400
    stream_enabled: bool = True
    stream_tls_cert: str = ""  # PEM chain; with stream_tls_key enables TLS on the stream port
    stream_tls_key: str = ""
    stream_tls_client_ca: str = ""  # PEM CA bundle: require and verify client certificates
    # Stream connections one remote address may hold (from accept, before the handshake).
    stream_connections_per_address_max: Annotated[
        int, Meta(ge=1, le=limits.STREAM_CONNECTIONS_MAX)
    ] = limits.STREAM_CONNECTIONS_PER_ADDRESS_MAX_DEFAULT
    # /health, /metrics and a read-only participant list (admin_token); it changes nothing.
    admin_host: Host = "127.0.0.1"
    admin_port: Port = 7480
    admin_enabled: bool = True
    # The operator console (switch/admin, switch/console): web pages + admin JSON API, the
    # one surface every change goes through (maker-checker, audit).
    console_enabled: bool = False
    console_host: Host = "127.0.0.1"
    console_port: Port = 7490
    console_tls_cert: str = ""  # PEM chain; with console_tls_key serves HTTPS, Secure cookies
    console_tls_key: str = ""
    # The HTTP connector (connectors/http), configured by its own HttpConnectorConfig table
    # (host, port, callbacks, signing key path...), converted when the server starts it.
    http_enabled: bool = False
    http: dict = {}
    # The G2P connector and batch engine (connectors/g2p, switch/g2p), configured by its own
    # G2PConfig table (host, port, pacing...), converted when the server starts it.
    g2p_enabled: bool = False
    g2p: dict = {}
    # The ISO 20022 connector (connectors/iso20022): banks' pacs/camt/pain messages over
    # HTTPS, configured by its own Iso20022Config table (listener, banks, TLS, signing).
    iso20022_enabled: bool = False
    iso20022: dict = {}
    # The GSMA Mobile Money API hub (connectors/mobilemoney), configured by its own
    # MobileMoneyConfig table (host, port, public_url, wallets...), converted at start.
    mobilemoney_enabled: bool = False
    mobilemoney: dict = {}
    # The FSPIOP 1.1 hub (connectors/fspiop): its FspiopConnectorConfig table (host, port,
    # hub FSP id, JWS key path, DFSPs...), converted when the server starts it.
    fspiop_enabled: bool = False
    fspiop: dict = {}
    # Settlement documents and statements (switch/settlement): its SettlementConfig table
    # (how the scheme is named in ISO 20022 documents), converted when the server starts.
    settlement: dict = {}

    # The sequencer and its bounds.
    inbound_queue_max: Annotated[
        int, Meta(ge=1, le=limits.INBOUND_QUEUE_MAX_CEILING)
    ] = limits.INBOUND_QUEUE_MAX_DEFAULT
    tick_events_max: Annotated[
        int, Meta(ge=1, le=limits.TICK_EVENTS_MAX_CEILING)
    ] = limits.TICK_EVENTS_MAX_DEFAULT
    commit_interval_ms: Annotated[float, Meta(ge=0.0, le=limits.COMMIT_INTERVAL_S_MAX * 1000)] = (
        limits.COMMIT_INTERVAL_S_DEFAULT * 1000
    )
    status_per_participant_max: Annotated[
        int, Meta(ge=1, le=limits.STATUS_PER_PARTICIPANT_MAX_CEILING)
    ] = limits.STATUS_PER_PARTICIPANT_MAX_DEFAULT
    status_rate_per_participant: Annotated[
        float, Meta(ge=0.0, le=limits.STATUS_RATE_PER_PARTICIPANT_MAX)
    ] = limits.STATUS_RATE_PER_PARTICIPANT_DEFAULT
    # After a restart: how long a participant has to connect (or call over HTTP) before
    # the credit requests held for it go to its callback URL (docs/operations.md).
    held_grace_s: Annotated[float, Meta(ge=0.0, le=limits.HELD_GRACE_S_MAX)] = (
        limits.HELD_GRACE_S_DEFAULT
    )
    outcomes_archived_max: Annotated[int, Meta(ge=1, le=1 << 26)] = (
        limits.OUTCOMES_ARCHIVED_MAX_DEFAULT
    )
    shutdown_drain_s: Annotated[float, Meta(ge=0.0, le=limits.SHUTDOWN_DRAIN_S_MAX)] = (
        limits.SHUTDOWN_DRAIN_S_DEFAULT
    )
    # Python -O strips asserts, and asserts guard the invariants: refuse to start without
    # them unless this says the operator knows.
    allow_optimized_python: bool = False

    core: CoreConfig = CoreConfig()
    ledger: LedgerConfig = LedgerConfig()
    directory: DirectoryConfig = msgspec.field(default_factory=DirectoryConfig)

    def __post_init__(self) -> None:
        if self.journal == "postgres" and self.postgres_dsn is None:
            raise ValueError("journal = 'postgres' needs postgres_dsn")
        if self.store == "postgres" and self.postgres_dsn is None:
            raise ValueError("store = 'postgres' needs postgres_dsn")
        if self.role == "standby" and (self.journal != "postgres" or self.store != "postgres"):
            raise ValueError("role = 'standby' follows the primary through PostgreSQL: it "
                             "needs journal = 'postgres' and store = 'postgres'")
        if bool(self.stream_tls_cert) != bool(self.stream_tls_key):
            raise ValueError("stream_tls_cert and stream_tls_key go together")
        if bool(self.console_tls_cert) != bool(self.console_tls_key):
            raise ValueError("console_tls_cert and console_tls_key go together")
        if self.stream_tls_client_ca and not self.stream_tls_cert:
            raise ValueError("stream_tls_client_ca needs stream_tls_cert/stream_tls_key")
        if self.ledger.pending_max < 2 * self.core.in_flight_max:
            raise ValueError("ledger.pending_max must be at least 2 * core.in_flight_max")
        if self.core.in_flight_max > self.core.transfers_retained_max:
            raise ValueError("core.in_flight_max must not exceed core.transfers_retained_max")
        # With a durable history the outcome archive and the history answer for every final
        # transfer the core drops, so its table need not hold rate x expiry of them; without
        # one, the core's table is the only memory of a transfer before its expiry.
        kept = not self.history_enabled
        if self.core.finals_kept_until_expiry is not kept:
            msgspec.structs.force_setattr(self, "core", msgspec.structs.replace(
                self.core, finals_kept_until_expiry=kept))


def _dec_hook(type_, value):
    if type_ is Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return Secret(value)
    raise NotImplementedError(f"cannot convert {type(value).__name__} to {type_}")


def _enc_hook(value):
    if isinstance(value, Secret):
        return value  # kept as is: to_builtins never reveals it
    raise NotImplementedError


def env_overrides(environ: dict[str, str]) -> dict:
    """Nested dict of PONTE_* variables (strings; converted with the types' rules)."""
    fields = set(ServerConfig.__struct_fields__)
    result: dict = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if "__" in key:
            section, _, field = key.partition("__")
            if section in _NESTED:
                result.setdefault(section, {})[field] = value
            continue
        if key in fields and key not in _NESTED:
            result[key] = value
    return result


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from(data: dict) -> ServerConfig:
    """Convert a plain dict (TOML-decoded, env strings allowed) into a ServerConfig.
    Raises msgspec.ValidationError naming the field at fault."""
    return msgspec.convert(data, ServerConfig, strict=False, dec_hook=_dec_hook)


def load_config(path: str | None = None, environ: dict[str, str] | None = None,
                **overrides) -> ServerConfig:
    """Defaults < TOML (or .json) file at `path` < PONTE_* environment < keyword overrides."""
    data: dict = {}
    if path:
        with open(path, "rb") as file:
            raw = file.read()
        # TOML for people; JSON too, for programs that write configs (no TOML writer in
        # the dependencies).
        decoded = msgspec.json.decode(raw) if path.endswith(".json") else msgspec.toml.decode(raw)
        if not isinstance(decoded, dict):
            raise ValueError(f"{path}: expected a table")
        data = decoded.get("server", decoded) if "server" in decoded else decoded
    data = _merge(data, env_overrides(dict(os.environ if environ is None else environ)))
    data = _merge(data, {k: v for k, v in overrides.items() if v is not None})
    return config_from(data)


def describe(config: ServerConfig) -> dict:
    """The config as builtins with every secret shown as '<redacted>' (for logs, --check)."""
    raw = msgspec.to_builtins(config, enc_hook=lambda v: "<redacted>" if isinstance(v, Secret)
                              else _enc_hook(v))
    return raw
