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

    from switch.app import serve
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
    """The switch's journal offline: verify the chain and the snapshots, print records."""


def _offline_config(config_path, data_dir, postgres_dsn):
    import msgspec

    from switch.server.config import load_config

    overrides = {"data_dir": data_dir}
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
]


def _with_journal_options(command):
    for option in reversed(_journal_options):
        command = option(command)
    return command


@journal.command("verify")
@_with_journal_options
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
def journal_verify(config_path, data_dir, postgres_dsn, as_json) -> None:
    """Verify the journal's hash chain end to end (every segment, archived ones included,
    or every PostgreSQL row), check each snapshot against the chain, rebuild the core from
    the newest usable snapshot and the records after it, check the ledger's invariants,
    and print the head hash (publish it outside the system). Exit 1 on any problem."""
    import asyncio

    from ledger.journal_format import JournalCorrupt

    config = _offline_config(config_path, data_dir, postgres_dsn)
    try:
        if config.journal == "postgres":
            report = asyncio.run(_verify_postgres(config))
        else:
            report = _verify_files(config)
    except JournalCorrupt as error:
        click.echo(f"journal damaged: {error} (sequence {error.sequence}, offset "
                   f"{error.offset}): {error.detail}", err=True)
        raise SystemExit(1) from None
    except AssertionError as error:
        click.echo(f"ledger invariants broken after replay: {error}", err=True)
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"records {report['records']}  head sequence {report['head_sequence']}")
        click.echo(f"head hash {report['head_hash']}")
        for snapshot in report["snapshots"]:
            verdict = "ok" if not snapshot["problem"] else f"PROBLEM: {snapshot['problem']}"
            click.echo(f"snapshot {snapshot['path']} sequence {snapshot['sequence']}: {verdict}")
        click.echo("ledger invariants ok" if report["invariants"] else "no core rebuilt")
    if any(snapshot["problem"] for snapshot in report["snapshots"]):
        raise SystemExit(1)


def _verify_files(config) -> dict:
    from switch.server.offline import verify_file_journal

    state = verify_file_journal(config)
    return {
        "records": state.records, "head_sequence": state.head.sequence,
        "head_hash": state.head.record_hash.hex(), "segments": state.segments,
        "archived_segments": state.archived_segments, "rebuilt_from": state.rebuilt_from,
        "invariants": state.core is not None,
        "snapshots": [{"path": c.path, "sequence": c.sequence, "problem": c.problem}
                      for c in state.snapshots],
    }


async def _verify_postgres(config) -> dict:
    import asyncpg

    from ledger.journal_format import GENESIS, JournalPosition
    from ledger.journal_postgres import _verified_records

    connection = await asyncpg.connect(config.postgres_dsn.reveal())
    try:
        head = GENESIS
        records = 0
        async for record in _verified_records(connection, config.journal_name, GENESIS):
            records += 1
            head = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
    finally:
        await connection.close()
    return {"records": records, "head_sequence": head.sequence,
            "head_hash": head.record_hash.hex(), "segments": 0, "archived_segments": 0,
            "rebuilt_from": 0, "invariants": False, "snapshots": []}


@journal.command("inspect")
@_with_journal_options
@click.option("--from", "from_sequence", type=click.IntRange(min=1), default=1,
              show_default=True, help="First record to print.")
@click.option("--count", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
def journal_inspect(config_path, data_dir, postgres_dsn, from_sequence, count) -> None:
    """Print journal records for an auditor: sequence, time, hash, and each event as JSON
    (verified as they are read; national IDs appear only as identity tokens)."""
    import datetime

    import msgspec

    from ledger.journal_format import GENESIS
    from switch.server.journal import decode_tick
    from switch.server.offline import file_records

    config = _offline_config(config_path, data_dir, postgres_dsn)
    if config.journal == "postgres":
        raise click.UsageError("inspect reads the file journal; for PostgreSQL use "
                               "`ponte journal verify --postgres-dsn` and SQL")
    printed = 0
    for record in file_records(config.data_dir, GENESIS):
        if record.sequence < from_sequence:
            continue
        when = datetime.datetime.fromtimestamp(record.now_ns / 1e9, datetime.timezone.utc)
        click.echo(f"#{record.sequence} {when:%Y-%m-%dT%H:%M:%S.%fZ} "
                   f"hash={record.record_hash.hex()[:16]}")
        for _now_ns, event in decode_tick(record):
            click.echo(f"  {type(event).__name__} {msgspec.json.encode(_readable(event)).decode()}")
        printed += 1
        if printed >= count:
            break


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
