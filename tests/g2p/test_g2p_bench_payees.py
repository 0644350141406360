"""The G2P bench's payees are the simulated banks and wallets (`connectors/sim/runner.py`),
and the bench starts the batch as soon as they say "ready". A simulator used to build its
payment plan after "ready" — for the bench's million-row run, 1.36 million payments, which
held its loop for seconds while the batch's first rows waited for their payees (some
expired). The plan is now built before "ready"."""

from __future__ import annotations

import msgspec

from connectors.sim.population import load_profile
from connectors.sim.runner import RunConfig, SimRunner

TPS = 50.0
SECONDS = 2.0


async def test_a_simulator_has_its_payment_plan_before_it_says_ready(monkeypatch):
    profile = load_profile("quick")
    hosted = [participant.participant_id for participant in profile.participants]
    config = msgspec.convert({"port": 7400, "tps": TPS, "seconds": SECONDS,
                              "participants": [{"name": name, "api_key": "k"}
                                               for name in hosted]}, RunConfig)
    seen = []

    def emit(record):
        seen.append((record["type"], runner._plan))

    runner = SimRunner(config, emit=emit)
    for sim in runner.sims.values():
        async def connect(*args, **kwargs):  # no switch: the plan is what is checked
            return None

        async def register_aliases():
            return {}

        monkeypatch.setattr(sim, "connect", connect)
        monkeypatch.setattr(sim, "register_aliases", register_aliases)

    await runner.setup()

    assert [kind for kind, _plan in seen] == ["ready"]
    plan = seen[0][1]
    assert isinstance(plan, list)  # built, not a generator still to be run
    assert len(plan) == int(TPS * SECONDS)
    offsets = [payment[0] for payment in plan]
    assert offsets == sorted(offsets) and offsets[0] == 0.0
    assert all(payment[1] in hosted for payment in plan)  # payers are the hosted ones
    # run() offers that plan: it takes it over and does not build another.
    built = []
    monkeypatch.setattr(runner, "_build_plan", lambda: built.append(1) or [])
    monkeypatch.setattr(runner, "_offer", _record_offer)
    monkeypatch.setattr(runner, "_drain", _nothing)
    monkeypatch.setattr(runner, "final", lambda elapsed_s: {"type": "final"})
    await runner.run()
    assert built == [] and _record_offer.plans == [plan] and runner._plan is None


async def _record_offer(plan, started):
    _record_offer.plans.append(plan)


_record_offer.plans = []


async def _nothing():
    return None
