"""Headless Chromium through `shopguard run` loads the fake shop; its flows appear in the log."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.support.browser import FLAGS
from tests.support.certs import UpstreamPKI, spki_hash
from tests.support.market import API, BEACON, CDN, PIXEL, SHOP, FakeMarket
from tests.support.proxy import Proxy, start_proxy

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI needs Chromium for the browser tests: apt-get install chromium")
    pytest.skip(
        "Chromium not found: apt-get install chromium to run the browser tests",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def proxy(module_home: Path, market: FakeMarket, pki: UpstreamPKI) -> Iterator[Proxy]:
    running = start_proxy(module_home, routes=market.routes, upstream_ca=pki.ca_pem)
    yield running
    running.stop()


def chromium_dump_dom(proxy: Proxy, pki: UpstreamPKI, url: str, profile: Path) -> str:
    shopguard_ca = x509.load_pem_x509_certificate(proxy.ca.read_bytes())
    trusted = ",".join([spki_hash(shopguard_ca), *pki.spki_hashes])
    assert CHROMIUM is not None
    result = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--proxy-server=http://127.0.0.1:{proxy.port}",
            f"--ignore-certificate-errors-spki-list={trusted}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_browser_page_assets_and_beacons_are_logged(
    proxy: Proxy, market: FakeMarket, pki: UpstreamPKI, tmp_path: Path
) -> None:
    market.recorder.clear()  # the market serves the whole session: only this page's requests
    dom = chromium_dump_dom(proxy, pki, f"https://{SHOP}/", tmp_path / "profile")
    assert "shopguard fake shop" in dom or "order sent" in dom
    # everything the page loads reached the fake upstream through the proxy
    assert market.recorder.find(SHOP, "/")
    assert market.recorder.find(CDN, "/alilog/mlog/aplus_v2.js")
    assert market.recorder.find(BEACON, "/v.gif")
    assert market.recorder.find(PIXEL, "/en_US/fbevents.js")
    (order,) = market.recorder.find(API, "/h5/mtop.trade.order.create/1.0/?appKey=12574478")
    assert order.method == "POST"

    def logged(host: str) -> list[dict[str, object]]:
        return proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == host)

    assert logged(SHOP)[0]["site"] == "taobao"
    assert logged(CDN)[0]["third_party"] is True
    beacon = logged(BEACON)[0]
    assert beacon["site"] == "taobao" and beacon["path"] == "/v.gif?cna=***&spm=***"
    assert {"category": "tracking_id", "location": "query:cna"}.items() <= beacon["findings"][
        0
    ].items()
    api = logged(API)
    assert api and api[0]["method"] == "POST" and api[0]["status"] == 200
    # what the page's script sent: the recipient in the order call, query and form body alike
    assert {(f["category"], f["location"]) for f in api[0]["findings"]} >= {
        ("phone", "body.form:data.$.receiverMobile"),
        ("name", "body.form:data.$.receiverName"),
        ("address", "body.form:data.$.receiverAddress"),
        ("phone", "query:data.$.receiverMobile"),
    }
    assert api[0]["inspection"] == "full"
    # the ad pixel fired by the shop page is logged as the pixels site, via taobao
    pixel = logged(PIXEL)
    assert pixel and pixel[0]["site"] == "third-party-pixels" and pixel[0]["via"] == "taobao"
    assert "13800138000" not in proxy.log.read_text()


def test_checkout_works_under_the_shipped_policies_in_enforce_mode(
    market: FakeMarket, pki: UpstreamPKI, tmp_path: Path
) -> None:
    proxy = start_proxy(tmp_path, "--mode", "enforce", routes=market.routes, upstream_ca=pki.ca_pem)
    try:
        market.recorder.clear()
        dom = chromium_dump_dom(proxy, pki, f"https://{SHOP}/?spm=a21bo.1", tmp_path / "profile")
        assert "order sent" in dom  # the page's order call came back
        (order,) = market.recorder.find(API, "/h5/mtop.trade.order.create/1.0/")
        assert b"13800138000" in order.body  # the shop itself still gets the recipient
        assert market.recorder.find(SHOP, "/") and not market.recorder.find(SHOP, "/?spm")
        assert not market.recorder.find(BEACON)  # the aplus beacon never left
        assert not market.recorder.find(PIXEL)  # nor the pixel the shop page fired
        beacon = proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == BEACON)
        assert beacon and beacon[0]["actions"][0]["action"] == "block"
        assert beacon[0]["status"] == 204
    finally:
        proxy.stop()
