"""The audit log: hash-chained, append-only, and `verify` names the first broken record,
on the embedded store and on PostgreSQL, and through `ponte admin verify-audit`."""

from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest
from click.testing import CliRunner

from admin_helpers import BANK_A, PASSWORD
from switch.admin import audit
from switch.admin.ports import AuditEntry
from switch.admin.types import AuditRecord
from switch.cli import main as ponte


async def _actions(world, count: int) -> None:
    bob = world.caller("bob")
    for _ in range(count):
        await world.service.set_status(bob, BANK_A, suspend=True)
        await world.service.set_status(bob, BANK_A, suspend=False)


async def _tamper(world, sql: str, *args) -> None:
    """What an attacker with database access does: get past the append-only triggers, then
    edit rows. The chain must still give it away."""
    store = world.store
    if hasattr(store, "connection"):  # embedded
        db = store.connection()
        db.execute("DROP TRIGGER admin_audit_no_update")
        db.execute("DROP TRIGGER admin_audit_no_delete")
        db.execute(sql.replace("$1", "?").replace("$2", "?"), args)  # same order
        return
    async with store._pool.acquire() as connection:
        await connection.execute("ALTER TABLE admin_audit DISABLE TRIGGER USER")
        await connection.execute(sql, *args)


async def test_every_record_chains_to_the_one_before(world):
    await _actions(world, 2)
    records = [r async for r in world.store.iter_audit(3)]  # small batches: paging works
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    assert records[0].prev_hash == audit.GENESIS_HASH
    for before, after in zip(records, records[1:]):
        assert after.prev_hash == before.record_hash
    result = await world.service.verify_audit()
    assert result.ok
    assert result.records_checked == len(records)


async def test_an_edited_record_is_named_by_verify(world):
    await _actions(world, 3)
    head, _ = await world.store.audit_head()
    victim = head - 2
    await _tamper(world, "UPDATE admin_audit SET actor = $1 WHERE seq = $2", "mallory", victim)
    result = await world.service.verify_audit()
    assert not result.ok
    assert result.first_broken_seq == victim
    assert result.records_checked == victim - 1
    assert "contents" in result.reason


async def test_a_deleted_record_is_named_by_verify(world):
    await _actions(world, 2)
    head, _ = await world.store.audit_head()
    await _tamper(world, "DELETE FROM admin_audit WHERE seq = $1", head - 1)
    result = await world.service.verify_audit()
    assert not result.ok
    assert result.first_broken_seq == head - 1
    assert "expected record" in result.reason


async def test_a_resealed_record_breaks_the_next_link(world):
    """Recomputing the edited record's own hash is not enough: its successor points at the
    old hash."""
    await _actions(world, 2)
    records = [r async for r in world.store.iter_audit(100)]
    victim = records[3]
    forged = audit.seal(victim.prev_hash, victim.seq, victim.at_ns, "mallory", victim.action,
                        victim.target, victim.result, victim.detail, victim.client)
    # Three parameters: written per store rather than through `_tamper`.
    store = world.store
    if hasattr(store, "connection"):
        db = store.connection()
        db.execute("DROP TRIGGER admin_audit_no_update")
        db.execute("UPDATE admin_audit SET actor = ?, record_hash = ? WHERE seq = ?",
                   ("mallory", forged.record_hash, victim.seq))
    else:
        async with store._pool.acquire() as connection:
            await connection.execute("ALTER TABLE admin_audit DISABLE TRIGGER USER")
            await connection.execute(
                "UPDATE admin_audit SET actor = $1, record_hash = $2 WHERE seq = $3",
                "mallory", forged.record_hash, victim.seq)
    result = await world.service.verify_audit()
    assert not result.ok
    assert result.first_broken_seq == victim.seq + 1
    assert "prev_hash" in result.reason


async def _approved_fund(world) -> None:
    """One maker-checker execution: it anchors the audit head in the switch's journal."""
    from switch.admin.types import Decision, FundProposal

    proposal = await world.service.propose(world.caller("bob"), FundProposal(
        participant_id=BANK_A, currency="BRL", amount_minor=100))
    await world.service.decide(world.caller("carol"), proposal.proposal_id,
                               Decision(approve=True))


async def test_every_execution_anchors_the_audit_head_in_the_switch(world):
    await _approved_fund(world)
    head_seq, head_hash = await world.store.audit_head()
    assert world.switch.core.audit_anchor() == (head_seq, head_hash.hex())
    result = await world.service.verify_audit()
    assert result.ok and result.anchored_seq == head_seq


async def test_a_truncated_tail_is_detected_through_the_anchor(world):
    await _approved_fund(world)
    anchored_seq, _ = world.switch.core.audit_anchor()
    await _actions(world, 1)  # newer records, past the anchor
    assert (await world.service.verify_audit()).ok
    # Remove the anchored record and everything after it: what is left is a valid chain.
    await _tamper(world, "DELETE FROM admin_audit WHERE seq >= $1", anchored_seq - 1)
    result = await world.service.verify_audit()
    assert not result.ok
    assert result.first_broken_seq == anchored_seq - 1
    assert result.records_checked == anchored_seq - 2
    assert "anchored" in result.reason


