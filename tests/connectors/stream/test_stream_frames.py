"""Frame splitting and encoding: lengths checked before reading, exact round trips."""

from __future__ import annotations

import msgspec
import pytest

from connectors.stream import limits
from connectors.stream.protocol import (
    FrameReader,
    Hello,
    Push,
    Request,
    StreamError,
    append_frame,
    client_frame_decoder,
    frame,
    push_frame,
    server_frame_decoder,
)
from switch.core.messages import Party, TransferOutcome, TransferRequest
from switch.core.results import Result, TransferState


def test_reader_splits_frames_fed_byte_by_byte():
    data = frame(Hello(version=1, api_key="k" * 20)) + frame(Hello(version=1))
    reader = FrameReader()
    frames = []
    for byte in data:
        reader.feed(bytes([byte]))
        while (found := reader.next_frame()) is not None:
            frames.append(client_frame_decoder.decode(found))
    assert frames == [Hello(version=1, api_key="k" * 20), Hello(version=1)]
    assert reader.buffered_bytes == 0


def test_oversized_length_is_refused_before_the_body_arrives():
    reader = FrameReader()
    # Only the 4-byte header: the reader must answer without waiting for the body.
    reader.feed((limits.FRAME_BYTES_MAX + 1).to_bytes(4, "big"))
    assert reader.next_frame() is StreamError.FRAME_TOO_LARGE


def test_largest_allowed_length_waits_for_its_body():
    reader = FrameReader()
    reader.feed(limits.FRAME_BYTES_MAX.to_bytes(4, "big") + b"\x80")
    assert reader.next_frame() is None


def test_empty_frame_is_refused():
    reader = FrameReader()
    reader.feed(b"\0\0\0\0")
    assert reader.next_frame() is StreamError.FRAME_EMPTY


def test_request_round_trip_keeps_every_field():
    request = Request(corr=7, message=TransferRequest(
        transfer_id="t-1", payee=Party(alias_type="MSISDN", alias_value="+254700000001"),
        amount_minor=1234, currency="KES", expires_at_ns=1_700_000_000 * 10**9,
        payer_user_ref="u1"))
    reader = FrameReader()
    reader.feed(frame(request))
    assert client_frame_decoder.decode(reader.next_frame()) == request


def test_append_frame_matches_frame_and_several_concatenate():
    push = Push(message=TransferOutcome(payer_participant_id=1, transfer_id="t",
                                        state=TransferState.COMMITTED, result=Result.OK))
    buffer = bytearray()
    append_frame(buffer, push)
    append_frame(buffer, push)
    assert bytes(buffer) == frame(push) * 2
    reader = FrameReader()
    reader.feed(bytes(buffer))
    assert server_frame_decoder.decode(reader.next_frame()) == push
    assert server_frame_decoder.decode(reader.next_frame()) == push
    assert reader.next_frame() is None


def test_push_frame_is_a_push_and_reuses_the_last_encoding():
    outcome = TransferOutcome(payer_participant_id=1, transfer_id="t",
                              state=TransferState.COMMITTED, result=Result.OK)
    data = push_frame(outcome)
    assert data == frame(Push(message=outcome))
    assert push_frame(outcome) is data  # the payee's copy: no second encoding
    other = TransferOutcome(payer_participant_id=1, transfer_id="u",
                            state=TransferState.REJECTED, result=Result.PAYEE_REJECTED)
    assert server_frame_decoder.decode(push_frame(other)[4:]) == Push(message=other)


def test_constraint_violations_are_typed_decode_errors():
    bad = msgspec.msgpack.encode({"type": "request", "corr": 1, "message": {
        "type": "transfer", "transfer_id": "t", "payee": None, "amount_minor": 0,
        "currency": "KES", "expires_at_ns": 1}})
    with pytest.raises(msgspec.ValidationError):
        client_frame_decoder.decode(bad)


def test_a_frame_that_cannot_be_encoded_leaves_the_buffer_unchanged():
    """All or nothing: a failed encode must not leave a length prefix (an empty frame)."""
    from connectors.stream.protocol import FrameError

    buffer = bytearray(frame(Hello(version=1)))
    before = bytes(buffer)
    bad = TransferRequest(transfer_id="t-1", payee=Party(alias_type="MSISDN",
                                                         alias_value="+254700000001"),
                          amount_minor=2**64, currency="KES", expires_at_ns=1)
    with pytest.raises(FrameError):
        append_frame(buffer, Request(corr=1, message=bad))
    assert bytes(buffer) == before


def test_the_pre_handshake_bound_is_the_largest_hello():
    """HELLO_FRAME_BYTES_MAX is derived from Hello's own bounds: the largest Hello the type
    admits (every string at its maximum of 4-byte characters, the largest version) fits
    exactly, and it is far below FRAME_BYTES_MAX."""
    largest = Hello(version=2**64 - 1, api_key="\U0001f512" * limits.HELLO_API_KEY_LENGTH_MAX,
                    client_name="\U0001f512" * limits.HELLO_CLIENT_NAME_LENGTH_MAX)
    assert client_frame_decoder.decode(frame(largest)[4:]) == largest  # the type admits it
    assert len(frame(largest)) - 4 == limits.HELLO_FRAME_BYTES_MAX
    too_long = msgspec.msgpack.encode({"type": "hello", "version": 1,
                                       "api_key": "k" * (limits.HELLO_API_KEY_LENGTH_MAX + 1)})
    with pytest.raises(msgspec.ValidationError):
        client_frame_decoder.decode(too_long)
    assert limits.HELLO_FRAME_BYTES_MAX * 100 < limits.FRAME_BYTES_MAX
