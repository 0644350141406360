"""How much each simulated participant is funded with: sized to the traffic it will see.

A participant funded with far more than it will ever move shows a flat liquidity bar in the
console and never meets the switch's liquidity checks; one funded with too little runs dry
and its payments are refused. The population's payments are deterministic for a seed, so
the run's plan is replayed (a bounded sample of it, scaled to the whole run) and each
participant gets the larger of

    FUNDING_DRAWDOWN_FACTOR x the deepest its position would fall on plan, and
    FUNDING_OUTFLOW_S seconds of its mean planned outflow,

and never less than the profile's largest single payment. Rejected and returned payments
only make the path shallower. It must never do I/O.
"""

from __future__ import annotations

import math
from typing import Iterable

from connectors.sim.limits import (
    FUNDING_DRAWDOWN_FACTOR,
    FUNDING_OUTFLOW_S,
    FUNDING_PLAN_PAYMENTS_MAX,
)
from connectors.sim.population import Population
from connectors.sim.runner import offered_intents


def opening_positions(population: Population, hosted: Iterable[str], tps: float,
                      seconds: float) -> dict[str, int]:
    """participant name -> funding in minor units for a run at `tps` for `seconds`."""
    hosted = set(hosted)
    assert tps > 0 and seconds >= 0
    planned = int(tps * seconds)
    sample = min(planned, FUNDING_PLAN_PAYMENTS_MAX)
    position = dict.fromkeys(hosted, 0)
    low = dict.fromkeys(hosted, 0)
    sent = dict.fromkeys(hosted, 0)
    for intent in offered_intents(population, hosted, tps, sample / tps):
        payer = intent.payer_participant_id
        payee = intent.payee_participant_id
        position[payer] -= intent.amount_minor
        low[payer] = min(low[payer], position[payer])
        sent[payer] += intent.amount_minor
        if payee in position:
            position[payee] += intent.amount_minor
    # Both the drift (hence the drawdown) and the outflow grow linearly with the run.
    scale = planned / sample if sample else 0.0
    profile = population.profile
    largest_minor = max(u.cap_major for u in profile.use_cases) * 10**profile.currency_exponent
    funding = {}
    for name in hosted:
        drawdown_minor = -low[name] * scale
        outflow_per_s = sent[name] * scale / seconds if seconds else 0.0
        funding[name] = max(largest_minor,
                            math.ceil(FUNDING_DRAWDOWN_FACTOR * drawdown_minor),
                            math.ceil(FUNDING_OUTFLOW_S * outflow_per_s))
    return funding
