"""Fixtures for the ledger tests: both twins, and small helpers to build books.

`ledger_cls` runs a test against the pure-Python twin and the compiled core. The compiled
param fails under CI=true when the core is not built (CI must test it) and skips elsewhere,
saying why. Hypothesis settings for the ledger's property tests live in ledger_helpers
(`LEDGER_HYPOTHESIS`), applied per test so other packages' defaults are untouched.
"""

from __future__ import annotations

import os

import pytest

import ledger
from ledger.reference import Ledger as PureLedger
from ledger_helpers import Books

IN_CI = os.environ.get("CI") == "true"


def compiled_ledger_cls():
    """The compiled Ledger class, or fail (CI) / skip (elsewhere) saying why."""
    if ledger.CompiledLedger is None:
        message = f"compiled ledger not built ({ledger.COMPILED_IMPORT_ERROR})"
        if IN_CI:
            pytest.fail(message + " — CI requires it", pytrace=False)
        pytest.skip(message + " — skipped outside CI")
    return ledger.CompiledLedger


@pytest.fixture(params=["pure", "compiled"])
def ledger_cls(request):
    if request.param == "pure":
        return PureLedger
    return compiled_ledger_cls()


@pytest.fixture
def books(ledger_cls):
    return Books(ledger_cls)
