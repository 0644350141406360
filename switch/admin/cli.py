"""`ponte admin ...`: the operator's commands.

Two kinds. From a shell on the switch's host, on the admin store directly (no HTTP, no
session: whoever can run them can read the store anyway): `create-user` (the first
operators) and `verify-audit`. The store is the server's: `admin.sqlite3` in the data
directory (embedded), or the PostgreSQL database (`--postgres-dsn`, after `ponte db
migrate`); `verify-audit` also reads the switch's journal file (read-only) for the newest
audit anchor.

From anywhere that reaches the console, as a logged-in operator through its JSON API (the
same roles, maker-checker and audit as the web pages): `login`, `logout`, `proposals`,
`approve`, `reject`; `ponte participant ...` and `ponte currency ...` use the same session.
No command prints a password, a session token or a hash; an API key is printed only by the
`approve` that issued it.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path

import click

from switch.store.admin_store import open_admin_store


async def open_store(data_dir: str, postgres_dsn: str | None):
    return await open_admin_store(data_dir, postgres_dsn)


def _store_options(function):
    function = click.option("--postgres-dsn", envvar="PONTE_POSTGRES_DSN", default=None,
                            help="Use the PostgreSQL store (migrated with `ponte db migrate`).")(
        function)
    function = click.option("--data-dir", envvar="PONTE_DATA_DIR", default="./ponte-data",
                            show_default=True,
                            help="The server's data directory (embedded store).")(function)
    return function


# -- the operator API session (switch/admin/client.py) ---------------------------------------


def session_option(function):
    return click.option(
        "--session-file", envvar="PONTE_SESSION_FILE", show_default=True,
        default=None, help="Where `ponte admin login` keeps the session (mode 0600; "
                           "default ~/.config/ponte/session.json).")(function)


def _session_path(session_file: str | None) -> str:
    from switch.admin.client import SESSION_FILE_DEFAULT

    return session_file or SESSION_FILE_DEFAULT


def operator(session_file: str | None):
    """The saved operator session (ClickException when there is none)."""
    from switch.admin.client import OperatorApiError, OperatorClient

    try:
        return OperatorClient.load(_session_path(session_file))
    except OperatorApiError as error:
        raise click.ClickException(str(error)) from None


def api(call, *args, **kwargs):
    """Run one API call; a refusal exits non-zero with its typed result."""
    from switch.admin.client import OperatorApiError

    try:
        return call(*args, **kwargs)
    except OperatorApiError as error:
        core = f" (switch result {error.core_result})" if error.core_result else ""
        raise click.ClickException(f"{error}{core}") from None


def propose(session_file: str | None, body: dict) -> dict:
    """Make a proposal and say who must check it."""
    from switch.admin.types import PROPOSAL_ROLES

    view = api(operator(session_file).propose, body)
    role = PROPOSAL_ROLES[view["kind"]].name.lower()
    click.echo(f"proposed {view['proposal_id']} ({view['kind']}): a different {role} "
               f"approves it with `ponte admin approve {view['proposal_id']}`")
    return view


@click.group()
def admin() -> None:
    """Operators, maker-checker approvals and the audit log."""


@admin.command("login")
@click.option("--url", envvar="PONTE_CONSOLE_URL", default="http://127.0.0.1:7490",
              show_default=True, help="The operator console (console_host:console_port).")
@click.option("--username", required=True)
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin (scripts).")
@click.option("--ca-file", default="", help="CA bundle for a console on HTTPS.")
@session_option
def login(url: str, username: str, password_stdin: bool, ca_file: str,
          session_file: str | None) -> None:
    """Log in as an operator; later commands use the saved session."""
    from switch.admin.client import OperatorClient

    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else getpass.getpass("password: "))
    client = api(OperatorClient.login, url, username, password, ca_file=ca_file)
    path = _session_path(session_file)
    client.save(path)
    click.echo(f"logged in as {username} at {client.url} (session in {path})")


@admin.command("logout")
@session_option
def logout(session_file: str | None) -> None:
    """End the saved session, on the console and on disk."""
    from switch.admin.client import OperatorClient

    client = operator(session_file)
    api(client.logout)
    OperatorClient.forget(_session_path(session_file))
    click.echo("logged out")


@admin.command("proposals")
@click.option("--state", "state", default="pending", show_default=True,
              type=click.Choice(["pending", "approved", "executed", "failed", "rejected",
                                 "expired", "all"]))
@click.option("--json", "as_json", is_flag=True)
@session_option
def proposals(state: str, as_json: bool, session_file: str | None) -> None:
    """Proposals, newest first (pending ones by default)."""
    import json

    rows = api(operator(session_file).get, "/api/admin/proposals",
               state="" if state == "all" else state)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        body = {k: v for k, v in row["body"].items() if k not in ("kind", "note")}
        click.echo(f"{row['proposal_id']}  {row['state']:<8} {row['kind']:<13} "
                   f"by {row['proposed_by']:<12} {json.dumps(body)}")


def _decide(proposal_id: str, approve: bool, note: str, session_file: str | None) -> None:
    view = api(operator(session_file).decide, proposal_id, approve, note)
    click.echo(f"{view['proposal_id']} {view['state']}"
               + (f": {view['detail']}" if view["detail"] else ""))
    if view.get("api_key"):
        click.echo(f"participant_id={view['participant_id']}")
        click.echo(f"api_key={view['api_key']}")
        click.echo("(the API key is shown once, to you: hand it to the participant now)",
                   err=True)
    if view["state"] == "failed":
        sys.exit(1)


@admin.command("approve")
@click.argument("proposal_id")
@click.option("--note", default="")
@session_option
def approve(proposal_id: str, note: str, session_file: str | None) -> None:
    """Approve another operator's proposal: it is carried out now. An onboarding or a key
    rotation prints the new API key, once."""
    _decide(proposal_id, True, note, session_file)


@admin.command("reject")
@click.argument("proposal_id")
@click.option("--note", default="")
@session_option
def reject(proposal_id: str, note: str, session_file: str | None) -> None:
    """Reject another operator's proposal: nothing changes."""
    _decide(proposal_id, False, note, session_file)


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
    """The newest audit anchor (`AuditAnchored`: seq, hex hash) the switch's file journal in
    `data_dir` holds — from its newest snapshot and the journal after it, read-only; None
    when there is no file journal or no anchor."""
    from switch.server.config import load_config
    from switch.server.offline import verify_file_journal

    if not (Path(data_dir) / "journal").is_dir() and not (Path(data_dir) / "switch.journal").exists():
        return None
    state = verify_file_journal(load_config(None, environ={}, data_dir=data_dir))
    return None if state.core is None else state.core.audit_anchor()


@admin.command("verify-audit")
@_store_options
@click.option("--journal/--no-journal", default=True, show_default=True,
              help="Also check the audit head anchored in the switch's journal file "
                   "(data_dir/journal: its newest snapshot and the segments after it; the "
                   "console's Verify checks it with any journal).")
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
