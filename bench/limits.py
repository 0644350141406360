"""Every bound of the bench package in one place, with the asserts that relate them.

The report writer and the resource sampler size their memory and their loops from these;
a caller that asks for more gets a typed error. The population model's bounds live with it
(connectors/sim/limits.py).
"""

from connectors.sim.limits import RUN_DURATION_S_MAX, STEPS_MAX

# Report writer and resource sampler.
SERIES_SAMPLES_MAX = RUN_DURATION_S_MAX  # one per second of the longest run
OUTCOME_NAMES_MAX = 64
SAMPLER_SAMPLES_MAX_DEFAULT = 24 * 3600
STEP_RESULTS_MAX = STEPS_MAX

assert SAMPLER_SAMPLES_MAX_DEFAULT <= SERIES_SAMPLES_MAX
assert STEP_RESULTS_MAX >= 1
