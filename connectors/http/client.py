"""A keep-alive, pipelining HTTP/1.1 client on asyncio and httptools.

Used by the switch to deliver callbacks (`callbacks.py`) and by the SDK's `HttpClient` to
call the switch. One `ConnectionPool` per origin (scheme, host, port) holds a few
persistent connections; each connection pipelines up to a bound of requests and matches
answers to requests in order (HTTP/1.1 guarantees the order). Writes made in one loop tick
leave in one system call.

It never retries by itself: a failed request raises (`HttpClientError`) and the caller
decides, because only the caller knows whether the request is safe to resend. Every
request has a deadline; a connection whose oldest request is past it is closed and every
request on it fails.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections import deque
from urllib.parse import urlsplit

import httptools

from connectors.http import limits


class HttpClientError(Exception):
    """The request did not get an answer: connection refused or lost, timeout, bad reply."""


class ClientResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"ClientResponse(status={self.status}, body={self.body[:200]!r})"


class Origin:
    """Where requests go: parsed once from a URL such as http://127.0.0.1:9000/base."""

    __slots__ = ("scheme", "host", "port", "base_path", "host_header")

    def __init__(self, url: str) -> None:
        if len(url) > limits.CALLBACK_URL_BYTES_MAX:
            raise ValueError("URL too long")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"URL scheme must be http or https: {url!r}")
        if not parts.hostname:
            raise ValueError(f"URL has no host: {url!r}")
        if parts.query or parts.fragment or parts.username:
            raise ValueError(f"URL must not carry a query, fragment or credentials: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/").encode()
        default = (self.scheme == "http" and self.port == 80) or (
            self.scheme == "https" and self.port == 443)
        self.host_header = (self.host if default else f"{self.host}:{self.port}").encode()


