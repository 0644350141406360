"""What a primary and its standbys of one PostgreSQL journal must agree on, checked in the
database they share: the switch's secrets.

After a takeover the standby authenticates API keys with its own pepper and derives
identity tokens with its own directory secret; if they differed from the primary's, every
key would be refused and every national-ID alias would stop resolving. So each switch
process on a PostgreSQL journal compares an HMAC of its secrets with the one the first
primary recorded (`switch_secrets_check`, migration 0005) and refuses to start on a
mismatch. The digest reveals nothing of the secrets. The following and the takeover
themselves live in `ledger/journal_follow.py` (reading, the lock, the epoch) and
`switch/server/server.py` (`start_standby`, `take_over`).

It must never store or log a secret, only the digest.
"""

from __future__ import annotations

import hashlib
import hmac

SECRETS_CHECK_MESSAGE = b"ponte secrets check v1"


def secrets_digest(api_key_pepper: str, directory_secret: str) -> bytes:
    """32 bytes that are equal for equal secrets and tell nothing about them."""
    key = hashlib.sha256(api_key_pepper.encode() + b"\x00" + directory_secret.encode()).digest()
    return hmac.new(key, SECRETS_CHECK_MESSAGE, hashlib.sha256).digest()


async def check_secrets_digest(dsn: str, journal_name: str, digest: bytes) -> bool:
    """Record `digest` for the journal if none is recorded yet; True when the recorded one
    is `digest` (this process's secrets are the journal's)."""
    import asyncpg

    assert len(digest) == 32
    connection = await asyncpg.connect(dsn, timeout=10, command_timeout=30)
    try:
        recorded = await connection.fetchval(
            "WITH inserted AS (INSERT INTO switch_secrets_check (journal_name, "
            "secrets_digest) VALUES ($1, $2) ON CONFLICT (journal_name) DO NOTHING "
            "RETURNING secrets_digest) SELECT secrets_digest FROM inserted UNION ALL "
            "SELECT secrets_digest FROM switch_secrets_check WHERE journal_name = $1 "
            "LIMIT 1", journal_name, digest)
    finally:
        await connection.close()
    return hmac.compare_digest(bytes(recorded), digest)
