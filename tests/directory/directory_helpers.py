"""Builders shared by the directory tests: valid national IDs, registrations, table dumps."""

from __future__ import annotations

from switch.directory.types import OwnerKind, RegisterAlias

NOW_NS = 1_700_000_000_000_000_000
MS_NS = 1_000_000
MINUTE_NS = 60_000 * MS_NS
DAY_NS = 24 * 60 * MINUTE_NS
SECRET = b"test-scheme-secret-0123456789abcdef"


def cpf(seed: int) -> str:
    """A valid Brazilian CPF (11 digits with both mod-11 check digits) for any seed."""
    base = f"{seed % 10**9:09d}"
    if base == base[0] * 9:
        base = "1" + base[1:8] + "2"
    digits = base
    for weights in (range(10, 1, -1), range(11, 1, -1)):
        remainder = sum(int(c) * w for c, w in zip(digits, weights)) % 11
        digits += str(0 if remainder < 2 else 11 - remainder)
    return digits


def msisdn(seed: int) -> str:
    return f"+5511{seed % 10**9:09d}"


def registration(
    *, alias_type: int = 1, alias_value: str | None = None, seed: int = 1,
    participant_id: str = "bank-a", account_ref: str = "acc-1", owner: str | None = None,
    owner_kind: int = OwnerKind.PERSON, display_name: str = "John Doe",
) -> RegisterAlias:
    if alias_value is None:
        alias_value = msisdn(seed) if alias_type == 1 else ""
    return RegisterAlias(
        alias_type=alias_type, alias_value=alias_value, participant_id=participant_id,
        account_ref=account_ref, owner_national_id=owner if owner is not None else cpf(seed),
        owner_kind=owner_kind, display_name=display_name,
    )


DIRECTORY_TABLES = ("directory_aliases", "directory_claims", "directory_mapper_links")


async def dump_store(store) -> str:
    """Every row of every directory table as text, for "nothing was written" checks and the
    privacy test. Works for both stores."""
    if hasattr(store, "dump_text"):
        return store.dump_text()
    lines = []
    async with store.pool.acquire() as connection:
        tables = [row[0] for row in await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "ORDER BY tablename"
        )]
        for table in tables:
            rows = await connection.fetch(f"SELECT * FROM {table} ORDER BY 1, 2")
            lines.append(f"-- {table}")
            lines.extend(repr(tuple(row.values())) for row in rows)
    return "\n".join(lines)


async def pg_dump_text(dsn: str) -> str:
    """`pg_dump --data-only --inserts` of the database, when pg_dump exists."""
    import asyncio
    import shutil

    if shutil.which("pg_dump") is None:
        return ""
    process = await asyncio.create_subprocess_exec(
        "pg_dump", "--data-only", "--inserts", dsn,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()

