"""The redactor addon on tflow flows: blocks answered locally, edits applied in enforce mode and
only reported in observe mode, every action in the flow line with its rule, hot reloads."""

from __future__ import annotations

import gzip
import json
import os
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest
from mitmproxy import http, websocket
from mitmproxy.test import tflow
from wsproto.frame_protocol import Opcode

from tests.addons.conftest import Proxy, request_to, respond

SITE = """\
site: taobao
hosts: ["*.taobao.com", "*.mmstat.com"]
first_party: ["*.taobao.com"]
tracking_ids: {cookies: [cna]}
trackers:
  block: ["gm.mmstat.com"]
  strip_params: [spm]
  strip_cookies: {"*.mmstat.com": [cna]}
  strip_fields: [umidToken]
fields:
  phone: {action: replace, hosts: ["!*.taobao.com"]}
allow:
  - match: "h5api.m.taobao.com/h5/mtop.trade.order.create*"
    fields: [phone]
"""
PIXELS = """\
site: pixels
referred_only: true
hosts: ["connect.facebook.net"]
trackers:
  block: ["connect.facebook.net/tr*"]
"""


def started(start: Callable[..., Proxy], mode: str) -> Proxy:
    return start({"sites/taobao.yaml": SITE, "sites/pixels.yaml": PIXELS}, shopguard_mode=mode)


def flow_line(proxy: Proxy) -> dict[str, object]:
    (line,) = proxy.lines("flow")
    return line


@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_a_tracker_host_is_answered_locally_only_in_enforce(
    start: Callable[..., Proxy], mode: str
) -> None:
    proxy = started(start, mode)
    flow = request_to("gm.mmstat.com", "/v.gif?cna=x", referer="https://www.taobao.com/")
    flow.request.headers["sec-fetch-dest"] = "image"
    proxy.run(flow, ("requestheaders", "request"))
    if mode == "enforce":
        assert flow.response is not None and flow.response.status_code == 204
    else:
        assert flow.response is None  # observe: it goes upstream
        respond(flow)
    proxy.run(flow, ("response",))
    (action,) = flow_line(proxy)["actions"]  # type: ignore[misc]
    assert action["action"] == "block" and action["status"] == 204
    assert action["applied"] is (mode == "enforce")
    assert action["rule"].endswith("sites/taobao.yaml:6")


def test_a_blocked_document_gets_a_page_that_names_the_rule(start: Callable[..., Proxy]) -> None:
    proxy = started(start, "enforce")
    flow = request_to("gm.mmstat.com", "/page", referer="https://www.taobao.com/")
    flow.request.headers["accept"] = "text/html"
    proxy.run(flow, ("requestheaders",))
    assert flow.response is not None and flow.response.status_code == 403
    assert b"sites/taobao.yaml:6" in (flow.response.content or b"")


def test_edits_reach_the_flow_in_enforce_mode(start: Callable[..., Proxy]) -> None:
    proxy = started(start, "enforce")
    flow = request_to("log.mmstat.com", "/x?spm=a.b&mobile=13912345678&k=1", method="POST")
    flow.request.headers["referer"] = "https://www.taobao.com/"
    flow.request.headers["cookie"] = "cna=Zm9vYmFyYmF6; other=1"
    flow.request.headers["content-type"] = "application/json"
    flow.request.content = json.dumps({"umidToken": "T2gA", "q": "bag"}).encode()
    proxy.run(flow, ("requestheaders", "request"))
    assert flow.response is None
    query = dict(parse_qsl(flow.request.path.partition("?")[2]))
    assert "spm" not in query and query["k"] == "1"
    assert query["mobile"] != "13912345678" and len(query["mobile"]) == 11
    assert flow.request.headers["cookie"] == "other=1"
    assert json.loads(flow.request.content or b"") == {"q": "bag"}
    assert flow.request.headers["content-length"] == str(len(flow.request.raw_content or b""))
    respond(flow)
    proxy.run(flow, ("response",))
    actions = {(a["action"], a["target"]) for a in flow_line(proxy)["actions"]}  # type: ignore[attr-defined]
    assert actions == {
        ("strip", "query:spm"),
        ("strip", "cookie:cna"),
        ("strip", "body:$.umidToken"),
        ("replace", "query:mobile"),
    }


