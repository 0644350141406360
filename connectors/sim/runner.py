"""A simulator process: hosts one or more simulated participants, registers their aliases,
offers the population's payments at a fixed rate, and reports as JSON lines on stdout.

    {"type": "ready", "participants": {...}}                    after aliases are registered
                                                                and the payment plan is built
    {"type": "stats", "t_s", "sent", "done", "ok", "interval_per_s", "p50_ms", "p90_ms",
     "p99_ms", "success_rate", "outcomes": {result: count in the interval}}
                                                                every stats interval
    {"type": "final", "books": [...], "latency": {...}, "results": {...}, ...}

Traffic comes from `connectors.sim.population` (the profile's customers and payments) with the rate
replaced by a flat `tps` of payments actually sent; payments whose payee is a customer of the paying participant
itself (on-us) are settled inside that participant and never reach the switch, as in real
life. Payments to RANDOM aliases are sent to another alias of the same customer (RANDOM
keys are issued by the directory, so the population's keys are not registered).

It must never talk to the switch except through the SDK, and never print a key.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import time
from typing import Annotated, Iterator, Literal

import msgspec

from connectors.sim.population import (
    AliasKind,
    FlatRate,
    PaymentIntent,
    Population,
    load_profile,
)
from connectors.sim.latency import LatencyHistogram
from connectors.sim.limits import (
    DRAIN_GRACE_S,
    DRAIN_TIMEOUT_S_MAX,
    OFFER_TICK_S,
    ON_US_HEADROOM,
    PENDING_TRANSFERS_MAX,
    PENDING_TRANSFERS_MAX_DEFAULT,
    PRECOMPUTED_INTENTS_MAX,
    RUN_SECONDS_MAX,
    STATS_INTERVAL_S_MAX,
    TPS_MAX,
)
from connectors.sim.participant import SimOptions, SimParticipant, directory_alias


class HostedParticipant(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    api_key: str
    opening_position_minor: Annotated[int, msgspec.Meta(ge=0)] = 0
    # "mobilemoney": a wallet that pays and is credited through the GSMA Mobile Money API
    # hub at `hub_url`, serving its own side of that API on `wallet_port`
    # (connectors/sim/mobilemoney.py); "stream": the SDK's stream client.
    protocol: Literal["stream", "mobilemoney"] = "stream"
    hub_url: str = ""
    wallet_port: Annotated[int, msgspec.Meta(ge=0, le=65_535)] = 0


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A simulator run; the bounds hold for every way in (CLI options, --config, demo)."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65_535)]
    # More stream ports of the same switch on `host` (its standbys): the SDK moves to the
    # next when the one it uses goes away.
    fallback_ports: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=65_535)]],
                              msgspec.Meta(max_length=8)] = []
    participants: list[HostedParticipant]
    profile: str = "quick"
    seed: int = 1
    tps: Annotated[float, msgspec.Meta(gt=0.0, le=TPS_MAX)] = 100.0
    seconds: Annotated[float, msgspec.Meta(gt=0.0, le=RUN_SECONDS_MAX)] = 10.0
    stats_interval_s: Annotated[float, msgspec.Meta(gt=0.0, le=STATS_INTERVAL_S_MAX)] = 1.0
    register: bool = True
    options: SimOptions = SimOptions()
    drain_timeout_s: Annotated[float, msgspec.Meta(ge=0.0, le=DRAIN_TIMEOUT_S_MAX)] = 60.0
    pending_max: Annotated[int, msgspec.Meta(ge=1, le=PENDING_TRANSFERS_MAX)] = (
        PENDING_TRANSFERS_MAX_DEFAULT)


def build_population(profile_name: str, seed: int, tps: float, seconds: float) -> Population:
    """The profile's customers, with a flat rate high enough that, after on-us payments
    are left out, `tps * seconds` payments remain to be offered."""
    profile = load_profile(profile_name)
    duration_s = max(1, int(seconds + 0.999))
    profile = msgspec.structs.replace(
        profile, rate=FlatRate(rate_per_s=max(tps, 0.0) * ON_US_HEADROOM),
        duration_s=duration_s, spike=None, arrivals="even")
    return Population.build(profile, seed)


def random_reroutes(population: Population) -> dict[str, tuple[str, str]]:
    """RANDOM key -> (alias kind, value) of another alias of the same customer."""
    reroutes: dict[str, tuple[str, str]] = {}
    profile = population.profile
    for index in range(profile.people):
        person = population.person(index)
        kinds = {alias.kind: alias.value for alias in person.aliases}
        if AliasKind.RANDOM not in kinds:
            continue
        other = next(((k.value, v) for k, v in kinds.items() if k is not AliasKind.RANDOM),
                     ("NATIONAL_ID", person.national_id))
        reroutes[kinds[AliasKind.RANDOM]] = other
    for index in range(profile.merchants):
        merchant = population.merchant(index)
        kinds = {alias.kind: alias.value for alias in merchant.aliases}
        reroutes[kinds[AliasKind.RANDOM]] = ("HANDLE", kinds[AliasKind.HANDLE])
    return reroutes


def offered_intents(population: Population, hosted: set[str], tps: float,
                    seconds: float) -> Iterator[PaymentIntent]:
    """The population's payments a run offers, in order: those of hosted payers that leave
    the payer (on-us payments never reach the switch), `tps * seconds` of them."""
    count_max = int(tps * seconds)
    index = 0
    for intent in population.intents():
        if index >= count_max:
            return
        payer = intent.payer_participant_id
        if payer not in hosted or payer == intent.payee_participant_id:
            continue
        yield intent
        index += 1


def payments(population: Population, hosted: set[str], reroutes: dict, tps: float,
             seconds: float):
    """(offset_s, payer, payer_user, alias_kind, alias, amount_minor) for hosted payers,
    `tps` of them per second, evenly spaced: the offered rate is exactly what is sent."""

    def generate():
        for index, intent in enumerate(offered_intents(population, hosted, tps, seconds)):
            kind = intent.payee_alias_kind.value
            alias = intent.payee_alias
            if kind == "RANDOM":
                kind, alias = reroutes[alias]
            alias = directory_alias(kind, alias)
            yield (index / tps, intent.payer_participant_id, intent.payer_user_id, kind, alias,
                   intent.amount_minor)

    if int(tps * seconds) <= PRECOMPUTED_INTENTS_MAX:
        return list(generate())
    return generate()


def _participant(hosted: HostedParticipant, population: Population,
                 options: SimOptions) -> SimParticipant:
    if hosted.protocol == "mobilemoney":
        from connectors.sim.mobilemoney import SimMobileMoneyWallet

        return SimMobileMoneyWallet(hosted.name, population, options,
                                    hosted.opening_position_minor, hub_url=hosted.hub_url,
                                    wallet_port=hosted.wallet_port)
    return SimParticipant(hosted.name, population, options, hosted.opening_position_minor)


class SimRunner:
    def __init__(self, config: RunConfig, emit=None) -> None:
        self.config = config
        self.emit = emit or self._print
        self.population = build_population(config.profile, config.seed, config.tps,
                                           config.seconds)
        self.sims: dict[str, SimParticipant] = {
            hosted.name: _participant(hosted, self.population, config.options)
            for hosted in config.participants
        }
        self._stop = asyncio.Event()
        self.late_max_s = 0.0
        self.started_at = 0.0
        self.started_monotonic = 0.0
        self.offer_s = 0.0
        self._plan = None

    def _print(self, record: dict) -> None:
        try:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # Whoever read our lines is gone: nothing more to report to, so stop. Point
            # stdout at /dev/null so the interpreter's final flush does not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.stop()

    def stop(self) -> None:
        self._stop.set()

    async def setup(self) -> dict:
        config = self.config
        for hosted in config.participants:
            await self.sims[hosted.name].connect(
                config.host, config.port, hosted.api_key, pending_max=config.pending_max,
                fallback_addresses=[(config.host, port) for port in config.fallback_ports])
        registered = {}
        if config.register:
            for name, sim in self.sims.items():
                registered[name] = await sim.register_aliases()
        # The payment plan is built before "ready", not after: building a long run's plan
        # (millions of payments) holds this process's loop for seconds, and the simulated
        # participants are payees too — whoever starts work at "ready" (the G2P bench's
        # batch) would find them deaf meanwhile.
        self._plan = self._build_plan()
        ready = {"type": "ready", "participants": {
            name: {"participant_id": sim.participant_id, "customers": len(sim.customers),
                   "aliases": registered.get(name)} for name, sim in self.sims.items()}}
        self.emit(ready)
        return ready

    def _build_plan(self):
        config = self.config
        reroutes = random_reroutes(self.population)
        plan = payments(self.population, set(self.sims), reroutes, config.tps, config.seconds)
        # The plan and the books are long-lived: keep the cyclic collector off them, so its
        # pauses do not show up as payment latency.
        gc.collect()
        gc.freeze()
        return plan

    async def run(self) -> dict:
        plan, self._plan = self._plan, None
        if plan is None:
            plan = self._build_plan()
        loop = asyncio.get_running_loop()
        stats_task = asyncio.ensure_future(self._stats_loop())
        started = loop.time()
        self.started_at = started
        self.started_monotonic = time.monotonic()
        try:
            await self._offer(plan, started)
            self.offer_s = loop.time() - started
            await self._drain()
        finally:
            stats_task.cancel()
        return self.final(loop.time() - started)

    async def _offer(self, plan, started: float) -> None:
        loop = asyncio.get_running_loop()
        sims = self.sims
        seconds = self.config.seconds
        for offset_s, payer, user, kind, alias, amount_minor in plan:
            if self._stop.is_set() or offset_s >= seconds:
                return
            now = loop.time()
            due = started + offset_s
            if due > now + OFFER_TICK_S:
                await asyncio.sleep(due - now)
            elif now - due > self.late_max_s:
                self.late_max_s = now - due
            sim = sims[payer]
            client = sim.client
            if client.pending_transfers >= client.pending_max or not client._write_open.is_set():
                await client.room()
            sim.pay(user, kind, alias, amount_minor)

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.config.drain_timeout_s
        while time.monotonic() < deadline:
            if all(sim.client.pending_transfers == 0 for sim in self.sims.values()):
                break
            # Told to stop and the switch is gone (it is stopping too, e.g. when the
            # process that started both died): no outcome is coming, so waiting for
            # reconnects would only keep this process alive without a purpose.
            if self._stop.is_set() and not all(sim.client.connected
                                               for sim in self.sims.values()):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(DRAIN_GRACE_S)  # the payees' last outcome pushes

    async def _stats_loop(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        last_done = 0
        last = started
        last_results: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.config.stats_interval_s)
            now = loop.time()
            interval = LatencyHistogram()
            sent = done = ok = 0
            results: dict[str, int] = {}
            for sim in self.sims.values():
                interval.merge(sim.interval_latency)
                sim.interval_latency = LatencyHistogram()
                sent += sim.sent
                done += sim.done
                ok += sim.results.get("COMMITTED", 0)
                for name, count in sim.results.items():
                    results[name] = results.get(name, 0) + count
            # Final answers of this interval, by result (what a report's outcome mix plots).
            outcomes = {name: count - last_results.get(name, 0)
                        for name, count in sorted(results.items())
                        if count != last_results.get(name, 0)}
            self.emit({
                "type": "stats", "t_s": round(now - started, 3), "sent": sent, "done": done,
                "ok": ok, "interval_per_s": round((done - last_done) / max(now - last, 1e-9), 1),
                "p50_ms": round(interval.quantile(0.5) * 1000, 3),
                "p90_ms": round(interval.quantile(0.9) * 1000, 3),
                "p99_ms": round(interval.quantile(0.99) * 1000, 3),
                "success_rate": round(ok / done, 5) if done else 0.0,
                "outcomes": outcomes,
            })
            last_done = done
            last = now
            last_results = results

    def final(self, elapsed_s: float) -> dict:
        latency = LatencyHistogram()
        results: dict[str, int] = {}
        for sim in self.sims.values():
            latency.merge(sim.latency)
            for name, count in sim.results.items():
                results[name] = results.get(name, 0) + count
        done = sum(sim.done for sim in self.sims.values())
        last_done = max((sim.last_done_at for sim in self.sims.values()), default=0.0)
        busy_s = max(last_done - self.started_monotonic, 1e-9) if last_done else elapsed_s
        sent = sum(sim.sent for sim in self.sims.values())
        record = {
            "type": "final",
            "elapsed_s": round(elapsed_s, 3),
            "offered_per_s": round(sent / max(self.offer_s, 1e-9), 1),
            "completed_per_s": round(done / busy_s, 1),
            "sent": sent,
            "done": done,
            "results": results,
            "returns_sent": sum(sim.returns_sent for sim in self.sims.values()),
            "credit_requests_answered": sum(sim.answered for sim in self.sims.values()),
            "late_max_s": round(self.late_max_s, 4),
            "latency": latency.to_json(),
            "p50_ms": round(latency.quantile(0.5) * 1000, 3),
            "p90_ms": round(latency.quantile(0.9) * 1000, 3),
            "p99_ms": round(latency.quantile(0.99) * 1000, 3),
            "books": [msgspec.to_builtins(sim.books.report()) for sim in self.sims.values()],
        }
        self.emit(record)
        return record

    async def close(self) -> None:
        for sim in self.sims.values():
            await sim.close()


async def run_process(config: RunConfig) -> dict:
    runner = SimRunner(config)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, runner.stop)
    try:
        await runner.setup()
        return await runner.run()
    finally:
        await runner.close()
