"""Callback delivery against a real local HTTP server that fails, then recovers: retries
with back-off, give-up bounds, no retry on a refusing 4xx, order, and the switch's signature."""

from __future__ import annotations

import asyncio
import random
import socket

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from connectors.http.callbacks import CallbackPolicy, CallbackSender
from connectors.http.jws import COMPACT_HEADER, Signer, VerifyKey, verify_headers
from connectors.http.server import HttpServer, Response
from switch.core.messages import Outbound, TransferOutcome
from switch.core.results import Result, TransferState

FAST = CallbackPolicy(attempts_max=5, backoff_ms_min=5, backoff_ms_max=40, timeout_ms=2_000)
decode_outbound = msgspec.json.Decoder(Outbound).decode


def outcome(n: int) -> TransferOutcome:
    return TransferOutcome(payer_participant_id=1, transfer_id=f"t-{n}",
                           state=TransferState.COMMITTED, result=Result.OK,
                           payee_participant_id=2, amount_minor=100 + n, currency="KES")


class Participant:
    """A participant's callback endpoint: answers `fail_status` to the first `failures`
    requests, then 200; records every body it was sent."""

    def __init__(self, failures: int = 0, fail_status: int = 503) -> None:
        self.failures = failures
        self.fail_status = fail_status
        self.received: list[tuple[bytes, dict]] = []
        self.accepted: list[bytes] = []
        self.server: HttpServer | None = None

    def __call__(self, request):
        self.received.append((request.body, dict(request.headers)))
        if len(self.received) <= self.failures:
            return Response(self.fail_status, b"{}")
        self.accepted.append(request.body)
        return Response(204)

    async def start(self, port: int = 0) -> int:
        self.server = HttpServer(self)
        await self.server.start("127.0.0.1", port)
        return self.server.port


async def wait_for(predicate, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
async def participant():
    made = []

    async def make(**kwargs) -> tuple[Participant, str]:
        endpoint = Participant(**kwargs)
        port = await endpoint.start()
        made.append(endpoint)
        return endpoint, f"http://127.0.0.1:{port}/callbacks"

    yield make
    for endpoint in made:
        await endpoint.server.close(grace_ms=100)


async def test_retries_until_the_endpoint_recovers(participant):
    endpoint, url = await participant(failures=3)
    sender = CallbackSender(lambda pid: url, policy=FAST, rng=random.Random(7))
    sender.deliver_to(1, outcome(1))
    sender.flush()
    await wait_for(lambda: sender.stats.delivered_total == 1)
    assert len(endpoint.received) == 4  # three failures, then the delivery
    assert {body for body, _ in endpoint.received} == {msgspec.json.encode(outcome(1))}
    assert decode_outbound(endpoint.accepted[0]) == outcome(1)
    assert sender.stats.retried_total == 3
    assert sender.stats.given_up_total == 0
    await sender.close(grace_ms=100)


async def test_gives_up_after_attempts_max(participant):
    endpoint, url = await participant(failures=100, fail_status=500)
    sender = CallbackSender(lambda pid: url, policy=FAST, rng=random.Random(7))
    sender.deliver_to(1, outcome(1))
    sender.flush()
    await wait_for(lambda: sender.stats.given_up_total == 1)
    assert len(endpoint.received) == FAST.attempts_max
    assert sender.stats.delivered_total == 0
    assert sender.pending == 0
    await sender.close(grace_ms=100)


async def test_a_refusing_4xx_is_not_retried(participant):
    endpoint, url = await participant(failures=1, fail_status=400)
    sender = CallbackSender(lambda pid: url, policy=FAST)
    sender.deliver_to(1, outcome(1))
    sender.deliver_to(1, outcome(2))
    sender.flush()
    await wait_for(lambda: sender.stats.refused_total + sender.stats.delivered_total == 2)
    assert sender.stats.refused_total == 1
    assert len(endpoint.received) == 2
    assert decode_outbound(endpoint.accepted[0]) == outcome(2)
    await sender.close(grace_ms=100)


async def test_endpoint_down_then_up_gets_everything_in_order():
    # Reserve a port, leave it closed (connection refused), then start the endpoint there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    sender = CallbackSender(lambda pid: url, policy=CallbackPolicy(
        attempts_max=50, backoff_ms_min=5, backoff_ms_max=20, timeout_ms=2_000))
    for n in range(200):
        sender.deliver_to(1, outcome(n))
    sender.flush()
    await wait_for(lambda: sender.stats.retried_total >= 2)  # refused, retried, refused
    assert sender.stats.delivered_total == 0
    endpoint = Participant()
    await endpoint.start(port)
    try:
        await wait_for(lambda: sender.stats.delivered_total == 200)
        assert [decode_outbound(body).transfer_id for body in endpoint.accepted] == [
            f"t-{n}" for n in range(200)]
        assert sender.stats.given_up_total == 0
    finally:
        await sender.close(grace_ms=100)
        await endpoint.server.close(grace_ms=100)


