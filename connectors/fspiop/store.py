"""What the FSPIOP hub keeps across a restart: each payer's signed prepare, until its
transfer is final.

A prepare is forwarded to the payee DFSP as the payer wrote it (bytes and signature
headers), so the payee verifies the payer, not the hub. After a restart the switch re-sends
the credit requests of transfers still waiting for their payee; the hub then needs the
original prepare again. `PrepareStore` keeps it keyed by (payer participant, transfer id),
written before the payer is answered `202` and deleted when the transfer is final; a row
left behind by a crash is pruned once its prepare has expired (`PREPARES_KEPT_PAST_EXPIRY_S`).

The backends (SQLite, the embedded default, and PostgreSQL) are the switch's
(`switch/store/fspiop_prepares.py`); the composition root hands one to the hub, which sees
only `PrepareStore`. `PrepareWriter` batches the writes of one loop turn into one transaction (one fsync
for many prepares), in the order they were asked for, so a delete never overtakes the
write it undoes. A row holds a prepare body and the headers it came with: no key, no
secret, no fulfilment (the hub recomputes its own from the ILP secret).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, Protocol

import msgspec

from connectors.fspiop import limits

log = logging.getLogger("ponte.fspiop.store")

Key = tuple[int, str]  # (payer participant id, transfer id)


class StoredPrepare(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """A prepare as the payer sent it: what the payee must get again after a restart."""

    body: bytes
    headers: list[tuple[bytes, bytes]]
    payee_participant_id: int
    transaction_id: str


encode_prepare = msgspec.msgpack.Encoder().encode
decode_prepare = msgspec.msgpack.Decoder(StoredPrepare).decode


class PrepareStore(Protocol):
    async def write(self, puts: list[tuple[Key, bytes, int]], deletes: list[Key]) -> None:
        """Puts (key, prepare, expires_at_ns) then deletes, in one transaction. A put under
        a key already stored changes nothing: the first prepare under an id is the one
        the switch recorded (a changed resend is refused)."""

    async def get_many(self, keys: list[Key]) -> dict[Key, bytes]: ...

    async def prune(self, expired_before_ns: int) -> int: ...

    async def close(self) -> None: ...


class PrepareWriter:
    """Batches the hub's writes: `put` and `delete` queue (bounded: `room()` says whether a
    put may be queued); every write asked for in one loop turn is one `store.write`, in
    order, and a put's `done()` is called once its batch is durable (or failed: logged,
    the prepare then lives in memory only, as without a store)."""

    def __init__(self, store: PrepareStore) -> None:
        self.store = store
        self._puts: list[tuple[Key, bytes, int]] = []
        self._done: list[Callable[[], None]] = []
        self._deletes: list[Key] = []
        self._task: asyncio.Task | None = None
        self.failures_total = 0

    def room(self) -> bool:
        return len(self._puts) < limits.PREPARES_UNWRITTEN_MAX

    def put(self, key: Key, prepare: StoredPrepare, expires_at_ns: int,
            done: Callable[[], None]) -> None:
        self._puts.append((key, encode_prepare(prepare), expires_at_ns))
        self._done.append(done)
        self._kick()

    def delete(self, key: Key) -> None:
        if len(self._deletes) < limits.PREPARES_UNWRITTEN_MAX:
            self._deletes.append(key)
            self._kick()
        # else: left for the pruning of expired rows

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        while self._puts or self._deletes:
            puts, self._puts = self._puts, []
            done, self._done = self._done, []
            deletes, self._deletes = self._deletes, []
            try:
                await self.store.write(puts, deletes)
            except Exception:  # noqa: BLE001 - a store failure must not lose the answers
                self.failures_total += 1
                log.exception("fspiop.prepare_store_write_failed puts=%d deletes=%d",
                              len(puts), len(deletes))
            for callback in done:
                callback()

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.store.close()
