"""`ponte settlement ...`: settlement windows for scripts and operators, through the running
switch's console (its JSON API, logged in with `ponte admin login`). Reading is any
operator's; closing, confirming, aborting and scheduling are maker-checker proposals a
second operator approves with `ponte admin approve` (docs/settlement.md). Documents
(statements, RTGS instructions) are streamed to a file or stdout, a chunk at a time.
A command the console refuses exits non-zero with its typed result.
"""

from __future__ import annotations

import json
import re
import sys

import click

from switch.admin.cli import api, operator, propose, session_option

_note = click.option("--note", default="", help="Why (shown to the checker, audited).")
_CLOCK = re.compile(r"^(-?)(\d{1,2}):(\d{2})$")


def _clock_s(text: str, signed: bool = False) -> int:
    match = _CLOCK.match(text.strip())
    if match is None or (match.group(1) and not signed) or int(match.group(3)) > 59:
        raise click.BadParameter(f"not hh:mm: {text!r}")
    seconds = int(match.group(2)) * 3600 + int(match.group(3)) * 60
    return -seconds if match.group(1) else seconds


@click.group()
def settlement() -> None:
    """Settlement windows: list them, see their positions, download statements and RTGS
    instructions, post an RTGS answer, and propose closes, confirmations, aborts and
    cut-off schedules for a second operator to approve.

    Log in first with `ponte admin login`.
    """


@settlement.command("windows")
@click.option("--currency", default="", help="One currency only.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@session_option
def windows(currency, limit, as_json, session_file) -> None:
    """Windows, newest first: state, transfers, volume, fees, RTGS reference."""
    rows = api(operator(session_file).get, "/api/admin/settlement/windows",
               currency=currency, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        rtgs = row["rtgs_reference"] or (f"REJECTED {row['rtgs_failure']}"
                                         if row["rtgs_failure"] else "")
        click.echo(f"{row['window_id']:>8}  {row['currency']}  {row['state']:<18} "
                   f"transfers={row['transfers']:<9} volume_minor={row['volume_minor']:<14} "
                   f"fees_minor={row['fees_minor']:<10} {rtgs}")


@settlement.command("positions")
@click.argument("window_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@session_option
def positions(window_id, as_json, session_file) -> None:
    """A window's net positions (live while open) and bilateral matrix."""
    detail = api(operator(session_file).get, f"/api/admin/settlement/windows/{window_id}")
    if as_json:
        click.echo(json.dumps(detail, indent=2))
        return
    window = detail["window"]
    click.echo(f"window {window['window_id']} {window['currency']} {window['state']}: "
               f"{window['transfers']} transfers, fees {detail['hub_fees_minor']} minor; "
               f"positions + fees = {detail['net_sum_minor']}")
    for row in detail["positions"]:
        side = "pays in" if row["net_minor"] < 0 else "is paid"
        click.echo(f"  participant {row['participant_id']:>6} {row['name']:<24} "
                   f"net_minor={row['net_minor']:>16}  {side}")
    for row in detail["bilateral"]:
        click.echo(f"  {row['payer_participant_id']:>6} -> {row['payee_participant_id']:<6} "
                   f"{row['amount_minor']}")


@settlement.command("close")
@click.argument("currency")
@click.option("--window-id", type=int, default=0,
              help="The window you expect open (default: the open one now).")
@_note
@session_option
def close(currency, window_id, note, session_file) -> None:
    """Propose closing a currency's open window (a new one opens at once)."""
    if not window_id:
        rows = api(operator(session_file).get, "/api/admin/settlement/windows",
                   currency=currency, limit=1)
        if not rows or rows[0]["state"] != "open":
            raise click.ClickException(f"no open {currency} window")
        window_id = rows[0]["window_id"]
    propose(session_file, {"kind": "settlement_close", "currency": currency,
                           "window_id": window_id, "note": note})


@settlement.command("confirm")
@click.argument("window_id", type=int)
@click.option("--rtgs-reference", required=True, help="The RTGS's reference of the settlement.")
@_note
@session_option
def confirm(window_id, rtgs_reference, note, session_file) -> None:
    """Propose confirming that the RTGS settled a window."""
    propose(session_file, {"kind": "settlement_confirm", "window_id": window_id,
                           "rtgs_reference": rtgs_reference, "note": note})


@settlement.command("abort")
@click.argument("window_id", type=int)
@_note
@session_option
def abort(window_id, note, session_file) -> None:
    """Propose giving up a window's settlement (its positions roll into the open window)."""
    propose(session_file, {"kind": "settlement_abort", "window_id": window_id, "note": note})


@settlement.command("schedule")
@click.argument("currency")
@click.option("--every-hours", type=click.FloatRange(0, 168), default=0.0,
              help="Close every N hours from local midnight (0: not by interval).")
@click.option("--at", "cutoffs", multiple=True, help="A local cut-off time, hh:mm (repeat).")
@click.option("--utc-offset", default="00:00", show_default=True,
              help="Local time = UTC + this (hh:mm, e.g. -03:00).")
@_note
@session_option
def schedule(currency, every_hours, cutoffs, utc_offset, note, session_file) -> None:
    """Propose a currency's cut-off schedule (admin)."""
    propose(session_file, {
        "kind": "settlement_schedule", "currency": currency,
        "interval_s": round(every_hours * 3600),
        "cutoffs_s": sorted(_clock_s(c) for c in cutoffs),
        "utc_offset_s": _clock_s(utc_offset, signed=True), "note": note})


def _download(session_file, path: str, params: dict | None, output: str) -> None:
    client = operator(session_file)
    if output == "-":
        written = api(client.download, path, sys.stdout.buffer, params)
        sys.stdout.buffer.flush()
    else:
        with open(output, "wb") as file:
            written = api(client.download, path, file, params)
        click.echo(f"{output}: {written} bytes", err=True)


@settlement.command("statement")
@click.argument("window_id", type=int)
@click.argument("participant_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["camt053", "camt052", "csv"]),
              default="camt053", show_default=True)
@click.option("-o", "--output", default="-", show_default=True, help="A file, or - for stdout.")
@session_option
def statement(window_id, participant_id, fmt, output, session_file) -> None:
    """A participant's statement of a window (streamed)."""
    _download(session_file, f"/api/admin/settlement/windows/{window_id}/statements/"
                            f"{participant_id}", {"format": fmt}, output)


@settlement.command("instructions")
@click.argument("window_id", type=int)
@click.option("-o", "--output", default="-", show_default=True, help="A file, or - for stdout.")
@session_option
def instructions(window_id, output, session_file) -> None:
    """A window's RTGS instructions (pacs.009.001.08)."""
    _download(session_file, f"/api/admin/settlement/windows/{window_id}/instructions", None,
              output)


@settlement.command("rtgs-answer")
@click.argument("document", type=click.File("rb"))
@session_option
def rtgs_answer(document, session_file) -> None:
    """Post the RTGS's answer (a pacs.002.001.10 file, - for stdin): settles the window
    when every instruction settled; anything else is refused and changes nothing."""
    answer = api(operator(session_file).post_document, "/api/admin/settlement/rtgs",
                 document.read())
    click.echo(f"window {answer['window_id']} {answer['state']} "
               f"(RTGS reference {answer['rtgs_reference']})")
