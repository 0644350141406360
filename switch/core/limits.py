"""Every bound of the switch core in one place, with the asserts that relate them.

Message constraints (`switch/core/messages.py`) and the config (`switch/core/config.py`)
take their numbers from here; nothing else in the core hard-codes a size or a duration.
"""

from ledger.limits import U32_MAX, U64_MAX

NS_PER_MS = 1_000_000
TIME_NS_MAX = 2**63 - 1  # msgspec constraints are int64; UTC ns fit until the year 2262
NS_PER_DAY = 86_400 * 1_000_000_000

# Money. One transfer carries at most this many minor units (10**15 minor units is ten
# trillion in a two-decimal currency); the bound keeps amount + fee and any daily total far
# below the ledger's u64 so no sum in the core can overflow it.
AMOUNT_MINOR_MAX = 10**15
BPS_PER_UNIT = 10_000  # basis points in the whole amount
FEE_BPS_MAX = BPS_PER_UNIT  # a fee of more than the whole amount is a configuration error
FEE_FIXED_MINOR_MAX = AMOUNT_MINOR_MAX
DAILY_TOTAL_MINOR_MAX = 10**18  # per payer participant and currency, per UTC day
NET_DEBIT_CAP_MINOR_MAX = 10**18

# Identifiers.
PARTICIPANT_ID_MAX = (1 << 24) - 1  # fits the account-id layout (docs/ledger-accounts.md)
PARTICIPANTS_MAX = 10_000
CURRENCIES_MAX = 64
LEDGER_ID_MAX = (1 << 24) - 1  # ISO 4217 numeric codes fit easily
ID_LENGTH_MAX = 64  # transfer ids, request-to-pay ids, admin request ids (a UUID is 36)
REFERENCE_LENGTH_MAX = 128  # account references, end-to-end ids, alias values
TEXT_LENGTH_MAX = 140  # purpose, reject reasons, names (ISO 20022 remittance line)
NATIONAL_ID_LENGTH_MAX = 64
CALLBACK_URL_LENGTH_MAX = 2_048  # a participant's callback URL, wherever it is set  # a raw national ID as a participant sends it (never stored)

# Time. A payer-set expiry more than this far ahead is refused: the idempotency table keeps
# a transfer until its expiry has passed, so this bound is also how long an id is remembered.
EXPIRY_MS_MAX_DEFAULT = 5 * 60 * 1000
EXPIRY_MS_MAX_CEILING = 24 * 3600 * 1000
PAYEE_TIMEOUT_MS_DEFAULT = 10_000
# Returns: a scheme rule, and the transfer history keeps every final transfer at least as
# long (switch/server config `history_retention_days`).
RETURN_WINDOW_DAYS_DEFAULT = 400
RETURN_WINDOW_DAYS_MAX = 10 * 366
PAYEE_TIMEOUT_MS_MAX = 10 * 60 * 1000

# Tables. Final transfers are retained up to TRANSFERS_RETAINED_MAX (and, unless a durable
# history answers for them, never dropped before their expiry: CoreConfig
# finals_kept_until_expiry); at most IN_FLIGHT_MAX transfers wait for a payee at once.
# 262,144 keeps a restart's snapshot load near two seconds (`ponte bench recovery`).
TRANSFERS_RETAINED_MAX_DEFAULT = 1 << 18
IN_FLIGHT_MAX_DEFAULT = 1 << 16
REQUESTS_TO_PAY_RETAINED_MAX_DEFAULT = 1 << 16
ADMIN_REQUESTS_RETAINED_MAX_DEFAULT = 1 << 12
TABLE_MAX_CEILING = 1 << 26

# Ledger transfer ids: the core gives every transfer a sequence number and derives the ids
# of its ledger legs from it (seq << LEDGER_ID_SHIFT | leg).
LEDGER_ID_SHIFT = 3
SEQUENCE_MAX = (U64_MAX >> LEDGER_ID_SHIFT) - 1

# Commands per step: a transfer decision emits at most a handful; recovery emits one per
# live timer and in-flight transfer (bounded by the tables above).
COMMANDS_PER_STEP_MAX = 8

assert AMOUNT_MINOR_MAX + FEE_FIXED_MINOR_MAX + AMOUNT_MINOR_MAX < U64_MAX
assert DAILY_TOTAL_MINOR_MAX + 2 * AMOUNT_MINOR_MAX < U64_MAX
assert NET_DEBIT_CAP_MINOR_MAX < U64_MAX
assert PARTICIPANTS_MAX <= PARTICIPANT_ID_MAX
assert LEDGER_ID_MAX <= U32_MAX
assert PAYEE_TIMEOUT_MS_DEFAULT <= PAYEE_TIMEOUT_MS_MAX
assert EXPIRY_MS_MAX_DEFAULT <= EXPIRY_MS_MAX_CEILING
assert IN_FLIGHT_MAX_DEFAULT <= TRANSFERS_RETAINED_MAX_DEFAULT
assert TRANSFERS_RETAINED_MAX_DEFAULT <= TABLE_MAX_CEILING
assert (1 << LEDGER_ID_SHIFT) >= 6  # legs: reserve, fee, post, post fee, void, void fee
