"""Delivery of the switch's messages to participants' HTTP callback URLs.

The sequencer releases durable outbound messages (credit requests, transfer outcomes,
refusals, request-to-pay notices and outcomes) through the gateway's sinks; for a
participant that uses HTTP this sender is its sink. Each participant has one lane: a
bounded queue, a small pool of keep-alive connections to its callback URL and pipelined
requests. Every message is `POST <callback_url>` with the message's JSON (its `type` field
says which message it is), optionally signed with the switch's key (`X-Jws-Signature`).

Retries: a connection failure, a timeout, 408, 429 or 5xx puts the message back at the head
of the lane, which then waits an exponential back-off with jitter and probes with one
request at a time until the participant answers 2xx again. A message is given up after
CALLBACK_ATTEMPTS_MAX attempts, and at once on another 4xx (the participant refuses it; a
resend would be refused too). Given up is never lost: the outcome stays retrievable by a
status query. Delivery is at-least-once: a response lost after the participant processed
the message makes the switch send it again, so participants must treat messages
idempotently by (payer_participant_id, transfer_id) or (payee_participant_id, request_id).

The callback URL is read when messages are sent, not once per lane: after the operator
changes it, the next message (and every one still queued or waiting to be retried) goes to
the new URL; requests already on the wire to the old URL finish there (one that fails is
sent again to the new URL, without being charged an attempt).

It must never block the loop, never raise into the gateway, and never hold more than
CALLBACK_QUEUE_PER_PARTICIPANT_MAX messages for one participant.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from functools import partial

import msgspec

from connectors.http import limits
from connectors.http.client import ConnectionPool, HttpClientError
from connectors.http.jws import COMPACT_HEADER, Signer
from switch.core.messages import Outbound

log = logging.getLogger("ponte.http.callbacks")

_encode = msgspec.json.Encoder().encode


class CallbackPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How hard the switch tries to deliver one callback."""

    attempts_max: int = limits.CALLBACK_ATTEMPTS_MAX
    backoff_ms_min: int = limits.CALLBACK_BACKOFF_MS_MIN
    backoff_ms_max: int = limits.CALLBACK_BACKOFF_MS_MAX
    timeout_ms: int = limits.CALLBACK_TIMEOUT_MS
    queue_max: int = limits.CALLBACK_QUEUE_PER_PARTICIPANT_MAX
    connections_max: int = limits.CALLBACK_CONNECTIONS_PER_PARTICIPANT_MAX
    in_flight_per_connection_max: int = limits.CALLBACK_IN_FLIGHT_PER_CONNECTION_MAX

    def __post_init__(self) -> None:
        assert 1 <= self.attempts_max <= 100
        assert 1 <= self.backoff_ms_min <= self.backoff_ms_max <= 3_600_000
        assert 1 <= self.timeout_ms <= 600_000
        assert 1 <= self.queue_max <= limits.CALLBACK_QUEUE_PER_PARTICIPANT_MAX
        assert 1 <= self.connections_max <= 64
        assert 1 <= self.in_flight_per_connection_max <= 1024


class CallbackStats(msgspec.Struct, kw_only=True):
    """Counters since start (exported as ponte_http_callbacks_* by the server)."""

    delivered_total: int = 0
    retried_total: int = 0  # attempts that failed and were scheduled again
    given_up_total: int = 0  # attempts exhausted
    refused_total: int = 0  # the participant answered a 4xx that a resend cannot fix
    dropped_queue_full_total: int = 0
    dropped_no_url_total: int = 0


