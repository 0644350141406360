"""Durability around the in-memory ledger: `DurableLedger` journals every batch it applies,
and `recover()` rebuilds a ledger from the newest snapshot plus the journal after it.

Start-up = load the newest valid snapshot, verify the journal chain (including the link from
the snapshot's record hash), replay the records after the snapshot into a fresh ledger,
compare every replayed answer with the answer recorded in the journal, check invariants.

DurableLedger must never let a result out before the commit() that covers it returns: its
create_* methods return results the caller has to hold until then. It never writes to the
journal something the ledger did not apply, nor applies what the journal refused.
"""

from __future__ import annotations

import logging
from typing import Callable

import msgspec

from ledger.config import LedgerConfig
from ledger.journal import FileJournal
from ledger.journal_format import (
    GENESIS,
    KIND_OPAQUE_MIN,
    JournalBufferFull,
    JournalCorrupt,
    JournalError,
    JournalPosition,
    Record,
    RecordKind,
    RecordProblem,
    validate_append,
)
from ledger.journal_payload import (
    EXPIRED_ID_BYTES,
    PREFIX_BYTES,
    PayloadInvalid,
    batch_payload_bytes_max,
    decode_batch,
    decode_expired,
    encode_batch,
    encode_expired,
)
from ledger.snapshot import FileSnapshotStore, Snapshot, SnapshotError

logger = logging.getLogger("ponte.ledger.recovery")


class RecoveryError(Exception):
    """Start-up cannot rebuild a trustworthy ledger; the message names the position."""


class ReplayDiverged(RecoveryError):
    """Replaying a record gave a different answer than the one recorded when it was applied:
    the ledger code or its configuration changed, or the record was forged."""

    def __init__(self, sequence: int, detail: str) -> None:
        self.sequence = sequence
        super().__init__(f"replay diverged at sequence={sequence}: {detail}")


class SnapshotMismatch(RecoveryError):
    """The snapshot claims a journal record the journal does not have."""


class DurableLedgerBroken(JournalError):
    """The ledger applied a batch the journal then could not take; only recovery helps."""


def _default_ledger_class():
    from ledger import Ledger

    return Ledger


def _results_as_ints(results) -> list[tuple[int, int]]:
    return [(index, int(result)) for index, result in results]


def apply_record(ledger, record: Record) -> None:
    """Replay one ledger record into `ledger`, checking it answers as it did the first time.

    Opaque records (kind >= 16) belong to the switch and are not the ledger's business.
    """
    kind = record.kind
    if kind >= KIND_OPAQUE_MIN:
        return
    try:
        if kind == RecordKind.EXPIRE_PENDING:
            timestamp_base, expected_ids = decode_expired(record.payload)
        else:
            batch = decode_batch(record.payload)
            timestamp_base = batch.timestamp_base
    except PayloadInvalid as error:
        raise ReplayDiverged(record.sequence, f"payload does not parse: {error}") from error
    base = max(record.now_ns, ledger.last_timestamp + 1)
    if base != timestamp_base:
        raise ReplayDiverged(
            record.sequence, f"timestamp_base={base} but the journal recorded {timestamp_base}"
        )
    if kind == RecordKind.EXPIRE_PENDING:
        expired = ledger.expire_pending(record.now_ns)
        if list(expired) != expected_ids:
            raise ReplayDiverged(record.sequence, "expire_pending expired other transfers")
        return
    if kind == RecordKind.CREATE_TRANSFERS:
        results = ledger.create_transfers(batch.events, record.now_ns)
    else:
        assert kind == RecordKind.CREATE_ACCOUNTS, kind
        results = ledger.create_accounts(batch.events, record.now_ns)
    replayed = _results_as_ints(results)
    if replayed != batch.failures:
        first = next(
            (pair for pair in zip(replayed, batch.failures) if pair[0] != pair[1]),
            (replayed[len(batch.failures):len(batch.failures) + 1],
             batch.failures[len(replayed):len(replayed) + 1]),
        )
        raise ReplayDiverged(
            record.sequence, f"results differ: replayed {first[0]} recorded {first[1]}"
        )


