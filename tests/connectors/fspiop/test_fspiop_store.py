"""The FSPIOP prepare store, on both backends (SQLite and PostgreSQL): the first prepare
under an id is kept, deletes follow the writes they undo, expired rows are pruned, and the
writer makes one transaction of what is asked in one loop turn."""

from __future__ import annotations

import asyncio

import pytest

from connectors.fspiop.store import PrepareWriter, StoredPrepare, decode_prepare, encode_prepare
from switch.store.fspiop_prepares import EmbeddedPrepareStore, PostgresPrepareStore
from switch.store.migrate import migrate_dsn

pytestmark = pytest.mark.asyncio


def _prepare(body: bytes) -> StoredPrepare:
    return StoredPrepare(body=body, headers=[(b"fspiop-signature", b"{...}")],
                         payee_participant_id=2, transaction_id="t-1")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path) -> str:
    """A path for SQLite, or the DSN of a new PostgreSQL database (sync: the DSN fixture
    runs its own event loop)."""
    if request.param == "sqlite":
        return str(tmp_path / "fspiop.sqlite3")
    return request.getfixturevalue("postgres_dsn")


@pytest.fixture
async def store(backend):
    if backend.startswith("postgres"):
        await migrate_dsn(backend)
        opened = await PostgresPrepareStore.connect(backend)
    else:
        opened = EmbeddedPrepareStore(backend)
    yield opened
    await opened.close()


async def test_first_prepare_kept_deletes_ordered_expired_pruned(store):
    first, changed = encode_prepare(_prepare(b"first")), encode_prepare(_prepare(b"changed"))
    await store.write([((1, "a"), first, 100), ((1, "b"), first, 5_000)], [])
    await store.write([((1, "a"), changed, 100)], [])  # a changed resend: refused, not kept
    found = await store.get_many([(1, "a"), (1, "b"), (9, "none")])
    assert set(found) == {(1, "a"), (1, "b")}
    assert decode_prepare(found[(1, "a")]).body == b"first"
    # A write and the delete that undoes it, in one transaction: the row is gone.
    await store.write([((2, "c"), first, 100)], [(2, "c"), (1, "b")])
    assert set(await store.get_many([(1, "a"), (1, "b"), (2, "c")])) == {(1, "a")}
    await store.write([((3, "d"), first, 9_000)], [])
    assert await store.prune(1_000) == 1  # (1, "a") expired long ago
    assert set(await store.get_many([(1, "a"), (3, "d")])) == {(3, "d")}


async def test_the_writer_batches_a_loop_turn_and_calls_back_when_durable(store):
    writer = PrepareWriter(store)
    stored: list[str] = []
    for index in range(50):
        writer.put((1, f"t{index}"), _prepare(b"x"), 1_000, lambda i=index: stored.append(i))
    writer.delete((1, "t3"))
    assert stored == []  # nothing is durable within the turn that asked
    while len(stored) < 50:
        await asyncio.sleep(0.01)
    found = await store.get_many([(1, f"t{index}") for index in range(50)])
    assert len(found) == 49 and (1, "t3") not in found
