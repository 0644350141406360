"""A simulated participant's own books, and the reconciliation against the switch's ledger.

The books keep what a real bank or wallet keeps: each customer's balance, the money it has
sent and not yet seen settle, and its position at the switch — opening funding, plus every
COMMITTED credit it received, minus every COMMITTED transfer it sent and its fee. They are
written only from messages the participant itself received, idempotently (an outcome may
arrive twice), so comparing them with the switch's ledger account checks the whole path.

The operator also moves a participant's money — deposits, withdrawals, net debit cap
changes — and no message tells the participant. Those come from the operator surface's own
record of what the switch carried out (`OperatorMovement`, e.g. the console's executed
proposals), never inferred from the difference:

    position_minor + operator net  == credits_posted - debits_posted   (the switch's account)
    reserved_minor  == 0 == debits_pending               (once nothing is in flight)
    customers' balances changed by exactly position_minor - opening + fees paid

It must never do I/O, and never book anything it did not receive itself.
"""

from __future__ import annotations

import enum
from typing import Iterable

import msgspec

from switch.core.results import TransferState


class BooksReport(msgspec.Struct, kw_only=True):
    """What a simulator reports about its books (JSON across processes)."""

    name: str
    participant_id: int
    currency: str
    opening_position_minor: int
    position_minor: int
    fees_paid_minor: int
    reserved_out_minor: int
    in_flight_out: int
    customers_total_minor: int
    customers_opening_total_minor: int
    committed_out: int = 0
    committed_in: int = 0
    rejected_out: int = 0
    expired_out: int = 0
    refused_out: int = 0
    # The lowest the position went (committed movements only): how close it came to dry.
    position_low_minor: int | None = None


class Books:
    def __init__(self, name: str, participant_id: int, currency: str,
                 opening_position_minor: int, customer_balances: dict[str, int]) -> None:
        self.name = name
        self.participant_id = participant_id
        self.currency = currency
        self.opening_position_minor = opening_position_minor
        self.position_minor = opening_position_minor
        self.position_low_minor = opening_position_minor
        self.fees_paid_minor = 0
        self.balances = dict(customer_balances)
        self.opening_total_minor = sum(customer_balances.values())
        # transfer_id -> (customer, amount_minor): debited from the customer, not yet final.
        self.outgoing: dict[str, tuple[str, int]] = {}
        self.reserved_out_minor = 0
        # (payer_participant_id, transfer_id) -> (customer, amount_minor): accepted credits.
        self.incoming: dict[tuple[int, str], tuple[str, int]] = {}
        self.committed_out = 0
        self.committed_in = 0
        self.rejected_out = 0
        self.expired_out = 0
        self.refused_out = 0

    # -- payer side --------------------------------------------------------------------

    def can_pay(self, customer: str, amount_minor: int) -> bool:
        return self.balances.get(customer, 0) >= amount_minor

    def reserve(self, transfer_id: str, customer: str, amount_minor: int) -> None:
        """The customer asked to pay: debit them now (a bank holds the money at once)."""
        assert transfer_id not in self.outgoing
        self.balances[customer] -= amount_minor
        self.outgoing[transfer_id] = (customer, amount_minor)
        self.reserved_out_minor += amount_minor

    def sent_final(self, transfer_id: str, state: TransferState | None, fee_minor: int) -> None:
        """The final answer to one of our transfers (state None: refused, not recorded)."""
        found = self.outgoing.pop(transfer_id, None)
        if found is None:
            return  # booked already
        customer, amount_minor = found
        self.reserved_out_minor -= amount_minor
        if state is TransferState.COMMITTED:
            self.position_minor -= amount_minor + fee_minor
            if self.position_minor < self.position_low_minor:
                self.position_low_minor = self.position_minor
            self.fees_paid_minor += fee_minor
            self.committed_out += 1
            return
        self.balances[customer] += amount_minor  # give the money back
        if state is TransferState.REJECTED:
            self.rejected_out += 1
        elif state is TransferState.EXPIRED:
            self.expired_out += 1
        else:
            self.refused_out += 1

    # -- payee side --------------------------------------------------------------------

    def accept_credit(self, payer_participant_id: int, transfer_id: str, customer: str,
                      amount_minor: int) -> None:
        self.incoming[(payer_participant_id, transfer_id)] = (customer, amount_minor)

    def received_final(self, payer_participant_id: int, transfer_id: str,
                       state: TransferState) -> tuple[str, int] | None:
        """Book a final outcome of a credit we were asked for; the (customer, amount)
        credited when it COMMITTED the first time, else None."""
        # The entry leaves with the first final outcome, so a second delivery of it books
        # nothing (and nothing is remembered per transfer once it is final).
        found = self.incoming.pop((payer_participant_id, transfer_id), None)
        if found is None:
            return None
        if state is not TransferState.COMMITTED:
            return None
        customer, amount_minor = found
        self.balances[customer] = self.balances.get(customer, 0) + amount_minor
        self.position_minor += amount_minor
        self.committed_in += 1
        return found

    def credit_reversed(self, customer: str, amount_minor: int) -> None:
        """A credit booked when the wallet completed it, which the switch did not commit
        (GSMA wallets book on completion; the hub asks for the reversal): un-book it."""
        self.balances[customer] = self.balances.get(customer, 0) - amount_minor
        self.position_minor -= amount_minor
        self.committed_in -= 1

    def report(self) -> BooksReport:
        return BooksReport(
            name=self.name, participant_id=self.participant_id, currency=self.currency,
            opening_position_minor=self.opening_position_minor,
            position_minor=self.position_minor, fees_paid_minor=self.fees_paid_minor,
            reserved_out_minor=self.reserved_out_minor, in_flight_out=len(self.outgoing),
            customers_total_minor=sum(self.balances.values()),
            customers_opening_total_minor=self.opening_total_minor,
            committed_out=self.committed_out, committed_in=self.committed_in,
            rejected_out=self.rejected_out, expired_out=self.expired_out,
            refused_out=self.refused_out, position_low_minor=self.position_low_minor,
        )


