"""A raw national ID never reaches the database, the cache, the buckets or the logs.

Registrations, resolves, claims, mapper links and an import all carry national IDs; then
every table is dumped (SELECT * and, for PostgreSQL, pg_dump), every Redis key and value of
the test is read, and the captured logs and output are searched for each raw ID in the
spellings a client might use.
"""

from __future__ import annotations

import logging

from directory_helpers import NOW_NS, cpf, dump_store, msisdn, pg_dump_text, registration
from switch.directory.types import (
    AliasType,
    ClaimType,
    MapperLinkRequest,
    OpenClaim,
    RegisteredAlias,
    ResolvedAlias,
)


def spellings(raw: str) -> list[str]:
    dotted = f"{raw[:3]}.{raw[3:6]}.{raw[6:9]}-{raw[9:]}"
    return [raw, dotted, "BR:" + raw, raw.encode().hex()]


async def redis_dump(shared) -> str:
    cache, _ = shared
    client = getattr(cache, "client", None)
    if client is None:
        return ""
    lines = []
    prefix = cache._prefix[: cache._prefix.index(b":a:") + 1]
    async for key in client.scan_iter(match=prefix + b"*"):
        kind = await client.type(key)
        value = await client.hgetall(key) if kind == b"hash" else await client.get(key)
        lines.append(f"{key!r} {value!r}")
    assert lines, "the Redis backends wrote nothing: the test would prove nothing"
    return "\n".join(lines)


async def test_no_raw_national_id_anywhere(directory, store_dsn, shared, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    owners = [cpf(9000 + n) for n in range(6)]
    for n, owner in enumerate(owners[:4]):
        for request_ in (
            registration(alias_type=AliasType.NATIONAL_ID, alias_value=owner, owner=owner,
                         participant_id=f"bank-{n}"),
            registration(seed=9000 + n, owner=owner, participant_id=f"bank-{n}"),
            registration(alias_type=AliasType.RANDOM, owner=owner, participant_id=f"bank-{n}"),
        ):
            assert isinstance(await directory.register(request_, NOW_NS), RegisteredAlias)
        dotted = spellings(owner)[1]
        answer = await directory.resolve(AliasType.NATIONAL_ID, dotted, "bank-z",
                                         payer_user_id=owners[5], now_ns=NOW_NS)
        assert isinstance(answer, ResolvedAlias)
        await directory.refund_lookup("bank-z", owners[5], NOW_NS)
        await directory.mapper_link(MapperLinkRequest(
            id=owner, participant_id=f"bank-{n}", account_ref="g2p-1"), NOW_NS)
    await directory.open_claim(OpenClaim(
        claim_type=ClaimType.OWNERSHIP, alias_type=AliasType.MSISDN, alias_value=msisdn(9000),
        claimer_participant_id="bank-9", claimer_account_ref="acc-9",
        claimer_owner_national_id=owners[4], claimer_display_name="Maria Souza"), NOW_NS)
    await directory.bulk_import([registration(seed=9100 + n, owner=owners[4])
                                 for n in range(3)], NOW_NS)
    # A refused registration must not leak the ID it refused either.
    await directory.register(registration(owner=owners[4][:-1] + "0"), NOW_NS)

    texts = {
        "tables": await dump_store(directory.store),
        "redis": await redis_dump(shared),
        "logs": caplog.text + "\n".join(str(r.__dict__) for r in caplog.records),
        "output": "".join(capsys.readouterr()),
    }
    if store_dsn is not None:
        texts["pg_dump"] = await pg_dump_text(store_dsn)
        assert "directory_aliases" in texts["pg_dump"]
    assert texts["tables"].count("bank-") >= 12  # the dump really holds the registrations
    assert any(r.name.startswith("ponte.directory") for r in caplog.records)
    for owner in owners:  # owners[5] was only ever a payer's user id
        for spelling in spellings(owner) + [owners[4][:-1] + "0"]:
            for where, text in texts.items():
                assert spelling not in text, f"raw national ID found in {where}"
