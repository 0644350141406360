"""Every bound of the ledger in one place, with the asserts that relate them.

Both twins, the journal and the switch import it first, so it must never import another
ledger module or read anything at run time (per-deployment sizes live in LedgerConfig,
whose defaults come from here).
"""

U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1

# One create_* call carries at most this many events (TigerBeetle's number: 8,189 x 128-byte
# events fit a 1 MiB message; ours are 72 bytes, so one batch is ~590 KB).
BATCH_EVENTS_MAX = 8_189

# Defaults for LedgerConfig; every one of them bounds memory.
ACCOUNTS_MAX_DEFAULT = 1_000_000
TRANSFERS_RETAINED_MAX_DEFAULT = 1 << 20
PENDING_MAX_DEFAULT = 1 << 18
HISTORY_RETAINED_MAX_DEFAULT = 1 << 18

assert BATCH_EVENTS_MAX >= 1
assert TRANSFERS_RETAINED_MAX_DEFAULT >= BATCH_EVENTS_MAX
assert PENDING_MAX_DEFAULT <= TRANSFERS_RETAINED_MAX_DEFAULT
