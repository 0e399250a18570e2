"""A fake marketplace on loopback: shop page, mtop-style API, beacon, CDN, third-party pixel.

The shop page sends what real ones do: an aplus beacon, the Meta pixel's loader and, for a buyer
signed in (`LOGIN`), Meta's image pixel with the SHA-256 of the buyer's e-mail; the shop sets a
visitor-ID cookie on a browser's first page view, which the page's script echoes to a tracker
host; and the page's order call, once it succeeded, marks the page ("order sent").

One HTTP and one HTTPS server answer for every name (virtual hosts by the Host header); each
records what it receives, so tests can check what actually left the proxy.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from tests.support.certs import UpstreamPKI, server_context

SHOP = "www.taobao.com"
API = "h5api.m.taobao.com"
BEACON = "gm.mmstat.com"
CDN = "g.alicdn.com"
PIXEL = "connect.facebook.net"  # an ad pixel: handled only when a marketplace page fires it
TRACKER = "ynuf.aliapp.org"  # a tracker host of the shop's that the shipped policy lets through
LOOKALIKE = "taobao.com.evil.example"  # out of scope despite the name
HOSTS = [SHOP, API, BEACON, CDN, PIXEL, TRACKER, LOOKALIKE]

# The signed-in buyer (the fictional one of tests/fixtures/corpus/profile.yaml): the shop page
# hands the Meta pixel the SHA-256 of the e-mail address, trimmed and lower-cased, as Meta's
# advanced matching asks (`ud[em]`)
BUYER_EMAIL = "wang.xiaoming@example.com"
PIXEL_ID = "1234567890123456"
LOGIN = "/member/login.jhtml"  # signs the browser in (a session cookie) and sends it to the shop
SESSION_COOKIE = "cookie2"
# The visitor ID the shop sets on a browser's first page view (a first-party cookie), which the
# page's script echoes to TRACKER as a query parameter
VISITOR_COOKIE = "arms_uid"
VISITOR_ID = "7c1e4f2a9b3d5e6f8a0b1c2d3e4f5a6b"
VISITOR_PARAM = "vid"

GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)

# what a shop page sends for a signed-in buyer: Meta's image pixel with the hashed e-mail, on
# the page view and once the order went through
_SIGNED_IN = f"""
  var matched = "&ud[em]=" + "{hashlib.sha256(BUYER_EMAIL.strip().lower().encode()).hexdigest()}";
  function pixel(event) {{
    new Image().src = "https://{PIXEL}/tr/?id={PIXEL_ID}&ev=" + event
      + "&dl=" + encodeURIComponent(location.href) + "&rl=&if=false&ts=" + Date.now()
      + "&v=2.9.150&r=stable" + matched;
  }}
"""
_ANONYMOUS = """
  function pixel(event) {}
"""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Fake Taobao</title>
<script src="https://{CDN}/alilog/mlog/aplus_v2.js"></script>
<script src="https://{PIXEL}/en_US/fbevents.js"></script>
</head><body>
<h1 id="title">shopguard fake shop</h1>
<img src="https://{BEACON}/v.gif?cna=Zm9vYmFyMTIz&spm=a21bo.1.0" width="1" height="1">
<script>{pixel}
  var visitor = (document.cookie.match(/(?:^|; ){VISITOR_COOKIE}=([^;]*)/) || [])[1];
  function track(event) {{  // the shop's visitor ID, echoed to its tracker host
    if (visitor) fetch("https://{TRACKER}/w/wu.json?{VISITOR_PARAM}=" + visitor + "&ev=" + event,
                       {{mode: "no-cors", credentials: "omit"}});
  }}
  pixel("PageView");
  track("pv");
  var data = JSON.stringify({{receiverName: "Test Buyer", receiverMobile: "13800138000",
                              receiverAddress: "1 Example Road"}});
  fetch("https://{API}/h5/mtop.trade.order.create/1.0/?appKey=12574478&t=1700000000000"
        + "&data=" + encodeURIComponent(data),
        {{method: "POST", body: "data=" + encodeURIComponent(data),
          headers: {{"content-type": "application/x-www-form-urlencoded"}}}})
    .then(function (response) {{ return response.json(); }})
    .then(function (answer) {{  // the order call came back from the shop, and succeeded
      if (!answer.data.ok) return;
      document.getElementById("title").textContent = "order sent";
      pixel("Purchase");
      track("order");
    }});
</script>
</body></html>
"""


def shop_page(signed_in: bool = False) -> str:
    """The shop's home page, for a signed-in buyer or not (no pixel then)."""
    return _PAGE.format(
        CDN=CDN,
        PIXEL=PIXEL,
        BEACON=BEACON,
        API=API,
        TRACKER=TRACKER,
        VISITOR_COOKIE=VISITOR_COOKIE,
        VISITOR_PARAM=VISITOR_PARAM,
        pixel=_SIGNED_IN if signed_in else _ANONYMOUS,
    )


