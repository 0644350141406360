"""Run `ponte demo` as a real process and watch it from outside: its output line by line, its
own process tree (read from /proc, so another demo on the same box is never counted), and
its data directory. A plain module, like e2e_helpers."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

DEMO_START_TIMEOUT_S = 180.0


def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time in clock ticks) of a live process, else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read().decode(errors="replace")
    except OSError:
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root_pid: int) -> dict[int, int]:
    """Every process below `root_pid`: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is None:
            continue
        children.setdefault(stat[0], []).append(int(entry))
        starts[int(entry)] = stat[2]
    found: dict[int, int] = {}
    stack = list(children.get(root_pid, ()))
    while stack:
        pid = stack.pop()
        if pid in found or pid not in starts:
            continue
        found[pid] = starts[pid]
        stack.extend(children.get(pid, ()))
    return found


def still_running(processes: dict[int, int]) -> list[int]:
    """The pids of `processes` that still run (a zombie has stopped; a reused pid is not
    the same process)."""
    alive = []
    for pid, started in processes.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[2] == started and stat[1] not in ("Z", "X"):
            alive.append(pid)
    return alive


def wait_until_gone(processes: dict[int, int], timeout_s: float) -> list[int]:
    """Poll until every process has stopped or `timeout_s` passed; the survivors."""
    deadline = time.monotonic() + timeout_s
    alive = still_running(processes)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = still_running(processes)
    return alive


def kill_survivors(processes: dict[int, int]) -> None:
    """SIGKILL whatever of `processes` still runs: a failed test must not leave them."""
    for pid in still_running(processes):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class DemoRun:
    """`ponte demo ARGS` with stdout and stderr piped (not a terminal), in a session of its
    own so a signal sent to it reaches only it."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switch.cli", "demo", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, env={**os.environ, "COLUMNS": "80", **(env or {})})
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    @property
    def output(self) -> str:
        self._drain(0.0)
        return "\n".join(self.lines)

    def _drain(self, timeout_s: float) -> bool:
        """Move queued lines to `lines`; False at the end of the output."""
        try:
            line = self._queue.get(timeout=timeout_s) if timeout_s else self._queue.get_nowait()
        except queue.Empty:
            return True
        while True:
            if line is None:
                self._queue.put(None)
                return False
            self.lines.append(line)
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return True

    def wait_for(self, pattern: str, timeout_s: float = DEMO_START_TIMEOUT_S) -> re.Match:
        """The first output line matching `pattern` (a regex), waiting for it."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        checked = 0
        while True:
            for line in self.lines[checked:]:
                found = compiled.search(line)
                if found:
                    return found
            checked = len(self.lines)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r}:\n{self.output}")
            if not self._drain(min(remaining, 0.5)) and checked == len(self.lines):
                raise AssertionError(f"demo ended before {pattern!r}:\n{self.output}")

    def data_dir(self) -> str:
        return self.wait_for(r"data in (\S+)").group(1)

    def children(self) -> dict[int, int]:
        return descendants(self.process.pid)

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def wait(self, timeout_s: float = 180.0) -> int:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(10)
        self._drain(0.0)
        return code

    def cleanup(self, children: dict[int, int], data_dir: str | None = None) -> None:
        """Whatever the test found: no demo, no child of it and (if given) no data left."""
        if self.process.poll() is None:
            self.kill()
        kill_survivors(children)
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)

    def kill(self) -> None:
        """Last resort for a failed test: the demo and whatever it started."""
        for pid in [self.process.pid, *self.children()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)
