"""Every bound of the bench package in one place, with the asserts that relate them.

The population model, the report writer and the resource sampler size their memory and
their loops from these; a profile or a caller that asks for more gets a typed error.
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

# Report writer and resource sampler.
SERIES_SAMPLES_MAX = RUN_DURATION_S_MAX  # one per second of the longest run
OUTCOME_NAMES_MAX = 64
SAMPLER_SAMPLES_MAX_DEFAULT = 24 * 3600
STEP_RESULTS_MAX = STEPS_MAX

assert 10**MSISDN_SUBSCRIBER_DIGITS >= PEOPLE_MAX
assert 10**NATIONAL_ID_DIGITS >= PEOPLE_MAX
assert MERCHANTS_MAX <= PEOPLE_MAX
assert BILLERS_MAX <= MERCHANTS_MAX
assert PARTICIPANTS_MAX >= 1
assert RATE_GRID_SUBSAMPLES >= 1
assert RATE_PER_S_MAX * RUN_DURATION_S_MAX < 2**63
assert AMOUNT_MINOR_MAX < 2**63
assert SAMPLER_SAMPLES_MAX_DEFAULT <= SERIES_SAMPLES_MAX
assert STEP_RESULTS_MAX >= 1
