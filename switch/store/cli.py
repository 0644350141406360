"""`ponte db ...`: schema management for the PostgreSQL backend."""

from __future__ import annotations

import asyncio

import click

DSN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"


@click.group()
def db() -> None:
    """PostgreSQL schema: migrations."""


@db.command()
@click.option("--postgres-dsn", envvar="PONTE_POSTGRES_DSN", default=DSN_DEFAULT,
              show_default=True, help="PostgreSQL connection string.")
def migrate(postgres_dsn: str) -> None:
    """Apply the numbered SQL migrations that have not run yet."""
    from switch.store.migrate import migrate_dsn

    applied = asyncio.run(migrate_dsn(postgres_dsn))
    if applied:
        click.echo("applied migrations: " + ", ".join(f"{v:04d}" for v in applied))
    else:
        click.echo("schema is up to date")
