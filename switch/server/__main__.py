"""`python -m switch.server run --config FILE` (same as `ponte run`). Only dispatches to
switch/server/cli.py; it must never hold logic of its own."""

import click

from switch.server.cli import run


@click.group()
def main() -> None:
    """The switch server."""


main.add_command(run)

if __name__ == "__main__":
    main(prog_name="python -m switch.server")