async def test_no_callback_url_drops_and_counts(participant):
    sender = CallbackSender(lambda pid: "", policy=FAST)
    sender.deliver_to(9, outcome(1))
    sender.flush()
    assert sender.stats.dropped_no_url_total == 1
    assert sender.pending == 0
    await sender.close(grace_ms=10)


async def test_queue_is_bounded_per_participant(participant):
    endpoint, url = await participant(failures=10_000)
    policy = CallbackPolicy(queue_max=10, attempts_max=3, backoff_ms_min=1_000,
                            backoff_ms_max=1_000)
    sender = CallbackSender(lambda pid: url, policy=policy)
    for n in range(25):
        sender.deliver_to(1, outcome(n))
    assert sender.stats.dropped_queue_full_total == 15
    assert sender.pending == 10
    await sender.close(grace_ms=10)


async def test_callbacks_carry_the_switch_signature(participant):
    endpoint, url = await participant()
    key = ed25519.Ed25519PrivateKey.generate()
    signer = Signer(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()), "EdDSA", kid="switch")
    sender = CallbackSender(lambda pid: url, policy=FAST, signer=signer)
    sender.deliver_to(1, outcome(1))
    sender.flush()
    await wait_for(lambda: sender.stats.delivered_total == 1)
    body, headers = endpoint.received[0]
    assert verify_headers(headers, body, VerifyKey(signer.public_key_pem())) is True
    assert COMPACT_HEADER in headers
    await sender.close(grace_ms=100)


async def test_a_burst_never_opens_more_than_connections_max(participant):
    endpoint, url = await participant()
    policy = CallbackPolicy(connections_max=3, in_flight_per_connection_max=16)
    sender = CallbackSender(lambda pid: url, policy=policy)
    for burst in range(5):
        for n in range(400):
            sender.deliver_to(1, outcome(burst * 1000 + n))
            if n % 7 == 0:
                sender.flush()  # many flushes in one tick, as the gateway may do
        sender.flush()
        assert len(sender.lanes[1].pool.connections) + sender.lanes[1].pool.connecting <= 3
        await wait_for(lambda: sender.stats.delivered_total == (burst + 1) * 400)
    assert len(sender.lanes[1].pool.connections) <= 3
    assert len(endpoint.accepted) == 2_000
    await sender.close(grace_ms=100)