@dataclass
class Received:
    scheme: str
    host: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Recorder:
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, item: Received) -> None:
        with self.lock:
            self.requests.append(item)

    def find(self, host: str, path_prefix: str = "/") -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.host == host and r.path.startswith(path_prefix)]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


_SESSION = f"{SESSION_COOKIE}=1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d; Path=/; Secure; HttpOnly"
_VISITOR = f"{VISITOR_COOKIE}={VISITOR_ID}; Path=/; Max-Age=31536000; Secure; SameSite=Lax"


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    return dict(part.strip().partition("=")[::2] for part in headers.get("cookie", "").split(";"))


def mtop_verdict(path: str, headers: dict[str, str], body: bytes) -> str:
    """What the mtop gateway says of a call: signed calls must carry md5(token&t&appKey&data),
    the token being the part of the `_m_h5_tk` cookie before `_` (public client code)."""
    query = dict(parse_qsl(urlsplit(path).query, keep_blank_values=True))
    if "sign" not in query:
        return "SUCCESS::调用成功"  # an unsigned call (the fake shop page sends those)
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    data = query.get("data", form.get("data", ""))
    token = _cookies(headers).get("_m_h5_tk", "").split("_", 1)[0]
    text = f"{token}&{query.get('t', '')}&{query.get('appKey', '')}&{data}"
    if hashlib.md5(text.encode()).hexdigest() != query["sign"]:
        return "FAIL_SYS_ILLEGAL_ACCESS::非法请求"
    return "SUCCESS::调用成功"


def _respond(
    host: str, path: str, headers: dict[str, str], content: bytes
) -> tuple[int, dict[str, str], bytes]:
    if host == SHOP and path.split("?")[0] == LOGIN:
        return 302, {"location": f"https://{SHOP}/", "set-cookie": _SESSION}, b""
    if host == SHOP and path.split("?")[0] == "/":
        cookies = _cookies(headers)
        answer = {"content-type": "text/html; charset=utf-8"}
        # a browser's first page view gets the visitor ID (a test client sends no
        # Sec-Fetch-Mode, and gets none)
        if headers.get("sec-fetch-mode") == "navigate" and VISITOR_COOKIE not in cookies:
            answer["set-cookie"] = _VISITOR
        return 200, answer, shop_page(SESSION_COOKIE in cookies).encode()
    if host == API and path.startswith("/h5/"):
        verdict = mtop_verdict(path, headers, content)
        body = json.dumps({"ret": [verdict], "data": {"ok": verdict.startswith("SUCCESS")}})
        body = body.encode()
        headers = {
            "content-type": "application/json",
            "set-cookie": "_m_h5_tk=0123456789abcdef0123456789abcdef_1700000000000; Path=/",
            "access-control-allow-origin": f"https://{SHOP}",
        }
        return 200, headers, body
    if host == BEACON or path.endswith(".gif") or path.startswith("/tr"):
        return 200, {"content-type": "image/gif"}, GIF
    if path.endswith(".js"):
        return 200, {"content-type": "application/javascript"}, b"window.__loaded = true;\n"
    if host in HOSTS:
        return 200, {"content-type": "text/plain"}, f"fake {host}\n".encode()
    return 404, {"content-type": "text/plain"}, b"unknown host\n"


