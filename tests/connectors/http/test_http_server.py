"""The HTTP/1.1 server's protocol rules, over real sockets: keep-alive, pipelining order,
bounds and typed errors. The handler here is a tiny echo: these tests are about framing,
not about the connector's resources (see test_http_connector.py)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from connectors.http import limits
from connectors.http.errors import ErrorBody, protocol_error
from connectors.http.server import HttpServer, Response


class Echo:
    def __init__(self) -> None:
        self.seen: list[tuple[bytes, bytes, bytes]] = []

    def __call__(self, request):
        self.seen.append((request.method, request.path, request.body))
        if request.path.startswith(b"/sleep/"):
            return self._later(request, int(request.path.rsplit(b"/", 1)[1]))
        if request.path == b"/boom":
            raise RuntimeError("handler bug")
        return Response(200, b'{"path":"' + request.path + b'","n":%d}' % len(request.body))

    async def _later(self, request, ms: int):
        await asyncio.sleep(ms / 1000)
        return Response(200, b'{"slept":%d}' % ms)


@pytest.fixture
async def echo_server():
    echo = Echo()
    server = HttpServer(echo, protocol_error)
    await server.start("127.0.0.1", 0)
    yield server, echo
    await server.close(grace_ms=100)


async def exchange(port: int, data: bytes, read_until_close: bool = True,
                   responses: int = 1) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if read_until_close:
        out = await asyncio.wait_for(reader.read(), 5)
    else:
        out = b""
        while out.count(b"HTTP/1.1 ") < responses or not _complete(out, responses):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, out
            out += chunk
    writer.close()
    return out


def _complete(data: bytes, responses: int) -> bool:
    # Enough for these tests: every response carries content-length and a short body.
    parts = data.split(b"HTTP/1.1 ")[1:]
    if len(parts) < responses:
        return False
    last = b"HTTP/1.1 " + parts[-1]
    head, sep, body = last.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    return len(body) >= length


def error_of(response: bytes) -> tuple[int, ErrorBody, bool]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, msgspec.json.decode(body, type=ErrorBody), b"connection: close" in head


async def test_keep_alive_serves_many_requests_on_one_connection(echo_server):
    server, echo = echo_server
    request = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n"
    out = await exchange(server.port, request * 3, read_until_close=False, responses=3)
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert b"connection: close" not in out
    assert [path for _, path, _ in echo.seen] == [b"/a"] * 3


async def test_pipelined_answers_leave_in_request_order(echo_server):
    server, _ = echo_server
    # The first request answers last (it sleeps): the second must still wait for it.
    data = (b"GET /sleep/50 HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /fast HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}"
            b"GET /sleep/1 HTTP/1.1\r\nhost: x\r\n\r\n")
    out = await exchange(server.port, data, read_until_close=False, responses=3)
    first, second, third = (out.index(b'{"slept":50}'), out.index(b'"path":"/fast"'),
                            out.index(b'{"slept":1}'))
    assert first < second < third


async def test_connection_close_is_honoured(echo_server):
    server, _ = echo_server
    out = await exchange(server.port, b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"connection: close" in out


async def test_body_without_content_length_is_refused_411(echo_server):
    server, echo = echo_server
    out = await exchange(server.port, b"POST /a HTTP/1.1\r\nhost: x\r\n\r\n")
    status, body, closed = error_of(out)
    assert (status, body.name, closed) == (411, "VALIDATION_ERROR", True)
    assert echo.seen == []


async def test_chunked_body_is_refused_411(echo_server):
    server, echo = echo_server
    out = await exchange(server.port, b"POST /a HTTP/1.1\r\nhost: x\r\n"
                                      b"transfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    status, body, _ = error_of(out)
    assert status == 411
    assert body.result == 3100
    assert echo.seen == []


async def test_over_long_body_is_refused_413_before_it_is_read(echo_server):
    server, echo = echo_server
    length = limits.REQUEST_BODY_BYTES_MAX + 1
    out = await exchange(server.port, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: %d"
                                      b"\r\n\r\n" % length + b"x" * 100)
    status, body, closed = error_of(out)
    assert (status, closed) == (413, True)
    assert "bytes" in body.detail
    assert echo.seen == []


async def test_over_long_headers_are_refused_431(echo_server):
    server, echo = echo_server
    big = b"x-pad: " + b"a" * limits.REQUEST_HEADER_BYTES_MAX + b"\r\n"
    out = await exchange(server.port, b"GET /a HTTP/1.1\r\nhost: x\r\n" + big + b"\r\n")
    status, _, closed = error_of(out)
    assert (status, closed) == (431, True)
    assert echo.seen == []


async def test_too_many_headers_are_refused_431(echo_server):
    server, echo = echo_server
    many = b"".join(b"x-h%d: v\r\n" % i for i in range(limits.REQUEST_HEADERS_COUNT_MAX + 1))
    out = await exchange(server.port, b"GET /a HTTP/1.1\r\n" + many + b"\r\n")
    assert error_of(out)[0] == 431
    assert echo.seen == []


async def test_over_long_url_is_refused_414(echo_server):
    server, echo = echo_server
    out = await exchange(server.port, b"GET /" + b"a" * limits.URL_BYTES_MAX +
                         b" HTTP/1.1\r\nhost: x\r\n\r\n")
    assert error_of(out)[0] == 414
    assert echo.seen == []


async def test_malformed_request_answers_400_after_earlier_answers(echo_server):
    server, echo = echo_server
    out = await exchange(server.port, b"GET /ok HTTP/1.1\r\nhost: x\r\n\r\n"
                                      b"GET /bad HTTP/1.1\r\nhost x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK")
    tail = out[out.index(b"HTTP/1.1 ", 5):]
    status, body, closed = error_of(tail)
    assert (status, body.name, closed) == (400, "MALFORMED_SYNTAX", True)
    assert [path for _, path, _ in echo.seen] == [b"/ok"]


async def test_repeated_content_length_is_refused(echo_server):
    server, echo = echo_server
    out = await exchange(server.port, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n"
                                      b"content-length: 2\r\n\r\n{}")
    assert error_of(out)[0] == 400
    assert echo.seen == []


async def test_handler_bug_answers_500_and_the_connection_lives(echo_server):
    server, _ = echo_server
    out = await exchange(server.port, b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n"
                                      b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n",
                         read_until_close=False, responses=2)
    assert out.startswith(b"HTTP/1.1 500 ")
    assert b'"path":"/after"' in out


async def test_one_bad_connection_does_not_touch_another(echo_server):
    server, _ = echo_server
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    bad = await exchange(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 4")
    writer.write(b"GET /still HTTP/1.1\r\nhost: x\r\n\r\n")
    answer = await asyncio.wait_for(reader.readuntil(b'"n":0}'), 5)
    assert b"200 OK" in answer
    writer.close()


async def test_body_split_across_reads_is_reassembled(echo_server):
    server, echo = echo_server
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /split HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n01234")
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(b"56789")
    answer = await asyncio.wait_for(reader.readuntil(b"}"), 5)
    assert b'"n":10' in answer
    assert echo.seen == [(b"POST", b"/split", b"0123456789")]
    writer.close()


@pytest.fixture
def short_timeouts(monkeypatch):
    """Timeouts of a fraction of a second, so slow clients can be shown being cut off."""
    monkeypatch.setattr(limits, "TIMER_SWEEP_MS", 20)
    monkeypatch.setattr(limits, "HEADER_TIMEOUT_MS", 150)
    monkeypatch.setattr(limits, "BODY_TIMEOUT_MS", 150)
    monkeypatch.setattr(limits, "IDLE_TIMEOUT_MS", 300)


async def test_slow_headers_get_408_and_the_connection_closes(short_timeouts):
    echo = Echo()
    server = HttpServer(echo, protocol_error)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /slow HTTP/1.1\r\nhost: x\r\n")  # never finishes its headers
        out = await asyncio.wait_for(reader.read(), 5)
        status, body, closed = error_of(out)
        assert (status, closed) == (408, True)
        assert "header" in body.detail
        assert echo.seen == []
    finally:
        await server.close(grace_ms=10)


async def test_slow_body_gets_408(short_timeouts):
    echo = Echo()
    server = HttpServer(echo, protocol_error)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n012")
        out = await asyncio.wait_for(reader.read(), 5)
        assert error_of(out)[0] == 408
        assert echo.seen == []
    finally:
        await server.close(grace_ms=10)


async def test_idle_keep_alive_connection_is_closed(short_timeouts):
    server = HttpServer(Echo(), protocol_error)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.readuntil(b'"n":0}'), 5)
        assert b"200 OK" in answer
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        assert not server.connections
    finally:
        await server.close(grace_ms=10)


async def test_nothing_after_connection_close_is_acted_on(echo_server):
    server, echo = echo_server
    out = await exchange(server.port,
                         b"GET /first HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
                         b"POST /second HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
    assert out.count(b"HTTP/1.1 ") == 1
    assert [path for _, path, _ in echo.seen] == [b"/first"]


async def test_a_connection_stops_being_read_while_its_answers_are_pending():
    """Back-pressure: with answers pending, the server reads no further than the in-flight
    bound (plus what one read brought); released, it answers every request in order."""
    release = asyncio.Event()
    seen = []

    async def later(path: bytes):
        await release.wait()
        return Response(200, path)

    def handler(request):
        seen.append(request.path)
        return later(request.path)

    server = HttpServer(handler, protocol_error)
    await server.start("127.0.0.1", 0)
    count = 3_000
    pad = b"x-pad: " + b"p" * 1_000 + b"\r\n"  # ~1 KB a request: 3 MB in all
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"".join(b"GET /%d HTTP/1.1\r\nhost: x\r\n%s\r\n" % (n, pad)
                              for n in range(count)))
        await asyncio.sleep(0.3)
        assert limits.REQUESTS_IN_FLIGHT_PER_CONNECTION_MAX <= len(seen) < count
        release.set()
        body = b""
        while body.count(b"HTTP/1.1 200") < count:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk
            body += chunk
        assert len(seen) == count
        positions = [body.index(b"\r\n\r\n/%d" % n) for n in (0, 1, count // 2, count - 1)]
        assert positions == sorted(positions)
        writer.close()
    finally:
        await server.close(grace_ms=10)


# -- streamed answers (settlement statements) ------------------------------------------------


class Streams:
    """A handler answering /stream/<chunks> with that many 64 KiB chunks, streamed; anything
    else with a small body. Records when a stream's generator is closed."""

    def __init__(self) -> None:
        self.produced = 0
        self.closed = asyncio.Event()

    def __call__(self, request):
        if request.path.startswith(b"/stream/"):
            from connectors.http.server import StreamedResponse

            return StreamedResponse(200, self._chunks(int(request.path.rsplit(b"/", 1)[1])),
                                    b"text/plain")
        return Response(200, b'{"after":true}')

    async def _chunks(self, count: int):
        try:
            for index in range(count):
                self.produced += 1
                yield bytes([65 + index % 26]) * 65536
                await asyncio.sleep(0)
        finally:
            self.closed.set()