@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_each_finding_says_whether_its_value_left(start: Callable[..., Proxy], mode: str) -> None:
    """What was stopped is told apart from what reached the site: a value stripped or
    replaced in enforce mode did not leave; in observe mode everything did."""
    proxy = started(start, mode)
    flow = request_to("log.mmstat.com", "/x?mobile=13912345678&q=1", method="POST")
    flow.request.headers["referer"] = "https://www.taobao.com/"
    flow.request.headers["cookie"] = "cna=Zm9vYmFyYmF6; other=1"
    flow.request.headers["content-type"] = "application/json"
    flow.request.content = json.dumps({"contact": {"email": "a.buyer@example.com"}}).encode()
    proxy.run(flow, ("requestheaders", "request"))
    respond(flow).response.headers["set-cookie"] = "cna=Zm9vYmFyYmF6; Path=/"  # type: ignore[union-attr]
    proxy.run(flow, ("response",))
    left = {f["location"]: f.get("left") for f in flow_line(proxy)["findings"]}  # type: ignore[attr-defined]
    enforced = mode == "enforce"
    assert left["query:mobile"] is not enforced  # replaced
    assert left["cookie:cna"] is not enforced  # stripped
    assert left["body:$.contact.email"] is True  # no rule acts on it: it left either way


def test_a_blocked_request_sent_nothing(start: Callable[..., Proxy]) -> None:
    proxy = started(start, "enforce")
    flow = request_to(
        "gm.mmstat.com", "/v.gif?mobile=13912345678", referer="https://www.taobao.com/"
    )
    proxy.run(flow)
    findings = flow_line(proxy)["findings"]
    assert findings and all(f["left"] is False for f in findings)  # type: ignore[union-attr]
    assert flow.marked == ":heavy_check_mark:" and ": stopped" in flow.comment  # (mitmweb)


def test_observe_mode_changes_nothing_and_says_what_it_would_do(
    start: Callable[..., Proxy],
) -> None:
    proxy = started(start, "observe")
    flow = request_to("www.taobao.com", "/item?spm=a.b&id=1")
    before = flow.request.path
    proxy.run(flow, ("requestheaders", "request"))
    assert flow.request.path == before
    respond(flow)
    proxy.run(flow, ("response",))
    (action,) = flow_line(proxy)["actions"]  # type: ignore[misc]
    assert (action["action"], action["target"], action["applied"]) == ("strip", "query:spm", False)


def test_allowed_fields_reach_the_shop(start: Callable[..., Proxy]) -> None:
    proxy = started(start, "enforce")
    path = "/h5/mtop.trade.order.create.h5/4.0/?mobile=13912345678"
    flow = proxy.run(request_to("h5api.m.taobao.com", path), ("requestheaders", "request"))
    assert flow.request.path == path


def test_pixels_only_when_a_marketplace_page_fires_them(start: Callable[..., Proxy]) -> None:
    proxy = started(start, "enforce")
    elsewhere = request_to("connect.facebook.net", "/tr?id=1", referer="https://news.example/")
    proxy.run(elsewhere, ("requestheaders", "request"))
    assert elsewhere.response is None and "shopguard" not in elsewhere.metadata
    fired = request_to("connect.facebook.net", "/tr?id=1", referer="https://www.taobao.com/x")
    proxy.run(fired, ("requestheaders", "request", "response"))
    assert fired.response is not None and fired.response.status_code == 204
    line = flow_line(proxy)
    assert line["site"] == "pixels" and line["via"] == "taobao"


