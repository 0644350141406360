"""CPU seconds and resident memory of one process, sampled every second into a bounded buffer.

The bench drivers point it at the switch's pid while load runs and hand the samples to
`bench.report`. It reads only `/proc/<pid>/stat` and `/proc/<pid>/status` (Linux), never
signals or otherwise touches the watched process, and never grows without bound: the oldest
samples fall out of a ring of `samples_max`.
"""

from __future__ import annotations

import collections
import os
import threading
import time
import msgspec

from bench import limits

_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class ProcessGone(Exception):
    """The pid names no (live) process: it never existed, exited, or is a zombie."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"process {pid} is not running")
        self.pid = pid


class ResourceSample(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    # Seconds since the sampler was created (monotonic clock).
    t_s: float
    # User + system CPU time the process has used since it started.
    cpu_s: float
    # CPU used since the previous sample over the wall time between them, as `top` shows
    # it: 100 is one core busy, 200 two. The first sample has no previous one: 0.
    cpu_percent: float
    rss_bytes: int


def read_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` in seconds, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid) from None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')', so
    # split only after the last ')'. Fields from there on: state(3) ... utime(14) stime(15).
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        raise ProcessGone(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S


def read_rss_bytes(pid: int) -> int:
    """VmRSS of `pid` in bytes, from /proc/<pid>/status."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid) from None
    for line in status.splitlines():
        if line.startswith(b"VmRSS:"):
            value, unit = line.split()[1:3]
            assert unit == b"kB", unit
            return int(value) * 1024
    raise ProcessGone(pid)  # a zombie has released its memory and has no VmRSS line


class _Periodic:
    """`start()` a daemon thread that calls `sample()` every `interval_s` until `stop()`, or
    until `sample()` returns None (what it samples is gone); usable as a context manager."""

    interval_s: float
    _thread_name = "ponte-sampler"

    def _init_thread(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self):  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def start(self) -> None:
        assert self._thread is None, "already started"
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 5.0)
            assert not self._thread.is_alive(), f"{self._thread_name} did not stop"

    def _run(self) -> None:
        # Sample, then wait the rest of the interval; waking on stop() ends it at once.
        while not self._stop.is_set():
            if self.sample() is None:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ResourceSampler(_Periodic):
    """Samples one pid: call `sample()` yourself, or `start()` a thread that samples every
    `interval_s` until `stop()` (or use it as a context manager). When the process exits,
    sampling stops and `process_exited` becomes True; the samples taken are kept."""

    def __init__(
        self,
        pid: int,
        interval_s: float = 1.0,
        samples_max: int = limits.SAMPLER_SAMPLES_MAX_DEFAULT,
    ) -> None:
        if not 0.01 <= interval_s <= 3600.0:
            raise ValueError(f"interval_s must be in [0.01, 3600], not {interval_s}")
        if not 1 <= samples_max <= limits.SERIES_SAMPLES_MAX:
            raise ValueError(f"samples_max must be in [1, {limits.SERIES_SAMPLES_MAX}]")
        self.pid = pid
        self._init_thread(interval_s)
        self._thread_name = f"ponte-sampler-{pid}"
        self.samples_max = samples_max
        self.process_exited = False
        self._ring: collections.deque[ResourceSample] = collections.deque(maxlen=samples_max)
        self._lock = threading.Lock()
        self._start_monotonic_s = time.monotonic()
        self._previous: tuple[float, float] | None = None  # (monotonic_s, cpu_s)
        # Fail now, not in a background thread, if the pid is wrong.
        read_cpu_seconds(pid)

    def sample(self) -> ResourceSample | None:
        """Take one sample now and keep it; None (and `process_exited`) if the process is gone."""
        if self.process_exited:
            return None
        try:
            now_s = time.monotonic()
            cpu_s = read_cpu_seconds(self.pid)
            rss_bytes = read_rss_bytes(self.pid)
        except ProcessGone:
            self.process_exited = True
            return None
        with self._lock:
            cpu_percent = 0.0
            if self._previous is not None:
                wall_s = now_s - self._previous[0]
                if wall_s > 0.0:
                    cpu_percent = max(0.0, 100.0 * (cpu_s - self._previous[1]) / wall_s)
            self._previous = (now_s, cpu_s)
            result = ResourceSample(
                t_s=now_s - self._start_monotonic_s,
                cpu_s=cpu_s,
                cpu_percent=cpu_percent,
                rss_bytes=rss_bytes,
            )
            self._ring.append(result)
        return result

    def samples(self) -> list[ResourceSample]:
        with self._lock:
            return list(self._ring)

    def latest(self) -> ResourceSample | None:
        with self._lock:
            return self._ring[-1] if self._ring else None



