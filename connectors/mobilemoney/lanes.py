"""Requests Ponte sends to wallets' endpoints — callbacks to an X-Callback-URL, credits,
account-name checks, polls and reversals — over the HTTP connector's pipelined keep-alive
pools (`connectors.http.client.ConnectionPool`), one lane per wallet endpoint origin.

A lane has a bounded queue. A request that gets no answer, or 408, 429 or 5xx, goes back to
the head of its lane, which pauses for an exponential back-off with jitter and then probes
one request at a time; it is given up after OUTBOUND_ATTEMPTS_MAX attempts. Each request's
`on_done` is called once with the final response, or None when it was given up or dropped
(so the caller can fall back: a credit left unanswered expires as usual).

It must never block the loop, never raise into its caller, and never hold more than
OUTBOUND_QUEUE_PER_WALLET_MAX requests for one lane.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from functools import partial
from typing import Callable
from urllib.parse import urlsplit

from connectors.http.client import ClientResponse, ConnectionPool
from connectors.mobilemoney import limits

log = logging.getLogger("ponte.mobilemoney.lanes")

OnDone = Callable[[ClientResponse | None], None]


def origin_of(url: str) -> tuple[str, bytes] | None:
    """("scheme://host:port", path-and-query bytes) of an absolute http(s) URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return f"{parts.scheme}://{parts.hostname}:{port}", path.encode()


class _Item:
    __slots__ = ("method", "path", "body", "headers", "on_done", "attempts")

    def __init__(self, method: bytes, path: bytes, body: bytes | None,
                 headers: tuple[tuple[bytes, bytes], ...], on_done: OnDone | None) -> None:
        self.method = method
        self.path = path
        self.body = body
        self.headers = headers
        self.on_done = on_done
        self.attempts = 0


class Stats:
    """Counters since start (ponte_mobilemoney_outbound_* on /metrics)."""

    __slots__ = ("sent_total", "retried_total", "given_up_total", "dropped_total")

    def __init__(self) -> None:
        self.sent_total = 0
        self.retried_total = 0
        self.given_up_total = 0
        self.dropped_total = 0


def _retryable(status: int) -> bool:
    return status >= 500 or status in (408, 429)