def dechunk(data: bytes) -> tuple[bytes, bytes]:
    """(the chunked body, what follows it)."""
    body = b""
    while True:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return body, rest[2:]
        body += rest[:size]
        data = rest[size + 2:]


async def test_a_streamed_answer_is_chunked_and_the_next_answer_follows_it():
    streams = Streams()
    server = HttpServer(streams, protocol_error)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /stream/20 HTTP/1.1\r\nhost: x\r\n\r\n"
                     b"GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while b'{"after":true}' not in data:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 5)
            assert chunk, data[-200:]
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head and b"content-length" not in head
        body, following = dechunk(rest)
        assert len(body) == 20 * 65536
        assert following.startswith(b"HTTP/1.1 200 OK")  # the pipelined answer, in order
        writer.close()
    finally:
        await server.close(grace_ms=100)


async def test_a_stream_waits_for_a_slow_reader_and_stops_when_it_leaves():
    streams = Streams()
    server = HttpServer(streams, protocol_error)
    await server.start("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /stream/100000 HTTP/1.1\r\nhost: x\r\n\r\n")
        await asyncio.wait_for(reader.read(1024), 5)
        await asyncio.sleep(0.3)  # read nothing more: the socket buffers fill up
        produced = streams.produced
        assert produced < 1_000, produced  # it waited for room, not for the end
        await asyncio.sleep(0.3)
        assert streams.produced - produced <= 2  # still waiting
        writer.close()
        await asyncio.wait_for(streams.closed.wait(), 5)  # the generator was closed
        assert streams.produced < 1_000
    finally:
        await server.close(grace_ms=100)
