"""Mojaloop's JWS on FSPIOP requests: verify a participant's `FSPIOP-Signature`, sign what
the hub originates.

The signature is RS256 (or any algorithm `connectors.http.jws.VerifyKey` admits for the
registered key) over `b64url(protected header) . b64url(body)`. The protected header binds
the request: `FSPIOP-URI` (path as sent), `FSPIOP-HTTP-Method`, `FSPIOP-Source`, and, when
the request carries them, `FSPIOP-Destination` and `Date` — checked against the request's
own headers exactly as the SDK's JwsValidator does. Forwarded requests keep their original
signature; the hub signs only what it writes itself, with its key and its own FSP id as
`FSPIOP-Source`. This module must never accept a signature it did not check, and never log
a key or a signature.
"""

from __future__ import annotations

import msgspec

from connectors.http.jws import JwsError, JwsMalformed, Signer, VerifyKey, b64url_decode, \
    b64url_encode
from connectors.http import limits as http_limits

ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


class FspiopProtected(msgspec.Struct, frozen=True, kw_only=True):
    alg: str
    uri: str = msgspec.field(default="", name="FSPIOP-URI")
    http_method: str = msgspec.field(default="", name="FSPIOP-HTTP-Method")
    source: str = msgspec.field(default="", name="FSPIOP-Source")
    destination: str = msgspec.field(default="", name="FSPIOP-Destination")
    date: str = msgspec.field(default="", name="Date")
    b64: bool = True
    crit: list[str] | None = None


class _SignatureHeader(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    protectedHeader: str  # noqa: N815 - Mojaloop's names
    signature: str


_protected_decoder = msgspec.json.Decoder(FspiopProtected)
_header_decoder = msgspec.json.Decoder(_SignatureHeader)
_encode = msgspec.json.Encoder().encode


def verify(headers: dict[bytes, bytes], body: bytes, key: VerifyKey, *, method: bytes,
           uri: bytes) -> None:
    """Check the request's FSPIOP-Signature; raises JwsMalformed (unreadable) or JwsError."""
    value = headers.get(b"fspiop-signature")
    if value is None:
        raise JwsError("FSPIOP-Signature is required")
    if len(value) > http_limits.JWS_HEADER_BYTES_MAX or not value.isascii():
        raise JwsMalformed("FSPIOP-Signature too large or not ASCII")
    try:
        parsed = _header_decoder.decode(value)
        protected = _protected_decoder.decode(b64url_decode(parsed.protectedHeader))
    except (msgspec.DecodeError, RecursionError) as error:
        raise JwsMalformed(f"bad FSPIOP-Signature: {error}") from None
    if protected.crit is not None or not protected.b64:
        raise JwsError("crit and unencoded payloads are not supported")
    if protected.alg not in ALGORITHMS:
        raise JwsError(f"algorithm {protected.alg!r} is not accepted")

    def header(name: bytes) -> str:
        return headers.get(name, b"").decode("latin-1")

    if protected.http_method != method.decode("ascii", "replace"):
        raise JwsError("FSPIOP-HTTP-Method does not match the request")
    if protected.uri != uri.decode("ascii", "replace"):
        raise JwsError("FSPIOP-URI does not match the request")
    if not protected.source or protected.source != header(b"fspiop-source"):
        raise JwsError("FSPIOP-Source does not match the protected header")
    if protected.destination != header(b"fspiop-destination"):
        raise JwsError("FSPIOP-Destination does not match the protected header")
    if protected.date and protected.date != header(b"date"):
        raise JwsError("Date does not match the protected header")
    for name, bound in ((b"fspiop-uri", protected.uri),
                        (b"fspiop-http-method", protected.http_method)):
        if name in headers and header(name) != bound:
            raise JwsError(f"{name.decode()} does not match the protected header")
    signing_input = parsed.protectedHeader.encode("ascii") + b"." + b64url_encode(body)
    key.verify(protected.alg, signing_input, b64url_decode(parsed.signature))


def sign(signer: Signer, body: bytes, *, method: str, uri: str, source: str,
         destination: str, date: str) -> bytes:
    """The FSPIOP-Signature header value for a request the hub writes (the SDK's shape)."""
    protected: dict[str, str] = {"alg": signer.algorithm, "FSPIOP-URI": uri,
                                 "FSPIOP-HTTP-Method": method, "FSPIOP-Source": source}
    if destination:
        protected["FSPIOP-Destination"] = destination
    if date:
        protected["Date"] = date
    encoded = b64url_encode(_encode(protected))
    signature = signer.sign_input(encoded + b"." + b64url_encode(body))
    return _encode(_SignatureHeader(protectedHeader=encoded.decode("ascii"),
                                    signature=b64url_encode(signature).decode("ascii")))


__all__ = ["JwsError", "JwsMalformed", "Signer", "VerifyKey", "sign", "verify"]
