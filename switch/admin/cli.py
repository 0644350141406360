"""`ponte admin ...`: bootstrap the first operator and check the audit chain, from a shell on
the switch's host (no HTTP, no session: whoever can run this can read the store anyway).

The store is the server's: `admin.sqlite3` in the data directory (embedded), or the
PostgreSQL database (`--postgres-dsn`, after `ponte db migrate`). Both commands write an
audit record / read the whole chain; neither prints a password or a hash. `verify-audit`
also reads the switch's journal file (read-only) for the newest audit anchor.
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


def journal_anchor(data_dir: str) -> tuple[int, str] | None:
    """The newest audit anchor (`AuditAnchored`: seq, hex hash) in the switch's journal file
    in `data_dir`, read-only; None when there is no file journal or no anchor in it."""
    from ledger.journal import read_records
    from switch.core.messages import AuditAnchored
    from switch.server.journal import decode_tick
    from switch.server.server import JOURNAL_FILE

    path = Path(data_dir) / JOURNAL_FILE
    if not path.exists():
        return None
    anchor = None
    for record in read_records(str(path)):
        for _now_ns, event in decode_tick(record):
            # The core refuses an anchor that goes back; journaled refusals are skipped.
            if type(event) is AuditAnchored and (anchor is None or event.audit_seq > anchor[0]):
                anchor = (event.audit_seq, event.audit_hash)
    return anchor


@admin.command("verify-audit")
@_store_options
@click.option("--journal/--no-journal", default=True, show_default=True,
              help="Also check the audit head anchored in the switch's journal file "
                   "(data_dir/switch.journal; the console's Verify checks it with any journal).")
def verify_audit(data_dir: str, postgres_dsn: str | None, journal: bool) -> None:
    """Walk the audit hash chain from the first record; name the first broken one. The chain
    must also reach the newest record anchored in the switch's journal with its hash, so
    records removed from its end are named too.
    Exit status 0 when intact, 1 when broken."""
    from switch.admin.audit import verify_chain_async
    from switch.admin import limits

    anchor = journal_anchor(data_dir) if journal else None

    async def run():
        store = await open_store(data_dir, postgres_dsn)
        try:
            result = await verify_chain_async(store.iter_audit(limits.AUDIT_VERIFY_BATCH),
                                              anchor)
            head = await store.audit_head()
            return result, head
        finally:
            await store.close()

    result, (head_seq, head_hash) = asyncio.run(run())
    anchored = (f", anchored #{anchor[0]} in the switch journal" if anchor is not None
                else ", no anchor in a switch journal file")
    if result.ok:
        click.echo(f"audit chain intact: {result.records_checked} records, head #{head_seq} "
                   f"{head_hash.hex()}{anchored}")
        return
    click.echo(f"audit chain BROKEN at record {result.first_broken_seq}: {result.reason} "
               f"({result.records_checked} records verified before it{anchored})", err=True)
    sys.exit(1)
