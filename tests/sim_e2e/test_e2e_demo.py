"""`ponte demo` end to end: one command, no external service, clean exit, books reconcile,
no process left behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_and_reconciles():
    result = subprocess.run(
        [sys.executable, "-m", "switch.cli", "demo", "--seconds", "2", "--tps", "200"],
        capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "bank_a" in out and "wallet_b" in out
    assert "10521 customers" in out
    assert "reconcile exactly" in out
    assert "/metrics" in out
    leftovers = subprocess.run(["pgrep", "-f", "ponte-demo-"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
