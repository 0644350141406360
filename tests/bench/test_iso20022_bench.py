"""`ponte bench iso20022 --quick --json`: the stage costs and a short full-payment run
through a real switch, books matching; many debtor accounts pay (one account for every
payment was measuring the directory's per-user bucket, not the switch)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.iso20022_bench import iso20022_command

pytestmark = pytest.mark.slow


def test_a_quick_run_pays_with_matching_books_and_prints_every_stage():
    outcome = CliRunner().invoke(iso20022_command, ["--quick", "--json"])
    assert outcome.exit_code == 0, outcome.output
    document = json.loads(outcome.output)
    assert {"pacs.008 in", "pacs.002 in", "full payment"} <= set(document["per_message"])
    full = document["full_payments"]
    assert full["books_match"] is True and full["payments"] > 0
    assert full["batch"] == 100 and full["window"] == 2_000
