"""`ponte bench flood` end to end at a small size: a real switch, the victim's payments
in both phases, a flooder process whose queries are answered or refused, and figures
computed from what was measured (nothing constant)."""

from __future__ import annotations

import pytest

from bench.flood_bench import run_flood

pytestmark = pytest.mark.slow


def test_a_small_flood_run_measures_both_phases():
    result = run_flood(quick=True, rate=200.0, seconds=2.0, runs=1, pipelined=300)
    baseline, flood = result["phases"]["baseline"][0], result["phases"]["flood"][0]
    # Every victim payment after the 1 s warm-up committed and was timed, in both phases.
    assert baseline["payments"] == flood["payments"] == 200
    assert 0 < baseline["p50_ms"] <= baseline["p99_ms"] <= baseline["max_ms"]
    assert 0 < flood["p50_ms"] <= flood["p99_ms"] <= flood["max_ms"]
    # The flooder really flooded: more queries than the bounds let through at once.
    queries = flood["flood"]
    assert queries["queries_sent"] > 300 and queries["answered_per_s"] > 0
    assert queries["errors"] == 0
    # The excess is held back (TCP back-pressure, pacing), never refused at the door.
    assert queries["server_busy_per_s"] == 0
    assert 0 < baseline["switch_cpu_share"] and 0 < flood["switch_cpu_share"]
    low, high = result["baseline"]["p99_range_ms"]
    assert low <= result["baseline"]["p99_ms"] <= high
    assert result["flood_p99_within_baseline_range"] == (result["flood"]["p99_ms"] <= high)
    assert result["p99_ratio_flood_vs_baseline"] == round(
        result["flood"]["p99_ms"] / result["baseline"]["p99_ms"], 3)
