"""Fixtures for the switch core tests: the real core on each real ledger twin.

`ledger_cls` runs a test on the pure-Python ledger and on the compiled one; the compiled
param fails under CI=true when the core is not built and skips elsewhere, saying why, and
skips under PONTE_PURE_PYTHON=1 (the pure twin only, as on a machine without a compiler).
"""

from __future__ import annotations

import os

import pytest

import ledger

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(params=["pure", "compiled"])
def ledger_cls(request):
    if request.param == "pure":
        return ledger.PureLedger
    if ledger.IMPLEMENTATION == "pure" and ledger.CompiledLedger is not None:
        pytest.skip("PONTE_PURE_PYTHON=1: the pure twin only")
    if ledger.CompiledLedger is None:
        message = f"compiled ledger not built ({ledger.COMPILED_IMPORT_ERROR})"
        if IN_CI:
            pytest.fail(message + " — CI requires it", pytrace=False)
        pytest.skip(message + " — skipped outside CI")
    return ledger.CompiledLedger


@pytest.fixture
def world(ledger_cls):
    from core_helpers import World

    return World(ledger_cls)