class _Item:
    __slots__ = ("body", "headers", "attempts", "kind", "pool", "method", "path")

    def __init__(self, body: bytes | None, headers: tuple[tuple[bytes, bytes], ...], kind: str,
                 method: bytes = b"POST", path: bytes = b""):
        self.body = body
        self.headers = headers
        self.attempts = 0
        self.kind = kind
        self.pool: ConnectionPool | None = None  # the pool (URL) of its latest attempt
        # Ponte's own callbacks are POST <callback_url>; other dialects (FSPIOP) send PUT,
        # POST, PATCH or GET to a path under the participant's endpoint.
        self.method = method
        self.path = path


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class _Lane:
    """One participant: its queue, its pool for its current callback URL, its back-off
    state."""

    def __init__(self, sender: CallbackSender, participant_id: int, url: str) -> None:
        self.sender = sender
        self.participant_id = participant_id
        self.policy = sender.policy
        self.url = url
        self.pool: ConnectionPool | None = self._pool_for(url)  # ValueError: unusable URL
        self.on_room = self._room_callback(self.pool)
        self.queue: deque[_Item] = deque()
        self.retry: deque[_Item] = deque()  # failed items, in the order they were sent
        self.in_flight = 0
        # Requests out per pool: a pool of an earlier URL is closed when its last request
        # is answered, so a URL change neither cuts nor duplicates what is on the wire.
        self.out: dict[ConnectionPool, int] = {}
        self.failures = 0  # consecutive failed attempts: drives the back-off
        self.waiting = False  # in a back-off pause

    @property
    def queued(self) -> int:
        return len(self.queue) + len(self.retry)

    def enqueue(self, item: _Item) -> bool:
        if self.queued + self.in_flight >= self.policy.queue_max:
            return False
        self.queue.append(item)
        return True

    def _pool_for(self, url: str) -> ConnectionPool:
        policy = self.policy
        return ConnectionPool(
            url, connections_max=policy.connections_max,
            in_flight_per_connection_max=policy.in_flight_per_connection_max,
            timeout_ms=policy.timeout_ms)

    def _room_callback(self, pool: ConnectionPool):
        # A retired pool's room or connect failure is no news for the current URL.
        def on_room(error: BaseException | None) -> None:
            if pool is self.pool:
                self._on_room(error)
        return on_room

    def _follow_url(self) -> bool:
        """Point the lane at the participant's callback URL as it is now (the operator
        may have changed it). False when there is none that can be used: what waits is
        dropped and counted, as for a participant that never had one (outcomes stay
        retrievable by status query)."""
        url = self.sender.callback_url(self.participant_id)
        if url != self.url:
            old = self.pool
            self.url = url
            self.pool = None
            if url:
                try:
                    self.pool = self._pool_for(url)
                except ValueError as error:
                    log.warning("http.callback_url_invalid participant_id=%d error=%s",
                                self.participant_id, error)
            if old is not None and old not in self.out:
                self.sender.close_pool(old)
            # The new endpoint gets a fresh start: no back-off earned by the old one.
            self.failures = 0
            self.waiting = False
            if self.pool is not None:
                self.on_room = self._room_callback(self.pool)
        if self.pool is None:
            dropped = self.queued
            if dropped:
                self.queue.clear()
                self.retry.clear()
                self.sender.stats.dropped_no_url_total += dropped
            return False
        return True

    def pump(self) -> None:
        if not self._follow_url() or self.waiting or self.pool.closed:
            return
        # While failing, one probe at a time: a dead endpoint costs one request per pause.
        window = 1 if self.failures else 1 << 30
        done_cb = self._done
        pool = self.pool
        out = self.out
        while self.in_flight < window:
            source = self.retry if self.retry else self.queue
            if not source:
                return
            item = source[0]
            future = pool.try_send(item.method, item.path, item.body, item.headers,
                                   self.on_room)
            if future is None:
                return  # full, or a connection is opening: on_room pumps again
            source.popleft()
            self.in_flight += 1
            item.pool = pool
            out[pool] = out.get(pool, 0) + 1
            future.add_done_callback(partial(done_cb, item))

    def _on_room(self, error: BaseException | None) -> None:
        if error is None:
            self.pump()
            return
        # Could not connect: charge the head item one attempt and back off.
        source = self.retry if self.retry else self.queue
        if source:
            item = source.popleft()
            self._failed(item, f"connect: {error}")
        else:
            self._back_off()

    def _done(self, item: _Item, future: asyncio.Future) -> None:
        self.in_flight -= 1
        pool = item.pool
        left = self.out[pool] - 1
        if left:
            self.out[pool] = left
        else:
            del self.out[pool]
            if pool is not self.pool:
                self.sender.close_pool(pool)
        stale = pool is not self.pool  # sent to a URL the participant has since changed
        stats = self.sender.stats
        if future.cancelled():
            error = "cancelled"
        elif future.exception() is not None:
            error = str(future.exception())
        else:
            status = future.result().status
            if 200 <= status < 300:
                stats.delivered_total += 1
                if not stale:
                    self.failures = 0
                self.pump()
                return
            if not _retryable(status):
                stats.refused_total += 1
                log.warning("http.callback_refused participant_id=%d kind=%s status=%d",
                            self.participant_id, item.kind, status)
                self.pump()
                return
            error = f"status {status}"
        if stale:
            # The old endpoint failed it; the new one has not been tried: not an attempt.
            self.retry.append(item)
            self.pump()
            return
        self._failed(item, error)

    def _failed(self, item: _Item, error: str) -> None:
        stats = self.sender.stats
        item.attempts += 1
        if item.attempts >= self.policy.attempts_max:
            stats.given_up_total += 1
            log.warning("http.callback_given_up participant_id=%d kind=%s attempts=%d "
                        "error=%s", self.participant_id, item.kind, item.attempts, error)
        else:
            stats.retried_total += 1
            self.retry.append(item)
        self._back_off()

    def _back_off(self) -> None:
        self.failures += 1
        if self.waiting:
            return
        policy = self.policy
        ceiling_ms = min(policy.backoff_ms_max,
                         policy.backoff_ms_min << min(self.failures - 1, 30))
        # "Equal jitter": at least half the ceiling, so retries never bunch at zero.
        delay_ms = ceiling_ms / 2 + self.sender.rng.uniform(0, ceiling_ms / 2)
        self.waiting = True
        self.sender.loop.call_later(delay_ms / 1000, self._resume)

    def _resume(self) -> None:
        self.waiting = False
        self.pump()


