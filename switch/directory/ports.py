"""What the Directory needs from its three backends: a store, a cache and bucket storage.

The store is the source of truth (embedded SQLite or PostgreSQL, `switch/store/`); the cache
is in-process (`cache.LocalAliasCache`) or shared (`switch/store/redis_cache.py`); the
buckets are in-process (`buckets.LocalBuckets`) or Redis (`switch/store/redis_buckets.py`).
Every backend passes the same tests (`tests/directory/`). Write methods make their whole
decision inside one transaction using the pure rules in `rules.py` and `claims.py`.
"""

from __future__ import annotations

from typing import Iterable, Protocol

from switch.directory.buckets import Charge
from switch.directory.config import BucketPolicy, DirectoryConfig
from switch.directory.types import AliasRecord, Claim, DirectoryResult, MapperLink


class DirectoryStore(Protocol):
    async def get_alias(self, alias_type: int, alias_key: str) -> AliasRecord | None: ...

    async def get_aliases(
        self, keys: list[tuple[int, str]]
    ) -> dict[tuple[int, str], AliasRecord]: ...

    async def insert_aliases(
        self, records: list[AliasRecord], config: DirectoryConfig
    ) -> list[DirectoryResult]:
        """Register a batch atomically (`rules.admit_batch` under lock); one result each."""

    async def update_alias(
        self, new: AliasRecord, expected: AliasRecord, config: DirectoryConfig
    ) -> DirectoryResult:
        """Replace `expected` by `new` (same alias) if the row still equals `expected`;
        the per-account cap applies when the account changes."""

    async def delete_alias(
        self, alias_type: int, alias_key: str, participant_id: str
    ) -> DirectoryResult:
        """OK, CLAIM_PENDING, or ALIAS_NOT_FOUND when `participant_id` does not hold it:
        whether another participant does is not the caller's to know."""

    async def count_owner_aliases(self, owner_token: bytes) -> int: ...

    async def count_account_aliases(self, participant_id: str, account_ref: str) -> int: ...

    async def alias_count(self) -> int: ...

    async def load_fresh(self, chunks: Iterable[list[AliasRecord]], config: DirectoryConfig,
                         on_chunk=None) -> DirectoryResult:
        """All-or-nothing bulk load into an empty alias table (initial migration, bench):
        indexes are built after the rows, then uniqueness and caps are checked."""

    async def insert_claim(self, claim: Claim) -> DirectoryResult: ...

    async def get_claim(self, claim_id: str) -> Claim | None: ...

    async def save_claim(self, claim: Claim, prior: Claim) -> bool:
        """Write `claim` if the stored one is still `prior` (state and updated_ns)."""

    async def complete_claim(
        self, claim: Claim, prior: Claim, now_ns: int, config: DirectoryConfig
    ) -> DirectoryResult:
        """Move the alias to the claimer and store the COMPLETED claim, in one transaction."""

    async def due_claims(self, now_ns: int, limit: int) -> list[Claim]: ...

    async def participant_claims(self, participant_id: str, limit: int) -> list[Claim]: ...

    async def get_mapper_link(self, id_token: bytes) -> MapperLink | None: ...

    async def put_mapper_link(self, link: MapperLink, expected: MapperLink | None) -> bool: ...

    async def delete_mapper_link(self, id_token: bytes, participant_id: str) -> bool: ...

    async def get_mapper_links(self, id_tokens: list[bytes]) -> dict[bytes, MapperLink]:
        """The links held for these tokens, in one read (G2P batches resolve thousands)."""
        ...

    async def close(self) -> None: ...


class AliasCache(Protocol):
    shared: bool

    async def get(self, key: bytes) -> bytes | None: ...

    async def get_many(self, keys: list[bytes]) -> list[bytes | None]: ...

    def fill_token(self) -> int: ...

    async def fill(self, key: bytes, value: bytes, token: int) -> None: ...

    async def invalidate(self, key: bytes) -> None: ...


class BucketStore(Protocol):
    shared: bool  # True: several processes use it, so user keys must be hashed

    async def charge(
        self, user_key: bytes, participant_id: str, user_policy: BucketPolicy,
        participant_policy: BucketPolicy, cost: int, now_ms: int,
    ) -> Charge:
        """`cost` is one of `buckets.COST_*` (a resolve passes found: True/False)."""

    async def charge_many(self, items, user_policy: BucketPolicy, now_ms: int) -> list[Charge]:
        """items: (user_key, participant_id, participant_policy, cost) per request, charged
        in order (the same decisions as calling `charge` for each)."""

    async def refund(
        self, user_key: bytes, participant_id: str, user_policy: BucketPolicy,
        participant_policy: BucketPolicy, now_ms: int,
    ) -> None: ...
