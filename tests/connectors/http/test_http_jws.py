"""Detached JWS: every accepted algorithm signs and verifies, in both header forms; a
changed body, a wrong key, a wrong algorithm or a malformed header is refused."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from connectors.http.jws import (
    COMPACT_HEADER,
    FSPIOP_HEADER,
    JwsError,
    Signer,
    VerifyKey,
    b64url_encode,
    verify_headers,
)


def private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


KEYS = {
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "EdDSA": ed25519.Ed25519PrivateKey.generate,
}
BODY = b'{"transfer_id":"t-1","amount_minor":100}'


@pytest.fixture(scope="module", params=sorted(KEYS))
def signer(request) -> Signer:
    return Signer(private_pem(KEYS[request.param]()), request.param, kid="k1")


def test_compact_detached_signature_verifies(signer):
    value = signer.sign(BODY)
    assert b".." in value  # detached: the payload part is empty
    key = VerifyKey(signer.public_key_pem())
    assert verify_headers({COMPACT_HEADER: value}, BODY, key) is True


def test_fspiop_form_verifies(signer):
    value = signer.sign_fspiop(BODY)
    assert set(msgspec.json.decode(value)) == {"protectedHeader", "signature"}
    assert verify_headers({FSPIOP_HEADER: value}, BODY, VerifyKey(signer.public_key_pem()))


def test_changed_body_is_refused(signer):
    value = signer.sign(BODY)
    with pytest.raises(JwsError, match="does not verify"):
        verify_headers({COMPACT_HEADER: value}, BODY.replace(b"100", b"900"),
                       VerifyKey(signer.public_key_pem()))


def test_other_key_of_the_same_type_is_refused(signer):
    other = Signer(private_pem(KEYS[signer.algorithm]()), signer.algorithm)
    with pytest.raises(JwsError):
        verify_headers({COMPACT_HEADER: signer.sign(BODY)}, BODY,
                       VerifyKey(other.public_key_pem()))


def test_no_signature_is_reported_not_accepted(signer):
    assert verify_headers({}, BODY, VerifyKey(signer.public_key_pem())) is False


def test_algorithm_must_match_the_registered_key():
    ec_signer = Signer(private_pem(KEYS["ES256"]()), "ES256")
    ed_key = VerifyKey(Signer(private_pem(KEYS["EdDSA"]()), "EdDSA").public_key_pem())
    with pytest.raises(JwsError, match="does not match"):
        verify_headers({COMPACT_HEADER: ec_signer.sign(BODY)}, BODY, ed_key)


@pytest.mark.parametrize("header", [
    {"alg": "none"},
    {"alg": "HS256"},
    {"alg": "ES256", "crit": ["exp"]},
    {"alg": "ES256", "b64": False},
])
def test_unaccepted_protected_headers_are_refused(header):
    signer = Signer(private_pem(KEYS["ES256"]()), "ES256")
    protected = b64url_encode(msgspec.json.encode(header))
    forged = protected + b".." + signer.sign(BODY).rsplit(b".", 1)[1]
    with pytest.raises(JwsError):
        verify_headers({COMPACT_HEADER: forged}, BODY, VerifyKey(signer.public_key_pem()))


@pytest.mark.parametrize("value", [b"abc", b"a.b.c", b"..", b"!!..!!"])
def test_malformed_compact_values_are_refused(value):
    signer = Signer(private_pem(KEYS["EdDSA"]()), "EdDSA")
    with pytest.raises(JwsError):
        verify_headers({COMPACT_HEADER: value}, BODY, VerifyKey(signer.public_key_pem()))


def test_weak_or_unsupported_keys_are_refused_at_registration():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(JwsError, match="2048"):
        VerifyKey(weak.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(JwsError, match="P-256"):
        VerifyKey(p384.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(JwsError, match="PEM"):
        VerifyKey(b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")


def test_request_signature_binds_method_and_uri(signer):
    from connectors.http.jws import signature_from_headers, verify_request

    key = VerifyKey(signer.public_key_pem())
    value = signer.sign(BODY, method=b"PUT", uri=b"/transfers/1/t-1")
    protected, signature = signature_from_headers({COMPACT_HEADER: value})
    assert verify_request(protected, signature, BODY, key, method=b"PUT",
                          uri=b"/transfers/1/t-1") == "k1"
    for method, uri in ((b"PUT", b"/transfers/1/t-2"), (b"POST", b"/transfers/1/t-1"),
                        (b"PUT", b"/transfers/1/t-1?x=1")):
        with pytest.raises(JwsError, match="another"):
            verify_request(protected, signature, BODY, key, method=method, uri=uri)
    # A signature of the body alone binds nothing: refused for a request.
    protected, signature = signature_from_headers({COMPACT_HEADER: signer.sign(BODY)})
    with pytest.raises(JwsError, match="must bind"):
        verify_request(protected, signature, BODY, key, method=b"PUT", uri=b"/transfers/1/t-1")
    # The FSPIOP form carries the same binding.
    value = signer.sign_fspiop(BODY, method=b"POST", uri=b"/transfers")
    protected, signature = signature_from_headers({FSPIOP_HEADER: value})
    verify_request(protected, signature, BODY, key, method=b"POST", uri=b"/transfers")


@pytest.mark.parametrize("headers", [
    {COMPACT_HEADER: "é..abc".encode()},
    {COMPACT_HEADER: b"eyJhbGciOiJFUzI1NiJ9..ab\xffcd"},
    {COMPACT_HEADER: b"eyJhbGciOiJFUzI1NiJ9..ab+/cd=="},  # base64, not base64url
    {FSPIOP_HEADER: '{"protectedHeader": "é", "signature": "x"}'.encode()},
    {FSPIOP_HEADER: b'{"protectedHeader": "\\u00e9", "signature": "x"}'},
    {FSPIOP_HEADER: b'{"protectedHeader": 1}'},
])
def test_unreadable_signature_headers_are_malformed_not_crashes(headers):
    from connectors.http.jws import JwsMalformed

    signer = Signer(private_pem(KEYS["EdDSA"]()), "EdDSA")
    with pytest.raises(JwsMalformed):
        verify_headers(headers, BODY, VerifyKey(signer.public_key_pem()))
