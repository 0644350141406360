"""A certificate authority made in a test (the `cryptography` package), for the TLS and
mutual-TLS tests of every connector: `Pki(directory, names)`."""

from __future__ import annotations

import ssl


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer_name, issuer_key, *, ca: bool = False):
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """A CA made in the test (the `cryptography` package) and certificates it signed: one
    per name (each also valid as a server certificate for 127.0.0.1), and `foreign`, a
    certificate of another CA. `path(name)` is a PEM with the certificate and its key;
    `der_sha256(name)` what the credential store registers."""

    def __init__(self, directory, names: tuple[str, ...]) -> None:
        import hashlib

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        def write(file_name: str, certificate=None, key=None) -> str:
            data = b""
            if certificate is not None:
                data += certificate.public_bytes(serialization.Encoding.PEM)
            if key is not None:
                data += key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption())
            path = directory / file_name
            path.write_bytes(data)
            return str(path)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _certificate("Ponte Test CA", ca_key, _name("Ponte Test CA"), ca_key, ca=True)
        self.ca = write("ca.pem", ca)
        self._paths: dict[str, str] = {}
        self._hashes: dict[str, bytes] = {}
        other_key = ec.generate_private_key(ec.SECP256R1())
        other = _certificate("Other CA", other_key, _name("Other CA"), other_key, ca=True)
        for name in (*names, "foreign"):
            key = ec.generate_private_key(ec.SECP256R1())
            if name == "foreign":
                certificate = _certificate(name, key, other.subject, other_key)
            else:
                certificate = _certificate(name, key, ca.subject, ca_key)
            self._paths[name] = write(f"{name}.pem", certificate, key)
            self._hashes[name] = hashlib.sha256(
                certificate.public_bytes(serialization.Encoding.DER)).digest()

    def path(self, name: str) -> str:
        return self._paths[name]

    def der_sha256(self, name: str) -> bytes:
        return self._hashes[name]

    def client(self, name: str | None) -> ssl.SSLContext:
        """A client context trusting the CA, presenting `name`'s certificate (if any)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if name is not None:
            context.load_cert_chain(self.path(name))
        return context

    def server(self, name: str) -> ssl.SSLContext:
        """A server context for `name` that requires a client certificate of the CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        context.load_cert_chain(self.path(name))
        context.verify_mode = ssl.CERT_REQUIRED
        return context
