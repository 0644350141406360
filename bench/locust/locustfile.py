"""Locust users acting as payer participants against a running rig (bench/locust/rig.py).

    StreamPayer  the stream protocol through the SDK's StreamClient (one connection per
                 payer identity per locust process, on an asyncio loop thread: bridge.py)
    HttpPayer    the HTTP API through locust's FastHttpUser

Each task is one payment from the population's plan (bench/locust/plan.py): resolve the
payee's alias, send the transfer, learn its final outcome, and ask its status. Every step
is reported to locust's `events.request` with its response time and response length, and
as a failure when the switch did not answer OK (a transfer fails unless COMMITTED):

    STREAM resolve | STREAM transfer (send -> final outcome, pushed) | STREAM status
    GET /aliases/[type]/[value] | POST /transfers (202) | GET /transfers/[payer]/[id]
    (polled until final) | E2E transfer (POST -> final status seen, HTTP only)

The payee side is the rig's simulators. Run it with `ponte bench locust` (starts a rig,
runs locust headless, stops everything) or against a rig you keep up:

    python -m bench.locust.rig --profile quick --slots 1 --out rig.json &
    PONTE_RIG=rig.json locust -f bench/locust/locustfile.py --headless -u 20 -r 10 -t 30s \
        StreamPayer

Distributed: start the rig with `--slots N` (one payer identity set per worker), then
`locust --master ...` and N times `locust --worker ...` with the same PONTE_RIG; worker k
uses slot k and offers the k-th of N interleaved shares of the plan. docs/load-testing.md
has the commands. Importing this file monkey-patches the process (gevent): nothing but
locust may import it.
"""

from __future__ import annotations

import os
import time
from urllib.parse import quote

import gevent
import msgspec
from gevent.lock import Semaphore
from locust import FastHttpUser, User, constant_throughput, events, task

from bench.locust import limits
from bench.locust.plan import Payment, Plan
from bench.locust.rig import RigInfo, population_of, read_rig

# Payments per second one user offers at most (locust's constant_throughput pacing); the
# offered rate is users x this. `ponte bench locust --user-rate` sets it through this
# variable so every worker paces the same.
USER_RATE_PER_S = float(os.environ.get("PONTE_USER_RATE", "1.0"))
_FINAL_STATES = frozenset({3, 4, 5})  # TransferState COMMITTED, REJECTED, EXPIRED
_COMMITTED = 3
_encode = msgspec.json.Encoder().encode


class PaymentFailed(Exception):
    """The switch answered, but not with success (the message names the result)."""


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    parser.add_argument("--ponte-rig", default=os.environ.get("PONTE_RIG", ""),
                        help="rig.json of a running rig (python -m bench.locust.rig) "
                             "[$PONTE_RIG]")


def _rig_path(environment) -> str:
    options = environment.parsed_options
    path = (getattr(options, "ponte_rig", "") if options else "") or os.environ.get(
        "PONTE_RIG", "")
    if not path:
        raise RuntimeError("no rig: give --ponte-rig or PONTE_RIG (python -m bench.locust.rig "
                           "starts one)")
    return path


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    # The HTTP users' base URL is the rig's, unless -H says otherwise.
    try:
        info = read_rig(_rig_path(environment))
    except (RuntimeError, OSError):
        return  # reported when a user starts (a master alone needs no rig)
    if not environment.host and info.http_url:
        HttpPayer.host = info.http_url


