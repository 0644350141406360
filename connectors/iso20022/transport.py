"""The HTTPS transport of the ISO 20022 connector, kept apart from the mapping.

In: `POST /iso20022` with one Envelope or a Batch of them (`application/xml`), on
connectors/http's server (bounds, pipelining, timeouts). The caller is authenticated by its
TLS client certificate (mTLS, `Gateway.authenticate_certificate`) or its API key
(`Authorization: Bearer` / `X-Api-Key`; with a registered certificate too, both must name
the same participant), and optionally by a detached JWS over the body
(`X-Jws-Signature`, connectors/http/jws.py). The body goes to `receive(participant_id,
body)`, whose (status, body) is the answer: 202 once what was taken is durable, 400 with
admi.002 envelopes for what was not.

Out: `Delivery` keeps one lane per bank: the messages owed to it (the connector's outbox,
outbox.py, bounded at `queue_max`), one request in flight at a time (so messages arrive in
the order the switch released them), each request a batch of what is owed and durable (at
most the bank's `batch_max`; a message goes only once `durable(owed)` says its records are
on disk), POSTed to the bank's endpoint, signed with the switch's key when one is
configured. The bank's 2xx is the acknowledgement (`acknowledged`: the outbox marks the
batch done); no answer, a timeout, 408, 429 or 5xx is retried with exponential back-off and
jitter (the same message, flagged AppHdr/PssblDplct: the BizMsgIdr lets the bank apply
each message once), for as long as it takes: after `attempts_max` failures in a row the
lane counts as stalled, is logged and goes on at the longest back-off, since what it owes
must still arrive, in order; any other 4xx is a refusal (logged, counted, done: no resend would change it). A message-queue
transport would offer the same calls (`send`, `restore`, `flush`) and call the same
`receive`.

It must never interpret a message, never block the loop, and never hold more than
DELIVERY_QUEUE_PER_PARTICIPANT_MAX messages for one bank.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
from collections import deque

import msgspec

from connectors.http import errors
from connectors.http.client import ConnectionPool
from connectors.http.jws import COMPACT_HEADER, JwsError, JwsMalformed, Signer, VerifyKey, \
    signature_from_headers, verify_detached
from connectors.http.server import HttpServer, Request, Response
from connectors.iso20022 import limits
from connectors.iso20022.outbound import batch, possible_duplicate
from connectors.iso20022.outbox import Owed
from switch.core.results import Result

log = logging.getLogger("ponte.iso20022")

XML = b"application/xml"
_XML_TYPES = (b"application/xml", b"text/xml")


class DeliveryPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    attempts_max: int = limits.DELIVERY_ATTEMPTS_MAX
    backoff_ms_min: int = limits.DELIVERY_BACKOFF_MS_MIN
    backoff_ms_max: int = limits.DELIVERY_BACKOFF_MS_MAX
    timeout_ms: int = limits.DELIVERY_TIMEOUT_MS
    queue_max: int = limits.DELIVERY_QUEUE_PER_PARTICIPANT_MAX

    def __post_init__(self) -> None:
        assert 1 <= self.attempts_max <= 1000
        assert 1 <= self.backoff_ms_min <= self.backoff_ms_max <= 3_600_000
        assert 1 <= self.timeout_ms <= 600_000
        assert 1 <= self.queue_max <= limits.DELIVERY_QUEUE_PER_PARTICIPANT_MAX


class DeliveryStats(msgspec.Struct, kw_only=True):
    delivered_total: int = 0  # messages a bank acknowledged (2xx)
    requests_total: int = 0  # POSTs acknowledged (each a message or a batch)
    retried_total: int = 0
    stalled_total: int = 0  # times a lane failed attempts_max times in a row
    refused_total: int = 0  # messages a bank refused with a 4xx
    restored_total: int = 0  # messages owed before a restart, queued again at start
    dropped_queue_full_total: int = 0
    dropped_no_endpoint_total: int = 0


class _Lane:
    def __init__(self, delivery: Delivery, participant_id: int, url: str, batch_max: int
                 ) -> None:
        self.delivery = delivery
        self.participant_id = participant_id
        self.batch_max = batch_max
        policy = delivery.policy
        self.pool = ConnectionPool(url, connections_max=1, in_flight_per_connection_max=1,
                                   timeout_ms=policy.timeout_ms, ssl=delivery.ssl_for(url),
                                   content_type=XML)
        self.queue: deque[Owed] = deque()
        self.sending: list[Owed] = []
        self.failures = 0
        self.waiting = False
        self.full = False  # the last message owed to it was dropped: the lane was full

    def pump(self) -> None:
        queue = self.queue
        if self.sending or self.waiting or not queue or self.pool.closed:
            return
        durable = self.delivery.durable
        items = []
        while queue and len(items) < self.batch_max and durable(queue[0]):
            items.append(queue.popleft())
        if not items:
            return  # the head's records are still being written: the next sync pumps
        body = items[0].written.body if len(items) == 1 else batch(
            [item.written.body for item in items])
        signer = self.delivery.signer
        headers = ((COMPACT_HEADER, signer.sign(body)),) if signer is not None else ()
        future = self.pool.try_send(b"POST", b"", body, headers, self._on_room)
        if future is None:
            queue.extendleft(reversed(items))  # a connection is opening: on_room
            return
        self.sending = items
        future.add_done_callback(self._done)

    def _on_room(self, error: BaseException | None) -> None:
        if error is None:
            self.pump()
        else:
            self._failed(f"connect: {error}")

    def _done(self, future: asyncio.Future) -> None:
        items, self.sending = self.sending, []
        delivery = self.delivery
        stats = delivery.stats
        if future.cancelled():
            error = "cancelled"
        elif future.exception() is not None:
            error = str(future.exception())
        else:
            status = future.result().status
            if 200 <= status < 300:
                stats.delivered_total += len(items)
                stats.requests_total += 1
                self.failures = 0
                delivery.acknowledged(self.participant_id, items[-1].sequence)
                self.pump()
                return
            if not (status >= 500 or status in (408, 429)):
                stats.refused_total += len(items)
                log.warning("iso20022.delivery_refused participant_id=%d status=%d "
                            "messages=%d", self.participant_id, status, len(items))
                self.failures = 0
                delivery.acknowledged(self.participant_id, items[-1].sequence)
                self.pump()
                return
            error = f"status {status}"
        for item in items:  # sent again: possibly a duplicate (head.001 PssblDplct)
            item.written.body = possible_duplicate(item.written.body)
        self.queue.extendleft(reversed(items))
        self._failed(error)

    def _failed(self, error: str) -> None:
        delivery = self.delivery
        policy = delivery.policy
        self.failures += 1
        delivery.stats.retried_total += 1
        if self.failures == policy.attempts_max:
            delivery.stats.stalled_total += 1
            log.warning("iso20022.delivery_stalled participant_id=%d owed=%d error=%s "
                        "(retried at the longest back-off until the bank answers)",
                        self.participant_id, len(self.queue), error)
        ceiling_ms = min(policy.backoff_ms_max,
                         policy.backoff_ms_min << min(self.failures - 1, 30))
        delay_ms = ceiling_ms / 2 + delivery.rng.uniform(0, ceiling_ms / 2)
        self.waiting = True
        delivery.loop.call_later(delay_ms / 1000, self._resume)

    def _resume(self) -> None:
        self.waiting = False
        self.pump()


class Delivery:
    """Every bank's lane. `send` queues what the outbox owes, `flush` starts sending (once
    per released batch and once per write of the logs).

    `durable(owed)`: whether a message's records are on disk (it may go);
    `acknowledged(participant_id, sequence)`: the bank has its lane up to `sequence`."""

    def __init__(self, endpoints: dict[int, tuple[str, int]], *,
                 policy: DeliveryPolicy = DeliveryPolicy(), signer: Signer | None = None,
                 client_ssl: ssl_module.SSLContext | None = None,
                 rng: random.Random | None = None,
                 durable=lambda owed: True, acknowledged=lambda participant_id, sequence: None
                 ) -> None:
        self.loop = asyncio.get_running_loop()
        self.policy = policy
        self.signer = signer
        self.client_ssl = client_ssl
        self.rng = rng or random.Random()
        self.durable = durable
        self.acknowledged = acknowledged
        self.stats = DeliveryStats()
        self.lanes: dict[int, _Lane] = {}
        for participant_id, (url, batch_max) in endpoints.items():
            if url:
                self.lanes[participant_id] = _Lane(self, participant_id, url, batch_max)
        self._dirty: set[_Lane] = set()

    def ssl_for(self, url: str) -> ssl_module.SSLContext | None:
        return self.client_ssl if url.startswith("https:") else None

    def room(self, participant_id: int) -> bool:
        """Whether a message for this bank can be owed (counted as dropped when not)."""
        lane = self.lanes.get(participant_id)
        if lane is None:
            self.stats.dropped_no_endpoint_total += 1
            return False
        if len(lane.queue) + len(lane.sending) >= self.policy.queue_max:
            self.stats.dropped_queue_full_total += 1
            if not lane.full:  # once each time it fills: not a line per message
                lane.full = True
                log.error("iso20022.delivery_queue_full participant_id=%d owed=%d (messages "
                          "dropped until it drains: the bank can ask for their status with "
                          "a pacs.028)", participant_id, len(lane.queue) + len(lane.sending))
            return False
        lane.full = False
        return True

    def send(self, owed: Owed) -> None:
        lane = self.lanes[owed.written.participant_id]
        lane.queue.append(owed)
        self._dirty.add(lane)

    def restore(self, owed: Owed) -> None:
        """A message owed before a restart: first in its lane, before anything new."""
        self.stats.restored_total += 1
        self.send(owed)

    def flush(self) -> None:
        if self._dirty:
            for lane in self._dirty:
                lane.pump()
            self._dirty.clear()

    def pump(self) -> None:
        """The logs have synced: every lane with something owed may go."""
        for lane in self.lanes.values():
            if lane.queue:
                lane.pump()

    @property
    def pending(self) -> int:
        return sum(len(lane.queue) + len(lane.sending) for lane in self.lanes.values())

    async def close(self, grace_ms: int = 5_000) -> None:
        """Deliver what can be within `grace_ms`; what is still owed stays in the outbox."""
        self.flush()
        deadline = self.loop.time() + grace_ms / 1000
        while self.pending and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        for lane in self.lanes.values():
            await lane.pool.close()


_NO_KEY = errors.error_response(Result.VALIDATION_ERROR, "missing or unknown API key or "
                                                         "client certificate", status=401)
_NOT_XML = errors.error_response(Result.VALIDATION_ERROR, "Content-Type must be "
                                                          "application/xml", status=415)
_NOT_ISO = errors.error_response(Result.VALIDATION_ERROR, "this participant is not an ISO "
                                                          "20022 bank of the switch",
                                 status=403)
_SIGNATURE_REQUIRED = errors.error_response(Result.INVALID_SIGNATURE,
                                            "this bank must sign its bodies (X-Jws-Signature)")


class Inbound:
    """The listening side: authenticate, check the signature, hand the body on."""

    def __init__(self, gateway, receive, *, keys: dict[int, VerifyKey],
                 signature_required: frozenset[int], banks: frozenset[int]) -> None:
        self.gateway = gateway
        self.receive = receive  # async (participant_id, body) -> (status, xml bytes)
        self.keys = keys
        self.signature_required = signature_required
        self.banks = banks
        self.server = HttpServer(self.handle, errors.protocol_error,
                                 request_body_bytes_max=limits.REQUEST_BODY_BYTES_MAX)

    async def start(self, host: str, port: int, ssl=None) -> None:
        await self.server.start(host, port, ssl=ssl)

    @property
    def port(self) -> int:
        return self.server.port

    def handle(self, request: Request):
        if request.path == b"/health" and request.method in (b"GET", b"HEAD"):
            return Response(200 if self.gateway.accepting else 503, b"{}")
        if request.path != b"/iso20022":
            return errors.error_response(Result.VALIDATION_ERROR, "no such resource",
                                         status=404)
        if request.method != b"POST":
            return errors.error_response(Result.VALIDATION_ERROR, "POST only", status=405)
        caller = self._caller(request)
        if type(caller) is not int:
            return caller
        media = request.headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if media not in _XML_TYPES:
            return _NOT_XML
        key = self.keys.get(caller)
        required = caller in self.signature_required or caller in self.gateway.signature_policy
        if key is None and required:
            return _SIGNATURE_REQUIRED  # no key here to check the signature its policy asks for
        if key is not None:
            try:
                found = signature_from_headers(request.headers)
                if found is None:
                    if required:
                        return _SIGNATURE_REQUIRED
                else:
                    verify_detached(found[0], found[1], request.body, key)
            except JwsMalformed as error:
                return errors.error_response(Result.INVALID_SIGNATURE, str(error), status=400)
            except JwsError as error:
                return errors.error_response(Result.INVALID_SIGNATURE, str(error))
        return self._answer(caller, request.body)

    async def _answer(self, caller: int, body: bytes) -> Response:
        status, answer = await self.receive(caller, body)
        if status >= 500 and not answer:
            return errors.error_response(Result.SERVER_BUSY if status == 503
                                         else Result.INTERNAL_SERVER_ERROR)
        return Response(status, answer, content_type=XML)

    def _caller(self, request: Request) -> int | Response:
        """The participant a request authenticates as: its API key, which must belong to
        the same participant as its client certificate if it presents a registered one
        (the stream's rule: two credentials that disagree are refused), else the
        certificate alone."""
        by_certificate = None
        if request.certificate:
            by_certificate = self.gateway.authenticate_certificate(request.certificate)
        headers = request.headers
        value = headers.get(b"authorization")
        key = None
        if value is not None and value[:7].lower() == b"bearer ":
            key = value[7:].strip()
        elif value is None:
            key = headers.get(b"x-api-key")
        if key is None:
            participant_id = by_certificate
        else:
            try:
                participant_id = self.gateway.authenticate(key.decode("ascii"))
            except UnicodeDecodeError:
                participant_id = None
            if by_certificate is not None and participant_id != by_certificate:
                participant_id = None
        if participant_id is None:
            return _NO_KEY
        if participant_id not in self.banks:
            return _NOT_ISO
        return participant_id

    async def close(self, grace_ms: int = 5_000) -> None:
        await self.server.close(grace_ms)