def test_an_edited_site_file_is_picked_up_and_a_broken_one_is_refused(
    start: Callable[..., Proxy],
) -> None:
    proxy = started(start, "enforce")
    site_file = proxy.config / "sites" / "taobao.yaml"
    scope = proxy.addons[0]

    def bump() -> None:  # a new modification time, looked at as the file watcher does
        stamp = time.time() + 5
        os.utime(site_file, (stamp, stamp))
        scope.reload_if_changed()

    site_file.write_text(SITE.replace("strip_params: [spm]", "strip_params: [spm, pvid]"))
    bump()
    flow = proxy.run(request_to("www.taobao.com", "/?pvid=1&x=2"), ("requestheaders", "request"))
    assert flow.request.path == "/?x=2"
    assert proxy.lines("policy_loaded")[-1]["files"]

    site_file.write_text(SITE.replace("strip_params: [spm]", "strip_params: ['/(/']"))
    bump()
    flow = proxy.run(request_to("www.taobao.com", "/?pvid=1&x=2"), ("requestheaders", "request"))
    assert flow.request.path == "/?x=2"  # the last good policy is still in force
    (rejected,) = proxy.lines("policy_rejected")
    assert rejected["errors"] == [
        f"{site_file}:7: trackers.strip_params[0]: invalid regex '/(/': "
        "missing ), unterminated subpattern"
    ]


def test_an_edited_gzip_body_leaves_gzip_encoded_with_its_new_length(
    start: Callable[..., Proxy],
) -> None:
    proxy = started(start, "enforce")
    flow = request_to("www.taobao.com", "/api", method="POST")
    flow.request.headers["content-type"] = "application/json"
    flow.request.headers["content-encoding"] = "gzip"
    flow.request.content = json.dumps({"umidToken": "T2gA", "q": "bag"}).encode()  # gzips it
    proxy.run(flow, ("requestheaders", "request"))
    raw = flow.request.raw_content or b""
    assert gzip.decompress(raw) == b'{"q":"bag"}'
    assert flow.request.headers["content-length"] == str(len(raw))


def test_a_streamed_body_is_blocked_before_it_leaves_when_the_site_says_so(
    start: Callable[..., Proxy],
) -> None:
    proxy = start({"sites/taobao.yaml": SITE + "on_uninspected: block\n"}, shopguard_mode="enforce")
    flow = request_to("www.taobao.com", "/upload", method="POST")
    flow.request.stream = True
    proxy.run(flow, ("requestheaders",))
    assert flow.response is not None and flow.response.status_code == 204
    (action,) = flow.metadata["shopguard"]["actions"]
    assert action["reason"] == "its body is streamed and cannot be inspected"
    assert not flow.request.stream  # (answered here: mitmproxy must not start streaming it)


def test_nothing_is_logged_as_applied_to_a_body_already_streamed(
    start: Callable[..., Proxy],
) -> None:
    """Another addon may stream a body past shopguard: its request hook comes after the data
    left, so whatever the policy says is logged as not applied."""
    proxy = start({"sites/taobao.yaml": SITE + "on_uninspected: block\n"}, shopguard_mode="enforce")
    flow = request_to("www.taobao.com", "/upload?spm=a1", method="POST")
    proxy.run(flow, ("requestheaders",))
    flow.request.stream = True  # (after shopguard's requestheaders)
    proxy.run(flow, ("request",))
    assert flow.response is None  # (not answered locally: it has gone upstream)
    proxy.run(respond(flow), ("response",))
    (block,) = flow_line(proxy)["actions"]  # type: ignore[misc]
    assert (block["action"], block["applied"]) == ("block", False)
    assert "streamed on before shopguard could act" in block["reason"]


