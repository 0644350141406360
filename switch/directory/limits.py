"""Every bound of the directory in one place, with the asserts that relate them.

Lengths are in bytes of the UTF-8 text unless the name says otherwise. Defaults that a
scheme may change live in `DirectoryConfig`; the `*_MAX` constants here bound what the
configuration may ask for.
"""

# --- Alias values -----------------------------------------------------------------------

# Raw input before normalisation may carry spaces, dashes and brackets; anything longer is
# rejected before any parsing work is spent on it.
ALIAS_VALUE_INPUT_BYTES_MAX = 320
# E.164: at most 15 digits including the country code; the shortest national numbers in
# use (e.g. Niue, +683 xxxx) have 7 digits with the country code.
MSISDN_DIGITS_MIN = 7
MSISDN_DIGITS_MAX = 15
# RFC 5321: a forward-path of 256 octets minus the angle brackets; local part 64.
EMAIL_BYTES_MAX = 254
EMAIL_LOCAL_BYTES_MAX = 64
EMAIL_LABEL_BYTES_MAX = 63
# National IDs: country prefix "CC:" plus the normalised number.
NATIONAL_ID_BYTES_MAX = 32
HANDLE_NAME_BYTES_MAX = 64
HANDLE_PROVIDER_BYTES_MAX = 64
# ISO 13616: the shortest IBAN in use (Norway) has 15 characters, the longest 34.
IBAN_CHARS_MIN = 15
IBAN_CHARS_MAX = 34
LOCAL_ACCOUNT_NUMBER_BYTES_MAX = 34
# A RANDOM key is a canonical UUID: 32 hex digits and 4 dashes.
RANDOM_KEY_CHARS = 36
# The longest stored alias key: a NATIONAL_ID is stored as the 64-hex-digit identity token.
ALIAS_KEY_BYTES_MAX = EMAIL_BYTES_MAX

# --- Other request fields ---------------------------------------------------------------

# Mojaloop's FspId is 1..32 characters; we use the same bound for participant ids.
PARTICIPANT_ID_BYTES_MAX = 32
ACCOUNT_REF_BYTES_MAX = 64
DISPLAY_NAME_BYTES_MAX = 140
# Only the initials of at most this many words are kept (the name itself is never stored).
DISPLAY_NAME_WORDS_MAX = 8
PAYER_USER_ID_BYTES_MAX = 64
COUNTRY_PATTERN_BYTES_MAX = 256

# --- Identity ---------------------------------------------------------------------------

SCHEME_SECRET_BYTES_MIN = 32
IDENTITY_TOKEN_BYTES = 32  # HMAC-SHA256

# --- Caps -------------------------------------------------------------------------------

ALIASES_PER_PERSON_MAX_DEFAULT = 5
ALIASES_PER_BUSINESS_MAX_DEFAULT = 20
ALIASES_PER_ACCOUNT_MAX_DEFAULT = 20
# Upper bound a configuration may set for any of the caps above.
ALIASES_PER_OWNER_MAX = 1_000

# --- Claims -----------------------------------------------------------------------------

MS = 1
DAY_MS = 24 * 60 * 60 * 1_000 * MS
CLAIM_RESOLUTION_WINDOW_MS_DEFAULT = 7 * DAY_MS
CLAIM_COMPLETION_WINDOW_MS_DEFAULT = 7 * DAY_MS
CLAIM_WINDOW_MS_MAX = 90 * DAY_MS
# `expire_claims` handles at most this many due claims per call; the caller loops.
CLAIMS_EXPIRED_PER_CALL_MAX = 1_000
CLAIMS_LISTED_MAX = 1_000

# --- G2P mapper -------------------------------------------------------------------------

# How far ahead of the switch's clock a link's own timestamp may be (clock skew): a link
# from the future would make every later link by another participant stale.
MAPPER_LINK_AHEAD_MS_MAX = 5 * 60 * 1_000

# --- Anti-enumeration buckets -----------------------------------------------------------