class _Shared:
    """What the users of one locust process share: the rig, this process's slot, its
    share of the plan, and (for stream users) the loop thread and one client per payer."""

    def __init__(self, environment) -> None:
        self.info: RigInfo = read_rig(_rig_path(environment))
        runner = environment.runner
        index = getattr(runner, "worker_index", -1)
        self.slot = index if index is not None and index >= 0 else 0
        if self.slot >= self.info.slots:
            raise RuntimeError(f"worker {self.slot} has no slot: start the rig with "
                               f"--slots {self.slot + 1} or more")
        self.identities = self.info.slot_identities(self.slot)
        self.plan = Plan(population_of(self.info))
        # Transfer ids must never repeat on one rig: a tag per process start, and a cycle
        # counter when the plan is used up and starts again.
        self.tag = f"l{self.slot}x{time.time_ns() // 1_000_000 % 10**10}"
        self.cycle = 0
        self._payments = self._fresh()
        self.loop_thread = None
        self.clients: dict[str, object] = {}
        self._connecting = Semaphore()

    def _fresh(self):
        return self.plan.payments(self.slot, self.info.slots)

    def next_payment(self) -> tuple[Payment, str]:
        for _ in range(2):
            payment = next(self._payments, None)
            if payment is not None:
                return payment, f"{self.tag}-{self.cycle}-{payment.index}"
            self.cycle += 1
            self._payments = self._fresh()
        raise RuntimeError("the plan offers no payments (is the profile's rate 0?)")

    def stream_client(self, participant: str):
        client = self.clients.get(participant)
        if client is not None:
            return client
        with self._connecting:
            client = self.clients.get(participant)
            if client is None:
                client = self._connect(participant)
                self.clients[participant] = client
        return client

    def _connect(self, participant: str):
        from bench.locust.bridge import LoopThread
        from connectors.sdk.stream_client import StreamClient

        if self.loop_thread is None:
            self.loop_thread = LoopThread()
        identity = self.identities[participant]
        info = self.info

        async def connect():
            return await StreamClient.connect(info.stream_host, info.stream_port,
                                              api_key=identity.api_key,
                                              client_name=f"locust:{identity.name}")

        return self.loop_thread.call(connect, timeout_s=limits.CALL_WAIT_S_MAX).value

    def close(self) -> None:
        if self.loop_thread is None:
            return
        for client in self.clients.values():
            try:
                self.loop_thread.call(client.close, timeout_s=5.0)
            except Exception:  # noqa: BLE001 - closing what we can
                pass
        self.clients.clear()
        self.loop_thread.stop()
        self.loop_thread = None


_shared: _Shared | None = None


def shared(environment) -> _Shared:
    global _shared
    if _shared is None:
        _shared = _Shared(environment)
    return _shared


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    if _shared is not None:
        _shared.close()


def _frame_length(message) -> int:
    """Bytes of the frame that carried `message` to us (length prefix + msgpack)."""
    from connectors.stream.protocol import Push, frame

    try:
        return len(frame(Push(message=message)))
    except (TypeError, msgspec.ValidationError):
        return 0


class StreamPayer(User):
    """A payer bank on the stream protocol."""

    wait_time = constant_throughput(USER_RATE_PER_S)

    def on_start(self) -> None:
        self.shared = shared(self.environment)

    def _report(self, name: str, timed, error: Exception | None, length: int) -> None:
        self.environment.events.request.fire(
            request_type="STREAM", name=name,
            response_time=(timed.elapsed_s * 1000.0) if timed is not None else 0.0,
            response_length=length, exception=error, context={})

    def _call(self, name: str, factory, *args, timeout_s: float, check):
        """Run one SDK call, report it, return its answer (None when it failed)."""
        loop_thread = self.shared.loop_thread
        started = time.perf_counter()
        try:
            timed = loop_thread.call(factory, *args, timeout_s=timeout_s)
        except (Exception, gevent.Timeout) as error:  # noqa: BLE001 - reported to locust
            elapsed = time.perf_counter() - started
            from bench.locust.bridge import Timed

            self._report(name, Timed(None, elapsed), PaymentFailed(
                f"{type(error).__name__}: {error}"), 0)
            return None
        problem = check(timed.value)
        self._report(name, timed, PaymentFailed(problem) if problem else None,
                     _frame_length(timed.value))
        return None if problem else timed.value

    @task
    def pay(self) -> None:
        from switch.core.messages import Party, TransferOutcome, TransferRequest

        payment, transfer_id = self.shared.next_payment()
        client = self.shared.stream_client(payment.payer_participant)
        answer = self._call("resolve", client.resolve, payment.alias_type, payment.alias_value,
                            payment.payer_user_id, timeout_s=limits.CALL_WAIT_S_MAX,
                            check=lambda a: None if a.result.name == "OK" else a.result.name)
        if answer is None:
            return
        request = TransferRequest(
            transfer_id=transfer_id,
            payee=Party(alias_type=payment.alias_type, alias_value=payment.alias_value),
            amount_minor=payment.amount_minor, currency=payment.currency,
            expires_at_ns=time.time_ns() + 30 * 10**9,
            payer_account_ref=payment.payer_user_id, payer_user_ref=payment.payer_user_id)

        def transfer_problem(outcome) -> str | None:
            if type(outcome) is not TransferOutcome:
                return f"{type(outcome).__name__} {getattr(outcome, 'result', '')!r}"
            if outcome.state != _COMMITTED:
                return f"{outcome.state.name} {outcome.result.name}"
            return None

        self._call("transfer", client.transfer, request, timeout_s=limits.TRANSFER_WAIT_S_MAX,
                   check=transfer_problem)
        payer_id = self.shared.identities[payment.payer_participant].participant_id
        self._call("status", client.status, payer_id, transfer_id,
                   timeout_s=limits.CALL_WAIT_S_MAX,
                   check=lambda a: None if type(a) is TransferOutcome
                   and a.state in _FINAL_STATES else f"{type(a).__name__}")


