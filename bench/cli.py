"""`ponte bench ...`: measured figures for every part of Ponte, as JSON and reports.

Each subcommand lives in its own module beside this one and is added here.
"""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Benchmarks: ledger, core, directory, end-to-end, G2P, settlement. Use --json for
    machine output."""


from bench.core_bench import core_command  # noqa: E402
from bench.directory_bench import directory_command  # noqa: E402
from bench.e2e_bench import e2e_command  # noqa: E402
from bench.g2p_bench import g2p_command  # noqa: E402
from bench.instructions_bench import instructions_command  # noqa: E402
from bench.iso20022_bench import iso20022_command  # noqa: E402
from bench.e2e_mobilemoney import mobilemoney_command  # noqa: E402
from bench.flood_bench import flood_command  # noqa: E402
from bench.fspiop_bench import fspiop_command  # noqa: E402
from bench.ledger_bench import ledger_command  # noqa: E402 - registered after the group
from bench.locust.command import locust_command  # noqa: E402
from bench.recovery_bench import recovery_command  # noqa: E402
from bench.soak_bench import soak_command  # noqa: E402
from bench.settlement_bench import settlement_command  # noqa: E402
from bench.step_bench import step_command  # noqa: E402

bench.add_command(ledger_command)
bench.add_command(core_command)
bench.add_command(instructions_command)
bench.add_command(directory_command)
bench.add_command(e2e_command)
bench.add_command(g2p_command)
bench.add_command(mobilemoney_command)
bench.add_command(fspiop_command)
bench.add_command(soak_command)
bench.add_command(step_command)
bench.add_command(locust_command)
bench.add_command(iso20022_command)
bench.add_command(settlement_command)
bench.add_command(recovery_command)
bench.add_command(flood_command)
