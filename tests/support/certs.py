"""A throw-away test CA, and server certificates it issues for the fake upstreams' host names:
one for a given list of names, and one per name a client asks for (SNI), so that any host can be
served."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class UpstreamPKI:
    ca_pem: Path  # trust this to accept the fake upstream's own certificate
    cert_pem: Path  # server certificate + key for the fake upstream
    key_pem: Path
    ca_key_pem: Path  # the CA's key, to issue a certificate per server name
    spki_hashes: tuple[str, ...]  # for Chromium's --ignore-certificate-errors-spki-list


def spki_hash(cert: x509.Certificate) -> str:
    der = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def make_pki(directory: Path, hosts: list[str]) -> UpstreamPKI:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shopguard test upstream CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key, cert = _leaf(ca, ca_key, hosts)
    directory.mkdir(parents=True, exist_ok=True)
    ca_pem = directory / "test-ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem = directory / "upstream-cert.pem"
    cert_pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_pem = directory / "upstream-key.pem"
    key_pem.write_bytes(_key_pem(key))
    ca_key_pem = directory / "test-ca-key.pem"
    ca_key_pem.write_bytes(_key_pem(ca_key))
    ca_key_pem.chmod(0o600)
    return UpstreamPKI(ca_pem, cert_pem, key_pem, ca_key_pem, (spki_hash(ca), spki_hash(cert)))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _leaf(
    ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, hosts: list[str]
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = datetime.datetime.now(datetime.UTC)
    ca_name = ca.subject
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def server_context(pki: UpstreamPKI) -> ssl.SSLContext:
    """A TLS server context presenting `pki`'s certificate, or, for a server name (SNI) it does
    not cover, a certificate for that name issued on the spot by the test CA (kept per name)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_pem, pki.key_pem)
    default = x509.load_pem_x509_certificate(pki.cert_pem.read_bytes())
    covered = set(
        default.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    )
    ca = x509.load_pem_x509_certificate(pki.ca_pem.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key_pem.read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    issued: dict[str, ssl.SSLContext] = {}
    lock = threading.Lock()

    def for_name(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: ssl.SSLContext) -> None:
        if not name or name.lower() in covered:
            return
        name = name.lower()
        with lock:
            if name not in issued:
                key, cert = _leaf(ca, ca_key, [name])
                with tempfile.TemporaryDirectory() as scratch:
                    chain, key_file = Path(scratch, "cert.pem"), Path(scratch, "key.pem")
                    chain.write_bytes(
                        cert.public_bytes(serialization.Encoding.PEM)
                        + ca.public_bytes(serialization.Encoding.PEM)
                    )
                    key_file.write_bytes(_key_pem(key))
                    issued[name] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    issued[name].load_cert_chain(chain, key_file)
            sock.context = issued[name]

    context.sni_callback = for_name
    return context
