"""Directory configuration, read once into frozen Structs with bounds in the types.

The scheme secret is not part of the configuration: it travels in `Secret`, which never
prints its value, so that a config dump or a log line cannot leak it.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

from switch.directory import limits

Meta = msgspec.Meta

CHECKSUMS = ("none", "luhn", "verhoeff", "br_cpf", "br_cnpj")

Tokens = Annotated[int, Meta(ge=1, le=limits.BUCKET_CAPACITY_TOKENS_MAX)]
RefillPerMinute = Annotated[int, Meta(ge=1, le=limits.BUCKET_REFILL_PER_MINUTE_MAX)]
CostTokens = Annotated[int, Meta(ge=0, le=limits.BUCKET_COST_TOKENS_MAX)]
CapCount = Annotated[int, Meta(ge=1, le=limits.ALIASES_PER_OWNER_MAX)]
WindowMs = Annotated[int, Meta(ge=1, le=limits.CLAIM_WINDOW_MS_MAX)]
CountryCode = Annotated[str, Meta(pattern="^[A-Z]{2}$")]


class Secret:
    """The scheme secret under which identity tokens are computed. Never printed."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if len(value) < limits.SCHEME_SECRET_BYTES_MIN:
            raise ValueError(
                f"scheme secret must be at least {limits.SCHEME_SECRET_BYTES_MIN} bytes"
            )
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __reduce__(self):  # refuse pickling: it would write the secret somewhere
        raise TypeError("Secret cannot be pickled")


