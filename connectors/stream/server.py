"""The stream connector's server side: one `asyncio.Protocol` per participant connection,
translating frames to gateway calls and gateway deliveries to frames.

Per connection: the first frame must be a Hello that authenticates (API key, or a TLS
client certificate registered for the participant; both, for a participant whose security
policy requires signed requests — the stream has no per-request signature, so the second
factor is the certificate); then Request frames go to
`gateway.submit` (answers come later as Push frames) or, for resolve and status, to the
gateway's awaited calls (answered with a Reply to the request's corr). Frame lengths are
checked before the frame is read. At most `window_max` submitted requests may wait to be
sequenced: at the bound the connection stops reading its socket until the sequencer has
taken half of them (TCP does the rest). Everything written during one loop tick goes out in
one `transport.write`. A malformed or oversized frame, an unknown message or a failed
handshake gets a ProtocolErrorFrame and the connection is closed; no other connection
notices.

It must never decide anything (the core does), never trust a participant id from a frame,
and never let one connection's misbehaviour block the loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

import msgspec

from connectors.stream import limits
from connectors.stream.protocol import (
    CLIENT_TAGS,
    INBOUND_TAGS,
    AliasesReply,
    FrameReader,
    Hello,
    ProtocolErrorFrame,
    RegisterAliases,
    Reply,
    Request,
    StreamError,
    Welcome,
    any_decoder,
    append_frame,
    push_frame,
    client_frame_decoder,
)
from switch.core.messages import ErrorAnswer, ResolveRequest, StatusQuery, refused_for
from switch.core.results import Result

log = logging.getLogger("ponte.connectors.stream")

# msgspec guards its recursion with Python's recursion limit: a frame nested deeper (a
# 1 MiB "nesting bomb" is a million levels) stops the decoder after about a thousand levels
# with RecursionError, which is client input like any other malformed frame: a typed
# MALFORMED_FRAME, never a traceback. No message of the protocol nests more than 5 deep.
NESTING_DETAIL = "nested deeper than the decoder allows"

_OK = Result.OK


def server_ssl_context(cert_path: str, key_path: str, client_ca_path: str = "") -> ssl.SSLContext:
    """TLS 1.2+ server context; with a client CA, client certificates are required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    if client_ca_path:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca_path)
    return context


