"""The open-loop driver behind `ponte bench soak` and `ponte bench step`: payer participants
(the rig's load identities of one slot) that offer the plan's payments at their scheduled
times, whatever the switch's answers, and record every result into a `SecondSeries`.

Open loop matters: a closed-loop generator slows down when the switch does and hides the
queueing delay a real population would see. Each payment is what a payer bank does for a
customer: resolve the alias, send the transfer, wait for its final outcome, and for a
sampled share of payments ask the status and check it agrees. Latency is the transfer's,
from send to final outcome (the resolve's own is kept apart).

Transports, through the SDK only: `stream` — one `StreamClient` per payer identity, the
outcome pushed on the connection; `http` — one `HttpClient` per payer identity with its
callback receiver (its URL registered on the switch through the admin surface), the outcome
POSTed back. Memory is bounded: past `limits.IN_FLIGHT_MAX` open payments an offer is
counted as DROPPED_BACKLOG instead of sent.

It must never look inside the switch, and never reuse a transfer id across runs on one rig
(every id carries the run's tag).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from typing import Callable, Iterable, Literal

import msgspec

from bench.locust import limits
from bench.locust.plan import Payment
from bench.locust.rig import LoadIdentity, RigInfo
from bench.run_report import SecondSeries
from connectors.http.client import HttpClientError
from connectors.sdk import SdkError
from connectors.sim.latency import LatencyHistogram
from switch.core.messages import ErrorAnswer, Party, Refused, TransferOutcome, TransferRequest
from switch.core.results import TRANSFER_FINAL_STATES, Result, TransferState

Transport = Literal["stream", "http"]
TRANSPORTS = ("stream", "http")

# Outcome names the driver itself gives (the others are the switch's result code names).
DROPPED_BACKLOG = "DROPPED_BACKLOG"
TIMEOUT_WAITING = "TIMEOUT_WAITING"
CONNECTION_LOST = "CONNECTION_LOST"
RESOLVE_PREFIX = "RESOLVE_"


class DriverOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    transport: Transport = "stream"
    slot: int = 0
    resolve: bool = True  # look the alias up before each transfer, as a payer bank does
    status_share: float = 0.05  # payments whose status is asked after the outcome
    expiry_s: float = 30.0  # the transfers' payer expiry
    in_flight_max: int = limits.IN_FLIGHT_MAX
    drain_s: float = 30.0
    http_connections_max: int = 4
    seed: int = 1

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}")
        if not 0.0 <= self.status_share <= 1.0:
            raise ValueError("status_share must be in [0, 1]")
        if not 1 <= self.in_flight_max <= limits.IN_FLIGHT_MAX:
            raise ValueError(f"in_flight_max must be in [1, {limits.IN_FLIGHT_MAX}]")
        if not 0.0 <= self.drain_s <= limits.DRAIN_S_MAX:
            raise ValueError(f"drain_s must be in [0, {limits.DRAIN_S_MAX}]")


class Finished(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One payment's end, handed to `on_finished` (the step driver attributes it)."""

    payment_index: int
    offset_s: float  # scheduled offset from the run's start
    offered_s: float  # on the driver's clock (time.perf_counter)
    finished_s: float
    latency_s: float | None  # send -> final outcome; None without a transfer answer
    outcome: str
    committed: bool


def outcome_name(message) -> tuple[str, bool]:
    """(result code name, committed?) of the final answer to a transfer."""
    kind = type(message)
    if kind is TransferOutcome:
        return message.result.name, message.state == TransferState.COMMITTED
    if kind is Refused or kind is ErrorAnswer:
        return message.result.name, False
    return "UNEXPECTED_ANSWER", False


# -- payers --------------------------------------------------------------------------------


