"""`ponte directory ...`: operator commands for the alias directory (bulk import).

The import writes exactly where the switch reads: it takes the switch's own configuration
(`--config`, `PONTE_*`, `--data-dir`, `--postgres-dsn`, as `ponte run` does) and opens the
switch's directory store (the data directory's SQLite file, or PostgreSQL) with the
switch's directory secret (configured, or the data directory's secrets.json). It refuses to
run when it cannot find them, rather than write a directory the switch would never read
or tokens it could never match. It never prints the secret; a refused row is reported by
row number, result and field, never by its values (they may hold national IDs).
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import time
from typing import Iterator

import click

from switch.directory import limits
from switch.directory.types import (
    AliasType,
    DirectoryResult,
    OwnerKind,
    RegisterAlias,
    Rejection,
)

CSV_COLUMNS = ("alias_type", "alias_value", "participant_id", "account_ref",
               "owner_national_id", "owner_kind", "display_name")
_REJECTIONS_PRINTED_MAX = 20


def _enum_field(value: str, enum) -> int:
    """A member by name ("MSISDN") or number ("1"); -1 when it is neither."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    member = enum.__members__.get(value.upper())
    return -1 if member is None else int(member)


def parse_rows(handle) -> Iterator[RegisterAlias | Rejection]:
    csv.field_size_limit(limits.IMPORT_LINE_BYTES_MAX)
    reader = csv.DictReader(handle)
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise click.UsageError(f"CSV header lacks column(s): {', '.join(missing)}")
    for row in reader:
        if None in row:  # more cells than header columns
            yield Rejection(result=DirectoryResult.FIELD_MALFORMED, field="row")
            continue
        participant_id = row["participant_id"] or ""
        if participant_id and not (participant_id.isascii() and participant_id.isdigit()):
            # The switch names participants by number (`gateway.directory_participant_id`):
            # an alias held by any other name could never be resolved to a participant.
            yield Rejection(result=DirectoryResult.FIELD_MALFORMED, field="participant_id")
            continue
        yield RegisterAlias(
            alias_type=_enum_field(row["alias_type"] or "", AliasType),
            alias_value=row["alias_value"] or "",
            participant_id=participant_id,
            account_ref=row["account_ref"] or "",
            owner_national_id=row["owner_national_id"] or "",
            owner_kind=_enum_field(row["owner_kind"] or "PERSON", OwnerKind),
            display_name=row["display_name"] or "",
        )


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


class SwitchDirectory:
    """Where the switch keeps its directory, and the secret of its identity tokens."""

    def __init__(self, config, secret, postgres_dsn: str | None, embedded_path: str) -> None:
        self.config = config  # switch.server.config.ServerConfig
        self.secret = secret  # switch.directory.config.Secret
        self.postgres_dsn = postgres_dsn
        self.embedded_path = embedded_path


def switch_directory(config_path: str | None, data_dir: str | None,
                     postgres_dsn: str | None) -> SwitchDirectory:
    """The switch's directory store and secret, read as `ponte run` reads them (defaults <
    file < PONTE_* < options); click.UsageError when they cannot be found."""
    import msgspec

    from switch.directory.config import Secret
    from switch.server.config import load_config
    from switch.app import DIRECTORY_FILE
    from switch.server.server import SECRETS_FILE, ServerSecrets

    overrides = {"data_dir": data_dir}
    if postgres_dsn:
        overrides.update(postgres_dsn=postgres_dsn, store="postgres")
    try:
        config = load_config(config_path, **overrides)
    except (msgspec.ValidationError, ValueError, OSError) as error:
        raise click.UsageError(f"configuration: {error}") from None
    secrets_path = os.path.join(config.data_dir, SECRETS_FILE)
    if config.directory_secret:  # the switch's own setting (PONTE_DIRECTORY_SECRET)
        value = config.directory_secret.reveal()
    elif os.path.isfile(secrets_path):
        try:
            with open(secrets_path, "rb") as handle:
                value = msgspec.json.decode(handle.read(), type=ServerSecrets).directory_secret
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as error:
            raise click.UsageError(f"cannot read {secrets_path}: {error}") from None
    else:
        raise click.UsageError(
            f"no directory secret: {secrets_path} does not exist. Point --data-dir (or "
            f"--config) at the switch's data directory; the switch creates its secrets at "
            f"its first start (`ponte run`), or set directory_secret "
            f"(PONTE_DIRECTORY_SECRET) as the switch has it.")
    try:
        secret = Secret(value.encode())
    except ValueError as error:
        raise click.UsageError(f"directory secret: {error}") from None
    if config.store == "postgres":
        return SwitchDirectory(config, secret, config.postgres_dsn.reveal(), "")
    if not os.path.isdir(config.data_dir):
        raise click.UsageError(f"{config.data_dir} is not a directory: point --data-dir at "
                               f"the switch's data directory")
    return SwitchDirectory(config, secret, None, os.path.join(config.data_dir, DIRECTORY_FILE))