# Token counts are kept scaled by TOKEN_SCALE so that a refill of r tokens per minute is
# exactly r scaled units per millisecond: integer math, identical in Python and Redis Lua.
TOKEN_SCALE = 60_000
BUCKET_CAPACITY_TOKENS_MAX = 1_000_000
BUCKET_REFILL_PER_MINUTE_MAX = 1_000_000
BUCKET_COST_TOKENS_MAX = 10_000
# Lua numbers are doubles: every scaled quantity must stay an exact integer there.
assert BUCKET_CAPACITY_TOKENS_MAX * TOKEN_SCALE * 2 < 2**53
assert BUCKET_COST_TOKENS_MAX <= BUCKET_CAPACITY_TOKENS_MAX
# In-process bucket table; buckets that refilled to capacity are dropped first.
LOCAL_BUCKETS_MAX_DEFAULT = 1 << 20
LOCAL_BUCKETS_MAX = 1 << 26

# --- Caches -----------------------------------------------------------------------------

CACHE_ENTRIES_MAX_DEFAULT = 1 << 20
CACHE_ENTRIES_MAX = 1 << 26
CACHE_ENTRIES_MIN = 16
# Redis cache: entries expire so that a lost invalidation heals by itself; an invalidation
# leaves a short tombstone so that a resolve racing it cannot put the old record back.
REDIS_CACHE_TTL_MS_DEFAULT = 60 * 60 * 1_000
REDIS_CACHE_TOMBSTONE_MS_DEFAULT = 10 * 1_000
assert REDIS_CACHE_TOMBSTONE_MS_DEFAULT < REDIS_CACHE_TTL_MS_DEFAULT

# --- Batches ----------------------------------------------------------------------------

RESOLVE_BATCH_MAX = 4_096
IMPORT_BATCH_ROWS_MAX = 5_000
IMPORT_REJECTIONS_KEPT_MAX = 10_000
IMPORT_LINE_BYTES_MAX = 4_096
# Fresh bulk loads (empty table) send rows to the store in chunks of this many.
LOAD_CHUNK_ROWS_MAX = 100_000

assert MSISDN_DIGITS_MIN < MSISDN_DIGITS_MAX
assert EMAIL_LOCAL_BYTES_MAX < EMAIL_BYTES_MAX <= ALIAS_VALUE_INPUT_BYTES_MAX
assert IDENTITY_TOKEN_BYTES * 2 <= ALIAS_KEY_BYTES_MAX
assert HANDLE_NAME_BYTES_MAX + 1 + HANDLE_PROVIDER_BYTES_MAX <= ALIAS_KEY_BYTES_MAX
assert RANDOM_KEY_CHARS <= ALIAS_KEY_BYTES_MAX
assert IBAN_CHARS_MAX <= ALIAS_KEY_BYTES_MAX
assert PARTICIPANT_ID_BYTES_MAX + 1 + LOCAL_ACCOUNT_NUMBER_BYTES_MAX <= ALIAS_KEY_BYTES_MAX
assert ALIASES_PER_PERSON_MAX_DEFAULT <= ALIASES_PER_BUSINESS_MAX_DEFAULT <= ALIASES_PER_OWNER_MAX
assert ALIASES_PER_ACCOUNT_MAX_DEFAULT <= ALIASES_PER_OWNER_MAX
assert CLAIM_RESOLUTION_WINDOW_MS_DEFAULT <= CLAIM_WINDOW_MS_MAX
assert CLAIM_COMPLETION_WINDOW_MS_DEFAULT <= CLAIM_WINDOW_MS_MAX
assert CACHE_ENTRIES_MIN <= CACHE_ENTRIES_MAX_DEFAULT <= CACHE_ENTRIES_MAX
assert LOCAL_BUCKETS_MAX_DEFAULT <= LOCAL_BUCKETS_MAX
assert IMPORT_BATCH_ROWS_MAX <= LOAD_CHUNK_ROWS_MAX
assert RESOLVE_BATCH_MAX >= 1
# Redis Lua divides doubles: a retry-after quotient must stay exact, i.e. the distance from
# a true quotient to the next integer (at least 1/rate) must exceed one ulp of the quotient.
_RETRY_QUOTIENT_MAX = 2 * BUCKET_COST_TOKENS_MAX * TOKEN_SCALE + BUCKET_REFILL_PER_MINUTE_MAX
assert 1 / BUCKET_REFILL_PER_MINUTE_MAX > 2.0 ** (_RETRY_QUOTIENT_MAX.bit_length() - 52)