async def test_a_rewritten_anchored_record_is_detected_even_resealed_to_the_end(world):
    """Rewriting the chain from some record on (recomputing every later hash) leaves a valid
    chain, but not the anchored hash."""
    await _approved_fund(world)
    anchored_seq, _ = world.switch.core.audit_anchor()
    records = [r async for r in world.store.iter_audit(1000)]
    prev = records[0].prev_hash
    forged = []
    for record in records:
        actor = "mallory" if record.seq == 1 else record.actor
        sealed = audit.seal(prev, record.seq, record.at_ns, actor, record.action, record.target,
                            record.result, record.detail, record.client)
        forged.append(sealed)
        prev = sealed.record_hash
    await _tamper(world, "DELETE FROM admin_audit WHERE seq >= $1", 1)
    for record in forged:
        await _insert_raw(world, record)
    result = await world.service.verify_audit()
    assert not result.ok
    assert result.first_broken_seq == anchored_seq
    assert "anchored" in result.reason


async def _insert_raw(world, record) -> None:
    from switch.store.admin_rows import AUDIT_COLUMNS, audit_row

    row = audit_row(record)
    store = world.store
    if hasattr(store, "connection"):
        marks = ", ".join("?" * len(row))
        store.connection().execute(f"INSERT INTO admin_audit ({AUDIT_COLUMNS}) VALUES ({marks})",
                                   row)
        return
    marks = ", ".join(f"${n}" for n in range(1, len(row) + 1))
    await store._pool.execute(f"INSERT INTO admin_audit ({AUDIT_COLUMNS}) VALUES ({marks})",
                              *row)


async def test_the_store_refuses_to_update_or_delete_audit_rows(world):
    await _actions(world, 1)
    store = world.store
    if hasattr(store, "connection"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.connection().execute("UPDATE admin_audit SET actor = 'x' WHERE seq = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store.connection().execute("DELETE FROM admin_audit WHERE seq = 1")
    else:
        for sql in ("UPDATE admin_audit SET actor = 'x' WHERE seq = 1",
                    "DELETE FROM admin_audit WHERE seq = 1", "TRUNCATE admin_audit"):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await store._pool.execute(sql)
    assert (await world.service.verify_audit()).ok


async def test_concurrent_appends_keep_one_chain(world):
    entries = [AuditEntry(at_ns=world.clock(), actor=f"op{i}", action="test.append",
                          target="t", result="OK") for i in range(20)]
    await asyncio.gather(*(world.store.append_audit(entry) for entry in entries))
    result = await world.service.verify_audit()
    assert result.ok
    assert result.records_checked == (await world.store.audit_head())[0]


def test_the_canonical_body_is_unambiguous():
    # Fields that concatenate to the same text must not seal to the same hash.
    a = audit.seal(audit.GENESIS_HASH, 1, 5, "ab", "c", "t", "OK", "", "")
    b = audit.seal(audit.GENESIS_HASH, 1, 5, "a", "bc", "t", "OK", "", "")
    assert a.record_hash != b.record_hash
    checked = audit.verify_chain([a])
    assert checked.ok
    broken = AuditRecord(**{**{f: getattr(a, f) for f in a.__struct_fields__}, "seq": 2})
    assert audit.verify_chain([broken]).first_broken_seq == 1


def test_verify_audit_command_names_the_first_broken_record(tmp_path):
    runner = CliRunner()
    data_dir = str(tmp_path)
    for name in ("root", "second"):
        created = runner.invoke(ponte, ["admin", "create-user", "--data-dir", data_dir,
                                        "--username", name, "--password-stdin"],
                                input=PASSWORD + "\n")
        assert created.exit_code == 0, created.output
        assert f"created admin {name}" in created.output
        assert PASSWORD not in created.output
    intact = runner.invoke(ponte, ["admin", "verify-audit", "--data-dir", data_dir])
    assert intact.exit_code == 0, intact.output
    assert "intact: 2 records" in intact.output

    db = sqlite3.connect(str(tmp_path / "admin.sqlite3"))
    db.execute("DROP TRIGGER admin_audit_no_update")
    db.execute("UPDATE admin_audit SET target = 'user:mallory' WHERE seq = 1")
    db.commit()
    db.close()
    broken = runner.invoke(ponte, ["admin", "verify-audit", "--data-dir", data_dir])
    assert broken.exit_code == 1
    assert "BROKEN at record 1" in broken.output


def test_create_user_refuses_a_short_password_and_writes_nothing(tmp_path):
    runner = CliRunner()
    result = runner.invoke(ponte, ["admin", "create-user", "--data-dir", str(tmp_path),
                                   "--username", "root", "--password-stdin"], input="short\n")
    assert result.exit_code != 0
    assert "VALIDATION_ERROR" in result.output
    assert not (tmp_path / "admin.sqlite3").exists()
