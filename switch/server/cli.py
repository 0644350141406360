"""`ponte run`, `ponte participant ...`, `ponte currency ...` and `ponte demo`.

`ponte run` starts a switch process. The participant and currency commands are an operator
client of the running switch's console (its JSON API, `switch/admin/client.py`), logged in
with `ponte admin login`: every change is a maker-checker proposal that a second operator
approves with `ponte admin approve`, audited in the console's hash-chained log. An API key
is printed once, by the approval that issued it; it is never stored in plain text anywhere.
"""

from __future__ import annotations

import json

import click

from ledger import journal_limits
from switch.admin.cli import api, operator, propose, session_option
from connectors.sim import limits as sim_limits


@click.command("run")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="TOML file ([server] table or top level); PONTE_* variables override it.")
@click.option("--data-dir", default=None, help="Journal, embedded stores and secrets.")
@click.option("--postgres-dsn", default=None,
              help="Journal, directory and credentials in PostgreSQL (migrations applied).")
@click.option("--redis-url", default=None, help="Directory cache and buckets in Redis.")
@click.option("--stream-port", type=int, default=None)
@click.option("--admin-port", type=int, default=None)
@click.option("--standby", is_flag=True,
              help="Follow the primary's PostgreSQL journal and take over when the primary "
                   "is gone (config: role = \"standby\"; needs --postgres-dsn).")
@click.option("--log-level", default="INFO", show_default=True)
def run(config_path, data_dir, postgres_dsn, redis_url, stream_port, admin_port, standby,
        log_level) -> None:
    """Run the switch until SIGINT/SIGTERM, then shut down gracefully.

    With --standby: serve only /health and /metrics while following the primary's
    journal; when the primary's lock is released, take over (next epoch) and open every
    listener. A primary that finds another primary's lock refuses to start (exit 1)."""
    import logging

    import msgspec
    import uvloop

    from switch.app import check_tables, serve
    from switch.server.config import load_config
    from switch.server.server import StartRefused

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides = {"data_dir": data_dir, "stream_port": stream_port, "admin_port": admin_port,
                 "redis_url": redis_url, "role": "standby" if standby else None}
    if postgres_dsn:
        overrides.update(postgres_dsn=postgres_dsn, journal="postgres", store="postgres")
    try:
        config = load_config(config_path, **overrides)
        check_tables(config)
    except (msgspec.ValidationError, ValueError, OSError) as error:
        raise click.UsageError(f"configuration: {error}") from None
    try:
        status = uvloop.run(serve(config))
    except StartRefused as error:
        raise click.ClickException(str(error)) from None
    if status:
        raise SystemExit(status)  # the sequencer failed: a supervisor restarts and replays


@click.group()
def participant() -> None:
    """Participants: list them, and propose changes (onboarding, funding, limits, keys,
    certificates, callback URL, category, FSPIOP hub) for a second operator to approve.

    Log in first with `ponte admin login`; the approver runs `ponte admin approve ID`.
    """


def _participant_body(kind: str, participant_id: int, note: str, **fields) -> dict:
    return {"kind": kind, "participant_id": participant_id, "note": note, **fields}


_note = click.option("--note", default="", help="Why (shown to the checker, audited).")


@participant.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["bank", "wallet", "government"]), required=True)
@click.option("--currency", "currencies", multiple=True, required=True)
@click.option("--participant-id", type=int, default=0, help="Default: the next free id.")
@click.option("--callback-url", default="")
@click.option("--category", default="",
              help="Directory bucket category (`ponte participant categories`); "
                   "default: the directory's default.")
@click.option("--funding-minor", type=int, default=0, help="Prefunded currencies.")
@click.option("--net-debit-cap-minor", type=int, default=0, help="Deferred-net currencies.")
@_note
@session_option
def participant_add(name, kind, currencies, participant_id, callback_url, category,
                    funding_minor, net_debit_cap_minor, note, session_file) -> None:
    """Propose onboarding a participant. When a second admin approves it, the participant
    exists with its accounts funded or capped, and its first API key is printed to that
    admin, once."""
    propose(session_file, {
        "kind": "onboard", "participant_id": participant_id, "name": name,
        "participant_kind": kind, "currencies": list(currencies), "callback_url": callback_url,
        "category": category, "funding_minor": funding_minor,
        "net_debit_cap_minor": net_debit_cap_minor, "note": note})


