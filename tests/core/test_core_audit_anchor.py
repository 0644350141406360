"""The operator audit log's anchor in the core: `AuditAnchored` keeps the newest (seq, hash)
of the audit chain in the journaled state, so a truncated audit table can be detected later.

The anchor only moves forward, survives replay and snapshots, and a refused anchor changes
nothing."""

from __future__ import annotations

import msgspec

from switch.core import SwitchCore
from switch.core.messages import AuditAnchored, Event
from switch.core.results import Result

HASH_A = "a" * 64
HASH_B = "b" * 64


def test_the_newest_anchor_is_kept_and_exposed(world):
    assert world.core.audit_anchor() is None
    world.admin_ok(AuditAnchored(request_id="anchor-3", audit_seq=3, audit_hash=HASH_A))
    assert world.core.audit_anchor() == (3, HASH_A)
    world.admin_ok(AuditAnchored(request_id="anchor-9", audit_seq=9, audit_hash=HASH_B))
    assert world.core.audit_anchor() == (9, HASH_B)


def test_an_anchor_never_moves_back_or_forks(world):
    world.admin_ok(AuditAnchored(request_id="anchor-9", audit_seq=9, audit_hash=HASH_A))
    behind = world.admin(AuditAnchored(request_id="anchor-4", audit_seq=4, audit_hash=HASH_B))
    assert behind.result == Result.VALIDATION_ERROR
    forked = world.admin(AuditAnchored(request_id="anchor-9b", audit_seq=9, audit_hash=HASH_B))
    assert forked.result == Result.VALIDATION_ERROR
    assert world.core.audit_anchor() == (9, HASH_A)
    # The same head anchored again (a resend, or nothing new since) is fine.
    world.admin_ok(AuditAnchored(request_id="anchor-9c", audit_seq=9, audit_hash=HASH_A))


def test_a_malformed_anchor_is_refused_and_changes_nothing(world):
    for seq, digest in ((0, HASH_A), (5, "A" * 64), (5, "a" * 63), (5, "")):
        answer = world.admin(AuditAnchored(request_id="bad", audit_seq=seq, audit_hash=digest))
        assert answer.result == Result.VALIDATION_ERROR
    assert world.core.audit_anchor() is None


def test_the_anchor_survives_replay_and_snapshots(world, ledger_cls):
    world.admin_ok(AuditAnchored(request_id="anchor-7", audit_seq=7, audit_hash=HASH_A))
    # Through the journal's encoding, as the server replays it.
    encoded = msgspec.msgpack.encode([event for _at, event in world.events])
    events = msgspec.msgpack.decode(encoded, type=list[Event])
    replayed = SwitchCore(world.config, ledger_cls(world.ledger.config))
    replayed.replay(zip([at for at, _e in world.events], events))
    assert replayed.audit_anchor() == (7, HASH_A)
    restored, _ = SwitchCore.from_snapshot(world.config, ledger_cls, world.core.snapshot(0))
    assert restored.audit_anchor() == (7, HASH_A)
