"""What the switch core records about a transfer and a request-to-pay, the state graphs
they move along, and the two helpers every flow uses to refuse and to compare a resend.

The graphs are data (`TRANSFER_NEXT`, `REQUEST_TO_PAY_NEXT`: state -> the states it may go
to); every transition in the core asserts them, and `state_graphs_markdown()` renders them
into docs/core.md (a test checks the two agree). This module must never do I/O.
"""

from __future__ import annotations

import msgspec

from switch.core.messages import (
    Refused,
    RequestToPay,
    RequestToPayOutcome,
    RequestToPayRequested,
    RequestType,
    ReturnRequest,
    ReturnRequested,
    Send,
    TransferOutcome,
    TransferRequest,
    TransferRequested,
)
from switch.core.participants import ParticipantAccount
from switch.core.results import (
    TRANSFER_FINAL_STATES,
    RequestToPayState,
    Result,
    TransferState,
)

_T = TransferState
_R = RequestToPayState

# A transfer's states and what may follow each. RECEIVED and RESERVED are passed within the
# step that accepts the request; the last three are final.
TRANSFER_NEXT: dict[TransferState, frozenset[TransferState]] = {
    _T.RECEIVED: frozenset({_T.RESERVED, _T.REJECTED}),
    _T.RESERVED: frozenset({_T.FORWARDED}),
    _T.FORWARDED: frozenset({_T.COMMITTED, _T.REJECTED, _T.EXPIRED}),
    _T.COMMITTED: frozenset(),
    _T.REJECTED: frozenset(),
    _T.EXPIRED: frozenset(),
}
# The final states each state may go to (TRANSFER_NEXT's edges into TRANSFER_FINAL_STATES):
# `_finish` asserts both with one lookup on the per-transfer path.
TRANSFER_FINAL_NEXT: dict[TransferState, frozenset[TransferState]] = {
    state: nxt & TRANSFER_FINAL_STATES for state, nxt in TRANSFER_NEXT.items()
}
# Why each edge is taken (docs/core.md).
TRANSFER_EDGES: dict[tuple[TransferState, TransferState], str] = {
    (_T.RECEIVED, _T.RESERVED): "every recorded check passed; the ledger holds the reserve",
    (_T.RECEIVED, _T.REJECTED): "a recorded check failed (blocked, limits, liquidity, "
                                "returns): only the payer is told",
    (_T.RESERVED, _T.FORWARDED): "the credit request is sent to the payee",
    (_T.FORWARDED, _T.COMMITTED): "the payee accepted before the deadline: the reserve posts",
    (_T.FORWARDED, _T.REJECTED): "the payee rejected: the reserve is voided",
    (_T.FORWARDED, _T.EXPIRED): "the deadline passed (timer, or a late answer): voided",
}

# A request-to-pay starts OPEN (shown to the payer) or REJECTED (refused when made).
REQUEST_TO_PAY_NEXT: dict[RequestToPayState, frozenset[RequestToPayState]] = {
    _R.OPEN: frozenset({_R.APPROVED, _R.DECLINED, _R.EXPIRED}),
    _R.APPROVED: frozenset(),
    _R.DECLINED: frozenset(),
    _R.EXPIRED: frozenset(),
    _R.REJECTED: frozenset(),
}
REQUEST_TO_PAY_EDGES: dict[tuple[RequestToPayState, RequestToPayState], str] = {
    (_R.OPEN, _R.APPROVED): "the payer approved and the transfer it created was forwarded",
    (_R.OPEN, _R.DECLINED): "the payer declined",
    (_R.OPEN, _R.EXPIRED): "the request's expiry passed before a decision",
}

assert set(TRANSFER_NEXT) == set(TransferState)
assert TRANSFER_FINAL_STATES == {state for state, nxt in TRANSFER_NEXT.items() if not nxt}
assert set(REQUEST_TO_PAY_NEXT) == set(RequestToPayState)
assert set(TRANSFER_EDGES) == {(a, b) for a, nxt in TRANSFER_NEXT.items() for b in nxt}
assert set(REQUEST_TO_PAY_EDGES) == {(a, b) for a, nxt in REQUEST_TO_PAY_NEXT.items()
                                     for b in nxt}


