"""The HTTP end-to-end bench runs with real processes and reconciles the participants'
books with the switch's ledger; the reconciliation itself catches a difference."""

from __future__ import annotations

import pytest

from bench.e2e_http import FUNDING_MINOR, _reconcile, run_http


def test_reconcile_finds_every_difference():
    load = {"unfinished": 0, "debits_minor": {"1": 500}, "credits_minor": {"2": 500}}
    positions = {"1": {"debits_posted": 500, "credits_posted": FUNDING_MINOR},
                 "2": {"debits_posted": 0, "credits_posted": FUNDING_MINOR + 500}}
    assert _reconcile(load, positions, [1], [2]) == []
    positions["2"]["credits_posted"] += 1
    assert _reconcile(load, positions, [1], [2]) == [
        "payee 2: ledger credits 501 != books 500"]
    assert _reconcile({**load, "unfinished": 3}, positions, [1], [2])


@pytest.mark.slow
def test_run_http_small_closed_loop_reconciles():
    result = run_http(seconds=1.0, window=50, payers=1, payees=1)
    assert result["transport"] == "http"
    assert result["detail"]["committed"] > 0
    assert result["success_rate"] == 1.0
    assert result["detail"]["reconciled"] is True
    assert result["p50_ms"] <= result["p99_ms"]
    assert result["peak_rss_bytes"] > 0
