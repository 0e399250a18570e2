"""`shopguard run` and its CA: it creates one named after shopguard before mitmproxy starts,
keeps the one a user already trusts, and with a constrained CA issues certificates that a
verifying client (Python's ssl, i.e. OpenSSL) accepts for the sites."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from mitmproxy import certs

from tests.support.certs import UpstreamPKI
from tests.support.market import BEACON, LOOKALIKE, PIXEL, SHOP, FakeMarket
from tests.support.proxy import SHOPGUARD, fetch, isolated_env, start_proxy

pytestmark = pytest.mark.integration


def common_name(pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def confdir(home: Path) -> Path:
    return home / "state" / "shopguard" / "mitmproxy"


def test_run_creates_a_ca_named_after_shopguard(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    proxy = start_proxy(tmp_path, routes=market.routes, upstream_ca=pki.ca_pem)
    try:
        assert common_name(proxy.ca).startswith("shopguard CA ")
        reply = fetch(proxy.port, f"https://{SHOP}/", cafile=proxy.ca)
        assert reply.status == 200 and reply.issuer == common_name(proxy.ca)
    finally:
        proxy.stop()
    assert not (tmp_path / ".mitmproxy").exists()


def test_run_keeps_the_ca_the_user_already_trusts(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    confdir(tmp_path).mkdir(parents=True, mode=0o700)
    certs.CertStore.create_store(confdir(tmp_path), "mitmproxy", 2048)  # an earlier install's
    before = (confdir(tmp_path) / "mitmproxy-ca.pem").read_bytes()
    proxy = start_proxy(tmp_path, routes=market.routes, upstream_ca=pki.ca_pem)
    try:
        reply = fetch(proxy.port, f"https://{SHOP}/", cafile=proxy.ca)
        assert reply.status == 200 and reply.issuer == "mitmproxy"
    finally:
        proxy.stop()
    assert (confdir(tmp_path) / "mitmproxy-ca.pem").read_bytes() == before


def test_a_constrained_ca_certifies_the_sites_a_verifying_client_accepts(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    made = subprocess.run(
        [SHOPGUARD, "ca", "--constrained"],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    proxy = start_proxy(tmp_path, routes=market.routes, upstream_ca=pki.ca_pem)
    try:
        assert common_name(proxy.ca).startswith("shopguard constrained CA ")
        # the upstream's certificate also names LOOKALIKE: shopguard's must not copy it, or
        # OpenSSL refuses the certificate with "permitted subtree violation"
        for url in (f"https://{SHOP}/", f"https://{BEACON}/v.gif", f"https://{PIXEL}/tr"):
            reply = fetch(proxy.port, url, cafile=proxy.ca)
            assert reply.issuer == common_name(proxy.ca), url
        # out of scope, the upstream's own certificate reaches the client, not shopguard's
        with pytest.raises(ssl.SSLCertVerificationError):
            fetch(proxy.port, f"https://{LOOKALIKE}/", cafile=proxy.ca)
    finally:
        proxy.stop()
    assert not proxy.lines("tls_failed")