class DurableLedger:
    """A ledger whose every batch is appended to a journal in the same call.

    Use: `results = durable.create_transfers(batch, now_ns)`, then `durable.commit()` (await
    it with the PostgreSQL journal), and only then reveal `results`. Lookups read the
    in-memory ledger, which may be ahead of the durable journal until commit() returns.
    """

    def __init__(self, ledger, journal) -> None:
        self.ledger = ledger
        self.journal = journal
        self._broken: BaseException | None = None
        # The ledger's state must be exactly the journal's records: nothing buffered that
        # the ledger has not seen, nothing applied that the journal lacks.
        assert journal.buffered_records == 0

    # -- writes ----------------------------------------------------------------------------

    def _check_room(self, kind: int, now_ns: int, payload_bytes_max: int) -> None:
        # Everything that could make append() refuse is checked before the ledger changes.
        if self._broken is not None:
            raise DurableLedgerBroken(f"an earlier append failed: {self._broken}")
        self.journal.check_writable()
        validate_append(kind, now_ns, payload_bytes_max)
        if not self.journal.room_for(payload_bytes_max):
            raise JournalBufferFull(
                f"buffered_records={self.journal.buffered_records}: commit() first"
            )

    def _append(self, kind: int, now_ns: int, payload: bytes) -> int:
        try:
            return self.journal.append(kind, now_ns, payload)
        except BaseException as error:
            # The ledger already holds this batch: it and the journal now disagree.
            self._broken = error
            raise DurableLedgerBroken(f"journal refused an applied batch: {error}") from error

    def _apply_batch(self, kind: RecordKind, apply: Callable, batch, now_ns: int):
        batch_bytes = memoryview(batch).nbytes
        self._check_room(kind, now_ns, batch_payload_bytes_max(batch_bytes))
        timestamp_base = max(now_ns, self.ledger.last_timestamp + 1)
        results = apply(batch, now_ns)  # ValueError for a malformed batch: nothing changed
        self._append(kind, now_ns, encode_batch(batch, timestamp_base, results))
        return results

    def create_accounts(self, batch, now_ns: int):
        return self._apply_batch(RecordKind.CREATE_ACCOUNTS, self.ledger.create_accounts,
                                 batch, now_ns)

    def create_transfers(self, batch, now_ns: int):
        return self._apply_batch(RecordKind.CREATE_TRANSFERS, self.ledger.create_transfers,
                                 batch, now_ns)

    def expire_pending(self, now_ns: int) -> list[int]:
        # Sized for the worst case: every pending transfer expiring at once.
        payload_bytes_max = PREFIX_BYTES + EXPIRED_ID_BYTES * self.ledger.pending_count
        self._check_room(RecordKind.EXPIRE_PENDING, now_ns, payload_bytes_max)
        timestamp_base = max(now_ns, self.ledger.last_timestamp + 1)
        expired = self.ledger.expire_pending(now_ns)
        if expired:
            # Nothing expired leaves the state untouched (no timestamp is consumed), so
            # there is nothing to journal.
            self._append(RecordKind.EXPIRE_PENDING, now_ns,
                         encode_expired(timestamp_base, expired))
        return expired

    def commit(self):
        """Make everything applied so far durable. FileJournal: returns the last durable
        sequence; PostgresJournal: returns an awaitable of it."""
        return self.journal.commit()

    def snapshot(self, store):
        """Write the ledger's state to `store` as covering the durable journal position.

        Refuses while records are buffered or a commit is in flight: the state would then
        include batches the journal may still lose. Returns what store.write returns (an
        awaitable for the PostgreSQL store)."""
        journal = self.journal
        if journal.buffered_records or journal.appended_position != journal.position:
            raise SnapshotError("commit() before snapshot(): records are not durable yet")
        return store.write(self.ledger.snapshot(), journal.position)

    # -- reads -----------------------------------------------------------------------------

    def lookup_accounts(self, ids):
        return self.ledger.lookup_accounts(ids)

    def lookup_transfers(self, ids):
        return self.ledger.lookup_transfers(ids)

    def pending_status(self, transfer_id: int):
        return self.ledger.pending_status(transfer_id)

    def get_account_history(self, account_id: int, limit: int):
        return self.ledger.get_account_history(account_id, limit)

    def totals(self):
        return self.ledger.totals()

    def check_invariants(self) -> None:
        self.ledger.check_invariants()

    def digest(self) -> bytes:
        return self.ledger.digest()


class Recovered(msgspec.Struct, kw_only=True):
    """What start-up rebuilt: the ledger, the journal open for appending, and how."""

    ledger: object
    journal: object
    durable: DurableLedger
    position: JournalPosition
    snapshot_sequence: int
    records_replayed: int