class Difference(msgspec.Struct, frozen=True, kw_only=True):
    participant: str
    what: str
    books: int
    switch: int


class OperatorMovementKind(enum.StrEnum):
    """What an operator did to a participant's account (the console's proposal kinds that
    move money; a daily limit moves none)."""

    FUND = "fund"  # prefunded RTGS: a deposit (DEPOSIT transfer, HUB_FUNDING -> participant)
    DEFUND = "defund"  # prefunded RTGS: a withdrawal (WITHDRAWAL transfer)
    NET_DEBIT_CAP = "net_debit_cap"  # deferred net: the cap set (CAP_RAISE / CAP_LOWER)


class OperatorMovement(msgspec.Struct, frozen=True, kw_only=True):
    """One operator change the switch carried out on a participant's account."""

    participant_id: int
    currency: str
    kind: OperatorMovementKind
    amount_minor: int  # FUND/DEFUND: the amount moved; NET_DEBIT_CAP: the cap set
    at_ns: int  # when it was carried out: orders cap changes


def operator_net_minor(movements: Iterable[OperatorMovement], report: BooksReport) -> int:
    """What the operator added to (negative: took from) the account of `report` since its
    books opened. A net debit cap is a level, so the last one set counts against the
    opening cap (a deferred-net participant's books open at its cap)."""
    net_minor = 0
    cap_minor = None
    mine = [m for m in movements
            if m.participant_id == report.participant_id and m.currency == report.currency]
    for movement in sorted(mine, key=lambda m: m.at_ns):
        kind = movement.kind
        if kind is OperatorMovementKind.FUND:
            net_minor += movement.amount_minor
        elif kind is OperatorMovementKind.DEFUND:
            net_minor -= movement.amount_minor
        elif kind is OperatorMovementKind.NET_DEBIT_CAP:
            cap_minor = movement.amount_minor
        else:
            raise AssertionError(f"unhandled operator movement {kind!r}")
    if cap_minor is not None:
        net_minor += cap_minor - report.opening_position_minor
    return net_minor


def reconcile(report: BooksReport, account: dict[str, int],
              operator_net_minor: int = 0) -> list[Difference]:
    """Differences between a simulator's books and its switch ledger account
    (`{"debits_pending", "debits_posted", "credits_pending", "credits_posted"}`), given
    what the operator moved meanwhile (`operator_net_minor`); an empty list means they
    agree exactly. Call it when nothing is in flight."""
    differences = []
    switch_position = account["credits_posted"] - account["debits_posted"]
    expected_position = report.position_minor + operator_net_minor
    if expected_position != switch_position:
        differences.append(Difference(participant=report.name, what="position_minor",
                                      books=expected_position, switch=switch_position))
    if report.reserved_out_minor != 0 or account["debits_pending"] != 0:
        differences.append(Difference(participant=report.name, what="pending_minor",
                                      books=report.reserved_out_minor,
                                      switch=account["debits_pending"]))
    # The customers' money moved by exactly what the position moved, fees aside (the
    # participant pays the scheme fee itself).
    customers_moved = report.customers_total_minor - report.customers_opening_total_minor
    position_moved = report.position_minor - report.opening_position_minor
    if customers_moved != position_moved + report.fees_paid_minor - report.reserved_out_minor:
        differences.append(Difference(
            participant=report.name, what="customers_vs_position",
            books=customers_moved,
            switch=position_moved + report.fees_paid_minor - report.reserved_out_minor))
    return differences
