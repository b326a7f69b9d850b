"""Self-signed certificates for the tests' local HTTPS servers, and for signing."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


def self_signed_certificate(
    key: CertificateIssuerPrivateKeyTypes, name: str, *, tls: bool
) -> x509.Certificate:
    """A self-signed CA certificate of ``key`` named ``name``; with ``tls``, one a server at
    localhost or 127.0.0.1 can present (it is then also the CA bundle that trusts it)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Wide: OpenSSL checks a TLS certificate against the real clock, Vigil a signing
        # certificate against the test's (possibly travelled) one.
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if tls:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A new key and its self-signed TLS certificate for localhost and 127.0.0.1, written to
    ``folder`` as ``cert.pem`` and ``key.pem``; returns their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(
        self_signed_certificate(key, "localhost", tls=True).public_bytes(serialization.Encoding.PEM)
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
