"""The participant credentials the gateway checks on every connection: an in-memory index
over a credential store (`CredentialStore`, implemented in `switch.store.credentials`:
loaded at start, written through on change).

API keys are `ponte_<key id>_<43 chars of urlsafe base64>`: 256 random bits, shown once
when issued and stored only as HMAC-SHA256 under the server's pepper. They are random
tokens, not passwords, so one HMAC per check is enough (no argon2); the stored hash is
compared with `hmac.compare_digest`. Looking the hash up in a dict leaks timing about the
hash, never about the key, which is what constant time is for.

Revoking keys closes the live sessions they authenticated, at once: the server binds the
gateway's `close_sessions` (`bind_sessions`), and `revoke_keys` calls it for each revoked
key's hash after the revocation is stored.

It must never keep, log or return a key after `issue_key` returns it.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Callable, Protocol

import msgspec

from switch.core.messages import callback_url_valid
from switch.server import limits
from switch.server.gateway import hash_api_key

# A government participant is a G2P programme: it disburses to banks and wallets
# (docs/g2p.md).
KINDS = ("bank", "wallet", "government")


class ParticipantRecord(msgspec.Struct, frozen=True, kw_only=True):
    participant_id: int
    name: str
    kind: str
    callback_url: str = ""


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    participant_id: int
    key_hash: bytes
    revoked: bool = False


class CredentialsSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    participants: list[ParticipantRecord]
    keys: list[KeyRecord]
    certificates: list[tuple[int, bytes]]


class CredentialStore(Protocol):
    """What the index needs from a store (SQLite or PostgreSQL, switch/store)."""

    async def load(self) -> CredentialsSnapshot: ...

    async def put_participant(self, record: ParticipantRecord) -> None: ...

    async def set_callback_url(self, participant_id: int, url: str) -> None: ...

    async def add_key(self, record: KeyRecord) -> None: ...

    async def revoke_keys(self, participant_id: int) -> None: ...

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None: ...

    async def close(self) -> None: ...


class CredentialError(ValueError):
    """A credential request the index refuses (unknown participant, bad URL or kind)."""


class CredentialIndex:
    def __init__(self, store: CredentialStore, pepper: bytes) -> None:
        assert len(pepper) >= limits.PEPPER_BYTES_MIN
        self.store = store
        self.pepper = pepper
        self._by_key_hash: dict[bytes, int] = {}
        self._by_certificate: dict[bytes, int] = {}
        self._participants: dict[int, ParticipantRecord] = {}
        # Gateway.close_sessions(participant_id, key_hash, reason) -> sessions closed.
        self._close_sessions: Callable[[int, bytes | None, str], int] | None = None

    def bind_sessions(self, close_sessions: Callable[[int, bytes | None, str], int]) -> None:
        """Where revocations close live sessions (the server passes the gateway's
        `close_sessions`). Until bound, a revocation only refuses new connections."""
        self._close_sessions = close_sessions

    async def load(self) -> None:
        snapshot = await self.store.load()
        self._participants = {p.participant_id: p for p in snapshot.participants}
        self._by_key_hash = {k.key_hash: k.participant_id for k in snapshot.keys
                             if not k.revoked}
        self._by_certificate = {fingerprint: pid for pid, fingerprint in snapshot.certificates}

    # -- checks (the gateway) ----------------------------------------------------------

    def participant_for_key_hash(self, key_hash: bytes) -> int | None:
        participant_id = self._by_key_hash.get(key_hash)
        if participant_id is None:
            # Compare anyway so a miss costs what a hit costs.
            hmac.compare_digest(key_hash, bytes(32))
            return None
        return participant_id

    def participant_for_certificate(self, fingerprint: bytes) -> int | None:
        return self._by_certificate.get(fingerprint)

    def callback_url(self, participant_id: int) -> str:
        record = self._participants.get(participant_id)
        return "" if record is None else record.callback_url

    def record(self, participant_id: int) -> ParticipantRecord | None:
        return self._participants.get(participant_id)

    def records(self) -> list[ParticipantRecord]:
        return sorted(self._participants.values(), key=lambda r: r.participant_id)

    # -- changes (the admin surface) ---------------------------------------------------

    async def put_participant(self, participant_id: int, name: str, kind: str,
                              callback_url: str = "") -> ParticipantRecord:
        if kind not in KINDS:
            raise CredentialError(f"kind must be one of {KINDS}")
        _check_url(callback_url)
        record = ParticipantRecord(participant_id=participant_id, name=name, kind=kind,
                                   callback_url=callback_url)
        await self.store.put_participant(record)
        self._participants[participant_id] = record
        return record

    async def set_callback_url(self, participant_id: int, url: str) -> None:
        record = self._participants.get(participant_id)
        if record is None:
            raise CredentialError("unknown participant")
        _check_url(url)
        await self.store.set_callback_url(participant_id, url)
        self._participants[participant_id] = ParticipantRecord(
            participant_id=participant_id, name=record.name, kind=record.kind, callback_url=url
        )

    async def issue_key(self, participant_id: int, *, revoke_others: bool = False) -> str:
        """A new API key for the participant: returned once, stored as its hash only."""
        if participant_id not in self._participants:
            raise CredentialError("unknown participant")
        if revoke_others:
            await self.revoke_keys(participant_id, "API key revoked")
        key_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(
            secrets.token_bytes(limits.API_KEY_RANDOM_BYTES)).decode().rstrip("=")
        api_key = f"ponte_{key_id}_{secret}"
        key_hash = hash_api_key(self.pepper, api_key)
        await self.store.add_key(KeyRecord(key_id=key_id, participant_id=participant_id,
                                           key_hash=key_hash))
        self._by_key_hash[key_hash] = participant_id
        return api_key

    async def revoke_keys(self, participant_id: int, reason: str = "API key revoked") -> int:
        """Revoke every key of the participant: stored first (a crash after it leaves the
        keys revoked), then refused by `participant_for_key_hash`, then every live session
        they authenticated is closed with `reason`. Returns the sessions closed (for the
        operator's audit record)."""
        if participant_id not in self._participants:
            raise CredentialError("unknown participant")
        await self.store.revoke_keys(participant_id)
        revoked = [h for h, p in self._by_key_hash.items() if p == participant_id]
        for key_hash in revoked:
            del self._by_key_hash[key_hash]
        closed = 0
        if self._close_sessions is not None:
            for key_hash in revoked:
                closed += self._close_sessions(participant_id, key_hash, reason)
        return closed

    async def add_certificate(self, participant_id: int, fingerprint: bytes) -> None:
        if participant_id not in self._participants:
            raise CredentialError("unknown participant")
        if len(fingerprint) != 32:
            raise CredentialError("a certificate fingerprint is 32 bytes of SHA-256")
        await self.store.add_certificate(participant_id, fingerprint)
        self._by_certificate[fingerprint] = participant_id


def _check_url(url: str) -> None:
    if len(url) > limits.CALLBACK_URL_LENGTH_MAX:
        raise CredentialError("callback_url is too long")
    if not callback_url_valid(url):
        raise CredentialError("callback_url must be an http:// or https:// URL without spaces")
