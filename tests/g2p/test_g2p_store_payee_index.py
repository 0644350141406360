"""The G2P store finds rows by payee through an index on (batch, run of rows, short key) —
the short key an identity token's first 8 hex characters, a financial address whole: rows
whose tokens share those 8 characters are still told apart, rows are found in every run of
every batch of the programme (either side of a run's edge), the lookup uses the index (not
a scan of every row), and a store file made before the index changed gets the new index
when it is opened."""

from __future__ import annotations

import os
import sqlite3

import pytest

from switch.g2p.types import NewRow, PayeeKind
from switch.store.g2p_store import (
    _ROWS_BY_PAYEE,
    _RUN_ROWS,
    EmbeddedG2PStore,
    _payee_short,
)

TOKEN = "ab" * 32
TWIN = TOKEN[:8] + "cd" * 28  # the same short key, another person
FA = "acc-1@3"


def _row(reference: str, kind: PayeeKind, key: str, amount_minor: int) -> NewRow:
    return NewRow(reference_id=reference, payee_kind=int(kind), payee_key=key,
                  amount_minor=amount_minor)


async def test_rows_are_found_by_their_whole_payee_key(tmp_path):
    store = EmbeddedG2PStore(os.path.join(tmp_path, "g2p.sqlite3"))
    try:
        batch = await store.open_batch(7, "tx-1", "KES", 1)
        rows = [_row(f"r{n}", PayeeKind.NATIONAL_ID, f"{n:064x}", 1) for n in range(500)]
        rows += [_row("token", PayeeKind.NATIONAL_ID, TOKEN, 5),
                 _row("twin", PayeeKind.NATIONAL_ID, TWIN, 6),
                 _row("fa", PayeeKind.FINANCIAL_ADDRESS, FA, 7),
                 # A financial address that looks like the token's short key is not it.
                 _row("fa-short", PayeeKind.FINANCIAL_ADDRESS, TOKEN[:8], 8)]
        assert await store.add_rows(batch.batch_id, rows, 10_000, 1) is not None
        found = {key: [(transaction_id, view.reference_id, view.amount_minor)
                       for transaction_id, view in await store.rows_by_payee(7, key, 10)]
                 for key in (TOKEN, TWIN, FA, TOKEN[:8])}
        assert found == {TOKEN: [("tx-1", "token", 5)], TWIN: [("tx-1", "twin", 6)],
                         FA: [("tx-1", "fa", 7)], TOKEN[:8]: [("tx-1", "fa-short", 8)]}
        assert await store.rows_by_payee(8, TOKEN, 10) == []  # another programme's rows
        plan = [step[3] for step in store._db.execute(
            "EXPLAIN QUERY PLAN " + _ROWS_BY_PAYEE, (7, _payee_short(TOKEN), TOKEN, 10))]
        assert any(step.startswith("SEARCH r USING INDEX g2p_rows_payee_run") for step in plan)
        assert not any(step.split()[:2] == ["SCAN", "r"] for step in plan), plan
    finally:
        await store.close()


async def test_rows_are_found_in_every_run_of_every_batch(tmp_path):
    """A payee paid in two batches, at rows either side of a run's edge (and the first and
    last rows), is found in each, in batch and row order; another payee is not."""
    store = EmbeddedG2PStore(os.path.join(tmp_path, "g2p.sqlite3"))
    try:
        wanted = {}
        for batch_number in (1, 2):
            batch = await store.open_batch(7, f"tx-{batch_number}", "KES", 1)
            rows = [_row(f"r{n}", PayeeKind.NATIONAL_ID, f"{batch_number:02x}{n:062x}", 1)
                    for n in range(_RUN_ROWS + 3)]
            for row_no in (1, _RUN_ROWS - 1, _RUN_ROWS, _RUN_ROWS + 1, _RUN_ROWS + 3):
                rows[row_no - 1] = _row(f"p{row_no}", PayeeKind.NATIONAL_ID, TOKEN, row_no)
            wanted[batch_number] = [(f"tx-{batch_number}", f"p{row_no}", row_no)
                                    for row_no in (1, _RUN_ROWS - 1, _RUN_ROWS,
                                                   _RUN_ROWS + 1, _RUN_ROWS + 3)]
            assert await store.add_rows(batch.batch_id, rows, 1 << 20, 1) is not None
        found = [(transaction_id, view.reference_id, view.amount_minor)
                 for transaction_id, view in await store.rows_by_payee(7, TOKEN, 100)]
        assert found == wanted[1] + wanted[2]
        assert len(await store.rows_by_payee(7, TOKEN, 3)) == 3  # the limit holds
        assert await store.rows_by_payee(7, TWIN, 100) == []
    finally:
        await store.close()


@pytest.mark.parametrize("old_index", [
    "CREATE INDEX g2p_rows_payee ON g2p_rows (payee_key)",
    "CREATE INDEX g2p_rows_payee_short ON g2p_rows ((CASE payee_kind WHEN 1 THEN "
    "substr(payee_key, 1, 8) ELSE payee_key END))"])
async def test_a_store_made_with_an_earlier_index_gets_the_run_one(tmp_path, old_index):
    path = os.path.join(tmp_path, "g2p.sqlite3")
    store = EmbeddedG2PStore(path)
    batch = await store.open_batch(7, "tx-1", "KES", 1)
    await store.add_rows(batch.batch_id, [_row("token", PayeeKind.NATIONAL_ID, TOKEN, 5)],
                         10, 1)
    await store.close()
    db = sqlite3.connect(path)  # as the earlier schema left it
    db.execute("DROP INDEX g2p_rows_payee_run")
    db.execute(old_index)
    db.commit()
    db.close()
    store = EmbeddedG2PStore(path)
    try:
        names = {name for (name,) in store._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'g2p_rows'")}
        assert "g2p_rows_payee_run" in names, names
        assert not names & {"g2p_rows_payee", "g2p_rows_payee_short"}, names
        assert [view.reference_id for _, view in await store.rows_by_payee(7, TOKEN, 10)] == [
            "token"]
    finally:
        await store.close()
