"""Callbacks of the G2P connector: `POST <participant's callback URL><path>` with a G2P
Connect body (on-link, on-disburse, txn/on-status, the mapper's moved-out notices).

Answers to requests (on-*) are queued in memory (bounded; one dropped is still readable
through txn/status). Moved-out notices are durable: they wait in the store's outbox
(`g2p_notices`) until the participant answers 2xx or every attempt failed, so a crash
between the mapper write and the delivery loses none.

It must never block the loop, never raise into a request handler, and never send a raw
national ID (no body it builds carries one).
"""

from __future__ import annotations

import asyncio
import logging
import random

from connectors.http.client import ConnectionPool, HttpClientError
from switch.g2p import limits

log = logging.getLogger("ponte.g2p.callbacks")

_BACKOFF_S_MIN = 0.2
_BACKOFF_S_MAX = 10.0
_NOTICE_POLL_S = 1.0


class G2PCallbacks:
    def __init__(self, callback_url, store, *, api_key_header: tuple = ()) -> None:
        self.callback_url = callback_url  # participant_id -> str ("" when none)
        self.store = store
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=limits.CALLBACK_QUEUE_MAX)
        self._pools: dict[str, ConnectionPool] = {}
        self._tasks: list[asyncio.Task] = []
        self._notices_due = asyncio.Event()
        self.delivered_total = 0
        self.dropped_total = 0
        self.given_up_total = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name="ponte-g2p-callbacks"),
                       asyncio.create_task(self._notices(), name="ponte-g2p-notices")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - stopping
                pass
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    def send(self, participant_id: int, path: bytes, body: bytes) -> None:
        """Queue one callback; never blocks (a full queue drops it: txn/status has it)."""
        try:
            self._queue.put_nowait((participant_id, path, body))
        except asyncio.QueueFull:
            self.dropped_total += 1
            log.warning("g2p.callback_dropped participant_id=%d path=%s", participant_id,
                        path.decode())

    def notices_added(self) -> None:
        self._notices_due.set()

    async def _post(self, participant_id: int, path: bytes, body: bytes) -> bool | None:
        """True: delivered; False: try again later; None: the participant refused it (a
        4xx other than 408 and 429) or has no callback URL, so a resend would be too."""
        url = self.callback_url(participant_id)
        if not url:
            return None
        pool = self._pools.get(url)
        if pool is None:
            try:
                pool = self._pools[url] = ConnectionPool(url, connections_max=2)
            except ValueError:
                return None
        try:
            response = await pool.request(b"POST", path, body)
        except HttpClientError:
            return False
        status = response.status
        if 200 <= status < 300:
            return True
        if 400 <= status < 500 and status not in (408, 429):
            return None
        return False

    async def _run(self) -> None:
        rng = random.Random()
        while True:
            participant_id, path, body = await self._queue.get()
            for attempt in range(limits.CALLBACK_ATTEMPTS_MAX):
                delivered = await self._post(participant_id, path, body)
                if delivered:
                    self.delivered_total += 1
                    break
                if delivered is None:
                    self.dropped_total += 1
                    break
                await asyncio.sleep(min(_BACKOFF_S_MAX, _BACKOFF_S_MIN * 2 ** attempt)
                                    * (0.5 + rng.random() / 2))
            else:
                self.given_up_total += 1
                log.warning("g2p.callback_given_up participant_id=%d path=%s", participant_id,
                            path.decode())

    async def _notices(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._notices_due.wait(), _NOTICE_POLL_S)
            except asyncio.TimeoutError:
                pass
            self._notices_due.clear()
            try:
                due = await self.store.due_notices(limits.NOTICES_PER_PASS_MAX)
                for notice_id, participant_id, body, attempts in due:
                    delivered = await self._post(participant_id, b"/mapper/on-unlink", body)
                    give_up = delivered is None or (
                        not delivered and attempts + 1 >= limits.CALLBACK_ATTEMPTS_MAX)
                    delivered = bool(delivered)
                    await self.store.notice_attempted(notice_id, delivered, give_up)
                    if delivered:
                        self.delivered_total += 1
                    elif give_up:
                        self.given_up_total += 1
            except Exception:  # noqa: BLE001 - the store or a peer failed: next pass
                log.exception("g2p.notices_failed")


__all__ = ["G2PCallbacks"]