@participant.command("list")
@click.option("--json", "as_json", is_flag=True)
@session_option
def participant_list(as_json, session_file) -> None:
    """Participants, their status, category and positions (minor units)."""
    rows = api(operator(session_file).get, "/api/admin/participants")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        positions = ", ".join(
            f"{p['currency']}: available {p['available_minor']} of {p['limit_minor']}"
            for p in row["positions"])
        click.echo(f"{row['participant_id']:>5} {row['name']:<24} {row['kind']:<7} "
                   f"{row['status']:<10} {row['category']:<4} {positions}")


@participant.command("categories")
@session_option
def participant_categories(session_file) -> None:
    """The directory's bucket categories a participant can be put in."""
    answer = api(operator(session_file).get, "/api/admin/categories")
    for row in answer["categories"]:
        default = "  (default)" if row["category"] == answer["default"] else ""
        click.echo(f"{row['category']:<6} {row['capacity_tokens']:>8} lookups, "
                   f"+{row['refill_tokens_per_minute']}/min{default}")


def _money_command(name: str, kind: str, field: str, help_text: str):
    @participant.command(name, help=help_text)
    @click.argument("participant_id", type=int)
    @click.option("--currency", required=True)
    @click.option(f"--{field.replace('_', '-')}", field, type=int, required=True)
    @_note
    @session_option
    def command(participant_id, currency, note, session_file, **values) -> None:
        propose(session_file, _participant_body(kind, participant_id, note, currency=currency,
                                                **values))

    return command


_money_command("fund", "fund", "amount_minor",
               "Propose funding a prefunded settlement account (minor units).")
_money_command("defund", "defund", "amount_minor",
               "Propose paying out of a prefunded settlement account (minor units).")
_money_command("net-debit-cap", "net_debit_cap", "cap_minor",
               "Propose a net debit cap for a deferred-net currency (minor units).")


@participant.command("daily-limit")
@click.argument("participant_id", type=int)
@click.option("--currency", required=True)
@click.option("--max-minor", type=int, default=None,
              help="The participant's own daily total; omit to restore the scheme's rule.")
@_note
@session_option
def participant_daily_limit(participant_id, currency, max_minor, note, session_file) -> None:
    """Propose a participant's own daily total in a currency."""
    propose(session_file, _participant_body("daily_limit", participant_id, note,
                                            currency=currency,
                                            daily_total_max_minor=max_minor))


@participant.command("account")
@click.argument("participant_id", type=int)
@click.option("--currency", required=True)
@_note
@session_option
def participant_account(participant_id, currency, note, session_file) -> None:
    """Propose opening one more currency account (admin)."""
    propose(session_file, _participant_body("account", participant_id, note,
                                            currency=currency))


@participant.command("callback-url")
@click.argument("participant_id", type=int)
@click.argument("url")
@_note
@session_option
def participant_callback_url(participant_id, url, note, session_file) -> None:
    """Propose the HTTP connector's callback URL ("" for none)."""
    propose(session_file, _participant_body("callback_url", participant_id, note,
                                            callback_url=url))


@participant.command("certificate")
@click.argument("participant_id", type=int)
@click.argument("fingerprint_sha256")
@_note
@session_option
def participant_certificate(participant_id, fingerprint_sha256, note, session_file) -> None:
    """Propose accepting a TLS client certificate (SHA-256 of its DER, hex) (admin)."""
    propose(session_file, _participant_body("certificate", participant_id, note,
                                            fingerprint_sha256=fingerprint_sha256.lower()))


@participant.command("category")
@click.argument("participant_id", type=int)
@click.argument("category")
@_note
@session_option
def participant_category(participant_id, category, note, session_file) -> None:
    """Propose a directory bucket category (its alias-lookup budget); no restart needed."""
    propose(session_file, _participant_body("category", participant_id, note,
                                            category=category))


@participant.command("fspiop")
@click.argument("participant_id", type=int)
@click.argument("fsp_id")
@click.option("--endpoint", default="",
              help="Base URL of its FSPIOP API (where the hub sends requests and callbacks); "
                   "omit for a participant of another protocol that needs an FSP id only.")
@click.option("--public-key-file", type=click.File("r"), default=None,
              help="Its JWS public key (PEM; RSA for RS256).")
@click.option("--signature-required/--signature-optional", default=True, show_default=True,
              help="Refuse its unsigned requests.")
