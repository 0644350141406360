"""Run the SDK's asyncio `StreamClient` inside a locust (gevent) process: an event loop on
its own native thread, and a bridge that lets a greenlet wait for a coroutine's result
without blocking the other greenlets.

Locust monkey-patches the process with gevent, so `threading.Thread` makes greenlets. The
loop therefore runs on a thread started with the original `_thread.start_new_thread`, on
uvloop (its I/O is libuv's, untouched by the patching). A greenlet hands a coroutine to
the loop with `call_soon_threadsafe`; the coroutine's end is handed back through a gevent
async watcher, the one object gevent documents as safe to signal from another native
thread; its callback, on the greenlets' thread, completes the waiting `AsyncResult`.

Response times are measured on the loop thread, from the moment the call starts to the
moment its answer arrives, so the hops between threads are not counted.

Only the locustfile imports this module (it needs gevent). It must never block the gevent
hub while a call is in flight, and never touch gevent objects from the loop thread.
"""

from __future__ import annotations

import collections
import time

import gevent
import gevent.event
import gevent.monkey

_start_new_thread = gevent.monkey.get_original("_thread", "start_new_thread")
_allocate_lock = gevent.monkey.get_original("_thread", "allocate_lock")

LOOP_START_TIMEOUT_S = 10.0


class Timed:
    """A call's answer and how long it took on the loop thread."""

    __slots__ = ("value", "elapsed_s")

    def __init__(self, value, elapsed_s: float) -> None:
        self.value = value
        self.elapsed_s = elapsed_s


class LoopThread:
    """One asyncio loop on a native thread; `call(factory, *args)` from any greenlet."""

    def __init__(self) -> None:
        started = _allocate_lock()
        started.acquire()
        self.loop = None
        self._started = started
        # Completed calls, appended on the loop thread and popped on the hub's thread:
        # deque.append and popleft are atomic, so no lock is needed between the two.
        self._done: collections.deque = collections.deque()
        hub = gevent.get_hub()
        self._watcher = hub.loop.async_()
        self._watcher.start(self._drain)
        self._watcher.ref = False  # an idle bridge must not keep the hub alive
        _start_new_thread(self._run, ())
        # A plain lock wait: this blocks the hub for the loop's start-up only (milliseconds).
        if not started.acquire(True, LOOP_START_TIMEOUT_S):
            raise RuntimeError("the asyncio loop thread did not start")

    def _run(self) -> None:
        import asyncio

        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._started.release()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def call(self, factory, *args, timeout_s: float | None = None) -> Timed:
        """Run `factory(*args)` (a coroutine function) on the loop; wait for it in this
        greenlet only. Raises what the coroutine raised, or gevent.Timeout."""
        result = gevent.event.AsyncResult()
        self.loop.call_soon_threadsafe(self._begin, factory, args, result)
        return result.get(timeout=timeout_s)

    # -- on the loop thread ----------------------------------------------------------

    def _begin(self, factory, args, result) -> None:
        import asyncio

        started = time.perf_counter()
        try:
            task = asyncio.ensure_future(factory(*args))
        except BaseException as error:  # noqa: BLE001 - handed to the waiting greenlet
            self._finish(result, None, error, time.perf_counter() - started)
            return

        def done(task) -> None:
            elapsed_s = time.perf_counter() - started
            if task.cancelled():
                self._finish(result, None, RuntimeError("cancelled"), elapsed_s)
            elif task.exception() is not None:
                self._finish(result, None, task.exception(), elapsed_s)
            else:
                self._finish(result, task.result(), None, elapsed_s)

        task.add_done_callback(done)

    def _finish(self, result, value, error, elapsed_s: float) -> None:
        self._done.append((result, value, error, elapsed_s))
        self._watcher.send()

    # -- on the greenlets' thread ----------------------------------------------------

    def _drain(self) -> None:
        done = self._done
        while done:
            result, value, error, elapsed_s = done.popleft()
            if error is not None:
                result.set_exception(error)
            else:
                result.set(Timed(value, elapsed_s))

    def stop(self) -> None:
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        self._watcher.stop()
