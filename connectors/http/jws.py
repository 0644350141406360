"""Detached JWS body signatures (RFC 7515 appendix F), the FSPIOP convention.

A participant may sign each request body; the switch signs each callback body with its own
key so participants can verify what it sends. The payload is the exact body bytes, detached:
the signature travels in a header and the body stays plain JSON.

Two header forms, both carrying the same thing:
- `X-Jws-Signature: <b64url(protected header)>..<b64url(signature)>` (compact, detached);
- `FSPIOP-Signature: {"protectedHeader": "<b64url>", "signature": "<b64url>"}` (Mojaloop).

Signing input = ASCII(b64url(protected header) + "." + b64url(body)). Algorithms: ES256
(P-256, raw r||s signature as JWS requires), RS256, PS256 (RSA, 2048 bits at least), EdDSA
(Ed25519). The algorithm must match the registered key's type; "none", `crit` and unencoded
payloads (RFC 7797) are refused.

The body alone is not enough to sign a request: a payee's answer `{"accepted":true}` is the
same bytes for every transfer. A participant's request signature therefore binds the
request line in its protected header, as Mojaloop's JWS does: `FSPIOP-URI` (the path and
query exactly as sent) and `FSPIOP-HTTP-Method`; `verify_request` checks both against the
request it came with. The switch's callbacks are signed over the body (which names the
transfer) and bind nothing else.

Two kinds of refusal: `JwsMalformed` (the header cannot be read: not ASCII, not base64url,
not JSON; the HTTP connector answers 400) and any other `JwsError` (it reads, but does not
verify or does not fit the request: 401). This module must never accept a signature it did
not check and never log a key or a signature.
"""

from __future__ import annotations

import base64
import binascii
import re

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from connectors.http import limits

COMPACT_HEADER = b"x-jws-signature"
FSPIOP_HEADER = b"fspiop-signature"
RSA_KEY_BITS_MIN = 2048
_PROTECTED_CACHED_MAX = 256  # distinct protected headers remembered (one or two per key)


class JwsError(Exception):
    """The signature is missing, malformed, of the wrong algorithm or does not verify."""


class JwsMalformed(JwsError):
    """The signature header cannot even be read (not ASCII, not base64url, not JSON)."""


class ProtectedHeader(msgspec.Struct, frozen=True, kw_only=True):
    alg: str
    kid: str = ""
    b64: bool = True
    crit: list[str] | None = None
    # The request the signature is for (Mojaloop's names); empty on the switch's callbacks.
    uri: str = msgspec.field(default="", name="FSPIOP-URI")
    http_method: str = msgspec.field(default="", name="FSPIOP-HTTP-Method")


class FspiopSignature(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    protectedHeader: str  # noqa: N815 - the Mojaloop field name
    signature: str


_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_protected_decoder = msgspec.json.Decoder(ProtectedHeader)
_fspiop_decoder = msgspec.json.Decoder(FspiopSignature)
_encode = msgspec.json.Encoder().encode


def b64url_encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: bytes | str) -> bytes:
    """Strict: only the base64url alphabet, no padding (the decoder would skip anything
    else, so a header with stray bytes would read as some other value)."""
    if isinstance(data, str):
        if not data.isascii():
            raise JwsMalformed("base64url must be ASCII")
        data = data.encode("ascii")
    if _B64URL.fullmatch(data) is None:
        raise JwsMalformed("not base64url (A-Z a-z 0-9 - _ only, no padding)")
    try:
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError) as error:
        raise JwsMalformed(f"bad base64url: {error}") from None


def _algorithms_for(key) -> frozenset[str]:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise JwsError("only P-256 elliptic-curve keys are accepted (ES256)")
        return frozenset({"ES256"})
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < RSA_KEY_BITS_MIN:
            raise JwsError(f"RSA keys need at least {RSA_KEY_BITS_MIN} bits")
        return frozenset({"RS256", "PS256"})
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return frozenset({"EdDSA"})
    raise JwsError("unsupported key type (use P-256, RSA or Ed25519)")


