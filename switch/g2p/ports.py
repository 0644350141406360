"""What the G2P engine and connector need from a store (switch/store/g2p_store.py has the
SQLite and PostgreSQL adapters). Every method is one transaction; bad input never reaches
it (the connector validated the rows)."""

from __future__ import annotations

from typing import Protocol

from switch.g2p.types import BatchCounts, BatchRecord, BatchState, NewRow, PendingRow, RowView

# add_rows answers one of these per row, in order.
ROW_ADDED = 0
ROW_EXISTS = 1  # the same reference with the same content: already in the batch
ROW_DUPLICATE = 2  # the same reference with other content: refused


class G2PStore(Protocol):
    async def open_batch(self, programme_id: int, transaction_id: str, currency: str,
                         now_ns: int) -> BatchRecord: ...

    async def find_batch(self, programme_id: int, transaction_id: str) -> BatchRecord | None: ...

    async def get_batch(self, batch_id: int) -> BatchRecord | None: ...

    async def list_batches(self, programme_id: int | None, limit: int) -> list[BatchRecord]: ...

    async def add_rows(self, batch_id: int, rows: list[NewRow], rows_max: int,
                       now_ns: int) -> list[int] | None:
        """One code per row (ROW_*), or None when the batch would pass `rows_max`
        (nothing written)."""
        ...

    async def pending_rows(self, batch_id: int, after_row_no: int, limit: int
                           ) -> list[PendingRow]: ...

    async def submitted_rows(self, batch_id: int, limit: int) -> list[PendingRow]: ...

    async def mark_submitted(self, batch_id: int,
                             rows: list[tuple[int, int, int, str, int]], now_ns: int) -> None:
        """(row_no, attempt, payee_participant_id, payee_account_ref, expires_at_ns)."""
        ...

    async def record_outcomes(self, outcomes: list[tuple[int, int, int, int, int, int, int]],
                              now_ns: int) -> None:
        """(batch_id, row_no, attempt, status, reason, result, next_attempt): applied only
        to a row still SUBMITTED under `attempt` (a late or repeated outcome changes
        nothing); PENDING with next_attempt sends the row back after a funding refusal."""
        ...

    async def fail_unsubmitted(self, outcomes: list[tuple[int, int, int, int]],
                               now_ns: int) -> None:
        """(batch_id, row_no, reason, result) for PENDING rows that fail before any
        transfer (unmapped national ID)."""
        ...

    async def set_state(self, batch_id: int, state: BatchState, now_ns: int) -> None: ...

    async def cancel_pending(self, batch_id: int, now_ns: int) -> int: ...

    async def counts(self, batch_id: int) -> BatchCounts: ...

    async def rows_page(self, batch_id: int, after_row_no: int, limit: int) -> list[RowView]: ...

    async def rows_by_reference(self, batch_id: int, references: list[str]) -> list[RowView]: ...

    async def rows_by_payee(self, programme_id: int, payee_key: str, limit: int
                            ) -> list[tuple[str, RowView]]: ...

    async def put_mapper_txn(self, participant_id: int, transaction_id: str, action: str,
                             body: bytes, now_ns: int) -> None: ...

    async def get_mapper_txn(self, participant_id: int, transaction_id: str, action: str
                             ) -> bytes | None: ...

    async def add_notices(self, notices: list[tuple[int, bytes]], now_ns: int) -> None: ...

    async def due_notices(self, limit: int) -> list[tuple[int, int, bytes, int]]:
        """(notice_id, participant_id, body, attempts) not yet delivered or given up."""
        ...

    async def notice_attempted(self, notice_id: int, delivered: bool, give_up: bool) -> None: ...

    async def close(self) -> None: ...
