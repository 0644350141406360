"""Reconciliation: a participant's own list of a window's transfers against the switch's.

The participant sends `ReconciliationRequest` rows (switch/core/messages.py) (payer participant, transfer id, amount
in minor units) for every transfer of the window it paid or received; the switch streams its
entry log for the window and answers the differences: transfers it has that the list lacks,
rows it has no transfer for, and amount mismatches (each list bounded, with the full counts).
Memory is the request's rows (bounded by RECONCILIATION_ROWS_MAX) plus the bounded answer,
whatever the window's size. It must never touch the core (it runs in a worker thread).
"""

from __future__ import annotations

from typing import Iterable

from switch.core.messages import (
    AmountMismatch,
    ReconciledTransfer,
    ReconciliationReport,
    ReconciliationRow,
)
from switch.settlement import limits
from switch.settlement.entries import Entry


def reconcile(window_id: int, participant_id: int, rows: list[ReconciliationRow],
              entries: Iterable[Entry]) -> ReconciliationReport:
    """Compare (see the module docstring). `entries`: the window's entries of the
    participant, streamed."""
    cap = limits.RECONCILIATION_DIFFERENCES_MAX
    theirs: dict[tuple[int, str], int] = {}
    duplicates: list[ReconciledTransfer] = []
    duplicate_count = 0
    for row in rows:
        key = (row.payer_participant_id, row.transfer_id)
        if key in theirs:
            duplicate_count += 1
            if len(duplicates) < cap:
                duplicates.append(ReconciledTransfer(payer_participant_id=key[0], transfer_id=key[1],
                                              amount_minor=row.amount_minor))
            continue
        theirs[key] = row.amount_minor
    matched = 0
    missing_here: list[ReconciledTransfer] = []
    missing_here_count = 0
    mismatches: list[AmountMismatch] = []
    mismatch_count = 0
    for entry in entries:
        key = (entry.payer_participant_id, entry.transfer_id)
        amount = theirs.pop(key, None)
        if amount is None:
            missing_here_count += 1
            if len(missing_here) < cap:
                missing_here.append(ReconciledTransfer(payer_participant_id=key[0], transfer_id=key[1],
                                                amount_minor=entry.amount_minor))
        elif amount != entry.amount_minor:
            mismatch_count += 1
            if len(mismatches) < cap:
                mismatches.append(AmountMismatch(
                    payer_participant_id=key[0], transfer_id=key[1],
                    switch_amount_minor=entry.amount_minor, participant_amount_minor=amount))
        else:
            matched += 1
    missing_there = [ReconciledTransfer(payer_participant_id=key[0], transfer_id=key[1],
                                 amount_minor=amount)
                     for key, amount in list(theirs.items())[:cap]]
    return ReconciliationReport(
        window_id=window_id, participant_id=participant_id, matched=matched,
        missing_at_participant_count=missing_here_count,
        missing_at_switch_count=len(theirs), amount_mismatch_count=mismatch_count,
        duplicate_rows_count=duplicate_count, missing_at_participant=missing_here,
        missing_at_switch=missing_there, amount_mismatches=mismatches,
        duplicate_rows=duplicates,
        truncated=(missing_here_count > len(missing_here) or len(theirs) > len(missing_there)
                   or mismatch_count > len(mismatches) or duplicate_count > len(duplicates)))