class _StreamPayer:
    def __init__(self, identity: LoadIdentity) -> None:
        self.identity = identity
        self.client = None

    async def connect(self, info: RigInfo, options: DriverOptions, set_callback_url) -> None:
        from connectors.sdk.stream_client import StreamClient

        self.client = await StreamClient.connect(
            info.stream_host, info.stream_port, api_key=self.identity.api_key,
            client_name=f"bench:{self.identity.name}", pending_max=options.in_flight_max)

    async def resolve(self, alias: Party, payer_user_ref: str) -> str:
        answer = await self.client.resolve(alias.alias_type, alias.alias_value,
                                           payer_user_ref=payer_user_ref)
        return answer.result.name

    async def transfer(self, request: TransferRequest):
        return await self.client.transfer(request, timeout_s=limits.TRANSFER_WAIT_S_MAX)

    async def status(self, transfer_id: str):
        return await self.client.status(self.identity.participant_id, transfer_id)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


class _HttpPayer:
    def __init__(self, identity: LoadIdentity) -> None:
        self.identity = identity
        self.client = None
        self.waiting: dict[str, asyncio.Future] = {}

    async def connect(self, info: RigInfo, options: DriverOptions, set_callback_url) -> None:
        from connectors.sdk.http_client import HttpClient, ParticipantHandler

        payer = self

        class Handler(ParticipantHandler):
            def on_transfer_outcome(self, message) -> None:
                if message.state in TRANSFER_FINAL_STATES:
                    payer._answer(message.transfer_id, message)

            def on_refused(self, message) -> None:
                payer._answer(message.id, message)

        if not info.http_url:
            raise RuntimeError("the rig runs without the HTTP connector")
        self.client = HttpClient(info.http_url, self.identity.api_key, handler=Handler(),
                                 connections_max=options.http_connections_max)
        url = await self.client.start_receiver()
        await asyncio.get_running_loop().run_in_executor(
            None, set_callback_url, self.identity.participant_id, url)
        await self.client.connect()

    def _answer(self, transfer_id: str, message) -> None:
        future = self.waiting.pop(transfer_id, None)
        if future is not None and not future.done():
            future.set_result(message)

    async def resolve(self, alias: Party, payer_user_ref: str) -> str:
        from connectors.sdk.http_client import SwitchError

        try:
            answer = await self.client.resolve(alias.alias_type, alias.alias_value,
                                               payer_user_ref=payer_user_ref)
        except SwitchError as error:
            return error.result.name if isinstance(error.result, Result) else str(error.result)
        return answer.result.name

    async def transfer(self, request: TransferRequest):
        from connectors.sdk.http_client import SwitchError

        future = asyncio.get_running_loop().create_future()
        self.waiting[request.transfer_id] = future
        try:
            await self.client.send_transfer(request)
        except SwitchError as error:
            self.waiting.pop(request.transfer_id, None)
            result = error.result if isinstance(error.result, Result) else Result.VALIDATION_ERROR
            return ErrorAnswer(result=result, detail=error.detail[:200])
        try:
            return await asyncio.wait_for(future, limits.TRANSFER_WAIT_S_MAX)
        finally:
            self.waiting.pop(request.transfer_id, None)

    async def status(self, transfer_id: str):
        from connectors.sdk.http_client import SwitchError

        try:
            return await self.client.status(self.identity.participant_id, transfer_id)
        except SwitchError as error:
            result = error.result if isinstance(error.result, Result) else Result.VALIDATION_ERROR
            return ErrorAnswer(result=result)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


# -- the driver ----------------------------------------------------------------------------


