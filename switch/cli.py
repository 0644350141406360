"""The `ponte` command line: one entry point for operators, developers and testers.

Each group lives beside the code it drives (`bench/cli.py`, `switch/store/cli.py`); this
module only assembles them, so `ponte --help` lists what exists.
"""

from __future__ import annotations

import platform

import click

import switch


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(switch.__version__, prog_name="ponte")
def main() -> None:
    """Ponte: an open real-time payment switch.

    Start with `ponte version`, then see the README for the demo and the tests.
    """


@main.command()
def version() -> None:
    """Print versions and which ledger implementation is loaded."""
    import msgspec

    import ledger

    click.echo(f"ponte-switch {switch.__version__}")
    click.echo(f"python {platform.python_version()} ({platform.machine()})")
    click.echo(f"msgspec {msgspec.__version__}")
    if ledger.IMPLEMENTATION == "compiled":
        click.echo("ledger: compiled (Cython core ledger._core)")
    else:
        reason = ledger.COMPILED_IMPORT_ERROR or "PONTE_PURE_PYTHON=1"
        click.echo(f"ledger: pure-Python twin ({reason})")


def _register() -> None:
    from bench.cli import bench
    from switch.admin.cli import admin
    from switch.directory.cli import directory
    from switch.store.cli import db
    from switch.server.cli import COMMANDS as server_commands
    from switch.settlement.cli import settlement
    from connectors.sim.cli import sim

    main.add_command(db)
    main.add_command(bench)
    main.add_command(directory)
    main.add_command(admin)
    for command in server_commands:  # run, participant, currency, demo
        main.add_command(command)
    main.add_command(sim)
    main.add_command(settlement)


_register()

if __name__ == "__main__":
    main()
