"""`switch.store.embedded.execute_rows`: many rows a statement, with what executemany gave —
every row applied once, in order (a key twice: the later row wins), the parameters after
the VALUES list bound last, the rows changed counted. (Why it exists — a busy event loop
starves executemany's thread — is measured in docs/g2p.md, not asserted here.)"""

from __future__ import annotations

import sqlite3
import pytest

from switch.store.embedded import ROWS_PER_STATEMENT_MAX, execute_rows


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER, d BLOB, stamp INTEGER, "
               "PRIMARY KEY (a, b))")
    return db


@pytest.mark.parametrize("count", [0, 1, 2, 3, 255, 256, 257, 700, 1_000])
def test_every_row_is_written_once_with_the_trailing_parameters(count):
    db = _db()
    rows = [(n % 7, f"k{n}", n, bytes([n % 256]) * 3) for n in range(count)]
    changed = execute_rows(
        db, lambda values: f"WITH v(a, b, c, d) AS (VALUES {values}) "
        "INSERT INTO t SELECT a, b, c, d, ? FROM v", rows, 42)
    assert changed == count
    assert db.execute("SELECT a, b, c, d FROM t ORDER BY c").fetchall() == [
        (a, b, c, d) for a, b, c, d in rows]
    assert {stamp for (stamp,) in db.execute("SELECT stamp FROM t")} <= {42}


def test_a_key_twice_ends_with_the_later_row_as_executemany_did():
    db = _db()
    rows = [(1, "x", 1, b"one"), (1, "y", 2, b"two"), (1, "x", 3, b"three")]
    rows += [(2, f"k{n}", n, b"") for n in range(ROWS_PER_STATEMENT_MAX)]  # across chunks
    rows += [(1, "y", 4, b"four")]
    execute_rows(db, lambda values: f"INSERT INTO t (a, b, c, d) VALUES {values} ON CONFLICT "
                 "(a, b) DO UPDATE SET c = excluded.c, d = excluded.d", rows)
    reference = _db()
    reference.executemany("INSERT INTO t (a, b, c, d) VALUES (?, ?, ?, ?) ON CONFLICT (a, b) "
                          "DO UPDATE SET c = excluded.c, d = excluded.d", rows)
    query = "SELECT a, b, c, d FROM t ORDER BY a, b"
    assert db.execute(query).fetchall() == reference.execute(query).fetchall()
    assert db.execute("SELECT c, d FROM t WHERE a = 1 ORDER BY b").fetchall() == [
        (3, b"three"), (4, b"four")]


def test_an_update_from_the_values_list_changes_only_the_rows_it_names():
    db = _db()
    execute_rows(db, lambda values: f"INSERT INTO t (a, b, c, d) VALUES {values}",
                 [(1, f"k{n}", 0, b"") for n in range(600)])
    changed = execute_rows(
        db, lambda values: f"WITH v(a, b, c) AS (VALUES {values}) UPDATE t SET c = v.c, "
        "stamp = ? FROM v WHERE t.a = v.a AND t.b = v.b AND t.c = 0",
        [(1, f"k{n}", n + 1) for n in range(0, 600, 2)] + [(9, "absent", 5)], 7)
    assert changed == 300
    assert db.execute("SELECT count(*), sum(c) FROM t WHERE stamp = 7").fetchone() == (
        300, sum(n + 1 for n in range(0, 600, 2)))
    assert db.execute("SELECT count(*) FROM t WHERE c = 0 AND stamp IS NULL").fetchone() == (
        300,)
