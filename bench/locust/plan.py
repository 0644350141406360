"""The payments a load generator offers: the population's intents as a payer participant
would send them, the same for the open-loop driver and for every locust user.

From `connectors.sim.population` intents it drops on-us payments (payer and payee at the same
participant settle inside it and never reach the switch, as the simulators do) and sends a
payment to a RANDOM key to another alias of the same customer (RANDOM keys are issued by
the directory, so the population's own keys are never registered — the same rerouting the
simulators use, `connectors.sim.runner.random_reroutes`), and writes a HANDLE the way the
simulators registered it (`connectors.sim.participant.directory_alias`).

It must never do I/O or read the clock: offsets stay offsets, a driver turns them into time.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import msgspec

from connectors.sim.population import AliasKind, Population, Profile
from connectors.sim.participant import directory_alias
from connectors.sim.runner import random_reroutes


class Payment(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    index: int  # the intent's index in the whole run (unique across workers)
    offset_s: float
    payer_participant: str  # the population's participant name (the load identity's base)
    payer_user_id: str
    alias_type: str
    alias_value: str
    amount_minor: int
    currency: str
    # Where the alias should resolve: for checking answers, never sent.
    payee_participant: str


def load_name(participant: str, slot: int) -> str:
    """The name of the payer identity a load slot uses for a population participant."""
    assert slot >= 0, slot
    return f"{participant}_load{slot}"


class Plan:
    """The payments of one population, for worker `worker_index` of `worker_count`."""

    def __init__(self, population: Population) -> None:
        self.population = population
        self.profile: Profile = population.profile
        # O(people) once per process; the simulators pay the same cost.
        self._reroutes = random_reroutes(population)

    def payments(self, worker_index: int = 0, worker_count: int = 1) -> Iterator[Payment]:
        reroutes = self._reroutes
        random_kind = AliasKind.RANDOM
        for intent in self.population.intents(worker_index, worker_count):
            payer = intent.payer_participant_id
            if payer == intent.payee_participant_id:
                continue  # on-us: settled inside the participant
            kind = intent.payee_alias_kind
            alias = intent.payee_alias
            if kind is random_kind:
                kind_value, alias = reroutes[alias]
            else:
                kind_value = kind.value
            if kind_value == "HANDLE":
                alias = directory_alias(kind_value, alias)
            yield Payment(
                index=intent.index,
                offset_s=intent.offset_s,
                payer_participant=payer,
                payer_user_id=intent.payer_user_id,
                alias_type=kind_value,
                alias_value=alias,
                amount_minor=intent.amount_minor,
                currency=intent.currency,
                payee_participant=intent.payee_participant_id,
            )



def retime(passes: Callable[[], Iterable[Payment]], rate_per_s: float) -> Iterator[Payment]:
    """Payments re-spaced evenly at `rate_per_s` — the i-th at i / rate_per_s, renumbered i
    (so transfer ids stay unique) — taking them from `passes()` again and again as each pass
    runs out. A soak uses it so the rate the SWITCH is offered is exactly flat (on-us
    payments, dropped at random by `Plan`, otherwise make it wobble by several per cent).
    Ends if a pass yields nothing (a population whose every payment is on-us)."""
    assert rate_per_s > 0.0, rate_per_s
    i = 0
    while True:
        start = i
        for payment in passes():
            yield msgspec.structs.replace(payment, index=i, offset_s=i / rate_per_s)
            i += 1
        if i == start:
            return
