"""`ponte bench instructions`: the harness runs on this code, callgrind's totals repeat, and a
baseline that cannot run a case says so instead of a figure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import psutil
import pytest
from click.testing import CliRunner

from bench import instructions_bench
from bench.instructions_bench import CASES, CODE_DIR, HARNESS, collected, instructions_command

pytestmark = pytest.mark.slow

CORE = next(case for case in CASES if case.name == "core+codec")


@pytest.mark.parametrize("argv", [["switch", "30"], ["switch", "30", "history_enabled=false"],
                                  ["core", "core+codec", "fee", "50"]])
def test_the_harness_pays_and_says_how_many(argv):
    process = subprocess.run([sys.executable, str(HARNESS), *argv], cwd=CODE_DIR,
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert process.stdout.split() == ["done", argv[1] if argv[0] == "switch" else argv[-1]]


def test_a_harness_that_fails_exits_non_zero():
    process = subprocess.run([sys.executable, str(HARNESS), "switch", "5", "no_such_key=1"],
                             cwd=CODE_DIR, capture_output=True, text=True, timeout=120)
    assert process.returncode != 0 and "done" not in process.stdout


def test_the_total_is_read_from_callgrinds_summary():
    assert collected("==1== Events    : Ir\n==1== Collected : 123456789\n==1==\n") == 123456789
    with pytest.raises(instructions_bench.CountError):
        collected("valgrind: no such tool\n")


def test_callgrind_counts_repeat_and_grow_with_the_work():
    """The reason for the command: the same run twice gives (almost) the same count, and
    more transfers give more."""
    small = [instructions_bench.count(CODE_DIR, CORE, 100) for _ in range(2)]
    large = instructions_bench.count(CODE_DIR, CORE, 600)
    assert abs(small[0] - small[1]) <= small[0] * 0.002, small
    per_transfer = (large - small[0]) / 500
    assert 20_000 < per_transfer < 2_000_000, per_transfer


def test_a_case_the_baseline_cannot_run_is_named_not_measured(monkeypatch):
    """Only the lean switch case, on this code and on a 'baseline' that rejects its config
    keys (monkeypatched to fail the way an old checkout does)."""
    real_count = instructions_bench.count

    def count(code_dir, case, size):
        if code_dir != CODE_DIR:
            raise instructions_bench.CountError("exit 1: unknown config key history_enabled")
        return real_count(code_dir, case, size)

    monkeypatch.setattr(instructions_bench, "count", count)
    lean = next(case for case in CASES if case.name == "switch-lean")
    small_lean = instructions_bench.Case(lean.name, lean.what, lean.unit, lean.args,
                                         lean.sizes, (20, 60))
    monkeypatch.setattr(instructions_bench, "CASES", (small_lean,))
    outcome = CliRunner().invoke(instructions_command, [
        "--json", "--quick", "--baseline", str(CODE_DIR / "bench"), "--case", "switch-lean"])
    assert outcome.exit_code == 0, outcome.output
    (row,) = json.loads(outcome.output)["results"]
    assert row["instructions_per_item"] > 0
    assert row["baseline_instructions_per_item"] is None and row["ratio"] is None
    assert row["error"] == "baseline: exit 1: unknown config key history_enabled"


def test_a_failed_run_is_named_by_the_programs_error_not_valgrinds_summary():
    lean = next(case for case in CASES if case.name == "switch-lean")
    bad = instructions_bench.Case(lean.name, lean.what, lean.unit, ("switch", "no_such_key=1"),
                                  lean.sizes, lean.sizes_quick)
    with pytest.raises(instructions_bench.CountError, match="unknown field `no_such_key`"):
        instructions_bench.count(CODE_DIR, bad, 5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_command_and_every_run_it_started(signum):
    """valgrind, the harness's switch and the clients it execs run in a process group of
    their own: the command stops them all and exits 128 + the signal."""
    command = subprocess.Popen([sys.executable, "-m", "switch.cli", "bench", "instructions",
                                "--json", "--case", "switch"], cwd=CODE_DIR,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parent = psutil.Process(command.pid)
    deadline = time.monotonic() + 60
    descendants: list[psutil.Process] = []
    while time.monotonic() < deadline and not any(
            "clients" in " ".join(p.cmdline()) for p in descendants if p.is_running()):
        time.sleep(0.2)
        try:
            descendants = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            break
    assert any("valgrind" in " ".join(p.cmdline()) or "callgrind" in p.name()
               for p in descendants), [p.cmdline() for p in descendants]
    command.send_signal(signum)
    assert command.wait(60) == 128 + signum, command.stderr.read()
    _, alive = psutil.wait_procs(descendants, timeout=15)
    assert alive == []
