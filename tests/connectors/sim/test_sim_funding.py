"""Simulated participants are funded for the traffic they will see: enough that the planned
payments never run them dry, little enough that their positions visibly move (the console's
liquidity bars are the demo's picture of the switch)."""

from __future__ import annotations

import pytest

from connectors.sim import limits
from connectors.sim.funding import opening_positions
from connectors.sim.runner import build_population, offered_intents

PROFILE = "quick"


def _planned_flows(population, hosted, tps, seconds):
    """participant -> (deepest drawdown, money sent, largest payment) of the planned run."""
    position = dict.fromkeys(hosted, 0)
    low = dict.fromkeys(hosted, 0)
    sent = dict.fromkeys(hosted, 0)
    largest = dict.fromkeys(hosted, 0)
    for intent in offered_intents(population, hosted, tps, seconds):
        payer, payee = intent.payer_participant_id, intent.payee_participant_id
        position[payer] -= intent.amount_minor
        position[payee] += intent.amount_minor
        low[payer] = min(low[payer], position[payer])
        sent[payer] += intent.amount_minor
        largest[payer] = max(largest[payer], intent.amount_minor)
    return {name: (-low[name], sent[name], largest[name]) for name in hosted}


@pytest.mark.parametrize("tps, seconds", [(500, 60), (200, 2), (50, 600)])
def test_funding_covers_the_planned_run_and_still_moves(tps, seconds):
    population = build_population(PROFILE, 1, tps, seconds)
    hosted = {p.participant_id for p in population.profile.participants}
    funding = opening_positions(population, hosted, tps, seconds)
    assert set(funding) == hosted
    for name, (drawdown, sent, largest) in _planned_flows(population, hosted, tps,
                                                            seconds).items():
        assert funding[name] >= limits.FUNDING_DRAWDOWN_FACTOR * drawdown, name
        assert funding[name] >= largest, name
        # Visible: the run moves at least a tenth of what the participant was given.
        assert sent >= funding[name] / 10, (name, sent, funding[name])


def test_funding_without_traffic_still_covers_one_payment():
    population = build_population(PROFILE, 1, 1, 0.5)
    hosted = {p.participant_id for p in population.profile.participants}
    scale = 10 ** population.profile.currency_exponent
    largest_cap_minor = max(u.cap_major for u in population.profile.use_cases) * scale
    assert opening_positions(population, hosted, 1, 0.5) == dict.fromkeys(hosted,
                                                                         largest_cap_minor)


def test_a_long_run_is_planned_from_a_bounded_sample():
    """Hours of traffic are not replayed payment by payment: the sample's drawdown and
    outflow are scaled to the whole run, so a longer run never gets less."""
    population = build_population(PROFILE, 1, 1000, 3600)
    hosted = {p.participant_id for p in population.profile.participants}
    long = opening_positions(population, hosted, 1000, 3600)
    sample_s = limits.FUNDING_PLAN_PAYMENTS_MAX / 1000
    short = opening_positions(build_population(PROFILE, 1, 1000, sample_s), hosted, 1000,
                              sample_s)
    for name in hosted:
        assert long[name] >= short[name], name
