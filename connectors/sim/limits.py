"""Every bound of the simulators and their population model in one place, with the
asserts that relate them.

Nothing here may depend on configuration read at run time.
"""

# Population. A person's MSISDN is a country prefix plus MSISDN_SUBSCRIBER_DIGITS digits
# drawn by a bijection of the person's index, so the digits bound the number of people.
MSISDN_SUBSCRIBER_DIGITS = 8
NATIONAL_ID_DIGITS = 10
PEOPLE_MAX = 50_000_000
MERCHANTS_MAX = 5_000_000
BILLERS_MAX = 100_000
PARTICIPANTS_MAX = 64
# The offered-rate curve is integrated on a one-second grid held in memory (8 bytes per
# second of run), so the run length bounds that grid: one week is ~5 MB.
RUN_DURATION_S_MAX = 7 * 24 * 3600
RATE_PER_S_MAX = 1_000_000.0
STEPS_MAX = 1_000
# Samples of rate_at() averaged into each second of the grid; enough to place a spike or a
# step edge that falls inside a second to within 1/8 s.
RATE_GRID_SUBSAMPLES = 8
# Amounts: an upper bound for any per-use-case cap, in minor units (fits a signed 64-bit
# integer with room to sum a few thousand of them).
AMOUNT_MINOR_MAX = 10**15
CURRENCY_EXPONENT_MAX = 4

# Payments computed before the clock starts when a run offers at most this many (~120 B
# each); longer runs generate them on the fly.
PRECOMPUTED_INTENTS_MAX = 3_000_000
# The population's flat rate is this many times the offered rate: on-us payments (payer and
# payee at the same participant, ~40% in the quick profile) are left out of the offer.
ON_US_HEADROOM = 2.0
# Payments due within this much of now go out together: one socket write per connection
# per tick instead of one per payment (the offered rate is unchanged; arrivals come in
# small bursts, as they do from a real bank's queue).
OFFER_TICK_S = 0.002
# After the last payment's answer, how long to wait for the payees' last outcome pushes.
DRAIN_GRACE_S = 0.5
# Transfers a simulated participant keeps open before its sender waits.
PENDING_TRANSFERS_MAX_DEFAULT = 50_000

assert 10**MSISDN_SUBSCRIBER_DIGITS >= PEOPLE_MAX
assert 10**NATIONAL_ID_DIGITS >= PEOPLE_MAX
assert MERCHANTS_MAX <= PEOPLE_MAX
assert BILLERS_MAX <= MERCHANTS_MAX
assert PARTICIPANTS_MAX >= 1
assert RATE_GRID_SUBSAMPLES >= 1
assert RATE_PER_S_MAX * RUN_DURATION_S_MAX < 2**63
assert AMOUNT_MINOR_MAX < 2**63
assert ON_US_HEADROOM >= 1.0
assert 0.0 < OFFER_TICK_S < DRAIN_GRACE_S