@_note
@session_option
def participant_fspiop(participant_id, fsp_id, endpoint, public_key_file, signature_required,
                       note, session_file) -> None:
    """Propose putting a participant on the FSPIOP hub, or changing its FSP id, endpoint or
    JWS key (admin; docs/fspiop.md). Applied when approved, without a restart: its next
    request is verified with the new key."""
    propose(session_file, _participant_body(
        "fspiop_participant", participant_id, note, fsp_id=fsp_id, endpoint=endpoint,
        public_key_pem=public_key_file.read() if public_key_file is not None else "",
        signature_required=signature_required))


@participant.command("key")
@click.argument("participant_id", type=int)
@click.option("--keep-others", is_flag=True,
              help="Keep the earlier keys working (default: they stop when it is approved).")
@_note
@session_option
def participant_key(participant_id, keep_others, note, session_file) -> None:
    """Propose a new API key (admin); it is printed once, to the admin who approves it."""
    propose(session_file, _participant_body("rotate_key", participant_id, note,
                                            revoke_others=not keep_others))


def _status_command(name: str, suspend: bool, help_text: str):
    @participant.command(name, help=help_text)
    @click.argument("participant_id", type=int)
    @session_option
    def command(participant_id, session_file) -> None:
        view = api(operator(session_file).post,
                   f"/api/admin/participants/{participant_id}/{name}")
        click.echo(f"participant {participant_id} {view['status']}")

    return command


_status_command("suspend", True, "Suspend at once (operator): it can neither send nor "
                                 "receive; in-flight transfers finish. Audited.")
_status_command("resume", False, "Resume a suspended participant at once (operator).")


@click.group()
def currency() -> None:
    """Currencies the scheme carries."""


@currency.command("add")
@click.argument("code")
@click.option("--ledger-id", type=int, required=True, help="ISO 4217 numeric code.")
@click.option("--settlement-model", type=click.Choice(["prefunded_rtgs", "deferred_net"]),
              default="prefunded_rtgs", show_default=True)
@click.option("--transfer-max-minor", type=int, default=None)
@click.option("--daily-total-max-minor", type=int, default=None)
@click.option("--fee-fixed-minor", type=int, default=None)
@click.option("--fee-bps", type=int, default=None)
@click.option("--payee-timeout-ms", type=int, default=None)
@_note
@session_option
def currency_add(code, ledger_id, settlement_model, note, session_file, **rules) -> None:
    """Propose carrying a currency, with its scheme rules (limits, fees, payee timeout;
    omitted ones take the scheme's defaults). A second admin approves it."""
    propose(session_file, {
        "kind": "currency", "currency": code, "ledger_id": ledger_id,
        "settlement_model": settlement_model, "note": note,
        "rules": {key: value for key, value in rules.items() if value is not None}})


@click.command("demo")
@click.option("--seconds", type=click.FloatRange(0, sim_limits.RUN_SECONDS_MAX, min_open=True),
              default=60.0, show_default=True, help="How long to offer traffic.")
@click.option("--tps", type=click.FloatRange(0, sim_limits.TPS_MAX, min_open=True),
              default=500.0, show_default=True, help="Payments offered per second.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--reject-rate", type=click.FloatRange(0, 1), default=0.02, show_default=True,
              help="Share of credit requests the payees reject.")
@click.option("--keep-data", is_flag=True, help="Keep the temporary data directory.")
def demo(seconds, tps, seed, reject_rate, keep_data) -> None:
    """Switch + two banks + two wallets (10,000 customers) + traffic, with a live line.

    Exit status: 0 when every simulator's books reconcile with the switch's ledger, 1 when
    they do not or the demo failed, 128 + the signal's number when stopped by Ctrl-C (130)
    or SIGTERM (143)."""
    from switch.demo import run_demo

    raise SystemExit(run_demo(seconds=seconds, tps=tps, seed=seed, reject_rate=reject_rate,
                              keep_data=keep_data))


@click.group()
def journal() -> None:
    """The switch's journal offline: verify the chain and the snapshots, print records;
    on PostgreSQL, archive old partitions to segment files and restore them."""


def _offline_config(config_path, data_dir, postgres_dsn, journal_name=None):
    import msgspec

    from switch.server.config import load_config

    overrides = {"data_dir": data_dir, "journal_name": journal_name}
    if postgres_dsn:
        overrides.update(postgres_dsn=postgres_dsn, journal="postgres", store="postgres")
    try:
        return load_config(config_path, **overrides)
    except (msgspec.ValidationError, ValueError, OSError) as error:
        raise click.UsageError(f"configuration: {error}") from None