class VerifyKey:
    """A participant's registered public key and the algorithms it may sign with."""

    __slots__ = ("key", "algorithms")

    def __init__(self, public_key_pem: bytes) -> None:
        if len(public_key_pem) > limits.PUBLIC_KEY_PEM_BYTES_MAX:
            raise JwsError("public key PEM too large")
        try:
            self.key = serialization.load_pem_public_key(public_key_pem)
        except (ValueError, TypeError) as error:
            raise JwsError(f"not a PEM public key: {error}") from None
        self.algorithms = _algorithms_for(self.key)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> None:
        if alg not in self.algorithms:
            raise JwsError(f"algorithm {alg!r} does not match the registered key")
        key = self.key
        try:
            if alg == "ES256":
                if len(signature) != 64:
                    raise JwsError("ES256 signature must be 64 bytes (r||s)")
                der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                                           int.from_bytes(signature[32:], "big"))
                key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            elif alg == "RS256":
                key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "PS256":
                key.verify(signature, signing_input,
                           padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                       salt_length=hashes.SHA256.digest_size),
                           hashes.SHA256())
            else:
                assert alg == "EdDSA"
                key.verify(signature, signing_input)
        except InvalidSignature:
            raise JwsError("signature does not verify") from None


class Signer:
    """Signs bodies with a private key; `algorithm` must suit the key (ES256 for P-256,
    RS256 or PS256 for RSA, EdDSA for Ed25519)."""

    def __init__(self, private_key_pem: bytes, algorithm: str, kid: str = "",
                 password: bytes | None = None) -> None:
        self.key = serialization.load_pem_private_key(private_key_pem, password=password)
        if algorithm not in _algorithms_for(self.key):
            raise JwsError(f"algorithm {algorithm!r} does not suit this key")
        self.algorithm = algorithm
        self.kid = kid
        self.protected = self._protected_for(b"", b"")

    def _protected_for(self, method: bytes, uri: bytes) -> bytes:
        header = {"alg": self.algorithm}
        if self.kid:
            header["kid"] = self.kid
        if uri:
            header["FSPIOP-URI"] = uri.decode("ascii")
        if method:
            header["FSPIOP-HTTP-Method"] = method.decode("ascii")
        return b64url_encode(_encode(header))

    def public_key_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def _sign(self, signing_input: bytes) -> bytes:
        key = self.key
        alg = self.algorithm
        if alg == "ES256":
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if alg == "RS256":
            return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if alg == "PS256":
            return key.sign(signing_input,
                            padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                        salt_length=hashes.SHA256.digest_size),
                            hashes.SHA256())
        return key.sign(signing_input)

    def sign_input(self, signing_input: bytes) -> bytes:
        """The raw signature of a JWS signing input (for dialects that build their own
        protected header, such as FSPIOP's, which binds more request headers)."""
        return self._sign(signing_input)

    def sign(self, body: bytes, *, method: bytes = b"", uri: bytes = b"") -> bytes:
        """The compact detached signature of `body`: b"<protected>..<signature>". A
        participant's request must name its `method` and `uri` (path and query as sent):
        the protected header binds them, so the signature fits that request only."""
        protected = self._protected_for(method, uri) if method or uri else self.protected
        signing_input = protected + b"." + b64url_encode(body)
        return protected + b".." + b64url_encode(self._sign(signing_input))

    def sign_fspiop(self, body: bytes, *, method: bytes = b"", uri: bytes = b"") -> bytes:
        """The same signature as the FSPIOP-Signature JSON header value."""
        protected = self._protected_for(method, uri) if method or uri else self.protected
        signing_input = protected + b"." + b64url_encode(body)
        return _encode(FspiopSignature(protectedHeader=protected.decode(),
                                       signature=b64url_encode(self._sign(signing_input)).decode()))


_protected_cache: dict[bytes, ProtectedHeader] = {}


