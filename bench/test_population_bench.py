"""pytest-benchmark: how fast the population model generates payment intents.

Run: `python -m pytest bench/test_population_bench.py --benchmark-only`. A load driver needs
generation well above the rate it offers (or it pre-generates), so the figure that matters
is intents per second of one core; it is recorded in extra_info as `intents_per_s`.
This file measures only; it asserts nothing about speed.
"""

from __future__ import annotations

from itertools import islice

import msgspec
import pytest

from connectors.sim.population import Population, load_profile

INTENTS = 100_000


@pytest.mark.parametrize("profile_name", ["national", "festival"])
def test_intent_generation_rate(benchmark, profile_name):
    profile = load_profile(profile_name)
    population = Population.build(profile, seed=1)

    def generate() -> int:
        count = 0
        for _ in islice(population.intents(), INTENTS):
            count += 1
        return count

    count = benchmark.pedantic(generate, rounds=3, iterations=1, warmup_rounds=0)
    assert count == INTENTS  # both runs offer over a million payments
    benchmark.extra_info["intents"] = count
    benchmark.extra_info["intents_per_s"] = round(count / benchmark.stats.stats.mean)


def test_population_build_time(benchmark):
    # Building is O(run seconds), not O(people): a million-person profile is ready at once.
    profile = msgspec.structs.replace(load_profile("national"), people=10_000_000)
    population = benchmark(Population.build, profile, 1)
    assert population.profile.people == 10_000_000
