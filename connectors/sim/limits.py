"""Every bound of the simulators in one place, with the asserts that relate them.

Nothing here may depend on configuration read at run time.
"""

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

assert ON_US_HEADROOM >= 1.0
assert 0.0 < OFFER_TICK_S < DRAIN_GRACE_S
