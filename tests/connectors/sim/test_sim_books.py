"""A simulator's books against its switch ledger account: payments it saw, plus the operator's
movements (deposits, withdrawals, net debit cap changes) that it could not see, as the
operator surface recorded them. Anything else is a difference."""

from __future__ import annotations

import pytest

from connectors.sim.books import (
    Books,
    OperatorMovement,
    OperatorMovementKind,
    operator_net_minor,
    reconcile,
)
from switch.core.results import TransferState

OPENING_MINOR = 1_000_000


def _books() -> Books:
    books = Books("bank_a", 1, "KES", OPENING_MINOR, {"c1": 500, "c2": 0})
    books.reserve("t1", "c1", 200)
    books.sent_final("t1", TransferState.COMMITTED, 3)
    books.accept_credit(2, "x1", "c2", 50)
    books.received_final(2, "x1", TransferState.COMMITTED)
    return books


def _account(position_minor: int) -> dict[str, int]:
    return {"debits_pending": 0, "debits_posted": 203, "credits_pending": 0,
            "credits_posted": position_minor + 203}


def _movement(kind: OperatorMovementKind, amount_minor: int, at_ns: int = 1,
              participant_id: int = 1, currency: str = "KES") -> OperatorMovement:
    return OperatorMovement(participant_id=participant_id, currency=currency, kind=kind,
                            amount_minor=amount_minor, at_ns=at_ns)


def test_books_alone_reconcile():
    report = _books().report()
    assert report.position_minor == OPENING_MINOR - 203 + 50
    assert reconcile(report, _account(report.position_minor)) == []


def test_an_operator_deposit_the_books_did_not_see_is_a_difference_until_counted():
    report = _books().report()
    account = _account(report.position_minor + 12_345)
    (difference,) = reconcile(report, account)
    assert difference.what == "position_minor"
    net = operator_net_minor([_movement(OperatorMovementKind.FUND, 12_345)], report)
    assert net == 12_345
    assert reconcile(report, account, operator_net_minor=net) == []


def test_a_wrong_operator_figure_is_still_a_difference():
    report = _books().report()
    account = _account(report.position_minor + 12_345)
    assert reconcile(report, account, operator_net_minor=12_000) != []


@pytest.mark.parametrize("kind, amount_minor, net_minor", [
    (OperatorMovementKind.FUND, 700, 700),
    (OperatorMovementKind.DEFUND, 700, -700),
    # A cap is a level, not a movement: the account moved from the opening cap to it.
    (OperatorMovementKind.NET_DEBIT_CAP, OPENING_MINOR + 900, 900),
    (OperatorMovementKind.NET_DEBIT_CAP, OPENING_MINOR - 400, -400),
])
def test_every_kind_of_operator_movement(kind, amount_minor, net_minor):
    report = _books().report()
    assert operator_net_minor([_movement(kind, amount_minor)], report) == net_minor


def test_every_movement_kind_is_handled():
    report = _books().report()
    for kind in OperatorMovementKind:
        operator_net_minor([_movement(kind, 1)], report)  # raises for a kind it misses


def test_movements_sum_in_time_order_and_only_for_that_account():
    report = _books().report()
    movements = [
        _movement(OperatorMovementKind.NET_DEBIT_CAP, OPENING_MINOR + 5, at_ns=3),
        _movement(OperatorMovementKind.FUND, 100, at_ns=1),
        _movement(OperatorMovementKind.NET_DEBIT_CAP, OPENING_MINOR + 50, at_ns=2),
        _movement(OperatorMovementKind.DEFUND, 30, at_ns=4),
        _movement(OperatorMovementKind.FUND, 999, participant_id=2),
        _movement(OperatorMovementKind.FUND, 999, currency="BRL"),
    ]
    # the last cap set (at 3) stands: +5 over the opening; +100 funded, -30 withdrawn.
    assert operator_net_minor(movements, report) == 5 + 100 - 30
