"""The PAC file `shopguard pac` prints, evaluated by Chromium itself (`--proxy-pac-url`): the
configured sites go through the proxy however their host is written, everything else DIRECT."""

from __future__ import annotations

import base64
import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browser import NO_DNS, chromium_path, dump_dom
from tests.support.certs import UpstreamPKI
from tests.support.market import FakeMarket
from tests.support.proxy import SHOPGUARD, Proxy, isolated_env, start_proxy

pytestmark = pytest.mark.e2e

chromium_path()

# (URL of an image on the page, whether it must go through the proxy)
PROBES = [
    ("http://www.taobao.com/pac/shop", True),
    ("http://h5api.m.taobao.com/pac/api", True),
    ("http://gm.mmstat.com./pac/beacon-dot", True),
    ("http://www.taobao.com./pac/shop-dot", True),
    ("http://WWW.TAOBAO.COM./pac/shop-dot-upper", True),
    # (an ad-pixel host Chromium itself lets through: from 156.0.8078.114 it blocks requests to
    # connect.facebook.net, bat.bing.com and ct.pinterest.com before any proxy sees them)
    ("http://analytics.tiktok.com./pac/pixel-dot", True),
    ("http://www.bank.example/pac/other", False),
    ("http://www.bank.example./pac/other-dot", False),
    ("http://taobao.com.evil.example./pac/lookalike-dot", False),
]


@pytest.fixture(scope="module")
def proxy(module_home: Path, market: FakeMarket, pki: UpstreamPKI) -> Iterator[Proxy]:
    running = start_proxy(module_home, routes=market.routes, upstream_ca=pki.ca_pem)
    yield running
    running.stop()


def page_server(body: bytes) -> http.server.ThreadingHTTPServer:
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_chromium_sends_the_sites_through_the_proxy_trailing_dot_or_not(
    proxy: Proxy, market: FakeMarket, module_home: Path, tmp_path: Path
) -> None:
    pac = subprocess.run(
        [SHOPGUARD, "pac", "--listen-port", str(proxy.port)],
        env=isolated_env(module_home),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    pac_url = "data:application/x-ns-proxy-autoconfig;base64," + base64.b64encode(
        pac.encode()
    ).decode("ascii")
    images = "".join(f'<img src="{url}">' for url, _ in PROBES)
    page = page_server(f"<!doctype html><title>probes</title>{images}".encode())
    market.recorder.clear()
    try:
        dump_dom(
            f"http://127.0.0.1:{page.server_address[1]}/",
            tmp_path / "profile",
            f"--proxy-pac-url={pac_url}",
            NO_DNS,  # what goes DIRECT fails at once, without a real DNS lookup
        )
    finally:
        page.shutdown()
        page.server_close()
    arrived = {r.path for r in market.recorder.requests if r.path.startswith("/pac/")}
    expected = {url.split("/", 3)[3] for url, proxied in PROBES if proxied}
    assert arrived == {"/" + path for path in expected}
    # and the proxy took them for the sites they belong to
    assert proxy.wait_for(lambda x: x["event"] == "flow" and x["path"] == "/pac/beacon-dot")
