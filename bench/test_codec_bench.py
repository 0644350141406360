"""pytest-benchmark cases for the codecs on the hot path (run: `pytest bench/test_codec_bench.py
--benchmark-only`): msgpack and JSON encode/decode of the core's wire Structs, and whole
stream frames as the SDK writes them and the switch reads them (and back).

Every case decodes what it encoded and checks it equals the original, so a codec that got
faster by getting wrong fails here. Decoders are built once per union, as the connectors
do (`Decoder(Inbound)`, `Decoder(Outbound)`), so the figures include the tag dispatch.
"""

from __future__ import annotations

import msgspec
import pytest

from connectors.stream.protocol import (
    FrameReader,
    Push,
    Request,
    append_frame,
    client_frame_decoder,
    server_frame_decoder,
)
from switch.core.messages import (
    CreditRequest,
    Inbound,
    Outbound,
    Party,
    TransferOutcome,
    TransferRequest,
)
from switch.core.results import Result, TransferState

T0_NS = 1_800_000_000_000_000_000
FRAMES_PER_BATCH = 100  # frames in one read: the switch reads many per loop tick

TRANSFER = TransferRequest(
    transfer_id="bank_a_load0-1234567", payee=Party(alias_type="MSISDN",
                                                    alias_value="+254712345678"),
    amount_minor=125_000, currency="KES", expires_at_ns=T0_NS + 30 * 10**9,
    end_to_end_id="E2E-20261127-000001", purpose="P2P", payer_account_ref="p42",
    payer_user_ref="p42")
CREDIT = CreditRequest(
    payer_participant_id=5, transfer_id="bank_a_load0-1234567", payee_account_ref="p9001",
    amount_minor=125_000, currency="KES", expires_at_ns=T0_NS + 30 * 10**9,
    payee_alias=Party(alias_type="MSISDN", alias_value="+254712345678"),
    end_to_end_id="E2E-20261127-000001", purpose="P2P")
OUTCOME = TransferOutcome(
    payer_participant_id=5, transfer_id="bank_a_load0-1234567", state=TransferState.COMMITTED,
    result=Result.OK, payee_participant_id=3, amount_minor=125_000, fee_minor=0,
    currency="KES", decided_at_ns=T0_NS + 2_000_000)

MESSAGES = {"TransferRequest": (TRANSFER, Inbound), "CreditRequest": (CREDIT, Outbound),
            "TransferOutcome": (OUTCOME, Outbound)}
CODECS = {
    "msgpack": (msgspec.msgpack.Encoder, msgspec.msgpack.Decoder),
    "json": (msgspec.json.Encoder, msgspec.json.Decoder),
}


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("message_name", sorted(MESSAGES))
def test_encode(benchmark, codec, message_name):
    message, union = MESSAGES[message_name]
    encoder_type, decoder_type = CODECS[codec]
    encode = encoder_type().encode
    encoded = benchmark(encode, message)
    assert decoder_type(union).decode(encoded) == message


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("message_name", sorted(MESSAGES))
def test_decode(benchmark, codec, message_name):
    message, union = MESSAGES[message_name]
    encoder_type, decoder_type = CODECS[codec]
    data = encoder_type().encode(message)
    decode = decoder_type(union).decode
    assert benchmark(decode, data) == message


def _frames(messages) -> bytes:
    buffer = bytearray()
    for message in messages:
        append_frame(buffer, message)
    return bytes(buffer)


def _read_all(data: bytes, decoder) -> list:
    reader = FrameReader()
    reader.feed(data)
    decode = decoder.decode
    out = []
    while True:
        frame = reader.next_frame()
        if frame is None:
            return out
        out.append(decode(frame))


REQUESTS = [Request(corr=corr, message=TRANSFER) for corr in range(1, FRAMES_PER_BATCH + 1)]
PUSHES = [Push(message=CREDIT if corr % 2 else OUTCOME) for corr in range(FRAMES_PER_BATCH)]


@pytest.mark.parametrize("direction", ["client_to_switch", "switch_to_client"])
def test_stream_frames_encode(benchmark, direction):
    """Encode FRAMES_PER_BATCH frames into one buffer (one write of one loop tick)."""
    frames = REQUESTS if direction == "client_to_switch" else PUSHES
    decoder = client_frame_decoder if direction == "client_to_switch" else server_frame_decoder
    data = benchmark(_frames, frames)
    assert _read_all(data, decoder) == frames


@pytest.mark.parametrize("direction", ["client_to_switch", "switch_to_client"])
def test_stream_frames_decode(benchmark, direction):
    """Split and decode FRAMES_PER_BATCH frames read in one chunk."""
    frames = REQUESTS if direction == "client_to_switch" else PUSHES
    decoder = client_frame_decoder if direction == "client_to_switch" else server_frame_decoder
    data = _frames(frames)
    assert benchmark(_read_all, data, decoder) == frames