class NationalIdFormat(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How one country writes its national ID, after separators are removed and letters
    upper-cased: a regular expression over the whole value and an optional checksum."""

    pattern: Annotated[str, Meta(min_length=1, max_length=limits.COUNTRY_PATTERN_BYTES_MAX)]
    checksum: str = "none"

    def __post_init__(self) -> None:
        if self.checksum not in CHECKSUMS:
            raise ValueError(f"checksum must be one of {CHECKSUMS}")
        try:
            re.compile(self.pattern)
        except re.error as error:
            raise ValueError(f"pattern does not compile: {error}") from None


class BucketPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A token bucket: a resolve is admitted while the bucket holds at least `hit_cost`
    tokens (whatever the answer will be, so admission leaks nothing), then it costs
    `hit_cost` if the alias was found and `miss_cost` if not; the balance may go negative,
    which makes a run of misses wait longer. A completed payment refunds `refund`."""

    capacity_tokens: Tokens
    refill_tokens_per_minute: RefillPerMinute
    hit_cost_tokens: CostTokens = 1
    miss_cost_tokens: CostTokens = 20
    refund_tokens: CostTokens = 1

    def __post_init__(self) -> None:
        if self.hit_cost_tokens < 1:
            raise ValueError("hit_cost_tokens must be at least 1")
        if self.miss_cost_tokens < self.hit_cost_tokens:
            raise ValueError("a miss must cost at least as much as a hit")
        if self.miss_cost_tokens > self.capacity_tokens:
            raise ValueError("miss_cost_tokens must not exceed the capacity")


# After Pix's DICT: an end user's bucket holds 100 tokens refilled at 2 per minute; a hit
# costs 1 and a miss 20. Participant buckets are sized by category (A = the largest
# participants); a participant's miss costs 3. Check the current DICT manual before using
# these numbers for a real scheme: they are the shape, not a citation.
USER_POLICY_DEFAULT = BucketPolicy(
    capacity_tokens=100, refill_tokens_per_minute=2, hit_cost_tokens=1, miss_cost_tokens=20,
    refund_tokens=1,
)


def _participant_policy(capacity: int, refill: int) -> BucketPolicy:
    return BucketPolicy(
        capacity_tokens=capacity, refill_tokens_per_minute=refill, hit_cost_tokens=1,
        miss_cost_tokens=3, refund_tokens=1,
    )


PARTICIPANT_POLICIES_DEFAULT = {
    "A": _participant_policy(50_000, 25_000),
    "B": _participant_policy(40_000, 20_000),
    "C": _participant_policy(30_000, 15_000),
    "D": _participant_policy(16_000, 8_000),
    "E": _participant_policy(5_000, 2_500),
    "F": _participant_policy(500, 250),
    "G": _participant_policy(250, 25),
    "H": _participant_policy(50, 2),
}

# Examples of the three checksum families; a scheme configures its own country.
NATIONAL_ID_FORMATS_DEFAULT = {
    "BR": NationalIdFormat(pattern=r"[0-9]{11}", checksum="br_cpf"),
    "IN": NationalIdFormat(pattern=r"[2-9][0-9]{11}", checksum="verhoeff"),
    "ZA": NationalIdFormat(pattern=r"[0-9]{13}", checksum="luhn"),
}


class DirectoryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    national_id_formats: dict[CountryCode, NationalIdFormat] = msgspec.field(
        default_factory=lambda: dict(NATIONAL_ID_FORMATS_DEFAULT)
    )
    # A national ID written without a "CC:" prefix belongs to this country.
    national_id_country_default: CountryCode = "BR"
    # Local account numbers (ACCOUNT aliases written "<participant_id>:<number>").
    local_account_pattern: Annotated[
        str, Meta(min_length=1, max_length=limits.COUNTRY_PATTERN_BYTES_MAX)
    ] = r"[0-9]{4,20}"
    aliases_per_person_max: CapCount = limits.ALIASES_PER_PERSON_MAX_DEFAULT
    aliases_per_business_max: CapCount = limits.ALIASES_PER_BUSINESS_MAX_DEFAULT
    aliases_per_account_max: CapCount = limits.ALIASES_PER_ACCOUNT_MAX_DEFAULT
    claim_resolution_window_ms: WindowMs = limits.CLAIM_RESOLUTION_WINDOW_MS_DEFAULT
    claim_completion_window_ms: WindowMs = limits.CLAIM_COMPLETION_WINDOW_MS_DEFAULT
    user_bucket: BucketPolicy = USER_POLICY_DEFAULT
    participant_buckets: dict[str, BucketPolicy] = msgspec.field(
        default_factory=lambda: dict(PARTICIPANT_POLICIES_DEFAULT)
    )
    # What a participant gets until the operators put it in a category (maker-checker,
    # `ponte participant category`). E, not the smallest (H: 50 tokens, +2 a minute), so a
    # newly onboarded bank is not refused after a few dozen alias payments.
    participant_category_default: str = "E"
    # participant id -> category; unknown participants get the default category. Categories
    # set by the operators at run time override these (Directory.set_participant_category).
    participant_categories: dict[str, str] = msgspec.field(default_factory=dict)
    cache_entries_max: Annotated[
        int, Meta(ge=limits.CACHE_ENTRIES_MIN, le=limits.CACHE_ENTRIES_MAX)
    ] = limits.CACHE_ENTRIES_MAX_DEFAULT

    def __post_init__(self) -> None:
        if self.national_id_country_default not in self.national_id_formats:
            raise ValueError("national_id_country_default has no format")
        if self.participant_category_default not in self.participant_buckets:
            raise ValueError("participant_category_default has no bucket policy")
        for category in self.participant_categories.values():
            if category not in self.participant_buckets:
                raise ValueError(f"category {category!r} has no bucket policy")
        if self.aliases_per_person_max > self.aliases_per_business_max:
            raise ValueError("a person may not hold more aliases than a business")
        try:
            re.compile(self.local_account_pattern)
        except re.error as error:
            raise ValueError(f"local_account_pattern: {error}") from None


def load_config(data: bytes | None, *, toml: bool = True) -> DirectoryConfig:
    """Read a `[directory]` table from TOML (or a JSON object); no data gives the defaults."""
    if not data:
        return DirectoryConfig()
    raw = msgspec.toml.decode(data) if toml else msgspec.json.decode(data)
    if isinstance(raw, dict) and "directory" in raw:
        raw = raw["directory"]
    return msgspec.convert(raw, DirectoryConfig)
