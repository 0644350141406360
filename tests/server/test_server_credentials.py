"""Credential storage, embedded and PostgreSQL (for real): keys survive a reopen, only
hashes are stored, revocation sticks, and the index answers the gateway."""

from __future__ import annotations

import pytest

from switch.server.credentials import CredentialError, CredentialIndex
from switch.store.credentials import EmbeddedCredentialStore, PostgresCredentialStore

PEPPER = b"p" * 32


async def exercise(open_store) -> None:
    store = await open_store()
    index = CredentialIndex(store, PEPPER)
    await index.load()
    await index.put_participant(7, "bank_seven", "bank", "https://bank7.example/cb")
    first = await index.issue_key(7)
    second = await index.issue_key(7)
    await index.add_certificate(7, b"\x01" * 32)
    with pytest.raises(CredentialError):
        await index.issue_key(8)  # unknown participant
    with pytest.raises(CredentialError):
        await index.put_participant(9, "x", "casino")
    with pytest.raises(CredentialError):
        await index.set_callback_url(7, "gopher://x")
    await store.close()

    store = await open_store()
    index = CredentialIndex(store, PEPPER)
    await index.load()
    from switch.server.gateway import hash_api_key

    assert index.participant_for_key_hash(hash_api_key(PEPPER, first)) == 7
    assert index.participant_for_key_hash(hash_api_key(PEPPER, second)) == 7
    assert index.participant_for_key_hash(hash_api_key(b"q" * 32, first)) is None  # pepper
    assert index.participant_for_certificate(b"\x01" * 32) == 7
    assert index.callback_url(7) == "https://bank7.example/cb"
    third = await index.issue_key(7, revoke_others=True)
    await store.close()

    store = await open_store()
    index = CredentialIndex(store, PEPPER)
    await index.load()
    assert index.participant_for_key_hash(hash_api_key(PEPPER, first)) is None
    assert index.participant_for_key_hash(hash_api_key(PEPPER, third)) == 7
    snapshot = await store.load()
    assert all(len(key.key_hash) == 32 for key in snapshot.keys)
    assert first not in repr(snapshot) and third not in repr(snapshot)
    await store.close()


async def test_embedded_credentials(tmp_path):
    path = str(tmp_path / "credentials.sqlite3")

    async def open_store():
        return EmbeddedCredentialStore(path)

    await exercise(open_store)


@pytest.mark.postgres
async def test_postgres_credentials(postgres_dsn):
    async def open_store():
        return await PostgresCredentialStore.connect(postgres_dsn)

    await exercise(open_store)


async def test_revoking_keys_closes_the_sessions_they_opened(tmp_path):
    """revoke_keys (and issue_key with revoke_others) stores the revocation, refuses the
    keys, and asks the bound hook to close each revoked key's live sessions."""
    from switch.server.gateway import hash_api_key

    index = CredentialIndex(EmbeddedCredentialStore(str(tmp_path / "c.sqlite3")), PEPPER)
    await index.load()
    await index.put_participant(7, "bank_seven", "bank")
    await index.put_participant(8, "bank_eight", "bank")
    first, second = await index.issue_key(7), await index.issue_key(7)
    other = await index.issue_key(8)
    assert await index.revoke_keys(7) == 0  # unbound: nothing to close, still revoked
    third = await index.issue_key(7)
    calls = []

    def close_sessions(participant_id, key_hash, reason):
        calls.append((participant_id, key_hash, reason))
        return 2

    index.bind_sessions(close_sessions)
    fourth = await index.issue_key(7, revoke_others=True)
    assert calls == [(7, hash_api_key(PEPPER, third), "API key revoked")]
    for key in (first, second, third):
        assert index.participant_for_key_hash(hash_api_key(PEPPER, key)) is None
    assert index.participant_for_key_hash(hash_api_key(PEPPER, fourth)) == 7
    assert index.participant_for_key_hash(hash_api_key(PEPPER, other)) == 8
    assert await index.revoke_keys(7, "rotated by operator") == 2
    assert calls[-1] == (7, hash_api_key(PEPPER, fourth), "rotated by operator")
    with pytest.raises(CredentialError):
        await index.revoke_keys(99)