_journal_options = [
    click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
                 help="The switch's TOML file (its data_dir, journal, core sizes)."),
    click.option("--data-dir", default=None, help="The switch's data directory."),
    click.option("--postgres-dsn", default=None,
                 help="Verify the PostgreSQL journal instead of the data directory's files."),
    click.option("--journal-name", default=None,
                 help="PostgreSQL: which journal of the table (default: the config's, "
                      "\"switch\")."),
    click.option("--archive", "archive_dir", default=None,
                 type=click.Path(exists=True, file_okay=False),
                 help="PostgreSQL: the directory `ponte journal archive` wrote; the chain is "
                      "read from the genesis through its segments, then the table."),
]


def _with_journal_options(command):
    for option in reversed(_journal_options):
        command = option(command)
    return command


class _journal_errors:
    """What a journal command reports when it fails, on stderr, with exit status 1 — a
    damaged journal or archive, a refusal, an unreachable database or directory — never
    a traceback."""

    def __init__(self, verb: str) -> None:
        self.verb = verb

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _traceback) -> bool:
        if error is None:
            return False
        import asyncpg

        from ledger.journal_archive import ArchiveRefused
        from ledger.journal_format import JournalCorrupt, JournalMissing

        if isinstance(error, JournalCorrupt):
            where = f" offset {error.offset}" if error.offset is not None else ""
            message = (f"{self.verb}: journal damaged: {error} (sequence {error.sequence}"
                       f"{where})")
        elif isinstance(error, ArchiveRefused):
            message = f"{self.verb} refused: {error}"
        elif isinstance(error, JournalMissing):
            message = f"journal missing: {error}"
        elif isinstance(error, AssertionError):
            message = f"ledger invariants broken after replay: {error}"
        elif isinstance(error, (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
            message = f"{self.verb} failed: {type(error).__name__}: {error}"
        else:
            return False
        click.echo(message, err=True)
        raise SystemExit(1) from None


@journal.command("verify")
@_with_journal_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def journal_verify(config_path, data_dir, postgres_dsn, journal_name, archive_dir,
                   as_json) -> None:
    """Verify the journal's hash chain end to end (every segment, archived ones included,
    or every PostgreSQL row — from the genesis through --archive's segments, or from the
    table's first row, which must follow the last archived record or a snapshot), check
    each snapshot (files, or `switch_snapshot` rows) against the chain, rebuild the core
    from the newest usable snapshot and the records after it, check the ledger's
    invariants, and print the head hash (publish it outside the system). Exit 1 on any
    problem, naming the damaged segment, row or snapshot."""
    import asyncio

    config = _offline_config(config_path, data_dir, postgres_dsn, journal_name)
    if archive_dir is not None and config.journal != "postgres":
        raise click.UsageError("--archive is for a PostgreSQL journal (--postgres-dsn); a "
                               "file journal's archived segments stay in its directory")
    with _journal_errors("verify"):
        if config.journal == "postgres":
            report = asyncio.run(_verify_postgres(config, archive_dir))
        else:
            report = _verify_files(config)
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"records {report['records']}  head sequence {report['head_sequence']}"
                   f"  (first record follows: {report['anchor']})")
        click.echo(f"head hash {report['head_hash']}")
        for snapshot in report["snapshots"]:
            verdict = "ok" if not snapshot["problem"] else f"PROBLEM: {snapshot['problem']}"
            click.echo(f"snapshot {snapshot['path']} sequence {snapshot['sequence']}: {verdict}")
        if report["invariants"]:
            click.echo(f"ledger invariants ok (core rebuilt from "
                       f"{report['rebuilt_from'] or 'the genesis'})")
        else:
            click.echo("no core rebuilt")
    if any(snapshot["problem"] for snapshot in report["snapshots"]):
        raise SystemExit(1)
    if not report["invariants"] and report["records"]:
        click.echo("no core could be rebuilt: no usable snapshot covers the start of the "
                   "records read (give --archive DIR to read from the genesis)", err=True)
        raise SystemExit(1)


def _report(state) -> dict:
    return {
        "records": state.records, "head_sequence": state.head.sequence,
        "head_hash": state.head.record_hash.hex(), "segments": state.segments,
        "archived_segments": state.archived_segments, "rebuilt_from": state.rebuilt_from,
        "invariants": state.core is not None, "anchor": state.anchor,
        "snapshots": [{"path": c.path, "sequence": c.sequence, "problem": c.problem}
                      for c in state.snapshots],
    }


def _verify_files(config) -> dict:
    from switch.server.offline import verify_file_journal

    return _report(verify_file_journal(config))


async def _verify_postgres(config, archive_dir) -> dict:
    from switch.server.offline import verify_postgres_journal

    return _report(await verify_postgres_journal(config, archive_dir=archive_dir))


@journal.command("inspect")
@_with_journal_options
@click.option("--from", "from_sequence", type=click.IntRange(min=1), default=1,
              show_default=True, help="First record to print.")
@click.option("--count", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
def journal_inspect(config_path, data_dir, postgres_dsn, journal_name, archive_dir,
                    from_sequence, count) -> None:
    """Print journal records for an auditor: sequence, time, hash, and each event as JSON
    (verified as they are read; national IDs appear only as identity tokens). On
    PostgreSQL, --archive reads the archived segments first."""
    import asyncio

    from ledger.journal_format import GENESIS
    from switch.server.offline import file_records

    config = _offline_config(config_path, data_dir, postgres_dsn, journal_name)
    if archive_dir is not None and config.journal != "postgres":
        raise click.UsageError("--archive is for a PostgreSQL journal (--postgres-dsn)")
    with _journal_errors("inspect"):
        if config.journal == "postgres":
            asyncio.run(_inspect_postgres(config, archive_dir, from_sequence, count))
        else:
            _print_records(file_records(config.data_dir, GENESIS), from_sequence, count)


async def _inspect_postgres(config, archive_dir, from_sequence: int, count: int) -> None:
    from contextlib import aclosing

    from switch.server.offline import postgres_journal_records

    printer = _RecordPrinter(from_sequence, count)
    async with aclosing(postgres_journal_records(config, archive_dir=archive_dir)) as records:
        async for record in records:
            if printer.done(record):
                break


def _print_records(records, from_sequence: int, count: int) -> None:
    printer = _RecordPrinter(from_sequence, count)
    for record in records:
        if printer.done(record):
            break


class _RecordPrinter:
    def __init__(self, from_sequence: int, count: int) -> None:
        self.from_sequence = from_sequence
        self.count = count
        self.printed = 0

    def done(self, record) -> bool:
        """Print `record` if it is wanted; True once `count` records were printed."""
        import datetime

        import msgspec

        from switch.server.journal import decode_tick

        if record.sequence < self.from_sequence:
            return False
        when = datetime.datetime.fromtimestamp(record.now_ns / 1e9, datetime.timezone.utc)
        click.echo(f"#{record.sequence} {when:%Y-%m-%dT%H:%M:%S.%fZ} "
                   f"hash={record.record_hash.hex()[:16]}")
        for _now_ns, event in decode_tick(record):
            click.echo(f"  {type(event).__name__} "
                       f"{msgspec.json.encode(_readable(event)).decode()}")
        self.printed += 1
        return self.printed >= self.count


@journal.command("archive")
@click.option("--postgres-dsn", required=True, help="The database of the journal table.")
@click.option("--to", "archive_dir", required=True, type=click.Path(file_okay=False),
              help="Directory for the segment files (one sub-directory per journal name); "
                   "use the same one every time, and back it up.")
@click.option("--delete", is_flag=True,
              help="Drop the detached partitions (and tables an earlier run kept, once "
                   "their files read back whole from --to). Default: keep each detached "
                   "partition as a plain table ledger_journal_detached_<sequence>.")
def journal_archive(postgres_dsn, archive_dir, delete) -> None:
    """Archive the PostgreSQL journal's old partitions: each partition, oldest first,
    whose records the oldest retained snapshot (switch_snapshot) of every journal in it
    covers — and that holds no journal's newest record — is written as hash-chained,
    xz-compressed segment files (the file journal's format), fsynced, read back and
    verified, recorded in ledger_journal_archive, and only then detached (without
    stopping commits). Without --delete the detached table is kept, so nothing is gone
    for good until the files are safe elsewhere. Exit 1 when nothing can be archived or a
    chain does not verify (that partition stays)."""
    import asyncio

    with _journal_errors("archive"), _archive_progress() as progress:
        report = asyncio.run(_archive(postgres_dsn, archive_dir, delete, progress))
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    for segment in report.segments:
        click.echo(f"archived {segment.journal_name} {segment.base.sequence + 1}.."
                   f"{segment.last.sequence} -> {segment.path}")
    for name in report.kept:
        click.echo(f"detached and kept {name}")
    for name in report.dropped:
        click.echo(f"dropped {name}")
    if report.stopped_at:
        click.echo(f"stopped: {report.stopped_at}")


async def _archive(postgres_dsn, archive_dir, delete, progress):
    from ledger.journal_archive import archive_partitions

    return await archive_partitions(postgres_dsn, archive_dir, delete=delete,
                                    progress=progress)


class _archive_progress:
    """A rich progress bar per partition, shown for partitions of many records."""

    shown_from_records = 10_000

    def __enter__(self):
        self._progress = None
        self._tasks: dict[str, int] = {}
        return self.update

    def update(self, partition: str, done: int, total: int) -> None:
        if total < self.shown_from_records:
            return
        if self._progress is None:
            from rich.console import Console
            from rich.progress import Progress

            self._progress = Progress(console=Console(stderr=True), transient=False)
            self._progress.start()
        if partition not in self._tasks:
            self._tasks[partition] = self._progress.add_task(partition, total=total)
        self._progress.update(self._tasks[partition], completed=done)

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()


@journal.command("restore")
@click.option("--postgres-dsn", required=True, help="The database to put the records into.")
@click.option("--from", "archive_dir", required=True,
              type=click.Path(exists=True, file_okay=False),
              help="The directory `ponte journal archive --to` wrote.")
@click.option("--journal-name", "journal_names", multiple=True,
              help="Only these journals (default: every journal the directory holds).")
def journal_restore(postgres_dsn, archive_dir, journal_names) -> None:
    """Put archived records back into the journal table (migrations applied first), so
    the journal reads from the genesis again: for each journal, every archived record
    before the table's first one, verified on the chain and joined to that row, in one
    transaction (all or nothing). Restored rows carry epoch 0. Exit 1 on any mismatch."""
    import asyncio

    with _journal_errors("restore"):
        report = asyncio.run(_restore(postgres_dsn, archive_dir, list(journal_names)))
    for name, count in sorted(report.restored.items()):
        click.echo(f"restored {count} records of journal {name}")
    for name in report.complete:
        click.echo(f"journal {name} lacked nothing")


async def _restore(postgres_dsn, archive_dir, journal_names):
    from ledger.journal_archive import ArchiveRefused, archive_journals, restore_archive
    from switch.store.migrate import migrate_dsn

    if not archive_journals(archive_dir):  # refused before the database is touched
        raise ArchiveRefused(f"{archive_dir} holds no journal's segments (expected "
                             f"<journal name>/seg-*.journal.xz, as `ponte journal archive` "
                             f"writes them)")
    await migrate_dsn(postgres_dsn)
    return await restore_archive(postgres_dsn, archive_dir, names=journal_names or None)


@journal.command("partitions")
@click.option("--postgres-dsn", required=True)
@click.option("--records", "partition_records", default=None,
              type=click.IntRange(journal_limits.JOURNAL_PARTITION_RECORDS_MIN,
                                  journal_limits.JOURNAL_PARTITION_RECORDS_MAX),
              help="Set the size (records, i.e. ticks) of partitions made from now on.")
def journal_partitions(postgres_dsn, partition_records) -> None:
    """The PostgreSQL journal's partitions: sequence range and rows per journal; with
    --records, the size of the partitions made from now on (existing ones keep theirs)."""
    import asyncio

    with _journal_errors("partitions"):
        asyncio.run(_partitions(postgres_dsn, partition_records))


async def _partitions(postgres_dsn, partition_records) -> None:
    from ledger.journal_archive import list_partitions
    from ledger.journal_postgres import _connect, _require_schema

    connection = await _connect(postgres_dsn)
    try:
        await _require_schema(connection)
        if partition_records is not None:
            await connection.execute(
                "UPDATE ledger_journal_settings SET journal_partition_records = $1",
                partition_records)
        size = await connection.fetchval(
            "SELECT journal_partition_records FROM ledger_journal_settings")
        click.echo(f"journal_partition_records {size}")
        for partition in await list_partitions(connection):
            rows = ", ".join(f"{name} {r.first_sequence}..{r.last_sequence}"
                             for name, r in partition.journals.items()) or "empty"
            click.echo(f"{partition.name} {partition.first_sequence}.."
                       f"{partition.end_sequence - 1}: {rows}")
    finally:
        await connection.close()


def _readable(value):
    """An event as nested dicts with field names (events are array-like on disk)."""
    import enum

    import msgspec

    if isinstance(value, msgspec.Struct):
        return {name: _readable(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [_readable(item) for item in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


COMMANDS = [run, participant, currency, demo, journal]
