"""`python -m connectors.sim run ...` (same as `ponte sim run ...`). Only dispatches to
connectors/sim/cli.py; it must never hold logic of its own."""

from connectors.sim.cli import sim

if __name__ == "__main__":
    sim(prog_name="python -m connectors.sim")
