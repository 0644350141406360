"""Shared pieces of the end-to-end tests (a plain module: importing `conftest` by name picks
whichever conftest was imported first when the whole suite runs)."""

from __future__ import annotations

import os

import msgspec

from connectors.sim.books import BooksReport, reconcile
from switch.launcher import SwitchProcess

PROFILE = os.path.join(os.path.dirname(__file__), "small.toml")
NAMES_KINDS = [("bank_a", "bank"), ("bank_b", "bank"), ("wallet_a", "wallet"),
               ("wallet_b", "wallet")]
FUNDING_MINOR = 10**14
RULES_FAST_TIMEOUT = {"payee_timeout_ms": 400}


def assert_books_reconcile(switch: SwitchProcess, final: dict) -> None:
    positions = switch.positions()
    differences = []
    for books in final["books"]:
        report = msgspec.convert(books, BooksReport)
        assert report.in_flight_out == 0, report
        differences.extend(reconcile(report, positions[report.participant_id]["accounts"]["KES"]))
    assert differences == []
