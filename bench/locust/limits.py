"""Every bound of the load harness (bench/locust/, bench/soak_bench.py, bench/step_bench.py)
in one place, with the asserts that relate them.

The rig, the open-loop driver and the locust users size their queues, waits and memory from
these; an option that asks for more is refused with a usage error before anything starts.
"""

# Load participants: each population participant gets one payer identity per slot (one
# locust worker, or the driver, uses one slot), so a stream payer is the only connection of
# its participant and receives its own outcomes (the switch pushes a participant's messages
# to its oldest connection).
SLOTS_MAX = 32
# Funding of every participant the rig creates, in minor units: deep enough that no run
# fails for money (the bench measures the switch, not liquidity).
FUNDING_MINOR = 10**15

# The open-loop driver: payments offered and not yet final. Past it the driver counts an
# offered payment as DROPPED_BACKLOG instead of sending it, so an overloaded switch cannot
# make the driver's memory grow without bound.
IN_FLIGHT_MAX = 50_000
# A payment's transfer waits at most this long for its final outcome; later it counts as
# ERROR_TIMEOUT. Above the payee timeout (10 s default) so an EXPIRED outcome still arrives.
TRANSFER_WAIT_S_MAX = 30.0
# Resolve and status calls wait at most this long.
CALL_WAIT_S_MAX = 10.0
# After the last offer, how long the driver waits for the payments still in flight.
DRAIN_S_MAX = 60.0

# Runs.
RUN_SECONDS_MAX = 7 * 24 * 3600
RATE_PER_S_MAX = 100_000.0
STEPS_MAX = 200
# A step is judged once its transfers are final, or this long after it ended (still-open
# transfers then count as slower than the bound and as not OK).
STEP_JUDGE_WAIT_S_MAX = 30.0
P99_MS_BOUND_DEFAULT = 250.0
SUCCESS_RATIO_BOUND_DEFAULT = 0.99

# Processes the rig starts: how long each may take to become ready, and to stop.
SWITCH_READY_S_MAX = 120.0
PAYEES_READY_S_MAX = 600.0  # alias registration of a large population takes a while
PROCESS_STOP_S_MAX = 60.0

# Locust users.
LOCUST_STATUS_POLLS_MAX = 200  # HTTP users poll status until the transfer is final
LOCUST_STATUS_POLL_INTERVAL_S = 0.02
LOCUST_RUN_SECONDS_MAX = 24 * 3600

assert 1 <= SLOTS_MAX <= 64
assert IN_FLIGHT_MAX >= 1
assert CALL_WAIT_S_MAX < TRANSFER_WAIT_S_MAX <= DRAIN_S_MAX
assert 0.0 < P99_MS_BOUND_DEFAULT < STEP_JUDGE_WAIT_S_MAX * 1000
assert 0.0 <= SUCCESS_RATIO_BOUND_DEFAULT <= 1.0
assert LOCUST_STATUS_POLLS_MAX * LOCUST_STATUS_POLL_INTERVAL_S <= TRANSFER_WAIT_S_MAX
assert STEPS_MAX >= 1
