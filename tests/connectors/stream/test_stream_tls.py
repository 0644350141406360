"""The stream connector over TLS with client certificates, against a CA made in the test
(the `cryptography` package): a registered certificate authenticates without an API key;
an unregistered one does not; a key and a certificate of two participants disagree; a
client without a certificate cannot even finish the TLS handshake."""

from __future__ import annotations

import ssl

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pki_helpers import Pki

from connectors.sdk import SdkError
from connectors.sdk.stream_client import StreamClient
from switch.testing import onboard, start_test_server


@pytest.fixture
def pki(tmp_path):
    authority = Pki(tmp_path, ("switch", "bank_a", "bank_b", "stranger"))
    return {
        "ca": authority.ca,
        "server_cert": authority.path("switch"),
        "server_key": authority.path("switch"),  # one PEM holds the certificate and key
        "clients": {name: (authority.path(name), authority.der_sha256(name))
                    for name in ("bank_a", "bank_b", "stranger")},
    }


def _client_context(pki, name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki["ca"])
    if name is not None:
        context.load_cert_chain(pki["clients"][name][0])
    return context


async def test_client_certificates_authenticate(tmp_path, pki):
    server = await start_test_server(
        str(tmp_path / "data"), stream_tls_cert=pki["server_cert"],
        stream_tls_key=pki["server_key"], stream_tls_client_ca=pki["ca"])
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        for name in ("bank_a", "bank_b"):
            await server.credentials.add_certificate(participants[name][0],
                                                     pki["clients"][name][1])
        port = server.stream_port
        # A registered certificate alone is enough.
        client = await StreamClient.connect("127.0.0.1", port, ssl=_client_context(pki, "bank_a"),
                                            reconnect=False)
        assert client.participant_id == participants["bank_a"][0]
        answer = await client.resolve("MSISDN", "+254700000009", "u1")
        assert answer.result.name == "PARTY_NOT_FOUND"  # served over TLS
        await client.close()
        # A certificate with the matching key is fine too.
        client = await StreamClient.connect("127.0.0.1", port, ssl=_client_context(pki, "bank_b"),
                                            api_key=participants["bank_b"][1], reconnect=False)
        assert client.participant_id == participants["bank_b"][0]
        await client.close()
        # bank_a's certificate with bank_b's key: refused.
        with pytest.raises(SdkError, match="AUTHENTICATION_FAILED"):
            await StreamClient.connect("127.0.0.1", port, ssl=_client_context(pki, "bank_a"),
                                       api_key=participants["bank_b"][1], reconnect=False)
        # A certificate the CA signed but no participant registered, and no key: refused.
        with pytest.raises(SdkError, match="AUTHENTICATION_FAILED"):
            await StreamClient.connect("127.0.0.1", port,
                                       ssl=_client_context(pki, "stranger"), reconnect=False)
        # No client certificate at all: the TLS handshake itself fails.
        with pytest.raises((ssl.SSLError, ConnectionError, SdkError, OSError)):
            client = await StreamClient.connect("127.0.0.1", port, ssl=_client_context(pki, None),
                                                api_key=participants["bank_a"][1],
                                                reconnect=False)
            await client.resolve("MSISDN", "+254700000009", "u1")
        assert not server.gateway.attached(participants["bank_a"][0])
    finally:
        await server.stop(drain_s=0)


def _signature_policy(participant_id: int) -> dict:
    """The [http] table of a switch where `participant_id` must sign (JWS required)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"participant_keys": [{"participant_id": participant_id,
                                  "public_key_pem": pem.decode(),
                                  "signature_required": True}]}


async def test_a_signature_policy_holds_on_the_stream_too(tmp_path, pki):
    """A participant whose policy requires signed requests cannot pay unsigned over the
    stream: it must connect with a registered client certificate AND its API key, else the
    Hello is refused with a typed MTLS_REQUIRED. Others are unaffected."""

    # Plain TCP: no certificate is possible, so the key alone is refused.
    plain = await start_test_server(str(tmp_path / "plain"), http=_signature_policy(1))
    try:
        participants = await onboard(plain, ["bank_a", "bank_b"])
        assert participants["bank_a"][0] == 1
        with pytest.raises(SdkError, match="MTLS_REQUIRED"):
            await StreamClient.connect("127.0.0.1", plain.stream_port,
                                       api_key=participants["bank_a"][1], reconnect=False)
        assert plain.stream_server.protocol_errors == {"MTLS_REQUIRED": 1}
        assert not plain.gateway.attached(1)
        client = await StreamClient.connect("127.0.0.1", plain.stream_port,
                                            api_key=participants["bank_b"][1], reconnect=False)
        assert client.participant_id == participants["bank_b"][0]  # no policy: key is fine
        await client.close()
        assert plain.core.transfers_retained == 0
    finally:
        await plain.stop(drain_s=0)

    server = await start_test_server(
        str(tmp_path / "tls"), stream_tls_cert=pki["server_cert"],
        stream_tls_key=pki["server_key"], stream_tls_client_ca=pki["ca"],
        http=_signature_policy(1))
    try:
        participants = await onboard(server, ["bank_a", "bank_b"])
        await server.credentials.add_certificate(1, pki["clients"]["bank_a"][1])
        port = server.stream_port
        # The certificate alone is one factor: refused.
        with pytest.raises(SdkError, match="MTLS_REQUIRED"):
            await StreamClient.connect("127.0.0.1", port, ssl=_client_context(pki, "bank_a"),
                                       reconnect=False)
        # Certificate and key of the participant: accepted.
        client = await StreamClient.connect("127.0.0.1", port, ssl=_client_context(pki, "bank_a"),
                                            api_key=participants["bank_a"][1], reconnect=False)
        assert client.participant_id == 1
        await client.close()
        assert server.stream_server.protocol_errors == {"MTLS_REQUIRED": 1}
    finally:
        await server.stop(drain_s=0)
