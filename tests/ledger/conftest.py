"""Fixtures for the ledger tests: both twins, and small helpers to build books.

`ledger_cls` runs a test against the pure-Python twin and the compiled core. The compiled
param fails under CI=true when the core is not built (CI must test it) and skips elsewhere,
saying why. Hypothesis profiles: "dev" (default, keeps tests/ledger near 60 s on 2 cores)
and "ci" (more examples); choose with PONTE_HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import ledger
from ledger.reference import Ledger as PureLedger
from ledger_helpers import Books

settings.register_profile(
    "dev", max_examples=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "ci", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("PONTE_HYPOTHESIS_PROFILE", "dev"))

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
