"""The payee side of a load run: one process hosting a simulated bank or wallet per
population participant (`connectors.sim.participant.SimParticipant`), each connected over
the stream protocol, its customers' aliases registered, answering every credit request the
switch sends it. It offers no traffic of its own: the load generators (the open-loop
driver, locust users) are the payers.

    python -m bench.locust.payees --config payees.json

prints JSON lines on stdout: {"type": "ready", ...} once the aliases are registered, and
{"type": "final", "answered": ..., "books": [...]} after SIGTERM or SIGINT.

It must never talk to the switch except through the SDK, and never print an API key.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import msgspec

from connectors.sim.population import Population
from connectors.sim.participant import SimOptions, SimParticipant


class HostedPayee(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    api_key: str
    opening_position_minor: int = 0


class PayeesConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int
    profile: str
    seed: int = 1
    participants: list[HostedPayee]
    options: SimOptions = SimOptions()
    register: bool = True


def _emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def serve(config: PayeesConfig) -> dict:
    from bench.locust.rig import load_profile_ref

    population = Population.build(load_profile_ref(config.profile), config.seed)
    sims = {
        hosted.name: SimParticipant(hosted.name, population, config.options,
                                    hosted.opening_position_minor)
        for hosted in config.participants
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        for hosted in config.participants:
            await sims[hosted.name].connect(config.host, config.port, hosted.api_key)
        registered = {}
        if config.register:
            for name, sim in sims.items():
                registered[name] = await sim.register_aliases()
        _emit({"type": "ready", "participants": {
            name: {"participant_id": sim.participant_id, "customers": len(sim.customers),
                   "aliases": registered.get(name)} for name, sim in sims.items()}})
        await stop.wait()
        final = {
            "type": "final",
            "answered": sum(sim.answered for sim in sims.values()),
            "books": [msgspec.to_builtins(sim.books.report()) for sim in sims.values()],
        }
        _emit(final)
        return final
    finally:
        for sim in sims.values():
            await sim.close()


def main(argv: list[str] | None = None) -> None:
    import argparse

    import uvloop

    parser = argparse.ArgumentParser(prog="python -m bench.locust.payees",
                                     description="Host the payee simulators of a load run.")
    parser.add_argument("--config", required=True, help="A PayeesConfig as JSON.")
    args = parser.parse_args(argv)
    with open(args.config, "rb") as file:
        config = msgspec.json.decode(file.read(), type=PayeesConfig)
    uvloop.run(serve(config))


if __name__ == "__main__":
    main()