class OpenLoopDriver:
    """`await connect()`, then `await run(payments, ...)` (as often as needed, with a fresh
    `run_tag` each time), then `await close()`."""

    def __init__(self, info: RigInfo, options: DriverOptions,
                 set_callback_url: Callable[[int, str], None] | None = None) -> None:
        self.info = info
        self.options = options
        self.set_callback_url = set_callback_url
        identities = info.slot_identities(options.slot)
        payer_type = _StreamPayer if options.transport == "stream" else _HttpPayer
        self.payers = {name: payer_type(identity) for name, identity in identities.items()}
        self.resolve_latency = LatencyHistogram()
        self.status_checked = 0
        self.status_mismatches = 0
        self.late_max_s = 0.0
        self.in_flight = 0
        self._random = random.Random(f"driver:{options.seed}")
        self._tasks: set[asyncio.Task] = set()

    async def connect(self) -> None:
        if self.options.transport == "http" and self.set_callback_url is None:
            raise ValueError("the http transport needs set_callback_url (the rig's)")
        for payer in self.payers.values():
            await payer.connect(self.info, self.options, self.set_callback_url)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for payer in self.payers.values():
            await payer.close()

    async def run(self, payments: Iterable[Payment], series: SecondSeries, *, run_tag: str,
                  seconds: float, on_finished: Callable[[Finished], None] | None = None,
                  stop: asyncio.Event | None = None) -> float:
        """Offer `payments` (offsets from series.start_s) until `seconds` or `stop`, then
        wait up to drain_s for those in flight. Returns the seconds offering lasted."""
        loop = asyncio.get_running_loop()
        clock = time.perf_counter
        start_s = series.start_s
        in_flight_max = self.options.in_flight_max
        for payment in payments:
            if payment.offset_s >= seconds or (stop is not None and stop.is_set()):
                break
            due_s = start_s + payment.offset_s
            now_s = clock()
            if due_s > now_s + 0.0005:
                await asyncio.sleep(due_s - now_s)
                now_s = clock()
            elif now_s - due_s > self.late_max_s:
                self.late_max_s = now_s - due_s
            series.offered(now_s)
            if self.in_flight >= in_flight_max:
                series.completed(now_s, None, DROPPED_BACKLOG)
                if on_finished is not None:
                    on_finished(Finished(payment_index=payment.index,
                                         offset_s=payment.offset_s, offered_s=now_s,
                                         finished_s=now_s, latency_s=None,
                                         outcome=DROPPED_BACKLOG, committed=False))
                continue
            self.in_flight += 1
            task = loop.create_task(self._pay(payment, now_s, series, run_tag, on_finished))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        offered_for_s = clock() - start_s
        deadline = clock() + self.options.drain_s
        while self.in_flight and clock() < deadline:
            await asyncio.sleep(0.02)
        return offered_for_s

    async def _pay(self, payment: Payment, offered_s: float, series: SecondSeries,
                   run_tag: str, on_finished) -> None:
        clock = time.perf_counter
        payer = self.payers[payment.payer_participant]
        alias = Party(alias_type=payment.alias_type, alias_value=payment.alias_value)
        latency_s = None
        committed = False
        try:
            if self.options.resolve:
                started = clock()
                resolved = await asyncio.wait_for(
                    payer.resolve(alias, payment.payer_user_id), limits.CALL_WAIT_S_MAX)
                self.resolve_latency.record(clock() - started)
                if resolved != "OK":
                    outcome = RESOLVE_PREFIX + resolved
                    return
            transfer_id = f"{run_tag}-{payment.index}"
            request = TransferRequest(
                transfer_id=transfer_id, payee=alias, amount_minor=payment.amount_minor,
                currency=payment.currency,
                expires_at_ns=time.time_ns() + int(self.options.expiry_s * 1e9),
                payer_account_ref=payment.payer_user_id, payer_user_ref=payment.payer_user_id)
            started = clock()
            answer = await payer.transfer(request)
            latency_s = clock() - started
            outcome, committed = outcome_name(answer)
            sampled = self._random.random() < self.options.status_share
            if sampled and type(answer) is TransferOutcome:
                await self._check_status(payer, transfer_id, answer)
        except asyncio.TimeoutError:
            outcome = TIMEOUT_WAITING
        except asyncio.CancelledError:
            outcome = CONNECTION_LOST
            raise
        except (SdkError, HttpClientError, OSError):  # the connection is gone
            outcome = CONNECTION_LOST
        finally:
            self.in_flight -= 1
            now_s = clock()
            series.completed(now_s, latency_s, outcome)
            if on_finished is not None:
                on_finished(Finished(payment_index=payment.index, offset_s=payment.offset_s,
                                     offered_s=offered_s,
                                     finished_s=now_s, latency_s=latency_s, outcome=outcome,
                                     committed=committed))

    async def _check_status(self, payer, transfer_id: str, outcome: TransferOutcome) -> None:
        answer = await asyncio.wait_for(payer.status(transfer_id), limits.CALL_WAIT_S_MAX)
        self.status_checked += 1
        if type(answer) is not TransferOutcome or answer.state != outcome.state:
            self.status_mismatches += 1


