"""Children the launcher starts live exactly as long as the process that started them: a
child started from a short-lived thread outlives that thread (the restart in
test_e2e_held_requests does this), and a child whose parent process dies stops by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from demo_helpers import kill_survivors, wait_until_gone
from switch.launcher import SwitchProcess, sim_server_config

pytestmark = pytest.mark.slow

CHILD_GONE_TIMEOUT_S = 60.0


def test_a_child_started_from_a_thread_outlives_the_thread(tmp_path):
    switch = SwitchProcess(sim_server_config(str(tmp_path / "switch")))
    try:
        starter = threading.Thread(target=switch.start)
        starter.start()
        starter.join(180)
        assert switch.process is not None
        # The thread that started it is gone; the switch must go on taking requests (a
        # child told to stop by its thread's end would stop accepting and exit).
        for _ in range(30):
            health = switch.wait_healthy(30)
            assert health["accepting"] and health["status"] == "ok", switch.log_tail()
            assert switch.process.poll() is None, switch.log_tail()
            threading.Event().wait(0.1)
    finally:
        assert switch.stop() == 0, switch.log_tail()


def test_a_child_stops_when_its_parent_process_is_killed(tmp_path):
    """A parent that starts a switch and is then SIGKILLed: no stop() ever runs, yet the
    switch notices and shuts down."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from switch.launcher import SwitchProcess, sim_server_config
        switch = SwitchProcess(sim_server_config({str(tmp_path / "switch")!r})).start()
        print(switch.pid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    child_pid = int(parent.stdout.readline())
    with open(f"/proc/{child_pid}/stat") as stat:
        started = int(stat.read().rsplit(")", 1)[1].split()[19])
    children = {child_pid: started}
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait(30)
        assert wait_until_gone(children, CHILD_GONE_TIMEOUT_S) == []
    finally:
        kill_survivors(children)
