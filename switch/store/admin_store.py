"""Where the operators' store lives: the one place that chooses it. Embedded SQLite in
the data directory (`admin.sqlite3`, WAL mode, so the switch and an offline `ponte admin`
command may have it open together), or PostgreSQL when the switch's store is — the server
(`switch/console/server_port.py`), the offline CLI (`switch/admin/cli.py`) and the bootstrap
of the first operators all open it through `open_admin_store`."""

from __future__ import annotations

from pathlib import Path

ADMIN_DB_NAME = "admin.sqlite3"


def embedded_path(data_dir: str) -> str:
    return str(Path(data_dir) / ADMIN_DB_NAME)


async def open_admin_store(data_dir: str, postgres_dsn: str | None, *, migrate: bool = False):
    """The admin store: PostgreSQL when `postgres_dsn` is given (migrated first when
    `migrate`), else SQLite in `data_dir` (created if missing)."""
    if postgres_dsn:
        from switch.store.admin_postgres import PostgresAdminStore

        if migrate:
            from switch.store.migrate import migrate_dsn

            await migrate_dsn(postgres_dsn)
        return await PostgresAdminStore.connect(postgres_dsn)
    from switch.store.admin_embedded import EmbeddedAdminStore

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    return EmbeddedAdminStore(embedded_path(data_dir))
