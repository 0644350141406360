"""End-to-end fixtures: a switch process and a simulator process on this box, real sockets,
a real fsync'd journal. Every process started here is stopped, whatever the test did."""

from __future__ import annotations

import os

import msgspec
import pytest

from connectors.sim.books import BooksReport, reconcile
from switch.server.launcher import SimProcess, SwitchProcess, onboard_population, sim_server_config

PROFILE = os.path.join(os.path.dirname(__file__), "small.toml")
NAMES_KINDS = [("bank_a", "bank"), ("bank_b", "bank"), ("wallet_a", "wallet"),
               ("wallet_b", "wallet")]
FUNDING_MINOR = 10**14
RULES_FAST_TIMEOUT = {"payee_timeout_ms": 400}


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


def assert_books_reconcile(switch: SwitchProcess, final: dict) -> None:
    positions = switch.positions()
    differences = []
    for books in final["books"]:
        report = msgspec.convert(books, BooksReport)
        assert report.in_flight_out == 0, report
        differences.extend(reconcile(report, positions[report.participant_id]["accounts"]["KES"]))
    assert differences == []
