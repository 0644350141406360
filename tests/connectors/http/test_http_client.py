"""The keep-alive pipelining client pool: bounded connections and in-flight requests, every
waiter served, answers matched to requests in order, failures raised, never hidden."""

from __future__ import annotations

import asyncio

import pytest

from connectors.http.client import ConnectionPool, HttpClientError
from connectors.http.server import HttpServer, Response


@pytest.fixture
async def echo_port():
    async def slow(request):
        await asyncio.sleep(0.001)
        return Response(200, request.path)

    never = asyncio.Event()

    async def hang(request):
        await never.wait()  # answers only when the test ends
        return Response(200, b"late")

    def handler(request):
        if request.path.endswith(b"/hang"):
            return hang(request)
        return slow(request) if request.path.endswith(b"/slow") else Response(200, request.path)

    server = HttpServer(handler)
    await server.start("127.0.0.1", 0)
    yield server.port
    never.set()
    await server.close(grace_ms=100)


async def test_many_more_callers_than_room_are_all_answered_in_their_own_order(echo_port):
    pool = ConnectionPool(f"http://127.0.0.1:{echo_port}", connections_max=2,
                          in_flight_per_connection_max=4)
    try:
        paths = [b"/%d/slow" % n if n % 3 == 0 else b"/%d" % n for n in range(600)]
        answers = await asyncio.gather(*(pool.request(b"GET", path) for path in paths))
        assert [answer.body for answer in answers] == paths
        assert len(pool.connections) <= 2
        assert all(c.in_flight == 0 for c in pool.connections)
        assert not pool.waiters
    finally:
        await pool.close()


async def test_waiters_are_woken_by_answers_to_try_send_too(echo_port):
    pool = ConnectionPool(f"http://127.0.0.1:{echo_port}", connections_max=1,
                          in_flight_per_connection_max=2)
    try:
        await pool.request(b"GET", b"/warm")  # one open connection
        futures = [pool.try_send(b"GET", b"/t%d/slow" % n, None) for n in range(2)]
        assert all(f is not None for f in futures)
        assert pool.try_send(b"GET", b"/full", None) is None  # no room now
        waiting = asyncio.ensure_future(pool.request(b"GET", b"/after"))
        await asyncio.sleep(0)
        assert len(pool.waiters) == 1
        assert (await asyncio.wait_for(waiting, 5)).body == b"/after"
        assert [(await f).body for f in futures] == [b"/t0/slow", b"/t1/slow"]
    finally:
        await pool.close()


async def test_refused_connection_raises():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}", timeout_ms=1_000)
    try:
        with pytest.raises(HttpClientError, match="cannot connect"):
            await pool.request(b"GET", b"/")
    finally:
        await pool.close()


async def test_closing_the_pool_fails_its_waiters(echo_port):
    pool = ConnectionPool(f"http://127.0.0.1:{echo_port}", connections_max=1,
                          in_flight_per_connection_max=1)
    first = asyncio.ensure_future(pool.request(b"GET", b"/x/hang"))
    while not pool.connections or pool.connections[0].in_flight == 0:
        await asyncio.sleep(0.001)  # the first request is on the wire, unanswered
    second = asyncio.ensure_future(pool.request(b"GET", b"/y"))
    while not pool.waiters:
        await asyncio.sleep(0.001)  # the second waits for room
    await pool.close()
    for task in (first, second):
        with pytest.raises(HttpClientError):
            await task


@pytest.mark.parametrize("url", ["ftp://x/", "http://", "http://h/?q=1", "http://u:p@h/"])
def test_bad_urls_are_refused(url):
    from connectors.http.client import Origin

    with pytest.raises(ValueError):
        Origin(url)


async def test_a_request_without_an_answer_times_out(echo_port):
    pool = ConnectionPool(f"http://127.0.0.1:{echo_port}", timeout_ms=300)
    try:
        with pytest.raises(HttpClientError, match="timed out"):
            await pool.request(b"GET", b"/never/hang")
        assert (await pool.request(b"GET", b"/fine")).body == b"/fine"  # a new connection
    finally:
        await pool.close()
