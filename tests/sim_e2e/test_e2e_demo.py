"""`ponte demo` end to end: one command, no external service, clean exit, books reconcile,
and nothing of its own left behind — whether it ends by itself, by SIGTERM (what `timeout`,
`kill` and CI send) or is killed outright. Only the demo's own process tree is checked, so
another demo running on the same box cannot fail these tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from demo_helpers import DemoRun, wait_until_gone
from switch.admin.client import OperatorClient

pytestmark = pytest.mark.slow

# Children stop within this (a poll deadline, not a timing assertion).
CHILDREN_GONE_TIMEOUT_S = 60.0


@pytest.mark.parametrize("option, value", [
    ("--tps", "-5"), ("--tps", "0"), ("--seconds", "-3"), ("--seconds", "0"),
    ("--reject-rate", "7"), ("--reject-rate", "-0.5"),
])
def test_demo_refuses_out_of_range_options(option, value):
    """Refused as a usage error (exit 2) naming the option and its range, before anything
    starts: no data directory, no process."""
    arguments = [option, value] if option == "--seconds" else ["--seconds", "1", option, value]
    demo = DemoRun(*arguments)
    try:
        code = demo.wait(120)
    finally:
        demo.cleanup({})
    assert code == 2, demo.output
    assert f"Invalid value for '{option}'" in demo.output
    assert "range" in demo.output
    assert "Ponte demo" not in demo.output


def test_demo_runs_and_reconciles():
    demo = DemoRun("--seconds", "2", "--tps", "200")
    children: dict[int, int] = {}
    try:
        data_dir = demo.data_dir()
        demo.wait_for("offering")
        children = demo.children()
        assert len(children) >= 2, children  # the switch and the simulators
        code = demo.wait()
        out = demo.output
        assert code == 0, out
        assert "bank_a" in out and "wallet_b" in out
        assert "10521 customers" in out
        assert "reconcile exactly" in out
        assert "/metrics" in out
        assert wait_until_gone(children, CHILDREN_GONE_TIMEOUT_S) == []
        assert not os.path.exists(data_dir)
    finally:
        demo.cleanup(children)


def test_demo_output_reads_well_when_piped():
    """Not a terminal (a CI log, `| tee`): each URL whole on its line, whatever the width;
    progress as plain lines; the summary on a line of its own."""
    demo = DemoRun("--seconds", "3", "--tps", "100")
    try:
        assert demo.wait() == 0, demo.output
    finally:
        demo.cleanup({})
    lines = demo.lines
    url = r"http://127\.0\.0\.1:\d+"
    for pattern in (rf"admin\+metrics {url}/metrics", rf"OpenAPI: {url}/openapi\.json",
                    rf"docs: {url}/docs", rf"operator console: {url}/",
                    rf"admin API: {url}/api/admin/schema/openapi\.json"):
        assert any(re.search(pattern, line) for line in lines), (pattern, demo.output)
    progress = [line for line in lines if line.startswith("t=")]
    assert progress and all("done=" in line for line in progress), demo.output
    summary = [line for line in lines if "transfers in" in line]
    assert len(summary) == 1 and summary[0].startswith("done: "), demo.output


def test_demo_funding_is_sized_so_positions_move():
    """Funded for its traffic, not with a bottomless 10^15: over a short run some
    participant's position moves by a visible share, and payments rarely run dry."""
    demo = DemoRun("--seconds", "4", "--tps", "200")
    try:
        assert demo.wait() == 0, demo.output
    finally:
        demo.cleanup({})
    positions = {}
    for line in demo.lines:
        found = re.match(r"\s+(\w+)\s+funded ([\d,.]+)\s+lowest ([\d,.]+)\s+now ([\d,.]+)", line)
        if found:
            positions[found.group(1)] = [float(v.replace(",", "")) for v in found.groups()[1:]]
    assert set(positions) == {"bank_a", "bank_b", "wallet_a", "wallet_b"}, demo.output
    assert all(funded < 10**10 for funded, _, _ in positions.values()), positions
    moved = [name for name, (funded, lowest, now) in positions.items()
             if abs(now - funded) >= funded / 20 or lowest <= funded * 0.95]
    assert moved, positions
    done = int(demo.wait_for(r"done: (\d+) transfers").group(1))
    dry = re.search(r"refused_payer_insufficient_liquidity=(\d+)", demo.output)
    assert dry is None or int(dry.group(1)) <= done / 100, demo.output


def _operators(demo: DemoRun) -> tuple[str, dict[str, str]]:
    """The console's URL and the demo's logins (username -> password), from its output."""
    url = demo.wait_for(r"operator console: (http://\S+?)/?\s").group(1)
    demo.wait_for(r"log in as viewer")
    logins = dict(re.findall(r"log in as (\w+) / (\S+)", demo.output))
    return url, logins