def test_stream_large_bodies_is_applied_by_shopguard_at_the_headers(
    start: Callable[..., Proxy],
) -> None:
    """mitmproxy would decide to stream after the request headers and start streaming an
    upload as it grows; shopguard takes the threshold over and decides first."""
    proxy = start({"sites/taobao.yaml": SITE})
    proxy.tctx.master.addons.add(_StreamOption())
    proxy.tctx.options.update(stream_large_bodies="1k")
    assert proxy.tctx.options.stream_large_bodies is None  # (taken over)
    big = request_to("www.taobao.com", "/upload", method="POST")
    big.request.headers["content-length"] = "5000"
    chunked = request_to("www.taobao.com", "/upload", method="POST")
    chunked.request.headers["transfer-encoding"] = "chunked"
    other = request_to("example.org", "/upload", method="POST")
    other.request.headers["transfer-encoding"] = "chunked"
    for flow in (big, chunked, other):
        proxy.run(flow, ("requestheaders",))
    assert big.request.stream and other.request.stream
    assert not chunked.request.stream  # a site's upload of unknown size is read and inspected
    respond(big)
    big.response.headers["transfer-encoding"] = "chunked"  # type: ignore[union-attr]
    proxy.run(big, ("responseheaders",))
    assert big.response.stream  # type: ignore[union-attr]


class _StreamOption:
    """mitmproxy's own `stream_large_bodies` option, as its proxy server addon defines it."""

    def load(self, loader: object) -> None:
        loader.add_option("stream_large_bodies", str | None, None, "")  # type: ignore[attr-defined]


def test_untouched_headers_keep_their_bytes_when_others_change(
    start: Callable[..., Proxy],
) -> None:
    proxy = started(start, "enforce")
    flow = request_to("www.taobao.com", "/item?spm=1&id=2")
    flow.request.headers.fields += ((b"x-name", b"Zo\xeb"),)
    proxy.run(flow, ("requestheaders", "request"))
    assert flow.request.path == "/item?id=2"
    assert (b"x-name", b"Zo\xeb") in flow.request.headers.fields


def test_a_host_written_with_a_trailing_dot_follows_the_same_rules(
    start: Callable[..., Proxy],
) -> None:
    proxy = started(start, "enforce")
    path = "/h5/mtop.trade.order.create.h5/4.0/?mobile=13912345678"
    flow = request_to("h5api.m.taobao.com.", path)
    proxy.run(flow, ("requestheaders", "request"))
    assert flow.request.path == path  # the allow entry still applies
    assert flow.metadata["shopguard"]["third_party"] is False


def test_bytes_that_are_not_utf8_in_the_url_are_handled(start: Callable[..., Proxy]) -> None:
    proxy = started(start, "enforce")
    flow = request_to("www.taobao.com", "/")
    flow.request.data.path = b"/item.htm?id=1&spm=2&cna=\xff\xfe"
    proxy.run(flow, ("requestheaders", "request"))
    assert flow.response is None  # no 502: nothing failed
    assert flow.request.data.path == b"/item.htm?id=1&cna=%FF%FE"  # the same bytes to the site
    assert not proxy.lines("addon_error")


def websocket_to(host: str, *messages: tuple[bool, bytes]) -> http.HTTPFlow:
    """A WebSocket connection to `host`; (sent by the client?, content) for each message."""
    flow = tflow.twebsocketflow()
    flow.request.host = host
    flow.request.headers["host"] = host
    assert flow.websocket is not None
    flow.websocket.messages = []  # (the test flow comes with some)
    for from_client, content in messages:
        flow.websocket.messages.append(
            websocket.WebSocketMessage(Opcode.TEXT, from_client, content)
        )
    return flow


def send_messages(proxy: Proxy, flow: http.HTTPFlow) -> list[bytes]:
    """Each message through every addon's websocket_message hook, as mitmproxy relays them."""
    assert flow.websocket is not None
    queued, flow.websocket.messages = flow.websocket.messages, []
    proxy.run(flow, ("requestheaders",))
    for message in queued:
        flow.websocket.messages.append(message)
        for addon in proxy.addons:
            if hasattr(addon, "websocket_message"):
                addon.websocket_message(flow)
    return [m.content for m in flow.websocket.messages if not m.dropped]


