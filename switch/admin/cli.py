"""`ponte admin ...`: bootstrap the first operator and check the audit chain, from a shell on
the switch's host (no HTTP, no session: whoever can run this can read the store anyway).

The store is the server's: `admin.sqlite3` in the data directory (embedded), or the
PostgreSQL database (`--postgres-dsn`, after `ponte db migrate`). Both commands write an
audit record / read the whole chain; neither prints a password or a hash.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path

import click

ADMIN_DB_NAME = "admin.sqlite3"


def embedded_path(data_dir: str) -> str:
    return str(Path(data_dir) / ADMIN_DB_NAME)


async def open_store(data_dir: str, postgres_dsn: str | None):
    if postgres_dsn:
        from switch.store.admin_postgres import PostgresAdminStore

        return await PostgresAdminStore.connect(postgres_dsn)
    from switch.store.admin_embedded import EmbeddedAdminStore

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return EmbeddedAdminStore(embedded_path(data_dir))


def _store_options(function):
    function = click.option("--postgres-dsn", envvar="PONTE_POSTGRES_DSN", default=None,
                            help="Use the PostgreSQL store (migrated with `ponte db migrate`).")(
        function)
    function = click.option("--data-dir", envvar="PONTE_DATA_DIR", default="./ponte-data",
                            show_default=True,
                            help="The server's data directory (embedded store).")(function)
    return function


@click.group()
def admin() -> None:
    """Operators and the audit log."""


@admin.command("create-user")
@_store_options
@click.option("--username", required=True, help="Lower-case handle, e.g. alice.")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), default="admin",
              show_default=True)
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin (scripts).")
def create_user(data_dir: str, postgres_dsn: str | None, username: str, role: str,
                password_stdin: bool) -> None:
    """Create an operator (the first admin, typically). Prompts for the password."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise click.ClickException("the two passwords differ")
    from switch.admin.service import AdminService, Caller
    from switch.admin.types import AdminRefusal, Role, UserCreate

    import msgspec

    try:
        body = msgspec.convert({"username": username, "password": password, "role": role},
                               UserCreate)
    except msgspec.ValidationError as error:
        raise click.ClickException(f"VALIDATION_ERROR: {error}") from None

    async def run() -> None:
        store = await open_store(data_dir, postgres_dsn)
        try:
            service = AdminService(store, switch=None)  # type: ignore[arg-type]
            caller = Caller(f"cli:{getpass.getuser()}", Role.ADMIN, f"local:{os.getpid()}")
            await service.create_user(caller, body)
        finally:
            await store.close()

    try:
        asyncio.run(run())
    except AdminRefusal as refusal:
        raise click.ClickException(f"{refusal.result.name}: {refusal.detail}") from None
    click.echo(f"created {role} {username}")


@admin.command("verify-audit")
@_store_options
def verify_audit(data_dir: str, postgres_dsn: str | None) -> None:
    """Walk the audit hash chain from the first record; name the first broken one.
    Exit status 0 when intact, 1 when broken."""
    from switch.admin.audit import verify_chain_async
    from switch.admin import limits

    async def run():
        store = await open_store(data_dir, postgres_dsn)
        try:
            result = await verify_chain_async(store.iter_audit(limits.AUDIT_VERIFY_BATCH))
            head = await store.audit_head()
            return result, head
        finally:
            await store.close()

    result, (head_seq, head_hash) = asyncio.run(run())
    if result.ok:
        click.echo(f"audit chain intact: {result.records_checked} records, head #{head_seq} "
                   f"{head_hash.hex()}")
        return
    click.echo(f"audit chain BROKEN at record {result.first_broken_seq}: {result.reason} "
               f"({result.records_checked} records verified before it)", err=True)
    sys.exit(1)
