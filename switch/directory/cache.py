"""The in-process alias cache and the compact entry format shared with the Redis cache.

An entry is two small bytes objects: the key (one byte of alias type + the alias key) and
the value ("participant \\x1f account_ref \\x1f initials"). That keeps a cached alias under
200 bytes including the dict slot, where a Struct or a dict per entry would cost several
times that. Only ACTIVE aliases are cached, and never an owner token.

The cache is an LRU approximation in two generations: new and recently used entries live in
`hot`; when `hot` fills up it becomes `cold` and the previous `cold` is dropped; a hit in
`cold` moves the entry back to `hot`. An exact LRU would need a linked node per entry
(OrderedDict costs ~90 bytes per entry against ~40 for a dict, measured with tracemalloc),
and a plain dict reordered on every hit degrades to quadratic eviction scans in CPython.
This must never do I/O or grow past `entries_max`.
"""

from __future__ import annotations

from switch.directory import limits
from switch.directory.aliases import mask_initials
from switch.directory.types import AliasRecord, AliasType, ResolvedAlias

SEPARATOR = "\x1f"  # excluded from participant ids, account refs and initials by validation
_ALIAS_TYPES = {int(member): member for member in AliasType}
# Masked names by initials: a few thousand combinations cover nearly every lookup.
_MASKED: dict[str, str] = {}
_MASKED_MAX = 4_096


def cache_key(alias_type: int, alias_key: str) -> bytes:
    return bytes((alias_type,)) + alias_key.encode("utf-8")


def encode_entry(record: AliasRecord) -> bytes:
    return (
        f"{record.participant_id}{SEPARATOR}{record.account_ref}{SEPARATOR}"
        f"{record.display_initials}"
    ).encode("utf-8")


def decode_entry(alias_type: int, value: bytes) -> ResolvedAlias:
    participant_id, account_ref, initials = value.decode("utf-8").split(SEPARATOR)
    masked = _MASKED.get(initials)
    if masked is None:
        masked = mask_initials(initials)
        if len(_MASKED) < _MASKED_MAX:
            _MASKED[initials] = masked
    return ResolvedAlias(
        alias_type=_ALIAS_TYPES[alias_type],
        participant_id=participant_id,
        account_ref=account_ref,
        display_name_masked=masked,
    )


class LocalAliasCache:
    """Bounded in-process cache: at most `entries_max` entries in two generations."""

    shared = False  # invalidations here are not seen by other processes

    def __init__(self, entries_max: int = limits.CACHE_ENTRIES_MAX_DEFAULT) -> None:
        assert limits.CACHE_ENTRIES_MIN <= entries_max <= limits.CACHE_ENTRIES_MAX
        self.entries_max = entries_max
        self._generation_max = entries_max // 2
        self._hot: dict[bytes, bytes] = {}
        self._cold: dict[bytes, bytes] = {}
        # Bumped by every invalidation: a resolve that read the store before an invalidation
        # must not put what it read into the cache afterwards.
        self._epoch = 0
        self.hits = 0
        self.misses = 0

    def get_now(self, key: bytes) -> bytes | None:
        value = self._hot.get(key)
        if value is None:
            value = self._cold.pop(key, None)
            if value is None:
                self.misses += 1
                return None
            self._put_hot(key, value)
        self.hits += 1
        return value

    def fill_token(self) -> int:
        return self._epoch

    def fill_now(self, key: bytes, value: bytes, token: int) -> None:
        if token != self._epoch:
            return
        self._cold.pop(key, None)
        self._put_hot(key, value)

    def invalidate_now(self, key: bytes) -> None:
        self._epoch += 1
        self._hot.pop(key, None)
        self._cold.pop(key, None)

    def _put_hot(self, key: bytes, value: bytes) -> None:
        hot = self._hot
        hot[key] = value
        if len(hot) >= self._generation_max:
            self._cold = hot
            self._hot = {}

    def __len__(self) -> int:
        return len(self._hot) + len(self._cold)

    def clear(self) -> None:
        self._epoch += 1
        self._hot = {}
        self._cold = {}

    # The asynchronous face every cache shows the Directory.

    async def get(self, key: bytes) -> bytes | None:
        return self.get_now(key)

    async def get_many(self, keys: list[bytes]) -> list[bytes | None]:
        get_now = self.get_now
        return [get_now(key) for key in keys]

    async def fill(self, key: bytes, value: bytes, token: int) -> None:
        self.fill_now(key, value, token)

    async def invalidate(self, key: bytes) -> None:
        self.invalidate_now(key)
