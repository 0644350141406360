"""pytest configuration for the micro-benchmarks under bench/ (`pytest bench --benchmark-only`).

A benchmark run is saved for comparison between commits: results go to `.benchmarks/` at the
repository root (whatever the working directory), one JSON file per run named by pytest-
benchmark after a counter, the commit id and the date. Compare two runs with

    pytest-benchmark --storage file://.benchmarks compare 0001 0002 --columns=min,median,iqr

or fail a run that got slower than the last saved one with `--benchmark-compare
--benchmark-compare-fail=median:10%`. `--benchmark-storage`, `--benchmark-save NAME` or
`--benchmark-json FILE` given on the command line win; PONTE_BENCH_NO_SAVE=1 saves nothing.

This file must never change how a benchmark measures, only where its results go.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
STORAGE_DEFAULT = "file://./.benchmarks"  # pytest-benchmark's own default


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark reads the options
def pytest_configure(config: pytest.Config) -> None:
    option = config.option
    if not hasattr(option, "benchmark_storage"):
        return  # pytest-benchmark is not installed or disabled (-p no:benchmark)
    if option.benchmark_storage == STORAGE_DEFAULT:
        option.benchmark_storage = f"file://{REPOSITORY / '.benchmarks'}"
    wants_results = option.benchmark_only and not option.benchmark_disable
    told_otherwise = option.benchmark_save or option.benchmark_json
    if wants_results and not told_otherwise and os.environ.get("PONTE_BENCH_NO_SAVE") != "1":
        # What --benchmark-autosave stores: the commit id, date and dirty flag, read from
        # this repository even when pytest runs elsewhere.
        from pytest_benchmark.utils import get_tag

        with contextlib.chdir(REPOSITORY):
            option.benchmark_autosave = get_tag()
