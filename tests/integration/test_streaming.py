"""`--set stream_large_bodies` through a real `shopguard run`: a block is decided before a
byte of a large body can leave, a site's upload of unknown size is read whole and inspected,
and no line says a block was applied to data that reached the site."""

from __future__ import annotations

import http.client
import ssl
from collections.abc import Iterator

import pytest

from tests.support.certs import UpstreamPKI
from tests.support.market import API, BEACON, FakeMarket
from tests.support.proxy import Proxy, fetch, start_proxy

pytestmark = pytest.mark.integration

STRICT_SITE = "extends: default\non_uninspected: block\n"  # taobao: what is not read is blocked
BIG = 3 * 2**20  # over the 1 MiB threshold and over the default body_cap (2 MiB)
OTHER = "www.jd.com"  # a site that keeps `on_uninspected: pass`


@pytest.fixture(scope="module", params=["enforce", "observe"])
def proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    market: FakeMarket,
    pki: UpstreamPKI,
) -> Iterator[Proxy]:
    home = tmp_path_factory.mktemp(f"streaming-{request.param}")
    config = home / "user-config"
    (config / "sites").mkdir(parents=True)
    (config / "sites" / "taobao.yaml").write_text(STRICT_SITE, encoding="utf-8")
    running = start_proxy(
        home,
        "--config",
        str(config),
        "--mode",
        request.param,
        "--set",
        "stream_large_bodies=1m",
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )
    yield running
    running.stop()


def _upload(proxy: Proxy, host: str, path: str, size: int, *, chunked: bool) -> int:
    """A POST of `size` bytes over HTTPS, with a Content-Length or in 64 KiB chunks."""
    context = ssl.create_default_context(cafile=str(proxy.ca))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, context=context, timeout=30)
    conn.set_tunnel(host, 443)
    body = b"a" * size
    if chunked:
        chunks = (body[i : i + 65536] for i in range(0, size, 65536))
        conn.request("POST", path, body=chunks, encode_chunked=True)
    else:
        conn.request("POST", path, body=body)
    status = conn.getresponse().status
    conn.close()
    return status


def _line(proxy: Proxy, host: str, path: str) -> dict[str, object]:
    found = proxy.wait_for(
        lambda x: x["event"] == "flow" and x["host"] == host and x["path"] == path
    )
    assert len(found) == 1, found
    return found[0]


def _blocks(line: dict[str, object]) -> list[dict[str, object]]:
    return [a for a in line["actions"] if a["action"] == "block"]  # type: ignore[attr-defined,index]


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_an_upload_a_site_blocks_unread_never_reaches_it(
    proxy: Proxy, market: FakeMarket, chunked: bool
) -> None:
    """A length over the threshold is blocked before its body is read; a chunked upload is
    read whole (not streamed) and, over `body_cap`, blocked as uninspected."""
    path = f"/upload/strict-{int(chunked)}-{proxy.port}"  # (one market serves both modes)
    status = _upload(proxy, API, path, BIG, chunked=chunked)
    line = _line(proxy, API, path)
    (block,) = _blocks(line)
    reached = market.recorder.find(API, path)
    if line["mode"] == "enforce":
        assert status in (204, 403) and not reached  # nothing left
        assert block["applied"] is True
    else:
        assert status == 200 and len(reached[0].body) == BIG  # all of it left, as observe does
        assert block["applied"] is False


def test_a_blocked_tracker_with_a_large_body_is_answered_not_crashed(
    proxy: Proxy, market: FakeMarket
) -> None:
    path = f"/v.gif?n={proxy.port}"
    status = _upload(proxy, BEACON, path, 2 * 2**20, chunked=False)
    line = _line(proxy, BEACON, "/v.gif?n=***")
    (block,) = _blocks(line)
    if line["mode"] == "enforce":
        assert status == 204 and block["applied"] is True
        assert not market.recorder.find(BEACON, path)
    else:
        assert status == 200 and block["applied"] is False


def test_a_site_that_lets_unread_bodies_pass_gets_them_streamed(
    proxy: Proxy, market: FakeMarket
) -> None:
    path = f"/upload/pass-{proxy.port}"
    status = _upload(proxy, OTHER, path, BIG, chunked=False)
    assert status == 404  # (the fake market's answer for a host it has no page for)
    (reached,) = market.recorder.find(OTHER, path)
    assert len(reached.body) == BIG
    line = _line(proxy, OTHER, path)
    assert line["inspection"] == "none" and not _blocks(line)  # streamed, unseen, said so


def test_a_large_download_arrives_whole(proxy: Proxy) -> None:
    reply = fetch(proxy.port, f"https://{API}/big/{BIG}", cafile=proxy.ca, timeout=30)
    assert reply.status == 200 and len(reply.body) == BIG
    assert _line(proxy, API, f"/big/{BIG}")["status"] == 200
