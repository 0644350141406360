"""pytest-benchmark cases for the switch core (run: `python -m pytest bench/test_core_bench.py
--benchmark-only`). One call = one transfer: transfer in, credit request out, accept in,
outcomes out, with the ledger reserve and post. Compare with `ponte bench core`."""

from __future__ import annotations

import itertools

import pytest

from bench.core_bench import T0_NS, build_core, make_events
from bench.test_ledger_bench import IMPLEMENTATIONS, ledger_class

ROUNDS = 20_000


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("fee", [True, False], ids=["fee_leg", "no_fee"])
def test_core_transfer(benchmark, implementation, fee):
    rounds = ROUNDS if implementation == "compiled" else ROUNDS // 4
    core = build_core(ledger_class(implementation), fee, rounds + 1_000)
    pairs = iter(make_events(rounds + 1_000))
    clock = itertools.count(T0_NS + 1_000, 1_000)
    step = core.step

    def one_transfer():
        transfer, answer = next(pairs)
        now_ns = next(clock)
        step(transfer, now_ns)
        return step(answer, now_ns + 500)

    commands = benchmark.pedantic(one_transfer, rounds=rounds, warmup_rounds=100, iterations=1)
    assert len(commands) == 4
    assert core.in_flight_count == 0
    core.ledger.check_invariants()


def test_a_case_reports_the_documented_json_shape():
    """`ponte bench core --json` rows (docs/core.md): keys and types, not the figures."""
    from bench.core_bench import measure

    row = measure("core+codec", "pure", True, 200, 1)
    assert {key: type(value) for key, value in row.items()} == {
        "case": str, "ledger": str, "fee_leg": bool, "transfers": int, "runs": int,
        "cpu_us_per_transfer": float, "wall_us_per_transfer": float, "transfers_per_s": int,
        "target_cpu_us": type(None), "meets_target": type(None)}
    assert (row["case"], row["ledger"], row["transfers"]) == ("core+codec", "pure", 200)
