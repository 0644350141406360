"""The switch's durable state read offline, for operators and auditors: the journal's
segments (or PostgreSQL rows) verified end to end, the snapshots checked against the chain,
and a core rebuilt from the newest usable snapshot plus the journal after it — without a
running switch and without writing anything.

`ponte journal verify` and `ponte journal inspect` (switch/server/cli.py) and `ponte admin
verify-audit` use it. It must never open a journal for writing or change a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import msgspec

import ledger as ledger_package
from ledger.journal_format import GENESIS, JournalCorrupt, JournalPosition, Record
from ledger.journal import read_records
from ledger.journal_segments import list_segments, read_directory
from ledger.snapshot import FileSnapshotStore
from switch.core import SwitchCore
from switch.core.results import ProtocolError
from switch.server.config import ServerConfig
from switch.server.journal import JOURNAL_DIRECTORY, LEGACY_JOURNAL_FILE, decode_tick
from switch.server.shell import OutcomeArchive
from switch.server.snapshots import SNAPSHOT_DIRECTORY, decode_server_snapshot


@dataclass
class SnapshotCheck:
    path: str
    sequence: int
    problem: str = ""  # "" when it decodes, chains to the journal and equals its replay


@dataclass
class OfflineState:
    head: JournalPosition
    records: int  # records read and verified
    segments: int
    archived_segments: int
    core: SwitchCore | None
    snapshots: list[SnapshotCheck] = field(default_factory=list)
    rebuilt_from: int = 0  # the snapshot sequence the core was rebuilt from (0: genesis)


def file_records(data_dir: str, start: JournalPosition = GENESIS):
    """Every verified record of the data directory's journal after `start`, read-only (a
    journal from before segments, one `switch.journal` file, is read where it is)."""
    directory = os.path.join(data_dir, JOURNAL_DIRECTORY)
    legacy = os.path.join(data_dir, LEGACY_JOURNAL_FILE)
    if not (os.path.isdir(directory) and list_segments(directory)) and os.path.exists(legacy):
        return read_records(legacy, start=start) if start.sequence == 0 else iter(())
    return read_directory(directory, start=start)


def verify_file_journal(config: ServerConfig) -> OfflineState:
    """Read the whole file journal (archived segments included); check every snapshot
    against it; rebuild the core from the newest snapshot that checks and replay the rest.
    Raises JournalCorrupt naming the segment for damage."""
    data_dir = config.data_dir
    directory = os.path.join(data_dir, JOURNAL_DIRECTORY)
    segments = list_segments(directory) if os.path.isdir(directory) else []
    store = FileSnapshotStore(os.path.join(data_dir, SNAPSHOT_DIRECTORY))
    snapshots = list(store.snapshots())
    checks: list[SnapshotCheck] = []
    usable = []
    for path, snapshot in snapshots:
        if isinstance(snapshot, str):
            checks.append(SnapshotCheck(path, -1, snapshot))
            continue
        usable.append((path, snapshot))
    positions = {snapshot.position.sequence: (path, snapshot) for path, snapshot in usable}
    state = OfflineState(head=GENESIS, records=0, segments=len(segments),
                         archived_segments=sum(s.archived for s in segments), core=None)
    # Where the oldest available segment starts: the journal's verified prefix begins there.
    oldest = segments[0].base if segments else GENESIS
    rebuild = None
    for path, snapshot in usable:  # newest first: the newest reachable one rebuilds the core
        if snapshot.position.sequence >= oldest.sequence:
            rebuild = (path, snapshot)
            break
    core = None
    step = None
    if rebuild is None:
        if oldest.sequence == 0:
            core, step = _fresh_core(config)
    else:
        core, step = _core_from(config, rebuild[1])
        state.rebuilt_from = rebuild[1].position.sequence
    seen_sequences = {}
    for record in file_records(data_dir, start=oldest):
        state.records += 1
        state.head = JournalPosition(sequence=record.sequence, record_hash=record.record_hash)
        if record.sequence in positions:
            seen_sequences[record.sequence] = record.record_hash
        if step is not None and record.sequence > state.rebuilt_from:
            _apply(step, record)
    for path, snapshot in usable:
        sequence = snapshot.position.sequence
        check = SnapshotCheck(path, sequence)
        if sequence < oldest.sequence:
            check.problem = "covers records no segment holds any more (cannot be re-verified)"
        elif sequence > state.head.sequence:
            check.problem = f"covers record {sequence}, beyond the journal's end"
        elif sequence > 0 and seen_sequences.get(sequence) != snapshot.position.record_hash:
            check.problem = "its journal record hash is not the journal's (off the chain)"
        else:
            try:
                decode_server_snapshot(snapshot.state)
            except (msgspec.DecodeError, ValueError) as error:
                check.problem = f"state does not decode: {error}"
        checks.append(check)
    state.snapshots = sorted(checks, key=lambda c: c.sequence, reverse=True)
    if core is not None:
        core.check_invariants()
    state.core = core
    return state


def _fresh_core(config: ServerConfig):
    archive = OutcomeArchive(config.outcomes_archived_max, config.core)
    core = SwitchCore(config.core, ledger_package.Ledger(config.ledger), observer=archive.observe)
    archive.bind(core)
    return core, core.step


def _core_from(config: ServerConfig, snapshot):
    saved = decode_server_snapshot(snapshot.state)
    archive = OutcomeArchive(config.outcomes_archived_max, config.core).restore(saved.archive)
    core, _ = SwitchCore.from_snapshot(config.core, ledger_package.Ledger, saved.core,
                                       observer=archive.observe)
    archive.bind(core)
    return core, core.step


def _apply(step, record: Record) -> None:
    for now_ns, event in decode_tick(record):
        try:
            step(event, now_ns)
        except ProtocolError:
            pass


__all__ = ["JournalCorrupt", "OfflineState", "SnapshotCheck", "file_records",
           "verify_file_journal"]
