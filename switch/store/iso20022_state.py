"""The ISO 20022 connector's store and outbox on the switch's backends (`StateLog`,
connectors/iso20022/state.py and outbox.py say what they keep and in what order): files in
the data directory (`iso20022/state.log`, `iso20022/outbox.log`, each written and
fdatasync'ed in a thread of its own) or, when the switch keeps its journal or its stores
in PostgreSQL, the `iso20022_state` and `iso20022_outbox` tables (migrations 0036, 0040),
so a standby that takes over, or a primary started on another machine, finds what its
predecessor kept and owed.

Both hold bytes the connector framed; neither reads them. They must never block the loop.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

DIRECTORY = "iso20022"  # in the data directory
FILE_NAME = "state.log"
LOGS = {"state": (FILE_NAME, "iso20022_state"), "outbox": ("outbox.log", "iso20022_outbox")}


class FileStateLog:
    """`<directory>/<file_name>`, from one thread of its own."""

    def __init__(self, directory: str, file_name: str = FILE_NAME) -> None:
        self.directory = directory
        self.path = os.path.join(directory, file_name)
        self._fd: int | None = None
        self._executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"ponte-iso20022-{file_name.partition('.')[0]}")

    async def _run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _read(self) -> bytes:
        os.makedirs(self.directory, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        chunks = []
        while True:
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        _fsync_directory(self.directory)  # the file exists from now on
        return b"".join(chunks)

    def _cut(self, length: int) -> None:
        os.ftruncate(self._fd, length)
        os.lseek(self._fd, length, os.SEEK_SET)
        os.fsync(self._fd)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        os.fdatasync(self._fd)

    def _rewrite(self, data: bytes) -> None:
        temporary = self.path + ".tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.replace(temporary, self.path)
        _fsync_directory(self.directory)
        os.close(self._fd)
        self._fd = fd  # at its end: appends follow the rewritten log

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def read(self) -> bytes:
        return await self._run(self._read)

    async def cut(self, valid: bytes) -> None:
        await self._run(self._cut, len(valid))

    async def append(self, data: bytes) -> None:
        await self._run(self._append, data)

    async def rewrite(self, data: bytes) -> None:
        await self._run(self._rewrite, data)

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PostgresStateLog:
    """The `iso20022_state` (or `iso20022_outbox`) table: one row per write, in `position`
    order."""

    def __init__(self, pool, table: str = "iso20022_state") -> None:
        assert table in ("iso20022_state", "iso20022_outbox"), table
        self._pool = pool
        self._table = table
        self._select = f"SELECT records FROM {table} ORDER BY position"
        self._insert = f"INSERT INTO {table} (records) VALUES ($1)"
        self._delete = f"DELETE FROM {table}"

    @classmethod
    async def connect(cls, dsn: str, table: str = "iso20022_state") -> PostgresStateLog:
        import asyncpg

        return cls(await asyncpg.create_pool(dsn, min_size=1, max_size=1), table)

    async def read(self) -> bytes:
        async with self._pool.acquire() as connection:
            rows = await connection.fetch(self._select)
        return b"".join(bytes(row[0]) for row in rows)

    async def cut(self, valid: bytes) -> None:
        await self.rewrite(valid)

    async def append(self, data: bytes) -> None:
        if data:
            async with self._pool.acquire() as connection:
                await connection.execute(self._insert, data)

    async def rewrite(self, data: bytes) -> None:
        async with self._pool.acquire() as connection, connection.transaction():
            await connection.execute(self._delete)
            if data:
                await connection.execute(self._insert, data)

    async def close(self) -> None:
        await self._pool.close()


async def open_state_log(data_dir: str, postgres_dsn: str = "", name: str = "state"
                         ) -> FileStateLog | PostgresStateLog:
    """The log `name` ("state" or "outbox"): PostgreSQL when the switch keeps its journal
    or its stores there (migrated already), else `iso20022/<name>.log` in the data
    directory."""
    file_name, table = LOGS[name]
    if postgres_dsn:
        return await PostgresStateLog.connect(postgres_dsn, table)
    return FileStateLog(os.path.join(data_dir, DIRECTORY), file_name)