class Lane:
    """One endpoint origin of one wallet."""

    def __init__(self, origin: str, stats: Stats, rng: random.Random) -> None:
        self.pool = ConnectionPool(
            origin, connections_max=limits.OUTBOUND_CONNECTIONS_PER_WALLET_MAX,
            in_flight_per_connection_max=limits.OUTBOUND_IN_FLIGHT_PER_CONNECTION_MAX,
            timeout_ms=limits.OUTBOUND_TIMEOUT_MS)
        self.stats = stats
        self.rng = rng
        self.loop = asyncio.get_running_loop()
        self.queue: deque[_Item] = deque()
        self.in_flight = 0
        self.failures = 0
        self.waiting = False
        self.closed = False
        self._scheduled = False

    def send(self, method: bytes, path: bytes, body: bytes | None,
             headers: tuple[tuple[bytes, bytes], ...], on_done: OnDone | None) -> bool:
        """Queue one request; False (and on_done not called) when the lane is full."""
        if self.closed or len(self.queue) + self.in_flight >= limits.OUTBOUND_QUEUE_PER_WALLET_MAX:
            self.stats.dropped_total += 1
            return False
        self.queue.append(_Item(method, path, body, headers, on_done))
        if not self._scheduled:
            # Requests queued in one loop pass leave together (one write per connection).
            self._scheduled = True
            self.loop.call_soon(self._pump_soon)
        return True

    def _pump_soon(self) -> None:
        self._scheduled = False
        self.pump()

    def pump(self) -> None:
        if self.waiting or self.closed:
            return
        window = 1 if self.failures else 1 << 30
        queue = self.queue
        pool = self.pool
        while queue and self.in_flight < window:
            item = queue[0]
            future = pool.try_send(item.method, item.path, item.body, item.headers,
                                   self._on_room)
            if future is None:
                return
            queue.popleft()
            self.in_flight += 1
            self.stats.sent_total += 1
            future.add_done_callback(partial(self._done, item))

    def _on_room(self, error: BaseException | None) -> None:
        if error is None:
            self.pump()
            return
        if self.queue:
            self._failed(self.queue.popleft(), f"connect: {error}")
        else:
            self._back_off()

    def _done(self, item: _Item, future: asyncio.Future) -> None:
        self.in_flight -= 1
        if future.cancelled():
            error = "cancelled"
        elif future.exception() is not None:
            error = str(future.exception())
        else:
            response = future.result()
            if not _retryable(response.status):
                self.failures = 0
                _finish(item, response)
                self.pump()
                return
            error = f"status {response.status}"
        self._failed(item, error)

    def _failed(self, item: _Item, error: str) -> None:
        item.attempts += 1
        if item.attempts >= limits.OUTBOUND_ATTEMPTS_MAX or self.closed:
            self.stats.given_up_total += 1
            log.warning("mobilemoney.outbound_given_up attempts=%d error=%s", item.attempts,
                        error[:120])
            _finish(item, None)
        else:
            self.stats.retried_total += 1
            self.queue.appendleft(item)
        self._back_off()

    def _back_off(self) -> None:
        self.failures += 1
        if self.waiting or self.closed:
            return
        ceiling_ms = min(limits.OUTBOUND_BACKOFF_MS_MAX,
                         limits.OUTBOUND_BACKOFF_MS_MIN << min(self.failures - 1, 30))
        delay_ms = ceiling_ms / 2 + self.rng.uniform(0, ceiling_ms / 2)
        self.waiting = True
        self.loop.call_later(delay_ms / 1000, self._resume)

    def _resume(self) -> None:
        self.waiting = False
        self.pump()

    @property
    def pending(self) -> int:
        return len(self.queue) + self.in_flight

    async def close(self) -> None:
        self.closed = True
        queued, self.queue = self.queue, deque()
        for item in queued:
            _finish(item, None)
        await self.pool.close()


def _finish(item: _Item, response: ClientResponse | None) -> None:
    if item.on_done is not None:
        try:
            item.on_done(response)
        except Exception:  # noqa: BLE001 - a handler bug must not stop the lane
            log.exception("mobilemoney.outbound_handler_failed")


class Lanes:
    """Every wallet's lanes, by (participant id, origin)."""

    def __init__(self) -> None:
        self.stats = Stats()
        self.rng = random.Random()
        self._lanes: dict[tuple[int, str], Lane] = {}
        self._origins: dict[int, int] = {}

    def lane(self, participant_id: int, origin: str) -> Lane | None:
        key = (participant_id, origin)
        lane = self._lanes.get(key)
        if lane is None:
            if self._origins.get(participant_id, 0) >= limits.OUTBOUND_ORIGINS_PER_WALLET_MAX:
                return None
            try:
                lane = Lane(origin, self.stats, self.rng)
            except ValueError:
                return None
            self._lanes[key] = lane
            self._origins[participant_id] = self._origins.get(participant_id, 0) + 1
        return lane

    def send(self, participant_id: int, url: str, method: bytes, body: bytes | None,
             headers: tuple[tuple[bytes, bytes], ...], on_done: OnDone | None = None) -> bool:
        """Queue a request to `url` for the wallet `participant_id`; False if it cannot be
        (bad URL, too many origins, lane full): on_done is then not called."""
        split = origin_of(url)
        if split is None:
            self.stats.dropped_total += 1
            return False
        lane = self.lane(participant_id, split[0])
        if lane is None:
            self.stats.dropped_total += 1
            return False
        return lane.send(method, split[1], body, headers, on_done)

    @property
    def pending(self) -> int:
        return sum(lane.pending for lane in self._lanes.values())

    async def close(self, grace_ms: int = 5_000) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_ms / 1000
        while self.pending and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for lane in self._lanes.values():
            await lane.close()
        self._lanes.clear()
