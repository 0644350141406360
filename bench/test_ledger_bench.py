"""pytest-benchmark cases for the ledger (`pytest bench --benchmark-only`).

create_transfers at batch 8,189 (uniform and hot) for both twins, and the single-event
`create_transfer` path the switch core uses. Each round gets a fresh ledger and fresh ids
from setup, so every measured call does the full work (no EXISTS short-cuts); input is
generated once per module, outside the measurement.
"""

from __future__ import annotations

import os

import pytest

import ledger
from bench.ledger_workloads import ACCOUNTS_DEFAULT, load_accounts, pregenerate
from ledger.limits import BATCH_EVENTS_MAX
from ledger.types import RECORD_BYTES, TRANSFER_STRUCT

NOW_NS = 1_000_000_000
ROUNDS = 20
ROUNDS_PURE = 5
IMPLEMENTATIONS = ("compiled", "pure")
IN_CI = os.environ.get("CI") == "true"


def ledger_class(implementation: str):
    """The ledger twin to measure. A compiled case never vanishes silently: without the
    built core it fails under CI=true and skips elsewhere, saying why."""
    if implementation == "pure":
        return ledger.PureLedger
    if ledger.IMPLEMENTATION == "pure" and ledger.CompiledLedger is not None:
        pytest.skip("PONTE_PURE_PYTHON=1: the pure twin only")
    if ledger.CompiledLedger is None:
        message = f"compiled ledger not built ({ledger.COMPILED_IMPORT_ERROR})"
        if IN_CI:
            pytest.fail(message + " - CI requires it", pytrace=False)
        pytest.skip(message + " - skipped outside CI")
    return ledger.CompiledLedger


_BATCHES: dict[str, bytes] = {}


def _batch(workload: str) -> bytes:
    if workload not in _BATCHES:
        (_BATCHES[workload],) = pregenerate(workload, BATCH_EVENTS_MAX, BATCH_EVENTS_MAX, 7)
    return _BATCHES[workload]


@pytest.mark.parametrize("workload", ["uniform", "hot"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_create_transfers_batch_8189(benchmark, implementation, workload):
    ledger_cls = ledger_class(implementation)
    batch = _batch(workload)

    def setup():
        fresh = ledger_cls()
        load_accounts(fresh, ACCOUNTS_DEFAULT)
        return (fresh, batch), {}

    def run(target, data):
        return target.create_transfers(data, NOW_NS)

    failures = benchmark.pedantic(run, setup=setup, rounds=ROUNDS if implementation ==
                                  "compiled" else ROUNDS_PURE, iterations=1)
    assert failures == []
    benchmark.extra_info["transfers_per_round"] = BATCH_EVENTS_MAX


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_create_transfer_single(benchmark, implementation):
    target = ledger_class(implementation)()
    load_accounts(target, ACCOUNTS_DEFAULT)
    fields = TRANSFER_STRUCT.unpack(_batch("uniform")[:RECORD_BYTES])
    args = list(fields[:6] + fields[7:])
    state = {"id": 10_000_000}

    def run():
        state["id"] += 1  # a new id each call: a real transfer, not an idempotent retry
        args[0] = state["id"]
        return target.create_transfer(*args, NOW_NS)

    result = benchmark(run)
    assert result == 0
    target.check_invariants()


# The `--json` shape `ponte bench ledger` documents (bench/ledger_bench.py), checked on tiny
# cases run the way the command runs them (a child process each); figures are not judged.
JSON_KEYS = {"mode": str, "workload": str, "batch_size": int, "transfers": int,
             "transfers_per_s": int, "peak_rss_bytes": int}


@pytest.mark.parametrize("mode", ["memory-compiled", "memory-pure", "file"])
def test_a_case_prints_the_documented_json_shape(mode):
    from bench.ledger_bench import run_in_child

    if mode == "memory-compiled":
        ledger_class("compiled")
    spec = {"kind": "case", "mode": mode, "workload": "hot", "batch_size": 100,
            "transfers": 1_000, "seed": 1, "runs": 1,
            "paired_pure_transfers": 200 if mode == "memory-compiled" else 0}
    result = run_in_child(spec)
    assert "error" not in result, result
    assert {key: type(result.get(key)) for key in JSON_KEYS} == JSON_KEYS
    assert (result["mode"], result["workload"], result["batch_size"], result["transfers"]) == (
        mode, "hot", 100, 1_000)
    assert result["transfers_per_s"] > 0 and result["peak_rss_bytes"] > 0
    if mode == "memory-compiled":
        assert result["ratio_vs_pure"] > 0
