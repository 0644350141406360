"""A small, strict HTTP/1.1 server on asyncio (uvloop) and httptools, for the HTTP connector.

Why not a framework: the connector must carry several HTTP exchanges per transfer at
thousands of transfers a second on two cores; a framework under uvicorn spends ~30 us per
request before our code runs, raw httptools a few. This module is only the protocol: it
parses requests, enforces the bounds in `limits.py`, calls one handler per request and
writes the answers back in request order. Routing, authentication and JSON live in `app.py`.

Rules it enforces (each a typed JSON error, see `errors.py`):
- a request with a body needs Content-Length (no chunked uploads): 411;
- request line + headers bounded (431), body bounded (413), URL bounded (414);
- pipelining is allowed; answers leave strictly in request order; at most
  REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX wait per connection before the server stops reading
  that socket (the bound is checked per read, so one read's worth may overshoot it);
- idle, slow-header and slow-body clients are timed out by one periodic sweep;
- at most CONNECTIONS_MAX connections, and `connections_per_address_max` from one remote
  host (counted from accept): past either, a typed 503 and the connection is closed.

It must never interpret a body, never block, and never let one connection's failure touch
another connection.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import deque
from typing import Awaitable, Callable, Union

import httptools

from connectors.http import limits

log = logging.getLogger("ponte.http")

JSON = b"application/json"

_REASONS = {
    200: b"OK", 201: b"Created", 202: b"Accepted", 204: b"No Content",
    400: b"Bad Request", 401: b"Unauthorized", 403: b"Forbidden", 404: b"Not Found",
    405: b"Method Not Allowed", 406: b"Not Acceptable", 408: b"Request Timeout", 409: b"Conflict",
    411: b"Length Required", 413: b"Content Too Large", 414: b"URI Too Long",
    415: b"Unsupported Media Type", 422: b"Unprocessable Content",
    429: b"Too Many Requests", 431: b"Request Header Fields Too Large",
    500: b"Internal Server Error", 501: b"Not Implemented", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout",
}
_STATUS_LINES = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in _REASONS.items()
}
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
# Headers whose repetition would make the request ambiguous: refused, never merged.
_SINGLE_HEADERS = frozenset({b"content-length", b"content-type", b"authorization",
                             b"x-api-key", b"transfer-encoding", b"x-jws-signature",
                             b"fspiop-signature", b"host"})
_KNOWN_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS"})


class Request:
    """One parsed request. `headers` has lower-case names; a repeated header keeps the last
    value, except the few (`_SINGLE_HEADERS`) whose repetition is refused as ambiguous."""

    __slots__ = ("method", "path", "query", "headers", "body", "peer", "certificate")

    def __init__(self, method: bytes, path: bytes, query: bytes | None,
                 headers: dict[bytes, bytes], body: bytes, peer: str,
                 certificate: bytes | None = None) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.peer = peer
        # The TLS client certificate (DER) the connection presented, if any (mTLS).
        self.certificate = certificate


class Response:
    """An answer. `headers` are extra (name, value) pairs; Content-Length is always set."""

    __slots__ = ("status", "body", "content_type", "headers", "close")

    def __init__(self, status: int, body: bytes = b"", content_type: bytes = JSON,
                 headers: tuple[tuple[bytes, bytes], ...] = (), close: bool = False) -> None:
        assert status in _STATUS_LINES, status
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.close = close


Handler = Callable[[Request], Union[Response, Awaitable[Response]]]
# Builds the error answer for a protocol failure: (status, short reason) -> Response. The
# app supplies one that writes the typed JSON error body.
ErrorFactory = Callable[[int, str], Response]


def plain_error(status: int, detail: str) -> Response:
    return Response(status, detail.encode(), content_type=b"text/plain; charset=utf-8")


class _Refuse(Exception):
    """Raised inside a parser callback: answer `status` and close the connection."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Slot:
    """A request whose answer is not written yet (answers leave in request order)."""

    __slots__ = ("response", "keep_alive", "started", "head")

    def __init__(self, keep_alive: bool, started: float, head: bool) -> None:
        self.response: Response | None = None
        self.keep_alive = keep_alive
        self.started = started
        self.head = head


