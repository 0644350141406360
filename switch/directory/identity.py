"""Identity tokens and the short keys derived from them.

An owner is known to the directory only as HMAC-SHA256(scheme secret, normalised national
ID). The raw ID is hashed the moment it is validated and must never be stored, logged,
returned or put in a metric; nothing in this module keeps it. The secret makes the token
useless to anyone who copies the database: without it, 10^11 candidate IDs cannot be
tried offline.
"""

from __future__ import annotations

import hashlib
import hmac

from switch.directory import limits
from switch.directory.config import Secret

_IDENTITY_DOMAIN = b"ponte-identity-v1\x00"
_BUCKET_DOMAIN = b"ponte-bucket-key-v1"


def identity_token(secret: Secret, national_id_normalised: str) -> bytes:
    token = hmac.digest(
        secret.reveal(), _IDENTITY_DOMAIN + national_id_normalised.encode("ascii"), "sha256"
    )
    assert len(token) == limits.IDENTITY_TOKEN_BYTES
    return token


def owner_key(owner_token: bytes) -> int:
    """A signed 64-bit prefix of the token: a narrow index column for per-owner caps (the
    full token is compared too, so a prefix collision only costs an extra row read)."""
    return int.from_bytes(owner_token[:8], "big", signed=True)


def account_key(participant_id: str, account_ref: str) -> int:
    """Signed 64-bit digest of (participant, account): a narrow index for per-account caps."""
    digest = hashlib.blake2b(
        f"{participant_id}\x1f{account_ref}".encode("ascii"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def alias_lock_key(alias_type: int, alias_key: str) -> int:
    """Signed 64-bit digest of an alias, to serialise writers of one alias (advisory lock)."""
    digest = hashlib.blake2b(f"{alias_type}:{alias_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def bucket_secret(secret: Secret) -> bytes:
    """A sub-key for anti-enumeration bucket names, so they do not reuse the identity key."""
    return hmac.digest(secret.reveal(), _BUCKET_DOMAIN, "sha256")[:32]


def user_bucket_key(bucket_key_secret: bytes, participant_id: str, payer_user_id: str) -> bytes:
    """The name of a payer end user's bucket. Participants may identify users by national
    ID (Pix keys the user bucket by CPF), so the id is hashed before it names anything."""
    return hashlib.blake2b(
        f"{participant_id}\x1f{payer_user_id}".encode("utf-8"),
        key=bucket_key_secret, digest_size=16,
    ).digest()