@click.group()
def directory() -> None:
    """Alias directory: bulk import."""


@directory.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="The switch's TOML file (as for `ponte run`): its data_dir, "
                                 "store, postgres_dsn, directory_secret and [directory] "
                                 "rules. PONTE_* variables override it.")
@click.option("--data-dir", default=None,
              help="The switch's data directory: its directory.sqlite3 and secrets.json.")
@click.option("--postgres-dsn", default=None,
              help="The switch's PostgreSQL store (as `ponte run --postgres-dsn`); the "
                   "secret still comes from the data directory or the configuration.")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False), default=None,
              help="Write refused rows here as CSV: row,result,field (no values).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def import_command(csv_path, config_path, data_dir, postgres_dsn, rejects_path, quiet):
    """Register the aliases in CSV_PATH into the switch's directory (header: alias_type,
    alias_value, participant_id, account_ref, owner_national_id, owner_kind,
    display_name; participant_id is the switch's participant number). Each row gets the
    checks of a single registration; RANDOM rows leave alias_value empty and get a key
    issued. Exits 1 if any row was refused, 2 if the switch's store cannot be found."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeRemainingColumn

    from switch.directory.backends import open_directory

    target = switch_directory(config_path, data_dir, postgres_dsn)
    config = target.config.directory
    total_rows = max(0, _count_lines(csv_path) - 1)

    async def run(progress, task):
        async with open_directory(config=config, secret=target.secret,
                                  postgres_dsn=target.postgres_dsn,
                                  embedded_path=target.embedded_path) as service:
            with open(csv_path, newline="", encoding="utf-8") as handle:
                # The operator's load: no participant asked, so no bucket is charged.
                return await service.bulk_import(
                    parse_rows(handle), time.time_ns(),
                    on_rows=(lambda n: progress.advance(task, n)) if progress else None,
                    charge_buckets=False,
                )

    if quiet:
        summary = asyncio.run(run(None, None))
    else:
        columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, transient=False) as progress:
            task = progress.add_task("import", total=total_rows)
            summary = asyncio.run(run(progress, task))

    click.echo(f"rows {summary.rows}  registered {summary.registered}  "
               f"already registered {summary.existing}  refused {summary.rejected}")
    for row, rejection in summary.rejections[:_REJECTIONS_PRINTED_MAX]:
        click.echo(f"  row {row}: {rejection.result.name} field={rejection.field}")
    if summary.rejected > _REJECTIONS_PRINTED_MAX:
        click.echo(f"  ... {summary.rejected - _REJECTIONS_PRINTED_MAX} more"
                   + ("" if rejects_path else " (use --rejects FILE for all)"))
    if rejects_path:
        with open(rejects_path, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["row", "result", "field"])
            for row, rejection in summary.rejections:
                writer.writerow([row, rejection.result.name, rejection.field])
    if summary.rejected:
        sys.exit(1)