class _Replayer:
    """Feeds verified records after the snapshot into the ledger, checking the snapshot's
    own record is the one the journal holds."""

    def __init__(self, ledger, snapshot: Snapshot | None,
                 on_opaque_record: Callable[[Record], None] | None) -> None:
        self.ledger = ledger
        self.snapshot_position = snapshot.position if snapshot is not None else GENESIS
        self.on_opaque_record = on_opaque_record
        self.records_replayed = 0

    def __call__(self, record: Record) -> None:
        position = self.snapshot_position
        if record.sequence < position.sequence:
            return
        if record.sequence == position.sequence:
            if record.record_hash != position.record_hash:
                raise SnapshotMismatch(
                    f"snapshot covers sequence={position.sequence} but the journal's record "
                    f"there has another hash (offset={record.offset})"
                )
            return
        if record.kind >= KIND_OPAQUE_MIN:
            if self.on_opaque_record is not None:
                self.on_opaque_record(record)
            self.records_replayed += 1
            return
        apply_record(self.ledger, record)
        self.records_replayed += 1

    def finish(self, end: JournalPosition) -> None:
        position = self.snapshot_position
        if end.sequence < position.sequence:
            raise JournalCorrupt(
                RecordProblem.MISSING_RECORDS, end.sequence + 1, end.offset or None,
                f"the journal ends before sequence={position.sequence} that the snapshot "
                f"covers",
            )
        # Verified from genesis, the snapshot's own record was compared in __call__; verified
        # from the snapshot's position, the scanner checked the first record after it links
        # to the snapshot's hash.
        self.ledger.check_invariants()


def _load_ledger(snapshot: Snapshot | None, config: LedgerConfig | None, ledger_class):
    if ledger_class is None:
        ledger_class = _default_ledger_class()
    if snapshot is None:
        return ledger_class(config)
    try:
        return ledger_class.from_snapshot(snapshot.state, config)
    except ValueError as error:
        raise RecoveryError(f"snapshot {snapshot.source} does not load: {error}") from error


def _recovered(ledger, journal, replayer: _Replayer, where: str) -> Recovered:
    logger.info(
        "ledger_recovered journal=%s snapshot_sequence=%d records_replayed=%d "
        "last_sequence=%d accounts=%d",
        where, replayer.snapshot_position.sequence, replayer.records_replayed,
        journal.position.sequence, ledger.account_count,
    )
    return Recovered(
        ledger=ledger, journal=journal, durable=DurableLedger(ledger, journal),
        position=journal.position, snapshot_sequence=replayer.snapshot_position.sequence,
        records_replayed=replayer.records_replayed,
    )


def recover(
    journal_path: str,
    snapshot_directory: str | None = None,
    *,
    config: LedgerConfig | None = None,
    ledger_class=None,
    verify_from_genesis: bool = True,
    on_opaque_record: Callable[[Record], None] | None = None,
    **journal_options,
) -> Recovered:
    """Rebuild the ledger from `snapshot_directory` and the journal file; open the journal.

    With `verify_from_genesis` (the default) every record's checksum and chain link is
    verified, which costs one SHA-256 pass over the whole journal (~0.55 ms per MB here)
    but no replay; with False, verification starts at the snapshot's recorded position and
    start-up time is bounded by the records written since the snapshot.
    """
    store = FileSnapshotStore(snapshot_directory) if snapshot_directory else None
    snapshot = store.load_newest() if store is not None else None
    ledger = _load_ledger(snapshot, config, ledger_class)
    replayer = _Replayer(ledger, snapshot, on_opaque_record)
    start = GENESIS
    if snapshot is not None and not verify_from_genesis:
        start = snapshot.position
    journal = FileJournal.open(journal_path, start=start, on_record=replayer,
                               **journal_options)
    try:
        replayer.finish(journal.position)
    except BaseException:
        journal.close()
        raise
    return _recovered(ledger, journal, replayer, journal_path)


async def recover_postgres(
    dsn: str,
    *,
    name: str = "ledger",
    config: LedgerConfig | None = None,
    ledger_class=None,
    verify_from_genesis: bool = True,
    on_opaque_record: Callable[[Record], None] | None = None,
    **journal_options,
) -> Recovered:
    """`recover()` for the PostgreSQL journal and snapshot tables of journal `name`.

    The returned journal is a PostgresJournal: `await recovered.durable.commit()`.
    """
    from ledger.journal_postgres import PostgresJournal, PostgresSnapshotStore

    snapshot = await PostgresSnapshotStore(dsn, name).load_newest()
    ledger = _load_ledger(snapshot, config, ledger_class)
    replayer = _Replayer(ledger, snapshot, on_opaque_record)
    start = GENESIS
    if snapshot is not None and not verify_from_genesis:
        start = snapshot.position
    journal = await PostgresJournal.open(dsn, name=name, start=start, on_record=replayer,
                                         **journal_options)
    try:
        replayer.finish(journal.position)
    except BaseException:
        await journal.close()
        raise
    return _recovered(ledger, journal, replayer, f"postgresql:{name}")