def encode_request(method: bytes, target: bytes, host_header: bytes, body: bytes | None,
                   headers: tuple[tuple[bytes, bytes], ...] = (),
                   content_type: bytes = b"application/json") -> bytes:
    parts = [method, b" ", target or b"/", b" HTTP/1.1\r\nhost: ", host_header, b"\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    if body is not None:
        # A dialect with its own media type (FSPIOP's versioned ones) may pass it as a header.
        if not any(name == b"content-type" for name, _ in headers):
            parts += (b"content-type: ", content_type, b"\r\n")
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n\r\n", body)
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


class _Pending:
    __slots__ = ("future", "deadline")

    def __init__(self, future: asyncio.Future, deadline: float) -> None:
        self.future = future
        self.deadline = deadline


class HttpConnection(asyncio.Protocol):
    """One persistent connection: pipelined requests, answers matched in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, in_flight_max: int,
                 on_free=None) -> None:
        self.loop = loop
        self.on_free = on_free  # called when a request slot frees (the pool wakes a waiter)
        self.in_flight_max = in_flight_max
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.pending: deque[_Pending] = deque()
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False
        self.close_after = False  # the server said Connection: close
        self._reset()

    def _reset(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body_parts: list[bytes] = []
        self.body_bytes = 0
        self.header_bytes = 0

    @property
    def usable(self) -> bool:
        return not self.closed and not self.close_after

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self._fail(HttpClientError(f"connection lost: {exc or 'closed by peer'}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            cause = error.__context__ if error.__context__ is not None else error
            self._fail(HttpClientError(f"bad response: {cause}"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > limits.RESPONSE_HEADER_BYTES_MAX:
            raise HttpClientError("response headers too large")
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > limits.RESPONSE_BODY_BYTES_MAX:
            raise HttpClientError("response body too large")
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if not self.pending:
            raise HttpClientError("response without a request")
        entry = self.pending.popleft()
        parts = self.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if not self.parser.should_keep_alive():
            self.close_after = True
        if not entry.future.done():
            entry.future.set_result(
                ClientResponse(self.parser.get_status_code(), self.headers, body))
        if self.close_after and not self.pending:
            self.close()
        elif self.on_free is not None:
            self.on_free()

    # requests
    def send(self, data: bytes, timeout_ms: int) -> asyncio.Future:
        assert self.usable
        future = self.loop.create_future()
        self.pending.append(_Pending(future, self.loop.time() + timeout_ms / 1000))
        self.out.append(data)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.closed or not self.out:
            self.out.clear()
            return
        out = self.out
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        out.clear()

    def check_deadline(self, now: float) -> None:
        if self.pending and self.pending[0].deadline < now:
            self._fail(HttpClientError("timed out waiting for the response"))

    def _fail(self, error: Exception) -> None:
        self.closed = True
        pending, self.pending = self.pending, deque()
        for entry in pending:
            if not entry.future.done():
                entry.future.set_exception(error)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if self.on_free is not None:
            on_free, self.on_free = self.on_free, None
            on_free(closed=True)

    def close(self) -> None:
        self._fail(HttpClientError("connection closed"))


class ConnectionPool:
    """Persistent connections to one origin. `request` uses a connection with room for one
    more pipelined request, opens another while under `connections_max`, else waits."""

    def __init__(self, url: str, *, connections_max: int = 4,
                 in_flight_per_connection_max: int = limits.CALLBACK_IN_FLIGHT_PER_CONNECTION_MAX,
                 timeout_ms: int = limits.CALLBACK_TIMEOUT_MS,
                 headers: tuple[tuple[bytes, bytes], ...] = (),
                 ssl: ssl_module.SSLContext | None = None,
                 content_type: bytes = b"application/json") -> None:
        assert connections_max >= 1
        assert in_flight_per_connection_max >= 1
        self.origin = Origin(url)
        self.connections_max = connections_max
        self.in_flight_max = in_flight_per_connection_max
        self.timeout_ms = timeout_ms
        self.headers = headers  # sent with every request (e.g. an API key)
        self.content_type = content_type  # of every request body (XML for ISO 20022)
        if self.origin.scheme == "https" and ssl is None:
            ssl = ssl_module.create_default_context()
        self.ssl = ssl
        self.loop = asyncio.get_running_loop()
        self.connections: list[HttpConnection] = []
        self.connecting = 0
        # Callers waiting for room, woken one per freed slot (an Event would wake them all
        # at every answer: quadratic work when many wait).
        self.waiters: deque[asyncio.Future] = deque()
        # Called (no arguments) whenever a request slot frees: lets a caller that queues
        # its own overflow (the SDK) send more without a task per request.
        self.on_free = None
        self.closed = False
        # The deadline sweep runs only while requests are out: a switch holds a pool per
        # participant, and idle pools must cost no timer.
        self._sweeper: asyncio.TimerHandle | None = None

    def _arm_sweep(self) -> None:
        if self._sweeper is None and not self.closed:
            self._sweeper = self.loop.call_later(limits.CLIENT_SWEEP_MS / 1000,
                                                 self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        busy = False
        for connection in self.connections:
            connection.check_deadline(now)
            busy = busy or connection.in_flight > 0
        self.connections = [c for c in self.connections if not c.closed]
        if self.waiters and len(self.connections) + self.connecting < self.connections_max:
            self._wake_all()  # a connection went away: let the waiters open another
        if busy or self.waiters:
            self._arm_sweep()

    async def _open(self, counted: bool = False) -> HttpConnection:
        # `counted`: the caller already counted this attempt in `connecting` (a task that
        # has not started yet must still count, or one tick could open many connections).
        if not counted:
            self.connecting += 1
        try:
            origin = self.origin
            _, connection = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: HttpConnection(self.loop, self.in_flight_max, self._freed),
                    origin.host, origin.port, ssl=self.ssl),
                self.timeout_ms / 1000)
        except (OSError, asyncio.TimeoutError) as error:
            raise HttpClientError(f"cannot connect to {self.origin.host}:"
                                  f"{self.origin.port}: {error!r}") from None
        finally:
            self.connecting -= 1
        self.connections.append(connection)
        return connection

    def _least_loaded(self) -> HttpConnection | None:
        """The usable connection with the fewest requests out, if one has room."""
        best = None
        for connection in self.connections:
            if connection.usable and connection.in_flight < self.in_flight_max and (
                    best is None or connection.in_flight < best.in_flight):
                best = connection
        return best

    async def _connection(self) -> HttpConnection:
        while True:
            if self.closed:
                raise HttpClientError("pool closed")
            # Fill one connection before opening the next: pipelining on few connections
            # costs fewer system calls than spreading thin over many.
            best = self._least_loaded()
            if best is not None:
                return best
            if len(self.connections) + self.connecting < self.connections_max:
                return await self._open()
            waiter = self.loop.create_future()
            self.waiters.append(waiter)
            await waiter

    def try_send(self, method: bytes, path: bytes, body: bytes | None,
                 headers: tuple[tuple[bytes, bytes], ...] = (),
                 on_room=None) -> asyncio.Future | None:
        """Send without waiting for a connection: the answer's future, or None when every
        connection is full (or none is open yet). In that case a connection is opened in
        the background if the pool may grow, and `on_room()` is called once it is ready
        (or failed to open: then the next try_send tries again)."""
        if self.closed:
            raise HttpClientError("pool closed")
        best = self._least_loaded()
        if best is None:
            self.connections = [c for c in self.connections if not c.closed]
            if len(self.connections) + self.connecting < self.connections_max:
                self.connecting += 1
                task = self.loop.create_task(self._open(counted=True))
                task.add_done_callback(lambda done: self._opened(done, on_room))
            return None
        data = encode_request(method, self.origin.base_path + path, self.origin.host_header,
                              body, self.headers + headers if headers else self.headers,
                              self.content_type)
        if self._sweeper is None:
            self._arm_sweep()
        return best.send(data, self.timeout_ms)

    def _opened(self, task: asyncio.Task, on_room) -> None:
        error = None if task.cancelled() else task.exception()
        if on_room is not None:
            on_room(error)

    async def request(self, method: bytes, path: bytes, body: bytes | None = None,
                      headers: tuple[tuple[bytes, bytes], ...] = (),
                      timeout_ms: int | None = None) -> ClientResponse:
        """Send one request (path is appended to the URL's base path); raises
        HttpClientError if no answer arrives. Any answer, 5xx included, is returned."""
        connection = await self._connection()
        data = encode_request(method, self.origin.base_path + path, self.origin.host_header,
                              body, self.headers + headers if headers else self.headers,
                              self.content_type)
        future = connection.send(data, timeout_ms or self.timeout_ms)
        if self._sweeper is None:
            self._arm_sweep()
        return await future

    def _freed(self, closed: bool = False) -> None:
        if self.waiters:
            if closed:
                self._wake_all()  # they may open a new connection in its place
            else:
                self._wake_one()
        if self.on_free is not None:
            self.on_free()

    def _wake_one(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        waiters, self.waiters = self.waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def close(self) -> None:
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in self.connections:
            connection.close()
        self.connections.clear()
        self._wake_all()  # they find the pool closed and raise