def test_operator_funding_during_the_demo_reconciles():
    """An operator funds a participant through the console (maker-checker) while traffic
    flows: the end check counts that deposit, as the console recorded it, and passes."""
    demo = DemoRun("--seconds", "6", "--tps", "100")
    children: dict[int, int] = {}
    try:
        url, logins = _operators(demo)
        bank_a = int(demo.wait_for(r"bank_a \(id (\d+)\)").group(1))
        demo.wait_for("offering")
        children = demo.children()
        maker = OperatorClient.login(url, "admin", logins["admin"])
        checker = OperatorClient.login(url, "checker", logins["checker"])
        proposal = maker.post("/api/admin/proposals", {"kind": "fund", "participant_id": bank_a,
                                             "currency": "KES", "amount_minor": 12_345_67})
        decided = checker.post(f"/api/admin/proposals/{proposal['proposal_id']}/decision",
                               {"approve": True})
        assert decided["state"] == "executed", decided
        code = demo.wait()
        out = demo.output
        assert code == 0, out
        assert "reconcile exactly" in out
        assert re.search(r"operator movements: .*bank_a \+12,345\.67", out), out
    finally:
        demo.cleanup(children)


def test_books_that_do_not_reconcile_fail_the_demo(rig):
    """The demo's end check on real processes (a switch, the simulators, their final
    report): the report as it came reconciles; with one participant's books off by one
    minor unit it says "books do not reconcile", names the participant, and the demo's
    answer is False, which `run_demo` turns into exit status 1. (Since every change of money
    goes through the console's maker-checker, no outside door can move money behind the
    demo's back any more: the difference is put into the books instead.)"""
    import io

    from rich.console import Console

    from switch.demo import _summary

    switch = rig.switch()
    credentials = rig.onboard(switch)
    sims = rig.sims(switch, credentials, tps=100, seconds=2)
    sims.wait_for("ready", 120)
    final = sims.wait_for("final", 120)
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert _summary(console, switch, final, [], str) is True, out.getvalue()
    books = final["books"][0]
    books["position_minor"] += 1
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert _summary(console, switch, final, [], str) is False
    text = out.getvalue()
    assert "books do not reconcile" in text
    assert books["name"] in text[text.index("books do not reconcile"):]


def test_a_real_demo_whose_books_do_not_reconcile_exits_1():
    """The whole `ponte demo` process, with its books made to disagree by one minor unit
    (the simulators' final report altered inside the demo, before its end check): it says
    so and exits 1, and its children are gone. The check itself is tested above; this is
    the run around it."""
    wrapper = (
        "import sys, switch.demo as demo\n"
        "check = demo._summary\n"
        "def off_by_one(console, switch, final, movements, money):\n"
        "    final['books'][0]['position_minor'] += 1\n"
        "    return check(console, switch, final, movements, money)\n"
        "demo._summary = off_by_one\n"
        "from switch.cli import main\n"
        "sys.argv = ['ponte', 'demo', '--seconds', '2', '--tps', '100']\n"
        "main()\n")
    process = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True,
                             timeout=180, env={**os.environ, "COLUMNS": "80"})
    out = process.stdout + process.stderr
    assert process.returncode == 1, out
    assert "books do not reconcile" in out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_stopped_by_a_signal_stops_its_children_and_removes_its_data(signum):
    demo = DemoRun("--seconds", "600", "--tps", "50")
    children: dict[int, int] = {}
    data_dir = demo.data_dir()
    try:
        demo.wait_for("offering")
        children = demo.children()
        assert len(children) >= 2, children
        demo.signal(signum)
        assert demo.wait(120) == 128 + signum, demo.output
        assert "stopping" in demo.output
        assert wait_until_gone(children, CHILDREN_GONE_TIMEOUT_S) == [], demo.output
        assert not os.path.exists(data_dir), demo.output
    finally:
        demo.cleanup(children, data_dir)


def test_demo_stopped_by_sigterm_keeps_its_data_when_asked():
    demo = DemoRun("--seconds", "600", "--tps", "50", "--keep-data")
    children: dict[int, int] = {}
    data_dir = demo.data_dir()
    try:
        demo.wait_for("offering")
        children = demo.children()
        demo.signal(signal.SIGTERM)
        assert demo.wait(120) == 128 + signal.SIGTERM, demo.output
        assert wait_until_gone(children, CHILDREN_GONE_TIMEOUT_S) == []
        assert os.path.isfile(os.path.join(data_dir, "switch.json"))
        assert f"data kept in {data_dir}" in demo.output
    finally:
        demo.cleanup(children, data_dir)


def test_children_die_with_the_demo_even_when_it_is_killed():
    """SIGKILL leaves the demo no chance to clean up: its children must notice on their own
    (the launcher's parent link reaches end of file) and stop, rather than run on without a
    parent."""
    demo = DemoRun("--seconds", "600", "--tps", "50")
    children: dict[int, int] = {}
    data_dir = demo.data_dir()
    try:
        demo.wait_for("offering")
        children = demo.children()
        assert len(children) >= 2, children
        demo.signal(signal.SIGKILL)
        demo.wait(60)
        assert wait_until_gone(children, CHILDREN_GONE_TIMEOUT_S) == [], demo.output
    finally:
        demo.cleanup(children, data_dir)