@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_websocket_messages_the_client_sends_are_edited_in_enforce(
    start: Callable[..., Proxy], mode: str
) -> None:
    """A JSON message's fields are replaced or stripped like a JSON body's; what the site sends
    is reported only; each message with findings has its line, with what was done to it."""
    site = SITE.replace(
        '  phone: {action: replace, hosts: ["!*.taobao.com"]}\n',
        "  phone: replace\n  id_number: block\n",
    )
    proxy = start({"sites/taobao.yaml": site}, shopguard_mode=mode)
    sent = b'{"to": {"mobile": "13912345678"}, "umidToken": "T2gA", "text": "hi"}'
    echoed = b'{"from": {"mobile": "13912345678"}}'
    id_card = b'{"idCard": "11010519491231002X"}'
    flow = websocket_to("im.taobao.com", (True, sent), (False, echoed), (True, id_card))
    relayed = send_messages(proxy, flow)
    lines = proxy.lines("ws_message")
    assert [line["direction"] for line in lines] == ["sent", "received", "sent"]
    first = lines[0]["actions"]
    assert sorted((a["action"], a["target"], a["applied"]) for a in first) == [
        ("replace", "ws:$.to.mobile", mode == "enforce"),
        ("strip", "ws:$.umidToken", mode == "enforce"),
    ]
    assert lines[1]["actions"] == []  # the site's own message: never edited
    assert [(a["action"], a["target"]) for a in lines[2]["actions"]] == [("block", "message")]
    if mode == "enforce":
        edited = json.loads(relayed[0])
        assert "umidToken" not in edited and edited["text"] == "hi"
        assert edited["to"]["mobile"] != "13912345678" and len(edited["to"]["mobile"]) == 11
        assert relayed[1:] == [echoed]  # the blocked message is dropped
    else:
        assert relayed == [sent, echoed, id_card]


def test_a_message_that_cannot_be_checked_is_dropped_in_enforce(
    start: Callable[..., Proxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail closed for WebSocket messages too: the message goes nowhere, the connection stays."""
    proxy = started(start, "enforce")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("shopguard.engine.pipeline.message", broken)
    flow = websocket_to("im.taobao.com", (True, b'{"to": {"mobile": "13912345678"}}'))
    assert send_messages(proxy, flow) == []
    assert flow.response is not None and flow.response.status_code == 101
    (error,) = proxy.lines("addon_error")
    assert (error["hook"], error["outcome"]) == ("websocket_message", "blocked")


def test_strip_fields_apply_to_messages_without_findings(start: Callable[..., Proxy]) -> None:
    """A tracker field (strip_fields) goes from every message the client sends, as from every
    request body; a message with neither findings nor actions gets no line."""
    proxy = started(start, "enforce")
    flow = websocket_to(
        "im.taobao.com", (True, b'{"umidToken": "T2gA", "n": 1}'), (True, b'{"ping": 1}')
    )
    assert send_messages(proxy, flow) == [b'{"n":1}', b'{"ping": 1}']
    (line,) = proxy.lines("ws_message")
    assert [(a["action"], a["target"], a["applied"]) for a in line["actions"]] == [
        ("strip", "ws:$.umidToken", True)
    ]
    assert line["findings"] == []


def test_a_message_that_is_no_json_is_reported_not_edited(start: Callable[..., Proxy]) -> None:
    """Field rules edit JSON messages only (README): a form-shaped text message leaves as it
    came, and no action claims otherwise."""
    proxy = started(start, "enforce")
    flow = websocket_to("im.taobao.com", (True, b"umidToken=T2gA&mobile=13912345678"))
    assert send_messages(proxy, flow) == [b"umidToken=T2gA&mobile=13912345678"]
    for line in proxy.lines("ws_message"):
        assert line["actions"] == []
