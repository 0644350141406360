"""The Interledger pieces FSPIOP carries: the ILP payment packet (v1, as Mojaloop's SDK
writes it), conditions and fulfilments.

An FSPIOP `ilpPacket` is base64url of an OER envelope: type 1 (ILP payment), then amount
(UInt64), the payee's ILP address and `data` — the base64url of the JSON transaction object
(transactionId, quoteId, payee, payer, amount, transactionType). The hub reads the packet to
learn the payee's party (the directory routes the transfer by it) and the transactionId.

For payees that do not speak ILP (participants on the stream or HTTP protocol), Ponte
answers the quote on their behalf and produces the fulfilment itself:
`fulfilment = HMAC-SHA256(hub secret, "ponte-ilp-v1|payerFsp|transactionId|amount|currency")`,
`condition = SHA-256(fulfilment)`. The inputs are what the quote, the prepare and the
transfer's outcome all know, so the hub can produce the same fulfilment at commit without
keeping any state. Nothing here does I/O or reads the clock; nothing here logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec

from connectors.fspiop import limits

TYPE_ILP_PAYMENT = 1
_DERIVATION = b"ponte-ilp-v1"


class IlpError(ValueError):
    """The packet cannot be read (not base64url, not an ILP payment, no transaction)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    except (ValueError, UnicodeEncodeError) as error:
        raise IlpError(f"not base64url: {error}") from None


def _var_octets(data: bytes) -> bytes:
    length = len(data)
    if length < 128:
        return bytes([length]) + data
    size = (length.bit_length() + 7) // 8
    return bytes([0x80 | size]) + length.to_bytes(size, "big") + data


def _read_var_octets(buffer: bytes, offset: int) -> tuple[bytes, int]:
    if offset >= len(buffer):
        raise IlpError("truncated packet")
    first = buffer[offset]
    offset += 1
    if first & 0x80:
        size = first & 0x7F
        if not 1 <= size <= 4 or offset + size > len(buffer):
            raise IlpError("bad length prefix")
        length = int.from_bytes(buffer[offset:offset + size], "big")
        offset += size
    else:
        length = first
    end = offset + length
    if end > len(buffer):
        raise IlpError("truncated packet")
    return buffer[offset:end], end


def encode_packet(amount: int, account: str, data: bytes) -> str:
    """An ILP payment packet, base64url (the SDK's `serializeIlpPayment`)."""
    assert 0 <= amount < 1 << 64
    contents = amount.to_bytes(8, "big") + _var_octets(account.encode("ascii")) + \
        _var_octets(data) + b"\x00"
    return b64url(bytes([TYPE_ILP_PAYMENT]) + _var_octets(contents))


def decode_packet(packet: str) -> tuple[int, str, bytes]:
    """(amount, ILP address, data) of an ILP payment packet. Raises IlpError."""
    if not packet or len(packet) > limits.ILP_PACKET_LENGTH_MAX:
        raise IlpError("ilpPacket empty or too long")
    raw = b64url_decode(packet.replace("+", "-").replace("/", "_").rstrip("="))
    if not raw or raw[0] != TYPE_ILP_PAYMENT:
        raise IlpError("not an ILP payment packet")
    contents, _ = _read_var_octets(raw, 1)
    if len(contents) < 8:
        raise IlpError("truncated packet")
    amount = int.from_bytes(contents[:8], "big")
    account, offset = _read_var_octets(contents, 8)
    data, _ = _read_var_octets(contents, offset)
    try:
        return amount, account.decode("ascii"), data
    except UnicodeDecodeError:
        raise IlpError("ILP address is not ASCII") from None


def transaction_of(packet: str) -> dict:
    """The FSPIOP transaction object in a packet's data (base64url JSON). Raises IlpError."""
    _, _, data = decode_packet(packet)
    try:
        decoded = msgspec.json.decode(b64url_decode(data.decode("ascii")))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise IlpError("the packet's data is not a transaction object") from None
    if not isinstance(decoded, dict):
        raise IlpError("the packet's data is not a transaction object")
    return decoded


def transaction_packet(transaction: dict, amount_minor: int, payee_fsp: str,
                       party_type: str, party_identifier: str) -> str:
    """A packet as the SDK writes one for `transaction` (ILP amount in minor units)."""
    address = f"g.{payee_fsp}.{party_type.lower()}.{party_identifier.lower()}"
    data = b64url(msgspec.json.encode(transaction)).encode("ascii")
    return encode_packet(amount_minor, address, data)


def condition_of(fulfilment: str) -> str:
    return b64url(hashlib.sha256(b64url_decode(fulfilment)).digest())


def hub_fulfilment(secret: bytes, payer_fsp: str, transaction_id: str, amount_minor: int,
                   currency: str) -> str:
    """The fulfilment Ponte produces for a payee that does not speak ILP (module docstring)."""
    message = b"|".join((_DERIVATION, payer_fsp.encode(), transaction_id.encode(),
                         str(amount_minor).encode(), currency.encode()))
    return b64url(hmac.new(secret, message, hashlib.sha256).digest())


def body_sha256(body: bytes) -> str:
    """The dialect digest of a request body (TransferRequest.dialect_sha256)."""
    return b64url(hashlib.sha256(body).digest())
