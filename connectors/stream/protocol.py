"""The stream protocol's frames: what a participant and the switch say on a persistent TCP
(optionally TLS) connection. docs/stream-protocol.md is the reference for implementers.

A frame is a u32 big-endian length followed by that many bytes of msgpack encoding one
tagged msgspec Struct (tag field "type"). The client speaks `ClientFrame`, the server
`ServerFrame`; each side builds one decoder per union, once.

    client -> server                      server -> client
    Hello(version, api_key, ...)          Welcome(participant_id, window_max, ...)
    Request(corr, message: Inbound)       Reply(corr, message: Outbound)
    RegisterAliases(corr, aliases)        AliasesReply(corr, answer)
                                          Push(message: Outbound)
                                          ProtocolErrorFrame(error, detail)  then close

`corr` is the client's correlation id: a Reply carries the corr of the request it answers
(resolve and status answers, and refusals at the door such as SERVER_BUSY). Everything the
switch decides later — credit requests, transfer outcomes, request-to-pay notices — comes
as a Push and is matched by its own ids ((payer_participant_id, transfer_id), ...).

Only bytes and types here: no sockets. Never renumber a `StreamError`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Union

import msgspec
from msgspec import Meta

from connectors.stream import limits
from switch.core.messages import AliasRegistration, BulkAliasAnswer, ErrorAnswer, Inbound, Outbound
from switch.core.results import Result

_FRAME = dict(frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True)

Corr = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class StreamError(IntEnum):
    """Why the server closed a connection, declared in the order the checks run."""

    FRAME_TOO_LARGE = 1  # the announced length is past FRAME_BYTES_MAX (checked first)
    FRAME_EMPTY = 2  # a zero length
    MALFORMED_FRAME = 3  # not msgpack, or not a map with a known shape
    UNKNOWN_MESSAGE = 4  # a "type" this side does not speak
    HANDSHAKE_REQUIRED = 5  # anything before Hello
    HANDSHAKE_TIMEOUT = 6  # no Hello within HANDSHAKE_TIMEOUT_S
    VERSION_UNSUPPORTED = 7
    AUTHENTICATION_FAILED = 8  # unknown API key, or key and certificate disagree
    HANDSHAKE_REPEATED = 9
    TOO_MANY_CONNECTIONS = 10
    SLOW_CONSUMER = 11  # the client does not read what it is sent
    SERVER_SHUTTING_DOWN = 12
    TOO_MANY_CALLS = 13  # reserved: at the calls bound the server stops reading instead
    SESSION_REVOKED = 14  # the key it was opened with was revoked, or the participant
    # suspended (the detail says which): do not reconnect with the same credentials
    MTLS_REQUIRED = 15  # the participant's policy requires signed requests; on the stream
    # that is a registered client certificate AND its API key (checked at Hello)


# -- client -> server ------------------------------------------------------------------


class Hello(msgspec.Struct, tag="hello", **_FRAME):
    """First frame. `api_key` may be empty on a TLS connection whose client certificate
    is registered for the participant."""

    version: int
    api_key: Annotated[str, Meta(max_length=limits.HELLO_API_KEY_LENGTH_MAX)] = ""
    client_name: Annotated[str, Meta(max_length=limits.HELLO_CLIENT_NAME_LENGTH_MAX)] = ""


class Request(msgspec.Struct, tag="request", **_FRAME):
    corr: Corr
    message: Inbound


class RegisterAliases(msgspec.Struct, tag="register_aliases", **_FRAME):
    corr: Corr
    aliases: Annotated[list[AliasRegistration], Meta(max_length=limits.ALIASES_PER_FRAME_MAX)]


ClientFrame = Union[Hello, Request, RegisterAliases]


# -- server -> client ------------------------------------------------------------------


class Welcome(msgspec.Struct, tag="welcome", **_FRAME):
    participant_id: int
    window_max: int
    frame_bytes_max: int
    version: int = limits.PROTOCOL_VERSION


class Reply(msgspec.Struct, tag="reply", **_FRAME, gc=False):
    corr: int
    message: Outbound


class Push(msgspec.Struct, tag="push", **_FRAME, gc=False):
    message: Outbound


class AliasesReply(msgspec.Struct, tag="aliases_reply", **_FRAME):
    corr: int
    answer: BulkAliasAnswer


class ProtocolErrorFrame(msgspec.Struct, tag="protocol_error", **_FRAME):
    """The last frame before the server closes the connection."""

    error: StreamError
    detail: str = ""


ServerFrame = Union[Welcome, Reply, Push, AliasesReply, ProtocolErrorFrame]


INBOUND_TAGS = frozenset(member.__struct_config__.tag for member in Inbound.__args__)
CLIENT_TAGS = frozenset(member.__struct_config__.tag for member in ClientFrame.__args__)

encoder = msgspec.msgpack.Encoder()
client_frame_decoder = msgspec.msgpack.Decoder(ClientFrame)
server_frame_decoder = msgspec.msgpack.Decoder(ServerFrame)
any_decoder = msgspec.msgpack.Decoder()
_inbound_decoder = msgspec.msgpack.Decoder(Inbound)
# What msgspec raises for a value it cannot write (an int past 2**64, a float for a str).
_ENCODE_ERRORS = (OverflowError, TypeError, ValueError, msgspec.EncodeError)


class FrameError(ValueError):
    """A message that cannot go out as a frame: it cannot be encoded, breaks a constraint
    of its type, or is larger than FRAME_BYTES_MAX. Nothing was written."""


def frame(message) -> bytes:
    """One complete frame (length prefix + msgpack)."""
    body = encoder.encode(message)
    return len(body).to_bytes(4, "big") + body


def append_frame(buffer: bytearray, message) -> None:
    """Append one frame to `buffer` without an intermediate copy. All or nothing: on a
    FrameError `buffer` is as it was (a half-written frame would be an empty or truncated
    one on the wire, which the other side must treat as a protocol error)."""
    start = len(buffer)
    buffer.extend(b"\0\0\0\0")
    try:
        encoder.encode_into(message, buffer, start + 4)
    except _ENCODE_ERRORS as error:
        del buffer[start:]
        raise FrameError(str(error)) from None
    length = len(buffer) - start - 4
    if length > limits.FRAME_BYTES_MAX:
        del buffer[start:]
        raise FrameError(f"frame of {length} bytes is larger than {limits.FRAME_BYTES_MAX}")
    buffer[start:start + 4] = length.to_bytes(4, "big")


def check_inbound(message) -> None:
    """Raise FrameError unless `message` encodes and decodes as the `Inbound` type the
    server reads: the same constraints (amounts, id grammar, lengths) a sender would
    otherwise learn of from a VALIDATION_ERROR reply, or never, for a value that cannot
    be encoded at all."""
    try:
        body = encoder.encode(message)
    except _ENCODE_ERRORS as error:
        raise FrameError(str(error)) from None
    try:
        _inbound_decoder.decode(body)
    except msgspec.ValidationError as error:
        raise FrameError(str(error)[:limits.DETAIL_LENGTH_MAX]) from None


# A Push frame is its fixed map header, "type": "push", "message": and then the message:
# writing the prefix by hand saves building a Push Struct per delivery, and the same
# outcome sent to the payer and then the payee is encoded once.
_PUSH_PREFIX = encoder.encode(Push(message=ErrorAnswer(result=Result.OK)))[:-len(
    encoder.encode(ErrorAnswer(result=Result.OK)))]
_last_pushed: list = [None, b""]


def push_frame(message) -> bytes:
    """The complete Push frame for an Outbound message (length prefix included)."""
    last = _last_pushed
    if last[0] is message:
        return last[1]
    body = encoder.encode(message)
    length = len(_PUSH_PREFIX) + len(body)
    assert length <= limits.FRAME_BYTES_MAX, "frame larger than the protocol allows"
    data = length.to_bytes(4, "big") + _PUSH_PREFIX + body
    last[0] = message
    last[1] = data
    return data


class FrameReader:
    """Splits a byte stream into frames, checking each length BEFORE reading the frame.

    `feed(data)` buffers; `next_frame()` returns the next complete frame's bytes, None when
    more bytes are needed, or a `StreamError` for a length the protocol forbids (the caller
    closes the connection: nothing after it can be trusted)."""

    __slots__ = ("_buffer", "_offset", "frame_bytes_max")

    def __init__(self, frame_bytes_max: int = limits.FRAME_BYTES_MAX) -> None:
        self._buffer = bytearray()
        self._offset = 0
        self.frame_bytes_max = frame_bytes_max

    def feed(self, data: bytes) -> None:
        if self._offset and self._offset == len(self._buffer):
            self._buffer.clear()
            self._offset = 0
        self._buffer.extend(data)

    def next_frame(self) -> bytearray | StreamError | None:
        buffer = self._buffer
        offset = self._offset
        available = len(buffer) - offset
        if available < 4:
            self._compact()
            return None
        length = int.from_bytes(buffer[offset:offset + 4], "big")
        if length > self.frame_bytes_max:
            return StreamError.FRAME_TOO_LARGE
        if length == 0:
            return StreamError.FRAME_EMPTY
        if available < 4 + length:
            self._compact()
            return None
        end = offset + 4 + length
        data = buffer[offset + 4:end]  # one copy; msgspec decodes a bytearray as is
        self._offset = end
        return data

    def _compact(self) -> None:
        # Drop consumed bytes once they dominate, so the buffer stays O(one frame).
        if self._offset and self._offset * 2 >= len(self._buffer):
            del self._buffer[:self._offset]
            self._offset = 0

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer) - self._offset