# -- a whole run: rig, driver, sampler ------------------------------------------------------


class Session:
    """What a run's monitor sees while load runs (the step driver judges steps with it)."""

    def __init__(self, driver: OpenLoopDriver, series: SecondSeries, stop: asyncio.Event,
                 seconds: float) -> None:
        self.driver = driver
        self.series = series
        self.stop = stop
        self.seconds = seconds

    @property
    def start_s(self) -> float:
        return self.series.start_s

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.series.start_s


class SessionResult:
    def __init__(self, *, samples, series: SecondSeries, driver: OpenLoopDriver,
                 offered_for_s: float, driver_cpu_s: float, wall_s: float,
                 switch_peak_rss_bytes: int, rig_ready: dict, payees_final: dict | None,
                 transport: str, payees_cpu_percent: list[float] = (),
                 box_load: tuple[float, float] = (0.0, 0.0)) -> None:
        self.samples = samples
        self.series = series
        self.driver = driver
        self.offered_for_s = offered_for_s
        self.driver_cpu_s = driver_cpu_s
        self.wall_s = wall_s
        self.switch_peak_rss_bytes = switch_peak_rss_bytes
        self.rig_ready = rig_ready
        self.payees_final = payees_final
        self.transport = transport
        self.payees_cpu_percent = list(payees_cpu_percent)
        self.box_load = box_load

    def figures(self) -> dict:
        """Figures every soak and step summary carries."""
        from bench.run_report import latency_figures

        series = self.series
        committed = series.outcomes_total.get("OK", 0)
        figures = {
            "transport": self.transport,
            "offered_total": series.offered_total,
            "completed_total": series.completed_total,
            "committed_total": committed,
            "success_ratio": committed / series.offered_total if series.offered_total else 0.0,
            "offered_for_s": self.offered_for_s,
            # On-us payments never reach the switch, so this is below the population's rate.
            "offered_to_switch_per_s": series.offered_total / self.offered_for_s
            if self.offered_for_s else 0.0,
            "committed_per_s": committed / self.offered_for_s if self.offered_for_s else 0.0,
        }
        figures.update(latency_figures(series.total, "transfer_latency"))
        figures.update(latency_figures(self.driver.resolve_latency, "resolve_latency"))
        figures.update({
            "outcomes_total": dict(sorted(series.outcomes_total.items())),
            "status_checked": self.driver.status_checked,
            "status_mismatches": self.driver.status_mismatches,
            "driver_late_max_s": self.driver.late_max_s,
            "driver_cpu_percent_mean": 100.0 * self.driver_cpu_s / self.wall_s
            if self.wall_s else 0.0,
            "switch_peak_rss_bytes": self.switch_peak_rss_bytes,
            "payees_cpu_percent_max": max(self.payees_cpu_percent, default=0.0),
            # The switch, the payees and the driver share this box with whatever else runs:
            # a load average above the core count means they got less CPU than they wanted.
            "box_cpus": os.cpu_count() or 0,
            "box_load_1m_start": self.box_load[0],
            "box_load_1m_end": self.box_load[1],
        })
        return figures


