"""The G2P rules without I/O: every Result a row's transfer can end with maps to a row
reason (table test over the whole enum), transfer ids round-trip, batch actions follow the
state table, and a routed item reaches the core with the route it carries, once."""

from __future__ import annotations


import pytest

from switch.core.results import SHELL_ONLY, Result
from switch.g2p.types import (
    BATCH_ACTIONS,
    FUNDING_RESULTS,
    RETRY_RESULTS,
    BatchState,
    RowReason,
    parse_transfer_id,
    reason_for,
    transfer_id,
)

# What each Result a G2P transfer can end with means for its row. OK commits; the two
# funding results send the row back (the batch pauses); SERVER_BUSY and
# SERVICE_UNAVAILABLE resubmit the same id. Every other member fails the row with a reason.
EXPECTED = {
    Result.PAYEE_REJECTED: RowReason.PAYEE_REJECTED,
    Result.TRANSFER_EXPIRED: RowReason.PAYEE_UNAVAILABLE,
    Result.PAYEE_BLOCKED: RowReason.PAYEE_BLOCKED,
    Result.PAYEE_CURRENCY_NOT_ENABLED: RowReason.PAYEE_BLOCKED,
    Result.PAYEE_ACCOUNT_OVERFLOW: RowReason.PAYEE_BLOCKED,
    Result.PAYEE_NOT_FOUND: RowReason.INVALID_PAYEE,
    Result.PAYER_AND_PAYEE_SAME: RowReason.INVALID_PAYEE,
    Result.PAYER_INSUFFICIENT_LIQUIDITY: RowReason.OUT_OF_FUNDS,
    Result.PAYER_DAILY_LIMIT_EXCEEDED: RowReason.OUT_OF_FUNDS,
    Result.G2P_PAYEE_UNMAPPED: RowReason.UNMAPPED,
}


@pytest.mark.parametrize("member", list(Result), ids=lambda member: member.name)
def test_every_result_has_a_row_reason(member):
    reason = reason_for(member, "")
    assert isinstance(reason, RowReason)
    assert reason is EXPECTED.get(member, RowReason.REFUSED)


def test_a_payee_that_says_the_account_is_closed():
    assert reason_for(Result.PAYEE_REJECTED, "Account CLOSED") is RowReason.ACCOUNT_CLOSED
    assert reason_for(Result.PAYEE_REJECTED, "insufficient KYC") is RowReason.PAYEE_REJECTED


def test_funding_and_retry_results_are_core_results():
    assert FUNDING_RESULTS.isdisjoint(SHELL_ONLY)
    assert RETRY_RESULTS == {Result.SERVER_BUSY, Result.SERVICE_UNAVAILABLE}


def test_transfer_ids_round_trip_and_fit_the_id_grammar():
    from switch.core.messages import id_valid

    text = transfer_id(123_456, 1_000_000, 7)
    assert id_valid(text)
    assert parse_transfer_id(text) == (123_456, 1_000_000, 7)
    for other in ("t-1", "g2p.1.2", "g2p.a.2.3", "g2p.1.2.3.4", ""):
        assert parse_transfer_id(other) is None


def test_batch_actions_follow_the_state_table():
    assert BATCH_ACTIONS["pause"][1] is BatchState.PAUSED
    assert BATCH_ACTIONS["resume"][1] is BatchState.ACTIVE
    assert BATCH_ACTIONS["cancel"][1] is BatchState.CANCELLED
    for allowed, _target in BATCH_ACTIONS.values():
        assert BatchState.COMPLETED not in allowed and BatchState.CANCELLED not in allowed