class _Date:
    """The Date header, refreshed by the sweep (RFC 9110 asks origin servers to send it)."""

    value = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"

    @classmethod
    def refresh(cls) -> None:
        cls.value = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"


def encode_response(response: Response, keep_alive: bool, head: bool = False) -> bytes:
    body = response.body
    parts = [
        _STATUS_LINES[response.status],
        _Date.value,
        b"content-type: ", response.content_type, b"\r\ncontent-length: ",
        str(len(body)).encode(), b"\r\n",
    ]
    for name, value in response.headers:
        parts += (name, b": ", value, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    if not head:
        parts.append(body)
    return b"".join(parts)


class HttpProtocol(asyncio.Protocol):
    """One client connection: parse, dispatch, answer in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer = ""
        self.slots: deque[_Slot] = deque()
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.flush_scheduled = False
        self.address = ""  # the remote host, once counted in server.per_address
        self.certificate: bytes | None = None  # the TLS client certificate (DER), if any
        self.closing = False
        self.reading_paused = False
        self.writing_paused = False
        self.deadline = 0.0  # loop time by which the current phase must be over; 0 = none
        self.phase = "idle"
        self._reset_request()

    def _reset_request(self) -> None:
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.body_parts: list[bytes] = []
        self.body_bytes = 0
        self.content_length = -1

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.certificate = ssl_object.getpeercert(binary_form=True)
        server = self.server
        server.connections.add(self)
        address = str(peer[0]) if isinstance(peer, tuple) else self.peer
        if len(server.connections) > limits.CONNECTIONS_MAX:
            # Refuse politely rather than let one client exhaust file descriptors.
            self._refuse_at_accept("too many connections")
            return
        if server.per_address.get(address, 0) >= server.connections_per_address_max:
            # Nor one host every slot (counted from accept, before any request).
            self._refuse_at_accept("too many connections from this address")
            return
        server.per_address[address] = server.per_address.get(address, 0) + 1
        self.address = address
        self._arm("idle", limits.IDLE_TIMEOUT_MS)

    def _refuse_at_accept(self, detail: str) -> None:
        self.transport.write(encode_response(self.server.error(503, detail),
                                             keep_alive=False))
        self._close()

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.server.connections.discard(self)
        if self.address:
            per_address = self.server.per_address
            count = per_address.get(self.address, 1) - 1
            if count:
                per_address[self.address] = count
            else:
                per_address.pop(self.address, None)
            self.address = ""
        self.slots.clear()
        self.out.clear()

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._maybe_resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(400, "protocol upgrade is not supported")
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, _Refuse):
                self._refuse(cause.status, cause.detail)
            else:
                log.exception("http.callback_error peer=%s", self.peer)
                self._refuse(500, "internal error")
        except httptools.HttpParserInvalidMethodError:
            self._refuse(405, "method not allowed")
        except httptools.HttpParserError as error:
            self._refuse(400, f"malformed HTTP: {error}")
        if len(self.slots) >= limits.REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX:
            self._pause_reading()
        self._flush()

    def eof_received(self):
        # A half-closed client still gets the answers to what it already sent.
        if not self.slots:
            self._close()
            return False
        self.closing_after_drain = True
        return True

    closing_after_drain = False

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset_request()
        self._arm("header", limits.HEADER_TIMEOUT_MS)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > limits.URL_BYTES_MAX:
            raise _Refuse(414, "URL too long")
        self.header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools buffers a header split across reads and calls us once with all of it.
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > limits.REQUEST_HEADER_BYTES_MAX:
            raise _Refuse(431, "request headers too large")
        if len(self.headers) >= limits.REQUEST_HEADERS_COUNT_MAX:
            raise _Refuse(431, "too many request headers")
        key = name.lower()
        if key in self.headers and key in _SINGLE_HEADERS:
            raise _Refuse(400, f"repeated {key.decode()} header")
        self.headers[key] = value

    def on_headers_complete(self) -> None:
        method = self.parser.get_method()
        if method not in _KNOWN_METHODS:
            raise _Refuse(405, "method not allowed")
        if b"transfer-encoding" in self.headers:
            raise _Refuse(411, "chunked bodies are not accepted; send Content-Length")
        length = self.headers.get(b"content-length")
        if length is None:
            if method in _BODY_METHODS:
                raise _Refuse(411, "Content-Length is required")
            self.content_length = 0
        else:
            if not length.isdigit() or len(length) > 12:
                raise _Refuse(400, "bad Content-Length")
            self.content_length = int(length)
            body_max = self.server.request_body_bytes_max
            if self.content_length > body_max:
                raise _Refuse(413, f"body larger than {body_max} bytes")
        self._arm("body", limits.BODY_TIMEOUT_MS)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > self.content_length:  # cannot happen with httptools; be sure
            raise _Refuse(413, "body longer than Content-Length")
        self.body_parts.append(body)

    def on_message_complete(self) -> None:
        if self.closing_after_drain:
            # Pipelined after a `Connection: close` request in the same read: never acted
            # on, since its answer could not be sent.
            return
        parser = self.parser
        method = parser.get_method()
        keep_alive = parser.should_keep_alive()
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            raise _Refuse(400, "malformed URL") from None
        parts = self.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        request = Request(method, parsed.path, parsed.query, self.headers, body, self.peer,
                          self.certificate)
        self.server.requests_total += 1
        slot = _Slot(keep_alive, self.server.clock, method == b"HEAD")
        self.slots.append(slot)
        # Waiting on our handlers, not on the client, until the answers have left.
        self._arm("answering", limits.IDLE_TIMEOUT_MS)
        try:
            answer = self.server.handler(request)
        except Exception:  # noqa: BLE001 - a handler bug answers 500, the connection lives
            log.exception("http.handler_error peer=%s", self.peer)
            answer = self.server.error(500, "internal error")
        if type(answer) is Response:
            slot.response = answer
        else:
            future = asyncio.ensure_future(answer)
            future.add_done_callback(lambda done, slot=slot: self._answered(slot, done))
        if not keep_alive:
            # Nothing after a `Connection: close` request is read.
            self._pause_reading()
            self.closing_after_drain = True

    # -- answers ------------------------------------------------------------------------

    def _answered(self, slot: _Slot, future: asyncio.Future) -> None:
        if slot.response is not None:  # the sweep timed it out already
            return
        if future.cancelled():
            slot.response = self.server.error(503, "request cancelled")
        elif future.exception() is not None:
            log.error("http.handler_error peer=%s", self.peer, exc_info=future.exception())
            slot.response = self.server.error(500, "internal error")
        else:
            slot.response = future.result()
        if not self.flush_scheduled and not self.closing:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write every answer at the head of the queue that is ready, in one write."""
        self.flush_scheduled = False
        if self.closing:
            return
        slots = self.slots
        out = self.out
        close = False
        while slots and slots[0].response is not None:
            slot = slots.popleft()
            response = slot.response
            keep_alive = slot.keep_alive and not response.close
            out.append(encode_response(response, keep_alive, slot.head))
            if not keep_alive:
                close = True
                slots.clear()
                break
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
            out.clear()
        if close or (self.closing_after_drain and not slots):
            self._close()
            return
        if not slots and self.phase == "answering":
            self._arm("idle", limits.IDLE_TIMEOUT_MS)
        self._maybe_resume_reading()

    def _refuse(self, status: int, detail: str) -> None:
        """A protocol failure: answer after the earlier answers, then close."""
        log.debug("http.refused peer=%s status=%d detail=%s", self.peer, status, detail)
        slot = _Slot(False, self.server.clock, False)
        slot.response = self.server.error(status, detail)
        self.slots.append(slot)
        self._pause_reading()
        self.closing_after_drain = True
        self._flush()

    # -- flow control and timers --------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.reading_paused and not self.closing:
            self.reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        if (self.reading_paused and not self.writing_paused and not self.closing_after_drain
                and len(self.slots) < limits.REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX):
            self.reading_paused = False
            self.transport.resume_reading()

    def _arm(self, phase: str, timeout_ms: int) -> None:
        # The server's coarse clock (refreshed by the sweep) is precise enough for
        # timeouts of seconds, and reading it costs nothing per request.
        self.phase = phase
        self.deadline = self.server.clock + timeout_ms / 1000

    def sweep(self, now: float) -> None:
        """Called by the server's periodic timer: enforce the phase and handler deadlines."""
        if self.closing:
            return
        if self.slots:
            head = self.slots[0]
            if (head.response is None
                    and now - head.started > limits.HANDLER_TIMEOUT_MS / 1000):
                head.response = self.server.error(503, "the switch did not answer in time")
                self._flush()
            if self.phase == "answering":
                return  # waiting on handlers, not on the client
        if now < self.deadline:
            return
        if self.phase == "idle" or self.phase == "answering":
            self._close()
        else:
            self._refuse(408, f"request {self.phase} not received in time")

    def _close(self) -> None:
        if not self.closing:
            self.closing = True
            self.transport.close()


class HttpServer:
    """Owns the listening socket, the set of live connections and the periodic sweep."""

    def __init__(self, handler: Handler, error: ErrorFactory = plain_error, *,
                 connections_per_address_max: int = limits.CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
                 request_body_bytes_max: int = limits.REQUEST_BODY_BYTES_MAX) -> None:
        assert 1 <= connections_per_address_max <= limits.CONNECTIONS_MAX
        # A connector whose messages are larger than JSON's (ISO 20022 XML, GSMA batches) raises
        # its own bound, never past the ceiling.
        assert 1 <= request_body_bytes_max <= limits.REQUEST_BODY_BYTES_CEILING
        self.request_body_bytes_max = request_body_bytes_max
        self.handler = handler
        self.error = error
        self.loop = asyncio.get_running_loop()
        self.connections: set[HttpProtocol] = set()
        self.connections_per_address_max = connections_per_address_max
        self.per_address: dict[str, int] = {}  # remote host -> open connections
        self.requests_total = 0  # requests parsed and handed to the handler
        self.clock = self.loop.time()  # loop time, refreshed every TIMER_SWEEP_MS
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, *, sock=None, ssl=None,
                    backlog: int = 1024) -> None:
        """Listen on host:port (port 0 picks a free one; see `port`)."""
        if sock is not None:
            self._server = await self.loop.create_server(
                lambda: HttpProtocol(self), sock=sock, ssl=ssl, backlog=backlog)
        else:
            self._server = await self.loop.create_server(
                lambda: HttpProtocol(self), host, port, ssl=ssl, backlog=backlog,
                reuse_address=True)
        self._sweeper = self.loop.call_later(limits.TIMER_SWEEP_MS / 1000, self._sweep)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    def _sweep(self) -> None:
        _Date.refresh()
        now = self.clock = self.loop.time()
        for connection in list(self.connections):
            connection.sweep(now)
        self._sweeper = self.loop.call_later(limits.TIMER_SWEEP_MS / 1000, self._sweep)

    async def close(self, grace_ms: int = 5_000) -> None:
        """Stop accepting, let in-flight answers leave (up to `grace_ms`), close the rest."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace_ms / 1000
        while time.monotonic() < deadline and any(c.slots for c in self.connections):
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection._close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
