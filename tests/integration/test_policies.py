"""Policies through a real `shopguard run`: what the fake marketplace's recording upstream
receives in enforce and in observe mode, re-signed mtop calls that its gateway verifies, hot
reloads, and checkout under the shipped defaults."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import phonenumbers
import pytest

from tests.support.certs import UpstreamPKI
from tests.support.market import API, BEACON, CDN, SHOP, FakeMarket
from tests.support.proxy import Proxy, fetch, start_proxy

pytestmark = pytest.mark.integration

USER_SITE = """\
extends: default
trackers:
  block: ["gm.mmstat.com"]
  strip_params: [spm, trace]
  strip_cookies: {"g.alicdn.com": [cna]}
  strip_headers: [x-track]
  strip_fields: [umidToken]
fields:
  phone: {action: replace, hosts: ["www.taobao.com"]}
"""
TOKEN = hashlib.md5(b"a session").hexdigest()


def start(home: Path, market: FakeMarket, pki: UpstreamPKI, mode: str) -> Proxy:
    config = home / "user-config"
    (config / "sites").mkdir(parents=True, exist_ok=True)
    (config / "sites" / "taobao.yaml").write_text(USER_SITE, encoding="utf-8")
    return start_proxy(
        home,
        "--config",
        str(config),
        "--mode",
        mode,
        routes=market.routes,
        upstream_ca=pki.ca_pem,
    )


@pytest.fixture(scope="module")
def enforcing(module_home: Path, market: FakeMarket, pki: UpstreamPKI) -> Iterator[Proxy]:
    running = start(module_home, market, pki, "enforce")
    yield running
    running.stop()


def signed_call(api: str, data: dict[str, object], token: str | None) -> tuple[str, dict[str, str]]:
    """An mtop GET as the client library builds it, signed with `token` (or none)."""
    text = json.dumps(data, separators=(",", ":"))
    t, app_key = str(int(time.time() * 1000)), "12574478"
    sign = hashlib.md5(f"{token or ''}&{t}&{app_key}&{text}".encode()).hexdigest()
    url = (
        f"https://{API}/h5/{api}/1.0/?jsv=2.7.2&appKey={app_key}&t={t}&sign={sign}&api={api}"
        f"&v=1.0&type=originaljson&dataType=json&data={quote(text)}"
    )
    headers = {"referer": f"https://{SHOP}/"}
    if token:
        headers["cookie"] = f"_m_h5_tk={token}_1700000000000; _m_h5_tk_enc=abc; cna=Zm9vYmFy"
    return url, headers


def received_query(market: FakeMarket, host: str, prefix: str) -> dict[str, str]:
    (item,) = market.recorder.find(host, prefix)
    return dict(parse_qsl(urlsplit(item.path).query))


def test_a_blocked_tracker_never_reaches_upstream(enforcing: Proxy, market: FakeMarket) -> None:
    reply = fetch(
        enforcing.port,
        f"https://{BEACON}/v.gif?cna=enforce1",
        cafile=enforcing.ca,
        headers={"referer": f"https://{SHOP}/", "sec-fetch-dest": "image"},
    )
    assert reply.status == 204 and reply.body == b""
    assert not market.recorder.find(BEACON, "/v.gif?cna=enforce1")
    (line,) = enforcing.wait_for(lambda x: x["event"] == "flow" and x["host"] == BEACON)
    (action,) = line["actions"]
    assert action["action"] == "block" and action["applied"] is True
    assert action["rule"].endswith("user-config/sites/taobao.yaml:3")


def test_stripped_params_cookies_and_headers_never_reach_upstream(
    enforcing: Proxy, market: FakeMarket
) -> None:
    reply = fetch(
        enforcing.port,
        f"https://{CDN}/s/x.js?spm=a.b&trace=9&v=1",
        cafile=enforcing.ca,
        headers={
            "referer": f"https://{SHOP}/",
            "cookie": "cna=Zm9vYmFyYmF6; keep=1",
            "x-track": "abc",
        },
    )
    assert reply.status == 200
    (item,) = market.recorder.find(CDN, "/s/x.js")
    assert item.path == "/s/x.js?v=1"
    assert item.headers.get("cookie") == "keep=1"
    assert "x-track" not in {k.lower() for k in item.headers}


def test_a_replaced_phone_arrives_as_a_valid_stand_in(enforcing: Proxy, market: FakeMarket) -> None:
    fetch(enforcing.port, f"https://{SHOP}/?mobile=13912345678&q=1", cafile=enforcing.ca)
    query = received_query(market, SHOP, "/?mobile=")
    assert query["q"] == "1" and query["mobile"] != "13912345678"
    assert phonenumbers.is_valid_number(phonenumbers.parse(query["mobile"], "CN"))


def test_a_formdata_post_arrives_without_its_stripped_field(
    enforcing: Proxy, market: FakeMarket
) -> None:
    """A multipart/form-data body (what a page's FormData sends) is edited in place: the
    stripped part is gone, the replaced one holds a valid stand-in, the rest is byte for byte."""
    boundary = "----WebKitFormBoundaryQ1w2E3r4T5y6U7i8"
    png = b"\x89PNG\r\n\x1a\n-binary-"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="umidToken"\r\n\r\nT2gA\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="mobile"\r\n\r\n13912345678\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="pic"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    reply = fetch(
        enforcing.port,
        f"https://{SHOP}/upload?formdata=1",
        cafile=enforcing.ca,
        method="POST",
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        body=body,
    )
    assert reply.status == 200
    (item,) = market.recorder.find(SHOP, "/upload?formdata=1")
    assert b"umidToken" not in item.body and b"T2gA" not in item.body
    assert b"13912345678" not in item.body and png in item.body
    assert item.body.startswith(
        f'--{boundary}\r\nContent-Disposition: form-data; name="mobile"'.encode()
    )
    assert item.body.endswith(f"--{boundary}--\r\n".encode())


def test_an_edited_mtop_call_is_re_signed_and_the_gateway_accepts_it(
    enforcing: Proxy, market: FakeMarket
) -> None:
    url, headers = signed_call("mtop.user.info", {"umidToken": "T2gAxyz", "id": "7"}, TOKEN)
    reply = fetch(enforcing.port, url, cafile=enforcing.ca, headers=headers)
    assert json.loads(reply.body)["ret"] == ["SUCCESS::调用成功"]
    query = received_query(market, API, "/h5/mtop.user.info/")
    assert json.loads(query["data"]) == {"id": "7"}  # the field is gone, the call still valid


def test_an_mtop_call_that_cannot_be_re_signed_leaves_as_it_came(
    enforcing: Proxy, market: FakeMarket
) -> None:
    url, headers = signed_call("mtop.user.other", {"umidToken": "T2gAxyz", "id": "8"}, None)
    reply = fetch(enforcing.port, url, cafile=enforcing.ca, headers=headers)
    assert json.loads(reply.body)["ret"] == ["SUCCESS::调用成功"]
    query = received_query(market, API, "/h5/mtop.user.other/")
    assert json.loads(query["data"]) == {"umidToken": "T2gAxyz", "id": "8"}
    (line,) = enforcing.wait_for(
        lambda x: x["event"] == "flow" and "mtop.user.other" in x.get("path", "")
    )
    (action,) = [a for a in line["actions"] if a["target"] == "query:data.$.umidToken"]
    assert action["applied"] is False and "_m_h5_tk" in action["reason"]


def test_an_invalid_edit_keeps_the_last_good_policy(enforcing: Proxy, market: FakeMarket) -> None:
    site_file = enforcing.log.parent / "user-config" / "sites" / "taobao.yaml"
    site_file.write_text(USER_SITE.replace("[spm, trace]", "[spm, '/(/']"), encoding="utf-8")
    time.sleep(1.1)  # the proxy looks at its files at most once a second
    fetch(enforcing.port, f"https://{SHOP}/?trace=1&after=edit", cafile=enforcing.ca)
    assert received_query(market, SHOP, "/?after=edit") == {"after": "edit"}
    (rejected,) = enforcing.wait_for(lambda x: x["event"] == "policy_rejected")
    assert "invalid regex '/(/'" in rejected["errors"][0]
    site_file.write_text(USER_SITE, encoding="utf-8")


def test_observe_mode_sends_everything_unchanged_and_logs_what_it_would_do(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    proxy = start(tmp_path, market, pki, "observe")
    try:
        reply = fetch(
            proxy.port,
            f"https://{BEACON}/v.gif?cna=observe1&spm=x",
            cafile=proxy.ca,
            headers={"referer": f"https://{SHOP}/", "sec-fetch-dest": "image"},
        )
        assert reply.status == 200
        assert market.recorder.find(BEACON, "/v.gif?cna=observe1&spm=x")
        url, headers = signed_call("mtop.user.observe", {"umidToken": "T2gA", "id": "9"}, TOKEN)
        fetch(proxy.port, url, cafile=proxy.ca, headers=headers)
        query = received_query(market, API, "/h5/mtop.user.observe/")
        assert json.loads(query["data"]) == {"umidToken": "T2gA", "id": "9"}
        (line,) = proxy.wait_for(lambda x: x["event"] == "flow" and x["host"] == BEACON)
        assert [(a["action"], a["applied"]) for a in line["actions"]] == [("block", False)]
        (line,) = proxy.wait_for(
            lambda x: x["event"] == "flow" and "mtop.user.observe" in x.get("path", "")
        )
        would = {(a["action"], a["target"], a["applied"]) for a in line["actions"]}
        assert ("strip", "query:data.$.umidToken", False) in would
        assert ("resign", "query:sign", False) in would
    finally:
        proxy.stop()


def test_checkout_succeeds_under_the_shipped_defaults_in_enforce_mode(
    tmp_path: Path, market: FakeMarket, pki: UpstreamPKI
) -> None:
    proxy = start_proxy(tmp_path, "--mode", "enforce", routes=market.routes, upstream_ca=pki.ca_pem)
    try:
        data = json.dumps(
            {
                "receiverName": "Test Buyer",
                "receiverMobile": "13800138000",
                "receiverAddress": "1 Example Road",
            }
        )
        reply = fetch(
            proxy.port,
            f"https://{API}/h5/mtop.trade.order.create/1.0/?appKey=12574478&t=1&checkout=defaults",
            cafile=proxy.ca,
            method="POST",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "origin": f"https://{SHOP}",
                "cookie": "_m_h5_tk=0123456789abcdef0123456789abcdef_1700000000000; cna=Zm9v",
            },
            body=f"data={quote(data)}".encode(),
        )
        assert reply.status == 200
        assert json.loads(reply.body)["ret"] == ["SUCCESS::调用成功"]
        (received,) = market.recorder.find(
            API, "/h5/mtop.trade.order.create/1.0/?appKey=12574478&t=1&checkout=defaults"
        )
        sent = dict(parse_qsl(received.body.decode()))
        assert json.loads(sent["data"])["receiverMobile"] == "13800138000"
        assert "_m_h5_tk=" in received.headers.get("cookie", "")
    finally:
        proxy.stop()
