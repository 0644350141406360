"""`ponte directory ...`: operator commands for the alias directory (bulk import).

Reads the scheme secret from PONTE_DIRECTORY_SECRET and never prints it; a refused row is
reported by row number, result and field, never by its values (they may hold national IDs).
"""

from __future__ import annotations

import asyncio
import csv
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import click

from switch.directory import limits
from switch.directory.backends import EMBEDDED_PATH_DEFAULT
from switch.directory.types import (
    AliasType,
    DirectoryResult,
    OwnerKind,
    RegisterAlias,
    Rejection,
)

SECRET_ENV = "PONTE_DIRECTORY_SECRET"
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
        yield RegisterAlias(
            alias_type=_enum_field(row["alias_type"] or "", AliasType),
            alias_value=row["alias_value"] or "",
            participant_id=row["participant_id"] or "",
            account_ref=row["account_ref"] or "",
            owner_national_id=row["owner_national_id"] or "",
            owner_kind=_enum_field(row["owner_kind"] or "PERSON", OwnerKind),
            display_name=row["display_name"] or "",
        )


def _count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def _secret():
    from switch.directory.config import Secret

    value = os.environ.get(SECRET_ENV, "")
    if not value:
        raise click.UsageError(f"set {SECRET_ENV} to the scheme secret (at least "
                               f"{limits.SCHEME_SECRET_BYTES_MIN} bytes)")
    try:
        return Secret(value.encode())
    except ValueError as error:
        raise click.UsageError(str(error)) from None


@click.group()
def directory() -> None:
    """Alias directory: bulk import."""


@directory.command("import")
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--postgres-dsn", envvar="PONTE_POSTGRES_DSN", default=None,
              help="Import into PostgreSQL (migrations are applied) instead of the embedded "
                   "store.")
@click.option("--embedded", "embedded_path", default=EMBEDDED_PATH_DEFAULT, show_default=True,
              help="Embedded store file, used when no PostgreSQL DSN is given.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="TOML file with a [directory] table.")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False), default=None,
              help="Write refused rows here as CSV: row,result,field (no values).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def import_command(csv_path, postgres_dsn, embedded_path, config_path, rejects_path, quiet):
    """Register the aliases in CSV_PATH (header: alias_type, alias_value, participant_id,
    account_ref, owner_national_id, owner_kind, display_name). Each row gets the checks of
    a single registration; RANDOM rows leave alias_value empty and get a key issued."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeRemainingColumn

    from switch.directory.backends import open_directory
    from switch.directory.config import load_config

    secret = _secret()
    config = load_config(Path(config_path).read_bytes() if config_path else None)
    total_rows = max(0, _count_lines(csv_path) - 1)

    async def run(progress, task):
        async with open_directory(config=config, secret=secret, postgres_dsn=postgres_dsn,
                                  embedded_path=embedded_path) as service:
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