class StreamConnection(asyncio.Protocol):
    session = True  # a live session: revocation and suspension close it (Gateway.close_sessions)

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.gateway = server.gateway
        self.transport: asyncio.Transport | None = None
        self.participant_id: int | None = None
        # The hash of the API key the Hello authenticated with (None: certificate only),
        # so revoking that key closes this session (Gateway.close_sessions).
        self.key_hash: bytes | None = None
        self._certificate_participant: int | None = None
        # Until the Hello is read, no frame may be larger than the largest Hello.
        self._reader = FrameReader(limits.HELLO_FRAME_BYTES_MAX)
        self._address = ""  # the remote host, once counted in server.per_address
        self._out = bytearray()
        self._flush_scheduled = False
        self._window = 0
        self._window_max = server.window_max
        self.window_peak = 0  # the most requests ever waiting to be sequenced (tests, ops)
        self._resume_at = int(server.window_max * limits.WINDOW_RESUME_FRACTION)
        self._paused_window = False
        self._paused_write = False
        self._paused_calls = False  # awaited calls at a bound: read no more until answers
        self._reading_paused = False
        self._closed = False
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._calls: set[asyncio.Task] = set()
        # Status queries and resolves awaited now, each under its own bound (limits.py).
        self._status_queries = 0
        self._resolves = 0
        self.status_queries_peak = 0  # the most ever awaited at once (tests, ops)
        self.paused_for_calls = 0  # times reading stopped at a call bound (tests, ops)
        self.peer = ""

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        server = self.server
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if len(server.connections) >= limits.CONNECTIONS_MAX or not server.accepting:
            self._fail(StreamError.SERVER_SHUTTING_DOWN if not server.accepting
                       else StreamError.TOO_MANY_CONNECTIONS)
            return
        address = str(peer[0]) if peer else "?"
        if server.per_address.get(address, 0) >= server.connections_per_address_max:
            self._fail(StreamError.TOO_MANY_CONNECTIONS, "too many connections from this "
                                                         "address")
            return
        server.per_address[address] = server.per_address.get(address, 0) + 1
        self._address = address
        server.connections.add(self)
        transport.set_write_buffer_limits(limits.WRITE_BUFFER_HIGH_BYTES,
                                          limits.WRITE_BUFFER_LOW_BYTES)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self._certificate_participant = self.gateway.authenticate_certificate(der)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(server.handshake_timeout_s,
                                                self._handshake_expired)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._reader.feed(data)
        self._process()

    def connection_lost(self, exc) -> None:
        self._closed = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        if self.participant_id is not None:
            self.gateway.detach(self.participant_id, self)
            count = self.server.per_participant.get(self.participant_id, 1) - 1
            if count:
                self.server.per_participant[self.participant_id] = count
            else:
                self.server.per_participant.pop(self.participant_id, None)
        self.server.connections.discard(self)
        if self._address:
            per_address = self.server.per_address
            count = per_address.get(self._address, 1) - 1
            if count:
                per_address[self._address] = count
            else:
                per_address.pop(self._address, None)
            self._address = ""
        for task in self._calls:
            task.cancel()

    def pause_writing(self) -> None:
        # The participant is not reading: stop taking its requests until it catches up.
        self._paused_write = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused_write = False
        self._update_reading()
        self._process()

    # -- frames in ---------------------------------------------------------------------

    def _process(self) -> None:
        reader = self._reader
        handle = self._handle
        while not (self._closed or self._paused_window or self._paused_write
                   or self._paused_calls):
            data = reader.next_frame()
            if data is None:
                return
            if type(data) is StreamError:
                self._fail(data)
                return
            self.server.frames_in += 1
            handle(data)

    def _handle(self, data) -> None:
        try:
            frame = client_frame_decoder.decode(data)
        except msgspec.ValidationError as error:
            self._invalid(data, error)
            return
        except msgspec.DecodeError:
            self._fail(StreamError.MALFORMED_FRAME, "not msgpack")
            return
        except RecursionError:
            self._fail(StreamError.MALFORMED_FRAME, NESTING_DETAIL)
            return
        frame_type = type(frame)
        participant_id = self.participant_id
        if participant_id is None:
            if frame_type is not Hello:
                self._fail(StreamError.HANDSHAKE_REQUIRED)
                return
            self._hello(frame)
            return
        if frame_type is Request:
            message = frame.message
            message_type = type(message)
            if message_type is StatusQuery or message_type is ResolveRequest:
                self._call(frame.corr, message)
                return
            result = self.gateway.submit(participant_id, message, self)
            if result is _OK:
                self._window += 1
                if self._window > self.window_peak:
                    self.window_peak = self._window
                if self._window >= self._window_max:
                    self._paused_window = True
                    self._update_reading()
            else:
                self._reply(frame.corr, refused_for(message, participant_id, result))
            return
        if frame_type is RegisterAliases:
            self._register(frame)
            return
        self._fail(StreamError.HANDSHAKE_REPEATED)

    def _invalid(self, data, error: msgspec.ValidationError) -> None:
        """A frame that is msgpack but breaks the schema. A request with a known message
        type whose fields break a constraint is answered VALIDATION_ERROR on its corr and
        the connection stays; an unknown frame or message type is UNKNOWN_MESSAGE; anything
        else MALFORMED_FRAME. The last two close the connection."""
        detail = str(error)[:limits.DETAIL_LENGTH_MAX]
        try:
            raw = any_decoder.decode(data)
        except msgspec.DecodeError:
            self._fail(StreamError.MALFORMED_FRAME, detail)
            return
        except RecursionError:
            self._fail(StreamError.MALFORMED_FRAME, NESTING_DETAIL)
            return
        if not isinstance(raw, dict):
            self._fail(StreamError.MALFORMED_FRAME, detail)
            return
        tag = raw.get("type")
        if tag not in CLIENT_TAGS:
            self._fail(StreamError.UNKNOWN_MESSAGE, f"frame type {str(tag)[:40]!r}")
            return
        if tag == "request" and self.participant_id is not None:
            message = raw.get("message")
            corr = raw.get("corr")
            if isinstance(message, dict) and type(corr) is int and 0 <= corr < 2**63:
                if message.get("type") not in INBOUND_TAGS:
                    self._fail(StreamError.UNKNOWN_MESSAGE,
                               f"message type {str(message.get('type'))[:40]!r}")
                    return
                self._reply(corr, ErrorAnswer(result=Result.VALIDATION_ERROR, detail=detail))
                return
        self._fail(StreamError.MALFORMED_FRAME, detail)

    def _hello(self, hello: Hello) -> None:
        if hello.version != limits.PROTOCOL_VERSION:
            self._fail(StreamError.VERSION_UNSUPPORTED, f"server speaks {limits.PROTOCOL_VERSION}")
            return
        participant_id = None
        if hello.api_key:
            participant_id = self.gateway.authenticate(hello.api_key)
            if participant_id is None or (
                self._certificate_participant is not None
                and self._certificate_participant != participant_id
            ):
                self._fail(StreamError.AUTHENTICATION_FAILED)
                return
            self.key_hash = self.gateway.session_key_hash(hello.api_key)
        else:
            participant_id = self._certificate_participant
        if participant_id is None:
            self._fail(StreamError.AUTHENTICATION_FAILED)
            return
        server = self.server
        if (participant_id in server.signature_required
                or participant_id in self.gateway.signature_policy) and not (
                hello.api_key and self._certificate_participant == participant_id):
            self._fail(StreamError.MTLS_REQUIRED, "this participant must sign its requests: "
                       "on the stream, connect with its client certificate and API key")
            return
        if server.per_participant.get(participant_id, 0) >= limits.CONNECTIONS_PER_PARTICIPANT_MAX:
            self._fail(StreamError.TOO_MANY_CONNECTIONS)
            return
        server.per_participant[participant_id] = server.per_participant.get(participant_id, 0) + 1
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self.participant_id = participant_id
        self._reader.frame_bytes_max = limits.FRAME_BYTES_MAX
        self._write(Welcome(participant_id=participant_id, window_max=self._window_max,
                            frame_bytes_max=limits.FRAME_BYTES_MAX))
        # Attach after the Welcome so held messages (re-sent credit requests) follow it.
        self.gateway.attach(participant_id, self)

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.participant_id is None and not self._closed:
            self._fail(StreamError.HANDSHAKE_TIMEOUT)

    # -- awaited calls -------------------------------------------------------------------

    # Back-pressure on awaited calls: at a bound (status queries, resolves, calls of any
    # kind) the connection is not read until answers free room — TCP pushes back on the
    # sender, and a flood of queries costs the switch no more than the bounded number it
    # is answering (reading and refusing each excess frame would cost it a decode and a
    # reply apiece, taken from every other participant's payments).

    def _calls_full(self) -> bool:
        return (self._status_queries >= limits.STATUS_QUERIES_IN_FLIGHT_MAX
                or self._resolves >= limits.RESOLVES_IN_FLIGHT_MAX
                or len(self._calls) >= limits.CALLS_IN_FLIGHT_MAX)

    def _calls_resumable(self) -> bool:
        """Half of every bound free again (not one: reading resumes for a batch of frames,
        not for each answer)."""
        return (self._status_queries <= limits.STATUS_QUERIES_IN_FLIGHT_MAX // 2
                and self._resolves <= limits.RESOLVES_IN_FLIGHT_MAX // 2
                and len(self._calls) <= limits.CALLS_IN_FLIGHT_MAX // 2)

    def _call(self, corr: int, message) -> None:
        is_status = type(message) is StatusQuery
        if is_status:
            self._status_queries += 1
            if self._status_queries > self.status_queries_peak:
                self.status_queries_peak = self._status_queries
        else:
            self._resolves += 1
        gateway = self.gateway
        participant_id = self.participant_id

        async def call() -> None:
            try:
                if is_status:
                    answer = await gateway.status(participant_id, message)
                else:
                    answer = await gateway.resolve(participant_id, message)
            finally:
                if is_status:
                    self._status_queries -= 1
                else:
                    self._resolves -= 1
            if not self._closed:
                self._reply(corr, answer)

        self._track(asyncio.ensure_future(call()))

    def _register(self, frame: RegisterAliases) -> None:
        participant_id = self.participant_id

        async def call() -> None:
            answer = await self.gateway.register_aliases(participant_id, frame.aliases)
            if not self._closed:
                self._write(AliasesReply(corr=frame.corr, answer=answer))

        self._track(asyncio.ensure_future(call()))

    def _track(self, task: asyncio.Task) -> None:
        self._calls.add(task)
        task.add_done_callback(self._call_done)
        if not self._paused_calls and self._calls_full():
            self._paused_calls = True
            self.paused_for_calls += 1
            self._update_reading()

    def _call_done(self, task: asyncio.Task) -> None:
        self._calls.discard(task)
        if self._paused_calls and self._calls_resumable():
            self._paused_calls = False
            self._update_reading()
            self._process()
        if not task.cancelled() and task.exception() is not None:
            log.error("stream_call_failed participant_id=%s error=%r", self.participant_id,
                      task.exception())

    # -- gateway callbacks: Origin and Sink ---------------------------------------------

    def sequenced(self, count: int) -> None:
        self._window -= count
        assert self._window >= 0
        if self._paused_window and self._window <= self._resume_at:
            self._paused_window = False
            self._update_reading()
            self._process()

    def deliver(self, message) -> None:
        if self._closed:
            return
        self._out += push_frame(message)
        self.server.frames_out += 1

    def flush(self) -> None:
        if self._closed or not self._out:
            return
        transport = self.transport
        server = self.server
        server.writes += 1
        server.bytes_out += len(self._out)
        transport.write(self._out)
        self._out = bytearray()
        if transport.get_write_buffer_size() > limits.SLOW_CONSUMER_BYTES_MAX:
            self._fail(StreamError.SLOW_CONSUMER)

    # -- frames out ----------------------------------------------------------------------

    def _reply(self, corr: int, message) -> None:
        self._write(Reply(corr=corr, message=message))

    def _write(self, frame) -> None:
        append_frame(self._out, frame)
        self.server.frames_out += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        paused = self._paused_window or self._paused_write or self._paused_calls
        if paused and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not paused and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _fail(self, error: StreamError, detail: str = "") -> None:
        """Send the typed protocol error and close. Nothing else is read."""
        if self._closed:
            return
        self.server.protocol_errors[error.name] = self.server.protocol_errors.get(error.name, 0) + 1
        log.info("stream_protocol_error participant_id=%s peer=%s error=%s",
                 self.participant_id, self.peer, error.name)
        transport = self.transport
        self._closed = True
        try:
            if self._out:
                transport.write(self._out)
                self._out = bytearray()
            buffer = bytearray()
            append_frame(buffer, ProtocolErrorFrame(error=error, detail=detail))
            transport.write(buffer)
        finally:
            transport.close()  # flushes what was written, then closes
        if self.participant_id is not None:
            self.gateway.detach(self.participant_id, self)

    def close(self, reason: str) -> None:
        """The gateway's Sink.close: the switch ended this session (its key revoked, its
        participant suspended). The peer gets SESSION_REVOKED with `reason`."""
        self._fail(StreamError.SESSION_REVOKED, reason[:limits.DETAIL_LENGTH_MAX])

    def shut(self, error: StreamError) -> None:
        """Close for a reason of the server's own (shutting down)."""
        self._fail(error)


class StreamServer:
    def __init__(self, gateway, *, window_max: int = limits.WINDOW_MAX_DEFAULT,
                 connections_per_address_max: int = limits.CONNECTIONS_PER_ADDRESS_MAX_DEFAULT,
                 signature_required: frozenset[int] = frozenset()) -> None:
        assert 1 <= window_max <= limits.WINDOW_MAX_CEILING
        assert 1 <= connections_per_address_max <= limits.CONNECTIONS_MAX
        self.gateway = gateway
        # Participants whose policy requires signed requests: mTLS + key at Hello.
        self.signature_required = signature_required
        self.window_max = window_max
        self.connections_per_address_max = connections_per_address_max
        self.connections: set[StreamConnection] = set()
        self.per_participant: dict[int, int] = {}
        self.per_address: dict[str, int] = {}  # remote host -> open connections
        self.accepting = True
        self.handshake_timeout_s = limits.HANDSHAKE_TIMEOUT_S
        self.frames_in = 0
        self.frames_out = 0
        self.writes = 0
        self.bytes_out = 0
        self.protocol_errors: dict[str, int] = {}
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: StreamConnection(self), host, port,
                                                ssl=ssl_context, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop_accepting(self) -> None:
        """No new connections; existing ones keep working (they deliver answers)."""
        self.accepting = False
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        self.stop_accepting()
        for connection in list(self.connections):
            connection.shut(StreamError.SERVER_SHUTTING_DOWN)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass

    def register_metrics(self, registry) -> None:
        registry.gauge("ponte_stream_connections", "Open stream connections.",
                       lambda: len(self.connections))
        registry.gauge("ponte_stream_frames_total", "Stream frames, by direction.",
                       lambda: {("in",): self.frames_in, ("out",): self.frames_out},
                       ("direction",), kind="counter")
        registry.gauge("ponte_stream_writes_total", "Socket writes (one per loop tick and "
                       "connection at most).", lambda: self.writes, kind="counter")
        registry.gauge("ponte_stream_bytes_total", "Bytes written to stream connections.",
                       lambda: {("out",): self.bytes_out}, ("direction",), kind="counter")
        registry.gauge("ponte_stream_protocol_errors_total",
                       "Connections closed for a protocol error, by error.",
                       lambda: {(name,): count for name, count in self.protocol_errors.items()},
                       ("error",), kind="counter")


async def start_stream_server(gateway, config, registry=None,
                              signature_required: frozenset[int] = frozenset()) -> StreamServer:
    """Start the listener described by a ServerConfig (host, port, optional TLS), holding
    `signature_required` participants to mTLS + key (their security policy)."""
    context = None
    if config.stream_tls_cert:
        context = server_ssl_context(config.stream_tls_cert, config.stream_tls_key,
                                     config.stream_tls_client_ca)
    server = StreamServer(gateway,
                          connections_per_address_max=config.stream_connections_per_address_max,
                          signature_required=signature_required)
    await server.start(config.stream_host, config.stream_port, context)
    if registry is not None:
        server.register_metrics(registry)
    return server
