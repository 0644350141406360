"""pytest-benchmark cases for the ledger (`pytest bench --benchmark-only`).

create_transfers at batch 8,189 (uniform and hot) for both twins, and the single-event
`create_transfer` path the switch core uses. Each round gets a fresh ledger and fresh ids
from setup, so every measured call does the full work (no EXISTS short-cuts); input is
generated once per module, outside the measurement.
"""

from __future__ import annotations

import pytest

import ledger
from bench.ledger_workloads import load_accounts, pregenerate
from ledger.limits import BATCH_EVENTS_MAX
from ledger.types import TRANSFER_STRUCT

NOW_NS = 1_000_000_000
ROUNDS = 20


def _ledger_classes():
    classes = [pytest.param(ledger.PureLedger, id="pure")]
    if ledger.CompiledLedger is not None:
        classes.insert(0, pytest.param(ledger.CompiledLedger, id="compiled"))
    return classes


_BATCHES: dict[str, bytes] = {}


def _batch(workload: str) -> bytes:
    if workload not in _BATCHES:
        (_BATCHES[workload],) = pregenerate(workload, BATCH_EVENTS_MAX, BATCH_EVENTS_MAX, 7)
    return _BATCHES[workload]


@pytest.mark.parametrize("workload", ["uniform", "hot"])
@pytest.mark.parametrize("ledger_cls", _ledger_classes())
def test_create_transfers_batch_8189(benchmark, ledger_cls, workload):
    batch = _batch(workload)

    def setup():
        fresh = ledger_cls()
        load_accounts(fresh, 10_000)
        return (fresh, batch), {}

    def run(target, data):
        return target.create_transfers(data, NOW_NS)

    failures = benchmark.pedantic(run, setup=setup, rounds=ROUNDS if ledger_cls is
                                  ledger.CompiledLedger else 5, iterations=1)
    assert failures == []
    benchmark.extra_info["transfers_per_round"] = BATCH_EVENTS_MAX


@pytest.mark.parametrize("ledger_cls", _ledger_classes())
def test_create_transfer_single(benchmark, ledger_cls):
    target = ledger_cls()
    load_accounts(target, 10_000)
    fields = TRANSFER_STRUCT.unpack(_batch("uniform")[:72])
    args = list(fields[:6] + fields[7:])
    state = {"id": 10_000_000}

    def run():
        state["id"] += 1  # a new id each call: a real transfer, not an idempotent retry
        args[0] = state["id"]
        return target.create_transfer(*args, NOW_NS)

    result = benchmark(run)
    assert result == 0
    target.check_invariants()