class HttpPayer(FastHttpUser):
    """A payer bank on the HTTP API (no callback receiver: it polls the status)."""

    wait_time = constant_throughput(USER_RATE_PER_S)

    def on_start(self) -> None:
        self.shared = shared(self.environment)

    @task
    def pay(self) -> None:
        from switch.core.messages import Party, TransferRequest

        payment, transfer_id = self.shared.next_payment()
        identity = self.shared.identities[payment.payer_participant]
        headers = {"Authorization": f"Bearer {identity.api_key}"}
        path = (f"/aliases/{quote(payment.alias_type, safe='')}/"
                f"{quote(payment.alias_value, safe='')}"
                f"?payer_user_ref={quote(payment.payer_user_id, safe='')}")
        with self.client.get(path, headers=headers, name="/aliases/[type]/[value]",
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"resolve {response.status_code}: {response.text[:120]}")
                return
        body = _encode(TransferRequest(
            transfer_id=transfer_id,
            payee=Party(alias_type=payment.alias_type, alias_value=payment.alias_value),
            amount_minor=payment.amount_minor, currency=payment.currency,
            expires_at_ns=time.time_ns() + 30 * 10**9,
            payer_account_ref=payment.payer_user_id, payer_user_ref=payment.payer_user_id))
        started = time.perf_counter()
        with self.client.post("/transfers", data=body,
                              headers={**headers, "Content-Type": "application/json"},
                              name="/transfers", catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"transfer {response.status_code}: {response.text[:120]}")
                return
        status_path = f"/transfers/{identity.participant_id}/{quote(transfer_id, safe='')}"
        state = None
        length = 0
        for _ in range(limits.LOCUST_STATUS_POLLS_MAX):
            with self.client.get(status_path, headers=headers, name="/transfers/[payer]/[id]",
                                 catch_response=True) as response:
                if response.status_code != 200:
                    response.failure(f"status {response.status_code}")
                    break
                outcome = msgspec.json.decode(response.content)
                length = len(response.content)
                if outcome.get("state") in _FINAL_STATES:
                    state = outcome.get("state")
                    break
            gevent.sleep(limits.LOCUST_STATUS_POLL_INTERVAL_S)
        error = None
        if state is None:
            error = PaymentFailed("no final state")
        elif state != _COMMITTED:
            error = PaymentFailed(f"state {state}")
        self.environment.events.request.fire(
            request_type="E2E", name="transfer", response_time=(time.perf_counter() - started)
            * 1000.0, response_length=length, exception=error, context={})