def _peak_rss_bytes(pid: int) -> int:
    """VmHWM of a live process (Linux), 0 when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_session(profile, options: DriverOptions, *, seconds: float, run_tag: str,
                payments: Iterable[Payment] | None = None,
                on_finished: Callable[[Finished], None] | None = None,
                monitor=None, on_tick=None, payee_options=None,
                work_dir: str | None = None) -> SessionResult:
    """Start a rig for `profile`, offer its payments (or `payments`) for `seconds`, stop
    everything, and return the measured series. `monitor(session)` is an optional coroutine
    run beside the load (it may set `session.stop`); `on_tick(session)` is called each second
    (progress display)."""
    import uvloop

    from bench.locust.plan import Plan
    from bench.locust.rig import Rig
    from connectors.sim.population import Population
    from connectors.sim.participant import SimOptions

    if not 0.0 < seconds <= limits.RUN_SECONDS_MAX:
        raise ValueError(f"seconds must be in (0, {limits.RUN_SECONDS_MAX}]")
    if payments is None:
        payments = Plan(Population.build(profile, options.seed)).payments()
    rig = Rig(profile, seed=options.seed, slots=1, http=options.transport == "http",
              payee_options=payee_options or SimOptions(seed=options.seed), work_dir=work_dir)
    with rig:
        result = uvloop.run(_session(rig, options, seconds, run_tag, payments, on_finished,
                                     monitor, on_tick))
    result.payees_final = rig.payees_final
    return result


async def _session(rig, options: DriverOptions, seconds: float, run_tag: str, payments,
                   on_finished, monitor, on_tick) -> SessionResult:
    from bench.sampler import ResourceSampler

    driver = OpenLoopDriver(rig.info, options, set_callback_url=rig.set_callback_url)
    await driver.connect()
    try:
        # A short lead so the first payments are not late while the loop warms up.
        start_s = time.perf_counter() + 0.2
        series = SecondSeries(start_s)
        stop = asyncio.Event()
        session = Session(driver, series, stop, seconds)
        sampler = ResourceSampler(rig.info.switch_pid, interval_s=1.0)
        # The payee simulators share the box: their CPU tells whether they, not the
        # switch, were the bottleneck.
        payees_sampler = ResourceSampler(rig.payees.process.pid, interval_s=1.0)
        resource_offset_s = time.perf_counter() - start_s
        sampler.start()
        payees_sampler.start()
        cpu_started_s = time.process_time()
        load_at_start = os.getloadavg()[0]
        helpers = []
        monitor_task = None
        if monitor is not None:
            monitor_task = asyncio.ensure_future(monitor(session))
            helpers.append(monitor_task)
        if on_tick is not None:
            helpers.append(asyncio.ensure_future(_ticker(session, on_tick)))
        try:
            offered_for_s = await driver.run(payments, series, run_tag=run_tag,
                                             seconds=seconds, on_finished=on_finished,
                                             stop=stop)
            if monitor_task is not None:
                # The monitor judges the last of the load after the offering ends.
                await asyncio.wait([monitor_task], timeout=limits.STEP_JUDGE_WAIT_S_MAX + 1.0)
                if monitor_task.done() and not monitor_task.cancelled():
                    monitor_task.result()  # a monitor's bug must not pass silently
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            sampler.stop()
            payees_sampler.stop()
        wall_s = time.perf_counter() - start_s
        driver_cpu_s = time.process_time() - cpu_started_s
        whole_seconds = max(1, min(int(offered_for_s + 0.5), int(seconds + 0.999)))
        samples = series.samples(sampler.samples(), resource_offset_s, seconds=whole_seconds)
        return SessionResult(
            samples=samples, series=series, driver=driver, offered_for_s=offered_for_s,
            driver_cpu_s=driver_cpu_s, wall_s=wall_s,
            switch_peak_rss_bytes=_peak_rss_bytes(rig.info.switch_pid),
            rig_ready=rig.ready, payees_final=None, transport=options.transport,
            payees_cpu_percent=[r.cpu_percent for r in payees_sampler.samples()[1:]],
            box_load=(load_at_start, os.getloadavg()[0]))
    finally:
        await driver.close()


async def _ticker(session: Session, on_tick) -> None:
    while True:
        await asyncio.sleep(1.0)
        on_tick(session)
