"""Helpers shared by the ledger tests (imported by name: tests/ledger is on sys.path)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import ledger
from ledger.config import LedgerConfig
from ledger.types import Account, Transfer, pack_accounts, pack_transfers

IN_CI = os.environ.get("CI") == "true"


def compiled_ledger_cls():
    """The compiled Ledger class, or fail (CI) / skip (elsewhere) saying why.

    PONTE_PURE_PYTHON=1 forces the pure twin everywhere, the tests included: they then
    show that the pure twin alone passes, as on a machine without a compiler."""
    if ledger.IMPLEMENTATION == "pure" and ledger.CompiledLedger is not None:
        pytest.skip("PONTE_PURE_PYTHON=1: the pure twin only")
    if ledger.CompiledLedger is None:
        message = f"compiled ledger not built ({ledger.COMPILED_IMPORT_ERROR})"
        if IN_CI:
            pytest.fail(message + " — CI requires it", pytrace=False)
        pytest.skip(message + " — skipped outside CI")
    return ledger.CompiledLedger


# Examples per property test: the default keeps tests/ledger well under a minute on two
# busy cores; CI (or a soak run) raises it with PONTE_LEDGER_EXAMPLES=2000.
LEDGER_EXAMPLES = int(os.environ.get("PONTE_LEDGER_EXAMPLES", "500"))
LEDGER_HYPOTHESIS = settings(
    max_examples=LEDGER_EXAMPLES, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Books:
    """A ledger plus a clock and terse builders, so a test reads like its scenario."""

    def __init__(self, ledger_cls, config: LedgerConfig | None = None, now_ns: int = 1_000):
        self.ledger = ledger_cls(config)
        self.now_ns = now_ns
        self.next_id = 1_000_000

    def accounts(self, *accounts: Account, now_ns: int | None = None):
        return self.ledger.create_accounts(
            pack_accounts(accounts), self.now_ns if now_ns is None else now_ns
        )

    def open(self, *ids: int, flags: int = 0, ledger_id: int = 1, code: int = 1) -> None:
        failures = self.accounts(*(Account(id=i, ledger=ledger_id, code=code, flags=flags)
                                   for i in ids))
        assert failures == []

    def transfer(self, **fields) -> Transfer:
        """A transfer 1 -> 2 of 1 unit on ledger 1 code 1 with a fresh id, overridable."""
        if "id" not in fields:
            self.next_id += 1
            fields["id"] = self.next_id
        defaults = dict(debit_account_id=1, credit_account_id=2, amount_minor=1, ledger=1,
                        code=1)
        return Transfer(**{**defaults, **fields})

    def transfers(self, *transfers: Transfer, now_ns: int | None = None):
        return self.ledger.create_transfers(
            pack_transfers(transfers), self.now_ns if now_ns is None else now_ns
        )

    def ok(self, *transfers: Transfer, now_ns: int | None = None) -> None:
        failures = self.transfers(*transfers, now_ns=now_ns)
        assert failures == [], failures

    def account(self, id_: int) -> Account:
        (found,) = self.ledger.lookup_accounts([id_])
        return found

    def balances(self, id_: int) -> tuple[int, int, int, int]:
        a = self.account(id_)
        return a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted



def state_without_clock(target) -> bytes:
    """The snapshot with last_timestamp zeroed: failed events still consume timestamps."""
    data = bytearray(target.snapshot())
    data[16:24] = bytes(8)
    return bytes(data)
