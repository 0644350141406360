"""Fixtures for the ledger tests: both twins, and small helpers to build books.

`ledger_cls` runs a test against the pure-Python twin and the compiled core. The compiled
param fails under CI=true when the core is not built (CI must test it) and skips elsewhere,
saying why; under PONTE_PURE_PYTHON=1 it skips (the pure twin only). Hypothesis settings for the ledger's property tests live in ledger_helpers
(`LEDGER_HYPOTHESIS`), applied per test so other packages' defaults are untouched.
"""

from __future__ import annotations

import pytest

from ledger.reference import Ledger as PureLedger
from ledger_helpers import Books, compiled_ledger_cls


@pytest.fixture(params=["pure", "compiled"])
def ledger_cls(request):
    if request.param == "pure":
        return PureLedger
    return compiled_ledger_cls()


@pytest.fixture
def books(ledger_cls):
    return Books(ledger_cls)
