"""End-to-end fixtures: a switch process and a simulator process on this box, real sockets,
a real fsync'd journal. Every process started here is stopped, whatever the test did."""

from __future__ import annotations

import os

import pytest

from switch.launcher import SimProcess, SwitchProcess, onboard_population, sim_server_config

from e2e_helpers import FUNDING_MINOR, NAMES_KINDS, PROFILE  # noqa: F401


class Rig:
    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir
        self.processes: list = []

    def switch(self, **extra) -> SwitchProcess:
        process = SwitchProcess(sim_server_config(os.path.join(self.work_dir, "switch"), **extra))
        self.processes.append(process)
        return process.start()

    def onboard(self, switch: SwitchProcess, rules: dict | None = None) -> dict:
        return onboard_population(switch, NAMES_KINDS, "KES", 404, FUNDING_MINOR, rules)

    def sims(self, switch: SwitchProcess, credentials: dict, **run) -> SimProcess:
        config = {
            "port": switch.stream_port,
            "participants": [{"name": name, "api_key": c["api_key"],
                              "opening_position_minor": FUNDING_MINOR}
                             for name, c in credentials.items()],
            "profile": PROFILE, "stats_interval_s": 0.5, "drain_timeout_s": 60.0,
        }
        config.update(run)
        process = SimProcess(config, self.work_dir, name=f"sims{len(self.processes)}")
        self.processes.append(process)
        return process.start()

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


@pytest.fixture
def rig(tmp_path):
    rig = Rig(str(tmp_path))
    yield rig
    rig.close()