class ParticipantSink:
    """A gateway `Sink` for one participant, writing to the shared sender."""

    __slots__ = ("sender", "participant_id")

    def __init__(self, sender: CallbackSender, participant_id: int) -> None:
        self.sender = sender
        self.participant_id = participant_id

    def deliver(self, message: Outbound) -> None:
        self.sender.deliver_to(self.participant_id, message)

    def flush(self) -> None:
        self.sender.flush()

    def close(self, reason: str) -> None:
        """Nothing to end: HTTP has no session (every request carries its key, and a
        revoked one is refused on the next request)."""


class CallbackSender:
    """All participants' lanes. `deliver_to` queues, `flush` starts sending (the gateway
    calls flush once per released batch, so one tick's callbacks leave together)."""

    def __init__(self, callback_url, *, policy: CallbackPolicy = CallbackPolicy(),
                 signer: Signer | None = None, rng: random.Random | None = None) -> None:
        # callback_url(participant_id) -> str ("" when the participant has none).
        self.callback_url = callback_url
        self.policy = policy
        self.signer = signer
        self.rng = rng or random.Random()
        self.loop = asyncio.get_running_loop()
        self.stats = CallbackStats()
        self.lanes: dict[int, _Lane] = {}
        self._dirty: set[_Lane] = set()
        self._closing: set[asyncio.Task] = set()  # pools of earlier URLs being closed
        self.closed = False

    def close_pool(self, pool: ConnectionPool) -> None:
        """Close a lane's pool for a URL it no longer sends to (in the background)."""
        task = asyncio.ensure_future(pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def sink_for(self, participant_id: int) -> ParticipantSink:
        return ParticipantSink(self, participant_id)

    def _lane(self, participant_id: int) -> _Lane | None:
        url = self.callback_url(participant_id)
        if not url:
            return None
        try:
            lane = _Lane(self, participant_id, url)
        except ValueError as error:
            log.warning("http.callback_url_invalid participant_id=%d error=%s",
                        participant_id, error)
            return None
        self.lanes[participant_id] = lane
        return lane

    def deliver_to(self, participant_id: int, message: Outbound) -> None:
        """Queue one message for a participant; never blocks, never raises."""
        if self.closed:
            return
        lane = self.lanes.get(participant_id)
        if lane is None:
            lane = self._lane(participant_id)
            if lane is None:
                self.stats.dropped_no_url_total += 1
                return
        body = _encode(message)
        headers = ((COMPACT_HEADER, self.signer.sign(body)),) if self.signer else ()
        if lane.enqueue(_Item(body, headers, type(message).__name__)):
            self._dirty.add(lane)
        else:
            self.stats.dropped_queue_full_total += 1

    def deliver_request(self, participant_id: int, method: bytes, path: bytes,
                        body: bytes | None, headers: tuple[tuple[bytes, bytes], ...],
                        kind: str) -> bool:
        """Queue one request of another dialect (method, path under the participant's URL,
        body and headers as given: nothing is signed or encoded here) on the participant's
        lane, with the same retries. False if it was dropped (no URL, queue full)."""
        if self.closed:
            return False
        lane = self.lanes.get(participant_id)
        if lane is None:
            lane = self._lane(participant_id)
            if lane is None:
                self.stats.dropped_no_url_total += 1
                return False
        if lane.enqueue(_Item(body, headers, kind, method, path)):
            self._dirty.add(lane)
            return True
        self.stats.dropped_queue_full_total += 1
        return False

    def flush(self) -> None:
        dirty = self._dirty
        if dirty:
            for lane in dirty:
                lane.pump()
            dirty.clear()

    @property
    def pending(self) -> int:
        return sum(lane.queued + lane.in_flight for lane in self.lanes.values())

    async def close(self, grace_ms: int = 5_000) -> None:
        """Stop taking messages, try to deliver what is queued for `grace_ms`, close."""
        self.flush()
        self.closed = True
        deadline = time.monotonic() + grace_ms / 1000
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for lane in self.lanes.values():
            for pool in [lane.pool, *lane.out]:
                if pool is not None and not pool.closed:
                    await pool.close()
        self.lanes.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


__all__ = ["CallbackPolicy", "CallbackSender", "CallbackStats", "HttpClientError",
           "ParticipantSink"]
