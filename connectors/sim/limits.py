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
# Transfers a simulated participant keeps open before its sender waits (configurable up to
# PENDING_TRANSFERS_MAX).
PENDING_TRANSFERS_MAX_DEFAULT = 50_000
PENDING_TRANSFERS_MAX = 1 << 20
# Bounds of a run's configuration (RunConfig, SimOptions, and `ponte demo`'s options).
TPS_MAX = 1_000_000.0
RUN_SECONDS_MAX = 7 * 86_400.0
STATS_INTERVAL_S_MAX = 3_600.0
DRAIN_TIMEOUT_S_MAX = 3_600.0
ANSWER_LATENCY_MS_MAX = 60_000.0
EXPIRY_S_MAX = 86_400.0

assert 10**MSISDN_SUBSCRIBER_DIGITS >= PEOPLE_MAX
assert 10**NATIONAL_ID_DIGITS >= PEOPLE_MAX
assert MERCHANTS_MAX <= PEOPLE_MAX
assert BILLERS_MAX <= MERCHANTS_MAX
assert PARTICIPANTS_MAX >= 1
assert RATE_GRID_SUBSAMPLES >= 1
assert RATE_PER_S_MAX * RUN_DURATION_S_MAX < 2**63
assert AMOUNT_MINOR_MAX < 2**63
assert ON_US_HEADROOM >= 1.0
assert 1 <= PENDING_TRANSFERS_MAX_DEFAULT <= PENDING_TRANSFERS_MAX
assert TPS_MAX * RUN_SECONDS_MAX > PRECOMPUTED_INTENTS_MAX
assert 0.0 < OFFER_TICK_S < DRAIN_GRACE_S
# Funding of simulated participants (connectors/sim/funding.py): each gets at least this
# many times the deepest drawdown its planned payments would cause, and at least this many
# seconds of its mean planned outflow — enough never to run dry on plan, little enough
# that its position visibly moves.
FUNDING_DRAWDOWN_FACTOR = 1.5
FUNDING_OUTFLOW_S = 10.0
# Payments replayed to size the funding; a longer run is scaled from this sample (drift
# and outflow grow linearly with time).
FUNDING_PLAN_PAYMENTS_MAX = 200_000

assert FUNDING_DRAWDOWN_FACTOR >= 1.0
assert FUNDING_OUTFLOW_S > 0.0
assert 0 < FUNDING_PLAN_PAYMENTS_MAX <= PRECOMPUTED_INTENTS_MAX
