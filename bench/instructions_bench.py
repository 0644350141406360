"""`ponte bench instructions`: CPU work per transfer counted in instructions, not seconds.

Seconds on a shared two-core VM vary by ±25–50 % from run to run (steal time, neighbours),
so "within noise of before" cannot be shown with them. valgrind's callgrind counts the
instructions a process executes, which for the same code and inputs repeat almost exactly
whatever else the machine does. Each case runs `bench/instructions_harness.py` at two sizes
under callgrind, and the difference divided by the difference in size is the work per item:
start-up, imports and set-up cancel out.

Cases: the core's four `ponte bench core` cases (per transfer), and the switch process's
whole path per payment (the stream SDK clients run in a process valgrind does not follow;
see the harness), with the defaults and with durable history and snapshots off ("lean",
the switch as it was before issue 11).
`--baseline DIR` measures the same cases on another checkout (e.g. `git worktree add
/tmp/before <rev>` and `python setup.py build_ext --inplace` there) and gives the ratio.
Cases the baseline cannot run (a config key it does not know) say so instead of a figure.

Instructions are not time: a cache miss costs more than an add. Use this to compare two
versions of the code; use `ponte bench core` and `ponte bench e2e` for rates and latency.
`--json` prints `{"code", "baseline", "results": [{case, what, unit, sizes,
instructions_per_item, baseline_instructions_per_item, ratio, error}]}`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import msgspec

from switch.demo import Stopped, stop_signals

HARNESS = Path(__file__).with_name("instructions_harness.py")
CODE_DIR = Path(__file__).resolve().parent.parent
LEAN = ("snapshots_enabled=false", "history_enabled=false")
_COLLECTED = re.compile(r"Collected : (\d+)")
RUN_TIMEOUT_S = 1_800
STOP_WAIT_S = 10.0  # after SIGTERM to a run's process group, before SIGKILL


class Case(msgspec.Struct, frozen=True):
    name: str
    what: str
    unit: str
    args: tuple[str, ...]  # harness arguments; the size goes after the first (switch) or last
    sizes: tuple[int, int]
    sizes_quick: tuple[int, int]


CASES = (
    Case("core", "core step, no fee", "transfer", ("core", "core", "nofee"),
         (2_000, 12_000), (500, 2_500)),
    Case("core-fee", "core step, fee leg", "transfer", ("core", "core", "fee"),
         (2_000, 12_000), (500, 2_500)),
    Case("core+codec", "core step + wire and journal codecs, no fee", "transfer",
         ("core", "core+codec", "nofee"), (2_000, 12_000), (500, 2_500)),
    Case("core+codec-fee", "core step + codecs, fee leg", "transfer",
         ("core", "core+codec", "fee"), (2_000, 12_000), (500, 2_500)),
    Case("switch", "the switch process (stream connector to ledger), defaults", "payment",
         ("switch",), (1_000, 4_000), (200, 1_000)),
    Case("switch-lean", "the same, durable history and snapshots off", "payment",
         ("switch", *LEAN), (1_000, 4_000), (200, 1_000)),
)


class CountError(Exception):
    """A harness run failed or valgrind printed no total."""


def harness_argv(case: Case, size: int) -> list[str]:
    if case.args[0] == "switch":
        return ["switch", str(size), *case.args[1:]]
    return [*case.args, str(size)]


def collected(valgrind_stderr: str) -> int:
    """The total callgrind prints ("Collected : N")."""
    match = _COLLECTED.search(valgrind_stderr)
    if match is None:
        raise CountError("valgrind printed no instruction total")
    return int(match.group(1))


# Runs in progress: each is the leader of its own process group (valgrind, the harness and
# the clients it execs), stopped as a whole by `stop_runs` on an interrupt or a timeout.
_runs: set[subprocess.Popen] = set()
_runs_lock = threading.Lock()


def _stop_run(process: subprocess.Popen) -> None:
    for signum, wait_s in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def stop_runs() -> None:
    """Stop every run in progress and its children."""
    with _runs_lock:
        running = list(_runs)
    for process in running:
        _stop_run(process)


def count(code_dir: Path, case: Case, size: int) -> int:
    """Instructions of one harness run of `case` at `size` on the code in `code_dir`."""
    env = {**os.environ, "PYTHONPATH": str(code_dir), "PYTHONHASHSEED": "0"}
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(HARNESS), *harness_argv(case, size)],
        env=env, cwd=code_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    with _runs_lock:
        _runs.add(process)
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_run(process)
        raise CountError(f"no result in {RUN_TIMEOUT_S} s") from None
    finally:
        with _runs_lock:
            _runs.discard(process)
    if process.returncode != 0 or f"done {size}" not in stdout:
        # The program's own last words, not valgrind's summary (lines starting "==pid==").
        lines = [line for line in (stderr + stdout).splitlines()
                 if line.strip() and not line.startswith("==")] or ["no output"]
        raise CountError(f"exit {process.returncode}: {lines[-1][:200]}")
    return collected(stderr)


def per_item(code_dir: Path, case: Case, sizes: tuple[int, int]) -> float:
    small, large = (count(code_dir, case, size) for size in sizes)
    return (large - small) / (sizes[1] - sizes[0])


def measure(code_dir: Path, case: Case, sizes: tuple[int, int]) -> tuple[float | None, str]:
    try:
        return per_item(code_dir, case, sizes), ""
    except CountError as error:
        return None, str(error)


def run_all(quick: bool, baseline: Path | None, cases: tuple[Case, ...],
            progress=None) -> list[dict]:
    """Every case on this code (and the baseline), two valgrind runs at a time: counts do not
    depend on what else runs, so both cores are used."""
    jobs = [(case, code) for case in cases for code in ([CODE_DIR] + (
        [baseline] if baseline is not None else []))]

    def job(item):
        case, code = item
        figure = measure(code, case, case.sizes_quick if quick else case.sizes)
        if progress is not None:
            progress()
        return figure

    pool = ThreadPoolExecutor(2)
    try:
        figures = dict(zip(jobs, pool.map(job, jobs)))
    finally:  # interrupted: nothing new starts, and what runs is stopped, then joined
        pool.shutdown(wait=False, cancel_futures=True)
        stop_runs()
        pool.shutdown(wait=True)
    results = []
    for case in cases:
        value, error = figures[(case, CODE_DIR)]
        base_value, base_error = figures.get((case, baseline), (None, ""))
        results.append({
            "case": case.name, "what": case.what, "unit": case.unit,
            "sizes": list(case.sizes_quick if quick else case.sizes),
            "instructions_per_item": None if value is None else round(value),
            "baseline_instructions_per_item": None if base_value is None else round(base_value),
            "ratio": (round(value / base_value, 4)
                      if value is not None and base_value else None),
            "error": error or (f"baseline: {base_error}" if base_error else ""),
        })
    return results


@click.command("instructions")
@click.option("--json", "as_json", is_flag=True, help="print one JSON document, nothing else")
@click.option("--quick", is_flag=True, help="smaller sizes (a few minutes)")
@click.option("--baseline", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="another checkout (compiled ledger built) to compare with")
@click.option("--case", "names", multiple=True, type=click.Choice([c.name for c in CASES]),
              help="only these cases (repeatable) [all]")
def instructions_command(as_json: bool, quick: bool, baseline: Path | None,
                         names: tuple[str, ...]) -> None:
    """Instructions per transfer (valgrind callgrind): box-independent, for comparing code."""
    if shutil.which("valgrind") is None:
        raise click.ClickException("valgrind is not installed (apt-get install valgrind)")
    cases = tuple(case for case in CASES if not names or case.name in names)
    baseline = baseline.resolve() if baseline is not None else None
    try:
        with stop_signals():
            if as_json:
                results = run_all(quick, baseline, cases)
            else:
                from rich.progress import Progress

                with Progress(transient=True) as progress:
                    task = progress.add_task("callgrind runs", total=len(cases) * (
                        2 if baseline is not None else 1))
                    results = run_all(quick, baseline, cases, lambda: progress.advance(task))
    except Stopped as stop:  # every run stopped by run_all on the way out
        click.echo(f"{stop} received: stopped", err=True)
        raise SystemExit(128 + stop.signum) from None
    failed = [row for row in results if row["instructions_per_item"] is None]
    if as_json:
        click.echo(json.dumps({"code": str(CODE_DIR), "baseline": str(baseline or ""),
                               "results": results}))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"instructions per item, {CODE_DIR}"
                      + (f" against {baseline}" if baseline else ""))
        for column in ("case", "per", "instructions", "baseline", "ratio", "what / error"):
            table.add_column(column)
        for row in results:
            table.add_row(row["case"], row["unit"],
                          f"{row['instructions_per_item']:,}" if row["instructions_per_item"]
                          is not None else "—",
                          f"{row['baseline_instructions_per_item']:,}"
                          if row["baseline_instructions_per_item"] is not None else "—",
                          f"{row['ratio']:.3f}" if row["ratio"] is not None else "—",
                          row["error"] or row["what"])
        Console().print(table)
    if failed:
        raise SystemExit(1)