def _protected(encoded: bytes) -> ProtectedHeader:
    header = _protected_cache.get(encoded)
    if header is not None:
        return header
    try:
        header = _protected_decoder.decode(b64url_decode(encoded))
    except msgspec.DecodeError as error:
        raise JwsMalformed(f"bad protected header: {error}") from None
    except RecursionError:
        raise JwsMalformed("bad protected header: nested too deep") from None
    if header.crit is not None:
        raise JwsError("critical header parameters are not supported")
    if not header.b64:
        raise JwsError("unencoded payloads (b64=false) are not supported")
    if header.alg not in ("ES256", "RS256", "PS256", "EdDSA"):
        raise JwsError(f"algorithm {header.alg!r} is not accepted")
    if len(_protected_cache) < _PROTECTED_CACHED_MAX:
        _protected_cache[encoded] = header
    return header


def signature_from_headers(headers: dict[bytes, bytes]) -> tuple[bytes, bytes] | None:
    """(protected header b64url, signature b64url) from either header form, or None."""
    value = headers.get(COMPACT_HEADER)
    if value is not None:
        if len(value) > limits.JWS_HEADER_BYTES_MAX:
            raise JwsMalformed("signature header too large")
        if not value.isascii():
            raise JwsMalformed("X-Jws-Signature must be ASCII")
        protected, dot, rest = value.partition(b".")
        payload, dot2, signature = rest.partition(b".")
        if not dot or not dot2 or payload:
            raise JwsMalformed("X-Jws-Signature must be detached compact JWS: "
                               "header..signature")
        return protected.strip(), signature.strip()
    value = headers.get(FSPIOP_HEADER)
    if value is not None:
        if len(value) > limits.JWS_HEADER_BYTES_MAX:
            raise JwsMalformed("signature header too large")
        if not value.isascii():
            raise JwsMalformed("FSPIOP-Signature must be ASCII")
        try:
            parsed = _fspiop_decoder.decode(value)
        except msgspec.DecodeError as error:
            raise JwsMalformed(f"bad FSPIOP-Signature: {error}") from None
        except RecursionError:
            raise JwsMalformed("bad FSPIOP-Signature: nested too deep") from None
        # JSON escapes (\u00e9) decode to non-ASCII text even in an ASCII header.
        if not parsed.protectedHeader.isascii() or not parsed.signature.isascii():
            raise JwsMalformed("FSPIOP-Signature fields must be base64url")
        return parsed.protectedHeader.encode("ascii"), parsed.signature.encode("ascii")
    return None


def verify_detached(protected: bytes, signature: bytes, body: bytes, key: VerifyKey) -> str:
    """Check a detached signature over `body`; returns the protected header's kid.
    Raises JwsError if anything is wrong."""
    header = _protected(protected)
    key.verify(header.alg, protected + b"." + b64url_encode(body), b64url_decode(signature))
    return header.kid


def verify_request(protected: bytes, signature: bytes, body: bytes, key: VerifyKey, *,
                   method: bytes, uri: bytes) -> str:
    """Check a participant's request signature: over `body`, and bound to this request's
    `method` and `uri` (path and query as sent) by the protected header. Returns the kid;
    raises JwsError (JwsMalformed for an unreadable header)."""
    header = _protected(protected)
    if not header.uri or not header.http_method:
        raise JwsError("the protected header must bind FSPIOP-URI and FSPIOP-HTTP-Method")
    if header.http_method != method.decode("ascii", "replace"):
        raise JwsError("the signature is for another HTTP method")
    if header.uri != uri.decode("ascii", "replace"):
        raise JwsError("the signature is for another URI")
    key.verify(header.alg, protected + b"." + b64url_encode(body), b64url_decode(signature))
    return header.kid


def verify_headers(headers: dict[bytes, bytes], body: bytes, key: VerifyKey) -> bool:
    """True if a signature header is present and verifies, False if none is present;
    raises JwsError if one is present and does not verify."""
    found = signature_from_headers(headers)
    if found is None:
        return False
    verify_detached(found[0], found[1], body, key)
    return True