def state_graphs_markdown() -> str:
    """The state graphs as docs/core.md shows them (between its generated markers)."""
    lines = ["| transfer: from | to | when |", "|---|---|---|"]
    lines += [f"| {a.name} | {b.name} | {why} |" for (a, b), why in TRANSFER_EDGES.items()]
    lines += ["", "| request-to-pay: from | to | when |", "|---|---|---|"]
    lines += [f"| {a.name} | {b.name} | {why} |" for (a, b), why in REQUEST_TO_PAY_EDGES.items()]
    finals = ", ".join(state.name for state in TRANSFER_NEXT if not TRANSFER_NEXT[state])
    lines += ["", f"Final transfer states: {finals}. A request-to-pay refused when it is made is "
              "recorded REJECTED and never changes again."]
    return "\n".join(lines) + "\n"


class TransferRecord(msgspec.Struct, kw_only=True, gc=False, array_like=True):
    """One transfer (or return) the core recorded. Never leaves the core; not a message.
    Encoded only in core snapshots, as an array (a million of them retained made field
    names a third of a snapshot)."""

    seq: int
    event: TransferRequested | ReturnRequested  # the request as first received
    payer_participant_id: int
    transfer_id: str
    payee_participant_id: int
    amount_minor: int
    currency: str
    expires_at_ns: int
    state: TransferState = TransferState.RECEIVED
    result: Result = Result.OK
    fee_minor: int = 0
    deadline_ns: int = 0  # min(payer expiry, forward time + payee timeout)
    day: int = 0  # UTC day it counted against the payer's daily total
    payer_account: ParticipantAccount | None = None
    payee_account_ref: str = ""
    request_to_pay_id: str = ""  # set by the approval that created this transfer, only
    original: TransferRecord | None = None  # the transfer a return returns
    returned_minor: int = 0  # reserved or committed returns of this transfer
    forwarded: bool = False  # the payee was sent a credit request
    decided_at_ns: int = 0
    reason: str = ""
    outcome: TransferOutcome | None = None  # set when final; resent as is
    fulfilment: str = ""  # a committed conditional transfer's fulfilment


class RequestToPayRecord(msgspec.Struct, kw_only=True, gc=False, array_like=True):
    seq: int
    event: RequestToPayRequested
    payee_participant_id: int
    request_id: str
    payer_participant_id: int
    state: RequestToPayState = RequestToPayState.OPEN
    result: Result = Result.OK
    transfer_id: str = ""
    outcome: RequestToPayOutcome | None = None


def refuse(participant_id: int, request_type: RequestType, scope_participant_id: int, id_: str,
           result: Result) -> Send:
    """A refusal sent to `participant_id`: nothing was recorded for the request."""
    return Send(participant_id=participant_id, message=Refused(
        request_type=request_type, scope_participant_id=scope_participant_id, id=id_,
        result=result,
    ))


def compare_requests(earlier, later) -> Result:
    """Same id, same body -> OK (answer as before); otherwise the first difference. Only the
    participant's own message is compared, not what the shell added (a payee the directory
    now resolves elsewhere does not turn a resend into a conflict)."""
    if type(earlier) is not type(later):
        return Result.EXISTS_WITH_DIFFERENT_BODY
    a = earlier.request
    b = later.request
    if a == b:
        return Result.OK
    party = {TransferRequest: "payee", ReturnRequest: "original", RequestToPay: "payer"}[type(a)]
    if getattr(a, party) != getattr(b, party):
        return Result.EXISTS_WITH_DIFFERENT_PARTY
    if a.amount_minor != b.amount_minor:
        return Result.EXISTS_WITH_DIFFERENT_AMOUNT
    if type(a) is not ReturnRequest and a.currency != b.currency:
        return Result.EXISTS_WITH_DIFFERENT_CURRENCY
    return Result.EXISTS_WITH_DIFFERENT_BODY
