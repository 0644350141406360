"""Encoders and decoders for the core's messages, each built once.

- Journal: `encode_event(now_ns, event)` / `decode_event(data)`: msgpack of a
  `JournalEntry` (array-like: [now_ns, [tag, ...fields]]). The shell journals every input
  event this way before releasing any command that reveals an outcome; recovery decodes
  them in order into `SwitchCore.replay`. Decoding checks every type constraint, so only
  events that satisfy them may be journaled: build them from decoded wire messages, or
  pass a hand-built one through `validated(event)` first.
- Wire: `decode_inbound_msgpack` / `decode_inbound_json` turn a participant's frame or body
  into an `Inbound` message, checking every constraint in the types (a bad one raises
  `msgspec.ValidationError` / `DecodeError`: answer VALIDATION_ERROR / MALFORMED_SYNTAX and
  change nothing). `encode_outbound_msgpack` / `encode_outbound_json` for the way back.

Decoding never reads beyond the bytes given; frame length limits belong to the connector.
This module must never import anything that does I/O.
"""

from __future__ import annotations

import msgspec

from ledger.journal_limits import RECORD_PAYLOAD_BYTES_MAX
from switch.core.messages import Event, Inbound, Outbound


class JournalEntry(msgspec.Struct, frozen=True, kw_only=True, array_like=True, gc=False):
    now_ns: int
    event: Event


_msgpack_encoder = msgspec.msgpack.Encoder()
_json_encoder = msgspec.json.Encoder()
_journal_decoder = msgspec.msgpack.Decoder(JournalEntry)
_tick_decoder = msgspec.msgpack.Decoder(list[Event])
_inbound_msgpack_decoder = msgspec.msgpack.Decoder(Inbound)
_inbound_json_decoder = msgspec.json.Decoder(Inbound)
_outbound_msgpack_decoder = msgspec.msgpack.Decoder(Outbound)
_outbound_json_decoder = msgspec.json.Decoder(Outbound)


def encode_event(now_ns: int, event: Event) -> bytes:
    return _msgpack_encoder.encode(JournalEntry(now_ns=now_ns, event=event))


def decode_event(data: bytes) -> tuple[int, Event]:
    entry = _journal_decoder.decode(data)
    return entry.now_ns, entry.event


def validated(event: Event) -> Event:
    """`event` checked against every constraint in its types, by a journal round trip.

    Events must be decodable from the journal or recovery stops. Events built from decoded
    wire messages (`decode_inbound_*`) are; an event built by hand (an admin CLI, a test)
    must pass through here before it is journaled and stepped. Raises
    `msgspec.ValidationError` (answer VALIDATION_ERROR; change nothing)."""
    return _journal_decoder.decode(_msgpack_encoder.encode(JournalEntry(now_ns=0, event=event))).event


def decode_events(records):
    """(now_ns, event) for each encoded journal record, in order (feed to `replay`)."""
    decode = _journal_decoder.decode
    for data in records:
        entry = decode(data)
        yield entry.now_ns, entry.event


def encode_tick(events: list[Event]) -> list[bytes]:
    """Journal record payloads for one sequencer tick's events (all decided at one
    `now_ns`, which the record header carries): one payload, unless the events do not fit
    a record, then as few as fit, in order."""
    payload = _msgpack_encoder.encode(events)
    if len(payload) <= RECORD_PAYLOAD_BYTES_MAX or len(events) == 1:
        assert len(payload) <= RECORD_PAYLOAD_BYTES_MAX, "one event larger than a record"
        return [payload]
    half = len(events) // 2
    return encode_tick(events[:half]) + encode_tick(events[half:])


def decode_tick(payload: bytes) -> list[Event]:
    """The events of one tick record, every constraint checked (raises
    `msgspec.ValidationError` for a record that breaks one: recovery stops there)."""
    return _tick_decoder.decode(payload)


def decode_inbound_msgpack(data: bytes) -> Inbound:
    return _inbound_msgpack_decoder.decode(data)


def decode_inbound_json(data: bytes) -> Inbound:
    return _inbound_json_decoder.decode(data)


def encode_outbound_msgpack(message: Outbound) -> bytes:
    return _msgpack_encoder.encode(message)


def encode_outbound_json(message: Outbound) -> bytes:
    return _json_encoder.encode(message)


def decode_outbound_msgpack(data: bytes) -> Outbound:
    """For participants (the SDK, the simulators) reading what the switch sent."""
    return _outbound_msgpack_decoder.decode(data)


def decode_outbound_json(data: bytes) -> Outbound:
    return _outbound_json_decoder.decode(data)


def encode_inbound_msgpack(message: Inbound) -> bytes:
    """For participants (the SDK, the simulators) writing to the switch."""
    return _msgpack_encoder.encode(message)
