"""`ponte bench e2e --mobilemoney-wallet`: one of the population's wallets is the simulator's
GSMA Mobile Money wallet (issue 15's simulator in the e2e bench), paying and paid only
through that API next to the stream participants, and every participant's books reconcile
with the switch's ledger."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from bench.e2e_bench import e2e_command

pytestmark = pytest.mark.slow


def test_a_wallet_on_the_mobile_money_api_pays_and_is_paid_in_the_e2e_bench(tmp_path):
    outcome = CliRunner().invoke(e2e_command, [
        "--json", "--offered", "400", "--seconds", "4", "--mobilemoney-wallet",
        "--report-dir", str(tmp_path / "report")])
    assert outcome.exit_code == 0, outcome.output
    (result,) = json.loads(outcome.output.splitlines()[0])["results"]
    assert result["books_reconciled"] is True  # run_stream raises when they do not
    # Pauses of the machine are listed (usually none), each at least the detector's gap.
    assert all(freeze["ms"] >= 150 for freeze in result["host_freezes"])
    assert result["host_freeze_count"] == len(result["host_freezes"])
    assert result["host_freeze_ms_total"] == pytest.approx(
        sum(freeze["ms"] for freeze in result["host_freezes"]), abs=len(result["host_freezes"]))
    # report.md shows the scalars (lists of objects stay in report.json).
    report = (tmp_path / "report" / "report.md").read_text()
    assert "host_freeze_count" in report
    wallet = result["mobilemoney_wallet"]
    assert wallet["committed_out"] > 0 and wallet["committed_in"] > 0
    # Nothing refused: the simulator's wallet names payees only by identifier types the
    # API has (a national ID sent as an `accountid` was refused formatError).
    assert result["results"] == {"COMMITTED": result["transfers"]}
    assert result["success_rate"] == 1.0
