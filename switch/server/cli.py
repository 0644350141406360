"""`ponte run`, `ponte participant ...`, `ponte currency ...` and `ponte demo`.

`ponte run` starts a switch process. The onboarding commands talk to a running switch's
admin surface (`--admin-url`, token from `--admin-token`, `PONTE_ADMIN_TOKEN`, or the
data directory's secrets.json), so every change is a journaled core event. An API key is
printed once, when issued; it is never stored in plain text anywhere.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import click

from connectors.sim import limits as sim_limits

ADMIN_URL_DEFAULT = "http://127.0.0.1:7480"


@click.command("run")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="TOML file ([server] table or top level); PONTE_* variables override it.")
@click.option("--data-dir", default=None, help="Journal, embedded stores and secrets.")
@click.option("--postgres-dsn", default=None,
              help="Journal, directory and credentials in PostgreSQL (migrations applied).")
@click.option("--redis-url", default=None, help="Directory cache and buckets in Redis.")
@click.option("--stream-port", type=int, default=None)
@click.option("--admin-port", type=int, default=None)
@click.option("--log-level", default="INFO", show_default=True)
def run(config_path, data_dir, postgres_dsn, redis_url, stream_port, admin_port,
        log_level) -> None:
    """Run the switch until SIGINT/SIGTERM, then shut down gracefully."""
    import logging

    import msgspec
    import uvloop

    from switch.app import serve
    from switch.server.config import load_config
    from switch.server.server import StartRefused

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    overrides = {"data_dir": data_dir, "stream_port": stream_port, "admin_port": admin_port,
                 "redis_url": redis_url}
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


def _token(admin_token: str | None, data_dir: str | None) -> str:
    if admin_token:
        return admin_token
    if data_dir:
        path = os.path.join(data_dir, "secrets.json")
        try:
            with open(path) as file:
                return json.load(file)["admin_token"]
        except (OSError, KeyError, ValueError) as error:
            raise click.UsageError(f"no admin token in {path}: {error}") from None
    raise click.UsageError("give --admin-token, PONTE_ADMIN_TOKEN or --data-dir")


def admin_request(url: str, token: str, method: str, path: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read())
        except ValueError:
            detail = {"name": error.reason}
        raise click.ClickException(
            f"{error.code}: {detail.get('name')} {detail.get('detail', '')}".strip()) from None
    except urllib.error.URLError as error:
        raise click.ClickException(f"cannot reach the switch at {url}: {error.reason}") from None


_admin_options = [
    click.option("--admin-url", envvar="PONTE_ADMIN_URL", default=ADMIN_URL_DEFAULT,
                 show_default=True),
    click.option("--admin-token", envvar="PONTE_ADMIN_TOKEN", default=None),
    click.option("--data-dir", default=None, help="Read the admin token from its secrets.json."),
]


def admin_options(function):
    for option in reversed(_admin_options):
        function = option(function)
    return function


@click.group()
def participant() -> None:
    """Onboard banks and wallets on a running switch."""


@participant.command("add")
@click.argument("name")
@click.option("--kind", type=click.Choice(["bank", "wallet"]), required=True)
@click.option("--currency", "currencies", multiple=True, required=True)
@click.option("--callback-url", default="")
@click.option("--funding-minor", type=int, default=0, help="Prefunded currencies.")
@click.option("--net-debit-cap-minor", type=int, default=0, help="Deferred-net currencies.")
@admin_options
def participant_add(name, kind, currencies, callback_url, funding_minor, net_debit_cap_minor,
                    admin_url, admin_token, data_dir) -> None:
    """Create a participant and print its first API key (shown once)."""
    created = admin_request(admin_url, _token(admin_token, data_dir), "POST",
                            "/admin/participants", {
                                "name": name, "kind": kind, "currencies": list(currencies),
                                "callback_url": callback_url, "funding_minor": funding_minor,
                                "net_debit_cap_minor": net_debit_cap_minor})
    click.echo(f"participant_id={created['participant_id']} name={created['name']}")
    click.echo(f"api_key={created['api_key']}")
    click.echo("(the API key is shown once: store it now)", err=True)


@participant.command("list")
@click.option("--json", "as_json", is_flag=True)
@admin_options
def participant_list(as_json, admin_url, admin_token, data_dir) -> None:
    """Participants, their status and ledger positions."""
    rows = admin_request(admin_url, _token(admin_token, data_dir), "GET", "/admin/participants")
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        positions = ", ".join(
            f"{currency}: {b['credits_posted'] - b['debits_posted']} "
            f"(pending {b['debits_pending']})" for currency, b in row["accounts"].items())
        click.echo(f"{row['participant_id']:>5} {row['name']:<24} {row['kind']:<7} "
                   f"{row['status']:<10} {positions}")


@participant.command("key")
@click.argument("participant_id", type=int)
@click.option("--revoke-others", is_flag=True, help="Revoke every earlier key.")
@admin_options
def participant_key(participant_id, revoke_others, admin_url, admin_token, data_dir) -> None:
    """Issue a new API key (shown once)."""
    answer = admin_request(admin_url, _token(admin_token, data_dir), "POST",
                           f"/admin/participants/{participant_id}/keys",
                           {"revoke_others": revoke_others})
    click.echo(f"api_key={answer['api_key']}")


@click.group()
def currency() -> None:
    """Currencies the scheme carries."""


@currency.command("add")
@click.argument("code")
@click.option("--ledger-id", type=int, required=True, help="ISO 4217 numeric code.")
@click.option("--settlement-model", type=click.Choice(["prefunded_rtgs", "deferred_net"]),
              default="prefunded_rtgs", show_default=True)
@admin_options
def currency_add(code, ledger_id, settlement_model, admin_url, admin_token, data_dir) -> None:
    admin_request(admin_url, _token(admin_token, data_dir), "POST", "/admin/currencies",
                  {"currency": code, "ledger_id": ledger_id,
                   "settlement_model": settlement_model})
    click.echo(f"currency {code} added")


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
    from switch.server.demo import run_demo

    raise SystemExit(run_demo(seconds=seconds, tps=tps, seed=seed, reject_rate=reject_rate,
                              keep_data=keep_data))


COMMANDS = [run, participant, currency, demo]