async def test_sdk_retries_keep_the_same_transfer_id_and_body(participant):
    """The SDK's retry on 503: the same body (so the same transfer id) every attempt."""
    import time

    from connectors.sdk.http_client import HttpClient
    from switch.core.messages import Party, TransferRequest

    endpoint, url = await participant(failures=2, fail_status=503)
    endpoint.server.handler = _AcceptingSwitch(endpoint)
    client = HttpClient(url, "key-for-the-test", rng=random.Random(3))
    await client.connect()
    assert client.participant_id == 7
    try:
        request = TransferRequest(
            transfer_id="t-retry", payee=Party(alias_type="MSISDN", alias_value="+5511900000001"),
            amount_minor=10, currency="BRL", expires_at_ns=time.time_ns() + 10**10)
        accepted = await client.send_transfer(request)
        assert accepted.id == "t-retry"
        assert len(endpoint.received) == 3
        assert len({body for body, _ in endpoint.received}) == 1
        assert msgspec.json.decode(endpoint.received[0][0], type=TransferRequest) == request
    finally:
        await client.close()


class _AcceptingSwitch:
    """Stands in for the switch's answer shape only: fails like the wrapped endpoint, then
    answers 202 with an Accepted body."""

    def __init__(self, endpoint: Participant) -> None:
        self.endpoint = endpoint

    def __call__(self, request):
        if request.path.endswith(b"/participant"):
            return Response(200, b'{"participant_id":7,"name":"p7","status":1,'
                                 b'"currencies":["BRL"]}')
        answer = self.endpoint(request)
        if answer.status >= 500:
            return Response(503, b'{"result":2003,"name":"SERVICE_UNAVAILABLE","detail":""}')
        return Response(202, b'{"kind":"transfer","id":"t-retry"}')


async def test_a_changed_callback_url_is_used_from_the_next_message_on(tmp_path,
                                                                       participant):
    """Against the real switch: the operator changes a participant's callback URL (the
    credential index, as the operator surface does) and the very next message goes to the
    new URL, without a restart; messages still waiting for the old URL follow it too."""
    from connectors.http.app import HttpConnector, HttpConnectorConfig
    from switch.core.messages import (
        CurrencyAdded,
        ParticipantAdded,
    )
    from switch.core.results import SettlementModel
    from switch.server.config import ServerConfig
    from switch.app import start_switch

    old, old_url = await participant()
    new, new_url = await participant()
    server = await start_switch(ServerConfig(data_dir=str(tmp_path), stream_enabled=False,
                                             admin_enabled=False))
    http = HttpConnector(server.gateway, HttpConnectorConfig(port=0, callbacks=FAST))
    await http.start()
    try:
        await server.gateway.admin(CurrencyAdded(
            request_id="c", currency="BRL", ledger_id=986,
            settlement_model=SettlementModel.PREFUNDED_RTGS))
        await server.credentials.put_participant(4, "bank_four", "bank", old_url)
        await server.gateway.admin(ParticipantAdded(request_id="p", participant_id=4,
                                                    name="bank_four"))
        sender = http.callbacks
        sender.deliver_to(4, outcome(1))
        sender.flush()
        await wait_for(lambda: len(old.accepted) == 1)
        await server.credentials.set_callback_url(4, new_url)
        for n in (2, 3):
            sender.deliver_to(4, outcome(n))
        sender.flush()
        await wait_for(lambda: len(new.accepted) == 2)
        assert [decode_outbound(body).transfer_id for body in new.accepted] == ["t-2", "t-3"]
        assert len(old.received) == 1
        # Messages queued for an endpoint that is down follow a URL change too.
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"
        dead.close()
        await server.credentials.set_callback_url(4, dead_url)
        for n in (4, 5):
            sender.deliver_to(4, outcome(n))
        sender.flush()
        await wait_for(lambda: sender.stats.retried_total >= 1)
        await server.credentials.set_callback_url(4, new_url)
        sender.deliver_to(4, outcome(6))
        sender.flush()
        await wait_for(lambda: len(new.accepted) == 5)
        assert sorted(decode_outbound(body).transfer_id for body in new.accepted) == [
            "t-2", "t-3", "t-4", "t-5", "t-6"]
        assert sender.stats.given_up_total == 0
    finally:
        await http.close(grace_ms=100)
        await server.stop(drain_s=0)