def _answer(
    handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes
) -> None:
    """The fake market's answer, with its length (and no body to a HEAD)."""
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("content-length", str(len(content)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(content)


def _handler(recorder: Recorder, scheme: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                body = _read_chunked(self.rfile, 64 * 1024 * 1024)
            else:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
            host = (self.headers.get("host") or "").split(":")[0].lower()
            recorder.add(Received(scheme, host, self.command, self.path, dict(self.headers), body))
            lowered = {k.lower(): v for k, v in self.headers.items()}
            if self.path.startswith("/fault/"):
                self._fault(self.path.split("?")[0])
                return
            if self.path.startswith("/slow/"):  # an answer after that many seconds (at most 10)
                time.sleep(min(10.0, float(self.path.split("?")[0][6:] or 0)))
            if self.path.startswith("/big/"):  # a download of that many bytes
                self._big(int(self.path.split("?")[0][5:]))
                return
            _answer(self, *_respond(host, self.path, lowered, body))

        def _big(self, size: int) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(size))
            self.end_headers()
            block = b"x" * 65536
            for start in range(0, size, len(block)):
                self.wfile.write(block[: min(len(block), size - start)])

        def _fault(self, path: str) -> None:
            """A response that fails after its headers: `/fault/truncated` closes the
            connection 10 bytes into a 100,000-byte body, `/fault/chunks` sends a chunk header
            that is not one (but personal data, which an error message would quote)."""
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            if path == "/fault/chunks":
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"5\r\nhello\r\nmobile=13800138000\r\n\r\n")
            else:
                self.send_header("content-length", "100000")
                self.end_headers()
                self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True

        do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class LoopbackServers:
    """An HTTP and an HTTPS server on 127.0.0.1 with free ports, both answering with the request
    handler `handler(scheme)` makes; the HTTPS one presents the test PKI's certificate."""

    def __init__(self, pki: UpstreamPKI, handler: Any) -> None:
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), handler("http"))
        self.https = ThreadingHTTPServer(("127.0.0.1", 0), handler("https"))
        context = server_context(pki)
        self.https.socket = context.wrap_socket(
            self.https.socket, server_side=True, do_handshake_on_connect=False
        )
        self.http.daemon_threads = self.https.daemon_threads = True
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            for s in (self.http, self.https)
        ]

    @property
    def routes(self) -> dict[str, Any]:
        return {"http": self.http.server_address[1], "https": self.https.server_address[1]}

    def start(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server in (self.http, self.https):
            server.shutdown()
            server.server_close()


class FakeMarket(LoopbackServers):
    """The fake marketplace: every fake host, over HTTP and HTTPS."""

    def __init__(self, pki: UpstreamPKI) -> None:
        self.recorder = Recorder()
        super().__init__(pki, lambda scheme: _handler(self.recorder, scheme))

    @property
    def routes(self) -> dict[str, Any]:
        return {**super().routes, "hosts": HOSTS}


def _read_chunked(rfile: Any, limit: int) -> bytes:
    """A chunked request body, read whole (up to about `limit` bytes, trailers skipped)."""
    body = bytearray()
    for _ in range(1_000_000):  # bounded: one chunk per round
        size_line = rfile.readline(1024)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            break
        body += rfile.read(size)
        rfile.readline(8)
        if len(body) > limit:
            break
    return bytes(body)


def _hostile_handler(recorder: Recorder, scheme: str) -> type[BaseHTTPRequestHandler]:
    """The fake market's handler that also reads chunked bodies and speaks WebSocket: every
    message a client sends over it is recorded (method `WS`, the message as the body)."""

    class Handler(_handler(recorder, scheme)):  # type: ignore[misc]
        def _serve(self) -> None:
            host = (self.headers.get("host") or "").split(":")[0].lower()
            if (self.headers.get("upgrade") or "").lower() == "websocket":
                self._websocket(host)
                return
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                body = _read_chunked(self.rfile, 64 * 1024 * 1024)
            else:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
            recorder.add(Received(scheme, host, self.command, self.path, dict(self.headers), body))
            lowered = {k.lower(): v for k, v in self.headers.items()}
            _answer(self, *_respond(host, self.path, lowered, body))

        def _websocket(self, host: str) -> None:
            from wsproto import ConnectionType, WSConnection
            from wsproto.events import (
                AcceptConnection,
                BytesMessage,
                CloseConnection,
                Message,
                Request,
                TextMessage,
            )

            recorder.add(Received(scheme, host, "GET", self.path, dict(self.headers), b""))
            connection = WSConnection(ConnectionType.SERVER)
            fields = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            connection.receive_data(f"{self.requestline}\r\n{fields}\r\n".encode("latin-1"))
            parts: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
            self.close_connection = True
            self.connection.settimeout(10)
            for _ in range(100_000):  # bounded: one read per round
                for event in connection.events():
                    if isinstance(event, Request):
                        self.wfile.write(connection.send(AcceptConnection()))
                    elif isinstance(event, Message):
                        text = isinstance(event, TextMessage)
                        data = event.data.encode() if isinstance(event, TextMessage) else event.data
                        parts[text] += data
                        if event.message_finished:
                            payload = bytes(parts[text])
                            parts[text].clear()
                            recorder.add(Received(scheme, host, "WS", self.path, {}, payload))
                            reply = TextMessage(data="ok") if text else BytesMessage(data=b"ok")
                            self.wfile.write(connection.send(reply))
                    elif isinstance(event, CloseConnection):
                        self.wfile.write(connection.send(event.response()))
                        return
                self.wfile.flush()
                try:
                    data = self.connection.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                connection.receive_data(data)

        do_GET = do_POST = do_HEAD = do_PUT = do_OPTIONS = do_DELETE = do_PATCH = _serve

    return Handler


class HostileMarket(LoopbackServers):
    """The fake marketplace for hostile clients: every fake host over HTTP and HTTPS, chunked
    request bodies read and recorded, and a WebSocket echo on every path that asks for one."""

    def __init__(self, pki: UpstreamPKI) -> None:
        self.recorder = Recorder()
        super().__init__(pki, lambda scheme: _hostile_handler(self.recorder, scheme))

    @property
    def routes(self) -> dict[str, Any]:
        return {**super().routes, "hosts": HOSTS}
