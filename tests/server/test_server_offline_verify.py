"""`ponte journal verify` on a file journal whose oldest segments were deleted by policy:
the remaining chain starts at a segment's base, and the oldest retained snapshot may cover
exactly that record (the switch rotates and snapshots at the same quiet point). That
snapshot is on the chain — its record's hash is the segment's base hash — and must be
reported so, not as off the chain. A real in-process switch and real files."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from ledger.journal_format import JournalPosition
from ledger.journal_segments import list_segments
from ledger.snapshot import FileSnapshotStore
from switch.cli import main as ponte
from switch.server.config import load_config
from switch.server.offline import Replay, file_records
from switch.server.snapshots import SNAPSHOT_DIRECTORY, encode_server_snapshot
from switch.testing import onboard, start_test_server

from test_server_snapshots import pay

SEGMENTS = {"snapshots_enabled": False, "journal_segment_bytes_max": 4 * 1024}


async def test_verify_accepts_a_snapshot_at_the_base_of_the_oldest_remaining_segment(tmp_path):
    server = await start_test_server(str(tmp_path), **SEGMENTS)
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        await pay(server, participants, "first", 300)
    finally:
        await server.stop(drain_s=0)
    journal_dir = str(tmp_path / "journal")
    segments = list_segments(journal_dir)
    assert len(segments) >= 3
    kept = segments[len(segments) // 2]
    # The snapshot a switch takes right after rotating into `kept`: the core replayed up to
    # the record `kept` starts after.
    config = load_config(None, environ={}, data_dir=str(tmp_path))
    replay = Replay(config, [], segments[0].base)
    for record in file_records(str(tmp_path)):
        if record.sequence > kept.base.sequence:
            break
        replay.feed(record)
    position = JournalPosition(sequence=kept.base.sequence,
                               record_hash=kept.base.record_hash)
    assert replay.head == position
    FileSnapshotStore(os.path.join(str(tmp_path), SNAPSHOT_DIRECTORY)).write(
        encode_server_snapshot(replay.core, replay.archive, position), position)
    for segment in segments:  # journal_archive = "delete" of what the snapshot covers
        if segment.base.sequence < kept.base.sequence:
            os.unlink(segment.path)

    result = CliRunner().invoke(ponte, ["journal", "verify", "--data-dir", str(tmp_path),
                                        "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [(s["sequence"], s["problem"]) for s in report["snapshots"]] == [
        (kept.base.sequence, "")]
    assert report["invariants"] and report["rebuilt_from"] == kept.base.sequence