# -- the machine itself stopping ----------------------------------------------------------
#
# A virtual machine can be paused by its host: every process in it stops, the clock goes on,
# and the kernel accounts no CPU time (busy, idle or stolen) for the pause. A bench on such a
# box sees a latency spike that no process in it caused. `HostFreezes` finds those pauses from
# /proc/stat alone: between two of its samples, wall time passed but the CPU time the kernel
# accounted over all CPUs (`cpu` line: user .. steal) is far below CPUs x wall time. A process
# that is merely slow or descheduled cannot cause that (the other states are accounted
# instead), so the test does not depend on the bench's own process being scheduled. It is
# reliable on a busy machine (under load, when it matters): a tickless kernel derives an idle
# CPU's idle time from its clock, so a pause while every CPU idles may be counted as idle.

HOST_FREEZE_GAP_MS_MIN = 150.0  # shorter gaps are the sampler's own jitter
HOST_FREEZE_ACCOUNTED_MAX = 0.5  # a pause: under half the expected CPU time accounted


def read_cpu_ticks() -> tuple[int, int]:
    """(ticks accounted over all CPUs since boot: user..steal, number of CPUs) from
    /proc/stat (Linux)."""
    with open("/proc/stat", "rb") as f:
        text = f.read()
    lines = text.split(b"\n")
    total = sum(int(value) for value in lines[0].split()[1:9])
    cpus = sum(1 for line in lines[1:] if line.startswith(b"cpu"))
    return total, cpus


class HostFreeze(msgspec.Struct, frozen=True, kw_only=True):
    started_ns: int  # wall clock (time.time_ns) of the last sample before the pause
    ended_ns: int  # ... and of the first one after it
    ms: float  # the gap on the monotonic clock (a wall-clock step is not a pause)
    accounted: float  # CPU time the kernel accounted over the gap / CPUs x the gap


class HostFreezes(_Periodic):
    """Samples /proc/stat every `interval_s` on a thread (bounded ring) between `start()`
    and `stop()`; `freezes()` lists the gaps the machine itself was paused."""

    def __init__(self, interval_s: float = 0.05,
                 samples_max: int = limits.SAMPLER_SAMPLES_MAX_DEFAULT) -> None:
        if not 0.01 <= interval_s <= 1.0:
            raise ValueError(f"interval_s must be in [0.01, 1], not {interval_s}")
        self._init_thread(interval_s)
        self._thread_name = "ponte-host-freezes"
        if not 1 <= samples_max <= limits.SERIES_SAMPLES_MAX:
            raise ValueError(f"samples_max must be in [1, {limits.SERIES_SAMPLES_MAX}]")
        # (monotonic ns, wall ns, ticks); the oldest fall out past samples_max.
        self._ring: collections.deque[tuple[int, int, int]] = collections.deque(
            maxlen=samples_max)
        self._cpus = read_cpu_ticks()[1]
        self.error: BaseException | None = None  # what stopped the thread, if anything did

    def sample(self) -> bool | None:
        """One sample; None (the thread ends) once reading failed: `freezes()` says so."""
        try:
            self._ring.append((time.monotonic_ns(), time.time_ns(), read_cpu_ticks()[0]))
        except Exception as error:  # noqa: BLE001 - reported by freezes(), never silent
            self.error = error
            return None
        return True

    def accounted(self) -> float:
        """CPU time accounted over everything sampled / CPUs x the time it spans (~1.0)."""
        (first_ns, _, first_ticks), (last_ns, _, last_ticks) = self._ring[0], self._ring[-1]
        expected = self._cpus * (last_ns - first_ns) / 1e9 * _CLOCK_TICKS_PER_S
        return (last_ticks - first_ticks) / expected if expected else 1.0

    def freezes(self, gap_ms_min: float = HOST_FREEZE_GAP_MS_MIN,
                accounted_max: float = HOST_FREEZE_ACCOUNTED_MAX) -> list[HostFreeze]:
        if self.error is not None:
            raise RuntimeError(f"the host freeze sampler stopped: {self.error!r}")
        samples = list(self._ring)
        found = []
        for (then_ns, then_wall, then_ticks), (now_ns, now_wall, now_ticks) in zip(
                samples, samples[1:]):
            gap_ns = now_ns - then_ns
            if gap_ns < gap_ms_min * 1e6:
                continue
            expected = self._cpus * gap_ns / 1e9 * _CLOCK_TICKS_PER_S
            accounted = (now_ticks - then_ticks) / expected
            if accounted < accounted_max:
                found.append(HostFreeze(started_ns=then_wall, ended_ns=now_wall,
                                        ms=gap_ns / 1e6, accounted=round(accounted, 3)))
        return found


def touched_by(freezes: list[HostFreeze], started_ns: int, ended_ns: int) -> bool:
    """Whether [started_ns, ended_ns] (a payment in flight) overlaps one of `freezes`."""
    return any(f.started_ns <= ended_ns and started_ns <= f.ended_ns for f in freezes)
