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
# A standby keeps the durable-history writes of this many seconds of journal time (by
# decision time): its primary stores them a moment after deciding (history flushes run
# every second or so), and a takeover re-sends these in case it died first.
STANDBY_HISTORY_RESEND_S = 300.0


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


STANDBYS_REFRESH_S = 2.0
# A standby that has not recorded progress for this long is no longer listed.
STANDBY_SEEN_WITHIN_S = 60


class StandbyWatch:
    """The primary's view of its standbys' progress (`journal_standbys`, written by each
    standby about once a second), refreshed in the background on a connection of its own
    so it never queues behind a journal commit. `standbys` is what /health and the console
    show; a failed refresh keeps the last view and tries again (logged once per outage)."""

    def __init__(self, dsn: str, journal_name: str) -> None:
        self.dsn = dsn
        self.journal_name = journal_name
        self.standbys: list[dict] = []
        self._connection = None
        self._task = None
        self._failing = False

    def start(self) -> None:
        import asyncio

        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        import asyncio
        import logging

        import asyncpg

        log = logging.getLogger("ponte.server.standby")
        while True:
            try:
                if self._connection is None:
                    self._connection = await asyncpg.connect(self.dsn, timeout=10,
                                                             command_timeout=10)
                rows = await self._connection.fetch(
                    "SELECT standby, applied_sequence, "
                    "extract(epoch FROM now() - seen_at)::float8 AS seen_s_ago "
                    "FROM journal_standbys WHERE journal_name = $1 AND seen_at > now() - "
                    "make_interval(secs => $2) ORDER BY standby",
                    self.journal_name, STANDBY_SEEN_WITHIN_S)
                self.standbys = [{"standby": row["standby"],
                                  "applied_sequence": row["applied_sequence"],
                                  "seen_s_ago": round(row["seen_s_ago"], 3)} for row in rows]
                self._failing = False
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError,
                    asyncpg.InterfaceError) as error:
                if not self._failing:
                    log.warning("standby_watch_failed error=%r", error)
                self._failing = True
                connection, self._connection = self._connection, None
                if connection is not None:
                    connection.terminate()
            await asyncio.sleep(STANDBYS_REFRESH_S)

    async def close(self) -> None:
        import asyncio

        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
