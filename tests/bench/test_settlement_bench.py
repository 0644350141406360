"""`ponte bench settlement` at a small size: a window closed in one core step with its
positions summing to zero, traffic with and without an operator closing windows on a real
switch, and statements streamed in both formats (figures computed, nothing constant)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.settlement_bench import settlement_command

pytestmark = pytest.mark.slow


def test_a_small_settlement_run_measures_every_case():
    outcome = CliRunner().invoke(settlement_command, [
        "--json", "--quick", "--transfers", "2000", "--participants", "5", "--offered", "300",
        "--seconds", "3", "--close-every-s", "1", "--entries", "2000", "--traffic-runs", "2"])
    assert outcome.exit_code == 0, outcome.output
    results = {(r["case"], r.get("format")): r for r in json.loads(outcome.output)["results"]}
    close = results[("close", None)]
    assert close["transfers_in_window"] == 2000 and 0 < close["close_ms"]
    traffic = results[("traffic", None)]
    assert traffic["runs"] == 2 and traffic["closes"] >= 2
    assert traffic["books_reconciled"] is True
    assert len(traffic["p99_ms_runs"]) == len(traffic["baseline_p99_ms_runs"]) == 2
    assert min(traffic["baseline_p99_ms_runs"]) <= traffic["baseline_p99_ms"] <= max(
        traffic["baseline_p99_ms_runs"])
    assert traffic["p99_within_baseline_range"] == (
        traffic["p99_ms"] <= max(traffic["baseline_p99_ms_runs"]))
    for fmt in ("camt053", "csv"):
        statement = results[("statement", fmt)]
        assert statement["entries"] == 2000 and statement["entries_per_s"] > 0
        assert statement["meets_target"] == (statement["entries_per_s"] >= 200_000)
