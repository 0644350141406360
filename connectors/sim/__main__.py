"""`python -m connectors.sim run ...` (same as `ponte sim run ...`)."""

from connectors.sim.cli import sim

if __name__ == "__main__":
    sim(prog_name="python -m connectors.sim")
