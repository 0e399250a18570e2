"""A constrained CA in a real browser: Chromium trusting it through its NSS certificate store
(every check applied, unlike --ignore-certificate-errors-spki-list) loads the shop through
`shopguard run`, and refuses a certificate from the same key for any other domain."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from mitmproxy import certs

from tests.support.browser import chromium_path, dump_dom, nss_home, required
from tests.support.certs import UpstreamPKI
from tests.support.market import API, BEACON, CDN, PIXEL, SHOP, FakeMarket
from tests.support.proxy import SHOPGUARD, Proxy, isolated_env, start_proxy

pytestmark = pytest.mark.e2e

chromium_path()
required("certutil", "libnss3-tools")

MARKER = "served by the loopback test server"


@pytest.fixture(scope="module")
def proxy(module_home: Path, market: FakeMarket, pki: UpstreamPKI) -> Iterator[Proxy]:
    made = subprocess.run(
        [SHOPGUARD, "ca", "--constrained"],
        env=isolated_env(module_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    running = start_proxy(module_home, routes=market.routes, upstream_ca=pki.ca_pem)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser_home(proxy: Proxy, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose NSS database trusts shopguard's CA, as `shopguard ca` tells users to."""
    return nss_home(tmp_path_factory.mktemp("browser-home"), proxy.ca, "shopguard")


def test_chromium_trusting_the_constrained_ca_loads_the_shop_through_the_proxy(
    proxy: Proxy, market: FakeMarket, browser_home: Path, tmp_path: Path
) -> None:
    cert = x509.load_pem_x509_certificate(proxy.ca.read_bytes())
    name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert str(name).startswith("shopguard constrained CA ")  # the CA `shopguard run` used
    assert cert.extensions.get_extension_for_class(x509.NameConstraints).critical
    market.recorder.clear()
    dom = dump_dom(
        f"https://{SHOP}/",
        tmp_path / "profile",
        f"--proxy-server=http://127.0.0.1:{proxy.port}",
        home=browser_home,
    )
    assert "shopguard fake shop" in dom or "order sent" in dom, dom[:2000]
    # every host of the page was certified by the constrained CA and accepted: the upstream's
    # certificate names an out-of-scope host too (taobao.com.evil.example), which shopguard's
    # certificates must not copy
    for host, path in ((SHOP, "/"), (CDN, "/alilog/"), (BEACON, "/v.gif"), (PIXEL, "/en_US/")):
        assert market.recorder.find(host, path), host
    assert market.recorder.find(API, "/h5/mtop.trade.order.create/")
    assert proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == BEACON)
    assert not proxy.lines("tls_failed")


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"<p>{MARKER}</p>".encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_leaf(confdir: Path, host: str, directory: Path) -> http.server.ThreadingHTTPServer:
    """A loopback HTTPS server presenting a certificate for `host` made with shopguard's CA key,
    as whoever stole that key would make one (mitmproxy's own certificate maker)."""
    store = certs.CertStore.from_store(confdir, "mitmproxy", 2048)
    leaf = directory / f"{host}.pem"
    leaf.write_bytes(store.get_cert(host, [x509.DNSName(host)]).cert.to_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(leaf, confdir / "mitmproxy-ca.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("host", "accepted"),
    [
        pytest.param(SHOP, True, id="a site's domain"),
        pytest.param("www.bank.example", False, id="another domain"),
        pytest.param("taobao.com.evil.example", False, id="a look-alike"),
    ],
)
def test_chromium_refuses_a_certificate_for_another_domain_from_the_constrained_ca(
    proxy: Proxy, browser_home: Path, tmp_path: Path, host: str, accepted: bool
) -> None:
    server = serve_leaf(proxy.ca.parent, host, tmp_path)
    try:
        port = server.server_address[1]
        dom = dump_dom(
            f"https://{host}:{port}/",
            tmp_path / "profile",
            f"--host-resolver-rules=MAP {host} 127.0.0.1",
            home=browser_home,
            budget_ms=3000,
        )
    finally:
        server.shutdown()
        server.server_close()
    if accepted:
        assert MARKER in dom, dom[:2000]
    else:
        assert MARKER not in dom
        # refused as an invalid certificate (a name outside the constraints), not as one
        # from an unknown authority
        assert "ERR_CERT_INVALID" in dom and "ERR_CERT_AUTHORITY_INVALID" not in dom
