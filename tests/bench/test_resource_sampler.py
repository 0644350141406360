"""The resource sampler reads real /proc figures of real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.sampler import ProcessGone, ResourceSampler, read_cpu_seconds, read_rss_bytes


def burn_cpu_s(cpu_s: float) -> None:
    start = time.process_time()
    x = 0
    while time.process_time() - start < cpu_s:
        x += 1


def wait_until(predicate, limit_s: float = 30.0) -> None:
    # A bound on waiting so a broken sampler fails the test instead of hanging it; the
    # test asserts the state, never how long it took.
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_cpu_and_memory_of_this_process_are_measured():
    sampler = ResourceSampler(os.getpid())
    first = sampler.sample()
    burn_cpu_s(0.3)
    block = bytearray(64 * 2**20)
    block[:: 4096] = b"\x01" * len(block[:: 4096])  # touch every page so it is resident
    second = sampler.sample()
    assert second.cpu_s - first.cpu_s >= 0.2
    assert second.rss_bytes - first.rss_bytes >= 48 * 2**20
    assert first.cpu_percent == 0.0  # no previous sample to compare with
    assert second.cpu_percent > 0.0
    assert second.t_s > first.t_s
    assert sampler.samples() == [first, second]
    del block


def test_the_buffer_keeps_only_the_newest_samples():
    sampler = ResourceSampler(os.getpid(), samples_max=3)
    taken = [sampler.sample() for _ in range(5)]
    assert sampler.samples() == taken[2:]
    assert sampler.latest() == taken[-1]


def test_a_pid_that_cannot_exist_is_a_typed_error():
    with open("/proc/sys/kernel/pid_max") as f:
        impossible = int(f.read()) + 1
    with pytest.raises(ProcessGone):
        ResourceSampler(impossible)
    with pytest.raises(ProcessGone):
        read_rss_bytes(impossible)


def test_a_zombie_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Not reaped yet: the kernel keeps it as a zombie until we wait() for it.
        def is_zombie() -> bool:
            with open(f"/proc/{child.pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"

        wait_until(is_zombie)
        with pytest.raises(ProcessGone):
            read_cpu_seconds(child.pid)
    finally:
        child.wait()


def test_the_thread_samples_a_child_until_it_exits():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout.readline() == b"ready\n"  # the interpreter is up: its RSS is real
        sampler = ResourceSampler(child.pid, interval_s=0.02)
        with sampler:
            wait_until(lambda: len(sampler.samples()) >= 3)
            child.stdin.close()
            child.wait(timeout=30)
            wait_until(lambda: sampler.process_exited)
        kept = sampler.samples()
        assert len(kept) >= 3
        assert all(s.rss_bytes > 1_000_000 for s in kept)  # a Python interpreter
        assert [s.t_s for s in kept] == sorted(s.t_s for s in kept)
        assert sampler.sample() is None
        assert sampler.samples() == kept
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize(("interval_s", "samples_max"), [(0.0, 10), (1.0, 0), (5000.0, 10)])
def test_bad_arguments_are_refused(interval_s, samples_max):
    with pytest.raises(ValueError):
        ResourceSampler(os.getpid(), interval_s=interval_s, samples_max=samples_max)


# -- pauses of the whole machine ---------------------------------------------------------


def test_host_freezes_reads_real_proc_stat_and_finds_no_pause_on_a_running_box():
    from bench.sampler import HostFreezes, read_cpu_ticks

    ticks, cpus = read_cpu_ticks()
    assert ticks > 0 and cpus == os.cpu_count()
    host = HostFreezes(interval_s=0.02)
    host.start()
    burn_cpu_s(0.5)  # busy or idle, every tick is accounted to some state
    host.stop()
    assert len(host._ring) >= 5 and host.error is None
    # Every CPU's time accounted to some state: the fields summed and the CPUs counted right
    # (a field missed or a CPU count off by 2x would put this near 0.5 or 2) — unless the
    # machine really paused meanwhile, which freezes() then names.
    assert 0.7 <= host.accounted() <= 1.3 or host.freezes(), host.accounted()


def test_a_gap_with_the_cpu_time_unaccounted_is_a_pause_and_a_slow_sampler_is_not():
    """What /proc/stat showed on 2026-12-05 across a payment stall: 713 ms of wall time
    with 22 of the expected 143 ticks accounted (2 CPUs). A sampler that was only late
    (its process descheduled, the machine running) sees the ticks accounted to others."""
    from bench.sampler import _CLOCK_TICKS_PER_S, HostFreezes, touched_by

    host = HostFreezes()
    host._cpus = 2
    per_ms = 2 * _CLOCK_TICKS_PER_S / 1000  # ticks accounted per ms of wall time
    mono, wall, ticks, ring = 10**12, 10**18, 1_000_000, []
    for step_ms, accounted, wall_step_ms in (
            (50, 1.0, 50), (50, 1.0, 50), (713, 22 / 143, 713), (50, 1.0, 50),
            (600, 1.0, 600), (50, 0.0, 900)):  # the last: an NTP step of the wall clock
        ring.append((mono, wall, ticks))
        mono += int(step_ms * 1e6)
        wall += int(wall_step_ms * 1e6)
        ticks += round(step_ms * per_ms * accounted)
    ring.append((mono, wall, ticks))
    host._ring.extend(ring)
    (freeze,) = host.freezes()
    assert round(freeze.ms) == 713 and freeze.accounted < 0.2
    assert freeze.started_ns == ring[2][1]  # reported on the wall clock
    # A payment in flight across it is touched; one that ended before it is not.
    assert touched_by([freeze], freeze.started_ns - 5_000_000, freeze.started_ns + 1)
    assert not touched_by([freeze], ring[0][1], ring[1][1])


def test_a_host_freeze_sampler_that_failed_says_so():
    from bench.sampler import HostFreezes

    host = HostFreezes()
    host.error = OSError("no /proc")
    with pytest.raises(RuntimeError, match="no /proc"):
        host.freezes()


def test_g2p_bench_names_the_phase_each_pause_fell_in():
    from bench.g2p_bench import _freezes_by_phase
    from bench.sampler import HostFreeze

    phases = [("unloaded", 1_000_000_000), ("loaded", 5_000_000_000)]
    pauses = [HostFreeze(started_ns=2_000_000_000, ended_ns=2_700_000_000, ms=700.0,
                         accounted=0.1),
              HostFreeze(started_ns=6_500_000_000, ended_ns=7_000_000_000, ms=500.0,
                         accounted=0.2)]
    assert _freezes_by_phase(pauses, phases) == [
        {"phase": "unloaded", "at_s": 1.0, "ms": 700},
        {"phase": "loaded", "at_s": 1.5, "ms": 500}]
