"""How a bank proves who it is to the ISO 20022 connector, against a real switch: TLS client
certificates (mTLS, a CA made in the test) mapped to the bank, and detached JWS signatures
over its bodies; and how the switch proves itself to the bank (its client certificate and
its signature on every delivery). A refused body changes nothing."""

from __future__ import annotations

import hashlib
import ssl

import pytest

pytest.importorskip("cryptography")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from connectors.http.client import HttpClientError  # noqa: E402
from connectors.http.jws import Signer, VerifyKey  # noqa: E402
from connectors.iso20022.bank import Bank  # noqa: E402
from switch.core.messages import StatusQuery  # noqa: E402
from switch.core.results import Result  # noqa: E402

from iso_helpers import ALIAS_B, MEMBER_A, MEMBER_B, SWITCH, eventually, sample  # noqa: E402

P2 = "FIToFIPmtStsRpt/TxInfAndSts/"


def _private_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


BANK_A_KEY = _private_pem()
SWITCH_KEY = _private_pem()
OTHER_KEY = _private_pem()
BANK_A_SIGNER = Signer(BANK_A_KEY, "ES256", "bank-a-1")


def pacs008(tx_id: str, amount: str = "5.00", sender: str = MEMBER_A) -> bytes:
    return sample("pacs.008-proxy.xml", TX=tx_id, AMOUNT=amount, PROXY=ALIAS_B,
                  CDTR_AGT=MEMBER_B, A=sender)


async def nothing_written(iso, payer: int, tx_id: str) -> None:
    answer = await iso.server.gateway.status(payer, StatusQuery(payer_participant_id=payer,
                                                                transfer_id=tx_id))
    assert answer.result is Result.TRANSFER_NOT_FOUND
    assert [item for item in iso.b.of("pacs.008.001.08")
            if item.find("FIToFICstmrCdtTrf/CdtTrfTxInf/PmtId/TxId") == tx_id] == []


async def settles(iso, tx_id: str) -> None:
    await eventually(lambda: any(
        item.find(P2 + "OrgnlTxId") == tx_id and item.find(P2 + "TxSts") == "ACSC"
        for item in iso.a.of("pacs.002.001.10")))


# -- mTLS ----------------------------------------------------------------------------------


@pytest.mark.parametrize("iso", [{"tls": True}], indirect=True)
async def test_a_client_certificate_is_the_bank_and_a_wrong_one_is_refused(iso):
    pki = iso.pki
    await iso.server.credentials.add_certificate(1, pki.der_sha256("bank_a"))
    await iso.server.credentials.add_certificate(2, pki.der_sha256("bank_b"))

    async def post(certificate: str | None, body: bytes, api_key: str = ""):
        bank = Bank(MEMBER_A, SWITCH)
        bank.connect(iso.switch_url, api_key, ssl=pki.client(certificate))
        try:
            return await bank.post(body)
        finally:
            await bank.close()

    # Bank A's certificate alone, no API key: the switch knows it is bank A.
    status, answer = await post("bank_a", pacs008("TX-CERT"))
    assert status == 202, answer
    await settles(iso, "TX-CERT")
    # The switch delivered to both banks over HTTPS with its own client certificate, which
    # the banks' endpoints require.
    switch_der = {hashlib.sha256(der).digest() for der in iso.a.certificates + iso.b.certificates}
    assert switch_der == {pki.der_sha256("switch")}

    # Bank B's certificate, a body that says it is bank A: the certificate decides.
    status, answer = await post("bank_b", pacs008("TX-FORGED"))
    assert status == 400 and b"RC01" in answer
    # Bank A's certificate with bank B's API key: the two disagree, refused.
    status, answer = await post("bank_a", pacs008("TX-MIXED"), iso.keys[2])
    assert status == 401, answer
    assert b"VALIDATION_ERROR" in answer
    # A certificate the CA signed but no bank registered, and no key: refused.
    status, answer = await post("stranger", pacs008("TX-STRANGER"))
    assert status == 401, answer
    # A certificate of another CA: the TLS handshake itself fails.
    with pytest.raises((HttpClientError, ssl.SSLError, ConnectionError, OSError)):
        await post("foreign", pacs008("TX-FOREIGN"))
    # No certificate, bank A's API key over HTTPS: still bank A.
    status, answer = await post(None, pacs008("TX-KEY"), iso.keys[1])
    assert status == 202, answer
    await settles(iso, "TX-KEY")
    for tx_id in ("TX-FORGED", "TX-MIXED", "TX-STRANGER", "TX-FOREIGN"):
        await nothing_written(iso, 1, tx_id)
    await nothing_written(iso, 2, "TX-FORGED")
    iso.check_valid()


# -- detached signatures ---------------------------------------------------------------------


SIGNED = {"bank_a": {"public_key_pem": Signer(BANK_A_KEY, "ES256").public_key_pem().decode(),
                     "signature_required": True},
          "signing_key_pem": SWITCH_KEY}


@pytest.mark.parametrize("iso", [SIGNED], indirect=True)
async def test_signed_bodies_are_taken_and_unsigned_or_tampered_ones_change_nothing(iso):
    iso.a.switch_key = VerifyKey(Signer(SWITCH_KEY, "ES256").public_key_pem())
    body = pacs008("TX-SIGNED")
    status, answer = await iso.a.post(body, ((b"x-jws-signature", BANK_A_SIGNER.sign(body)),))
    assert status == 202, answer
    await settles(iso, "TX-SIGNED")

    # Unsigned, though the bank must sign: a typed 401, nothing taken.
    status, answer = await iso.a.post(pacs008("TX-UNSIGNED"))
    assert status == 401 and b"INVALID_SIGNATURE" in answer
    # Signed, then changed on the way (the amount): the signature does not verify.
    signed = pacs008("TX-TAMPERED", "5.00")
    tampered = signed.replace(b">5.00<", b">500.00<")
    assert tampered != signed
    status, answer = await iso.a.post(
        tampered, ((b"x-jws-signature", BANK_A_SIGNER.sign(signed)),))
    assert status == 401 and b"INVALID_SIGNATURE" in answer
    # Signed with a key that is not the bank's.
    other = pacs008("TX-OTHER-KEY")
    status, answer = await iso.a.post(
        other, ((b"x-jws-signature", Signer(OTHER_KEY, "ES256").sign(other)),))
    assert status == 401 and b"INVALID_SIGNATURE" in answer
    # Not a detached compact JWS at all.
    status, answer = await iso.a.post(pacs008("TX-GARBLED"),
                                      ((b"x-jws-signature", b"not-a-signature"),))
    assert status == 400 and b"INVALID_SIGNATURE" in answer
    for tx_id in ("TX-UNSIGNED", "TX-TAMPERED", "TX-OTHER-KEY", "TX-GARBLED"):
        await nothing_written(iso, 1, tx_id)
    assert iso.position(1)["debits_posted"] == 500
    # Bank B registered no key: its bodies need no signature.
    assert iso.connector.inbound.keys.keys() == {1}
    # Everything the switch delivered to bank A carried the switch's valid signature.
    assert iso.a.requests >= 1 and iso.a.of("pacs.002.001.10")
    iso.check_valid()
